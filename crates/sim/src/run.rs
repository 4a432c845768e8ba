//! One seeded run: a fault phase under a steady client workload, then a liveness phase
//! (faults stop, the network heals, crashed nodes restart) that must converge within a
//! bound, then the linearizability check of the whole client history.

use crate::client::Client;
use crate::host::{violation, HostState};
use crate::invariants::Violation;
use crate::options::SimOptions;
use crate::world::{Event, Simulation, Stats};
use check::{check, Budget, Verdict};

#[derive(Debug)]
pub(crate) struct LivenessState {
    deadline_us: u64,
    pub(crate) done: bool,
}

/// What one seed's run found.
#[derive(Debug)]
pub struct SeedOutcome {
    /// The seed.
    pub seed: u64,
    /// The first violated property, if any.
    pub violation: Option<Violation>,
    /// Simulated time covered, microseconds.
    pub sim_us: u64,
    /// Event and message counters.
    pub stats: Stats,
    /// Client operations recorded.
    pub ops: usize,
    /// Whether the linearizability search gave up (budget) instead of deciding.
    pub linearizability_unknown: bool,
    /// The event trace, when requested.
    pub trace: Vec<String>,
}

/// Runs one seed from start to verdict.
pub fn run_seed(seed: u64, opts: &SimOptions, trace: bool) -> SeedOutcome {
    let opts = &opts.for_seed(seed);
    let mut sim = Simulation::new(seed, opts.clone());
    if trace {
        sim.enable_trace();
    }
    sim.start_workload();
    sim.start_nemesis();
    let fault_end = opts.fault_phase_us;
    sim.schedule(fault_end, Event::BeginLiveness);
    let hard_end = fault_end + opts.liveness_bound_us + 1;
    while sim.violation.is_none()
        && !sim.liveness.as_ref().is_some_and(|l| l.done)
        && sim.now_us < hard_end
    {
        let step_to = (sim.now_us + 1_000_000).min(hard_end);
        sim.run_until_time(step_to);
    }
    let mut unknown = false;
    if sim.violation.is_none() {
        match check(
            &check::KvModel,
            sim.history.history(),
            Budget {
                max_steps: 2_000_000,
            },
        ) {
            Verdict::Linearizable => {}
            Verdict::NotLinearizable(v) => {
                let detail = format!("client history is not linearizable: {v}");
                sim.fail(violation("linearizability", detail));
            }
            Verdict::Unknown { .. } => unknown = true,
        }
    }
    sim.stats.leases_expired = sim.leases.expired;
    sim.record_lock_stats();
    SeedOutcome {
        seed,
        violation: sim.violation.take(),
        sim_us: sim.now_us,
        stats: sim.stats,
        ops: sim.history.len(),
        linearizability_unknown: unknown,
        trace: sim.trace.take().unwrap_or_default(),
    }
}

impl Simulation {
    /// Creates the workload clients and starts them.
    pub(crate) fn start_workload(&mut self) {
        for c in 0..self.opts.clients {
            let target = self.rng.range(0, self.hosts.len() as u64) as usize;
            self.clients.push(Client::new(c as u64, target));
            let d = self.rng.range(0, self.opts.think_us);
            self.schedule(d, Event::ClientIssue { client: c });
        }
        self.start_holders();
        self.start_watchers();
        self.start_lockers();
        self.start_lease_sampling();
    }

    /// Ends the fault phase: heal everything, stop new random operations, queue a
    /// final read of every key, and require convergence within the bound.
    pub(crate) fn begin_liveness(&mut self) {
        self.log(|| "liveness phase: faults stop, network heals, crashed nodes restart".into());
        self.liveness = Some(LivenessState {
            deadline_us: self.now_us + self.opts.liveness_bound_us,
            done: false,
        });
        self.net.heal_all();
        self.disk_latency_us = (50, 400);
        for i in 0..self.hosts.len() {
            match self.hosts[i].state {
                HostState::Down => self.restart_host(i),
                HostState::Paused => self.resume_host(i),
                _ => {}
            }
        }
        let keys = self.opts.keys;
        for c in 0..self.clients.len() {
            self.clients[c].active = false;
            for k in 0..keys {
                self.clients[c]
                    .queue
                    .push_back(crate::host::ClientRequest::Read(k));
            }
            self.schedule(0, Event::ClientIssue { client: c });
        }
        for h in 0..self.holders.len() {
            // Keep-alives stop: every lease must now expire.
            self.holders[h].active = false;
            self.schedule(0, Event::HolderIssue { holder: h });
        }
        for c in 0..self.lockers.len() {
            // Lock clients finish what they are doing (waiters get their turn) and stop.
            self.lockers[c].active = false;
            self.schedule(0, Event::LockIssue { locker: c });
        }
        self.schedule(50_000, Event::LivenessCheck);
    }

    pub(crate) fn on_liveness_check(&mut self) {
        let Some(deadline) = self.liveness.as_ref().map(|l| l.deadline_us) else {
            return;
        };
        // A lease may outlive the bound after healing when leaders changed often just
        // before it (as under a stream of transfers): wait for its own deadline, which
        // the lease checker enforces.
        let deadline = deadline.max(self.leases.latest_deadline().unwrap_or(0));
        match self.liveness_gap() {
            None => {
                self.log(|| "liveness: converged".into());
                if let Some(l) = self.liveness.as_mut() {
                    l.done = true;
                }
            }
            Some(gap) if self.now_us >= deadline => {
                let bound = self.opts.liveness_bound_us as f64 / 1e6;
                self.fail(violation(
                    "liveness",
                    format!("no convergence within {bound}s after healing: {gap}"),
                ));
            }
            Some(_) => self.schedule(50_000, Event::LivenessCheck),
        }
    }

    /// What still keeps the cluster from having converged, if anything.
    fn liveness_gap(&self) -> Option<String> {
        let Some(leader) = self.leader() else {
            return Some("no leader".into());
        };
        if let Some(c) = self
            .clients
            .iter()
            .find(|c| c.current.is_some() || !c.queue.is_empty())
        {
            return Some(format!("client {} still has operations pending", c.id));
        }
        if let Some(h) = self.holders.iter().position(|h| h.busy()) {
            return Some(format!("lease holder {h} still has an operation pending"));
        }
        if let Some(c) = self.lockers.iter().position(|l| !l.finished()) {
            return Some(format!("lock client {c} has not finished"));
        }
        if let Some(lease) = self.leases.pending() {
            return Some(lease);
        }
        let lh = &self.hosts[(leader.0 - 1) as usize];
        let Some(ls) = lh.engine_status() else {
            return Some("leader vanished".into());
        };
        let target = ls.committed;
        if target.0 < self.inv.max_committed() {
            return Some(format!(
                "leader n{leader} commit {} below known commit {}",
                target,
                self.inv.max_committed()
            ));
        }
        for (index, hash) in &self.acked {
            if *index > target.0 || self.inv.applied_hash(*index) != Some(*hash) {
                return Some(format!(
                    "acknowledged write at index {index} is not committed at the leader"
                ));
            }
        }
        let digest = lh.digest();
        // Only members converge: spares never added, and removed nodes, are left out.
        let members = self.leader_membership().unwrap_or_default();
        let running = self.hosts.iter().filter(|h| h.state != HostState::Stopped);
        for h in running.filter(|h| members.contains(h.id)) {
            if h.state != HostState::Up || h.applied() != target || h.digest() != digest {
                return Some(format!(
                    "n{} applied {} (leader n{leader} commit {})",
                    h.id,
                    h.applied(),
                    target
                ));
            }
        }
        None
    }
}
