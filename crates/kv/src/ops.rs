//! Range, Put, DeleteRange, Txn, Compact and lease revoke with etcd's semantics. Every
//! write request runs through an executor that writes at `revision + 1` and rolls back
//! on error, so a failed request changes nothing; the revision advances only if
//! something changed. The executor also keeps each key's lease attachment and, while
//! the store records them, the events of the write.

use crate::events::{Event, EventKind};
use crate::lease::{reattach, Lease};
use crate::store::{bounds, key_value, live_at, Key, Store, Version};
use crate::types::*;
use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};

/// etcd's default `--max-txn-ops`.
pub const MAX_TXN_OPS: usize = 128;

struct Exec<'a> {
    store: &'a mut Store,
    rev: i64,
    /// Whether anything was written at `rev`.
    changed: bool,
    /// The keys written, for rolling back; `None` when the request cannot fail once it
    /// has written (a lone Put or DeleteRange checks everything first), which spares a
    /// copy of every key a large delete touches.
    journal: Option<Vec<Key>>,
    /// How many events the store's event log held before this request (rolled back to).
    events_from: usize,
}

/// The lease of a key's current version (0: none, or the key is deleted).
fn current_lease(hist: &[Version]) -> i64 {
    hist.last()
        .filter(|v| v.value.is_some())
        .map_or(0, |v| v.lease)
}

/// The event of writing the live version `v` of `key` over `prev`.
fn put_event(key: &[u8], v: &Version, prev: Option<&Version>) -> Event {
    Event {
        kind: EventKind::Put,
        kv: key_value(key, v).unwrap_or_default(),
        prev_kv: prev.and_then(|p| key_value(key, p)),
    }
}

/// What writing a tombstone needs besides the key's history: the store's byte count,
/// leases and event log (disjoint borrows of the store), and the request's journal.
struct Tombstones<'a> {
    rev: i64,
    bytes: &'a mut u64,
    leases: &'a mut BTreeMap<i64, Lease>,
    events: &'a mut Option<Vec<Event>>,
    journal: &'a mut Option<Vec<Key>>,
}

impl Tombstones<'_> {
    /// Deletes `key` at `rev` if it is live then; true if it was.
    fn delete(&mut self, key: &Key, hist: &mut Vec<Version>) -> bool {
        let Some(live) = live_at(hist, self.rev) else {
            return false;
        };
        if let Some(log) = self.events {
            log.push(Event {
                kind: EventKind::Delete,
                kv: KeyValue {
                    key: key.to_vec(),
                    mod_revision: self.rev,
                    ..KeyValue::default()
                },
                prev_kv: key_value(key, live),
            });
        }
        reattach(self.leases, key, live.lease, 0);
        let tombstone = Version {
            rev: self.rev,
            create: 0,
            version: 0,
            value: None,
            lease: 0,
        };
        *self.bytes += crate::store::version_cost(key, &tombstone);
        push_version(hist, tombstone);
        if let Some(j) = self.journal {
            j.push(key.clone());
        }
        true
    }
}

