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
//!
//! Leases are replicated state too: each lease's TTL, the remaining TTL of its last
//! checkpoint, and the keys attached to it. When a lease expires is not: the leader's
//! [`Lessor`] counts ticks and proposes the revoke. Watchers read the events of the
//! writes as they apply ([`Store::take_events`]) or from the history
//! ([`Store::events_since`]).
//!
//! ```
//! use kv::{EventKind, KvError, PutRequest, Request, Response, Store};
//!
//! let mut s = Store::new();
//! s.set_record_events(true);
//! // A grant of id 0 through the log: the store picks the id from the log index.
//! let Some(Ok(Response::LeaseGranted { id, ttl: 10, .. })) =
//!     s.apply(1, Request::LeaseGrant { id: 0, ttl: 10 })
//! else {
//!     panic!("grant refused")
//! };
//! for (index, key) in [(2, "a"), (3, "b")] {
//!     let (key, value) = (key.into(), b"v".to_vec());
//!     let put = PutRequest { key, value, lease: id, ..Default::default() };
//!     s.apply(index, Request::Put(put)).unwrap().unwrap();
//! }
//! assert_eq!(s.lease(id).unwrap().keys, [b"a".to_vec(), b"b".to_vec()]);
//! // Revoking deletes both keys at one revision.
//! let revoked = s.apply(4, Request::LeaseRevoke { id });
//! assert_eq!(revoked, Some(Ok(Response::LeaseRevoked { revision: 4 })));
//! let events = s.take_events();
//! assert_eq!(events.len(), 4);
//! for e in &events[2..] {
//!     assert_eq!((e.kind, e.kv.mod_revision), (EventKind::Delete, 4));
//! }
//! let gone = s.apply(5, Request::LeaseRenew { id }).unwrap().unwrap_err();
//! assert_eq!(gone, KvError::LeaseNotFound);
//! assert_eq!(gone.to_string(), "etcdserver: requested lease not found");
//! ```
#![deny(missing_docs)]

mod apply;
pub mod command;
mod events;
mod lease;
mod lessor;
mod ops;
#[cfg(feature = "planted-bugs")]
mod planted;
mod snapshot;
mod store;
mod types;

pub use apply::{Request, Response};
pub use events::{Event, EventBatch, EventKind};
pub use lease::{LeaseInfo, MAX_LEASE_TTL};
pub use lessor::{Lessor, LessorOptions};
pub use ops::MAX_TXN_OPS;
#[cfg(feature = "planted-bugs")]
pub use planted::KvBug;
pub use snapshot::{SnapshotEnd, SnapshotWriter};
pub use store::{SnapshotError, Store};
pub use types::*;
