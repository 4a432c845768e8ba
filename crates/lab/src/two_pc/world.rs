//! The 2PC driver: wires the state machines, the optional recovery coordinator and the
//! optional decision group onto the discrete-event core and injects the crashes.

use super::machines::{CState, Coordinator, Decision, Msg, PState, Participant};
use crate::paxos::{self, Acceptor, Out, Proposer, ProposerConfig};
use crate::sim::{Event, Faults, Pid, Sim, Trace};
use seedrng::Rng;

/// When the coordinator fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CoordinatorCrash {
    /// At a fixed tick, whatever it is doing.
    AtTick(u64),
    /// Right after logging the decision, having sent it to this many participants.
    AfterDecisionSends(usize),
}

/// One run's configuration.
#[derive(Clone, Debug)]
pub struct Setup {
    /// Number of participants (pids 1..=n; the coordinator is 0).
    pub n: usize,
    /// Each participant's vote.
    pub votes: Vec<bool>,
    /// The network.
    pub faults: Faults,
    /// The coordinator's failure, if any.
    pub coordinator_crash: Option<CoordinatorCrash>,
    /// Ticks until the coordinator restarts; `None` keeps it down.
    pub coordinator_restart_after: Option<u64>,
    /// (participant, tick) of one participant's failure.
    pub participant_crash: Option<(Pid, u64)>,
    /// Ticks until that participant restarts; `None` keeps it down.
    pub participant_restart_after: Option<u64>,
    /// When a recovery coordinator starts polling if the coordinator is down.
    pub recovery_coordinator_at: Option<u64>,
    /// Log the decision in a Paxos group of three acceptors instead of locally.
    pub decision_group: bool,
    /// Planted bug in the coordinator (see [`Coordinator::commit_on_partial_votes`]).
    pub commit_on_partial_votes: bool,
    /// When the run stops.
    pub horizon_ticks: u64,
}

impl Default for Setup {
    fn default() -> Setup {
        Setup {
            n: 3,
            votes: vec![true; 3],
            faults: Faults::reliable(1),
            coordinator_crash: None,
            coordinator_restart_after: None,
            participant_crash: None,
            participant_restart_after: None,
            recovery_coordinator_at: Some(100),
            decision_group: false,
            commit_on_partial_votes: false,
            horizon_ticks: 600,
        }
    }
}

/// What the checkers judge.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// Each participant's vote (index p - 1).
    pub votes: Vec<bool>,
    /// Each participant's logged state at the horizon.
    pub states: Vec<PState>,
    /// The coordinator's logged state.
    pub coordinator: CState,
    /// Which participants are down at the horizon.
    pub crashed: Vec<bool>,
    /// When every live participant had decided, if ever.
    pub all_decided_at: Option<u64>,
}

const DRIVER: Pid = 10_000;
const TAG_START: u64 = 1;
const TAG_VOTE: u64 = 2;
const TAG_INIT: u64 = 3;
const TAG_READY: u64 = 4;
const TAG_POLL: u64 = 5;
const PAXOS_TAG: u64 = 1_000;
const VOTE_TIMEOUT: u64 = 20;
const INIT_TIMEOUT: u64 = 60;
const READY_TIMEOUT: u64 = 25;

fn value(d: Decision) -> u64 {
    match d {
        Decision::Commit => 1,
        Decision::Abort => 2,
    }
}

fn decision(v: u64) -> Decision {
    if v == 1 {
        Decision::Commit
    } else {
        Decision::Abort
    }
}

struct World<'a> {
    setup: &'a Setup,
    sim: Sim<Msg>,
    coord: Coordinator,
    parts: Vec<Participant>,
    learners: Vec<Proposer>,
    proposing: Vec<bool>,
    acceptors: Vec<Acceptor>,
    rngs: Vec<Rng>,
    coord_crashed: bool,
    recovery_done: bool,
}

