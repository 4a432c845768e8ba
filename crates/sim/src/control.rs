//! Direct control of a simulation, for scenario tests in the style of the MIT 6.5840
//! Raft suite: crash and restart nodes, cut links, submit commands, wait for agreement.

use crate::host::HostState;
use crate::invariants::Violation;
use crate::kv::{Command, KvOp};
use crate::net::Network;
use crate::raft_engine::Status;
use crate::world::{Simulation, Stats, START_CLIENT};
use engine::{NodeId, Role};

impl Simulation {
    /// Advances simulated time by `us`.
    pub fn run_for(&mut self, us: u64) {
        let until = self.now_us + us;
        self.run_until_time(until);
    }

    /// Advances in 10 ms steps until `done` holds or `max_us` passes; returns whether it held.
    pub fn run_until(&mut self, max_us: u64, mut done: impl FnMut(&Simulation) -> bool) -> bool {
        let end = self.now_us + max_us;
        while self.now_us < end && self.violation.is_none() {
            if done(self) {
                return true;
            }
            self.run_for(10_000);
        }
        done(self)
    }

    /// Current simulated time, microseconds.
    pub fn now_us(&self) -> u64 {
        self.now_us
    }

    /// The first violated property, if any.
    pub fn violation(&self) -> Option<&Violation> {
        self.violation.as_ref()
    }

    /// Event and message counters.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Member ids.
    pub fn ids(&self) -> &[NodeId] {
        &self.ids
    }

    fn index_of(&self, id: NodeId) -> usize {
        (id.0 - 1) as usize
    }

    /// A running node's status.
    pub fn status(&self, id: NodeId) -> Option<Status> {
        let h = &self.hosts[self.index_of(id)];
        if h.state != HostState::Up {
            return None;
        }
        h.status()
    }

    /// Every running node that believes it leads, with its term.
    pub fn leaders(&self) -> Vec<Status> {
        self.ids
            .iter()
            .filter(|id| {
                self.hosts[self.index_of(**id)]
                    .engine_status()
                    .map(|s| s.role)
                    == Some(Role::Leader)
            })
            .filter_map(|id| self.status(*id))
            .collect()
    }

    /// Crashes a node: volatile state and unsynced writes are lost.
    pub fn crash(&mut self, id: NodeId) {
        let i = self.index_of(id);
        if matches!(self.hosts[i].state, HostState::Up | HostState::Paused) {
            self.crash_host(i, false);
        }
    }

    /// Restarts a crashed node from its durable state.
    pub fn restart(&mut self, id: NodeId) {
        let i = self.index_of(id);
        self.restart_host(i);
    }

    /// Pauses a node (no ticks; messages queue until it resumes).
    pub fn pause(&mut self, id: NodeId) {
        let i = self.index_of(id);
        if self.hosts[i].state == HostState::Up {
            self.hosts[i].state = HostState::Paused;
        }
    }

    /// Resumes a paused node.
    pub fn resume(&mut self, id: NodeId) {
        let i = self.index_of(id);
        self.resume_host(i);
    }

    /// Cuts a node off from everyone.
    pub fn disconnect(&mut self, id: NodeId) {
        let ids = self.ids.clone();
        self.net.isolate(id, &ids);
    }

    /// Restores a node's links.
    pub fn connect(&mut self, id: NodeId) {
        self.net.reconnect(id);
    }

    /// The network model, for custom faults.
    pub fn network(&mut self) -> &mut Network {
        &mut self.net
    }

    /// Starts the random client workload (clients, retries, history recording).
    pub fn start_clients(&mut self) {
        self.start_workload();
    }

    /// Checks the recorded client history for linearizability.
    pub fn check_history(&self) -> Result<(), String> {
        match check::check(
            &check::KvModel,
            self.history.history(),
            check::Budget::default(),
        ) {
            check::Verdict::NotLinearizable(v) => Err(v.to_string()),
            _ => Ok(()),
        }
    }

    /// Makes the network unreliable (loss, long delays, reordering) or reliable again.
    pub fn set_unreliable(&mut self, unreliable: bool) {
        if unreliable {
            self.net.drop_per_mille = 100;
            self.net.spike_per_mille = 300;
            self.net.spike_us = (1_000, 27_000);
        } else {
            let keep = std::mem::take(&mut self.net);
            self.net.latency_us = keep.latency_us;
            self.net.restore_partitions_from(&keep);
        }
    }

