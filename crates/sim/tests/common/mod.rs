//! Shared harness for the scenario tests, modelled on the MIT 6.5840 Raft lab's
//! `config.go`: a cluster whose nodes can be disconnected, crashed and restarted, with
//! `one()`, `check_one_leader()`, `n_committed()` and friends.
//!
//! The harness tracks which nodes the test considers *connected* (like 6.5840's
//! `cfg.connected`): leaders are only looked for among connected, running nodes, and
//! commands are only submitted to them. The simulator's own checkers (election safety,
//! log matching, leader completeness, state-machine safety, monotonic commit) run after
//! every event; every test ends with [`Harness::assert_safe`].
#![allow(dead_code)]

use raft::{NodeId, Role};
use sim::{FaultSet, SimOptions, Simulation};
use std::collections::BTreeMap;

/// One simulated millisecond, in the simulator's microseconds.
pub const MS: u64 = 1_000;
/// One simulated second.
pub const SEC: u64 = 1_000_000;
/// Like 6.5840's `RaftElectionTimeout`: a generous bound for one election to finish
/// (the configured timeout is randomized in [150, 300) ms, plus a pre-vote round).
pub const ELECTION_TIMEOUT: u64 = SEC;

/// Options for a quiet cluster of `n` nodes: no nemesis, no workload clients, no swarm
/// knobs, effectively no compaction. Pre-vote and check-quorum stay on (the defaults).
pub fn opts(n: usize) -> SimOptions {
    SimOptions {
        nodes: n,
        faults: FaultSet::none(),
        clients: 0,
        swarm: false,
        snapshot_every: 1_000_000,
        ..SimOptions::default()
    }
}

/// Like [`opts`], but snapshots every 10 applied entries and sends them in 16-byte
/// chunks, so that compaction and chunked InstallSnapshot really happen.
pub fn snap_opts(n: usize) -> SimOptions {
    SimOptions {
        snapshot_every: SNAPSHOT_EVERY,
        snapshot_chunk_bytes: 16,
        // Keep the store's history short, so that a snapshot spans tens of 16-byte
        // chunks (as the register map these scenarios were written for did).
        auto_compact_retain: 4,
        ..opts(n)
    }
}

/// The compaction interval of [`snap_opts`].
pub const SNAPSHOT_EVERY: u64 = 10;

/// Node id of the `i`-th node (0-based), as 6.5840 numbers servers.
pub fn id(i: usize) -> NodeId {
    NodeId(i as u64 + 1)
}

/// 0-based index of a node id.
pub fn idx(id: NodeId) -> usize {
    (id.0 - 1) as usize
}

/// A simulated cluster plus the test's view of which nodes are connected.
pub struct Harness {
    /// The simulation under test.
    pub sim: Simulation,
    /// Cluster size.
    pub n: usize,
    connected: Vec<bool>,
    next_start: usize,
    /// Random choices of the test itself (not of the simulation).
    pub rng: seedrng::Rng,
    /// Seed, for failure messages.
    pub seed: u64,
}

impl Harness {
    /// A fresh cluster; nothing runs until time advances.
    pub fn new(seed: u64, opts: SimOptions) -> Harness {
        let n = opts.nodes;
        Harness {
            sim: Simulation::new(seed, opts),
            n,
            connected: vec![true; n],
            next_start: 0,
            rng: seedrng::Rng::new(seed ^ 0x7465_7374),
            seed,
        }
    }

    /// Every node id.
    pub fn all(&self) -> Vec<NodeId> {
        (0..self.n).map(id).collect()
    }

    /// Cuts `node` off from everyone (both directions).
    pub fn disconnect(&mut self, node: NodeId) {
        self.connected[idx(node)] = false;
        self.sim.disconnect(node);
    }