impl World<'_> {
    fn recovery(&self) -> Pid {
        self.setup.n + 1
    }

    fn group(&self) -> std::ops::Range<Pid> {
        self.setup.n + 2..self.setup.n + 5
    }

    fn multicast(&mut self, from: Pid, msg: Msg) {
        for p in 1..=self.setup.n {
            self.sim.send(from, p, msg.clone());
        }
    }

    fn apply_paxos(&mut self, pid: Pid, outs: Vec<Out>) {
        for o in outs {
            match o {
                Out::ToAcceptors(m) => {
                    for g in self.group() {
                        self.sim.send(pid, g, Msg::Paxos(m.clone()));
                    }
                }
                Out::Timer(ticks, tag) => self.sim.set_timer(pid, ticks, PAXOS_TAG + tag),
            }
        }
    }

    /// The coordinator reached decision `d` (from its votes or its timeout).
    fn coordinator_decides(&mut self, d: Decision) {
        if self.setup.decision_group {
            let outs = self.learners[0].propose(value(d));
            self.apply_paxos(0, outs);
        } else {
            self.coord.decide(d);
            self.sim.note(|| format!("coordinator logs GLOBAL-{d:?}"));
            self.broadcast_decision(d);
        }
    }

    fn broadcast_decision(&mut self, d: Decision) {
        for p in 1..=self.setup.n {
            if self.setup.coordinator_crash
                == Some(super::CoordinatorCrash::AfterDecisionSends(p - 1))
                && !self.coord_crashed
            {
                self.crash_coordinator();
                return;
            }
            self.sim.send(0, p, Msg::Global(d));
        }
    }

    fn crash_coordinator(&mut self) {
        self.coord_crashed = true;
        self.sim.crash(0);
        if let Some(after) = self.setup.coordinator_restart_after {
            self.sim.set_timer(DRIVER, after, 1);
        }
    }

    fn on_coordinator(&mut self, from: Pid, msg: Msg) {
        match msg {
            Msg::Vote(c) => {
                if let Some(d) = self.coord.on_vote(from, c) {
                    self.coordinator_decides(d);
                }
            }
            Msg::GetDecision => {
                if let Some(d) = self.coord.decision() {
                    self.sim.send(0, from, Msg::Global(d));
                }
            }
            Msg::Paxos(m) => {
                let outs = self.learners[0].on_msg(from, m, &mut self.rngs[0]);
                self.apply_paxos(0, outs);
                self.maybe_coordinator_learns();
            }
            _ => {}
        }
    }

    fn maybe_coordinator_learns(&mut self) {
        let Some(v) = self.learners[0].learned() else {
            return;
        };
        if self.coord.decision().is_none() {
            self.coord.decide(decision(v));
            self.sim
                .note(|| format!("coordinator learns GLOBAL-{:?} from the group", decision(v)));
            self.broadcast_decision(decision(v));
        }
    }

    fn on_coordinator_timer(&mut self, tag: u64) {
        match tag {
            TAG_START => {
                self.coord.start();
                self.multicast(0, Msg::VoteRequest);
                self.sim.set_timer(0, VOTE_TIMEOUT, TAG_VOTE);
            }
            TAG_VOTE if self.coord.state == CState::Wait && !self.proposing[0] => {
                match self.coord.on_vote_timeout() {
                    Ok(()) => {
                        for p in self.coord.missing_votes() {
                            self.sim.send(0, p, Msg::VoteRequest);
                        }
                        self.sim.set_timer(0, VOTE_TIMEOUT, TAG_VOTE);
                    }
                    Err(d) => {
                        self.proposing[0] = self.setup.decision_group;
                        self.coordinator_decides(d);
                    }
                }
            }
            t if t >= PAXOS_TAG => {
                let outs = self.learners[0].on_timer(t - PAXOS_TAG, &mut self.rngs[0]);
                self.apply_paxos(0, outs);
            }
            _ => {}
        }
    }

    fn on_participant(&mut self, p: Pid, from: Pid, msg: Msg) {
        let part = &mut self.parts[p - 1];
        match msg {
            Msg::VoteRequest => {
                let was_init = part.state == PState::Init;
                if let Some(vote) = part.on_vote_request() {
                    self.sim.send(p, from, vote);
                }
                if was_init && self.parts[p - 1].state == PState::Ready {
                    self.sim.set_timer(p, READY_TIMEOUT, TAG_READY);
                }
            }
            Msg::Global(d) => part.on_decision(d),
            Msg::StateRequest => {
                let answer = part.on_state_request();
                self.sim.send(p, from, answer);
            }
            Msg::StateIs(s) => part.on_state_is(s),
            Msg::Paxos(m) => {
                let outs = self.learners[p].on_msg(from, m, &mut self.rngs[p]);
                self.apply_paxos(p, outs);
                if let Some(v) = self.learners[p].learned() {
                    self.parts[p - 1].on_decision(decision(v));
                }
            }
            _ => {}
        }
    }

    fn on_participant_timer(&mut self, p: Pid, tag: u64) {
        match tag {
            TAG_INIT => self.parts[p - 1].on_init_timeout(),
            TAG_READY if self.parts[p - 1].state == PState::Ready => {
                self.sim.send(p, 0, Msg::GetDecision);
                for q in (1..=self.setup.n).filter(|q| *q != p) {
                    self.sim.send(p, q, Msg::StateRequest);
                }
                if self.setup.decision_group && !self.proposing[p] {
                    self.proposing[p] = true;
                    let outs = self.learners[p].propose(value(Decision::Abort));
                    self.apply_paxos(p, outs);
                }
                self.sim.set_timer(p, READY_TIMEOUT, TAG_READY);
            }
            t if t >= PAXOS_TAG => {
                let outs = self.learners[p].on_timer(t - PAXOS_TAG, &mut self.rngs[p]);
                self.apply_paxos(p, outs);
            }
            _ => {}
        }
    }

    fn on_recovery(&mut self, msg: Option<Msg>) {
        let me = self.recovery();
        match msg {
            None if !self.recovery_done => {
                if self.sim.is_crashed(0) {
                    self.multicast(me, Msg::StateRequest);
                }
                self.sim.set_timer(me, READY_TIMEOUT, TAG_POLL);
            }
            Some(Msg::StateIs(s)) if !self.recovery_done => {
                if let Some(d) = super::machines::termination_rule(s) {
                    self.recovery_done = true;
                    self.sim
                        .note(|| format!("recovery coordinator decides GLOBAL-{d:?}"));
                    self.multicast(me, Msg::Global(d));
                }
            }
            _ => {}
        }
    }

    fn on_acceptor(&mut self, g: Pid, from: Pid, msg: Msg) {
        let Msg::Paxos(m) = msg else { return };
        let acc = &mut self.acceptors[g - self.setup.n - 2];
        let reply = match m {
            paxos::Msg::Prepare(b) => acc.on_prepare(b),
            paxos::Msg::Accept(b, v) => acc.on_accept(b, v),
            _ => return,
        };
        if let paxos::Msg::Accepted(..) = reply {
            for learner in 0..=self.setup.n {
                self.sim.send(g, learner, Msg::Paxos(reply.clone()));
            }
        } else {
            self.sim.send(g, from, Msg::Paxos(reply));
        }
    }

    fn on_driver(&mut self, tag: u64) {
        match tag {
            0 => self.crash_coordinator(),
            1 => {
                self.sim.restart(0);
                self.restart_coordinator();
            }
            2 => {
                let (p, _) = self.setup.participant_crash.expect("scheduled");
                self.sim.crash(p);
                if let Some(after) = self.setup.participant_restart_after {
                    self.sim.set_timer(DRIVER, after, 3);
                }
            }
            _ => {
                let (p, _) = self.setup.participant_crash.expect("scheduled");
                self.sim.restart(p);
                let tag = if self.parts[p - 1].state == PState::Init {
                    TAG_INIT
                } else {
                    TAG_READY
                };
                self.sim.set_timer(p, 1, tag);
            }
        }
    }

    fn restart_coordinator(&mut self) {
        if self.setup.decision_group {
            if self.coord.decision().is_none() && !self.proposing[0] {
                self.proposing[0] = true;
                let outs = self.learners[0].propose(value(Decision::Abort));
                self.apply_paxos(0, outs);
            } else if let Some(d) = self.coord.decision() {
                self.multicast(0, Msg::Global(d));
            }
            return;
        }
        if let Some(d) = self.coord.recover() {
            self.sim
                .note(|| format!("coordinator recovers with GLOBAL-{d:?}"));
            self.multicast(0, Msg::Global(d));
        }
    }

    fn all_decided(&self) -> bool {
        (1..=self.setup.n).all(|p| self.sim.is_crashed(p) || self.parts[p - 1].decided())
    }
}

