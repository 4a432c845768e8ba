//! Single-decree Paxos as a write-once register (notes 004, 001, 000).
//!
//! Glossary: a *proposer* bids with a *ballot* (round, proposer id), unique and totally
//! ordered; an *acceptor* sells its loyalty at auction — it *promises* never to accept
//! a lower ballot (phase 1, *prepare*/*promise*, returning what it accepted before) and
//! *accepts* a value under a ballot it has not outbid (phase 2, *accept*/*accepted*); a
//! value is *chosen* (written to the register) once a majority of acceptors accept it
//! under one ballot; a *learner* learns it from a majority of accepted messages.
//! Acceptors keep their promise and accepted value on stable storage across a crash.
//! Two proposers that keep outbidding each other *duel* (a livelock); randomized
//! *back-off* before a new bid ends the duel with probability 1.

use crate::report::{Expect, Figure, Report, Violation};
use crate::sim::{Event, Faults, Pid, Sim, Trace};
use crate::sweep::{fraction, run_cases, Case};
use seedrng::Rng;
use std::collections::{BTreeMap, BTreeSet};

/// The scenario's name.
pub const NAME: &str = "paxos-register";
const SUMMARY: &str = "Single-decree Paxos as a write-once register: one value decided despite acceptor crash and restart; dueling proposers livelock, randomized back-off ends it.";
const ACCEPTORS: usize = 3;
const MAJORITY: usize = ACCEPTORS / 2 + 1;

/// A bid: compared by round, then by proposer id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Ballot {
    /// The proposer's attempt number.
    pub round: u64,
    /// The proposer, to make ballots unique.
    pub proposer: Pid,
}

/// Paxos messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Msg {
    /// Phase 1a.
    Prepare(Ballot),
    /// Phase 1b: the promise, with the highest-ballot value accepted so far.
    Promise(Ballot, Option<(Ballot, u64)>),
    /// Phase 2a.
    Accept(Ballot, u64),
    /// Phase 2b, sent to every learner.
    Accepted(Ballot, u64),
    /// The bid lost: the acceptor has promised the ballot given second.
    Nack(Ballot, Ballot),
}

/// An acceptor's stable state and handlers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Acceptor {
    promised: Option<Ballot>,
    accepted: Option<(Ballot, u64)>,
}

impl Acceptor {
    /// Phase 1b.
    pub fn on_prepare(&mut self, b: Ballot) -> Msg {
        match self.promised {
            Some(p) if p > b => Msg::Nack(b, p),
            _ => {
                self.promised = Some(b);
                Msg::Promise(b, self.accepted)
            }
        }
    }

    /// Phase 2b.
    pub fn on_accept(&mut self, b: Ballot, v: u64) -> Msg {
        match self.promised {
            Some(p) if p > b => Msg::Nack(b, p),
            _ => {
                self.promised = Some(b);
                self.accepted = Some((b, v));
                Msg::Accepted(b, v)
            }
        }
    }
}

/// What a proposer asks its driver to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Out {
    /// Send to every acceptor.
    ToAcceptors(Msg),
    /// Call [`Proposer::on_timer`] with `tag` after `ticks`.
    Timer(u64, u64),
}

/// Proposer knobs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProposerConfig {
    /// Ticks between a majority of promises and sending the accept (the proposer's own
    /// processing and logging).
    pub accept_delay_ticks: u64,
    /// A new bid waits a uniform draw in `[0, backoff_ticks)`; 0 retries at once.
    pub backoff_ticks: u64,
    /// A bid with no outcome is retried after this long.
    pub retry_timeout_ticks: u64,
    /// Planted bug: propose the own value even when a promise reports an accepted one.
    pub ignore_promised_values: bool,
}

/// A proposer's sans-IO core; it is also a learner.
#[derive(Clone, Debug)]
pub struct Proposer {
    me: Pid,
    value: u64,
    cfg: ProposerConfig,
    ballot: Ballot,
    promises: BTreeMap<Pid, Option<(Ballot, u64)>>,
    accepting: bool,
    idle: bool,
    floor: u64,
    accepted_by: BTreeMap<Ballot, (u64, BTreeSet<Pid>)>,
    learned: Option<u64>,
    timer_gen: u64,
}

impl Proposer {
    /// Proposer `me` wanting to write `value`.
    pub fn new(me: Pid, value: u64, cfg: ProposerConfig) -> Proposer {
        Proposer {
            me,
            value,
            cfg,
            ballot: Ballot {
                round: 0,
                proposer: me,
            },
            promises: BTreeMap::new(),
            accepting: false,
            idle: true,
            floor: 0,
            accepted_by: BTreeMap::new(),
            learned: None,
            timer_gen: 0,
        }
    }

