//! Scenarios beyond the 6.5840 suite: pre-vote, check-quorum, ReadIndex under a
//! partition, deterministic replay, and malformed inputs through the public raft API.

mod common;

use common::*;
use raft::{NodeId, Role};
use sim::{run_seed, SimOptions};

/// The longest randomized election timeout of the default options: 2 * 15 ticks of 10 ms.
const MAX_ELECTION_TIMEOUT: u64 = 300 * MS;

/// With pre-vote on, a follower cut off for many election timeouts does not inflate its
/// term, and when it rejoins the leader and its term stay exactly the same throughout.
#[test]
fn prevote_rejoin_does_not_disrupt() {
    for seed in [401, 402, 403] {
        let n = 3;
        let mut h = Harness::new(seed, opts(n));
        h.one(1, n, true);
        let leader = h.check_one_leader();
        let term = h.sim.status(leader).expect("up").term;

        let follower = id((idx(leader) + 1) % n);
        h.disconnect(follower);
        for i in 0..5 {
            h.one(10 + i, n - 1, true);
        }
        // About 20 election timeouts alone: it keeps trying pre-votes, which fail.
        h.sleep(5 * SEC);
        let s = h.sim.status(follower).expect("up");
        assert_eq!(
            s.term, term,
            "seed {seed}: isolated follower raised its term"
        );
        assert_ne!(s.role, Role::Leader);

        h.connect(follower);
        let mut disrupted = None;
        h.sim.run_until(3 * SEC, |s| {
            let st = s.status(leader);
            if st.map(|st| (st.role, st.term)) != Some((Role::Leader, term)) {
                disrupted.get_or_insert((s.now_us(), st));
            }
            false
        });
        assert_eq!(
            disrupted, None,
            "seed {seed}: the rejoining node disrupted the leader"
        );
        h.one(100, n, true);
        assert_eq!(h.sim.leader(), Some(leader), "seed {seed}");
        for node in h.all() {
            assert_eq!(
                h.sim.status(node).expect("up").term,
                term,
                "seed {seed}: term moved"
            );
        }
        h.assert_safe();
    }
}

/// With check-quorum on, a leader cut off from everyone steps down within a few election
/// timeouts, while the majority elects a new leader in a higher term.
#[test]
fn isolated_leader_steps_down() {
    for seed in [411, 412, 413] {
        let n = 5;
        let mut h = Harness::new(seed, opts(n));
        h.one(1, n, true);
        let old = h.check_one_leader();
        let old_term = h.sim.status(old).expect("up").term;

        h.disconnect(old);
        let t0 = h.sim.now_us();
        let stepped = h.sim.run_until(3 * MAX_ELECTION_TIMEOUT, |s| {
            s.status(old).is_some_and(|st| st.role != Role::Leader)
        });
        assert!(
            stepped,
            "seed {seed}: isolated leader {old} still leads after {} ms",
            (h.sim.now_us() - t0) / MS
        );

        let new = h.check_one_leader();
        assert_ne!(new, old, "seed {seed}");
        assert!(
            h.sim.status(new).expect("up").term > old_term,
            "seed {seed}"
        );
        h.one(2, n - 1, true);

        h.connect(old);
        h.one(3, n, true);
        assert_ne!(h.role(old), Some(Role::Leader), "seed {seed}");
        h.assert_safe();
    }
}

/// A value of `probe`'s read once it settles (or the final `None` when still pending).
fn read_settled(h: &mut Harness, probe: u64) -> Option<Result<Option<u64>, Option<NodeId>>> {
    h.sim.run_until(2 * SEC, |s| s.read_result(probe).is_some());
    h.sim.read_result(probe)
}

