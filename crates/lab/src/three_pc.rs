//! Three-phase commit (notes 001): PRE-COMMIT between the vote and the commit, and the
//! termination rules a participant applies when the coordinator is gone.
//!
//! Glossary: after all VOTE-COMMITs the coordinator sends *PREPARE-COMMIT*; a
//! participant moves to *PRECOMMIT* and answers *READY-COMMIT*; with every READY-COMMIT
//! in (or after a timeout: a silent participant has crashed after voting commit) the
//! coordinator sends *GLOBAL-COMMIT*. A participant stuck in READY or PRECOMMIT runs
//! the *termination rule* on the states it can collect: any COMMIT → commit; any
//! ABORT → abort; any PRECOMMIT → commit; any INIT → abort; a majority READY → abort.
//! No participant can be in COMMIT while another is in READY, so fail-stop crashes never
//! block it — but a *partition* can split the participants into groups that apply the
//! rule to different views: one commits, the others abort.

use crate::report::{Expect, Figure, Report, Violation};
use crate::sim::{Event, Faults, Pid, Sim, Trace};
use crate::sweep::{fraction, run_cases, Case};
use crate::two_pc;
use seedrng::Rng;

/// The scenario's name.
pub const NAME: &str = "three-phase-commit";
const SUMMARY: &str = "3PC: no blocking under coordinator (and participant) crash; under a network partition one participant commits while the others abort, and the atomicity checker reports it.";

/// A participant's (or the coordinator's) logged state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Before the vote.
    Init,
    /// Voted commit (the coordinator's WAIT).
    Ready,
    /// PREPARE-COMMIT received (or sent, for the coordinator).
    PreCommit,
    /// Committed.
    Commit,
    /// Aborted.
    Abort,
}

/// 3PC messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Msg {
    /// Phase 1.
    VoteRequest,
    /// VOTE-COMMIT or VOTE-ABORT.
    Vote(bool),
    /// Phase 2.
    PrepareCommit,
    /// The acknowledgement of PREPARE-COMMIT.
    ReadyCommit,
    /// Phase 3 (or the abort).
    Global(State),
    /// Termination: what state are you in?
    StateRequest,
    /// The answer.
    StateIs(State),
}

/// The termination rule over the states a participant collected (its own included)
/// out of `n` participants.
pub fn termination_rule(states: &[State], n: usize) -> Option<State> {
    let has = |s: State| states.contains(&s);
    let ready = states.iter().filter(|s| **s == State::Ready).count();
    if has(State::Commit) {
        Some(State::Commit)
    } else if has(State::Abort) {
        Some(State::Abort)
    } else if has(State::PreCommit) {
        Some(State::Commit)
    } else if has(State::Init) || 2 * ready > n {
        Some(State::Abort)
    } else {
        None
    }
}

/// When the coordinator fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CoordinatorCrash {
    /// At a tick.
    AtTick(u64),
    /// After sending PREPARE-COMMIT to this many participants.
    AfterPrepareSends(usize),
    /// After sending GLOBAL-COMMIT to this many participants.
    AfterCommitSends(usize),
}

/// One run's configuration.
#[derive(Clone, Debug)]
pub struct Setup {
    /// Participants 1..=n.
    pub n: usize,
    /// The coordinator's failure.
    pub coordinator_crash: Option<CoordinatorCrash>,
    /// (participant, tick) of a participant's failure (for good).
    pub participant_crash: Option<(Pid, u64)>,
    /// (tick, participants cut off from the rest).
    pub partition: Option<(u64, Vec<Pid>)>,
    /// Planted bug: a READY participant whose coordinator went quiet aborts on its own,
    /// as if it were still in INIT, instead of running the termination rule.
    pub ready_aborts_alone: bool,
}

const DRIVER: Pid = 10_000;
const HORIZON: u64 = 400;
const VOTE_TIMEOUT: u64 = 15;
const BLOCKED_TIMEOUT: u64 = 30;
const TERM_WINDOW: u64 = 8;
const TAG_START: u64 = 9;
const TAG_VOTES: u64 = 0;
const TAG_ACKS: u64 = 1;

/// The final states for the checkers.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// Each participant's state (index p - 1).
    pub states: Vec<State>,
    /// Which participants are down at the end.
    pub crashed: Vec<bool>,
}

