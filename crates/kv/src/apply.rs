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
    /// only begins here ([`Store::begin_compaction`]).
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
        })
    }
}
