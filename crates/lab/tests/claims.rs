//! Every claim holds and every counter-example is found, at fixed seeds.

use lab::{Expect, Report};

fn report(name: &str, seed: u64) -> Report {
    lab::run(name, seed, false).expect("known scenario")
}

/// Asserts the verdict starting with `prefix` exists, has the expected kind, and came
/// out as the notes predict.
fn assert_verdict(r: &Report, prefix: &str, expect: Expect) {
    let v = r
        .verdict(prefix)
        .unwrap_or_else(|| panic!("{}: no verdict starting with {prefix:?}", r.scenario));
    assert_eq!(v.expect, expect, "{}", v.line());
    assert!(v.as_expected(), "{}", v.line());
}

#[test]
fn every_scenario_matches_the_notes_at_seed_1_and_seed_7() {
    for seed in [1, 7] {
        for name in lab::list() {
            let r = report(name, seed);
            assert!(!r.verdicts.is_empty(), "{name} has no verdicts");
            assert!(!r.figures.is_empty(), "{name} has no figure");
            for v in &r.verdicts {
                assert!(v.as_expected(), "{name} seed {seed}: {}", v.line());
            }
            let holds = r.verdicts.iter().any(|v| v.expect == Expect::Holds);
            let breaks = r.verdicts.iter().any(|v| v.expect == Expect::Breaks);
            assert!(
                holds && breaks,
                "{name} must show a claim and a counter-example"
            );
        }
    }
}

#[test]
fn two_generals_every_depth_has_a_counter_example() {
    let r = report("two-generals", 1);
    assert_verdict(&r, "agreement over a reliable link", Expect::Holds);
    for k in 1..=5 {
        assert_verdict(&r, &format!("depth {k}:"), Expect::Breaks);
    }
}

#[test]
fn flooding_f_plus_one_rounds_agree_and_f_rounds_break() {
    let r = report("flooding-consensus", 1);
    for (n, f) in [(4, 1), (5, 2), (6, 3)] {
        assert_verdict(&r, &format!("n={n}, f={f}: agreement"), Expect::Holds);
    }
    for (n, f) in [(4, 1), (5, 2)] {
        assert_verdict(
            &r,
            &format!("n={n}, f={f}: a dangerous chain"),
            Expect::Breaks,
        );
    }
}

#[test]
fn byzantine_claims_and_counter_examples() {
    let r = report("byzantine-generals", 1);
    assert_verdict(&r, "OM(1), n = 4", Expect::Holds);
    assert_verdict(&r, "OM(2), n = 7", Expect::Holds);
    assert_verdict(&r, "OM(1), n = 3", Expect::Breaks);
    assert_verdict(&r, "SM(1), n = 3", Expect::Holds);
    assert_verdict(&r, "interactive consistency, n = 4", Expect::Holds);
    assert_verdict(&r, "interactive consistency, n = 3", Expect::Breaks);
}

#[test]
fn paxos_register_claims_and_counter_examples() {
    let r = report("paxos-register", 1);
    assert_verdict(
        &r,
        "one value decided despite acceptor crash",
        Expect::Holds,
    );
    assert_verdict(&r, "dueling proposers, no back-off", Expect::Breaks);
    assert_verdict(&r, "dueling proposers, randomized back-off", Expect::Holds);
}

#[test]
fn commit_protocols_claims_and_counter_examples() {
    let r = report("two-phase-commit", 1);
    assert_verdict(&r, "atomicity and termination", Expect::Holds);
    assert_verdict(&r, "blocking:", Expect::Breaks);
    assert_verdict(&r, "atomicity still holds", Expect::Holds);
    assert_verdict(&r, "decision replicated", Expect::Holds);
    let r = report("three-phase-commit", 1);
    assert_verdict(
        &r,
        "no blocking, atomicity kept: coordinator crash",
        Expect::Holds,
    );
    assert_verdict(
        &r,
        "no blocking, atomicity kept: coordinator and one",
        Expect::Holds,
    );
    assert_verdict(&r, "network partition", Expect::Breaks);
}

#[test]
fn multicast_tmr_detectors_checkpointing_claims_and_counter_examples() {
    let r = report("reliable-multicast", 1);
    assert_verdict(&r, "feedback suppression: every receiver", Expect::Holds);
    assert_verdict(&r, "plain NACKs: feedback implosion", Expect::Breaks);
    let r = report("tmr", 1);
    assert_verdict(&r, "one value-failing replica is masked", Expect::Holds);
    assert_verdict(&r, "a separate voter", Expect::Breaks);
    assert_verdict(&r, "voter in the client's process", Expect::Holds);
    assert_verdict(&r, "4 stages with a voter per replica", Expect::Holds);
    assert_verdict(&r, "two faulty voters in one stage", Expect::Breaks);
    let r = report("failure-detectors", 1);
    assert_verdict(&r, "completeness: fixed", Expect::Holds);
    assert_verdict(&r, "accuracy broken by jitter: a fixed", Expect::Breaks);
    let r = report("checkpointing", 1);
    assert_verdict(&r, "notes' P1/P2/P3 example", Expect::Breaks);
    assert_verdict(&r, "independent rollback", Expect::Breaks);
    assert_verdict(&r, "synchronous coordinated checkpointing", Expect::Holds);
    assert_verdict(&r, "Chandy–Lamport over FIFO", Expect::Holds);
    assert_verdict(&r, "Chandy–Lamport over non-FIFO", Expect::Breaks);
}
