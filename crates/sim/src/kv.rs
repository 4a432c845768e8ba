//! The simulator's workload vocabulary over the real `kv::Store`: what a client asks
//! for ([`Command`]), the etcd request it becomes ([`Command::request`]), and the store
//! as the replica applies it ([`SimStore`]), with client sessions so that a command the
//! network delivered twice (a duplicated `Propose`) or a client retried applies once.
//!
//! Leases run as the server runs them: each store has a [`kv::Lessor`] driven by the
//! replica's state-machine hooks (ticks, leadership, keep-alives as the leader orders
//! them), and the lease requests it proposes go through the log. The events of every
//! write are recorded as they apply, for the watch checkers' reference history.

use crate::hash::{fnv, mix};
use engine::{Applied, Index, StateMachine};
use kv::{
    Compare, CompareResult, CompareTarget, DeleteRangeRequest, KvError, Lessor, LessorOptions,
    PutRequest, RangeRequest, Request, RequestOp, Response, ResponseOp, Store, TxnRequest,
};
use std::collections::BTreeMap;

/// A client operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KvOp {
    /// Put `key` = `value` (etcd Put).
    Put {
        /// Key number.
        key: u8,
        /// New value.
        value: u64,
    },
    /// Set `key` to `new` if it currently holds `expected` (etcd Txn: compare the value,
    /// or that the key does not exist, then put).
    Cas {
        /// Key number.
        key: u8,
        /// Required current value (`None`: absent).
        expected: Option<u64>,
        /// New value.
        new: u64,
    },
    /// Delete `key` (etcd DeleteRange of one key).
    Delete {
        /// Key number.
        key: u8,
    },
    /// Compact the store's history up to `behind` revisions before the current one
    /// (etcd Compact); it changes no key.
    Compact {
        /// Revisions kept.
        behind: u8,
    },
    /// Put `key` = `value` attached to lease `lease`.
    PutLeased {
        /// Key number.
        key: u8,
        /// New value.
        value: u64,
        /// The lease.
        lease: i64,
    },
    /// Grant lease `id` for `ttl` seconds.
    LeaseGrant {
        /// The lease id (the workload picks it).
        id: i64,
        /// TTL, seconds.
        ttl: i64,
    },
    /// A keep-alive of lease `id`.
    LeaseRenew {
        /// The lease id.
        id: i64,
    },
    /// Revoke lease `id` (deleting its keys).
    LeaseRevoke {
        /// The lease id.
        id: i64,
    },
    /// A lock contender enters the queue (etcd's lock recipe): create its key
    /// [`lock_key`]`(lease)` under `lease` unless it exists, and read it back (a Txn);
    /// answers [`KvResult::Created`] with the key's create revision, its place in line.
    LockEnter {
        /// The contender's lease.
        lease: i64,
    },
    /// A lock contender looks at the queue (a Txn of two reads): answers
    /// [`KvResult::Owner`].
    LockOwner {
        /// The contender's lease.
        lease: i64,
    },
    /// A write to the lock's data key [`LOCK_DATA`]: fenced (a Txn that puts only if
    /// the contender key of `lease` still has create revision `rev`, answering
    /// [`KvResult::Cas`]) or, with `rev` 0, a plain put.
    LockWrite {
        /// The writer's lease.
        lease: i64,
        /// The fencing token: the writer's key's create revision (0: unfenced).
        rev: i64,
        /// New value.
        value: u64,
    },
    /// A lock holder releases the lock: delete its key.
    LockRelease {
        /// The holder's lease.
        lease: i64,
    },
}

/// A command: an operation and the client that issued it (with its sequence number,
/// which makes every written value unique).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Command {
    /// Client id.
    pub client: u64,
    /// Client's sequence number.
    pub seq: u64,
    /// The operation.
    pub op: KvOp,
}