    /// Proposes `Put k0 = value` at `id` (like 6.5840's `Start`); `(index, term)` if it leads.
    pub fn start(&mut self, id: NodeId, value: u64) -> Option<(u64, u64)> {
        let i = self.index_of(id);
        if self.hosts[i].state != HostState::Up {
            return None;
        }
        // One session for every direct start, with its own sequence numbers: the
        // session table stays small, and a retried value is a new command (as in 6.5840).
        self.next_start_seq += 1;
        let cmd = Command {
            client: START_CLIENT,
            seq: self.next_start_seq,
            op: KvOp::Put { key: 0, value },
        };
        // Only a leader takes it (6.5840's Start): a follower would forward it.
        if self.hosts[i].engine_status().map(|s| s.role) != Some(Role::Leader) {
            return None;
        }
        let mut proposed = None;
        self.with_host(i, |h, _, _| {
            let request = crate::host::ClientRequest::Write(cmd);
            let index = h.on_client(START_CLIENT, 0, request);
            proposed = index.zip(h.engine_status().map(|s| s.epoch));
            Ok(())
        });
        proposed.map(|(index, epoch)| (index.0, epoch))
    }

    /// How many running nodes have applied `index`, and the value written there.
    pub fn n_committed(&self, index: u64) -> (usize, Option<u64>) {
        let n = self
            .hosts
            .iter()
            .filter(|h| h.state == HostState::Up && h.applied().0 >= index)
            .count();
        (n, self.values_at.get(&index).copied())
    }

    /// Submits `value` until `expected` nodes apply it (6.5840's `one`); returns its index.
    pub fn one(&mut self, value: u64, expected: usize, retry: bool) -> Result<u64, String> {
        let start = self.now_us;
        while self.now_us < start + 10_000_000 && self.violation.is_none() {
            let mut placed = None;
            for id in self.ids.clone() {
                if let Some((index, _)) = self.start(id, value) {
                    placed = Some(index);
                    break;
                }
            }
            if let Some(index) = placed {
                let ok = self.run_until(2_000_000, |s| {
                    let (n, v) = s.n_committed(index);
                    n >= expected && v == Some(value)
                });
                if ok {
                    return Ok(index);
                }
                if !retry {
                    return Err(format!("value {value} not applied by {expected} nodes"));
                }
            } else {
                self.run_for(50_000);
            }
        }
        match &self.violation {
            Some(v) => Err(v.to_string()),
            None => Err(format!(
                "value {value} never reached agreement on {expected} nodes"
            )),
        }
    }

    /// Starts a linearizable read of key 0 at `id` through ReadIndex; returns a probe id
    /// to pass to [`Simulation::read_result`], or `None` if the node is down.
    pub fn start_read(&mut self, id: NodeId) -> Option<u64> {
        let i = self.index_of(id);
        if self.hosts[i].state != HostState::Up {
            return None;
        }
        self.next_probe += 1;
        let probe = self.next_probe;
        self.with_host(i, |h, _, _| {
            let read = crate::host::ClientRequest::Read(0);
            h.on_client(crate::world::PROBE_CLIENT, probe, read);
            Ok(())
        });
        Some(probe)
    }

    /// The answer to a probe read so far: `Some(Ok(value))` once served,
    /// `Some(Err(hint))` if refused or aborted (not leader), `None` while pending.
    pub fn read_result(&self, probe: u64) -> Option<Result<Option<u64>, Option<NodeId>>> {
        self.probe_replies
            .iter()
            .find(|(p, _)| *p == probe)
            .map(|(_, o)| match o {
                crate::host::ClientOutcome::Read(v) => Ok(*v),
                crate::host::ClientOutcome::Redirect(hint) => Err(*hint),
                crate::host::ClientOutcome::Written(_) | crate::host::ClientOutcome::Unknown => {
                    Err(None)
                }
            })
    }

    /// The value of key 0 in `id`'s state machine (what a local, non-linearizable read sees).
    pub fn local_value(&self, id: NodeId) -> Option<u64> {
        let h = &self.hosts[self.index_of(id)];
        h.value(0)
    }

    /// The trace lines recorded so far (empty unless [`Simulation::enable_trace`] was
    /// called), for scenario tests that count particular messages.
    pub fn trace_lines(&self) -> &[String] {
        self.trace.as_deref().unwrap_or(&[])
    }

    /// The index of the latest snapshot `id` holds, for snapshot tests.
    pub fn snapshot_index(&self, id: NodeId) -> Option<u64> {
        self.status(id).map(|s| s.snapshot.index.0)
    }
}
