//! Flooding consensus under fail-stop crashes (notes 001 and 004).
//!
//! Glossary: execution proceeds in synchronous *rounds* (a message sent in round r
//! arrives by its end); each process floods its *known set* W of proposals to all;
//! at the end of the last round it *decides* min(W). A process may *crash* in the
//! middle of a round, after reaching only some receivers. A *dangerous chain* is a
//! sequence of crashing processes, each the only one to pass a proposal to the next,
//! ending at a correct process that learns it in the last round. With f crashes a chain
//! spans at most f rounds, so deciding after f + 1 rounds is safe; after f rounds the
//! chain can still be carrying a value that only some correct processes have.

use crate::report::{Expect, Figure, Report, Violation};
use crate::sim::{Event, Faults, Pid, Sim, Trace};
use crate::sweep::{fraction, sweep};
use seedrng::Rng;
use std::collections::BTreeSet;

/// The scenario's name.
pub const NAME: &str = "flooding-consensus";
const SUMMARY: &str = "Fail-stop flooding consensus: agreement with f crashes after f+1 rounds; a dangerous chain breaks it when only f rounds are run.";

/// One process's sans-IO core.
#[derive(Clone, Debug, Default)]
pub struct FloodProcess {
    known: BTreeSet<u32>,
    decision: Option<u32>,
}

impl FloodProcess {
    /// A process that proposes `proposal`.
    pub fn new(proposal: u32) -> FloodProcess {
        FloodProcess {
            known: BTreeSet::from([proposal]),
            decision: None,
        }
    }

    /// The known set to flood this round.
    pub fn round_message(&self) -> BTreeSet<u32> {
        self.known.clone()
    }

    /// Merges a received known set.
    pub fn on_known(&mut self, set: &BTreeSet<u32>) {
        self.known.extend(set.iter().copied());
    }

    /// Decides min(W) (called at the end of the last round).
    pub fn decide(&mut self) -> Option<u32> {
        self.decision = self.known.iter().next().copied();
        self.decision
    }
}

/// When and to whom one faulty process gets its last round's message out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Crash {
    /// The faulty process.
    pub pid: Pid,
    /// The round in which it crashes (1-based).
    pub round: u32,
    /// The receivers its last message reaches.
    pub reaches: Vec<Pid>,
}

/// The outcome a checker judges.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// Every process's proposal.
    pub proposals: Vec<u32>,
    /// Each process's decision; `None` for crashed processes (or undecided ones).
    pub decisions: Vec<Option<u32>>,
    /// The crash schedule.
    pub crashes: Vec<Crash>,
}

impl Outcome {
    fn correct(&self) -> impl Iterator<Item = Pid> + '_ {
        (0..self.proposals.len()).filter(|p| self.crashes.iter().all(|c| c.pid != *p))
    }
}

/// Agreement: all correct processes decide the same value.
pub fn check_agreement(o: &Outcome) -> Option<Violation> {
    let decided: Vec<(Pid, Option<u32>)> = o.correct().map(|p| (p, o.decisions[p])).collect();
    let first = decided.first()?.1;
    let other = decided.iter().find(|(_, d)| *d != first)?;
    let show = |d: Option<u32>| d.map_or("nothing".to_string(), |v| v.to_string());
    Some(Violation::new(
        "agreement",
        format!(
            "p{} decided {} but p{} decided {}; crashes {:?}",
            decided[0].0,
            show(first),
            other.0,
            show(other.1),
            o.crashes
        ),
    ))
}

/// Validity: every decision is some process's proposal.
pub fn check_validity(o: &Outcome) -> Option<Violation> {
    let (p, d) = o
        .decisions
        .iter()
        .enumerate()
        .find_map(|(p, d)| d.filter(|v| !o.proposals.contains(v)).map(|v| (p, v)))?;
    Some(Violation::new(
        "validity",
        format!("p{p} decided {d}, never proposed"),
    ))
}

/// Termination: every correct process decided.
pub fn check_termination(o: &Outcome) -> Option<Violation> {
    let p = o.correct().find(|p| o.decisions[*p].is_none())?;
    Some(Violation::new(
        "termination",
        format!("correct p{p} did not decide"),
    ))
}

/// All three checkers; the first violation.
pub fn check_all(o: &Outcome) -> Option<Violation> {
    check_agreement(o)
        .or_else(|| check_validity(o))
        .or_else(|| check_termination(o))
}

