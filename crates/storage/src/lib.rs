//! Durable storage for Raft: a segmented write-ahead log (entries and hard state),
//! snapshot files, and the small [`Backend`] seam beneath them with a real file
//! implementation ([`FileBackend`]) and a fault-injecting one ([`SimDisk`]).
//!
//! The on-disk format and the recovery decision table are in `docs/storage.md`.
//!
//! ```
//! use raft::{Entry, EntryKind, EntryWrite, HardState, IoId, LogIndex, PersistRequest, Term};
//! use storage::{DiskStorage, RaftStorage, SimDisk, StorageOptions};
//!
//! let (mut s, recovered) = DiskStorage::open(SimDisk::new(1), StorageOptions { segment_bytes: 4096, preallocate: true }).unwrap();
//! assert!(recovered.entries.is_empty());
//! let entry = Entry { term: Term(1), index: LogIndex(1), kind: EntryKind::Command(b"x".to_vec().into()) };
//! s.write(&PersistRequest {
//!     io: IoId(1),
//!     hard_state: Some(HardState { term: Term(1), vote: None, commit: LogIndex(0) }),
//!     snapshot: None,
//!     entries: Some(EntryWrite { from: LogIndex(1), entries: vec![entry.clone()] }),
//! }).unwrap();
//! s.sync().unwrap(); // one write, one fdatasync
//! s.backend_mut().crash(); // power loss: synced data survives
//! let r = s.recover().unwrap();
//! assert_eq!(r.entries, vec![entry]);
//! ```
#![deny(missing_docs)]

mod backend;
mod direct;
mod disk;
mod error;
mod faulty;
mod file;
mod record;
mod simdisk;
mod snapfile;
mod snapstream;
mod wal;

pub use backend::{Backend, IoError, BULK_SYNC_EVERY};
pub use disk::{save_snapshot_file, DiskStorage, StorageOptions};
pub use error::StorageError;
pub use faulty::{FaultPlan, FaultyBackend};
pub use file::FileBackend;
pub use record::{decode, encode, Decoded, Record};
pub use simdisk::{DiskFaults, SimDisk};
pub use snapstream::SnapshotStream;
pub use wal::{prepare_segment, PREPARED_SEGMENT};

use raft::{PersistRequest, Recovered, SnapshotMeta};

/// Part of a stored snapshot, read for an InstallSnapshot chunk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotChunk {
    /// The bytes.
    pub data: Vec<u8>,
    /// CRC32C of the snapshot's whole data, as recorded when it was stored.
    pub checksum: u32,
}

/// Durable storage for one Raft node: what drivers (the simulator, the server) write
/// the core's persist requests through.
///
/// To ensure correctness:
/// - `write` may buffer; nothing it wrote is durable until a later `sync` returns `Ok`;
/// - after `sync` returns `Ok`, every earlier write survives any crash;
/// - writes become durable in the order they were made (a crash keeps a prefix);
/// - an error from `write` or `sync` is final: the caller stops the node (fail-stop)
///   and never retries a failed sync.
pub trait RaftStorage {
    /// Buffers a persist request.
    fn write(&mut self, request: &PersistRequest) -> Result<(), StorageError>;
    /// Makes every earlier write durable.
    fn sync(&mut self) -> Result<(), StorageError>;
    /// Reads back the durable state, as a restarting node sees it.
    fn recover(&mut self) -> Result<Recovered, StorageError>;
    /// Up to `max` bytes of the written snapshot `meta` from `offset`, for an
    /// InstallSnapshot chunk; `None` once storage no longer holds it. Storage keeps the
    /// latest snapshot and the one before it, so a transfer under way survives one
    /// newer snapshot.
    fn read_snapshot_chunk(
        &mut self,
        meta: SnapshotMeta,
        offset: u64,
        max: usize,
    ) -> Result<Option<SnapshotChunk>, StorageError>;
}
