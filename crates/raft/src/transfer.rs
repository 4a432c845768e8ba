//! Leadership transfer (the Raft thesis, §3.10): the leader brings the target's log up
//! to its own last entry, then sends it [`Message::TimeoutNow`]; the target starts an
//! election at once, without a pre-vote, and its vote requests carry the `transfer`
//! flag so that voters who still hear from the old leader (and so would ignore a
//! disruptive candidate) vote all the same. The old leader steps down when it sees the
//! higher term. A transfer not finished within an election timeout is abandoned.
//!
//! The leader keeps accepting proposals meanwhile. One appended after the target was
//! sent `TimeoutNow` is kept only if the target received it before campaigning; if not,
//! it is lost as at any leader change (never acknowledged, since never committed).

use crate::message::Message;
use crate::node::RaftNode;
use crate::progress::FlowState;
use crate::types::{NodeId, Role};
use std::fmt;

/// A transfer under way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Transfer {
    /// The member that should lead next.
    pub(crate) to: NodeId,
    /// Ticks since the transfer began.
    pub(crate) elapsed: u64,
}

/// A leadership transfer that could not start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransferError {
    /// Only the leader can hand over leadership; `leader` is a hint.
    NotLeader {
        /// The leader this node believes in, if any.
        leader: Option<crate::types::NodeId>,
    },
    /// The target is not a voting member.
    NotAVoter(NodeId),
}

impl fmt::Display for TransferError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TransferError::NotLeader { leader: Some(l) } => write!(f, "not the leader ({l} is)"),
            TransferError::NotLeader { leader: None } => f.write_str("not the leader"),
            TransferError::NotAVoter(n) => write!(f, "{n} is not a voting member"),
        }
    }
}

impl std::error::Error for TransferError {}

impl RaftNode {
    /// Starts handing leadership to `to`. The leader changes once `to` wins the
    /// election it starts ([`RaftNode::status`]'s `leader`); a transfer that has not
    /// ended within an election timeout is dropped, and asking again restarts it.
    /// Asking the leader to transfer to itself does nothing.
    pub fn transfer_leadership(&mut self, to: NodeId) -> Result<(), TransferError> {
        if self.role != Role::Leader {
            return Err(TransferError::NotLeader {
                leader: self.leader,
            });
        }
        if !self.membership().is_voter(to) {
            return Err(TransferError::NotAVoter(to));
        }
        if to == self.cfg.id {
            return Ok(());
        }
        self.transfer = Some(Transfer { to, elapsed: 0 });
        // Replicate to the target now rather than at the next heartbeat, from its
        // match point (appends in flight to it may have been lost); its answer, or
        // this check if it is caught up already, sends TimeoutNow.
        let last = self.log.last_index();
        if let Some(p) = self.progress.get_mut(&to) {
            if p.match_index < last && p.state == FlowState::Replicate {
                p.become_probe();
            }
        }
        self.broadcast_pending = true;
        self.maybe_send_timeout_now(to);
        Ok(())
    }

    /// The member a transfer under way hands leadership to.
    pub fn transferring_to(&self) -> Option<NodeId> {
        self.transfer.map(|t| t.to)
    }

    /// Sends `TimeoutNow` to `peer` if it is the transfer's target and holds every
    /// entry this leader has.
    pub(crate) fn maybe_send_timeout_now(&mut self, peer: NodeId) {
        let Some(t) = self.transfer else {
            return;
        };
        let last = self.log.last_index();
        let caught_up = self
            .progress
            .get(&peer)
            .is_some_and(|p| p.match_index >= last);
        if t.to == peer && caught_up {
            self.send(peer, Message::TimeoutNow { term: self.term });
        }
    }

    /// A leader's tick: a transfer that outlived an election timeout is abandoned.
    pub(crate) fn tick_transfer(&mut self) {
        if let Some(t) = &mut self.transfer {
            t.elapsed += 1;
            if t.elapsed >= self.cfg.election_timeout_ticks {
                self.transfer = None;
            }
        }
    }

    /// The leader asked this node to take over: campaign now.
    pub(crate) fn on_timeout_now(&mut self) {
        if self.role == Role::Follower {
            self.start_campaign(false, true);
        }
    }
}
