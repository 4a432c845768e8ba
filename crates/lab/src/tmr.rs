//! Triple modular redundancy and output voting (notes 001 and 004).
//!
//! Glossary: three *replicas* compute the same deterministic function of each input;
//! a *voter* passes on the *majority* of their outputs, so one *value-failing* replica
//! (a wrong answer) or one crashed replica is *masked*. The voter is itself a component:
//! a separate voter that fails feeds its client wrong results, which is why the notes
//! put a voter in front of every stage, and why the final voter shares fate with its
//! client (it runs in the client's process: if it fails, the client fails with it and
//! acts on nothing wrong).

use crate::report::{Expect, Figure, Report, Violation};
use crate::sim::{Event, Faults, Pid, Sim, Trace};
use crate::sweep::sweep;
use seedrng::Rng;
use std::collections::BTreeMap;

/// The scenario's name.
pub const NAME: &str = "tmr";
const SUMMARY: &str = "Triple modular redundancy: a value-failing replica is masked by the voter; two colluding replicas or a failing separate voter are not; a voter that shares fate with its client never lets it act on a wrong value.";
const STEPS: u64 = 40;
const STEP_TICKS: u64 = 10;
const VOTE_WAIT_TICKS: u64 = 7;

/// The replicated computation.
pub fn compute(x: u64) -> u64 {
    (x.wrapping_mul(2_654_435_761) >> 7) % 10_007
}

/// The majority of the outputs that arrived; `None` when no value has two votes.
pub fn vote(outputs: &[u64]) -> Option<u64> {
    let mut counts: BTreeMap<u64, usize> = BTreeMap::new();
    for o in outputs {
        *counts.entry(*o).or_default() += 1;
    }
    counts.into_iter().find(|(_, c)| *c >= 2).map(|(v, _)| v)
}

/// How a component misbehaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Works.
    None,
    /// Returns a wrong value with this probability per step (per mille); `shared` wrong
    /// values are the same for every faulty replica (a common-mode fault).
    Value {
        /// Probability per step, per mille.
        per_mille: u64,
        /// Whether all faulty replicas agree on the wrong value.
        shared: bool,
    },
    /// Stops at this tick.
    Crash(u64),
}

/// One run's configuration.
#[derive(Clone, Copy, Debug)]
pub struct Setup {
    /// The three replicas' faults.
    pub replicas: [Fault; 3],
    /// The voter's fault.
    pub voter: Fault,
    /// The voter runs inside the client's process (it shares fate with it).
    pub voter_in_client: bool,
}

/// Messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Msg {
    /// Client to replicas: step and input.
    Input(u64, u64),
    /// Replica to voter.
    Output(u64, u64),
    /// Voter to client.
    Voted(u64, u64),
}

const CLIENT: Pid = 0;
const VOTER: Pid = 4;

/// What the client accepted, step by step.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    /// (step, input, accepted value).
    pub accepted: Vec<(u64, u64, u64)>,
}

/// Runs [`STEPS`] inputs through the replicas and the voter.
pub fn execute(seed: u64, setup: Setup, trace: &mut Trace) -> Outcome {
    let rng = Rng::new(seed);
    let mut faults_rng = rng.fork(2);
    let mut sim: Sim<Msg> = Sim::new(rng.fork(1), Faults::lossy(0, (1, 3)), trace.is_on());
    let voter_pid = if setup.voter_in_client { CLIENT } else { VOTER };
    let mut inbox: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    let mut out = Outcome::default();
    let mut inputs = BTreeMap::new();
    sim.set_timer(CLIENT, 1, 0);
    for (i, f) in setup.replicas.iter().enumerate() {
        if let Fault::Crash(t) = f {
            sim.set_timer(100 + i + 1, *t, 0);
        }
    }
    if let Fault::Crash(t) = setup.voter {
        sim.set_timer(100 + voter_pid, t, 0);
    }
    let mut step = 0;
    while let Some(event) = sim.step(STEPS * STEP_TICKS + 50) {
        match event {
            Event::Timer { node, .. } if node >= 100 => sim.crash(node - 100),
            Event::Timer {
                node: CLIENT,
                tag: 0,
            } if step < STEPS => {
                step += 1;
                let x = faults_rng.range(0, 1_000_000);
                inputs.insert(step, x);
                for r in 1..=3 {
                    sim.send(CLIENT, r, Msg::Input(step, x));
                }
                sim.set_timer(CLIENT, STEP_TICKS, 0);
                sim.set_timer(voter_pid, VOTE_WAIT_TICKS, step);
            }
            Event::Timer { tag, .. } if tag > 0 => {
                let got = inbox.remove(&tag).unwrap_or_default();
                let voted = vote(&got).map(|v| corrupt(setup.voter, v, &mut faults_rng, 0));
                sim.note(|| format!("vote step {tag} over {got:?} -> {voted:?}"));
                if let Some(v) = voted {
                    sim.send(voter_pid, CLIENT, Msg::Voted(tag, v));
                }
            }
            Event::Deliver {
                to,
                msg: Msg::Input(s, x),
                ..
            } => {
                let v = corrupt(setup.replicas[to - 1], compute(x), &mut faults_rng, s);
                sim.send(to, voter_pid, Msg::Output(s, v));
            }
            Event::Deliver {
                msg: Msg::Output(s, v),
                ..
            } => inbox.entry(s).or_default().push(v),
            Event::Deliver {
                msg: Msg::Voted(s, v),
                ..
            } => out.accepted.push((s, inputs[&s], v)),
            Event::Timer { .. } => {}
        }
    }
    let n = out.accepted.len();
    sim.note(|| format!("client accepted {n} of {STEPS} results"));
    trace.append(&sim.take_trace());
    out
}