/// ReadIndex under a partition: the leader is isolated and the majority elects a new
/// leader and commits a new value. A read at the deposed leader never returns the old
/// value (which its own state machine still holds, so a local read would be stale): it
/// is refused, aborted or stays pending. A read at the new leader sees the new value.
fn read_index_scenario(seed: u64, check_quorum: bool) {
    let n = 5;
    let (old_value, new_value) = (111, 222);
    let mut h = Harness::new(
        seed,
        SimOptions {
            check_quorum,
            ..opts(n)
        },
    );
    h.one(old_value, n, true);
    let old = h.check_one_leader();

    // Sanity: a read at the healthy leader works.
    let p = h.sim.start_read(old).expect("up");
    assert_eq!(
        read_settled(&mut h, p),
        Some(Ok(Some(old_value))),
        "seed {seed}"
    );

    h.disconnect(old);
    // Issued while the old leader still believes it leads.
    assert_eq!(h.role(old), Some(Role::Leader), "seed {seed}");
    let p_old = h.sim.start_read(old).expect("up");

    let new = h.check_one_leader();
    assert_ne!(new, old, "seed {seed}");
    h.one(new_value, n - 1, true);

    // The stale state exists locally, so the check below is meaningful.
    assert_eq!(h.sim.local_value(old), Some(old_value), "seed {seed}");
    assert_eq!(h.sim.local_value(new), Some(new_value), "seed {seed}");

    let mut stale_probes = vec![p_old];
    if !check_quorum {
        // Without check-quorum the deposed leader still believes it leads: the dangerous
        // case for reads.
        assert_eq!(h.role(old), Some(Role::Leader), "seed {seed}");
    }
    stale_probes.push(h.sim.start_read(old).expect("up"));

    let p_new = h.sim.start_read(new).expect("up");
    assert_eq!(
        read_settled(&mut h, p_new),
        Some(Ok(Some(new_value))),
        "seed {seed}"
    );

    h.sleep(SEC);
    for &p in &stale_probes {
        let r = h.sim.read_result(p);
        assert!(
            matches!(r, None | Some(Err(_))),
            "seed {seed}: a read at the deposed leader returned {r:?}"
        );
    }

    // Heal: the old leader learns the new term; its reads are aborted, never served.
    h.connect(old);
    h.one(333, n, true);
    for &p in &stale_probes {
        let r = h.sim.read_result(p);
        assert!(
            matches!(r, Some(Err(_))),
            "seed {seed}: a read at the deposed leader was not aborted after healing: {r:?}"
        );
    }
    h.assert_safe();
}

/// [`read_index_scenario`] with check-quorum on (the deposed leader steps down) and off
/// (it keeps believing it leads, and only the ReadIndex quorum round protects reads).
#[test]
fn read_index_under_partition() {
    for seed in [421, 422] {
        read_index_scenario(seed, true);
        read_index_scenario(seed, false);
    }
}

/// A seed replays exactly: the same trace, event for event, and the same counters, under
/// every fault class with the workload running.
#[test]
fn replay_is_deterministic() {
    let opts = SimOptions {
        nodes: 5,
        fault_phase_us: 3 * SEC,
        ..SimOptions::default()
    };
    for seed in [7, 8] {
        let a = run_seed(seed, &opts, true);
        let b = run_seed(seed, &opts, true);
        assert!(a.violation.is_none(), "seed {seed}: {:?}", a.violation);
        assert!(
            a.trace.len() > 200,
            "seed {seed}: trace too short: {}",
            a.trace.len()
        );
        assert!(
            a.stats.messages_sent > 0 && a.ops > 0,
            "seed {seed}: nothing happened"
        );
        assert!(
            a.stats.lock_acquired > 0 && a.stats.lock_fenced > 0,
            "seed {seed}: the lock clients did nothing: {:?}",
            a.stats
        );
        assert_eq!(
            a.stats, b.stats,
            "seed {seed}: stats differ between replays"
        );
        assert_eq!(a.sim_us, b.sim_us, "seed {seed}");
        assert_eq!(a.ops, b.ops, "seed {seed}");
        if let Some(i) = (0..a.trace.len().min(b.trace.len())).find(|i| a.trace[*i] != b.trace[*i])
        {
            panic!(
                "seed {seed}: traces diverge at line {i}:\n  {}\n  {}",
                a.trace[i], b.trace[i]
            );
        }
        assert_eq!(a.trace.len(), b.trace.len(), "seed {seed}");
    }
    // And different seeds really differ.
    let a = run_seed(7, &opts, true);
    let c = run_seed(9, &opts, true);
    assert_ne!(a.trace, c.trace);
}
