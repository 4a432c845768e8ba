//! The command codec: a [`Request`] as the bytes that travel through the replicated
//! order, and the [`engine::StateMachine`] contract on [`Store`].
//!
//! Layout: `version u8 (1) | kind u8 | fields`. Integers are LEB128 varints (`i64`s
//! zig-zagged), byte strings are a varint length and the bytes, flags are one byte
//! (0 or 1). Kinds: 1 Put, 2 DeleteRange, 3 Txn, 4 Compact, 5 Range, 6 LeaseGrant
//! (`id`, `ttl`), 7 LeaseRevoke (`id`), 8 LeaseRenew (`id`), 9 LeaseCheckpoint (a
//! count, then `id`, `remaining` per lease). Every member decodes the same bytes into
//! the same request, so a command that does not decode is refused identically
//! everywhere. Garbage never panics; a count the bytes cannot hold is refused before
//! anything is allocated for it, and transactions nest at most [`MAX_NESTING`] deep.

use crate::apply::{Request, Response};
use crate::store::Store;
use crate::types::*;
use engine::{Applied, Index, StateMachine};

const VERSION: u8 = 1;

/// Deepest transaction nesting a command may carry.
pub const MAX_NESTING: usize = 32;

/// Encodes `req` as a command.
pub fn encode(req: &Request) -> Vec<u8> {
    let mut w = Writer(Vec::with_capacity(32 + encoded_hint(req)));
    w.0.push(VERSION);
    w.request(req);
    w.0
}

/// The kind byte of a lease keep-alive ([`Request::LeaseRenew`]).
const KIND_LEASE_RENEW: u8 = 8;

/// Whether `bytes` is a lease keep-alive, read from its kind byte alone (the leader
/// asks this of every command it orders; only keep-alives are decoded further).
pub fn is_lease_renew(bytes: &[u8]) -> bool {
    bytes.get(..2) == Some(&[VERSION, KIND_LEASE_RENEW][..])
}

/// Decodes a command; the bytes must hold exactly one request.
pub fn decode(bytes: &[u8]) -> Result<Request, KvError> {
    let mut r = Reader { b: bytes };
    if r.byte()? != VERSION {
        return Err(KvError::Corrupt);
    }
    let req = r.request(0)?;
    if !r.b.is_empty() {
        return Err(KvError::Corrupt);
    }
    Ok(req)
}

fn encoded_hint(req: &Request) -> usize {
    match req {
        Request::Put(p) => p.key.len() + p.value.len(),
        Request::LeaseCheckpoint { checkpoints } => 20 * checkpoints.len(),
        _ => 0,
    }
}

struct Writer(Vec<u8>);