fn corrupt(fault: Fault, v: u64, rng: &mut Rng, step: u64) -> u64 {
    match fault {
        Fault::Value { per_mille, shared } if rng.chance(per_mille, 1000) => {
            if shared {
                v ^ (0x5A5 + step)
            } else {
                v ^ rng.range(1, 1 << 20)
            }
        }
        _ => v,
    }
}

/// Correctness: every result the client accepted is the function of its input.
pub fn check_outputs(o: &Outcome) -> Option<Violation> {
    let (s, x, v) = o.accepted.iter().find(|(_, x, v)| compute(*x) != *v)?;
    Some(Violation::new(
        "client acts only on correct results",
        format!("step {s}: accepted {v}, correct is {}", compute(*x)),
    ))
}

/// Availability: the client got a result for every step.
pub fn check_available(o: &Outcome) -> Option<Violation> {
    (o.accepted.len() as u64 != STEPS).then(|| {
        Violation::new(
            "every step answered",
            format!("{} of {STEPS} steps answered", o.accepted.len()),
        )
    })
}

fn pick(seed: u64) -> (usize, u64) {
    let mut rng = Rng::new(seed ^ 0x7312);
    (rng.range(0, 3) as usize, rng.range(20, 300))
}

fn one_faulty(seed: u64) -> Setup {
    let (i, _) = pick(seed);
    let mut replicas = [Fault::None; 3];
    replicas[i] = Fault::Value {
        per_mille: 500,
        shared: false,
    };
    Setup {
        replicas,
        voter: Fault::None,
        voter_in_client: false,
    }
}

fn one_crashed(seed: u64) -> Setup {
    let (i, t) = pick(seed);
    let mut replicas = [Fault::None; 3];
    replicas[i] = Fault::Crash(t);
    Setup {
        replicas,
        voter: Fault::None,
        voter_in_client: false,
    }
}

fn two_colluding(seed: u64) -> Setup {
    let (i, _) = pick(seed);
    let bad = Fault::Value {
        per_mille: 300,
        shared: true,
    };
    let mut replicas = [bad; 3];
    replicas[i] = Fault::None;
    Setup {
        replicas,
        voter: Fault::None,
        voter_in_client: false,
    }
}

fn bad_voter(seed: u64, in_client: bool) -> Setup {
    let (_, t) = pick(seed);
    Setup {
        replicas: [Fault::None; 3],
        voter: if in_client {
            Fault::Crash(t)
        } else {
            Fault::Value {
                per_mille: 200,
                shared: false,
            }
        },
        voter_in_client: in_client,
    }
}

