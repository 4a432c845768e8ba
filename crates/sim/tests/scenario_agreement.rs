//! Log agreement scenarios (6.5840 lab 3B) on the deterministic simulator.

mod common;

use common::*;

/// Without failures, each command is committed by every node, at the slot right after
/// the leader's last entry, and nobody applies a slot before it was started.
#[test]
fn basic_agree() {
    for seed in [101, 102] {
        let n = 3;
        let mut h = Harness::new(seed, opts(n));
        let mut prev = 0;
        for iters in 1..=3u64 {
            let leader = h.check_one_leader();
            let next = h.sim.status(leader).expect("leader runs").last_index.0 + 1;
            let (nd, _) = h.n_committed(next);
            assert_eq!(
                nd, 0,
                "seed {seed}: some have committed index {next} before Start()"
            );
            let xindex = h.one(1000 + iters, n, false);
            assert_eq!(
                xindex, next,
                "seed {seed}: got index {xindex} but expected {next}"
            );
            assert!(xindex > prev);
            prev = xindex;
        }
        h.assert_safe();
    }
}

/// Agreement survives one disconnected follower; with both followers gone the leader
/// can no longer commit anything.
#[test]
fn follower_failure() {
    for seed in [111, 112] {
        let n = 3;
        let mut h = Harness::new(seed, opts(n));
        h.one(101, n, false);

        // Disconnect one follower from the network.
        let leader1 = h.check_one_leader();
        h.disconnect(id((idx(leader1) + 1) % n));

        // The leader and the remaining follower should be able to agree despite it.
        h.one(102, n - 1, false);
        h.sleep(ELECTION_TIMEOUT);
        h.one(103, n - 1, false);

        // Disconnect the remaining follower.
        let leader2 = h.check_one_leader();
        h.disconnect(id((idx(leader2) + 1) % n));
        h.disconnect(id((idx(leader2) + 2) % n));

        // Submit a command.
        let (index, _) = h.start(leader2, 104).expect("leader rejected Start()");
        h.sleep(2 * ELECTION_TIMEOUT);

        // Check that the command did not commit.
        let (nd, _) = h.n_committed(index);
        assert_eq!(nd, 0, "seed {seed}: {nd} committed but no majority");
        h.assert_safe();
    }
}

/// Agreement survives a disconnected leader; with the second leader gone too, nothing
/// submitted anywhere commits.
#[test]
fn leader_failure() {
    for seed in [121, 122] {
        let n = 3;
        let mut h = Harness::new(seed, opts(n));
        h.one(101, n, false);

        // Disconnect the first leader.
        let leader1 = h.check_one_leader();
        h.disconnect(leader1);

        // The remaining followers should elect a new leader.
        h.one(102, n - 1, false);
        h.sleep(ELECTION_TIMEOUT);
        h.one(103, n - 1, false);

        // Disconnect the new leader too.
        let leader2 = h.check_one_leader();
        h.disconnect(leader2);

        // Submit a command to each node.
        let mut placed = Vec::new();
        for i in 0..n {
            if let Some((index, _)) = h.start(id(i), 104) {
                placed.push(index);
            }
        }
        h.sleep(2 * ELECTION_TIMEOUT);

        // Check that command 104 did not commit anywhere.
        for index in placed {
            let (_, v) = h.n_committed(index);
            assert_ne!(
                v,
                Some(104),
                "seed {seed}: 104 committed at {index} without a majority"
            );
        }
        h.assert_safe();
    }
}

/// A follower that was disconnected while the others committed four commands catches
/// up when it reconnects.
#[test]
fn fail_agree() {
    for seed in [131, 132] {
        let n = 3;
        let mut h = Harness::new(seed, opts(n));
        h.one(101, n, false);

        // Disconnect one follower from the network.
        let leader = h.check_one_leader();
        let follower = id((idx(leader) + 1) % n);
        h.disconnect(follower);

        // The leader and the remaining follower should be able to agree despite it.
        h.one(102, n - 1, false);
        h.one(103, n - 1, false);
        h.sleep(ELECTION_TIMEOUT);
        h.one(104, n - 1, false);
        h.one(105, n - 1, false);

        // Re-connect; the full set should be able to agree.
        h.connect(follower);
        h.one(106, n, true);
        h.sleep(ELECTION_TIMEOUT);
        h.one(107, n, true);
        h.assert_safe();
    }
}

