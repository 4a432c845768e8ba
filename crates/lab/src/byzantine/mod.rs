//! Byzantine generals (notes 000 and 002): oral messages OM(m), signed messages SM(m),
//! and interactive consistency.
//!
//! Glossary: the *commander* (general 0) sends an *order* (ATTACK or RETREAT) to the
//! *lieutenants*; up to m generals are *traitors* who may state anything to anyone.
//! IC1 (*agreement*): all loyal lieutenants obey the same order. IC2 (*validity*): if
//! the commander is loyal, every loyal lieutenant obeys its order. With oral messages
//! OM(m) needs n > 3m; with unforgeable signatures SM(m) works for any n ≥ m + 2.
//! *Interactive consistency* runs one instance per general so that the loyal agree on a
//! whole *vector* of values, each loyal general's entry being its true value.

pub mod om;
pub mod sm;

use crate::report::{Expect, Figure, Report, Violation};
use crate::sim::{Pid, Trace};
use crate::sweep::sweep;
use seedrng::Rng;
use std::collections::BTreeSet;

/// The scenario's name.
pub const NAME: &str = "byzantine-generals";
const SUMMARY: &str = "OM(m) agrees with n > 3m and fails at n = 3, m = 1; SM(m) agrees at n = 3, m = 1; interactive consistency vectors; message counts against n and m.";

/// A general's order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Order {
    /// The default when in doubt.
    Retreat = 0,
    /// Attack.
    Attack = 1,
}

impl Order {
    /// The strict majority of `votes`; RETREAT on a tie.
    pub fn majority(votes: &[Order]) -> Order {
        let attack = votes.iter().filter(|o| **o == Order::Attack).count();
        if 2 * attack > votes.len() {
            Order::Attack
        } else {
            Order::Retreat
        }
    }
}

/// How traitors behave: each statement a traitor makes is drawn from a seeded
/// generator, so a failing strategy is found by the run and replays from its seed.
#[derive(Clone, Debug)]
pub struct Strategy {
    traitors: BTreeSet<Pid>,
    rng: Rng,
}

impl Strategy {
    /// No traitors.
    pub fn honest() -> Strategy {
        Strategy::random(&[], 0)
    }

    /// `traitors` state random orders, drawn from `seed`.
    pub fn random(traitors: &[Pid], seed: u64) -> Strategy {
        Strategy {
            traitors: traitors.iter().copied().collect(),
            rng: Rng::new(seed),
        }
    }

    /// Whether `pid` is a traitor.
    pub fn is_traitor(&self, pid: Pid) -> bool {
        self.traitors.contains(&pid)
    }

    /// What `from` tells `to` about an order it should relay as `honest`.
    pub fn state(&mut self, from: Pid, _to: Pid, _path: &[Pid], honest: Order) -> Order {
        if !self.is_traitor(from) {
            return honest;
        }
        if self.rng.chance(1, 2) {
            Order::Attack
        } else {
            Order::Retreat
        }
    }

    /// Whether traitor `from` stays silent towards `to` this time.
    pub fn silent(&mut self, from: Pid, _to: Pid) -> bool {
        self.is_traitor(from) && self.rng.chance(1, 4)
    }

    fn rotated(&self, by: usize, n: usize) -> Strategy {
        Strategy {
            traitors: self.traitors.iter().map(|t| (t + n - by) % n).collect(),
            rng: self.rng.fork(by as u64),
        }
    }
}

/// IC1 and IC2 for one instance: `decisions[p]` is `None` for the commander and traitors.
pub fn check_generals(
    order: Order,
    commander_loyal: bool,
    decisions: &[Option<Order>],
) -> Option<Violation> {
    let loyal: Vec<(Pid, Order)> = decisions
        .iter()
        .enumerate()
        .filter_map(|(p, d)| d.map(|d| (p, d)))
        .collect();
    if let Some((p, d)) = loyal.iter().find(|(_, d)| *d != loyal[0].1) {
        return Some(Violation::new(
            "IC1 agreement",
            format!(
                "lieutenant {} obeys {:?}, lieutenant {p} obeys {d:?}",
                loyal[0].0, loyal[0].1
            ),
        ));
    }
    let (p, d) = loyal.iter().find(|(_, d)| commander_loyal && *d != order)?;
    Some(Violation::new(
        "IC2 validity",
        format!("loyal commander ordered {order:?}, loyal lieutenant {p} obeys {d:?}"),
    ))
}