/// The scenario.
pub fn run(seed: u64, trace_on: bool) -> Report {
    let mut report = Report::new(NAME, SUMMARY, seed);
    let mut trace = Trace::new(trace_on);
    let mut quiet = Trace::new(false);
    type Case = (
        &'static str,
        Expect,
        fn(u64) -> Setup,
        fn(&Outcome) -> Option<Violation>,
    );
    let both: fn(&Outcome) -> Option<Violation> =
        |o| check_outputs(o).or_else(|| check_available(o));
    let cases: [Case; 5] = [
        ("one value-failing replica is masked: every result correct and on time", Expect::Holds, one_faulty, both),
        ("one crashed replica is masked: every result correct and on time", Expect::Holds, one_crashed, both),
        ("two replicas failing alike (beyond k = 1 of 2k + 1) outvote the good one", Expect::Breaks, two_colluding, check_outputs),
        ("a separate voter that value-fails feeds its client wrong results", Expect::Breaks, |s| bad_voter(s, false), check_outputs),
        ("voter in the client's process: when it fails the client fails too, never acting on a wrong result", Expect::Holds, |s| bad_voter(s, true), check_outputs),
    ];
    for (claim, expect, make, check) in cases {
        let v = sweep(claim, expect, seed, 200, |s| {
            check(&execute(s, make(s), &mut quiet))
        });
        trace.header(|| format!("== {claim}: seed {}", v.seed));
        execute(v.seed, make(v.seed), &mut trace);
        report.verdicts.push(v);
    }
    chain_verdicts(&mut report, &mut trace, seed);
    report.figures.push(reliability_figure(seed));
    report.notes.push(
        "with independent, identical wrong values, P(TMR wrong) = 3p^2 - 2p^3 < p for p < 1/2"
            .into(),
    );
    report.trace = trace.into_text();
    report
}

fn chain_verdicts(report: &mut Report, trace: &mut Trace, seed: u64) {
    use crate::tmr_chain::{check_chain, execute, one_per_stage, two_voters_in_one_stage};
    let stages = 4;
    type Faults = fn(u64, usize) -> crate::tmr_chain::FaultyElements;
    let cases: [(&str, Expect, Faults); 2] = [
        (
            "4 stages with a voter per replica: one faulty replica or voter per stage is masked",
            Expect::Holds,
            one_per_stage,
        ),
        (
            "two faulty voters in one stage out-vote the third",
            Expect::Breaks,
            two_voters_in_one_stage,
        ),
    ];
    for (claim, expect, faults) in cases {
        let v = sweep(claim, expect, seed, 200, |s| {
            check_chain(
                &execute(s, stages, &faults(s, stages), 20, &mut Trace::new(false)),
                stages,
            )
        });
        trace.header(|| {
            format!(
                "== {claim}: seed {}, faulty {:?}",
                v.seed,
                faults(v.seed, stages)
            )
        });
        execute(v.seed, stages, &faults(v.seed, stages), 20, trace);
        report.verdicts.push(v);
    }
}

/// Monte Carlo of one voted step: P(wrong output) against the per-component failure
/// probability, for one component, TMR with a perfect voter, and TMR whose voter fails
/// like any component. Wrong values are the same (a stuck-at fault: the worst case).
fn reliability_figure(seed: u64) -> Figure {
    let mut rng = Rng::new(seed ^ 0xF16);
    let ps: Vec<f64> = (0..=10).map(|i| f64::from(i) / 20.0).collect();
    let trials = 20_000;
    let mut simplex = Vec::new();
    let mut tmr = Vec::new();
    let mut tmr_voter = Vec::new();
    let mut analytic = Vec::new();
    for p in &ps {
        let per_mille = (p * 1000.0).round() as u64;
        let (mut s, mut t, mut tv) = (0u32, 0u32, 0u32);
        for _ in 0..trials {
            let outs: Vec<u64> = (0..3)
                .map(|_| if rng.chance(per_mille, 1000) { 1 } else { 0 })
                .collect();
            s += u32::from(outs[0] == 1);
            let wrong = vote(&outs) != Some(0);
            t += u32::from(wrong);
            tv += u32::from(wrong || rng.chance(per_mille, 1000));
        }
        let f = |c: u32| f64::from(c) / f64::from(trials);
        simplex.push((*p, f(s)));
        tmr.push((*p, f(t)));
        tmr_voter.push((*p, f(tv)));
        analytic.push((*p, 3.0 * p * p - 2.0 * p * p * p));
    }
    Figure::new(
        "wrong-output-vs-fault-probability",
        "P(wrong output) of one step",
        "per-component failure probability p",
        "P(wrong output)",
    )
    .with_series("single component", simplex)
    .with_series("TMR, perfect voter", tmr)
    .with_series("TMR, voter fails too", tmr_voter)
    .with_series("3p^2 - 2p^3", analytic)
}
