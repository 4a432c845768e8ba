//! The state-machine half of the contract: what the replica applies committed commands
//! to.

use crate::ids::Index;
use std::fmt;

/// The result of applying one committed command.
pub type Applied<M> = Result<<M as StateMachine>::Response, <M as StateMachine>::Error>;

/// A deterministic state machine: the same commands in the same order give the same
/// responses and the same [`StateMachine::digest`] on every replica.
///
/// To ensure correctness:
/// - `apply` never panics and never exits on any bytes: a command that does not decode
///   (the empty command never does) gets an error response and changes nothing,
///   identically on every replica;
/// - `apply` is idempotent per index: applying an index at or below the last one
///   applied returns `None` and changes nothing (a restart replays its log);
/// - `restore(snapshot())` gives a state with the same digest.
pub trait StateMachine {
    /// What a client gets back.
    type Response: Clone + fmt::Debug;
    /// A refused command (the state is unchanged); the same on every replica.
    type Error: Clone + fmt::Debug + fmt::Display;

    /// Checks, without changing anything, that `command` is well formed. The replica
    /// calls it before a command enters the log, on the node that orders it.
    fn validate(&self, command: &[u8]) -> Result<(), Self::Error>;
    /// Applies the committed `command` at `index`.
    fn apply(&mut self, index: Index, command: &[u8]) -> Option<Applied<Self>>;
    /// Records that `index` carried no command (a no-op of the engine).
    fn apply_noop(&mut self, index: Index);
    /// The index applied last.
    fn applied_index(&self) -> Index;
    /// The whole state, serialized.
    fn snapshot(&self) -> Vec<u8>;
    /// Replaces the state by a snapshot; a snapshot that does not decode is refused
    /// and the state is unchanged.
    fn restore(&mut self, data: &[u8]) -> Result<(), Self::Error>;
    /// A digest of the state, equal on replicas that applied the same commands.
    fn digest(&self) -> u64;

    /// Time-driven duties of a leader (etcd's lease expiry and lease checkpoints),
    /// called on every tick with whether this member leads. The replica submits the
    /// commands returned as its own writes; nobody waits for their answers. Default:
    /// none.
    fn on_tick(&mut self, leader: bool) -> Vec<Vec<u8>> {
        let _ = leader;
        Vec::new()
    }

    /// This member began (`true`) or stopped (`false`) leading.
    fn on_leadership(&mut self, leader: bool) {
        let _ = leader;
    }

    /// As leader, this member just took `command` into its order (a client's or one a
    /// peer forwarded); it will commit after every command ordered before it. `index`
    /// is the log index it was given, when the engine tells it at once (a command a
    /// peer forwarded inside a message is ordered as the engine steps: `None`).
    fn on_ordered(&mut self, index: Option<Index>, command: &[u8]) {
        let _ = (index, command);
    }

    /// What applying `command` now would answer, without changing anything (`None`:
    /// this machine cannot tell). Only the replica's planted-bug build asks, to answer
    /// a write before it commits.
    fn preview(&self, command: &[u8]) -> Option<Applied<Self>> {
        let _ = command;
        None
    }
}