impl Exec<'_> {
    fn new(store: &mut Store, undoable: bool) -> Exec<'_> {
        let rev = store.revision + 1;
        let events_from = store.events.as_ref().map_or(0, Vec::len);
        Exec {
            store,
            rev,
            changed: false,
            journal: undoable.then(Vec::new),
            events_from,
        }
    }

    /// Writes the live version `v` of `key`, moving the key to `v`'s lease; a new key
    /// moves into the store, copied only for the journal and the event log.
    fn append(&mut self, key: Key, v: Version) {
        self.store.bytes += crate::store::version_cost(&key, &v);
        self.changed = true;
        if let Some(j) = &mut self.journal {
            j.push(key.clone());
        }
        let Store {
            keys,
            leases,
            events,
            ..
        } = &mut *self.store;
        match keys.entry(key) {
            Entry::Occupied(mut hist) => {
                reattach(leases, hist.key(), current_lease(hist.get()), v.lease);
                if let Some(log) = events {
                    log.push(put_event(hist.key(), &v, hist.get().last()));
                }
                push_version(hist.get_mut(), v);
            }
            Entry::Vacant(slot) => {
                reattach(leases, slot.key(), 0, v.lease);
                if let Some(log) = events {
                    log.push(put_event(slot.key(), &v, None));
                }
                slot.insert(vec![v]);
            }
        }
    }

    /// Commits (bumping the revision if anything changed) or rolls back.
    fn finish<T>(self, r: Result<T, KvError>) -> Result<T, KvError> {
        let e = match r {
            Ok(v) => {
                if self.changed {
                    self.store.revision = self.rev;
                }
                return Ok(v);
            }
            Err(e) => e,
        };
        assert!(
            self.journal.is_some() || !self.changed,
            "a write run as not undoable failed after writing: {e:?}"
        );
        let Store {
            keys,
            leases,
            events,
            bytes,
            ..
        } = self.store;
        if let Some(log) = events {
            log.truncate(self.events_from);
        }
        for key in self.journal.unwrap_or_default().iter().rev() {
            let Some(hist) = keys.get_mut(key) else {
                continue;
            };
            if let Some(v) = hist.pop() {
                *bytes -= crate::store::version_cost(key, &v);
                let lease = if v.value.is_some() { v.lease } else { 0 };
                reattach(leases, key, lease, current_lease(hist));
            }
            if hist.is_empty() {
                keys.remove(key);
            }
        }
        Err(e)
    }

    /// A put of the caller's own request: its key and value move into the store, and
    /// the previous version is copied out only when the request asks for it.
    fn put(&mut self, mut r: PutRequest) -> Result<PutResponse, KvError> {
        check_put(&r)?;
        let rev = self.rev;
        let prev = self
            .store
            .keys
            .get(r.key.as_slice())
            .and_then(|h| live_at(h, rev));
        if (r.ignore_value || r.ignore_lease) && prev.is_none() {
            return Err(KvError::KeyNotFound);
        }
        let lease = if r.ignore_lease {
            prev.map_or(0, |p| p.lease)
        } else {
            r.lease
        };
        if lease != 0 && !self.store.leases.contains_key(&lease) {
            return Err(KvError::LeaseNotFound);
        }
        let value = if r.ignore_value {
            prev.and_then(|p| p.value.clone()).unwrap_or_default()
        } else {
            std::mem::take(&mut r.value)
        };
        let (create, version) = prev.map_or((rev, 1), |p| (p.create, p.version + 1));
        let prev_kv = prev
            .filter(|_| r.prev_kv)
            .and_then(|p| key_value(&r.key, p));
        self.append(
            Key::from_vec(r.key),
            Version {
                rev,
                create,
                version,
                value: Some(value),
                lease,
            },
        );
        Ok(PutResponse {
            prev_kv,
            revision: 0,
        })
    }

    /// A delete: a tombstone on every key live in the range, written in one pass over
    /// the range; values are copied out only when the request asks for them.
    fn delete(&mut self, r: &DeleteRangeRequest) -> Result<DeleteRangeResponse, KvError> {
        if r.key.is_empty() {
            return Err(KvError::KeyNotProvided);
        }
        let prev_kvs = if r.prev_kv {
            self.store.live(&r.key, &r.range_end, self.rev)
        } else {
            Vec::new()
        };
        let (keys, mut t) = self.tombstones();
        let mut deleted = 0;
        for (key, hist) in keys.range_mut::<[u8], _>(bounds(&r.key, &r.range_end)) {
            deleted += i64::from(t.delete(key, hist));
        }
        self.changed |= deleted > 0;
        Ok(DeleteRangeResponse {
            deleted,
            prev_kvs,
            revision: 0,
        })
    }

    /// A lease revoke: every attached key deleted (at this one revision), in key order,
    /// and the lease gone.
    fn revoke(&mut self, id: i64) -> Result<(), KvError> {
        let lease = self
            .store
            .leases
            .remove(&id)
            .ok_or(KvError::LeaseNotFound)?;
        let (keys, mut t) = self.tombstones();
        let mut changed = false;
        for key in &lease.keys {
            if let Some(hist) = keys.get_mut(key) {
                changed |= t.delete(key, hist);
            }
        }
        self.changed |= changed;
        Ok(())
    }

    /// The store's keys and a deleter at this revision, borrowed apart.
    fn tombstones(&mut self) -> (&mut BTreeMap<Key, Vec<Version>>, Tombstones<'_>) {
        let Store {
            keys,
            leases,
            events,
            bytes,
            ..
        } = &mut *self.store;
        let t = Tombstones {
            rev: self.rev,
            bytes,
            leases,
            events,
            journal: &mut self.journal,
        };
        (keys, t)
    }

    fn txn(&mut self, t: &TxnRequest) -> Result<TxnResponse, KvError> {
        let succeeded = t.compare.iter().all(|c| self.compare(c));
        let branch = if succeeded { &t.success } else { &t.failure };
        let mut responses = Vec::with_capacity(branch.len());
        for op in branch {
            responses.push(match op {
                RequestOp::Range(r) => ResponseOp::Range(range_at(self.store, r, self.rev)?),
                RequestOp::Put(p) => ResponseOp::Put(self.put(p.clone())?),
                RequestOp::DeleteRange(d) => ResponseOp::DeleteRange(self.delete(d)?),
                RequestOp::Txn(n) => ResponseOp::Txn(self.txn(n)?),
            });
        }
        Ok(TxnResponse {
            succeeded,
            responses,
            revision: 0,
        })
    }

    fn compare(&self, c: &Compare) -> bool {
        let kvs = self.store.live(&c.key, &c.range_end, self.rev);
        if kvs.is_empty() {
            // A value compare on a missing key is false; others compare against zero.
            return !matches!(c.target, CompareTarget::Value(_))
                && compare_one(c, &KeyValue::default());
        }
        kvs.iter().all(|kv| compare_one(c, kv))
    }
}