/// Result of applying a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KvResult {
    /// A put, or a compaction, done.
    Done,
    /// CAS outcome.
    Cas(bool),
    /// Whether a delete removed a value.
    Deleted(bool),
    /// A lease request (or a put to a lease) done (`true`), or refused because the
    /// lease is not granted (`false`: it expired or was revoked).
    Lease(bool),
    /// A lock contender's key exists with this create revision.
    Created(i64),
    /// The lock queue: the lease of the key with the lowest create revision under
    /// [`LOCK_PREFIX`] (0: none) and the create revision of the asker's key (0: gone).
    Owner {
        /// The owner's lease.
        first: i64,
        /// The asker's key's create revision.
        mine: i64,
    },
}

/// A key's name in the store.
pub fn key_bytes(key: u8) -> Vec<u8> {
    format!("k{key}").into_bytes()
}

/// A value as the store holds it.
fn value_bytes(v: u64) -> Vec<u8> {
    v.to_le_bytes().to_vec()
}

fn put(key: u8, value: u64) -> PutRequest {
    PutRequest {
        key: key_bytes(key),
        value: value_bytes(value),
        ..Default::default()
    }
}

/// A lease id of `(holder, cycle)`: positive and unique per workload.
pub fn lease_id(holder: u64, cycle: u64) -> i64 {
    (((holder + 1) << 32) | (cycle & 0xffff_ffff)) as i64
}

mod lock;
pub use lock::{lock_key, LOCK_DATA, LOCK_PREFIX};

impl Command {
    /// The etcd request, for a store now at revision `revision`.
    pub fn request(&self, revision: i64) -> Request {
        match self.op {
            KvOp::Put { key, value } => Request::Put(put(key, value)),
            KvOp::Cas { key, expected, new } => {
                let compare = match expected {
                    Some(v) => Compare {
                        result: CompareResult::Equal,
                        target: CompareTarget::Value(value_bytes(v)),
                        key: key_bytes(key),
                        range_end: Vec::new(),
                    },
                    None => Compare {
                        result: CompareResult::Equal,
                        target: CompareTarget::Version(0),
                        key: key_bytes(key),
                        range_end: Vec::new(),
                    },
                };
                Request::Txn(TxnRequest {
                    compare: vec![compare],
                    success: vec![RequestOp::Put(put(key, new))],
                    failure: Vec::new(),
                })
            }
            KvOp::Delete { key } => Request::DeleteRange(DeleteRangeRequest {
                key: key_bytes(key),
                ..Default::default()
            }),
            KvOp::Compact { behind } => Request::Compact((revision - i64::from(behind)).max(1)),
            KvOp::PutLeased { key, value, lease } => Request::Put(PutRequest {
                lease,
                ..put(key, value)
            }),
            KvOp::LeaseGrant { id, ttl } => Request::LeaseGrant { id, ttl },
            KvOp::LeaseRenew { id } => Request::LeaseRenew { id },
            KvOp::LeaseRevoke { id } => Request::LeaseRevoke { id },
            KvOp::LockEnter { .. }
            | KvOp::LockOwner { .. }
            | KvOp::LockWrite { .. }
            | KvOp::LockRelease { .. } => lock::request(self.op),
        }
    }
}

/// The create revision of the key a read found (0: none).
fn created(r: &kv::RangeResponse) -> i64 {
    r.kvs.first().map_or(0, |kv| kv.create_revision)
}

/// What a store's response means to the workload. A transaction that ends with reads
/// answers what they found (the lock operations'); any other answers which branch ran.
pub fn result_of(r: &Response) -> KvResult {
    match r {
        Response::Txn(t) => match t.responses.as_slice() {
            [.., ResponseOp::Range(first), ResponseOp::Range(mine)] => KvResult::Owner {
                first: first.kvs.first().map_or(0, |kv| kv.lease),
                mine: created(mine),
            },
            [.., ResponseOp::Range(mine)] => KvResult::Created(created(mine)),
            _ => KvResult::Cas(t.succeeded),
        },
        Response::DeleteRange(d) => KvResult::Deleted(d.deleted > 0),
        Response::LeaseGranted { .. }
        | Response::LeaseRevoked { .. }
        | Response::LeaseRenewed { .. } => KvResult::Lease(true),
        _ => KvResult::Done,
    }
}

/// Bytes of the session header in front of every command: client, then sequence.
const SESSION_LEN: usize = 16;

