//! Leader election scenarios (6.5840 lab 3A) on the deterministic simulator.

mod common;

use common::*;

/// A 3-node cluster elects exactly one leader, all nodes agree on its term, and with no
/// failures the term stays the same (no spurious elections) and the leader remains.
#[test]
fn initial_election() {
    for seed in [1, 2, 3] {
        let mut h = Harness::new(seed, opts(3));
        let leader = h.check_one_leader();
        h.sleep(50 * MS);
        let term1 = h.check_terms();
        assert!(
            term1 >= 1,
            "seed {seed}: term is {term1}, but should be at least 1"
        );

        // Does the leader + term stay the same if there is no network failure?
        h.sleep(2 * ELECTION_TIMEOUT);
        let term2 = h.check_terms();
        assert_eq!(
            term1, term2,
            "seed {seed}: term changed even though there were no failures"
        );
        assert_eq!(
            h.check_one_leader(),
            leader,
            "seed {seed}: leader changed without failures"
        );
        h.assert_safe();
    }
}

/// A new leader is elected when the old one is cut off; the old leader rejoining does
/// not break anything; with no quorum there is no leader; a quorum regained elects one.
#[test]
fn re_election() {
    for seed in [11, 12, 13] {
        let n = 3;
        let mut h = Harness::new(seed, opts(n));
        let leader1 = h.check_one_leader();

        // If the leader disconnects, a new one should be elected.
        h.disconnect(leader1);
        let leader2 = h.check_one_leader();
        assert_ne!(leader1, leader2, "seed {seed}");

        // If the old leader rejoins, that shouldn't disturb the new leader.
        h.connect(leader1);
        let leader3 = h.check_one_leader();

        // If there's no quorum, no new leader should be elected.
        let other = id((idx(leader3) + 1) % n);
        h.disconnect(leader3);
        h.disconnect(other);
        h.sleep(2 * ELECTION_TIMEOUT);
        // Check-quorum makes an isolated leader step down, so none is left anywhere.
        h.check_no_leader();

        // If a quorum arises, it should elect a leader.
        h.connect(other);
        h.check_one_leader();

        // Re-join of last node shouldn't prevent leader from existing.
        h.connect(leader3);
        h.check_one_leader();
        h.assert_safe();
    }
}

/// Seven nodes, ten rounds of cutting off three random nodes: the remaining four always
/// elect a single leader, and after reconnecting everyone there is still one leader.
#[test]
fn many_elections() {
    for seed in [21, 22] {
        let n = 7;
        let mut h = Harness::new(seed, opts(n));
        h.check_one_leader();
        for _ in 0..10 {
            // Disconnect three nodes (possibly the same one twice, as in 6.5840).
            let i1 = id(h.rng.range(0, n as u64) as usize);
            let i2 = id(h.rng.range(0, n as u64) as usize);
            let i3 = id(h.rng.range(0, n as u64) as usize);
            h.disconnect(i1);
            h.disconnect(i2);
            h.disconnect(i3);
            // Either the current leader should still be alive, or the remaining four
            // should elect a new one.
            h.check_one_leader();
            h.connect(i1);
            h.connect(i2);
            h.connect(i3);
        }
        h.check_one_leader();
        h.assert_safe();
    }
}