    /// Restores `node`'s links to every connected node.
    pub fn connect(&mut self, node: NodeId) {
        self.connected[idx(node)] = true;
        self.sim.connect(node);
        // `connect` restores every link of `node`; keep it cut from nodes that are
        // still disconnected.
        for j in 0..self.n {
            if !self.connected[j] {
                let other = id(j);
                self.sim.network().split(&[node], &[other]);
            }
        }
    }

    /// Whether the test considers `node` connected.
    pub fn is_connected(&self, node: NodeId) -> bool {
        self.connected[idx(node)]
    }

    /// Crashes `node` (volatile state and unsynced writes are lost).
    pub fn crash(&mut self, node: NodeId) {
        self.sim.crash(node);
    }

    /// Restarts `node` from its durable state.
    pub fn restart(&mut self, node: NodeId) {
        self.sim.restart(node);
    }

    /// Whether `node` is running.
    pub fn is_up(&self, node: NodeId) -> bool {
        self.sim.status(node).is_some()
    }

    /// Advances simulated time.
    pub fn sleep(&mut self, us: u64) {
        self.sim.run_for(us);
        self.assert_no_violation_yet();
    }

    fn assert_no_violation_yet(&self) {
        if let Some(v) = self.sim.violation() {
            panic!("seed {}: safety violation: {v}", self.seed);
        }
    }

    /// Leaders among connected, running nodes, grouped by term.
    fn connected_leaders(&self) -> BTreeMap<u64, Vec<NodeId>> {
        let mut by_term: BTreeMap<u64, Vec<NodeId>> = BTreeMap::new();
        for s in self.sim.leaders() {
            if self.connected[idx(s.id)] {
                by_term.entry(s.term.0).or_default().push(s.id);
            }
        }
        by_term
    }

    /// 6.5840's `checkOneLeader`: waits until some connected node leads; checks that no
    /// two nodes lead in the same term; returns the leader of the newest term.
    pub fn check_one_leader(&mut self) -> NodeId {
        let connected = self.connected.clone();
        let found = self.sim.run_until(10 * ELECTION_TIMEOUT / 2, |s| {
            s.leaders().iter().any(|l| connected[idx(l.id)])
        });
        self.assert_no_violation_yet();
        // Let a just-elected leader settle, as 6.5840 does by sleeping between looks.
        let by_term = self.connected_leaders();
        for (term, ls) in &by_term {
            assert!(
                ls.len() <= 1,
                "seed {}: term {term} has {} leaders: {ls:?}",
                self.seed,
                ls.len()
            );
        }
        assert!(found, "seed {}: expected one leader, got none", self.seed);
        let (_, ls) = by_term.iter().next_back().expect("a leader");
        ls[0]
    }

    /// 6.5840's `checkNoLeader`: no connected, running node believes it leads.
    pub fn check_no_leader(&self) {
        for s in self.sim.leaders() {
            assert!(
                !self.connected[idx(s.id)],
                "seed {}: expected no leader among connected nodes, but {} leads in term {}",
                self.seed,
                s.id,
                s.term
            );
        }
    }

    /// 6.5840's `checkTerms`: every connected, running node is in the same term.
    pub fn check_terms(&self) -> u64 {
        let mut term = None;
        for i in 0..self.n {
            if !self.connected[i] {
                continue;
            }
            if let Some(s) = self.sim.status(id(i)) {
                match term {
                    None => term = Some(s.term.0),
                    Some(t) => {
                        assert_eq!(t, s.term.0, "seed {}: servers disagree on term", self.seed)
                    }
                }
            }
        }
        term.expect("no running connected node")
    }

    /// How many running nodes applied `index`, and the value written there.
    pub fn n_committed(&self, index: u64) -> (usize, Option<u64>) {
        self.sim.n_committed(index)
    }

    /// Proposes `value` at `node` (6.5840's `Start`).
    pub fn start(&mut self, node: NodeId, value: u64) -> Option<(u64, u64)> {
        self.sim.start(node, value)
    }