/// Runs one transaction.
pub fn execute(seed: u64, setup: &Setup, trace: &mut Trace) -> Outcome {
    assert_eq!(setup.votes.len(), setup.n);
    let rng = Rng::new(seed);
    let cfg = ProposerConfig {
        accept_delay_ticks: 1,
        backoff_ticks: 10,
        retry_timeout_ticks: 20,
        ignore_promised_values: false,
    };
    let mut coord = Coordinator::new((1..=setup.n).collect());
    coord.commit_on_partial_votes = setup.commit_on_partial_votes;
    let mut w = World {
        setup,
        sim: Sim::new(rng.fork(1), setup.faults.clone(), trace.is_on()),
        coord,
        parts: setup.votes.iter().map(|v| Participant::new(*v)).collect(),
        learners: (0..=setup.n).map(|p| Proposer::new(p, 0, cfg)).collect(),
        proposing: vec![false; setup.n + 1],
        acceptors: vec![Acceptor::default(); 3],
        rngs: (0..=setup.n).map(|p| rng.fork(10 + p as u64)).collect(),
        coord_crashed: false,
        recovery_done: false,
    };
    schedule(&mut w);
    let mut all_decided_at = None;
    while let Some(event) = w.sim.step(setup.horizon_ticks) {
        dispatch(&mut w, event);
        if all_decided_at.is_none() && w.all_decided() {
            all_decided_at = Some(w.sim.now());
        }
    }
    let states: Vec<PState> = w.parts.iter().map(|p| p.state).collect();
    let crashed: Vec<bool> = (1..=setup.n).map(|p| w.sim.is_crashed(p)).collect();
    w.sim.note(|| {
        format!(
            "final participants={states:?} coordinator={:?} crashed={crashed:?}",
            w.coord.state
        )
    });
    trace.append(&w.sim.take_trace());
    Outcome {
        votes: setup.votes.clone(),
        states,
        coordinator: w.coord.state,
        crashed,
        all_decided_at,
    }
}

