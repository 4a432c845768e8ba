//! Applying committed log entries: idempotent per log index.

use crate::store::Store;
use crate::types::*;

/// A write-path request as it travels through the Raft log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// A linearizable read through the log (rarely used; ReadIndex is preferred).
    Range(RangeRequest),
    /// A put.
    Put(PutRequest),
    /// A delete.
    DeleteRange(DeleteRangeRequest),
    /// A transaction.
    Txn(TxnRequest),
    /// A compaction.
    Compact(i64),
    /// A lease grant (`id` 0: the store picks one).
    LeaseGrant {
        /// The lease id, or 0.
        id: i64,
        /// The TTL in seconds (the server has raised it to the minimum already).
        ttl: i64,
    },
    /// A lease revoke, by a client or by the leader's [`crate::Lessor`] on expiry.
    LeaseRevoke {
        /// The lease id.
        id: i64,
    },
    /// A keep-alive through the log: clears the lease's checkpointed remaining TTL.
    LeaseRenew {
        /// The lease id.
        id: i64,
    },
    /// The leader's remaining TTLs, so that a new leader does not restart them whole.
    LeaseCheckpoint {
        /// `(lease id, remaining TTL in seconds)`.
        checkpoints: Vec<(i64, i64)>,
    },
}

impl Request {
    /// Whether this is one of the lease requests (the leader's lease clock follows
    /// them as they apply).
    pub fn is_lease(&self) -> bool {
        matches!(
            self,
            Request::LeaseGrant { .. }
                | Request::LeaseRevoke { .. }
                | Request::LeaseRenew { .. }
                | Request::LeaseCheckpoint { .. }
        )
    }
}

/// The result of applying a [`Request`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Response {
    /// Range result.
    Range(RangeResponse),
    /// Put result.
    Put(PutResponse),
    /// Delete result.
    DeleteRange(DeleteRangeResponse),
    /// Txn result.
    Txn(TxnResponse),
    /// Compaction done.
    Compacted {
        /// Store revision.
        revision: i64,
    },
    /// Lease granted.
    LeaseGranted {
        /// The lease id (the one picked, for a grant of id 0).
        id: i64,
        /// The granted TTL in seconds.
        ttl: i64,
        /// Store revision (a grant makes none).
        revision: i64,
    },
    /// Lease revoked.
    LeaseRevoked {
        /// Store revision after the revoke (new only if it deleted keys).
        revision: i64,
    },
    /// Lease renewed.
    LeaseRenewed {
        /// The lease id.
        id: i64,
        /// The granted TTL in seconds.
        ttl: i64,
    },
    /// Checkpoint recorded.
    LeaseCheckpointed,
}

impl Store {
    /// Moves the applied index to `index`; false (and nothing changes) if it was
    /// applied already.
    pub fn mark_applied(&mut self, index: u64) -> bool {
        if index <= self.applied_index {
            return false;
        }
        self.applied_index = index;
        true
    }

    /// Applies the entry at log `index`; `None` if that index was already applied (a
    /// replay after restart), so each entry takes effect exactly once.
    /// The request is consumed: a put's key and value move into the store. A Compact
    /// only begins here ([`Store::begin_compaction`]). A lease grant of id 0 picks its
    /// id from `index`.
    pub fn apply(&mut self, index: u64, req: Request) -> Option<Result<Response, KvError>> {
        if !self.mark_applied(index) {
            return None;
        }
        Some(match req {
            Request::Range(r) => self.range(&r).map(Response::Range),
            Request::Put(p) => self.put_owned(p).map(Response::Put),
            Request::DeleteRange(d) => self.delete_range(&d).map(Response::DeleteRange),
            Request::Txn(t) => self.txn(&t).map(Response::Txn),
            Request::Compact(rev) => self.begin_compaction(rev).map(|()| Response::Compacted {
                revision: self.revision,
            }),
            Request::LeaseGrant { id, ttl } => {
                self.lease_grant(id, ttl).map(|id| Response::LeaseGranted {
                    id,
                    ttl,
                    revision: self.revision,
                })
            }
            Request::LeaseRevoke { id } => self
                .lease_revoke(id)
                .map(|revision| Response::LeaseRevoked { revision }),
            Request::LeaseRenew { id } => self
                .lease_renew(id)
                .map(|ttl| Response::LeaseRenewed { id, ttl }),
            Request::LeaseCheckpoint { checkpoints } => {
                self.lease_checkpoint(&checkpoints);
                Ok(Response::LeaseCheckpointed)
            }
        })
    }
}