/// A random instance from `seed`: the order and m traitors among all n generals.
fn draw(seed: u64, n: usize, m: usize) -> (Order, Vec<Pid>, Strategy) {
    let mut rng = Rng::new(seed);
    let order = if rng.chance(1, 2) {
        Order::Attack
    } else {
        Order::Retreat
    };
    let mut pool: Vec<Pid> = (0..n).collect();
    let traitors: Vec<Pid> = (0..m)
        .map(|_| pool.remove(rng.range(0, pool.len() as u64) as usize))
        .collect();
    let strategy = Strategy::random(&traitors, rng.next_u64());
    (order, traitors, strategy)
}

/// One OM trial: `rounds` = m + 1 is the algorithm, fewer is a planted bug.
pub fn om_trial(
    seed: u64,
    n: usize,
    m: usize,
    rounds: usize,
    trace: &mut Trace,
) -> Option<Violation> {
    let (order, traitors, mut strategy) = draw(seed, n, m);
    trace.header(|| format!("-- OM({m}) n={n} seed={seed} traitors={traitors:?}"));
    let out = om::execute(n, m, rounds, order, &mut strategy, trace);
    check_generals(order, !strategy.is_traitor(0), &out.decisions)
}

/// One SM trial.
pub fn sm_trial(seed: u64, n: usize, m: usize, trace: &mut Trace) -> Option<Violation> {
    let (order, traitors, mut strategy) = draw(seed, n, m);
    trace.header(|| format!("-- SM({m}) n={n} seed={seed} traitors={traitors:?}"));
    let (decisions, _) = sm::execute(n, m, order, &mut strategy, trace);
    check_generals(order, !strategy.is_traitor(0), &decisions)
}

/// Interactive consistency by one OM(m) instance per general: each loyal general's
/// decided vector (`None` for traitors).
pub fn interactive_consistency(
    values: &[Order],
    m: usize,
    strategy: &Strategy,
    trace: &mut Trace,
) -> Vec<Option<Vec<Order>>> {
    let n = values.len();
    let mut vectors: Vec<Option<Vec<Order>>> = (0..n)
        .map(|p| (!strategy.is_traitor(p)).then(|| vec![Order::Retreat; n]))
        .collect();
    for (commander, value) in values.iter().enumerate() {
        // Relabel so that this instance's commander is general 0.
        let mut local = strategy.rotated(commander, n);
        let out = om::execute(n, m, m + 1, *value, &mut local, trace);
        for (p, vector) in vectors.iter_mut().enumerate() {
            let Some(vector) = vector else { continue };
            let local_pid = (p + n - commander) % n;
            vector[commander] = if local_pid == 0 {
                *value
            } else {
                out.decisions[local_pid].unwrap_or(Order::Retreat)
            };
        }
    }
    vectors
}

/// IC's checker: the loyal agree on the vector, and each loyal entry is the true value.
pub fn check_vectors(values: &[Order], vectors: &[Option<Vec<Order>>]) -> Option<Violation> {
    let loyal: Vec<(Pid, &Vec<Order>)> = vectors
        .iter()
        .enumerate()
        .filter_map(|(p, v)| v.as_ref().map(|v| (p, v)))
        .collect();
    if let Some((p, v)) = loyal.iter().find(|(_, v)| *v != loyal[0].1) {
        return Some(Violation::new(
            "IC agreement",
            format!(
                "general {} has {:?}, general {p} has {v:?}",
                loyal[0].0, loyal[0].1
            ),
        ));
    }
    let (p, v) = loyal.first()?;
    let bad = loyal
        .iter()
        .map(|(q, _)| *q)
        .find(|q| v[*q] != values[*q])?;
    Some(Violation::new(
        "IC validity",
        format!(
            "general {p}'s vector says {:?} for loyal general {bad}, who proposed {:?}",
            v[bad], values[bad]
        ),
    ))
}

fn ic_trial(seed: u64, n: usize, m: usize, trace: &mut Trace) -> Option<Violation> {
    let (_, traitors, strategy) = draw(seed, n, m);
    let mut rng = Rng::new(seed ^ 0x1C);
    let values: Vec<Order> = (0..n)
        .map(|_| {
            if rng.chance(1, 2) {
                Order::Attack
            } else {
                Order::Retreat
            }
        })
        .collect();
    trace.header(|| {
        format!("-- IC n={n} m={m} seed={seed} values={values:?} traitors={traitors:?}")
    });
    check_vectors(
        &values,
        &interactive_consistency(&values, m, &strategy, trace),
    )
}