impl Command {
    /// The command's bytes: the session header and the etcd request in `kv::command`'s
    /// encoding, for a store now at revision `revision`.
    pub fn encode(&self, revision: i64) -> Vec<u8> {
        let mut b = self.client.to_le_bytes().to_vec();
        b.extend_from_slice(&self.seq.to_le_bytes());
        b.extend_from_slice(&kv::command::encode(&self.request(revision)));
        b
    }
}

/// The session of the lessor's own commands (its revokes and checkpoints): sequence 0,
/// outside any session (each is idempotent).
pub const LESSOR_CLIENT: u64 = u64::MAX - 3;

/// A request the lessor proposes, as a command.
fn lessor_command(req: &Request) -> Vec<u8> {
    let mut b = LESSOR_CLIENT.to_le_bytes().to_vec();
    b.extend_from_slice(&0u64.to_le_bytes());
    b.extend_from_slice(&kv::command::encode(req));
    b
}

/// Splits a command into its session (client, seq) and its etcd request bytes.
fn split_session(command: &[u8]) -> Option<((u64, u64), &[u8])> {
    let (head, body) = command.split_first_chunk::<SESSION_LEN>()?;
    let word = |i: usize| u64::from_le_bytes(head[i..i + 8].try_into().unwrap_or([0; 8]));
    Some(((word(0), word(8)), body))
}

/// The value a put command writes, if it is one (for the 6.5840-style scenario API).
pub fn put_value(command: &[u8]) -> Option<u64> {
    match kv::command::decode(split_session(command)?.1) {
        Ok(Request::Put(p)) => Some(u64::from_le_bytes(p.value.try_into().ok()?)),
        _ => None,
    }
}

/// How the simulator's lessors keep time: one lease-second is ten ticks (100 ms of
/// simulated time at the default 10 ms tick), so that workload TTLs of a few
/// lease-seconds expire many times in one run.
pub const LESSOR_TICK_MS: u64 = 100;

/// The lessor settings for a cluster whose election timeout is `election_ticks`: a
/// checkpoint every 20 ticks (less than a TTL, more than a heartbeat), a promotion
/// grace of one election timeout, and a lost revoke retried after 10 ticks.
pub fn lessor_options(election_ticks: u64) -> LessorOptions {
    LessorOptions {
        tick_ms: LESSOR_TICK_MS,
        checkpoint_interval_ticks: CHECKPOINT_TICKS,
        promote_extend_ticks: election_ticks,
        revoke_retry_ticks: 10,
    }
}

/// Ticks between the lessor's checkpoints of the remaining TTLs.
pub const CHECKPOINT_TICKS: u64 = 20;

/// The real store, as a replica applies it, with a session per client: the last
/// sequence number applied and its result, so that a repeated command (a retry, or a
/// `Propose` the network duplicated) answers as the first did and changes nothing.
/// Its digest covers the sessions, the revision, the compaction point, the leases and
/// every live key with its revisions: enough to tell replicas apart, and cheap at the
/// workload's few keys (the store's own digest hashes the whole history, which the
/// replica would redo after every command).
///
/// Not replicated: the lessor (the leader's lease clock), the events recorded as
/// commands apply, and the lessor's proposals made while not leading (none, unless a
/// planted bug makes some; the host forwards them to the leader).
#[derive(Clone, Debug)]
pub struct SimStore {
    /// The store.
    pub store: Store,
    sessions: BTreeMap<u64, (u64, KvResult)>,
    lessor: Lessor,
    events: Vec<kv::Event>,
    forward: Vec<Vec<u8>>,
    #[cfg(feature = "planted-bugs")]
    bug: Option<kv::KvBug>,
}

impl Default for SimStore {
    fn default() -> SimStore {
        SimStore::new(lessor_options(15))
    }
}

impl SimStore {
    /// An empty store whose lessor keeps time as `lessor` says.
    pub fn new(lessor: LessorOptions) -> SimStore {
        let mut store = Store::new();
        store.set_record_events(true);
        SimStore {
            store,
            sessions: BTreeMap::new(),
            lessor: Lessor::new(lessor),
            events: Vec::new(),
            forward: Vec::new(),
            #[cfg(feature = "planted-bugs")]
            bug: None,
        }
    }

