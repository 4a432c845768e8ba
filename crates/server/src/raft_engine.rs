//! The Raft engine as a member runs it: the one module of the server that names Raft's
//! own types. It boots the engine from recovered storage and carries the engine's
//! durable records and snapshot chunks to and from the member's disk. Everything else
//! in the server speaks the engine contract ([`engine::Engine`]).

use engine::{Chunk, Fatal, Index};
use raft_storage::{DiskStorage, RaftStorage};
use storage::{FaultyBackend, FileBackend};

/// The consensus engine a member runs.
pub type MemberEngine = raft::RaftNode;

/// Raft's settings, as the member's configuration sets them.
pub type EngineConfig = raft::Config;

/// What storage recovered for the engine.
pub type Recovered = raft::Recovered;

/// A snapshot's name in storage.
pub type SnapshotMeta = raft::SnapshotMeta;

/// The storage a member runs on (faults only when configured).
pub type MemberStorage = DiskStorage<FaultyBackend<FileBackend>>;

/// The engine, restarted from what storage recovered.
pub fn boot(cfg: EngineConfig, recovered: Recovered) -> Result<MemberEngine, String> {
    raft::RaftNode::restart(cfg, recovered).map_err(|e| e.to_string())
}

/// Buffers one of the engine's durable writes.
pub fn write(storage: &mut MemberStorage, write: &raft::PersistRequest) -> Result<(), Fatal> {
    storage
        .write(write)
        .map_err(|e| Fatal::new("WAL write failed", e))
}

/// Makes every buffered write durable.
pub fn sync(storage: &mut MemberStorage) -> Result<(), Fatal> {
    storage
        .sync()
        .map_err(|e| Fatal::new("WAL fdatasync failed", e))
}

/// Reads the part of a stored snapshot that the engine asked for.
pub fn read_chunk(
    storage: &mut MemberStorage,
    request: &raft::ChunkRequest,
) -> Result<Option<Chunk>, Fatal> {
    storage
        .read_chunk(request)
        .map_err(|e| Fatal::new("reading a snapshot file failed", e))
}

/// The name of a snapshot cut after applying through `index`, with the epoch the engine
/// gives that index (`None`: the engine no longer holds it).
pub fn snapshot_meta(engine: &MemberEngine, index: Index) -> Option<SnapshotMeta> {
    let epoch = engine::Engine::epoch_at(engine, index)?;
    Some(raft::SnapshotMeta {
        index,
        term: raft::Term(epoch),
    })
}
