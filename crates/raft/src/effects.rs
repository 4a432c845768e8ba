//! What the driver must do after feeding the node: the output half of the sans-IO contract.

use crate::message::Message;
use crate::types::{
    Entry, HardState, IoId, LogIndex, NodeId, Payload, Snapshot, SnapshotMeta, Term,
};

/// A write the driver must make durable, then report with `on_persisted(io)`.
///
/// Apply the parts in this order, so that any prefix of them that survives a crash is a
/// state Raft can restart from: `hard_state` first (a log must never hold an entry of a
/// term newer than the durable term, or a lost vote could be cast twice), then
/// `snapshot` (store it, drop the log entries it covers), then `entries` (truncate the
/// log at `entries.from`, then append). A durable commit index that outruns the
/// surviving log is clamped at restart. Requests complete in `io` order: reporting `io`
/// durable reports every earlier one too.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PersistRequest {
    /// Names this request.
    pub io: IoId,
    /// A snapshot to store (or one the driver already stored); entries through its
    /// index may be discarded.
    pub snapshot: Option<SnapshotWrite>,
    /// Log suffix to write.
    pub entries: Option<EntryWrite>,
    /// New hard state.
    pub hard_state: Option<HardState>,
}

/// The snapshot part of a [`PersistRequest`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SnapshotWrite {
    /// Store this snapshot.
    Store(Snapshot),
    /// The driver already made this snapshot durable in storage itself
    /// ([`crate::RaftNode::compact_saved`]): only drop what it covers.
    Saved(SnapshotMeta),
}

impl SnapshotWrite {
    /// Which snapshot.
    pub fn meta(&self) -> SnapshotMeta {
        match self {
            SnapshotWrite::Store(s) => s.meta,
            SnapshotWrite::Saved(m) => *m,
        }
    }
}

/// Replace the log from `from` onwards by `entries` (which start at `from`, or are empty).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntryWrite {
    /// First index overwritten; everything stored at or after it is dropped first.
    pub from: LogIndex,
    /// New entries, contiguous from `from`.
    pub entries: Vec<Entry>,
}

/// Something committed, to be applied to the state machine in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Apply {
    /// A committed entry.
    Entry(Entry),
    /// Replace the state machine's state by this snapshot.
    Snapshot(Snapshot),
    /// A committed membership change.
    Config {
        /// Its index.
        index: LogIndex,
        /// The change.
        change: engine::ConfChange,
        /// The membership after it.
        membership: engine::Membership,
    },
}

/// One thing the driver must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Write to stable storage, then call `on_persisted`.
    Persist(PersistRequest),
    /// Send a message. Messages that promise durability are only emitted once it holds.
    Send {
        /// Destination.
        to: NodeId,
        /// The message.
        message: Message,
    },
    /// Read a chunk of a stored snapshot and send it: the core keeps no snapshot bytes
    /// once they are handed to storage.
    SendSnapshotChunk {
        /// Destination.
        to: NodeId,
        /// What to read, and the message it goes into.
        chunk: ChunkRequest,
    },
    /// Apply committed state, in order.
    Apply(Apply),
    /// The read `ctx` may be served once the state machine has applied `index`.
    ReadReady {
        /// The driver's read context.
        ctx: u64,
        /// Apply index the read must wait for.
        index: LogIndex,
    },
    /// The read `ctx` cannot be confirmed here (leadership lost); retry elsewhere.
    ReadAborted {
        /// The driver's read context.
        ctx: u64,
    },
}

/// An InstallSnapshot chunk to read from storage: up to `max_len` bytes of the stored
/// snapshot `meta` from `offset`. The driver sends [`ChunkRequest::into_message`] with
/// the bytes and the CRC32C of the whole snapshot that storage recorded; if storage no
/// longer holds `meta`, it calls `RaftNode::snapshot_unavailable` instead.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChunkRequest {
    /// The snapshot.
    pub meta: SnapshotMeta,
    /// Byte offset within its data.
    pub offset: u64,
    /// Most bytes to send.
    pub max_len: usize,
    /// The snapshot's size.
    pub total_len: u64,
    /// The leader's term.
    pub term: Term,
    /// Read-confirmation round, as in `Append`.
    pub read_seq: u64,
}

impl ChunkRequest {
    /// The message carrying `data` read at this request's offset.
    pub fn into_message(self, data: Payload, checksum: u32) -> Message {
        Message::Snapshot {
            term: self.term,
            meta: self.meta,
            offset: self.offset,
            total_len: self.total_len,
            data,
            checksum,
            read_seq: self.read_seq,
        }
    }
}