    /// Plants a deliberate bug of the kv crate in the store and the lessor.
    #[cfg(feature = "planted-bugs")]
    pub fn plant(&mut self, bug: Option<kv::KvBug>) {
        self.bug = bug;
        self.store.plant(bug);
        self.lessor.plant(bug);
    }

    /// The value of `key`.
    pub fn get(&self, key: u8) -> Option<u64> {
        let req = RangeRequest {
            key: key_bytes(key),
            ..Default::default()
        };
        let r = self.store.range(&req).ok()?;
        let kv = r.kvs.into_iter().next()?;
        Some(u64::from_le_bytes(kv.value.try_into().ok()?))
    }

    /// The store's revision.
    pub fn revision(&self) -> i64 {
        self.store.revision()
    }

    /// The events of the writes applied since the last call, in order.
    pub fn take_events(&mut self) -> Vec<kv::Event> {
        std::mem::take(&mut self.events)
    }

    /// Whether the leader's lessor could renew lease `id` from memory (after a
    /// ReadIndex round: `kv::Lessor::renew_local`); if not, the keep-alive goes
    /// through the log.
    pub fn can_renew_local(&self, id: i64) -> bool {
        self.lessor.can_renew_local(id)
    }

    /// Renews lease `id` from memory, if the lessor still may.
    pub fn renew_local(&mut self, id: i64) -> bool {
        self.lessor.renew_local(&self.store, id).is_some()
    }

    /// What the lessor proposed while this member did not lead (for the host to
    /// forward to the leader).
    pub fn take_forward(&mut self) -> Vec<Vec<u8>> {
        std::mem::take(&mut self.forward)
    }

    fn apply_session(&mut self, index: Index, command: &[u8]) -> Option<Applied<SimStore>> {
        let Some(((client, seq), body)) = split_session(command) else {
            return self
                .store
                .mark_applied(index.0)
                .then_some(Err(KvError::Corrupt));
        };
        if let Some((last, result)) = self.sessions.get(&client) {
            if seq <= *last {
                let result = *result;
                return self.store.mark_applied(index.0).then_some(Ok(result));
            }
        }
        let request = kv::command::decode(body);
        let lease = request.as_ref().ok().and_then(lease_of).cloned();
        let result = kv::command::apply_decoded(&mut self.store, index, request)?;
        if let Some(req) = lease.as_ref().filter(|r| r.is_lease()) {
            self.lessor.on_applied(&self.store, req, &result);
            if matches!(req, Request::LeaseRenew { .. }) {
                self.lessor.on_applied_index(index.0);
            }
        }
        self.events.extend(self.store.take_events());
        let result = match result {
            Ok(r) => Ok(result_of(&r)),
            // A lease that expired or was revoked: an answer the workload expects.
            Err(KvError::LeaseNotFound) if lease.is_some() => Ok(KvResult::Lease(false)),
            Err(e) => Err(e),
        };
        if let (Ok(r), true) = (result, seq > 0) {
            self.sessions.insert(client, (seq, r));
        }
        Some(result)
    }

    /// Whether the session of `command` has applied it already.
    fn already_applied(&self, client: u64, seq: u64) -> bool {
        self.sessions
            .get(&client)
            .is_some_and(|(last, _)| seq <= *last)
    }
}

/// The request itself if it concerns a lease: a lease request or a put to a lease
/// (alone or in a transaction).
fn lease_of(req: &Request) -> Option<&Request> {
    let leased = |op: &RequestOp| matches!(op, RequestOp::Put(p) if p.lease != 0);
    match req {
        Request::Put(p) if p.lease != 0 => Some(req),
        Request::Txn(t) if t.success.iter().chain(&t.failure).any(leased) => Some(req),
        r if r.is_lease() => Some(req),
        _ => None,
    }
}

