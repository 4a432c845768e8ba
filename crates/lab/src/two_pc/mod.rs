//! Two-phase commit (notes 001 and 000): the coordinator and participant state machines
//! (INIT, WAIT, READY, COMMIT, ABORT) with timeouts, GetDecision, cooperative
//! termination, a recovery coordinator, and every state logged to stable storage.
//!
//! Glossary: *VOTE-REQUEST*, *VOTE-COMMIT*/*VOTE-ABORT* and *GLOBAL-COMMIT*/
//! *GLOBAL-ABORT* are the two phases' messages; *GetDecision* is a READY participant
//! asking the coordinator again; *cooperative termination* asks the other participants
//! (COMMIT → commit, ABORT or INIT → abort, READY → ask another); the *recovery
//! coordinator* collects the participants' states after the coordinator fails.
//! *Atomicity* is safety (no one commits while another aborts, and commit only if all
//! voted commit); *termination* is liveness. 2PC is safe but not live: with the
//! coordinator and one participant down and everyone else READY, nobody may decide.
//! Logging the decision in a *decision group* (a Paxos write-once register on three
//! acceptors) lets the READY participants finish without the coordinator.

pub mod machines;
mod world;

use crate::report::{Expect, Figure, Report, Violation};
use crate::sim::{Faults, Trace};
use crate::sweep::{fraction, run_cases, Case};
use machines::{CState, PState};
use seedrng::Rng;
pub use world::{execute, CoordinatorCrash, Outcome, Setup};

/// The scenario's name.
pub const NAME: &str = "two-phase-commit";
const SUMMARY: &str = "2PC state machines with timeouts, GetDecision, cooperative termination and a recovery coordinator: atomicity always holds; coordinator plus participant failure blocks the READY participants; a consensus-replicated decision removes the blocking.";

/// Atomicity: no participant (or the coordinator's log) says COMMIT while another says
/// ABORT, and COMMIT only if every participant voted VOTE-COMMIT.
pub fn check_atomicity(o: &Outcome) -> Option<Violation> {
    let committed: Vec<usize> = (0..o.states.len())
        .filter(|p| o.states[*p] == PState::Commit)
        .collect();
    let aborted: Vec<usize> = (0..o.states.len())
        .filter(|p| o.states[*p] == PState::Abort)
        .collect();
    let coord_commit = o.coordinator == CState::Commit;
    if let (Some(c), Some(a)) = (committed.first(), aborted.first()) {
        return Some(Violation::new(
            "atomicity",
            format!(
                "participant {} committed, participant {} aborted",
                c + 1,
                a + 1
            ),
        ));
    }
    if coord_commit && !aborted.is_empty() {
        return Some(Violation::new(
            "atomicity",
            format!(
                "coordinator logged COMMIT, participant {} aborted",
                aborted[0] + 1
            ),
        ));
    }
    let no = o.votes.iter().position(|v| !v)?;
    (coord_commit || !committed.is_empty()).then(|| {
        Violation::new(
            "atomicity",
            format!("committed although participant {} voted VOTE-ABORT", no + 1),
        )
    })
}

/// Termination: every participant that is up at the horizon has decided.
pub fn check_termination(o: &Outcome) -> Option<Violation> {
    let p = (0..o.states.len())
        .find(|p| !o.crashed[*p] && matches!(o.states[*p], PState::Init | PState::Ready))?;
    Some(Violation::new(
        "termination",
        format!(
            "participant {} is still {:?} at the horizon (states {:?}, coordinator {:?})",
            p + 1,
            o.states[p],
            o.states,
            o.coordinator
        ),
    ))
}