struct World<'a> {
    setup: &'a Setup,
    sim: Sim<Msg>,
    coord: State,
    acks: usize,
    votes: usize,
    parts: Vec<State>,
    collected: Vec<Vec<State>>,
    crashed_coord: bool,
}

impl World<'_> {
    fn multicast_crashing(&mut self, msg: Msg, crash_after: Option<usize>) {
        for p in 1..=self.setup.n {
            if crash_after == Some(p - 1) && !self.crashed_coord {
                self.crashed_coord = true;
                self.sim.crash(0);
                return;
            }
            self.sim.send(0, p, msg);
        }
    }

    fn on_coordinator_timer(&mut self, tag: u64) {
        let current = matches!(
            (tag, self.coord),
            (TAG_START, State::Init) | (TAG_VOTES, State::Ready) | (TAG_ACKS, State::PreCommit)
        );
        if current {
            self.on_coordinator(None);
        }
    }

    fn on_coordinator(&mut self, msg: Option<Msg>) {
        let crash = self.setup.coordinator_crash;
        match (self.coord, msg) {
            (State::Init, None) => {
                self.coord = State::Ready;
                self.multicast_crashing(Msg::VoteRequest, None);
                self.sim.set_timer(0, VOTE_TIMEOUT, TAG_VOTES);
            }
            (State::Ready, Some(Msg::Vote(true))) => {
                self.votes += 1;
                if self.votes == self.setup.n {
                    self.coord = State::PreCommit;
                    let k = match crash {
                        Some(CoordinatorCrash::AfterPrepareSends(k)) => Some(k),
                        _ => None,
                    };
                    self.multicast_crashing(Msg::PrepareCommit, k);
                    self.sim.set_timer(0, VOTE_TIMEOUT, TAG_ACKS);
                }
            }
            (State::Ready, Some(Msg::Vote(false))) | (State::Ready, None) => {
                self.coord = State::Abort;
                self.multicast_crashing(Msg::Global(State::Abort), None);
            }
            (State::PreCommit, Some(Msg::ReadyCommit)) | (State::PreCommit, None) => {
                self.acks += usize::from(msg.is_some());
                if msg.is_none() || self.acks == self.setup.n {
                    self.coord = State::Commit;
                    let k = match crash {
                        Some(CoordinatorCrash::AfterCommitSends(k)) => Some(k),
                        _ => None,
                    };
                    self.multicast_crashing(Msg::Global(State::Commit), k);
                }
            }
            _ => {}
        }
    }

    fn on_participant(&mut self, p: Pid, from: Pid, msg: Msg) {
        let state = self.parts[p - 1];
        match (state, msg) {
            (State::Init, Msg::VoteRequest) => {
                self.parts[p - 1] = State::Ready;
                self.sim.send(p, 0, Msg::Vote(true));
                self.sim.set_timer(p, BLOCKED_TIMEOUT, 1);
            }
            (State::Ready, Msg::PrepareCommit) => {
                self.parts[p - 1] = State::PreCommit;
                self.sim.send(p, 0, Msg::ReadyCommit);
            }
            (State::Init | State::Ready | State::PreCommit, Msg::Global(d)) => {
                self.parts[p - 1] = d
            }
            (_, Msg::StateRequest) => {
                self.sim.send(p, from, Msg::StateIs(state));
                if state == State::Init {
                    self.parts[p - 1] = State::Abort;
                }
            }
            (_, Msg::StateIs(s)) => self.collected[p - 1].push(s),
            _ => {}
        }
    }

    fn on_participant_timer(&mut self, p: Pid, tag: u64) {
        let state = self.parts[p - 1];
        match (tag, state) {
            (0, State::Init) => self.parts[p - 1] = State::Abort,
            (1, State::Ready) if self.setup.ready_aborts_alone => {
                self.parts[p - 1] = State::Abort;
                self.sim
                    .note(|| format!("participant {p} aborts alone (planted bug)"));
            }
            (1, State::Ready | State::PreCommit) => {
                self.collected[p - 1] = vec![state];
                for q in (1..=self.setup.n).filter(|q| *q != p) {
                    self.sim.send(p, q, Msg::StateRequest);
                }
                self.sim.set_timer(p, TERM_WINDOW, 2);
            }
            (2, State::Ready | State::PreCommit) => {
                let rule = termination_rule(&self.collected[p - 1], self.setup.n);
                match rule {
                    Some(d) => {
                        self.parts[p - 1] = d;
                        let seen = self.collected[p - 1].clone();
                        self.sim.note(|| {
                            format!("participant {p} terminates with {d:?} from {seen:?}")
                        });
                    }
                    None => self.sim.set_timer(p, BLOCKED_TIMEOUT, 1),
                }
            }
            _ => {}
        }
    }

    fn on_driver(&mut self, tag: u64) {
        match tag {
            0 => {
                self.crashed_coord = true;
                self.sim.crash(0);
            }
            1 => {
                let (p, _) = self.setup.participant_crash.expect("scheduled");
                self.sim.crash(p);
            }
            _ => {
                let (_, side) = self.setup.partition.clone().expect("scheduled");
                let rest: Vec<Pid> = (0..=self.setup.n).filter(|p| !side.contains(p)).collect();
                self.sim.partition(&side, &rest);
            }
        }
    }
}