impl Writer {
    fn u64(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push(v as u8 | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }

    fn i64(&mut self, v: i64) {
        self.u64(((v << 1) ^ (v >> 63)) as u64);
    }

    fn bytes(&mut self, b: &[u8]) {
        self.u64(b.len() as u64);
        self.0.extend_from_slice(b);
    }

    fn flags(&mut self, flags: &[bool]) {
        let byte = flags
            .iter()
            .enumerate()
            .fold(0u8, |acc, (i, f)| acc | (*f as u8) << i);
        self.0.push(byte);
    }

    fn request(&mut self, req: &Request) {
        match req {
            Request::Range(r) => {
                self.0.push(5);
                self.range(r);
            }
            Request::Put(p) => {
                self.0.push(1);
                self.put(p);
            }
            Request::DeleteRange(d) => {
                self.0.push(2);
                self.delete(d);
            }
            Request::Txn(t) => {
                self.0.push(3);
                self.txn(t);
            }
            Request::Compact(rev) => {
                self.0.push(4);
                self.i64(*rev);
            }
            Request::LeaseGrant { id, ttl } => {
                self.0.push(6);
                self.i64(*id);
                self.i64(*ttl);
            }
            Request::LeaseRevoke { id } => {
                self.0.push(7);
                self.i64(*id);
            }
            Request::LeaseRenew { id } => {
                self.0.push(KIND_LEASE_RENEW);
                self.i64(*id);
            }
            Request::LeaseCheckpoint { checkpoints } => {
                self.0.push(9);
                self.u64(checkpoints.len() as u64);
                for &(id, remaining) in checkpoints {
                    self.i64(id);
                    self.i64(remaining);
                }
            }
        }
    }

    fn range(&mut self, r: &RangeRequest) {
        self.bytes(&r.key);
        self.bytes(&r.range_end);
        for v in [r.limit, r.revision] {
            self.i64(v);
        }
        self.0.push(sort_order_code(r.sort_order));
        self.0.push(sort_target_code(r.sort_target));
        self.flags(&[r.keys_only, r.count_only]);
        for v in [
            r.min_mod_revision,
            r.max_mod_revision,
            r.min_create_revision,
            r.max_create_revision,
        ] {
            self.i64(v);
        }
    }

    fn put(&mut self, p: &PutRequest) {
        self.bytes(&p.key);
        self.bytes(&p.value);
        self.i64(p.lease);
        self.flags(&[p.prev_kv, p.ignore_value, p.ignore_lease]);
    }

    fn delete(&mut self, d: &DeleteRangeRequest) {
        self.bytes(&d.key);
        self.bytes(&d.range_end);
        self.flags(&[d.prev_kv]);
    }

    fn txn(&mut self, t: &TxnRequest) {
        self.u64(t.compare.len() as u64);
        for c in &t.compare {
            self.compare(c);
        }
        for branch in [&t.success, &t.failure] {
            self.u64(branch.len() as u64);
            for op in branch {
                self.op(op);
            }
        }
    }

    fn compare(&mut self, c: &Compare) {
        self.0.push(match c.result {
            CompareResult::Equal => 0,
            CompareResult::Greater => 1,
            CompareResult::Less => 2,
            CompareResult::NotEqual => 3,
        });
        match &c.target {
            CompareTarget::Version(v) => self.tagged(0, *v),
            CompareTarget::Create(v) => self.tagged(1, *v),
            CompareTarget::Mod(v) => self.tagged(2, *v),
            CompareTarget::Value(v) => {
                self.0.push(3);
                self.bytes(v);
            }
            CompareTarget::Lease(v) => self.tagged(4, *v),
        }
        self.bytes(&c.key);
        self.bytes(&c.range_end);
    }

    fn tagged(&mut self, tag: u8, v: i64) {
        self.0.push(tag);
        self.i64(v);
    }

    fn op(&mut self, op: &RequestOp) {
        match op {
            RequestOp::Range(r) => {
                self.0.push(0);
                self.range(r);
            }
            RequestOp::Put(p) => {
                self.0.push(1);
                self.put(p);
            }
            RequestOp::DeleteRange(d) => {
                self.0.push(2);
                self.delete(d);
            }
            RequestOp::Txn(t) => {
                self.0.push(3);
                self.txn(t);
            }
        }
    }
}

fn sort_order_code(o: SortOrder) -> u8 {
    match o {
        SortOrder::None => 0,
        SortOrder::Ascend => 1,
        SortOrder::Descend => 2,
    }
}

fn sort_target_code(t: SortTarget) -> u8 {
    match t {
        SortTarget::Key => 0,
        SortTarget::Version => 1,
        SortTarget::Create => 2,
        SortTarget::Mod => 3,
        SortTarget::Value => 4,
    }
}

struct Reader<'a> {
    b: &'a [u8],
}

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Result<u8, KvError> {
        let (&first, rest) = self.b.split_first().ok_or(KvError::Corrupt)?;
        self.b = rest;
        Ok(first)
    }

    fn u64(&mut self) -> Result<u64, KvError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(KvError::Corrupt)
    }

    fn i64(&mut self) -> Result<i64, KvError> {
        let z = self.u64()?;
        Ok((z >> 1) as i64 ^ -((z & 1) as i64))
    }

    fn bytes(&mut self) -> Result<Vec<u8>, KvError> {
        let n = self.u64()?;
        if n > self.b.len() as u64 {
            return Err(KvError::Corrupt);
        }
        let (head, rest) = self.b.split_at(n as usize);
        self.b = rest;
        Ok(head.to_vec())
    }

    /// A count of items that take at least one byte each.
    fn count(&mut self) -> Result<usize, KvError> {
        self.count_of(1)
    }

    /// A count of items that take at least `min_bytes` each.
    fn count_of(&mut self, min_bytes: u64) -> Result<usize, KvError> {
        let n = self.u64()?;
        if n.saturating_mul(min_bytes) > self.b.len() as u64 {
            return Err(KvError::Corrupt);
        }
        Ok(n as usize)
    }

    fn checkpoints(&mut self) -> Result<Vec<(i64, i64)>, KvError> {
        // Two varints, at least a byte each.
        let n = self.count_of(2)?;
        (0..n).map(|_| Ok((self.i64()?, self.i64()?))).collect()
    }

    fn flags<const N: usize>(&mut self) -> Result<[bool; N], KvError> {
        let byte = self.byte()?;
        if u32::from(byte) >> N != 0 {
            return Err(KvError::Corrupt);
        }
        Ok(std::array::from_fn(|i| byte >> i & 1 == 1))
    }

    fn request(&mut self, depth: usize) -> Result<Request, KvError> {
        Ok(match self.byte()? {
            1 => Request::Put(self.put()?),
            2 => Request::DeleteRange(self.delete()?),
            3 => Request::Txn(self.txn(depth + 1)?),
            4 => Request::Compact(self.i64()?),
            5 => Request::Range(self.range()?),
            6 => Request::LeaseGrant {
                id: self.i64()?,
                ttl: self.i64()?,
            },
            7 => Request::LeaseRevoke { id: self.i64()? },
            KIND_LEASE_RENEW => Request::LeaseRenew { id: self.i64()? },
            9 => Request::LeaseCheckpoint {
                checkpoints: self.checkpoints()?,
            },
            _ => return Err(KvError::Corrupt),
        })
    }

    fn range(&mut self) -> Result<RangeRequest, KvError> {
        let key = self.bytes()?;
        let range_end = self.bytes()?;
        let (limit, revision) = (self.i64()?, self.i64()?);
        let sort_order = match self.byte()? {
            0 => SortOrder::None,
            1 => SortOrder::Ascend,
            2 => SortOrder::Descend,
            _ => return Err(KvError::Corrupt),
        };
        let sort_target = match self.byte()? {
            0 => SortTarget::Key,
            1 => SortTarget::Version,
            2 => SortTarget::Create,
            3 => SortTarget::Mod,
            4 => SortTarget::Value,
            _ => return Err(KvError::Corrupt),
        };
        let [keys_only, count_only] = self.flags()?;
        Ok(RangeRequest {
            key,
            range_end,
            limit,
            revision,
            sort_order,
            sort_target,
            keys_only,
            count_only,
            min_mod_revision: self.i64()?,
            max_mod_revision: self.i64()?,
            min_create_revision: self.i64()?,
            max_create_revision: self.i64()?,
        })
    }

    fn put(&mut self) -> Result<PutRequest, KvError> {
        let key = self.bytes()?;
        let value = self.bytes()?;
        let lease = self.i64()?;
        let [prev_kv, ignore_value, ignore_lease] = self.flags()?;
        Ok(PutRequest {
            key,
            value,
            lease,
            prev_kv,
            ignore_value,
            ignore_lease,
        })
    }

    fn delete(&mut self) -> Result<DeleteRangeRequest, KvError> {
        let key = self.bytes()?;
        let range_end = self.bytes()?;
        let [prev_kv] = self.flags()?;
        Ok(DeleteRangeRequest {
            key,
            range_end,
            prev_kv,
        })
    }

    fn txn(&mut self, depth: usize) -> Result<TxnRequest, KvError> {
        if depth > MAX_NESTING {
            return Err(KvError::Corrupt);
        }
        let n = self.count()?;
        let compare = (0..n).map(|_| self.compare()).collect::<Result<_, _>>()?;
        let mut branch = || -> Result<Vec<RequestOp>, KvError> {
            let n = self.count()?;
            (0..n).map(|_| self.op(depth)).collect()
        };
        let success = branch()?;
        let failure = branch()?;
        Ok(TxnRequest {
            compare,
            success,
            failure,
        })
    }

    fn compare(&mut self) -> Result<Compare, KvError> {
        let result = match self.byte()? {
            0 => CompareResult::Equal,
            1 => CompareResult::Greater,
            2 => CompareResult::Less,
            3 => CompareResult::NotEqual,
            _ => return Err(KvError::Corrupt),
        };
        let target = match self.byte()? {
            0 => CompareTarget::Version(self.i64()?),
            1 => CompareTarget::Create(self.i64()?),
            2 => CompareTarget::Mod(self.i64()?),
            3 => CompareTarget::Value(self.bytes()?),
            4 => CompareTarget::Lease(self.i64()?),
            _ => return Err(KvError::Corrupt),
        };
        Ok(Compare {
            result,
            target,
            key: self.bytes()?,
            range_end: self.bytes()?,
        })
    }

    fn op(&mut self, depth: usize) -> Result<RequestOp, KvError> {
        Ok(match self.byte()? {
            0 => RequestOp::Range(self.range()?),
            1 => RequestOp::Put(self.put()?),
            2 => RequestOp::DeleteRange(self.delete()?),
            3 => RequestOp::Txn(self.txn(depth + 1)?),
            _ => return Err(KvError::Corrupt),
        })
    }
}

