//! Safety properties every engine gets, checked incrementally after every simulated
//! event: state-machine safety (one command per index, by hash, and one state per index,
//! by digest), apply order, commit and durable commit monotonic (across restarts for the
//! durable one), and an epoch that never decreases. Engine-specific properties (Raft's
//! election safety, log matching, leader completeness, commit rule) come from the
//! engine's adapter through [`EngineChecks`]; linearizability, lost acknowledged writes
//! and liveness after heal are checked over the clients' history (`run.rs`).

use engine::{Engine, Index, NodeId, Status};
use std::collections::BTreeMap;
use std::fmt;

/// A safety or liveness property that a run violated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The property's name.
    pub property: &'static str,
    /// What was observed.
    pub detail: String,
    /// Simulated time, microseconds.
    pub at_us: u64,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} violated at t={:.6}s: {}",
            self.property,
            self.at_us as f64 / 1e6,
            self.detail
        )
    }
}

/// What a check returns.
pub(crate) type Check = Result<(), Violation>;

/// A violation of `property` (the world stamps the time when it records it).
pub(crate) fn violated(property: &'static str, detail: String) -> Check {
    Err(Violation {
        property,
        detail,
        at_us: 0,
    })
}

/// The engine-specific checks an engine's adapter supplies: it sees every durable write,
/// every message sent, every restart and the engine after every event.
pub(crate) trait EngineChecks<E: Engine>: Default + fmt::Debug {
    /// What a node recovers from its disk on restart.
    type Recovered;
    /// `node` asked for the durable write `write`.
    fn on_persist(&mut self, node: NodeId, write: &E::Persist) -> Check;
    /// `from` sent `message` to `to`.
    fn on_send(&mut self, from: NodeId, to: NodeId, message: &E::Message) -> Check;
    /// `node` restarted from `recovered`.
    fn on_restart(&mut self, node: NodeId, recovered: &Self::Recovered) -> Check;
    /// An event touched the running `engine`.
    fn on_engine(&mut self, engine: &E) -> Check;
}

#[derive(Clone, Debug, Default)]
struct NodeWatch {
    committed: u64,
    applied: u64,
    durable_commit: u64,
    /// Highest epoch seen, across restarts.
    epoch: u64,
}

/// Incrementally checked safety properties: the engine-agnostic ones, and the engine's
/// own through `C`.
#[derive(Debug, Default)]
pub struct Invariants<C> {
    /// The engine's own checks.
    pub(crate) engine: C,
    /// index -> command hash of what any node applied: state-machine safety.
    applied: BTreeMap<u64, u64>,
    /// index -> state digest after applying it, where a snapshot was taken.
    digests: BTreeMap<u64, u64>,
    watch: BTreeMap<NodeId, NodeWatch>,
    max_committed: u64,
    now_us: u64,
}

impl<C> Invariants<C> {
    pub(crate) fn set_time(&mut self, now_us: u64) {
        self.now_us = now_us;
    }

    fn fail(&self, property: &'static str, detail: String) -> Check {
        Err(Violation {
            property,
            detail,
            at_us: self.now_us,
        })
    }

    /// After an event touched a running node: commit and durable commit monotonic, the
    /// epoch never decreasing.
    pub(crate) fn on_status(&mut self, s: &Status, durable_commit: u64) -> Check {
        let w = self.watch.entry(s.id).or_default().clone();
        if s.committed.0 < w.committed {
            return self.fail(
                "commit-monotonic",
                format!(
                    "node {} commit went from {} to {}",
                    s.id, w.committed, s.committed
                ),
            );
        }
        if durable_commit < w.durable_commit {
            return self.fail(
                "durable-commit-monotonic",
                format!(
                    "node {} durable commit went from {} to {durable_commit}",
                    s.id, w.durable_commit
                ),
            );
        }
        if s.epoch < w.epoch {
            return self.fail(
                "epoch-monotonic",
                format!("node {} epoch went from {} to {}", s.id, w.epoch, s.epoch),
            );
        }
        let w = self.watch.entry(s.id).or_default();
        w.committed = s.committed.0;
        w.durable_commit = durable_commit;
        w.epoch = s.epoch;
        self.max_committed = self.max_committed.max(s.committed.0);
        Ok(())
    }

