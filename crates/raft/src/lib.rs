//! A sans-IO, deterministic Raft core.
//!
//! New here? The [`tutorial`] drives a three-node cluster by hand: an election, a
//! write, a restart from disk, a linearizable read and a snapshot, each a doctest.
//!
//! # Glossary (Raft's words)
//! - **term**: a logical epoch; at most one leader is elected per term.
//! - **vote**: the one candidate a node supports in a term; durable before it is sent.
//! - **pre-vote**: a probe that asks "would you vote for me?" without raising terms, so a
//!   node returning from a partition cannot depose a healthy leader.
//! - **commit index**: highest log index known to be durable on a majority and decided.
//! - **match / next index**: the leader's knowledge of each follower's log.
//! - **ReadIndex**: a linearizable read served at the commit index once a quorum has
//!   confirmed, after the read arrived, that this node is still leader.
//! - **snapshot**: the state machine's state at an index; the log before it is dropped.
//! - **leadership transfer**: the leader catches a chosen follower up and tells it to
//!   campaign at once (`TimeoutNow`), so leadership moves without an election timeout.
//!
//! # Driving a node
//! The node never does I/O, never reads a clock and draws randomness only from
//! [`Config::seed`]. A driver (the simulator or the server) loops:
//! 1. feed inputs: [`RaftNode::tick`] every tick, [`RaftNode::step`] for each message,
//!    [`RaftNode::propose`] / [`RaftNode::read_index`] for clients;
//! 2. call [`RaftNode::take_effects`] and carry out each [`Effect`] in order:
//!    write [`Effect::Persist`] requests and, once durable, call
//!    [`RaftNode::on_persisted`]; send [`Effect::Send`] messages; for
//!    [`Effect::SendSnapshotChunk`], read the chunk back from storage and send it (the
//!    core keeps no snapshot bytes once storage has them); apply [`Effect::Apply`] items
//!    to the state machine; serve [`Effect::ReadReady`] reads once the state machine has
//!    applied their index;
//! 3. now and then hand over a snapshot with [`RaftNode::compact`].
//!
//! Messages that promise durability (a granted vote, an append acknowledgement) are
//! held inside the node until `on_persisted` reports the write they depend on: the
//! ordering rule is data, not a comment.
//!
//! ```
//! use raft::{Config, Effect, NodeId, RaftNode, Role};
//!
//! // A single-node cluster: it elects itself once its vote is durable.
//! let mut node = RaftNode::new(Config::new(NodeId(1), vec![NodeId(1)])).unwrap();
//! let mut applied = Vec::new();
//! let mut drive = |node: &mut RaftNode, applied: &mut Vec<raft::Apply>| {
//!     loop {
//!         let effects = node.take_effects();
//!         if effects.is_empty() { break; }
//!         for e in effects {
//!             match e {
//!                 // A real driver writes and fsyncs here.
//!                 Effect::Persist(req) => node.on_persisted(req.io).unwrap(),
//!                 Effect::Send { .. } | Effect::SendSnapshotChunk { .. } => {
//!                     unreachable!("no peers")
//!                 }
//!                 Effect::Apply(a) => applied.push(a),
//!                 Effect::ReadReady { .. } | Effect::ReadAborted { .. } => {}
//!             }
//!         }
//!     }
//! };
//! while node.status().role != Role::Leader {
//!     node.tick();
//!     drive(&mut node, &mut applied);
//! }
//! let p = node.propose(b"set x=1".to_vec().into()).unwrap();
//! drive(&mut node, &mut applied);
//! assert_eq!(node.status().commit, p.index);
//! assert_eq!(applied.len(), 2); // the leader's no-op, then the command
//! ```
#![deny(missing_docs)]

pub use engine;
pub use engine::{ChangeRefused, ConfChange, Membership};

mod codec;
mod config;
mod contract;
mod durability;
mod effects;
mod election;
mod error;
mod follower;
mod leader;
mod log;
mod membership;
mod message;
mod node;
mod progress;
mod quorum;
mod read;
mod transfer;
mod types;

pub mod tutorial;

#[cfg(feature = "planted-bugs")]
pub use config::PlantedBug;
pub use config::{Config, ConfigError};
pub use effects::{Apply, ChunkRequest, Effect, EntryWrite, PersistRequest, SnapshotWrite};
pub use error::{ProposeError, RecoverError, SnapshotError, StepError, UnknownIo};
pub use membership::{split_stored_snapshot, stored_snapshot};
pub use message::{AppendOutcome, MalformedReason, Message};
pub use node::{Proposal, RaftNode, Recovered, Status};
pub use transfer::TransferError;
pub use types::{
    ConfigEntry, Entry, EntryKind, HardState, IoId, LogIndex, NodeId, Payload, Role, Snapshot,
    SnapshotMeta, Term,
};
