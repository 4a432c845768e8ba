//! A deterministic MVCC key-value state machine with etcd v3 semantics: revisions,
//! per-key create/mod revision and version, Range (ranges, limits, sorting, filters,
//! past revisions), Put, DeleteRange, Txn (compares, both branches, nested txns, reads
//! that see earlier writes), Compact, HashKV, whole-state snapshots, and apply that is
//! idempotent per Raft log index. No I/O, no clock.
//!
//! ```
//! use kv::{PutRequest, RangeRequest, Store};
//!
//! let mut s = Store::new();
//! assert_eq!(s.revision(), 1);
//! s.put(&PutRequest { key: b"foo".to_vec(), value: b"bar".to_vec(), ..Default::default() }).unwrap();
//! let r = s.range(&RangeRequest { key: b"foo".to_vec(), ..Default::default() }).unwrap();
//! assert_eq!((r.revision, r.kvs[0].version, r.kvs[0].create_revision), (2, 1, 2));
//! let err = s.range(&RangeRequest { key: b"foo".to_vec(), revision: 9, ..Default::default() }).unwrap_err();
//! assert_eq!(err.to_string(), "etcdserver: mvcc: required revision is a future revision");
//! ```
#![deny(missing_docs)]

mod apply;
pub mod command;
mod events;
mod lease;
mod lessor;
mod ops;
mod snapshot;
mod store;
mod types;

pub use apply::{Request, Response};
pub use events::{Event, EventBatch, EventKind};
pub use lease::{LeaseInfo, MAX_LEASE_TTL};
pub use lessor::{Lessor, LessorOptions};
pub use ops::MAX_TXN_OPS;
pub use snapshot::{SnapshotEnd, SnapshotWriter};
pub use store::{SnapshotError, Store};
pub use types::*;