fn result_code(r: KvResult) -> u8 {
    match r {
        KvResult::Done => 0,
        KvResult::Cas(false) => 1,
        KvResult::Cas(true) => 2,
        KvResult::Deleted(false) => 3,
        KvResult::Deleted(true) => 4,
        KvResult::Lease(false) => 5,
        KvResult::Lease(true) => 6,
        KvResult::Created(_) => 7,
        KvResult::Owner { .. } => 8,
    }
}

/// The numbers a result carries besides its code.
fn result_payload(r: KvResult) -> Option<[i64; 2]> {
    match r {
        KvResult::Created(rev) => Some([rev, 0]),
        KvResult::Owner { first, mine } => Some([first, mine]),
        _ => None,
    }
}

/// A result from its code and, for codes 7 and 8, its payload.
fn result_from(code: u8, payload: [i64; 2]) -> Option<KvResult> {
    Some(match code {
        0 => KvResult::Done,
        1 => KvResult::Cas(false),
        2 => KvResult::Cas(true),
        3 => KvResult::Deleted(false),
        4 => KvResult::Deleted(true),
        5 => KvResult::Lease(false),
        6 => KvResult::Lease(true),
        7 => KvResult::Created(payload[0]),
        8 => KvResult::Owner {
            first: payload[0],
            mine: payload[1],
        },
        _ => return None,
    })
}

impl StateMachine for SimStore {
    type Response = KvResult;
    type Error = KvError;

    fn validate(&self, command: &[u8]) -> Result<(), KvError> {
        let (_, body) = split_session(command).ok_or(KvError::Corrupt)?;
        StateMachine::validate(&self.store, body)
    }

    fn apply(&mut self, index: Index, command: &[u8]) -> Option<Applied<SimStore>> {
        self.apply_session(index, command)
    }

    fn apply_noop(&mut self, index: Index) {
        StateMachine::apply_noop(&mut self.store, index)
    }

    fn applied_index(&self) -> Index {
        StateMachine::applied_index(&self.store)
    }

    /// `count u32 | (client u64, seq u64, result u8, [payload i64; 2] for results 7
    /// and 8)*` and then the store's snapshot.
    fn snapshot(&self) -> Vec<u8> {
        let mut b = (self.sessions.len() as u32).to_le_bytes().to_vec();
        for (client, (seq, result)) in &self.sessions {
            b.extend_from_slice(&client.to_le_bytes());
            b.extend_from_slice(&seq.to_le_bytes());
            b.push(result_code(*result));
            for n in result_payload(*result).iter().flatten() {
                b.extend_from_slice(&n.to_le_bytes());
            }
        }
        b.extend_from_slice(&StateMachine::snapshot(&self.store));
        b
    }

    /// As the server does: the events skipped are read from the history, and a
    /// leading lessor clocks the restored leases as on promotion.
    fn restore(&mut self, data: &[u8]) -> Result<(), KvError> {
        let (count, mut rest) = data.split_first_chunk::<4>().ok_or(KvError::Corrupt)?;
        let mut sessions = BTreeMap::new();
        for _ in 0..u32::from_le_bytes(*count) {
            let (entry, tail) = rest.split_first_chunk::<17>().ok_or(KvError::Corrupt)?;
            let ((client, seq), code) = split_session(entry).ok_or(KvError::Corrupt)?;
            rest = tail;
            let mut payload = [0i64; 2];
            if matches!(code[0], 7 | 8) {
                let (p, tail) = rest.split_first_chunk::<16>().ok_or(KvError::Corrupt)?;
                let word = |i: usize| i64::from_le_bytes(p[i..i + 8].try_into().unwrap_or([0; 8]));
                payload = [word(0), word(8)];
                rest = tail;
            }
            let result = result_from(code[0], payload).ok_or(KvError::Corrupt)?;
            sessions.insert(client, (seq, result));
        }
        StateMachine::restore(&mut self.store, rest)?;
        self.store.set_record_events(true);
        #[cfg(feature = "planted-bugs")]
        self.store.plant(self.bug);
        self.sessions = sessions;
        if self.lessor.is_leader() {
            self.lessor.promote(&self.store);
        }
        Ok(())
    }