/// The scenario.
pub fn run(seed: u64, trace_on: bool) -> Report {
    let mut report = Report::new(NAME, SUMMARY, seed);
    let mut trace = Trace::new(trace_on);
    let mut quiet = Trace::new(false);
    let mut add = |report: &mut Report,
                   claim: &str,
                   expect,
                   count,
                   f: &dyn Fn(u64, &mut Trace) -> Option<Violation>| {
        let v = sweep(claim, expect, seed, count, |s| f(s, &mut quiet));
        trace.header(|| format!("== {claim}: seed {}", v.seed));
        f(v.seed, &mut trace);
        report.verdicts.push(v);
    };
    add(
        &mut report,
        "OM(1), n = 4: IC1 and IC2 with one traitor",
        Expect::Holds,
        500,
        &|s, t| om_trial(s, 4, 1, 2, t),
    );
    add(
        &mut report,
        "OM(2), n = 7: IC1 and IC2 with two traitors",
        Expect::Holds,
        100,
        &|s, t| om_trial(s, 7, 2, 3, t),
    );
    add(
        &mut report,
        "OM(1), n = 3: a traitor's strategy breaks IC (n = 3m)",
        Expect::Breaks,
        2_000,
        &|s, t| om_trial(s, 3, 1, 2, t),
    );
    add(
        &mut report,
        "planted bug: OM(1) at n = 4 run one round too few",
        Expect::Breaks,
        2_000,
        &|s, t| om_trial(s, 4, 1, 1, t),
    );
    add(
        &mut report,
        "SM(1), n = 3: IC1 and IC2 with signed messages",
        Expect::Holds,
        500,
        &|s, t| sm_trial(s, 3, 1, t),
    );
    add(
        &mut report,
        "SM(2), n = 4: IC1 and IC2 with two traitors",
        Expect::Holds,
        300,
        &|s, t| sm_trial(s, 4, 2, t),
    );
    add(
        &mut report,
        "interactive consistency, n = 4, m = 1: one vector, true loyal entries",
        Expect::Holds,
        200,
        &|s, t| ic_trial(s, 4, 1, t),
    );
    add(
        &mut report,
        "interactive consistency, n = 3, m = 1: vectors diverge",
        Expect::Breaks,
        2_000,
        &|s, t| ic_trial(s, 3, 1, t),
    );
    report.notes.extend(ic_table());
    report.figures.push(message_figure());
    report.trace = trace.into_text();
    report
}

/// Seed 002's table: A, B, C, D with C the traitor; each loyal general's vector.
fn ic_table() -> Vec<String> {
    use Order::{Attack as A, Retreat as R};
    let values = [A, R, A, A];
    let names = ["A", "B", "C", "D"];
    let vectors = interactive_consistency(
        &values,
        1,
        &Strategy::random(&[2], 2),
        &mut Trace::new(false),
    );
    let mut out =
        vec!["interactive consistency as in notes 002 (C is the traitor; 1 = attack):".to_string()];
    for (p, v) in vectors.iter().enumerate() {
        let row = match v {
            Some(v) => v
                .iter()
                .zip(names)
                .map(|(o, n)| format!("{n}:{}", *o as u8))
                .collect::<Vec<_>>()
                .join(" "),
            None => "traitor".to_string(),
        };
        out.push(format!("  {} decides ({row})", names[p]));
    }
    out
}

fn message_figure() -> Figure {
    let mut fig = Figure::new(
        "messages",
        "Messages sent by OM(m) and SM(m) (no traitors)",
        "generals n",
        "messages",
    );
    fig.log_y = true;
    for m in 1..=3usize {
        let pts = (3 * m + 1..=13)
            .map(|n| {
                (
                    n as f64,
                    om::execute(
                        n,
                        m,
                        m + 1,
                        Order::Attack,
                        &mut Strategy::honest(),
                        &mut Trace::new(false),
                    )
                    .messages as f64,
                )
            })
            .collect();
        fig = fig.with_series(&format!("OM({m})"), pts);
    }
    for m in 1..=3usize {
        let pts = (m + 2..=13)
            .map(|n| {
                (
                    n as f64,
                    sm::execute(
                        n,
                        m,
                        Order::Attack,
                        &mut Strategy::honest(),
                        &mut Trace::new(false),
                    )
                    .1 as f64,
                )
            })
            .collect();
        fig = fig.with_series(&format!("SM({m})"), pts);
    }
    fig
}