fn random_setup(seed: u64) -> Setup {
    let mut rng = Rng::new(seed ^ 0x2BC);
    let n = 4;
    let mut faults = Faults::lossy(50, (1, 4));
    faults.duplicate_per_mille = 20;
    let crash_point = if rng.chance(1, 2) {
        CoordinatorCrash::AtTick(rng.range(1, 30))
    } else {
        CoordinatorCrash::AfterDecisionSends(rng.range(0, n as u64) as usize)
    };
    Setup {
        n,
        votes: (0..n).map(|_| rng.chance(85, 100)).collect(),
        faults,
        coordinator_crash: rng.chance(2, 3).then_some(crash_point),
        coordinator_restart_after: Some(rng.range(50, 300)),
        participant_crash: rng
            .chance(1, 2)
            .then(|| (rng.range(1, n as u64 + 1) as usize, rng.range(1, 40))),
        participant_restart_after: Some(rng.range(50, 300)),
        ..Setup::default()
    }
}

/// The notes' blocking case: everyone votes commit, the coordinator dies right after
/// sending the decision to participant 1 only, and participant 1 dies too, for good —
/// it may have committed, so the READY rest can neither commit nor abort.
fn blocking_setup(seed: u64, decision_group: bool) -> Setup {
    let mut rng = Rng::new(seed ^ 0xB10C);
    Setup {
        n: 4,
        votes: vec![true; 4],
        faults: Faults::lossy(0, (1, 3)),
        coordinator_crash: Some(CoordinatorCrash::AfterDecisionSends(1)),
        participant_crash: Some((1, rng.range(8, 20))),
        decision_group,
        ..Setup::default()
    }
}

fn partial_votes_setup(seed: u64) -> Setup {
    let mut s = random_setup(seed);
    s.faults.loss_per_mille = 200;
    s.commit_on_partial_votes = true;
    s
}

/// The scenario.
pub fn run(seed: u64, trace_on: bool) -> Report {
    let mut report = Report::new(NAME, SUMMARY, seed);
    let mut trace = Trace::new(trace_on);
    let cases: [Case; 5] = [
        (
            "atomicity and termination under loss, crashes and restarts",
            Expect::Holds,
            400,
            |s, t| {
                let o = execute(s, &random_setup(s), t);
                check_atomicity(&o).or_else(|| check_termination(&o))
            },
        ),
        (
            "blocking: coordinator and a participant fail, all others READY",
            Expect::Breaks,
            500,
            |s, t| check_termination(&execute(s, &blocking_setup(s, false), t)),
        ),
        (
            "atomicity still holds in the blocking runs (safe, not live)",
            Expect::Holds,
            300,
            |s, t| check_atomicity(&execute(s, &blocking_setup(s, false), t)),
        ),
        (
            "decision replicated by a consensus group: the same failures do not block",
            Expect::Holds,
            300,
            |s, t| {
                let o = execute(s, &blocking_setup(s, true), t);
                check_atomicity(&o).or_else(|| check_termination(&o))
            },
        ),
        (
            "planted bug: coordinator commits without every vote",
            Expect::Breaks,
            5_000,
            |s, t| check_atomicity(&execute(s, &partial_votes_setup(s), t)),
        ),
    ];
    run_cases(&mut report, &mut trace, seed, &cases);
    report.figures.push(blocking_figure(seed));
    report.trace = trace.into_text();
    report
}

fn blocking_figure(seed: u64) -> Figure {
    let mut fig = Figure::new(
        "blocked-vs-time",
        "2PC blocking case: runs with every live participant decided, by tick",
        "ticks",
        "fraction of runs fully decided",
    );
    for (name, group) in [
        ("plain 2PC + cooperative termination", false),
        ("decision in a Paxos group", true),
    ] {
        let done: Vec<Option<u64>> = (0..200)
            .map(|i| {
                execute(
                    seed + i,
                    &blocking_setup(seed + i, group),
                    &mut Trace::new(false),
                )
                .all_decided_at
            })
            .collect();
        let pts = (0..=15).map(|k| {
            let t = k * 20;
            (
                t as f64,
                fraction(0, 200, |i| done[i as usize].is_some_and(|d| d <= t)),
            )
        });
        fig = fig.with_series(name, pts.collect());
    }
    fig
}