/// Runs one 3PC transaction (every participant votes commit) on a reliable network.
pub fn execute(seed: u64, setup: &Setup, trace: &mut Trace) -> Outcome {
    let mut w = World {
        setup,
        sim: Sim::new(Rng::new(seed), Faults::lossy(0, (1, 3)), trace.is_on()),
        coord: State::Init,
        acks: 0,
        votes: 0,
        parts: vec![State::Init; setup.n],
        collected: vec![Vec::new(); setup.n],
        crashed_coord: false,
    };
    w.sim.set_timer(0, 1, TAG_START);
    for p in 1..=setup.n {
        w.sim.set_timer(p, BLOCKED_TIMEOUT, 0);
    }
    if let Some(CoordinatorCrash::AtTick(t)) = setup.coordinator_crash {
        w.sim.set_timer(DRIVER, t, 0);
    }
    if let Some((_, t)) = setup.participant_crash {
        w.sim.set_timer(DRIVER, t, 1);
    }
    if let Some((t, _)) = &setup.partition {
        w.sim.set_timer(DRIVER, *t, 2);
    }
    while let Some(event) = w.sim.step(HORIZON) {
        match event {
            Event::Timer { node: DRIVER, tag } => w.on_driver(tag),
            Event::Timer { node: 0, tag } => w.on_coordinator_timer(tag),
            Event::Timer { node, tag } => w.on_participant_timer(node, tag),
            Event::Deliver { msg, to: 0, .. } => w.on_coordinator(Some(msg)),
            Event::Deliver { from, to, msg } => w.on_participant(to, from, msg),
        }
    }
    let crashed: Vec<bool> = (1..=setup.n).map(|p| w.sim.is_crashed(p)).collect();
    let states = w.parts.clone();
    w.sim
        .note(|| format!("final participants={states:?} coordinator={:?}", w.coord));
    trace.append(&w.sim.take_trace());
    Outcome { states, crashed }
}

/// Atomicity: no participant commits while another aborts.
pub fn check_atomicity(o: &Outcome) -> Option<Violation> {
    let c = o.states.iter().position(|s| *s == State::Commit)?;
    let a = o.states.iter().position(|s| *s == State::Abort)?;
    Some(Violation::new(
        "atomicity",
        format!(
            "participant {} committed, participant {} aborted ({:?})",
            c + 1,
            a + 1,
            o.states
        ),
    ))
}

/// Termination: every live participant decided.
pub fn check_termination(o: &Outcome) -> Option<Violation> {
    let p = (0..o.states.len())
        .find(|p| !o.crashed[*p] && !matches!(o.states[*p], State::Commit | State::Abort))?;
    Some(Violation::new(
        "termination",
        format!("participant {} still {:?}", p + 1, o.states[p]),
    ))
}

fn crash_setup(seed: u64, participant_crash_per_mille: u64, ready_aborts_alone: bool) -> Setup {
    let mut rng = Rng::new(seed ^ 0x3BC);
    let n = 3;
    let k = rng.range(0, n as u64) as usize;
    let crash = match rng.range(0, 3) {
        0 => CoordinatorCrash::AtTick(rng.range(1, 20)),
        1 => CoordinatorCrash::AfterPrepareSends(k),
        _ => CoordinatorCrash::AfterCommitSends(k),
    };
    Setup {
        n,
        coordinator_crash: Some(crash),
        participant_crash: rng
            .chance(participant_crash_per_mille, 1000)
            .then(|| (rng.range(1, n as u64 + 1) as Pid, rng.range(1, 20))),
        partition: None,
        ready_aborts_alone,
    }
}