/// Appends `v` to a key's history. Most keys hold one version; the second (an
/// overwrite or a tombstone) gets room for exactly two instead of the four a `Vec`
/// grows to, so a delete of many keys allocates half as much. Longer histories grow as
/// usual.
fn push_version(hist: &mut Vec<Version>, v: Version) {
    if hist.len() == 1 && hist.capacity() == 1 {
        hist.reserve_exact(1);
    }
    hist.push(v);
}

fn compare_one(c: &Compare, kv: &KeyValue) -> bool {
    use std::cmp::Ordering;
    let ord = match &c.target {
        CompareTarget::Version(v) => kv.version.cmp(v),
        CompareTarget::Create(v) => kv.create_revision.cmp(v),
        CompareTarget::Mod(v) => kv.mod_revision.cmp(v),
        CompareTarget::Lease(v) => kv.lease.cmp(v),
        CompareTarget::Value(v) => kv.value.as_slice().cmp(v.as_slice()),
    };
    match c.result {
        CompareResult::Equal => ord == Ordering::Equal,
        CompareResult::NotEqual => ord != Ordering::Equal,
        CompareResult::Greater => ord == Ordering::Greater,
        CompareResult::Less => ord == Ordering::Less,
    }
}

fn check_put(r: &PutRequest) -> Result<(), KvError> {
    if r.key.is_empty() {
        return Err(KvError::KeyNotProvided);
    }
    if r.ignore_value && !r.value.is_empty() {
        return Err(KvError::ValueProvided);
    }
    if r.ignore_lease && r.lease != 0 {
        return Err(KvError::LeaseProvided);
    }
    Ok(())
}

/// Validates a transaction before anything runs: sizes, and no key written twice in a
/// branch (a put inside another put's key or a delete's range).
fn check_txn(t: &TxnRequest) -> Result<(), KvError> {
    if t.compare.len() > MAX_TXN_OPS
        || t.success.len() > MAX_TXN_OPS
        || t.failure.len() > MAX_TXN_OPS
    {
        return Err(KvError::TooManyOps);
    }
    for branch in [&t.success, &t.failure] {
        writes(branch)?;
    }
    Ok(())
}

/// The keys a branch puts, and the `(key, range_end)` ranges it deletes.
type BranchWrites = (BTreeSet<Vec<u8>>, Vec<(Vec<u8>, Vec<u8>)>);

/// The keys a branch puts and the ranges it deletes, checking for overlaps.
fn writes(ops: &[RequestOp]) -> Result<BranchWrites, KvError> {
    let (mut puts, mut dels) = (BTreeSet::new(), Vec::new());
    for op in ops {
        match op {
            RequestOp::Put(p) => {
                check_put(p)?;
                if !puts.insert(p.key.clone()) {
                    return Err(KvError::DuplicateKey);
                }
            }
            RequestOp::DeleteRange(d) => dels.push((d.key.clone(), d.range_end.clone())),
            RequestOp::Range(_) => {}
            RequestOp::Txn(n) => {
                check_txn(n)?;
                let (a, da) = writes(&n.success)?;
                let (b, db) = writes(&n.failure)?;
                for k in a.union(&b) {
                    if !puts.insert(k.clone()) {
                        return Err(KvError::DuplicateKey);
                    }
                }
                dels.extend(da.into_iter().chain(db));
            }
        }
    }
    let in_range = |k: &Vec<u8>, (key, end): &(Vec<u8>, Vec<u8>)| {
        use std::ops::RangeBounds;
        bounds(key, end).contains(k.as_slice())
    };
    if puts.iter().any(|k| dels.iter().any(|d| in_range(k, d))) {
        return Err(KvError::DuplicateKey);
    }
    Ok((puts, dels))
}