    /// A node applied the command known by `hash` at `index` (0: a no-op), reaching a
    /// state with digest `digest_after`.
    pub(crate) fn on_apply(
        &mut self,
        node: NodeId,
        index: Index,
        hash: u64,
        digest_after: u64,
    ) -> Check {
        let w = self.watch.entry(node).or_default();
        if index.0 != w.applied + 1 {
            let prev = w.applied;
            return self.fail(
                "apply-order",
                format!("node {node} applied {index} after {prev}"),
            );
        }
        w.applied = index.0;
        match self.applied.get(&index.0) {
            Some(old) if *old != hash => {
                return self.fail(
                    "state-machine-safety",
                    format!("node {node} applied a different command at index {index}"),
                );
            }
            Some(_) => {}
            None => {
                self.applied.insert(index.0, hash);
            }
        }
        if let Some(d) = self.digests.get(&index.0) {
            if *d != digest_after {
                return self.fail(
                    "state-machine-safety",
                    format!("node {node} state after index {index} differs from a snapshot of it"),
                );
            }
        }
        Ok(())
    }

    /// A node replaced its state by a snapshot, or produced one.
    pub(crate) fn on_snapshot_state(
        &mut self,
        node: NodeId,
        index: Index,
        digest: u64,
        restored: bool,
    ) -> Check {
        let w = self.watch.entry(node).or_default();
        if restored {
            if index.0 < w.applied {
                let prev = w.applied;
                return self.fail(
                    "apply-monotonic",
                    format!("node {node} restored snapshot {index} after applying {prev}"),
                );
            }
            w.applied = index.0;
        }
        match self.digests.get(&index.0) {
            Some(d) if *d != digest => self.fail(
                "state-machine-safety",
                format!("node {node} snapshot state at {index} differs"),
            ),
            Some(_) => Ok(()),
            None => {
                self.digests.insert(index.0, digest);
                Ok(())
            }
        }
    }

    /// A node restarted: volatile watch state resets; durable floors (durable commit,
    /// epoch) stay.
    pub(crate) fn on_restart(&mut self, node: NodeId) {
        let w = self.watch.entry(node).or_default();
        w.committed = 0;
        w.applied = 0;
    }

    /// The command hash applied at `index` by anyone, if any.
    pub fn applied_hash(&self, index: u64) -> Option<u64> {
        self.applied.get(&index).copied()
    }

    /// Highest index any node has reported committed.
    pub fn max_committed(&self) -> u64 {
        self.max_committed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::Role;

    fn status(epoch: u64, committed: u64) -> Status {
        Status {
            id: NodeId(1),
            role: Role::Follower,
            role_detail: "follower",
            epoch,
            leader: None,
            committed: Index(committed),
            applied: Index(0),
            last_index: Index(committed),
            persisted: Index(committed),
            snapshot: Index(0),
        }
    }

    #[test]
    fn a_decreasing_epoch_or_durable_commit_is_caught_across_restarts() {
        let mut inv = Invariants::<()>::default();
        inv.on_status(&status(3, 5), 5).unwrap();
        inv.on_restart(NodeId(1));
        // After a restart the commit point may start lower; durable state may not.
        inv.on_status(&status(3, 0), 5).unwrap();
        let v = inv.on_status(&status(2, 0), 5).unwrap_err();
        assert_eq!(v.property, "epoch-monotonic");
        let v = inv.on_status(&status(3, 0), 4).unwrap_err();
        assert_eq!(v.property, "durable-commit-monotonic");
        inv.on_status(&status(3, 4), 5).unwrap();
        let v = inv.on_status(&status(3, 3), 5).unwrap_err();
        assert_eq!(v.property, "commit-monotonic");
    }

    #[test]
    fn two_commands_or_two_states_at_one_index_are_caught() {
        let mut inv = Invariants::<()>::default();
        inv.on_apply(NodeId(1), Index(1), 11, 100).unwrap();
        assert_eq!(
            inv.on_apply(NodeId(2), Index(1), 12, 100)
                .unwrap_err()
                .property,
            "state-machine-safety"
        );
        inv.on_snapshot_state(NodeId(1), Index(1), 100, false)
            .unwrap();
        inv.on_apply(NodeId(3), Index(1), 11, 101).unwrap_err();
        assert_eq!(
            inv.on_apply(NodeId(1), Index(3), 13, 0)
                .unwrap_err()
                .property,
            "apply-order"
        );
    }
}
