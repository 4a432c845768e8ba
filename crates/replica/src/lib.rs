//! The replica: one sans-IO owner of a consensus engine, a state machine and every
//! client request in flight, driven alike by the server and the simulator.
//!
//! # Glossary
//! - **client token** (`C`): whatever the driver needs to answer a client (a reply
//!   channel in the server, a client and attempt number in the simulator). The replica
//!   keeps it until the request is answered, and hands it back in a [`Reply`].
//! - **request id**: a number the replica appends to every command it submits, so
//!   that it recognises its own commands when they are applied — a proposer by index
//!   and id, a follower that forwarded a command by id alone.
//! - **redirect**: the request never entered the order here; retrying is safe.
//! - **unknown**: the request may or may not have taken effect (leadership changed, a
//!   snapshot covered it): etcd's "leader changed".
//!
//! # Driving a replica
//! Feed it ([`Replica::tick`], [`Replica::step`], [`Replica::submit`],
//! [`Replica::read`], [`Replica::on_persisted`]); then call [`Replica::take_effects`]
//! until it is empty and carry out each [`Action`] in order (send, persist and then
//! report with `on_persisted`, read a snapshot chunk and hand it back); answer every
//! [`Reply`] from [`Replica::take_replies`]. Committed commands are applied to the state
//! machine inside `take_effects`, and reads are released once it has applied far
//! enough.
#![deny(missing_docs)]

mod access;
mod policy;
mod replica;

pub use policy::SnapshotPolicy;
pub use replica::{
    Action, AppliedItem, ChangeApplied, Outcome, Refused, Replica, ReplicaOptions, Reply,
};

#[cfg(feature = "planted-bugs")]
pub use replica::ReplicaBug;

#[cfg(test)]
mod tests;