/// Draws `f` crashes among `n` processes in rounds `1..=rounds`.
pub fn crash_schedule(rng: &mut Rng, n: usize, f: usize, rounds: u32) -> Vec<Crash> {
    let mut pids: Vec<Pid> = (0..n).collect();
    let mut out = Vec::new();
    for _ in 0..f {
        let i = rng.range(0, pids.len() as u64) as usize;
        let pid = pids.remove(i);
        let round = rng.range(1, u64::from(rounds) + 1) as u32;
        let reaches = (0..n).filter(|q| *q != pid && rng.chance(1, 3)).collect();
        out.push(Crash {
            pid,
            round,
            reaches,
        });
    }
    out
}

/// One execution with `n` processes, `f` crashes, deciding after `rounds` rounds.
pub fn execute(seed: u64, n: usize, f: usize, rounds: u32, trace: &mut Trace) -> Outcome {
    let rng = Rng::new(seed);
    let mut draws = rng.fork(1);
    let proposals: Vec<u32> = (0..n).map(|_| draws.range(0, 100) as u32).collect();
    let crashes = crash_schedule(&mut rng.fork(2), n, f, rounds);
    let mut sim: Sim<BTreeSet<u32>> = Sim::new(rng.fork(3), Faults::reliable(1), trace.is_on());
    sim.note(|| format!("n={n} f={f} rounds={rounds} proposals={proposals:?} crashes={crashes:?}"));
    let mut procs: Vec<FloodProcess> = proposals.iter().map(|v| FloodProcess::new(*v)).collect();
    for round in 1..=rounds {
        for (p, proc_) in procs.iter().enumerate() {
            if sim.is_crashed(p) {
                continue;
            }
            let crash = crashes.iter().find(|c| c.pid == p && c.round == round);
            let msg = proc_.round_message();
            for q in (0..n).filter(|q| *q != p) {
                if crash.is_none_or(|c| c.reaches.contains(&q)) {
                    sim.send(p, q, msg.clone());
                }
            }
            if crash.is_some() {
                sim.crash(p);
            }
        }
        while let Some(event) = sim.step(u64::from(round)) {
            if let Event::Deliver { to, msg, .. } = event {
                procs[to].on_known(&msg);
            }
        }
    }
    let decisions: Vec<Option<u32>> = procs
        .iter_mut()
        .enumerate()
        .map(|(p, proc_)| {
            if sim.is_crashed(p) {
                None
            } else {
                proc_.decide()
            }
        })
        .collect();
    sim.note(|| format!("decisions={decisions:?}"));
    trace.append(&sim.take_trace());
    Outcome {
        proposals,
        decisions,
        crashes,
    }
}

/// The scenario: f+1 rounds agree; f rounds break on a dangerous chain; the curve of
/// disagreement against rounds run.
pub fn run(seed: u64, trace_on: bool) -> Report {
    let mut report = Report::new(NAME, SUMMARY, seed);
    let mut trace = Trace::new(trace_on);
    let mut quiet = Trace::new(false);
    for f in 1..=3usize {
        let n = f + 3;
        let rounds = f as u32 + 1;
        report.verdicts.push(sweep(
            &format!("n={n}, f={f}: agreement, validity, termination after f+1 = {rounds} rounds"),
            Expect::Holds,
            seed,
            400,
            |s| check_all(&execute(s, n, f, rounds, &mut quiet)),
        ));
    }
    for f in 1..=2usize {
        let n = f + 3;
        let verdict = sweep(
            &format!("n={n}, f={f}: a dangerous chain breaks agreement when only f rounds are run"),
            Expect::Breaks,
            seed,
            20_000,
            |s| check_agreement(&execute(s, n, f, f as u32, &mut quiet)),
        );
        if verdict.violation.is_some() {
            trace.header(|| {
                format!(
                    "== f={f}, {f} rounds, counter-example seed {}",
                    verdict.seed
                )
            });
            execute(verdict.seed, n, f, f as u32, &mut trace);
        }
        report.verdicts.push(verdict);
    }
    report.figures.push(rounds_figure(seed));
    report.trace = trace.into_text();
    report
}

fn rounds_figure(seed: u64) -> Figure {
    let mut fig = Figure::new(
        "disagreement-vs-rounds",
        "Flooding consensus: runs that disagree against rounds run",
        "rounds run before deciding",
        "fraction of seeds with disagreement",
    );
    let mut quiet = Trace::new(false);
    for f in 1..=3usize {
        let points = (1..=f as u32 + 2)
            .map(|rounds| {
                let p = fraction(seed, 2_000, |s| {
                    check_agreement(&execute(s, f + 3, f, rounds, &mut quiet)).is_some()
                });
                (f64::from(rounds), p)
            })
            .collect();
        fig = fig.with_series(&format!("f = {f}, n = {}", f + 3), points);
    }
    fig
}
