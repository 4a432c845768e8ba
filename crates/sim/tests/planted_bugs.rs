//! Proof that the checkers can fail: each deliberately planted protocol bug must be
//! caught within a bounded scan of seeds (CI's sample of the 2,000-seed CLI sweep).
#![cfg(feature = "planted-bugs")]

use raft::PlantedBug;
use sim::{run_seed, SimOptions};

/// Scans seeds until one violates a property; returns the seed and the property.
fn first_violation(bug: PlantedBug, seeds: std::ops::Range<u64>) -> Option<(u64, &'static str)> {
    let opts = SimOptions {
        planted_bug: Some(bug),
        fault_phase_us: 20_000_000,
        ..SimOptions::default()
    };
    seeds.into_iter().find_map(|seed| {
        run_seed(seed, &opts, false)
            .violation
            .map(|v| (seed, v.property))
    })
}

#[test]
fn figure8_commit_is_caught() {
    let found = first_violation(PlantedBug::Figure8Commit, 0..50);
    assert!(
        found.is_some(),
        "committing an old-term entry by counting replicas went unnoticed"
    );
}

#[test]
fn no_conflict_truncate_is_caught() {
    let found = first_violation(PlantedBug::NoConflictTruncate, 0..50);
    assert!(
        found.is_some(),
        "keeping conflicting follower entries went unnoticed"
    );
}

/// Granting a vote that is not durable lets a restarted node vote twice in a term. Its
/// consequences (two leaders, lost writes) may show first in another checker; the vote
/// checkers must also catch it directly, within the scan.
#[test]
fn unpersisted_vote_is_caught() {
    let opts = SimOptions {
        planted_bug: Some(PlantedBug::UnpersistedVote),
        fault_phase_us: 20_000_000,
        ..SimOptions::default()
    };
    let direct = ["one-vote-per-term", "election-safety"];
    let found = (0..600).find_map(|seed| {
        let v = run_seed(seed, &opts, false).violation?;
        direct.contains(&v.property).then_some(seed)
    });
    assert!(
        found.is_some(),
        "granting a vote before it is durable went unnoticed by the vote checkers"
    );
}

#[test]
fn reply_before_commit_is_caught() {
    let opts = SimOptions {
        replica_bug: Some(replica::ReplicaBug::ReplyBeforeCommit),
        fault_phase_us: 20_000_000,
        ..SimOptions::default()
    };
    let found = (0..50).find_map(|seed| {
        let v = run_seed(seed, &opts, false).violation?;
        Some((seed, v.property))
    });
    assert!(
        found.is_some(),
        "answering a write before it commits went unnoticed"
    );
}

/// The same options without a planted bug pass on the seeds the scans above use.
#[test]
fn correct_build_passes_the_same_seeds() {
    let opts = SimOptions {
        fault_phase_us: 20_000_000,
        ..SimOptions::default()
    };
    for seed in 0..10 {
        let outcome = run_seed(seed, &opts, false);
        assert!(
            outcome.violation.is_none(),
            "seed {seed}: {:?}",
            outcome.violation
        );
    }
}
