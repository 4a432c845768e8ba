//! The lock operations' requests ([`KvOp::LockEnter`], [`KvOp::LockOwner`],
//! [`KvOp::LockWrite`], [`KvOp::LockRelease`]): etcd's lock recipe as the server's
//! `recipe.rs` runs it, over the real store.

use super::{value_bytes, KvOp, KvResult, SimStore};
use kv::{
    Compare, CompareResult, CompareTarget, DeleteRangeRequest, PutRequest, RangeRequest, Request,
    RequestOp, SortOrder, SortTarget, TxnRequest,
};

/// The prefix of the lock contenders' keys.
pub const LOCK_PREFIX: &[u8] = b"lock/";

/// The key the lock protects (outside [`LOCK_PREFIX`]).
pub const LOCK_DATA: &[u8] = b"lock-data";

/// The contender key of `lease`: `lock/LEASE` (the lease id in hex), as the server's
/// lock recipe names it.
pub fn lock_key(lease: i64) -> Vec<u8> {
    format!("lock/{lease:x}").into_bytes()
}

/// A read of one key.
fn read_key(key: Vec<u8>) -> RequestOp {
    RequestOp::Range(RangeRequest {
        key,
        ..Default::default()
    })
}

/// A compare that `key` was created at `rev` (0: does not exist).
fn created_at(key: Vec<u8>, rev: i64) -> Compare {
    Compare {
        result: CompareResult::Equal,
        target: CompareTarget::Create(rev),
        key,
        range_end: Vec::new(),
    }
}

/// A read of the key with the lowest create revision under [`LOCK_PREFIX`].
fn queue_head() -> RangeRequest {
    RangeRequest {
        key: LOCK_PREFIX.to_vec(),
        range_end: b"lock0".to_vec(),
        limit: 1,
        sort_order: SortOrder::Ascend,
        sort_target: SortTarget::Create,
        keys_only: true,
        ..Default::default()
    }
}

/// The etcd request of a lock operation.
pub(super) fn request(op: KvOp) -> Request {
    match op {
        KvOp::LockEnter { lease } => {
            let key = lock_key(lease);
            let create = PutRequest {
                key: key.clone(),
                lease,
                ..Default::default()
            };
            Request::Txn(TxnRequest {
                compare: vec![created_at(key.clone(), 0)],
                success: vec![RequestOp::Put(create), read_key(key.clone())],
                failure: vec![read_key(key)],
            })
        }
        KvOp::LockOwner { lease } => Request::Txn(TxnRequest {
            compare: Vec::new(),
            success: vec![RequestOp::Range(queue_head()), read_key(lock_key(lease))],
            failure: Vec::new(),
        }),
        KvOp::LockWrite { lease, rev, value } => {
            let put = PutRequest {
                key: LOCK_DATA.to_vec(),
                value: value_bytes(value),
                ..Default::default()
            };
            if rev == 0 {
                return Request::Put(put);
            }
            Request::Txn(TxnRequest {
                compare: vec![created_at(lock_key(lease), rev)],
                success: vec![RequestOp::Put(put)],
                failure: Vec::new(),
            })
        }
        KvOp::LockRelease { lease } => Request::DeleteRange(DeleteRangeRequest {
            key: lock_key(lease),
            ..Default::default()
        }),
        _ => unreachable!("not a lock operation: {op:?}"),
    }
}

impl SimStore {
    /// What [`KvOp::LockOwner`] would answer, read from this store as it stands (a
    /// serializable read).
    pub fn lock_owner(&self, lease: i64) -> KvResult {
        let read = |r: &RangeRequest| {
            self.store
                .range(r)
                .ok()
                .and_then(|r| r.kvs.first().cloned())
        };
        let mine = RangeRequest {
            key: lock_key(lease),
            ..Default::default()
        };
        KvResult::Owner {
            first: read(&queue_head()).map_or(0, |kv| kv.lease),
            mine: read(&mine).map_or(0, |kv| kv.create_revision),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::lease_id;
    use super::super::tests::apply;
    use super::*;
    use engine::StateMachine;

    #[test]
    fn the_lock_recipe_runs_on_the_real_store_and_its_answers_survive_a_snapshot() {
        let mut s = SimStore::default();
        let (a, b) = (lease_id(64, 1), lease_id(65, 1));
        for (i, id) in [a, b].into_iter().enumerate() {
            let grant = KvOp::LeaseGrant { id, ttl: 20 };
            assert_eq!(
                apply(&mut s, i as u64 + 1, i as u64 + 1, grant),
                KvResult::Lease(true)
            );
        }
        // Entering creates the key once: a second entry finds it at the same revision.
        let enter = |lease| KvOp::LockEnter { lease };
        assert_eq!(apply(&mut s, 3, 3, enter(a)), KvResult::Created(2));
        assert_eq!(apply(&mut s, 4, 4, enter(b)), KvResult::Created(3));
        assert_eq!(apply(&mut s, 5, 5, enter(a)), KvResult::Created(2));
        assert_eq!(s.store.lease(a).unwrap().keys, [lock_key(a)]);
        let owner = KvOp::LockOwner { lease: b };
        let view = KvResult::Owner { first: a, mine: 3 };
        assert_eq!(apply(&mut s, 6, 6, owner), view);
        assert_eq!(s.lock_owner(b), view);
        // A fenced write with the owner's token applies; one with a stale token does
        // not; an unfenced one always does.
        let write = |lease, rev, value| KvOp::LockWrite { lease, rev, value };
        assert_eq!(apply(&mut s, 7, 7, write(a, 2, 70)), KvResult::Cas(true));
        assert_eq!(apply(&mut s, 8, 8, write(b, 2, 80)), KvResult::Cas(false));
        assert_eq!(apply(&mut s, 9, 9, write(b, 0, 90)), KvResult::Done);
        let release = KvOp::LockRelease { lease: a };
        assert_eq!(apply(&mut s, 10, 10, release), KvResult::Deleted(true));
        assert_eq!(s.lock_owner(b), KvResult::Owner { first: b, mine: 3 });
        assert_eq!(s.lock_owner(a), KvResult::Owner { first: b, mine: 0 });
        // Entering with a lease that is gone is refused as the lease requests are.
        let revoke = KvOp::LeaseRevoke { id: a };
        assert_eq!(apply(&mut s, 11, 11, revoke), KvResult::Lease(true));
        assert_eq!(apply(&mut s, 12, 12, enter(a)), KvResult::Lease(false));
        // The sessions' answers (with their revisions) survive a snapshot.
        assert_eq!(
            apply(&mut s, 13, 13, owner),
            KvResult::Owner { first: b, mine: 3 }
        );
        let mut r = SimStore::default();
        StateMachine::restore(&mut r, &StateMachine::snapshot(&s)).unwrap();
        assert_eq!((r.digest(), &r.sessions), (s.digest(), &s.sessions));
        assert_eq!(
            apply(&mut r, 14, 13, owner),
            KvResult::Owner { first: b, mine: 3 }
        );
    }
}
