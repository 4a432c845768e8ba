//! Two generals over a lossy link (notes 002): no finite protocol guarantees that both
//! attack or neither does.
//!
//! Glossary: a *courier* carries one message across the valley and may be captured
//! (lost); the protocol of *depth k* sends k couriers in turn — the attack plan, its
//! acknowledgement, the acknowledgement's acknowledgement, and so on; each general
//! *attacks* only if every courier addressed to it arrived, otherwise it *holds*.
//! For every k there is a run where the last courier is captured and one general
//! attacks alone: P(disagreement) = (1 - p)^(k-1) p at loss rate p.

use crate::report::{Expect, Figure, Report, Violation};
use crate::sim::{Event, Faults, Pid, Sim, Trace};
use crate::sweep::{fraction, sweep};
use seedrng::Rng;

/// The scenario's name.
pub const NAME: &str = "two-generals";
const SUMMARY: &str = "For every protocol depth k, a seed where one general attacks alone over a lossy link; P(disagreement) against loss rate.";
const HORIZON_TICKS: u64 = 1_000;

/// A general's decision at the horizon.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Attack at dawn.
    Attack,
    /// Stay in camp.
    Hold,
}

/// The courier with its number in the protocol (1 = the plan, 2 = its ack, …).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Courier(pub u32);

/// One general's sans-IO core.
#[derive(Clone, Debug)]
pub struct General {
    /// 0 for the general who proposes the attack, 1 for the other.
    id: Pid,
    depth: u32,
    highest_received: u32,
}

impl General {
    /// General `id` (0 proposes) in the protocol of depth `depth` (at least 1).
    pub fn new(id: Pid, depth: u32) -> General {
        assert!(depth >= 1);
        assert!(id <= 1);
        General {
            id,
            depth,
            highest_received: 0,
        }
    }

    /// The courier to send at the start (only the proposer sends one).
    pub fn start(&self) -> Option<Courier> {
        (self.id == 0).then_some(Courier(1))
    }

    /// Handles an arriving courier and returns the reply courier, if the protocol
    /// has one left to send.
    pub fn on_courier(&mut self, c: Courier) -> Option<Courier> {
        if c.0 <= self.highest_received {
            return None; // a duplicate
        }
        self.highest_received = c.0;
        (c.0 < self.depth).then_some(Courier(c.0 + 1))
    }

    /// Attack iff every courier addressed to this general arrived.
    pub fn decide(&self) -> Decision {
        // Couriers with odd numbers go to general 1, even ones to general 0.
        let last_for_me = (1..=self.depth)
            .rev()
            .find(|n| (*n % 2 == 1) == (self.id == 1));
        match last_for_me {
            None => Decision::Attack,
            Some(n) if self.highest_received >= n => Decision::Attack,
            Some(_) => Decision::Hold,
        }
    }
}

/// Agreement: both generals attack or both hold.
pub fn check_agreement(decisions: [Decision; 2]) -> Option<Violation> {
    (decisions[0] != decisions[1]).then(|| {
        Violation::new(
            "agreement",
            format!(
                "general 0 decided {:?}, general 1 decided {:?}",
                decisions[0], decisions[1]
            ),
        )
    })
}

/// Runs one battle of depth `depth` at loss `loss_per_mille`; returns both decisions.
pub fn battle(seed: u64, depth: u32, loss_per_mille: u64, trace: &mut Trace) -> [Decision; 2] {
    let mut sim: Sim<Courier> = Sim::new(
        Rng::new(seed),
        Faults::lossy(loss_per_mille, (1, 5)),
        trace.is_on(),
    );
    let mut generals = [General::new(0, depth), General::new(1, depth)];
    if let Some(c) = generals[0].start() {
        sim.send(0, 1, c);
    }
    while let Some(event) = sim.step(HORIZON_TICKS) {
        if let Event::Deliver { to, msg, .. } = event {
            if let Some(reply) = generals[to].on_courier(msg) {
                sim.send(to, 1 - to, reply);
            }
        }
    }
    let decisions = [generals[0].decide(), generals[1].decide()];
    sim.note(|| {
        format!(
            "decide general0={:?} general1={:?}",
            decisions[0], decisions[1]
        )
    });
    trace.append(&sim.take_trace());
    decisions
}

/// The scenario: agreement on a reliable link; a counter-example for each depth;
/// the disagreement curve.
pub fn run(seed: u64, trace_on: bool) -> Report {
    let mut report = Report::new(NAME, SUMMARY, seed);
    let mut trace = Trace::new(trace_on);
    let mut quiet = Trace::new(false);
    report.verdicts.push(sweep(
        "agreement over a reliable link, depths 1-5",
        Expect::Holds,
        seed,
        200,
        |s| (1..=5).find_map(|k| check_agreement(battle(s, k, 0, &mut quiet))),
    ));
    for depth in 1..=5u32 {
        let verdict = sweep(
            &format!("depth {depth}: one general attacks alone at loss 30%"),
            Expect::Breaks,
            seed,
            5_000,
            |s| check_agreement(battle(s, depth, 300, &mut quiet)),
        );
        if verdict.violation.is_some() {
            trace.header(|| format!("== depth {depth}, counter-example seed {}", verdict.seed));
            battle(verdict.seed, depth, 300, &mut trace);
        }
        report.verdicts.push(verdict);
    }
    report.figures.push(disagreement_figure(seed));
    report.notes.push(
        "P(disagreement) = (1-p)^(k-1) p: the last courier lost, all before it delivered.".into(),
    );
    report.trace = trace.into_text();
    report
}

fn disagreement_figure(seed: u64) -> Figure {
    let mut fig = Figure::new(
        "disagreement-vs-loss",
        "Two generals: P(one attacks alone) against loss rate",
        "courier loss rate",
        "P(disagreement)",
    );
    let mut quiet = Trace::new(false);
    for depth in [1u32, 2, 3, 5] {
        let points = (0..=9)
            .map(|tenth| {
                let loss = tenth * 100;
                let p = fraction(seed, 1_000, |s| {
                    check_agreement(battle(s, depth, loss, &mut quiet)).is_some()
                });
                (loss as f64 / 1000.0, p)
            })
            .collect();
        fig = fig.with_series(&format!("k = {depth}"), points);
    }
    fig
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decision_rule_matches_the_chain() {
        let mut g1 = General::new(1, 2);
        assert_eq!(g1.decide(), Decision::Hold);
        assert_eq!(g1.on_courier(Courier(1)), Some(Courier(2)));
        assert_eq!(g1.decide(), Decision::Attack);
        let g0 = General::new(0, 1);
        assert_eq!(g0.decide(), Decision::Attack);
    }
}
