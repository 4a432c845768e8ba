//! Typed errors for every verb.

use crate::config::ConfigError;
use crate::message::MalformedReason;
use crate::types::{IoId, LogIndex, NodeId, Term};
use std::fmt;

/// A message was refused; the node's state is unchanged by it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StepError {
    /// The sender's id is 0, which names no node. (A message from a node outside this
    /// node's membership is no error: a leader is heeded, anything else dropped.)
    UnknownPeer(NodeId),
    /// A message that claims to come from this node.
    FromSelf,
    /// The message is structurally invalid.
    Malformed {
        /// Sender.
        from: NodeId,
        /// What is wrong.
        reason: MalformedReason,
    },
    /// A leader asked to overwrite an entry this node knows is committed.
    ConflictWithCommitted {
        /// Sender.
        from: NodeId,
        /// The committed index it conflicts with.
        index: LogIndex,
    },
    /// Another node claims leadership of this node's own term.
    DuplicateLeader {
        /// Sender.
        from: NodeId,
        /// The term.
        term: Term,
    },
}

/// A client request was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProposeError {
    /// Only the leader accepts proposals and reads; `leader` is a hint.
    NotLeader {
        /// The leader this node believes in, if any.
        leader: Option<NodeId>,
    },
}

/// The driver's snapshot hand-over was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SnapshotError {
    /// The snapshot covers entries not yet handed out for apply.
    NotApplied {
        /// Requested index.
        index: LogIndex,
        /// Highest index handed out for apply.
        applied: LogIndex,
    },
    /// The log is already compacted at or beyond `index`.
    Stale {
        /// Requested index.
        index: LogIndex,
        /// Current compaction point.
        compacted: LogIndex,
    },
}

/// Durable state handed to `restart` is inconsistent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecoverError {
    /// The configuration is invalid.
    Config(ConfigError),
    /// Entries are not contiguous after the snapshot.
    LogGap {
        /// Index expected next.
        expected: LogIndex,
        /// Index found.
        found: LogIndex,
    },
    /// Entry terms decrease, or exceed the hard state's term.
    BadEntryTerm {
        /// Offending index.
        index: LogIndex,
    },
    /// The stored snapshot does not end with the membership trailer Raft writes.
    BadSnapshot(&'static str),
}

/// `on_persisted` named an io the node never issued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnknownIo(pub IoId);

macro_rules! display_via_debug {
    ($($t:ty),*) => {$(
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{self:?}")
            }
        }
        impl std::error::Error for $t {}
    )*};
}
display_via_debug!(
    StepError,
    ProposeError,
    SnapshotError,
    RecoverError,
    UnknownIo
);