fn schedule(w: &mut World) {
    w.sim.set_timer(0, 1, TAG_START);
    for p in 1..=w.setup.n {
        w.sim.set_timer(p, INIT_TIMEOUT, TAG_INIT);
    }
    if let Some(super::CoordinatorCrash::AtTick(t)) = w.setup.coordinator_crash {
        w.sim.set_timer(DRIVER, t, 0);
    }
    if let Some((_, t)) = w.setup.participant_crash {
        w.sim.set_timer(DRIVER, t, 2);
    }
    if let (Some(t), false) = (w.setup.recovery_coordinator_at, w.setup.decision_group) {
        let me = w.recovery();
        w.sim.set_timer(me, t, TAG_POLL);
    }
}

fn dispatch(w: &mut World, event: Event<Msg>) {
    let n = w.setup.n;
    match event {
        Event::Timer { node: DRIVER, tag } => w.on_driver(tag),
        Event::Timer { node: 0, tag } => w.on_coordinator_timer(tag),
        Event::Timer { node, tag } if node <= n => w.on_participant_timer(node, tag),
        Event::Timer { .. } => w.on_recovery(None),
        Event::Deliver { from, to: 0, msg } => w.on_coordinator(from, msg),
        Event::Deliver { from, to, msg } if to <= n => w.on_participant(to, from, msg),
        Event::Deliver { msg, to, .. } if to == n + 1 => w.on_recovery(Some(msg)),
        Event::Deliver { from, to, msg } => w.on_acceptor(to, from, msg),
    }
}