    /// The value this learner learned, if any.
    pub fn learned(&self) -> Option<u64> {
        self.learned
    }

    /// Sets the value to write and bids (a proposer that already bid keeps its ballot
    /// history, so the new bid is higher than any it used before).
    pub fn propose(&mut self, value: u64) -> Vec<Out> {
        self.value = value;
        self.bid(0)
    }

    /// Starts a new bid above `floor`.
    pub fn bid(&mut self, floor: u64) -> Vec<Out> {
        self.floor = self.floor.max(floor);
        self.ballot = Ballot {
            round: self.ballot.round.max(self.floor) + 1,
            proposer: self.me,
        };
        self.promises.clear();
        self.accepting = false;
        self.idle = false;
        self.timer_gen += 1;
        vec![
            Out::ToAcceptors(Msg::Prepare(self.ballot)),
            Out::Timer(self.cfg.retry_timeout_ticks, self.timer_gen * 2),
        ]
    }

    /// Timers: even tags retry a stalled bid, odd tags send the delayed accept.
    pub fn on_timer(&mut self, tag: u64, rng: &mut Rng) -> Vec<Out> {
        let stale = tag / 2 != self.timer_gen;
        if stale || self.learned.is_some() {
            return Vec::new();
        }
        if tag % 2 == 1 {
            return vec![Out::ToAcceptors(Msg::Accept(self.ballot, self.proposal()))];
        }
        if self.idle {
            return self.bid(0);
        }
        self.back_off(self.ballot.round, rng)
    }

    fn back_off(&mut self, floor: u64, rng: &mut Rng) -> Vec<Out> {
        let wait = rng.range(0, self.cfg.backoff_ticks);
        if wait == 0 {
            return self.bid(floor);
        }
        // Drop the current bid (its replies and timers go stale) and bid again later.
        self.timer_gen += 1;
        self.floor = self.floor.max(floor);
        self.idle = true;
        vec![Out::Timer(wait, self.timer_gen * 2)]
    }

    fn proposal(&self) -> u64 {
        let prior = self.promises.values().flatten().max_by_key(|(b, _)| *b);
        match prior {
            Some((_, v)) if !self.cfg.ignore_promised_values => *v,
            _ => self.value,
        }
    }

    /// Handles a reply from acceptor `from`.
    pub fn on_msg(&mut self, from: Pid, msg: Msg, rng: &mut Rng) -> Vec<Out> {
        match msg {
            Msg::Promise(b, prior) if b == self.ballot && !self.accepting && !self.idle => {
                self.promises.insert(from, prior);
                if self.promises.len() < MAJORITY {
                    return Vec::new();
                }
                self.accepting = true;
                vec![Out::Timer(
                    self.cfg.accept_delay_ticks,
                    self.timer_gen * 2 + 1,
                )]
            }
            Msg::Nack(b, promised) if b == self.ballot && !self.idle && self.learned.is_none() => {
                self.back_off(promised.round, rng)
            }
            Msg::Accepted(b, v) => {
                let entry = self.accepted_by.entry(b).or_insert((v, BTreeSet::new()));
                entry.1.insert(from);
                if entry.1.len() >= MAJORITY && self.learned.is_none() {
                    self.learned = Some(v);
                }
                Vec::new()
            }
            _ => Vec::new(),
        }
    }
}

/// What one run produced, for the checkers.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    /// Every (acceptor, ballot, value) acceptance, in order.
    pub acceptances: Vec<(Pid, Ballot, u64)>,
    /// Values the proposers wanted to write.
    pub proposed: Vec<u64>,
    /// What each learner learned.
    pub learned: Vec<Option<u64>>,
    /// The tick of the first learning, if any.
    pub decided_at: Option<u64>,
}

/// The chosen values: those accepted by a majority under one ballot.
pub fn chosen(o: &Outcome) -> BTreeSet<u64> {
    let mut per_ballot: BTreeMap<Ballot, (u64, BTreeSet<Pid>)> = BTreeMap::new();
    for (a, b, v) in &o.acceptances {
        per_ballot
            .entry(*b)
            .or_insert((*v, BTreeSet::new()))
            .1
            .insert(*a);
    }
    per_ballot
        .values()
        .filter(|(_, s)| s.len() >= MAJORITY)
        .map(|(v, _)| *v)
        .collect()
}

