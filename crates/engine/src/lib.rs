//! The contracts between Synod's layers: what a consensus engine offers
//! ([`Engine`]), what a replicated state machine offers ([`StateMachine`]), and what
//! durable storage offers a driver ([`Storage`]).
//!
//! # Glossary (engine-neutral words)
//! - **engine**: a sans-IO consensus core (Raft, Multi-Paxos, PBFT, primary-backup). It
//!   orders commands; it never does I/O, never reads a clock, never spawns.
//! - **index**: a position in the agreed order — Raft's log index, Paxos's slot, PBFT's
//!   sequence number. The first command has index 1; 0 means "none".
//! - **epoch**: the engine's leadership clock — Raft's term, a Paxos ballot's round,
//!   PBFT's view. It never decreases on a node, across restarts too; it is etcd's
//!   `raft_term` header.
//! - **leader**: the node that orders commands (Raft leader, Paxos distinguished
//!   proposer, PBFT primary, the primary of primary-backup).
//! - **io id**: names one durable write the driver must make; effects that promise
//!   durability are released only once it is reported with `on_persisted`.
//! - **committed**: decided and durable here, in order: what the state machine applies.
//!
//! # Driving an engine
//! Feed inputs ([`Engine::tick`], [`Engine::step`], [`Engine::submit`],
//! [`Engine::read`], [`Engine::on_persisted`]); then drain [`Engine::take_effects`] and
//! carry out each [`Effect`] in order. The `replica` crate does this bookkeeping once
//! for every driver.
#![deny(missing_docs)]

mod effect;
mod ids;
mod machine;
mod membership;
mod storage;

pub use effect::{Committed, Effect};
pub use ids::{Index, IoId, NodeId, Payload};
pub use machine::{Applied, StateMachine};
pub use membership::{ConfChange, ConfChangeError, Member, Membership};
pub use storage::{Chunk, Fatal, Storage};

use std::fmt;

/// Roles every engine can report, in engine-neutral words.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Follows a leader (Raft follower, Paxos acceptor/learner, PBFT backup), or waits
    /// for one.
    Follower,
    /// Trying to become leader (Raft candidate or pre-candidate, Paxos phase 1, PBFT
    /// view change).
    Candidate,
    /// Orders commands (Raft leader, Paxos distinguished proposer, PBFT primary).
    Leader,
}

impl Role {
    /// A lower-case name for status pages.
    pub fn name(self) -> &'static str {
        match self {
            Role::Follower => "follower",
            Role::Candidate => "candidate",
            Role::Leader => "leader",
        }
    }
}

/// A read-only summary of an engine, for drivers, checkers and status pages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Status {
    /// This node.
    pub id: NodeId,
    /// Its role.
    pub role: Role,
    /// The engine's own name for the role (`"pre-candidate"`, `"primary"`, …).
    pub role_detail: &'static str,
    /// The leadership clock; never decreases ([`Engine`] glossary).
    pub epoch: u64,
    /// The leader this node believes in.
    pub leader: Option<NodeId>,
    /// Highest index known committed.
    pub committed: Index,
    /// Highest index handed out for apply.
    pub applied: Index,
    /// Highest index held (in memory).
    pub last_index: Index,
    /// Highest index durable locally.
    pub persisted: Index,
    /// Index covered by the latest snapshot (0: none).
    pub snapshot: Index,
}

/// Where a submitted command went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Submitted {
    /// This node ordered it at `index` (it leads).
    Accepted {
        /// The position it was given.
        index: Index,
    },
    /// Handed to the leader, which orders it as its own; nothing reports back, and a
    /// command lost on the way is never committed.
    Forwarded,
}

/// This node cannot take the request; `leader` is a hint of who can.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Redirect {
    /// The leader this node believes in, if any.
    pub leader: Option<NodeId>,
}

impl fmt::Display for Redirect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.leader {
            Some(l) => write!(f, "not the leader (leader is {l})"),
            None => f.write_str("not the leader (no leader known)"),
        }
    }
}

/// A leadership hand-over that could not start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransferRefused {
    /// Only the leader hands leadership over.
    NotLeader(Redirect),
    /// The target is not a voting member of the group.
    NotAVoter(NodeId),
}

impl fmt::Display for TransferRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TransferRefused::NotLeader(r) => r.fmt(f),
            TransferRefused::NotAVoter(n) => write!(f, "{n} is not a voting member"),
        }
    }
}

/// A membership change the engine would not start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChangeRefused {
    /// Only the leader orders changes.
    NotLeader(Redirect),
    /// An earlier change is not committed yet (or this leader has not yet committed an
    /// entry of its own epoch): one change at a time.
    InProgress,
    /// The change does not apply to the membership in force.
    Invalid(ConfChangeError),
}

impl fmt::Display for ChangeRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChangeRefused::NotLeader(r) => r.fmt(f),
            ChangeRefused::InProgress => f.write_str("a membership change is in progress"),
            ChangeRefused::Invalid(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for ChangeRefused {}

/// A write reported durable that the engine never asked for (a driver bug).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnknownIo(pub IoId);

impl fmt::Display for UnknownIo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "io {} was never requested", self.0)
    }
}

