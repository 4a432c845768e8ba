//! The coordinator and participant state machines of 2PC (notes 001), with the
//! timeouts of notes 000 and the cooperative-termination table as pure functions.
//! Each machine's `state` is what it logs to stable storage before acting on it.

use crate::sim::Pid;

/// A participant's logged state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum PState {
    /// Waiting for VOTE-REQUEST.
    Init,
    /// Voted VOTE-COMMIT, waiting for the decision.
    Ready,
    /// Committed locally.
    Commit,
    /// Aborted locally.
    Abort,
}

/// The coordinator's logged state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CState {
    /// Not started.
    Init,
    /// VOTE-REQUEST sent, collecting votes.
    Wait,
    /// GLOBAL-COMMIT decided.
    Commit,
    /// GLOBAL-ABORT decided.
    Abort,
}

/// The outcome of a transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Decision {
    /// Everyone commits.
    Commit,
    /// Everyone aborts.
    Abort,
}

impl Decision {
    /// The participant state a decision leads to.
    pub fn state(self) -> PState {
        match self {
            Decision::Commit => PState::Commit,
            Decision::Abort => PState::Abort,
        }
    }
}

/// 2PC messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Msg {
    /// Phase 1: can you commit?
    VoteRequest,
    /// VOTE-COMMIT (true) or VOTE-ABORT (false).
    Vote(bool),
    /// GLOBAL-COMMIT or GLOBAL-ABORT.
    Global(Decision),
    /// A READY participant asks the coordinator for the decision.
    GetDecision,
    /// Cooperative termination: what state are you in?
    StateRequest,
    /// The answer.
    StateIs(PState),
    /// The decision group's Paxos traffic.
    Paxos(crate::paxos::Msg),
}

/// Cooperative termination (notes 001): what a READY participant may conclude from
/// another participant's state; `None` means ask someone else (and maybe block).
pub fn termination_rule(other: PState) -> Option<Decision> {
    match other {
        PState::Commit => Some(Decision::Commit),
        PState::Abort | PState::Init => Some(Decision::Abort),
        PState::Ready => None,
    }
}

/// A participant.
#[derive(Clone, Debug)]
pub struct Participant {
    /// The logged state.
    pub state: PState,
    /// The vote this participant will cast.
    pub votes_commit: bool,
}

impl Participant {
    /// A participant that will vote `votes_commit`.
    pub fn new(votes_commit: bool) -> Participant {
        Participant {
            state: PState::Init,
            votes_commit,
        }
    }

    /// VOTE-REQUEST arrives: log, then vote (a repeat request gets the same vote).
    pub fn on_vote_request(&mut self) -> Option<Msg> {
        match self.state {
            PState::Init if self.votes_commit => {
                self.state = PState::Ready;
                Some(Msg::Vote(true))
            }
            PState::Init | PState::Abort => {
                self.state = PState::Abort;
                Some(Msg::Vote(false))
            }
            PState::Ready => Some(Msg::Vote(true)),
            PState::Commit => None,
        }
    }

    /// A decision arrives (from the coordinator, a peer or the decision group).
    pub fn on_decision(&mut self, d: Decision) {
        if matches!(self.state, PState::Init | PState::Ready) {
            self.state = d.state();
        }
    }

    /// No VOTE-REQUEST in time: abort unilaterally (blocking case 1).
    pub fn on_init_timeout(&mut self) {
        if self.state == PState::Init {
            self.state = PState::Abort;
        }
    }

    /// A peer asks for our state; a participant still in INIT aborts before answering,
    /// so that it can never vote commit afterwards.
    pub fn on_state_request(&mut self) -> Msg {
        let answer = self.state;
        if self.state == PState::Init {
            self.state = PState::Abort;
        }
        Msg::StateIs(answer)
    }

    /// A peer's answer, applied by the termination rule.
    pub fn on_state_is(&mut self, other: PState) {
        if self.state == PState::Ready {
            if let Some(d) = termination_rule(other) {
                self.state = d.state();
            }
        }
    }

    /// Whether this participant has decided.
    pub fn decided(&self) -> bool {
        matches!(self.state, PState::Commit | PState::Abort)
    }
}

/// The coordinator.
#[derive(Clone, Debug)]
pub struct Coordinator {
    /// The logged state.
    pub state: CState,
    participants: Vec<Pid>,
    votes: Vec<(Pid, bool)>,
    vote_rounds: u32,
    /// Planted bug: when the vote timeout fires and every vote so far is VOTE-COMMIT,
    /// commit without waiting for the missing votes.
    pub commit_on_partial_votes: bool,
}

/// The number of VOTE-REQUEST rounds before the coordinator gives up and aborts.
pub const VOTE_ROUNDS: u32 = 3;

impl Coordinator {
    /// A coordinator for `participants`.
    pub fn new(participants: Vec<Pid>) -> Coordinator {
        Coordinator {
            state: CState::Init,
            participants,
            votes: Vec::new(),
            vote_rounds: 0,
            commit_on_partial_votes: false,
        }
    }

    /// Starts phase 1; the caller multicasts VOTE-REQUEST.
    pub fn start(&mut self) {
        self.state = CState::Wait;
        self.vote_rounds = 1;
    }

    /// A vote arrives; returns the decision once it is known.
    pub fn on_vote(&mut self, from: Pid, commit: bool) -> Option<Decision> {
        if self.state != CState::Wait || self.votes.iter().any(|(p, _)| *p == from) {
            return None;
        }
        self.votes.push((from, commit));
        if !commit {
            return Some(Decision::Abort);
        }
        (self.votes.len() == self.participants.len()).then_some(Decision::Commit)
    }

    /// The vote timer fired: `Ok(())` to re-send VOTE-REQUEST, `Err(decision)` to
    /// decide.
    pub fn on_vote_timeout(&mut self) -> Result<(), Decision> {
        let all_yes = !self.votes.is_empty() && self.votes.iter().all(|(_, c)| *c);
        if self.commit_on_partial_votes && all_yes {
            return Err(Decision::Commit);
        }
        if self.vote_rounds >= VOTE_ROUNDS {
            return Err(Decision::Abort);
        }
        self.vote_rounds += 1;
        Ok(())
    }

    /// Logs the decision.
    pub fn decide(&mut self, d: Decision) {
        self.state = match d {
            Decision::Commit => CState::Commit,
            Decision::Abort => CState::Abort,
        };
    }

    /// The decision, if logged.
    pub fn decision(&self) -> Option<Decision> {
        match self.state {
            CState::Commit => Some(Decision::Commit),
            CState::Abort => Some(Decision::Abort),
            _ => None,
        }
    }

    /// Recovery after a crash: a coordinator that logged no decision aborts.
    pub fn recover(&mut self) -> Option<Decision> {
        if matches!(self.state, CState::Init | CState::Wait) {
            self.decide(Decision::Abort);
        }
        self.decision()
    }

    /// Which participants have not voted yet.
    pub fn missing_votes(&self) -> Vec<Pid> {
        self.participants
            .iter()
            .copied()
            .filter(|p| self.votes.iter().all(|(q, _)| q != p))
            .collect()
    }
}
