//! Raft's storage adapter: Raft's durable state (entries, hard state, snapshots) on the
//! engine-neutral `storage` crate. The WAL's records are Raft's here — their payloads
//! and their replay live in this crate, not in `storage` and not in the sans-IO `raft`
//! core, which does no I/O.
//!
//! The on-disk format and the recovery decision table are in `docs/storage.md`.
//!
//! ```
//! use raft::{Entry, EntryKind, EntryWrite, HardState, IoId, LogIndex, PersistRequest, Term};
//! use raft_storage::{DiskStorage, RaftStorage};
//! use storage::{SimDisk, StorageOptions};
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

mod disk;
mod records;

pub use disk::{save_snapshot_file, DiskStorage};

use raft::{ChunkRequest, LogIndex, PersistRequest, Recovered, SnapshotMeta, Term};
use storage::{SnapshotChunk, SnapshotId, StorageError};

/// The engine name written in every WAL segment header.
pub const ENGINE: &str = <raft::RaftNode as engine::Engine>::NAME;

/// The storage name of Raft's snapshot `meta` (its epoch is the term).
pub fn id_of(meta: SnapshotMeta) -> SnapshotId {
    SnapshotId {
        index: meta.index.0,
        epoch: meta.term.0,
    }
}

/// Raft's snapshot meta for a stored snapshot's name.
pub fn meta_of(id: SnapshotId) -> SnapshotMeta {
    SnapshotMeta {
        index: LogIndex(id.index),
        term: Term(id.epoch),
    }
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

    /// The chunk that Raft's `request` names, in the engine contract's words (`None`
    /// once storage no longer holds that snapshot).
    fn read_chunk(
        &mut self,
        request: &ChunkRequest,
    ) -> Result<Option<engine::Chunk>, StorageError> {
        let read = self.read_snapshot_chunk(request.meta, request.offset, request.max_len)?;
        Ok(read.map(|c| engine::Chunk {
            data: c.data,
            checksum: c.checksum,
        }))
    }
}
