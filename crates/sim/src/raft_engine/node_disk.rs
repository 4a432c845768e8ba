//! A node's disk in the simulator: the fast in-memory model, or the real write-ahead
//! log (`raft_storage::DiskStorage`) on the fault-injecting `storage::SimDisk`.

use super::mem::{CrashMode, MemStorage};
use engine::Chunk;
use raft::{ChunkRequest, HardState, PersistRequest, Recovered};
use raft_storage::{DiskStorage, RaftStorage};
use seedrng::Rng;
use storage::{Backend, DiskFaults, SimDisk, StorageError, StorageOptions};

#[derive(Debug)]
pub(crate) enum NodeDisk {
    Model(MemStorage),
    Wal(Box<DiskStorage<SimDisk>>),
}

impl NodeDisk {
    pub(crate) fn model() -> NodeDisk {
        NodeDisk::Model(MemStorage::new())
    }

    pub(crate) fn wal(seed: u64, segment_bytes: u64) -> NodeDisk {
        let opts = StorageOptions {
            segment_bytes,
            preallocate: segment_bytes <= 64 << 10,
        };
        match DiskStorage::open(SimDisk::new(seed), opts) {
            Ok((s, _)) => NodeDisk::Wal(Box::new(s)),
            Err(e) => panic!("an empty simulated disk must open: {e}"),
        }
    }

    /// Power loss.
    pub(crate) fn crash(&mut self, mode: CrashMode, rng: &mut Rng) {
        match self {
            NodeDisk::Model(m) => m.crash(mode, rng),
            NodeDisk::Wal(w) => {
                let disk = w.backend_mut();
                disk.faults = DiskFaults::default();
                disk.crash();
            }
        }
    }

    fn durable_hard_state(&self) -> HardState {
        match self {
            NodeDisk::Model(m) => m.durable_hard_state(),
            NodeDisk::Wal(w) => w.durable_hard_state(),
        }
    }

    /// The commit index as of the last successful sync.
    pub(crate) fn durable_commit(&self) -> u64 {
        self.durable_hard_state().commit.0
    }

    /// The chunk of a stored snapshot that `request` names; `None` once it is gone.
    pub(crate) fn read_chunk(
        &mut self,
        request: &ChunkRequest,
    ) -> Result<Option<Chunk>, StorageError> {
        match self {
            NodeDisk::Model(m) => m.read_chunk(request),
            NodeDisk::Wal(w) => w.read_chunk(request),
        }
    }

    /// The disk's files (real WAL only), for traces.
    pub(crate) fn files(&mut self) -> Vec<String> {
        match self {
            NodeDisk::Model(_) => Vec::new(),
            NodeDisk::Wal(w) => w.backend_mut().list().unwrap_or_default(),
        }
    }

    /// Injects I/O error rates (real WAL only); false if this disk cannot.
    pub(crate) fn set_faults(&mut self, faults: DiskFaults) -> bool {
        match self {
            NodeDisk::Model(_) => false,
            NodeDisk::Wal(w) => {
                w.backend_mut().faults = faults;
                true
            }
        }
    }

    /// Flips a bit anywhere in stored data; returns the file hit.
    pub(crate) fn flip_random_bit(&mut self, rng: &mut Rng) -> Option<String> {
        let NodeDisk::Wal(w) = self else { return None };
        let disk = w.backend_mut();
        let names = disk.list().ok()?;
        let name = rng.pick(&names)?.clone();
        let len = disk.len(&name).ok()?;
        if len == 0 {
            return None;
        }
        let offset = rng.range(0, len);
        disk.flip_bit(&name, offset, rng.range(0, 8) as u8)
            .then_some(name)
    }
}

/// The storage verbs the host drives (Raft's `RaftStorage`, on either disk).
impl NodeDisk {
    /// Buffers a durable write.
    pub(crate) fn write(&mut self, request: &PersistRequest) -> Result<(), StorageError> {
        match self {
            NodeDisk::Model(m) => m.write(request),
            NodeDisk::Wal(w) => w.write(request),
        }
    }

    /// Makes every earlier write durable.
    pub(crate) fn sync(&mut self) -> Result<(), StorageError> {
        match self {
            NodeDisk::Model(m) => m.sync(),
            NodeDisk::Wal(w) => w.sync(),
        }
    }

    /// What a restarting node reads back.
    pub(crate) fn recover(&mut self) -> Result<Recovered, StorageError> {
        match self {
            NodeDisk::Model(m) => m.recover(),
            NodeDisk::Wal(w) => w.recover(),
        }
    }
}
