//! Durable storage that knows no engine: a segmented write-ahead log of typed,
//! checksummed records ([`Wal`]) whose payloads the engine's adapter encodes, snapshot
//! files ([`snapfile`], [`SnapshotStream`]), and the small [`Backend`] seam beneath them
//! with a real file implementation ([`FileBackend`]) and a fault-injecting one
//! ([`SimDisk`]). Raft's adapter is the `raft-storage` crate.
//!
//! The on-disk format and the recovery decision table are in `docs/storage.md`.
//!
//! ```
//! use storage::{SimDisk, StorageOptions, Wal};
//!
//! let opts = StorageOptions { segment_bytes: 4096, preallocate: true };
//! let mut disk = SimDisk::new(1);
//! let mut wal = Wal::open(&mut disk, "demo", opts, &mut |_, _| Ok(())).unwrap();
//! wal.push(1, 1, |out| out.extend_from_slice(b"first"));
//! wal.sync(&mut disk).unwrap(); // one write, one fdatasync
//! disk.crash(); // power loss: synced data survives
//! let mut seen = Vec::new();
//! Wal::open(&mut disk, "demo", opts, &mut |kind, payload| {
//!     seen.push((kind, payload.to_vec()));
//!     Ok(())
//! })
//! .unwrap();
//! assert_eq!(seen, vec![(1, b"first".to_vec())]);
//! // Another engine's member refuses the log.
//! assert!(Wal::open(&mut disk, "other", opts, &mut |_, _| Ok(())).is_err());
//! ```
#![deny(missing_docs)]

mod backend;
mod direct;
mod error;
mod faulty;
mod file;
mod record;
mod simdisk;
pub mod snapfile;
mod snapstream;
mod wal;

pub use backend::{Backend, IoError, BULK_SYNC_EVERY};
pub use error::StorageError;
pub use faulty::{FaultPlan, FaultyBackend};
pub use file::FileBackend;
pub use record::{decode, encode, Decoded, KIND_SEGMENT_HEADER};
pub use simdisk::{DiskFaults, SimDisk};
pub use snapfile::{SnapshotId, StoredSnapshot};
pub use snapstream::SnapshotStream;
pub use wal::{prepare_segment, Replay, StorageOptions, Wal, PREPARED_SEGMENT, WAL_FORMAT};

/// Part of a stored snapshot, read for an InstallSnapshot chunk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotChunk {
    /// The bytes.
    pub data: Vec<u8>,
    /// CRC32C of the snapshot's whole data, as recorded when it was stored.
    pub checksum: u32,
}