    fn digest(&self) -> u64 {
        let all = RangeRequest {
            key: vec![0],
            range_end: vec![0],
            ..Default::default()
        };
        let (rev, compacted) = (self.store.revision(), self.store.compact_revision());
        let mut h = mix(rev as u64, compacted as u64);
        for kv in self.store.range(&all).map(|r| r.kvs).unwrap_or_default() {
            h = mix(h, fnv(&kv.key));
            h = mix(h, fnv(&kv.value));
            h = mix(
                h,
                kv.mod_revision as u64 ^ (kv.create_revision as u64) << 32,
            );
            h = mix(h, kv.lease as u64);
        }
        for lease in self
            .store
            .lease_ids()
            .into_iter()
            .filter_map(|id| self.store.lease(id))
        {
            h = mix(
                mix(h, lease.id as u64),
                mix(lease.ttl as u64, lease.remaining_ttl as u64),
            );
        }
        for (client, (seq, result)) in &self.sessions {
            h = mix(mix(h, *client), mix(*seq, u64::from(result_code(*result))));
            if let Some([a, b]) = result_payload(*result) {
                h = mix(h, mix(a as u64, b as u64));
            }
        }
        h
    }

    fn preview(&self, command: &[u8]) -> Option<Applied<SimStore>> {
        let mut scratch = self.clone();
        let index = Index(self.store.applied_index() + 1);
        scratch.apply_session(index, command)
    }

    /// The lessor's duties: a leader's revokes and checkpoints go to the replica; what
    /// a follower's lessor asks for (nothing, unless a bug is planted) is kept for the
    /// host to forward to the leader, as a client's write would be.
    fn on_tick(&mut self, leader: bool) -> Vec<Vec<u8>> {
        let proposals: Vec<Vec<u8>> = self
            .lessor
            .tick(&self.store)
            .iter()
            .map(lessor_command)
            .collect();
        if leader {
            return proposals;
        }
        self.forward.extend(proposals);
        Vec::new()
    }

    fn on_leadership(&mut self, leader: bool) {
        if leader {
            self.lessor.promote(&self.store);
        } else {
            self.lessor.demote();
        }
    }

