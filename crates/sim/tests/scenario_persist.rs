//! Persistence scenarios (6.5840 lab 3C) on the deterministic simulator: crashes lose
//! volatile state and unsynced writes; restarts recover from the durable image.

mod common;

use common::*;
use raft::NodeId;

/// Basic persistence: committed commands survive crashing everyone, the leader, and a
/// follower, and a restarted node catches up.
#[test]
fn persist1() {
    for seed in [201, 202, 203] {
        let n = 3;
        let mut h = Harness::new(seed, opts(n));
        h.one(11, n, true);

        // Crash and re-start all.
        for i in 0..n {
            h.crash(id(i));
        }
        for i in 0..n {
            h.restart(id(i));
        }
        h.one(12, n, true);

        let leader1 = h.check_one_leader();
        h.crash(leader1);
        h.restart(leader1);
        h.one(13, n, true);

        let leader2 = h.check_one_leader();
        h.crash(leader2);
        h.one(14, n - 1, true);
        h.restart(leader2);

        // Wait for leader2 to join before killing i3.
        let l = h.check_one_leader();
        let index = h.sim.status(l).expect("up").last_index.0;
        h.wait(index, n, None);

        let i3 = id((idx(h.check_one_leader()) + 1) % n);
        h.crash(i3);
        h.one(15, n - 1, true);
        h.restart(i3);
        h.one(16, n, true);
        h.assert_safe();
    }
}

/// More persistence: five rounds of crashing minorities and majorities of five nodes in
/// various orders, with agreement after each restart.
#[test]
fn persist2() {
    for seed in [211, 212] {
        let n = 5;
        let mut h = Harness::new(seed, opts(n));
        let mut index = 1;
        for _ in 0..5 {
            h.one(10 + index, n, true);
            index += 1;

            let leader1 = idx(h.check_one_leader());
            h.crash(id((leader1 + 1) % n));
            h.crash(id((leader1 + 2) % n));

            h.one(10 + index, n - 2, true);
            index += 1;

            h.crash(id(leader1));
            h.crash(id((leader1 + 3) % n));
            h.crash(id((leader1 + 4) % n));

            h.restart(id((leader1 + 1) % n));
            h.restart(id((leader1 + 2) % n));

            h.sleep(ELECTION_TIMEOUT);

            h.restart(id((leader1 + 3) % n));

            h.one(10 + index, n - 2, true);
            index += 1;

            h.restart(id((leader1 + 4) % n));
            h.restart(id(leader1));
        }
        h.one(1000, n, true);
        h.assert_safe();
    }
}

/// Partitioned leader and one follower crash, leader restarts: the cluster still agrees.
#[test]
fn persist3() {
    for seed in [221, 222, 223] {
        let n = 3;
        let mut h = Harness::new(seed, opts(n));
        h.one(101, 3, true);

        let leader = idx(h.check_one_leader());
        h.disconnect(id((leader + 2) % n));

        h.one(102, 2, true);

        h.crash(id(leader));
        h.crash(id((leader + 1) % n));
        h.connect(id((leader + 2) % n));
        h.restart(id(leader));

        h.one(103, 2, true);

        h.restart(id((leader + 1) % n));

        h.one(104, n, true);
        h.assert_safe();
    }
}

fn up_nodes(h: &Harness) -> usize {
    h.all().into_iter().filter(|x| h.is_up(*x)).count()
}

