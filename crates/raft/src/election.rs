//! Roles and elections: pre-vote, vote, role transitions, stale-term handling.

use crate::message::{AppendOutcome, Message};
use crate::node::RaftNode;
use crate::progress::Progress;
use crate::quorum::{tally, VoteTally};
use crate::types::{EntryKind, LogIndex, NodeId, Role, Term};
use std::collections::BTreeMap;

impl RaftNode {
    pub(crate) fn become_follower(&mut self, term: Term, leader: Option<NodeId>) {
        if term > self.term || leader != self.leader {
            // Reads asked of the old leader may never be answered.
            self.abort_remote_reads();
        }
        if term > self.term {
            self.term = term;
            self.vote = None;
        }
        self.transfer = None;
        if self.role == Role::Leader {
            for origin in self.reads.abort_all() {
                self.answer_read(origin, None);
            }
            self.progress.clear();
        }
        self.role = Role::Follower;
        self.leader = leader;
        self.votes.clear();
        self.reset_election_timer();
    }

    pub(crate) fn campaign(&mut self, pre_vote: bool) {
        self.start_campaign(pre_vote, false);
    }

    /// Starts a pre-vote or an election; `transfer` when the leader asked for it.
    pub(crate) fn start_campaign(&mut self, pre_vote: bool, transfer: bool) {
        if !self.is_voter() {
            // A learner, a member being added or one removed: it never leads.
            self.reset_election_timer();
            return;
        }
        self.abort_remote_reads();
        self.leader = None;
        self.votes.clear();
        self.reset_election_timer();
        let (last_index, last_term) = (self.log.last_index(), self.log.last_term());
        if pre_vote {
            self.role = Role::PreCandidate;
            let term = self.term.next();
            for to in self.voter_peers() {
                let m = Message::VoteRequest {
                    term,
                    last_index,
                    last_term,
                    pre_vote: true,
                    transfer: false,
                };
                self.send(to, m);
            }
            self.on_vote_response(self.cfg.id, term, true, true);
            return;
        }
        self.role = Role::Candidate;
        self.term = self.term.next();
        self.vote = Some(self.cfg.id);
        let term = self.term;
        // Term and self-vote must be durable before anyone can vote for us: otherwise a
        // crash could bring us back in an older term after leading this one, and we
        // could lead it twice with different entries. Requests and our own vote are
        // gated messages (the own vote is a message to ourselves).
        let own = Message::VoteResponse {
            term,
            granted: true,
            pre_vote: false,
        };
        self.io.gate(self.cfg.id, own);
        for to in self.voter_peers() {
            let m = Message::VoteRequest {
                term,
                last_index,
                last_term,
                pre_vote: false,
                transfer,
            };
            self.io.gate(to, m);
        }
    }

    pub(crate) fn on_vote_request(
        &mut self,
        from: NodeId,
        term: Term,
        last_index: LogIndex,
        last_term: Term,
        (pre_vote, _transfer): (bool, bool),
    ) {
        let can_vote = self.vote == Some(from)
            || (self.vote.is_none() && self.leader.is_none())
            || (pre_vote && term > self.term);
        let up_to_date = self.log.is_up_to_date(last_index, last_term);
        #[cfg(feature = "planted-bugs")]
        let up_to_date =
            up_to_date || (_transfer && self.bug(crate::config::PlantedBug::TransferUnchecked));
        let grant = can_vote && up_to_date;
        if pre_vote {
            let term = if grant { term } else { self.term };
            self.send(
                from,
                Message::VoteResponse {
                    term,
                    granted: grant,
                    pre_vote: true,
                },
            );
            return;
        }
        if !grant {
            let m = Message::VoteResponse {
                term: self.term,
                granted: false,
                pre_vote: false,
            };
            self.send(from, m);
            return;
        }
        self.vote = Some(from);
        self.reset_election_timer();
        let m = Message::VoteResponse {
            term: self.term,
            granted: true,
            pre_vote: false,
        };
        #[cfg(feature = "planted-bugs")]
        if self.bug(crate::config::PlantedBug::UnpersistedVote) {
            self.send(from, m);
            return;
        }
        self.io.gate(from, m);
    }

    pub(crate) fn on_vote_response(
        &mut self,
        from: NodeId,
        term: Term,
        granted: bool,
        pre_vote: bool,
    ) {
        let expected = match (pre_vote, self.role) {
            (true, Role::PreCandidate) => self.term.next(),
            (false, Role::Candidate) => self.term,
            _ => return,
        };
        if granted && term != expected {
            return;
        }
        let members = self.membership();
        if !members.is_voter(from) {
            return;
        }
        let voters = members.voter_count();
        self.votes.entry(from).or_insert(granted);
        let yes = self.votes.values().filter(|g| **g).count();
        let no = self.votes.len() - yes;
        match tally(voters, yes, no) {
            VoteTally::Won if pre_vote => self.campaign(false),
            VoteTally::Won => self.become_leader(),
            VoteTally::Lost => self.become_follower(self.term, None),
            VoteTally::Pending => {}
        }
    }

    fn become_leader(&mut self) {
        self.role = Role::Leader;
        self.transfer = None;
        self.leader = Some(self.cfg.id);
        self.votes.clear();
        self.heartbeat_elapsed = 0;
        self.election_elapsed = 0;
        let next = self.log.last_index().next();
        self.progress = self
            .member_peers()
            .into_iter()
            .map(|p| (p, Progress::new(next)))
            .collect::<BTreeMap<_, _>>();
        self.reads.on_new_term();
        self.append_local(EntryKind::Noop);
        self.broadcast_pending = true;
        self.maybe_commit();
    }

    /// A message from an older term: tell a stale leader or pre-candidate about ours.
    pub(crate) fn on_stale_term(&mut self, from: NodeId, msg: &Message) {
        match msg {
            Message::Append { prev_index, .. } => {
                self.send_stale_notice(from, *prev_index);
            }
            Message::Snapshot { meta, .. } => self.send_stale_notice(from, meta.index),
            Message::VoteRequest { pre_vote: true, .. } => {
                let m = Message::VoteResponse {
                    term: self.term,
                    granted: false,
                    pre_vote: true,
                };
                self.send(from, m);
            }
            _ => {}
        }
    }

    fn send_stale_notice(&mut self, to: NodeId, rejected_index: LogIndex) {
        let outcome = AppendOutcome::Rejected {
            rejected_index,
            conflict_term: None,
            conflict_index: self.log.last_index().next(),
        };
        let m = Message::AppendResponse {
            term: self.term,
            outcome,
            read_seq: 0,
        };
        self.send(to, m);
    }
}