/// Safety: at most one value is chosen, it was proposed, and learners learn only it.
pub fn check_safety(o: &Outcome) -> Option<Violation> {
    let chosen = chosen(o);
    if chosen.len() > 1 {
        return Some(Violation::new(
            "one value chosen",
            format!("values {chosen:?} were each accepted by a majority"),
        ));
    }
    if let Some(v) = chosen.iter().find(|v| !o.proposed.contains(v)) {
        return Some(Violation::new(
            "validity",
            format!("{v} chosen but never proposed"),
        ));
    }
    let (i, v) = o
        .learned
        .iter()
        .enumerate()
        .find_map(|(i, l)| l.filter(|v| !chosen.contains(v)).map(|v| (i, v)))?;
    Some(Violation::new(
        "learners learn the chosen value",
        format!("learner {i} learned {v}, chosen {chosen:?}"),
    ))
}

/// Termination: some learner learned a value before the horizon.
pub fn check_termination(o: &Outcome, horizon: u64) -> Option<Violation> {
    o.decided_at.is_none().then(|| {
        Violation::new(
            "termination",
            format!(
                "no value decided in {horizon} ticks; {} acceptances",
                o.acceptances.len()
            ),
        )
    })
}

/// One run's configuration.
#[derive(Clone, Debug)]
pub struct Setup {
    /// The network.
    pub faults: Faults,
    /// Both proposers' knobs.
    pub cfg: ProposerConfig,
    /// When each proposer makes its first bid.
    pub start_ticks: [u64; 2],
    /// (acceptor, crash tick, restart tick).
    pub crash: Option<(Pid, u64, u64)>,
    /// Planted bug: a restarted acceptor has lost its promise and accepted value.
    pub amnesia: bool,
    /// When the run stops.
    pub horizon_ticks: u64,
}

const DRIVER: Pid = 99;
const START_TAG: u64 = u64::MAX;

/// Runs the register with acceptors 0..3 and proposers 3 and 4 (values 100 and 200).
pub fn execute(seed: u64, setup: &Setup, trace: &mut Trace) -> Outcome {
    let rng = Rng::new(seed);
    let mut sim: Sim<Msg> = Sim::new(rng.fork(1), setup.faults.clone(), trace.is_on());
    let mut acceptors = vec![Acceptor::default(); ACCEPTORS];
    let mut proposers = [
        Proposer::new(3, 100, setup.cfg),
        Proposer::new(4, 200, setup.cfg),
    ];
    let mut rngs = [rng.fork(2), rng.fork(3)];
    let mut out = Outcome {
        proposed: vec![100, 200],
        ..Outcome::default()
    };
    for (i, start) in setup.start_ticks.iter().enumerate() {
        sim.set_timer(3 + i, *start, START_TAG);
    }
    if let Some((_, at, back)) = setup.crash {
        sim.set_timer(DRIVER, at, 0);
        sim.set_timer(DRIVER, back, 1);
    }
    while let Some(event) = sim.step(setup.horizon_ticks) {
        let (who, outs) = match event {
            Event::Timer { node: DRIVER, tag } => {
                on_driver(&mut sim, &mut acceptors, setup, tag);
                continue;
            }
            Event::Timer { node, tag } => {
                let p = node - 3;
                let outs = if tag == START_TAG {
                    proposers[p].bid(0)
                } else {
                    proposers[p].on_timer(tag, &mut rngs[p])
                };
                (node, outs)
            }
            Event::Deliver { from, to, msg } if to < ACCEPTORS => {
                on_acceptor(&mut sim, &mut acceptors[to], from, to, msg, &mut out);
                continue;
            }
            Event::Deliver { from, to, msg } => {
                let p = to - 3;
                (to, proposers[p].on_msg(from, msg, &mut rngs[p]))
            }
        };
        apply(&mut sim, who, outs);
        if out.decided_at.is_none() && proposers.iter().any(|p| p.learned().is_some()) {
            out.decided_at = Some(sim.now());
            sim.note(|| "DECIDED".to_string());
        }
    }
    out.learned = proposers.iter().map(Proposer::learned).collect();
    sim.note(|| format!("learned={:?} chosen={:?}", out.learned, chosen(&out)));
    trace.append(&sim.take_trace());
    out
}

fn on_driver(sim: &mut Sim<Msg>, acceptors: &mut [Acceptor], setup: &Setup, tag: u64) {
    let Some((a, _, _)) = setup.crash else { return };
    if tag == 0 {
        sim.crash(a);
    } else {
        if setup.amnesia {
            acceptors[a] = Acceptor::default();
        }
        sim.restart(a);
    }
}