/// A snapshot hand-over the engine refused (stale, or ahead of apply).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotRefused(pub String);

impl fmt::Display for SnapshotRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "snapshot refused: {}", self.0)
    }
}

/// A message that did not decode; the transport drops it and counts it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodeError(pub &'static str);

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed message: {}", self.0)
    }
}

impl std::error::Error for DecodeError {}

/// A sans-IO consensus engine: the verbs every core implements, so that one replica
/// and two drivers (server, simulator) serve them all.
///
/// To ensure correctness, a driver:
/// - carries out effects in the order `take_effects` returns them;
/// - reports a [`Effect::Persist`] with `on_persisted` only once it is durable, and in
///   io order (reporting an io reports every earlier one);
/// - applies [`Effect::Apply`] items in order, each exactly once per incarnation.
///
/// The engine holds back every message that promises durability until the write it
/// depends on is reported: the ordering rule is the engine's data.
pub trait Engine: Sized {
    /// Messages between nodes of one group.
    type Message: Clone + fmt::Debug + Send + 'static;
    /// One durable write (the engine's own record type; storage keeps it opaque or
    /// through the engine's adapter).
    type Persist: fmt::Debug + Send;
    /// A request to read part of a stored snapshot and send it to a peer.
    type ChunkRequest: fmt::Debug + Send;
    /// Why a message was refused (the node is unchanged by it).
    type StepError: fmt::Display + fmt::Debug;

    /// The engine's name, as the peer handshake and `--engine` spell it.
    const NAME: &'static str;

    /// One logical time unit.
    fn tick(&mut self);
    /// A message from peer `from`.
    fn step(&mut self, from: NodeId, message: Self::Message) -> Result<(), Self::StepError>;
    /// Orders a client command, or hands it to the leader.
    fn submit(&mut self, command: Payload) -> Result<Submitted, Redirect>;
    /// Asks for a linearizable read point: [`Effect::ReadReady`] with `ctx` follows once
    /// it is safe, or [`Effect::ReadAborted`].
    fn read(&mut self, ctx: u64) -> Result<(), Redirect>;
    /// Starts handing leadership to `to` (a voter), without waiting for a timeout: the
    /// leader changes once `to` wins ([`Engine::status`]); a hand-over that does not
    /// finish within about an election timeout is dropped. To itself: nothing to do.
    fn transfer_leadership(&mut self, to: NodeId) -> Result<(), TransferRefused>;
    /// Orders a membership change (leader only); it takes effect as the engine
    /// defines, and is applied as [`Committed::Membership`] at the index returned.
    fn change_membership(&mut self, change: ConfChange) -> Result<Index, ChangeRefused>;
    /// The membership this node works with now (it may include a change not yet
    /// committed).
    fn membership(&self) -> &Membership;
    /// Storage made `io` (and every earlier io) durable.
    fn on_persisted(&mut self, io: IoId) -> Result<(), UnknownIo>;
    /// Everything the driver must do now, in order.
    fn take_effects(&mut self) -> Vec<Effect<Self>>;
    /// A summary.
    fn status(&self) -> Status;
    /// The leader's view of `peer`'s progress (its highest index known to match).
    fn peer_progress(&self, peer: NodeId) -> Option<Index>;

    /// Commands that `message` asks this node to order on a peer's behalf (a forwarded
    /// proposal). The replica validates them before stepping the message, so that a
    /// command that the state machine cannot decode never enters the log.
    fn commands_in(message: &Self::Message) -> Vec<&[u8]>;

    /// The epoch of the command at `index`, while the engine can still name it: what a
    /// snapshot taken at `index` is named by.
    fn epoch_at(&self, index: Index) -> Option<u64>;
    /// The state machine, having applied through `index`, serialized itself as `data`:
    /// the engine may forget what `index` covers and persist the snapshot.
    fn snapshot_taken(&mut self, index: Index, data: Payload) -> Result<(), SnapshotRefused>;
    /// Bytes the engine needs after the state machine's own in a snapshot of `index`
    /// that the driver writes itself (then hands over with `snapshot_saved`); `None`
    /// once the engine can no longer name `index`.
    fn snapshot_trailer(&self, index: Index) -> Option<Vec<u8>>;
    /// As `snapshot_taken`, for a snapshot of `len` bytes (the state machine's, then
    /// [`Engine::snapshot_trailer`]) the driver already made durable in storage itself.
    fn snapshot_saved(&mut self, index: Index, len: u64) -> Result<(), SnapshotRefused>;
    /// The chunk a [`Effect::ReadSnapshotChunk`] asked for, read from storage (`None`:
    /// storage no longer holds that snapshot).
    fn on_snapshot_chunk(&mut self, to: NodeId, request: Self::ChunkRequest, chunk: Option<Chunk>);

    /// Encodes a message for the transport.
    fn encode_message(message: &Self::Message, out: &mut Vec<u8>);
    /// Decodes a message from the transport; garbage gives an error, never a panic.
    fn decode_message(bytes: &[u8]) -> Result<Self::Message, DecodeError>;
    /// A short name for traces.
    fn message_kind(message: &Self::Message) -> &'static str;
}