/// With three of five nodes cut off, a command at the leader does not commit; once they
/// return, a leader accepts new commands and all five agree.
#[test]
fn fail_no_agree() {
    for seed in [141, 142] {
        let n = 5;
        let mut h = Harness::new(seed, opts(n));
        h.one(10, n, false);

        // Three of five followers disconnect.
        let leader = h.check_one_leader();
        for k in 1..=3 {
            h.disconnect(id((idx(leader) + k) % n));
        }
        let (index, _) = h.start(leader, 20).expect("leader rejected Start()");
        h.sleep(2 * ELECTION_TIMEOUT);
        let (nd, _) = h.n_committed(index);
        assert_eq!(nd, 0, "seed {seed}: {nd} committed but no majority");

        // Repair.
        for k in 1..=3 {
            h.connect(id((idx(leader) + k) % n));
        }
        // The disconnected majority may have chosen a leader from among their own ranks,
        // forgetting index 2.
        let leader2 = h.check_one_leader();
        let (index2, _) = h.start(leader2, 30).expect("leader2 rejected Start()");
        assert!(index2 >= 2, "seed {seed}: unexpected index {index2}");
        h.one(1000, n, true);
        h.assert_safe();
    }
}

/// Five commands started back to back at the leader in one term all commit, each once.
#[test]
fn concurrent_starts() {
    for seed in [151, 152] {
        let n = 3;
        let mut h = Harness::new(seed, opts(n));
        let mut success = false;
        'tries: for attempt in 0..5u64 {
            if attempt > 0 {
                // Give the solution some time to settle.
                h.sleep(3 * SEC);
            }
            let base = 10_000 * (attempt + 1);
            let leader = h.check_one_leader();
            let Some((_, term)) = h.start(leader, base) else {
                // Leader moved on really quickly.
                continue;
            };
            let mut indexes = Vec::new();
            for ii in 1..=5u64 {
                match h.start(leader, base + ii) {
                    Some((i, t)) if t == term => indexes.push(i),
                    _ => continue 'tries,
                }
            }
            // All started at the same instant, in one term: consecutive slots.
            for w in indexes.windows(2) {
                assert_eq!(
                    w[1],
                    w[0] + 1,
                    "seed {seed}: non-consecutive indexes {indexes:?}"
                );
            }
            let mut cmds = Vec::new();
            for &index in &indexes {
                match h.wait(index, n, Some(term)) {
                    Some(v) => cmds.push(v),
                    // Term moved on: retry.
                    None => continue 'tries,
                }
            }
            for ii in 1..=5u64 {
                assert!(
                    cmds.contains(&(base + ii)),
                    "seed {seed}: cmd {} missing in {cmds:?}",
                    base + ii
                );
            }
            success = true;
            break;
        }
        assert!(success, "seed {seed}: term changed too often");
        h.assert_safe();
    }
}

/// A partitioned leader that accepted commands nobody else saw rejoins; its divergent
/// entries are overwritten and the cluster agrees again.
#[test]
fn rejoin() {
    for seed in [161, 162] {
        let n = 3;
        let mut h = Harness::new(seed, opts(n));
        h.one(101, n, true);

        // Leader network failure.
        let leader1 = h.check_one_leader();
        h.disconnect(leader1);

        // Make the old leader try to agree on some entries.
        assert!(
            h.start(leader1, 102).is_some(),
            "seed {seed}: cut-off leader still leads"
        );
        h.start(leader1, 103);
        h.start(leader1, 104);

        // The new leader commits, also for index 2.
        h.one(1103, 2, true);

        // New leader network failure.
        let leader2 = h.check_one_leader();
        h.disconnect(leader2);

        // Old leader connected again.
        h.connect(leader1);
        h.one(1104, 2, true);

        // All together now.
        h.connect(leader2);
        h.one(1105, n, true);

        // The old leader's uncommitted entries never made it into anyone's state machine.
        for index in 1..=h.sim.status(leader1).expect("up").commit.0 {
            let (_, v) = h.n_committed(index);
            assert!(
                !matches!(v, Some(102..=104)),
                "seed {seed}: a cut-off leader's entry was applied at {index}"
            );
        }
        h.assert_safe();
    }
}

/// Delivered AppendEntries rejections in the trace from line `from` on.
fn rejections_since(h: &Harness, from: usize) -> usize {
    h.sim.trace_lines()[from..]
        .iter()
        .filter(|l| l.contains(" AppendResp ") && l.contains("Rejected"))
        .count()
}