/// Figure 8 of the Raft paper: leaders are crashed right after accepting commands, over
/// and over, with restarts keeping a majority around. The checkers (notably leader
/// completeness and state-machine safety) run throughout; at the end, with everyone
/// back, a final command reaches all five nodes.
#[test]
fn figure8() {
    for seed in [231, 232] {
        let n = 5;
        let mut h = Harness::new(seed, opts(n));
        let v = h.rand_value();
        h.one(v, 1, true);

        let mut nup = n;
        for _ in 0..1000 {
            let mut leader: Option<NodeId> = None;
            for i in 0..n {
                let v = h.rand_value();
                if h.start(id(i), v).is_some() {
                    leader = Some(id(i));
                }
            }
            let pause = if h.rng.chance(100, 1000) {
                h.rng.range(0, ELECTION_TIMEOUT / 2)
            } else {
                h.rng.range(0, 13 * MS)
            };
            h.sleep(pause);

            if let Some(l) = leader {
                h.crash(l);
                nup -= 1;
            }

            if nup < 3 {
                let s = id(h.rng.range(0, n as u64) as usize);
                if !h.is_up(s) {
                    h.restart(s);
                    nup += 1;
                }
            }
            assert_eq!(nup, up_nodes(&h), "seed {seed}: bookkeeping");
        }

        for i in 0..n {
            if !h.is_up(id(i)) {
                h.restart(id(i));
            }
        }
        let v = h.rand_value();
        h.one(v, n, true);
        // Sanity check that the scenario did what it says (about 80 crashes per seed).
        assert!(
            h.sim.stats().crashes > 30,
            "seed {seed}: too few crashes to matter"
        );
        h.assert_safe();
    }
}

/// Agreement over an unreliable network (10% loss, delay spikes, reordering), with
/// several commands started at once each round.
#[test]
fn unreliable_agree() {
    for seed in [241, 242] {
        let n = 5;
        let mut h = Harness::new(seed, opts(n));
        h.sim.set_unreliable(true);
        for iters in 1..50u64 {
            for j in 0..4u64 {
                // 6.5840 starts these from concurrent goroutines: submit without waiting.
                for i in 0..n {
                    if h.start(id(i), 100 * iters + j).is_some() {
                        break;
                    }
                }
            }
            h.one(iters, 1, true);
        }
        h.sim.set_unreliable(false);
        h.one(1_000_000, n, true);
        h.assert_safe();
    }
}

/// Figure 8 over an unreliable network, later with long reordering (a third of messages
/// delayed by 0.2-2 s): leaders are disconnected at random while commands are started.
/// At the end everyone reconnects and a final command reaches all five nodes.
#[test]
fn figure8_unreliable() {
    for seed in [251, 252] {
        let n = 5;
        let mut h = Harness::new(seed, opts(n));
        h.sim.set_unreliable(true);
        let v = h.rand_value();
        h.one(v, 1, true);

        let mut nup = n;
        let mut disconnects = 0;
        for iters in 0..1000 {
            if iters == 200 {
                // Long reordering.
                let net = h.sim.network();
                net.spike_per_mille = 333;
                net.spike_us = (200 * MS, 2 * SEC);
            }
            let mut leader = None;
            for i in 0..n {
                let v = h.rand_value();
                if h.start(id(i), v).is_some() && h.is_connected(id(i)) {
                    leader = Some(id(i));
                }
            }
            let pause = if h.rng.chance(100, 1000) {
                h.rng.range(0, ELECTION_TIMEOUT / 2)
            } else {
                h.rng.range(0, 13 * MS)
            };
            h.sleep(pause);

            if let Some(l) = leader {
                if h.rng.chance(ELECTION_TIMEOUT / MS / 2, 1000) {
                    h.disconnect(l);
                    disconnects += 1;
                    nup -= 1;
                }
            }

            if nup < 3 {
                let s = id(h.rng.range(0, n as u64) as usize);
                if !h.is_connected(s) {
                    h.connect(s);
                    nup += 1;
                }
            }
        }

        for i in 0..n {
            if !h.is_connected(id(i)) {
                h.connect(id(i));
            }
        }
        let v = h.rand_value();
        h.one(v, n, true);
        assert!(
            disconnects > 5,
            "seed {seed}: too few leader disconnects to matter"
        );
        h.assert_safe();
    }
}

