//! The simulator's workload vocabulary over the real `kv::Store`: what a client asks
//! for ([`Command`]), the etcd request it becomes ([`Command::request`]), and the store
//! as the replica applies it ([`SimStore`]), with client sessions so that a command the
//! network delivered twice (a duplicated `Propose`) or a client retried applies once.

use crate::hash::{fnv, mix};
use engine::{Applied, Index, StateMachine};
use kv::{
    Compare, CompareResult, CompareTarget, DeleteRangeRequest, KvError, PutRequest, RangeRequest,
    Request, RequestOp, Response, Store, TxnRequest,
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
        }
    }
}

/// What a store's response means to the workload.
pub fn result_of(r: &Response) -> KvResult {
    match r {
        Response::Txn(t) => KvResult::Cas(t.succeeded),
        Response::DeleteRange(d) => KvResult::Deleted(d.deleted > 0),
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

/// The real store, as a replica applies it, with a session per client: the last
/// sequence number applied and its result, so that a repeated command (a retry, or a
/// `Propose` the network duplicated) answers as the first did and changes nothing.
/// Its digest covers the sessions, the revision, the compaction point and every live
/// key with its revisions: enough to tell replicas apart, and cheap at the workload's
/// few keys (the store's own digest hashes the whole history, which the replica would
/// redo after every command).
#[derive(Clone, Debug, Default)]
pub struct SimStore {
    /// The store.
    pub store: Store,
    sessions: BTreeMap<u64, (u64, KvResult)>,
}

impl SimStore {
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
        let result = StateMachine::apply(&mut self.store, index, body)?;
        let result = result.map(|r| result_of(&r));
        if let Ok(r) = result {
            self.sessions.insert(client, (seq, r));
        }
        Some(result)
    }
}

fn result_code(r: KvResult) -> u8 {
    match r {
        KvResult::Done => 0,
        KvResult::Cas(false) => 1,
        KvResult::Cas(true) => 2,
        KvResult::Deleted(false) => 3,
        KvResult::Deleted(true) => 4,
    }
}

fn result_from(code: u8) -> Option<KvResult> {
    Some(match code {
        0 => KvResult::Done,
        1 => KvResult::Cas(false),
        2 => KvResult::Cas(true),
        3 => KvResult::Deleted(false),
        4 => KvResult::Deleted(true),
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

    /// `count u32 | (client u64, seq u64, result u8)*` and then the store's snapshot.
    fn snapshot(&self) -> Vec<u8> {
        let mut b = (self.sessions.len() as u32).to_le_bytes().to_vec();
        for (client, (seq, result)) in &self.sessions {
            b.extend_from_slice(&client.to_le_bytes());
            b.extend_from_slice(&seq.to_le_bytes());
            b.push(result_code(*result));
        }
        b.extend_from_slice(&StateMachine::snapshot(&self.store));
        b
    }

    fn restore(&mut self, data: &[u8]) -> Result<(), KvError> {
        let (count, mut rest) = data.split_first_chunk::<4>().ok_or(KvError::Corrupt)?;
        let mut sessions = BTreeMap::new();
        for _ in 0..u32::from_le_bytes(*count) {
            let (entry, tail) = rest.split_first_chunk::<17>().ok_or(KvError::Corrupt)?;
            let ((client, seq), code) = split_session(entry).ok_or(KvError::Corrupt)?;
            let result = result_from(code[0]).ok_or(KvError::Corrupt)?;
            sessions.insert(client, (seq, result));
            rest = tail;
        }
        StateMachine::restore(&mut self.store, rest)?;
        self.sessions = sessions;
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
        }
        for (client, (seq, result)) in &self.sessions {
            h = mix(mix(h, *client), mix(*seq, u64::from(result_code(*result))));
        }
        h
    }

    fn preview(&self, command: &[u8]) -> Option<Applied<SimStore>> {
        let mut scratch = self.clone();
        let index = Index(self.store.applied_index() + 1);
        scratch.apply_session(index, command)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(s: &mut SimStore, index: u64, seq: u64, op: KvOp) -> KvResult {
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
}
