//! The output half of the engine contract.

use crate::ids::{Index, IoId, NodeId, Payload};
use crate::{ConfChange, Engine, Membership};
use std::fmt;

/// Something committed, to be applied to the state machine in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Committed {
    /// A client command.
    Command {
        /// Its position.
        index: Index,
        /// The bytes submitted.
        command: Payload,
    },
    /// A position the engine filled itself (a new leader's no-op, a Paxos hole).
    Noop {
        /// Its position.
        index: Index,
    },
    /// A membership change took effect in the order here.
    Membership {
        /// Its position.
        index: Index,
        /// The change.
        change: ConfChange,
        /// The membership after it.
        membership: Membership,
    },
    /// Replace the state by this snapshot, taken after applying through `index`.
    Snapshot {
        /// The last index it covers.
        index: Index,
        /// The state machine's serialized state.
        data: Payload,
    },
}

impl Committed {
    /// The position this item brings the state machine to.
    pub fn index(&self) -> Index {
        match self {
            Committed::Command { index, .. }
            | Committed::Noop { index }
            | Committed::Membership { index, .. }
            | Committed::Snapshot { index, .. } => *index,
        }
    }
}

/// One thing the driver must do.
pub enum Effect<E: Engine> {
    /// Send a message to a peer. Messages that promise durability are only emitted once
    /// it holds.
    Send {
        /// Destination.
        to: NodeId,
        /// The message.
        message: E::Message,
    },
    /// Make `write` durable, then report `io` with `on_persisted`.
    Persist {
        /// Names the write.
        io: IoId,
        /// What to write.
        write: E::Persist,
    },
    /// Read part of a stored snapshot and hand it back with `on_snapshot_chunk`.
    ReadSnapshotChunk {
        /// The peer it goes to.
        to: NodeId,
        /// What to read.
        request: E::ChunkRequest,
    },
    /// Apply committed state, in order.
    Apply(Committed),
    /// The read `ctx` may be served once the state machine has applied `index`.
    ReadReady {
        /// The caller's read context.
        ctx: u64,
        /// Index the read must wait for.
        index: Index,
    },
    /// The read `ctx` cannot be confirmed here (leadership lost): retry elsewhere.
    ReadAborted {
        /// The caller's read context.
        ctx: u64,
    },
}

impl<E: Engine> fmt::Debug for Effect<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Effect::Send { to, message } => write!(f, "Send({to}, {message:?})"),
            Effect::Persist { io, write } => write!(f, "Persist({io}, {write:?})"),
            Effect::ReadSnapshotChunk { to, request } => {
                write!(f, "ReadSnapshotChunk({to}, {request:?})")
            }
            Effect::Apply(c) => write!(f, "Apply({c:?})"),
            Effect::ReadReady { ctx, index } => write!(f, "ReadReady({ctx}, {index})"),
            Effect::ReadAborted { ctx } => write!(f, "ReadAborted({ctx})"),
        }
    }
}