/// A range read at `latest` (the store's revision, or the pending one inside a txn).
fn range_at(s: &Store, r: &RangeRequest, latest: i64) -> Result<RangeResponse, KvError> {
    if r.key.is_empty() {
        return Err(KvError::KeyNotProvided);
    }
    let rev = if r.revision <= 0 { latest } else { r.revision };
    if rev > latest {
        return Err(KvError::FutureRevision);
    }
    if rev < s.compact_revision {
        return Err(KvError::Compacted);
    }
    Ok(range_in_key_order(s, r, rev).unwrap_or_else(|| range_general(s, r, rev)))
}

/// Any range: every live key copied, then filtered, sorted and cut.
fn range_general(s: &Store, r: &RangeRequest, rev: i64) -> RangeResponse {
    let mut kvs = s.live(&r.key, &r.range_end, rev);
    let count = kvs.len() as i64;
    kvs.retain(|kv| passes_filters(r, kv));
    sort(&mut kvs, r.sort_target, r.sort_order);
    let more = r.limit > 0 && kvs.len() as i64 > r.limit;
    if r.limit > 0 {
        kvs.truncate(r.limit as usize);
    }
    if r.count_only {
        kvs.clear();
    } else if r.keys_only {
        kvs.iter_mut().for_each(|kv| kv.value.clear());
    }
    RangeResponse {
        kvs,
        more,
        count,
        revision: 0,
    }
}

/// Ranges without filters in key order (most of them, `count_only` and `--limit` ones
/// included): counts without copying, and copies only the keys returned.
fn range_in_key_order(s: &Store, r: &RangeRequest, rev: i64) -> Option<RangeResponse> {
    let filtered = [
        r.min_mod_revision,
        r.max_mod_revision,
        r.min_create_revision,
        r.max_create_revision,
    ] != [0; 4];
    let key_order = r.sort_target == SortTarget::Key
        && matches!(r.sort_order, SortOrder::None | SortOrder::Ascend);
    if filtered || !key_order {
        return None;
    }
    let count = s.count_live(&r.key, &r.range_end, rev);
    let want = if r.count_only {
        0
    } else if r.limit > 0 {
        (r.limit as usize).min(count)
    } else {
        count
    };
    let mut kvs = s.live_first(&r.key, &r.range_end, rev, want);
    if r.keys_only {
        kvs.iter_mut().for_each(|kv| kv.value.clear());
    }
    Some(RangeResponse {
        kvs,
        more: r.limit > 0 && count as i64 > r.limit,
        count: count as i64,
        revision: 0,
    })
}

fn passes_filters(r: &RangeRequest, kv: &KeyValue) -> bool {
    let min = |bound: i64, v: i64| bound == 0 || v >= bound;
    let max = |bound: i64, v: i64| bound == 0 || v <= bound;
    min(r.min_mod_revision, kv.mod_revision)
        && max(r.max_mod_revision, kv.mod_revision)
        && min(r.min_create_revision, kv.create_revision)
        && max(r.max_create_revision, kv.create_revision)
}

fn sort(kvs: &mut [KeyValue], target: SortTarget, order: SortOrder) {
    let order = match (target, order) {
        (SortTarget::Key, SortOrder::None) => return,
        (_, SortOrder::None) => SortOrder::Ascend,
        (_, o) => o,
    };
    kvs.sort_by(|a, b| {
        let o = match target {
            SortTarget::Key => a.key.cmp(&b.key),
            SortTarget::Version => a.version.cmp(&b.version),
            SortTarget::Create => a.create_revision.cmp(&b.create_revision),
            SortTarget::Mod => a.mod_revision.cmp(&b.mod_revision),
            SortTarget::Value => a.value.cmp(&b.value),
        };
        // Ties keep key order, as etcd's stable sort over key-ordered input does.
        if order == SortOrder::Descend {
            o.reverse()
        } else {
            o
        }
    });
}

fn stamp(responses: &mut [ResponseOp], rev: i64) {
    for r in responses {
        match r {
            ResponseOp::Range(x) => x.revision = rev,
            ResponseOp::Put(x) => x.revision = rev,
            ResponseOp::DeleteRange(x) => x.revision = rev,
            ResponseOp::Txn(x) => {
                x.revision = rev;
                stamp(&mut x.responses, rev);
            }
        }
    }
}