/// A 6.5840 churn client: repeatedly starts a fresh value at every node that accepts
/// it, then polls for a while whether that index committed with its value.
struct ChurnClient {
    me: u64,
    wake_at: u64,
    waiting: Option<(u64, u64, u64)>,
    /// Values this client saw committed.
    values: Vec<u64>,
}

impl ChurnClient {
    fn step(&mut self, h: &mut Harness) {
        let now = h.sim.now_us();
        if let Some((x, index, deadline)) = self.waiting {
            let (nd, cmd) = h.n_committed(index);
            if nd > 0 {
                if cmd == Some(x) {
                    self.values.push(x);
                }
                self.waiting = None;
                self.wake_at = now;
            } else if now >= deadline {
                self.waiting = None;
                self.wake_at = now;
            }
            return;
        }
        if now < self.wake_at {
            return;
        }
        let x = h.rand_value();
        let mut index = None;
        for i in 0..h.n {
            if let Some((i1, _)) = h.start(id(i), x) {
                index = Some(i1);
            }
        }
        match index {
            // 6.5840 polls for 10 + 20 + 50 + 100 + 200 ms.
            Some(i) => self.waiting = Some((x, i, now + 380 * MS)),
            None => self.wake_at = now + (79 + self.me * 17) * MS,
        }
    }
}

fn run_with_clients(h: &mut Harness, clients: &mut [ChurnClient], us: u64) {
    let end = h.sim.now_us() + us;
    while h.sim.now_us() < end {
        for c in clients.iter_mut() {
            c.step(h);
        }
        h.sleep(10 * MS);
    }
}

/// 6.5840's churn: three clients submit commands while nodes are disconnected, crashed
/// and restarted at random. At the end everything heals; every value a client saw
/// committed must be in the final, agreed log of all five nodes.
fn churn(seed: u64, unreliable: bool) {
    let n = 5;
    let mut h = Harness::new(seed, opts(n));
    h.sim.set_unreliable(unreliable);
    let mut clients: Vec<ChurnClient> = (0..3)
        .map(|me| ChurnClient {
            me,
            wake_at: 0,
            waiting: None,
            values: Vec::new(),
        })
        .collect();
    for _ in 0..20 {
        if h.rng.chance(200, 1000) {
            let i = id(h.rng.range(0, n as u64) as usize);
            h.disconnect(i);
        }
        if h.rng.chance(500, 1000) {
            let i = id(h.rng.range(0, n as u64) as usize);
            if !h.is_up(i) {
                h.restart(i);
            }
            h.connect(i);
        }
        if h.rng.chance(200, 1000) {
            let i = id(h.rng.range(0, n as u64) as usize);
            if h.is_up(i) {
                h.crash(i);
            }
        }
        // Make crash/restart infrequent enough that the cluster can keep up.
        run_with_clients(&mut h, &mut clients, ELECTION_TIMEOUT * 7 / 10);
    }
    run_with_clients(&mut h, &mut clients, ELECTION_TIMEOUT);
    h.sim.set_unreliable(false);
    for i in 0..n {
        if !h.is_up(id(i)) {
            h.restart(id(i));
        }
        h.connect(id(i));
    }
    // Clients stop here.
    let v = h.rand_value();
    let last_index = h.one(v, n, true);

    let mut really = Vec::new();
    for index in 1..=last_index {
        if let Some(v) = h.wait(index, n, None) {
            really.push(v);
        }
    }
    let mut seen = 0;
    for c in &clients {
        for v in &c.values {
            assert!(
                really.contains(v),
                "seed {seed}: value {v} reported committed is not in the final log"
            );
            seen += 1;
        }
    }
    assert!(
        seen > 0,
        "seed {seed}: no client command committed during churn"
    );
    h.assert_safe();
}

/// Churn over a reliable network.
#[test]
fn reliable_churn() {
    for seed in [261, 262] {
        churn(seed, false);
    }
}

/// Churn over an unreliable network.
#[test]
fn unreliable_churn() {
    for seed in [271, 272] {
        churn(seed, true);
    }
}