fn partition_setup(seed: u64) -> Setup {
    let mut rng = Rng::new(seed ^ 0x9A27);
    let lone = rng.range(1, 4) as Pid;
    Setup {
        n: 3,
        coordinator_crash: Some(CoordinatorCrash::AfterPrepareSends(rng.range(1, 3) as usize)),
        participant_crash: None,
        partition: Some((rng.range(2, 12), vec![lone])),
        ready_aborts_alone: false,
    }
}

/// The scenario.
pub fn run(seed: u64, trace_on: bool) -> Report {
    let mut report = Report::new(NAME, SUMMARY, seed);
    let mut trace = Trace::new(trace_on);
    let cases: [Case; 4] = [
        (
            "no blocking, atomicity kept: coordinator crash at any point, no partition",
            Expect::Holds,
            500,
            |s, t| {
                let o = execute(s, &crash_setup(s, 0, false), t);
                check_atomicity(&o).or_else(|| check_termination(&o))
            },
        ),
        (
            "no blocking, atomicity kept: coordinator and one participant crash",
            Expect::Holds,
            500,
            |s, t| {
                let o = execute(s, &crash_setup(s, 1000, false), t);
                check_atomicity(&o).or_else(|| check_termination(&o))
            },
        ),
        (
            "network partition after PREPARE-COMMIT: one side commits, the other aborts",
            Expect::Breaks,
            2_000,
            |s, t| check_atomicity(&execute(s, &partition_setup(s), t)),
        ),
        (
            "planted bug: a READY participant aborts alone on timeout",
            Expect::Breaks,
            2_000,
            |s, t| check_atomicity(&execute(s, &crash_setup(s, 0, true), t)),
        ),
    ];
    run_cases(&mut report, &mut trace, seed, &cases);
    report.figures.push(blocking_figure(seed));
    report.trace = trace.into_text();
    report
}

/// 2PC against 3PC under the same failures: the coordinator crashes at a random
/// point, and one participant crashes with the given probability.
fn blocking_figure(seed: u64) -> Figure {
    let fig = Figure::new(
        "blocked-vs-participant-crash",
        "Runs left blocked: 2PC against 3PC (coordinator always crashes)",
        "probability that a participant also crashes",
        "fraction of runs with a live participant undecided",
    );
    let qs = [0u64, 250, 500, 750, 1000];
    let three: Vec<(f64, f64)> = qs
        .iter()
        .map(|q| {
            let f = fraction(seed, 300, |s| {
                check_termination(&execute(
                    s,
                    &crash_setup(s, *q, false),
                    &mut Trace::new(false),
                ))
                .is_some()
            });
            (*q as f64 / 1000.0, f)
        })
        .collect();
    let two: Vec<(f64, f64)> = qs
        .iter()
        .map(|q| {
            let f = fraction(seed, 300, |s| {
                let o = two_pc::execute(
                    s,
                    &two_pc_equivalent(&crash_setup(s, *q, false)),
                    &mut Trace::new(false),
                );
                two_pc::check_termination(&o).is_some()
            });
            (*q as f64 / 1000.0, f)
        })
        .collect();
    fig.with_series("2PC (cooperative termination)", two)
        .with_series("3PC", three)
}

fn two_pc_equivalent(s: &Setup) -> two_pc::Setup {
    let crash = s.coordinator_crash.map(|c| match c {
        CoordinatorCrash::AtTick(t) => two_pc::CoordinatorCrash::AtTick(t),
        CoordinatorCrash::AfterPrepareSends(k) | CoordinatorCrash::AfterCommitSends(k) => {
            two_pc::CoordinatorCrash::AfterDecisionSends(k)
        }
    });
    two_pc::Setup {
        n: s.n,
        votes: vec![true; s.n],
        faults: Faults::lossy(0, (1, 3)),
        coordinator_crash: crash,
        participant_crash: s.participant_crash,
        horizon_ticks: HORIZON,
        ..two_pc::Setup::default()
    }
}