fn on_acceptor(
    sim: &mut Sim<Msg>,
    acc: &mut Acceptor,
    from: Pid,
    me: Pid,
    msg: Msg,
    out: &mut Outcome,
) {
    match msg {
        Msg::Prepare(b) => {
            let reply = acc.on_prepare(b);
            sim.send(me, from, reply);
        }
        Msg::Accept(b, v) => match acc.on_accept(b, v) {
            Msg::Accepted(b, v) => {
                out.acceptances.push((me, b, v));
                for learner in 3..5 {
                    sim.send(me, learner, Msg::Accepted(b, v));
                }
            }
            nack => sim.send(me, from, nack),
        },
        _ => {}
    }
}

fn apply(sim: &mut Sim<Msg>, who: Pid, outs: Vec<Out>) {
    for o in outs {
        match o {
            Out::ToAcceptors(msg) => {
                for a in 0..ACCEPTORS {
                    sim.send(who, a, msg.clone());
                }
            }
            Out::Timer(ticks, tag) => sim.set_timer(who, ticks, tag),
        }
    }
}

const HORIZON: u64 = 1_000;

fn duel_setup(seed: u64, backoff_ticks: u64) -> Setup {
    let offset = Rng::new(seed ^ 0xD0E1).range(0, 8);
    Setup {
        faults: Faults::reliable(1),
        cfg: ProposerConfig {
            accept_delay_ticks: 3,
            backoff_ticks,
            retry_timeout_ticks: 40,
            ignore_promised_values: false,
        },
        start_ticks: [0, offset],
        crash: None,
        amnesia: false,
        horizon_ticks: HORIZON,
    }
}

fn crash_setup(seed: u64, amnesia: bool, ignore_promised_values: bool) -> Setup {
    let mut rng = Rng::new(seed ^ 0xC4A5);
    let victim = rng.range(0, ACCEPTORS as u64) as Pid;
    let at = rng.range(1, 40);
    let mut faults = Faults::lossy(100, (1, 5));
    faults.duplicate_per_mille = 50;
    Setup {
        faults,
        cfg: ProposerConfig {
            accept_delay_ticks: 1,
            backoff_ticks: 20,
            retry_timeout_ticks: 30,
            ignore_promised_values,
        },
        start_ticks: [0, rng.range(0, 40)],
        crash: Some((victim, at, at + rng.range(5, 80))),
        amnesia,
        horizon_ticks: HORIZON,
    }
}

fn both(o: &Outcome) -> Option<Violation> {
    check_safety(o).or_else(|| check_termination(o, HORIZON))
}

/// The scenario.
pub fn run(seed: u64, trace_on: bool) -> Report {
    let mut report = Report::new(NAME, SUMMARY, seed);
    let mut trace = Trace::new(trace_on);
    let cases: [Case; 5] = [
        (
            "one value decided despite acceptor crash and restart (loss 10%, duplication 5%)",
            Expect::Holds,
            300,
            |s, t| both(&execute(s, &crash_setup(s, false, false), t)),
        ),
        (
            "dueling proposers, no back-off: livelock, nothing decided",
            Expect::Breaks,
            200,
            |s, t| check_termination(&execute(s, &duel_setup(s, 0), t), HORIZON),
        ),
        (
            "dueling proposers, randomized back-off: decided, one value",
            Expect::Holds,
            300,
            |s, t| both(&execute(s, &duel_setup(s, 8), t)),
        ),
        (
            "planted bug: acceptor forgets its promise on restart",
            Expect::Breaks,
            5_000,
            |s, t| check_safety(&execute(s, &crash_setup(s, true, false), t)),
        ),
        (
            "planted bug: proposer ignores values reported in promises",
            Expect::Breaks,
            5_000,
            |s, t| check_safety(&execute(s, &crash_setup(s, false, true), t)),
        ),
    ];
    run_cases(&mut report, &mut trace, seed, &cases);
    report.figures.push(backoff_figure(seed));
    report.trace = trace.into_text();
    report
}

fn backoff_figure(seed: u64) -> Figure {
    let mut fig = Figure::new(
        "decided-by-tick",
        "Dueling proposers: fraction of seeds decided by each tick",
        "ticks",
        "fraction decided",
    );
    for backoff in [0u64, 2, 4, 8, 16] {
        let decided: Vec<Option<u64>> = (0..200)
            .map(|i| {
                execute(
                    seed + i,
                    &duel_setup(seed + i, backoff),
                    &mut Trace::new(false),
                )
                .decided_at
            })
            .collect();
        let pts = (0..=20)
            .map(|k| {
                let t = k * 10;
                (
                    t as f64,
                    fraction(0, 200, |i| decided[i as usize].is_some_and(|d| d <= t)),
                )
            })
            .collect();
        let name = if backoff == 0 {
            "no back-off".to_string()
        } else {
            format!("back-off < {backoff} ticks")
        };
        fig = fig.with_series(&name, pts);
    }
    fig
}