/// What [`StateMachine::apply`] does with a command already decoded (`request`), for a
/// caller that decodes outside a lock: a command that did not decode is refused
/// identically on every member, and its index still counts as applied.
pub fn apply_decoded(
    store: &mut Store,
    index: Index,
    request: Result<Request, KvError>,
) -> Option<Applied<Store>> {
    match request {
        Ok(req) => store.apply(index.0, req),
        Err(e) => store.mark_applied(index.0).then_some(Err(e)),
    }
}

impl StateMachine for Store {
    type Response = Response;
    type Error = KvError;

    fn validate(&self, command: &[u8]) -> Result<(), KvError> {
        decode(command).map(drop)
    }

    fn apply(&mut self, index: Index, command: &[u8]) -> Option<Applied<Store>> {
        apply_decoded(self, index, decode(command))
    }

    fn apply_noop(&mut self, index: Index) {
        self.mark_applied(index.0);
    }

    fn applied_index(&self) -> Index {
        Index(Store::applied_index(self))
    }

    fn snapshot(&self) -> Vec<u8> {
        Store::snapshot(self)
    }

    fn restore(&mut self, data: &[u8]) -> Result<(), KvError> {
        *self = Store::restore(data).map_err(|_| KvError::Corrupt)?;
        Ok(())
    }

    /// The revision, compact revision and leases (id, TTL, checkpointed remaining
    /// TTL) in the high half, [`Store::hash`] of every version in the low half. Which
    /// keys a lease holds follows from the versions, so it is covered by the hash.
    fn digest(&self) -> u64 {
        let mut head = [0u8; 16];
        head[..8].copy_from_slice(&self.revision().to_le_bytes());
        head[8..].copy_from_slice(&self.compact_revision().to_le_bytes());
        let mut crc = crc32c::crc32c(&head);
        for (id, lease) in &self.leases {
            for n in [*id, lease.ttl, lease.remaining_ttl] {
                crc = crc32c::crc32c_append(crc, &n.to_le_bytes());
            }
        }
        u64::from(crc) << 32 | u64::from(self.hash(i64::MAX))
    }

    fn preview(&self, command: &[u8]) -> Option<Applied<Store>> {
        let mut scratch = self.clone();
        let index = Store::applied_index(self) + 1;
        StateMachine::apply(&mut scratch, Index(index), command)
    }
}