    /// A keep-alive counts from when the leader orders it, unless its session applied
    /// it already (a duplicate or a retry of one that took effect).
    fn on_ordered(&mut self, index: Option<Index>, command: &[u8]) {
        let Some(((client, seq), body)) = split_session(command) else {
            return;
        };
        if !kv::command::is_lease_renew(body) || self.already_applied(client, seq) {
            return;
        }
        if let Ok(req) = kv::command::decode(body) {
            self.lessor
                .on_ordered(&self.store, &req, index.map(|i| i.0));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Applies `op` as client 1's `seq`-th command at `index` (also for `kv::lock`'s
    /// tests).
    pub(super) fn apply(s: &mut SimStore, index: u64, seq: u64, op: KvOp) -> KvResult {
        let cmd = Command { client: 1, seq, op };
        let bytes = cmd.encode(s.revision());
        StateMachine::apply(s, Index(index), &bytes)
            .unwrap()
            .unwrap()
    }

    #[test]
    fn the_workload_speaks_etcd_and_applies_once_per_session() {
        let mut s = SimStore::default();
        let put = |value| KvOp::Put { key: 0, value };
        assert_eq!(apply(&mut s, 1, 1, put(10)), KvResult::Done);
        let cas = |expected, new| KvOp::Cas {
            key: 0,
            expected,
            new,
        };
        assert_eq!(apply(&mut s, 2, 2, cas(Some(10), 11)), KvResult::Cas(true));
        assert_eq!(apply(&mut s, 3, 3, cas(Some(10), 12)), KvResult::Cas(false));
        assert_eq!(apply(&mut s, 4, 4, cas(None, 13)), KvResult::Cas(false));
        assert_eq!(s.get(0), Some(11));
        // A repeat of the session's last command answers as it did; an older one
        // (whose answer nobody waits for) changes nothing either.
        assert_eq!(apply(&mut s, 5, 4, cas(None, 13)), KvResult::Cas(false));
        apply(&mut s, 6, 1, put(10));
        assert_eq!(s.get(0), Some(11));
        assert_eq!(
            apply(&mut s, 7, 6, KvOp::Delete { key: 0 }),
            KvResult::Deleted(true)
        );
        assert_eq!(
            apply(&mut s, 8, 7, KvOp::Delete { key: 0 }),
            KvResult::Deleted(false)
        );
        assert_eq!(
            apply(&mut s, 9, 7, KvOp::Delete { key: 0 }),
            KvResult::Deleted(false)
        );
        assert_eq!(apply(&mut s, 10, 9, cas(None, 15)), KvResult::Cas(true));
        assert_eq!(
            apply(&mut s, 11, 10, KvOp::Compact { behind: 1 }),
            KvResult::Done
        );
        assert_eq!(s.get(0), Some(15));
        let mut r = SimStore::default();
        StateMachine::restore(&mut r, &StateMachine::snapshot(&s)).unwrap();
        assert_eq!(r.digest(), s.digest());
        assert_eq!(r.sessions, s.sessions);
        assert_ne!(SimStore::default().digest(), s.digest());
        let bytes = Command {
            client: 1,
            seq: 1,
            op: KvOp::Put { key: 3, value: 7 },
        }
        .encode(0);
        assert_eq!(put_value(&bytes), Some(7));
        assert!(StateMachine::validate(&s, &bytes[..10]).is_err());
    }

    #[test]
    fn lease_requests_apply_once_per_session_and_drive_the_lessor() {
        let mut s = SimStore::new(lessor_options(15));
        let id = lease_id(0, 1);
        let grant = KvOp::LeaseGrant { id, ttl: 2 };
        assert_eq!(apply(&mut s, 1, 1, grant), KvResult::Lease(true));
        // A retried or duplicated grant answers as the first did and grants nothing.
        assert_eq!(apply(&mut s, 2, 1, grant), KvResult::Lease(true));
        assert_eq!(s.store.lease_ids(), [id]);
        let put = KvOp::PutLeased {
            key: 100,
            value: 7,
            lease: id,
        };
        assert_eq!(apply(&mut s, 3, 2, put), KvResult::Done);
        assert_eq!(s.store.lease(id).unwrap().keys, [key_bytes(100)]);
        let events = s.take_events();
        assert_eq!((events.len(), events[0].kv.lease), (1, id));
        // A leader clocks it: 2 lease-seconds are 20 ticks, no revoke before them.
        s.on_leadership(true);
        let renew = Command {
            client: 1,
            seq: 3,
            op: KvOp::LeaseRenew { id },
        }
        .encode(s.revision());
        for _ in 0..10 {
            assert!(s.on_tick(true).iter().all(|c| !is_revoke(c)));
        }
        // A keep-alive ordered at tick 10 restarts the whole TTL, once applied as well:
        // a duplicate ordered after it applied changes nothing.
        s.on_ordered(None, &renew);
        assert_eq!(
            StateMachine::apply(&mut s, Index(4), &renew),
            Some(Ok(KvResult::Lease(true)))
        );
        assert_eq!(
            StateMachine::apply(&mut s, Index(5), &renew),
            Some(Ok(KvResult::Lease(true)))
        );
        for _ in 0..19 {
            s.on_ordered(None, &renew);
            assert!(s.on_tick(true).iter().all(|c| !is_revoke(c)));
        }
        let due = s.on_tick(true);
        assert!(
            due.iter().any(|c| is_revoke(c)),
            "expected a revoke at tick 30"
        );
        StateMachine::apply(&mut s, Index(6), &due[0])
            .unwrap()
            .unwrap();
        assert!(s.store.lease_ids().is_empty());
        assert_eq!(
            apply(&mut s, 7, 4, KvOp::LeaseRenew { id }),
            KvResult::Lease(false)
        );
        // Nothing is left for a follower to forward.
        s.on_leadership(false);
        assert!(s.on_tick(false).is_empty() && s.take_forward().is_empty());
    }

    fn is_revoke(command: &[u8]) -> bool {
        let (_, body) = split_session(command).unwrap();
        matches!(kv::command::decode(body), Ok(Request::LeaseRevoke { .. }))
    }
}