/// Leader backs up quickly over incorrect follower logs: 50 divergent uncommitted
/// entries on each side of two partitions are repaired with a handful of rejections
/// (fast backtracking by conflict term), where one-entry-at-a-time backtracking would
/// need at least 50 rejections per divergent follower.
#[test]
fn backup() {
    for seed in [171, 172] {
        let n = 5;
        let mut h = Harness::new(seed, opts(n));
        h.sim.enable_trace();
        let v = h.rand_value();
        h.one(v, n, true);

        // Put leader and one follower in a partition; they append entries that won't commit.
        let leader1 = h.check_one_leader();
        let l1 = idx(leader1);
        for k in 2..=4 {
            h.disconnect(id((l1 + k) % n));
        }
        start_many(&mut h, leader1, 50);
        h.sleep(ELECTION_TIMEOUT / 2);
        h.disconnect(id(l1));
        h.disconnect(id((l1 + 1) % n));

        // Allow the other partition to recover and commit lots of commands.
        for k in 2..=4 {
            h.connect(id((l1 + k) % n));
        }
        one_many(&mut h, 50, 3);

        // Now another partitioned leader and one follower, with more uncommitted entries.
        let leader2 = h.check_one_leader();
        let mut other = id((l1 + 2) % n);
        if leader2 == other {
            other = id((l1 + 3) % n);
        }
        h.disconnect(other);
        start_many(&mut h, leader2, 50);
        h.sleep(ELECTION_TIMEOUT / 2);

        // Bring the original leader back to life: the two old nodes each hold about 50
        // divergent entries of the first leader's term.
        for i in 0..n {
            h.disconnect(id(i));
        }
        h.connect(id(l1));
        h.connect(id((l1 + 1) % n));
        h.connect(other);
        let mark = h.sim.trace_lines().len();
        one_many(&mut h, 50, 3);
        assert_quick_repair(&h, seed, mark, "the first partition");

        // Now everyone: two more nodes hold ~50 divergent entries of the second leader.
        let mark = h.sim.trace_lines().len();
        for i in 0..n {
            h.connect(id(i));
        }
        let v = h.rand_value();
        h.one(v, n, true);
        assert_quick_repair(&h, seed, mark, "the second partition");
        h.assert_safe();
    }
}

fn start_many(h: &mut Harness, leader: raft::NodeId, count: usize) {
    for _ in 0..count {
        let v = h.rand_value();
        h.start(leader, v);
    }
}

fn one_many(h: &mut Harness, count: usize, expected: usize) {
    for _ in 0..count {
        let v = h.rand_value();
        h.one(v, expected, true);
    }
}

/// Repairing two followers with ~50 divergent entries each takes a handful of
/// rejections with conflict-term hints (one-at-a-time backtracking needs 100).
fn assert_quick_repair(h: &Harness, seed: u64, mark: usize, what: &str) {
    let rejected = rejections_since(h, mark);
    assert!(
        rejected <= 10,
        "seed {seed}: repairing {what} took {rejected} rejections"
    );
}

/// Messages sent so far.
fn sent(h: &Harness) -> u64 {
    h.sim.stats().messages_sent
}

/// RPC counts are not excessive: an election costs fewer than 30 messages; agreeing on
/// 10 commands costs at most 8 messages per command in a 3-node cluster (append + ack
/// to each follower, plus one commit notification + ack; 6.5840's bound is
/// (iters + 1 + 3) * 3 RPCs, i.e. 84 messages), and an idle leader's heartbeats over one
/// simulated second stay within 6.5840's 3 * 20 RPCs (120 messages).
#[test]
fn count() {
    for seed in [181, 182] {
        let n = 3;
        let mut h = Harness::new(seed, opts(n));
        h.check_one_leader();
        let total1 = sent(&h);
        assert!(
            total1 > 1 && total1 < 30,
            "seed {seed}: too many or few messages ({total1}) to elect initial leader"
        );

        let mut total2 = None;
        for attempt in 0..5u64 {
            if attempt > 0 {
                // Give the solution some time to settle.
                h.sleep(3 * SEC);
            }
            total2 = counted_agreement(&mut h, seed, attempt);
            if total2.is_some() {
                break;
            }
        }
        let total2 = total2.unwrap_or_else(|| panic!("seed {seed}: term changed too often"));

        h.sleep(ELECTION_TIMEOUT);
        let total3 = sent(&h);
        assert!(
            total3 - total2 <= 3 * 20 * 2,
            "seed {seed}: too many messages ({}) for 1 second of idleness",
            total3 - total2
        );
        h.assert_safe();
    }
}

/// Agrees on 11 commands in one term and checks the message count; returns the message
/// counter afterwards, or `None` when the term changed (the count proves nothing then).
fn counted_agreement(h: &mut Harness, seed: u64, attempt: u64) -> Option<u64> {
    let n = 3;
    let leader = h.check_one_leader();
    let total1 = sent(h);
    let iters = 10u64;
    let base = 100_000 * (attempt + 1);
    let (starti, term) = h.start(leader, base)?;
    let mut cmds = Vec::new();
    for i in 1..=iters {
        let x = base + i;
        cmds.push(x);
        let (index1, term1) = h.start(leader, x)?;
        if term1 != term {
            return None;
        }
        assert_eq!(index1, starti + i, "seed {seed}: Start() failed");
    }
    for i in 1..=iters {
        let cmd = h.wait(starti + i, n, Some(term))?;
        let expected = cmds[(i - 1) as usize];
        assert_eq!(
            cmd,
            expected,
            "seed {seed}: wrong value committed for index {}",
            starti + i
        );
    }
    if (0..n).any(|j| h.sim.status(id(j)).map(|s| s.term.0) != Some(term)) {
        // Term changed -- can't expect low RPC counts.
        return None;
    }
    let total2 = sent(h);
    let bound = (iters + 1) * 8;
    assert!(
        total2 - total1 <= bound,
        "seed {seed}: too many messages ({}) for {} entries (bound {bound})",
        total2 - total1,
        iters + 1
    );
    Some(total2)
}