    /// 6.5840's `one`: submits `value` to connected nodes in turn until one accepts, then
    /// waits up to 2 s for `expected` nodes to apply it; retries (if `retry`) for up to
    /// 10 s. Returns the index; panics on failure.
    pub fn one(&mut self, value: u64, expected: usize, retry: bool) -> u64 {
        match self.try_one(value, expected, retry) {
            Ok(i) => i,
            Err(e) => panic!(
                "seed {}: one({value}) failed at t={}us: {e}\n{}",
                self.seed,
                self.sim.now_us(),
                self.describe()
            ),
        }
    }

    /// [`Harness::one`] without panicking.
    pub fn try_one(&mut self, value: u64, expected: usize, retry: bool) -> Result<u64, String> {
        let t0 = self.sim.now_us();
        while self.sim.now_us() < t0 + 10 * SEC {
            if let Some(v) = self.sim.violation() {
                return Err(format!("violation: {v}"));
            }
            let mut index = None;
            for _ in 0..self.n {
                self.next_start = (self.next_start + 1) % self.n;
                let node = id(self.next_start);
                if !self.connected[self.next_start] {
                    continue;
                }
                if let Some((i, _)) = self.sim.start(node, value) {
                    index = Some(i);
                    break;
                }
            }
            if let Some(index) = index {
                let ok = self.sim.run_until(2 * SEC, |s| {
                    let (nd, v) = s.n_committed(index);
                    nd >= expected && v == Some(value)
                });
                if ok {
                    return Ok(index);
                }
                if let Some(v) = self.sim.violation() {
                    return Err(format!("violation: {v}"));
                }
                if !retry {
                    let (nd, v) = self.n_committed(index);
                    return Err(format!(
                        "index {index}: {nd} of {expected} nodes applied it, value there {v:?}"
                    ));
                }
            } else {
                self.sim.run_for(50 * MS);
            }
        }
        Err(format!("never reached agreement on {expected} nodes"))
    }

    /// 6.5840's `wait`: waits until `n` nodes applied `index`; gives up (returns `None`)
    /// if a connected node moves past `start_term`, since the entry may then be lost.
    pub fn wait(&mut self, index: u64, n: usize, start_term: Option<u64>) -> Option<u64> {
        let mut to = 10 * MS;
        for _ in 0..30 {
            let (nd, v) = self.n_committed(index);
            if nd >= n {
                return v;
            }
            self.sleep(to);
            if to < SEC {
                to *= 2;
            }
            if let Some(t) = start_term {
                for i in 0..self.n {
                    if let Some(s) = self.sim.status(id(i)) {
                        if s.term.0 > t {
                            return None;
                        }
                    }
                }
            }
        }
        let (nd, v) = self.n_committed(index);
        assert!(
            nd >= n,
            "seed {}: only {nd} decided for index {index}; wanted {n}",
            self.seed
        );
        v
    }

    /// One line per node: connectivity and status, for failure messages.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        for i in 0..self.n {
            let st = self.sim.status(id(i));
            out.push_str(&format!(
                "  node {} connected={} snapshot_index={:?} {:?}\n",
                id(i),
                self.connected[i],
                st.map(|s| s.snapshot.index.0),
                st
            ));
        }
        out
    }

    /// The final check of every scenario: no safety property was violated.
    pub fn assert_safe(&self) {
        assert_safe(&self.sim, self.seed);
    }

    /// The role of a running node.
    pub fn role(&self, node: NodeId) -> Option<Role> {
        self.sim.status(node).map(|s| s.role)
    }

    /// A fresh random value from the test's own generator (for unique commands).
    pub fn rand_value(&mut self) -> u64 {
        self.rng.range(1 << 32, 1 << 48)
    }
}

/// Asserts that the simulation recorded no violated property, printing it if it did.
pub fn assert_safe(sim: &Simulation, seed: u64) {
    if let Some(v) = sim.violation() {
        panic!("seed {seed}: safety violation: {v}");
    }
    assert!(sim.violation().is_none());
}