impl Store {
    /// Runs a write at the next revision; commits it, or rolls everything back.
    /// `undoable`: whether `run` may fail after it has written (a Txn, whose later
    /// operation can fail after an earlier one wrote).
    fn execute<T>(
        &mut self,
        undoable: bool,
        run: impl FnOnce(&mut Exec<'_>) -> Result<T, KvError>,
    ) -> Result<T, KvError> {
        let mut e = Exec::new(self, undoable);
        let out = run(&mut e);
        e.finish(out)
    }

    /// A read (linearizable or serializable is the caller's concern).
    pub fn range(&self, r: &RangeRequest) -> Result<RangeResponse, KvError> {
        let mut resp = range_at(self, r, self.revision)?;
        resp.revision = self.revision;
        Ok(resp)
    }

    /// A put; the revision advances by one.
    pub fn put(&mut self, r: &PutRequest) -> Result<PutResponse, KvError> {
        self.put_owned(r.clone())
    }

    /// [`Store::put`] of a request the caller gives up (its key and value are moved
    /// into the store, not copied).
    pub fn put_owned(&mut self, r: PutRequest) -> Result<PutResponse, KvError> {
        let mut resp = self.execute(false, |e| e.put(r))?;
        resp.revision = self.revision;
        Ok(resp)
    }

    /// A delete; the revision advances only if a key was deleted.
    pub fn delete_range(&mut self, r: &DeleteRangeRequest) -> Result<DeleteRangeResponse, KvError> {
        let mut resp = self.execute(false, |e| e.delete(r))?;
        resp.revision = self.revision;
        Ok(resp)
    }

    /// A transaction: one revision for all its changes, none if it changes nothing.
    pub fn txn(&mut self, t: &TxnRequest) -> Result<TxnResponse, KvError> {
        check_txn(t)?;
        let mut resp = self.execute(true, |e| e.txn(t))?;
        resp.revision = self.revision;
        stamp(&mut resp.responses, self.revision);
        Ok(resp)
    }

    /// Drops history below `rev` (later, while history is held); reads below it fail
    /// afterwards.
    pub fn compact(&mut self, rev: i64) -> Result<(), KvError> {
        self.begin_compaction(rev)?;
        self.compact_step(usize::MAX);
        Ok(())
    }

    /// Moves the compact revision to `rev`: reads below it fail from now on, and
    /// [`Store::compact_step`] drops the history it makes unreachable. This is how
    /// [`Store::apply`] takes a Compact, so a large one does not stall the applier.
    pub fn begin_compaction(&mut self, rev: i64) -> Result<(), KvError> {
        if rev <= self.compact_revision {
            return Err(KvError::Compacted);
        }
        if rev > self.revision {
            return Err(KvError::FutureRevision);
        }
        self.compact_to(rev);
        Ok(())
    }

    /// Revokes lease `id`: its keys are deleted at one new revision (none if it had no
    /// keys) and the lease is gone. Returns the store revision after.
    pub fn lease_revoke(&mut self, id: i64) -> Result<i64, KvError> {
        self.execute(false, |e| e.revoke(id))?;
        Ok(self.revision)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The key-order shortcut answers exactly what the general path answers.
    #[test]
    fn key_order_shortcut_matches_the_general_path() {
        let mut s = Store::new();
        for i in 0..40u8 {
            let key = vec![b'k', b'0' + i % 10, i];
            s.put(&PutRequest {
                key,
                value: vec![i; 3],
                ..Default::default()
            })
            .unwrap();
        }
        for i in (0..40u8).step_by(3) {
            s.delete_range(&DeleteRangeRequest {
                key: vec![b'k', b'0' + i % 10, i],
                ..Default::default()
            })
            .unwrap();
        }
        let mut checked = 0;
        for (key, end) in [
            (&b"k"[..], &b"l"[..]),
            (b"k3", b"k7"),
            (b"k5", b""),
            (b"\0", b"\0"),
        ] {
            for limit in 0..=30 {
                for rev in [0, 10, 45, s.revision()] {
                    for (count_only, keys_only) in [(false, false), (true, false), (false, true)] {
                        for order in [SortOrder::None, SortOrder::Ascend] {
                            let r = RangeRequest {
                                key: key.to_vec(),
                                range_end: end.to_vec(),
                                limit,
                                revision: rev,
                                count_only,
                                keys_only,
                                sort_order: order,
                                ..Default::default()
                            };
                            let latest = s.revision();
                            let rv = if rev <= 0 { latest } else { rev };
                            let fast = range_in_key_order(&s, &r, rv).expect("key order");
                            assert_eq!(fast, range_general(&s, &r, rv), "{r:?}");
                            checked += 1;
                        }
                    }
                }
            }
        }
        assert_eq!(checked, 4 * 31 * 4 * 3 * 2);
    }
}
