//! Membership changes, one server at a time (the Raft thesis, §4.1).
//!
//! A change is a log entry ([`EntryKind::Config`]). A node uses the membership of the
//! latest change in its log as soon as the entry is appended, committed or not; if a
//! conflicting leader truncates the entry, the node falls back to the one before. Any
//! two memberships one change apart share a member with every pair of majorities, so
//! two leaders can never be elected in one term across a change. That holds only if
//! changes never overlap: a leader starts a change only once the previous one is
//! committed, and only once it has committed an entry of its own term (the fix for the
//! bug in the single-server algorithm that Ongaro described in 2015: a new leader whose
//! predecessor's uncommitted change it never saw could otherwise add a second one).
//!
//! The membership in force at a snapshot travels at the end of the snapshot's bytes
//! (a trailer), so snapshot files and messages keep one opaque payload.

use crate::node::RaftNode;
use crate::progress::Progress;
use crate::types::{ConfigEntry, EntryKind, LogIndex, Payload, Role};
use engine::{ChangeRefused, ConfChange, Membership, Redirect};

/// The memberships a log holds: the one in force at its compaction point, and one per
/// change entry after it, in index order.
#[derive(Clone, Debug, Default)]
pub(crate) struct Configs {
    base: Membership,
    changes: Vec<(LogIndex, Membership)>,
}

impl Configs {
    pub(crate) fn new(base: Membership) -> Configs {
        Configs {
            base,
            changes: Vec::new(),
        }
    }

    /// The membership in force after the whole log.
    pub(crate) fn current(&self) -> &Membership {
        self.changes.last().map_or(&self.base, |(_, m)| m)
    }

    /// The membership in force after applying through `index`.
    pub(crate) fn at(&self, index: LogIndex) -> &Membership {
        self.changes
            .iter()
            .rev()
            .find(|(i, _)| *i <= index)
            .map_or(&self.base, |(_, m)| m)
    }

    /// The index of the latest change entry in the log, if any is held.
    pub(crate) fn latest_change(&self) -> Option<LogIndex> {
        self.changes.last().map(|(i, _)| *i)
    }

    /// A change entry putting `membership` in force was appended at `index`.
    pub(crate) fn push(&mut self, index: LogIndex, membership: &Membership) {
        self.changes.push((index, membership.clone()));
    }

    /// The log lost every entry at or after `from`.
    pub(crate) fn truncate_from(&mut self, from: LogIndex) {
        self.changes.retain(|(i, _)| *i < from);
    }

    /// The log was compacted through `index`.
    pub(crate) fn compact_to(&mut self, index: LogIndex) {
        let folded = self.changes.iter().take_while(|(i, _)| *i <= index).count();
        if let Some((_, m)) = self.changes.drain(..folded).next_back() {
            self.base = m;
        }
    }

    /// The log was replaced by a snapshot whose membership is `base`.
    pub(crate) fn reset(&mut self, base: Membership) {
        self.base = base;
        self.changes.clear();
    }
}

/// The trailer's last eight bytes.
const TRAILER_MAGIC: &[u8; 8] = b"SYNODMB1";

/// `data` followed by the trailer naming `membership`.
pub(crate) fn trailer(membership: &Membership) -> Vec<u8> {
    let mut out = membership.to_bytes();
    let len = out.len() as u32;
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(TRAILER_MAGIC);
    out
}

/// A snapshot as Raft stores it: the state machine's `data`, then the membership in
/// force at its index. What a tool that builds a member's data directory writes (a
/// restore into a new cluster names the new cluster's members here).
pub fn stored_snapshot(data: &[u8], membership: &Membership) -> Payload {
    let mut out = Vec::with_capacity(data.len() + 64);
    out.extend_from_slice(data);
    out.extend(trailer(membership));
    out.into()
}

/// The state machine's part and the membership of a snapshot as Raft stores it.
pub fn split_stored_snapshot(stored: &Payload) -> Result<(Payload, Membership), &'static str> {
    split(stored)
}

/// Splits a stored snapshot into the state machine's bytes and the membership.
pub(crate) fn split(stored: &Payload) -> Result<(Payload, Membership), &'static str> {
    let n = stored.len();
    if n < 12 || &stored[n - 8..] != TRAILER_MAGIC {
        return Err("snapshot has no membership trailer");
    }
    let len = u32::from_le_bytes([
        stored[n - 12],
        stored[n - 11],
        stored[n - 10],
        stored[n - 9],
    ]) as usize;
    let Some(start) = (n - 12).checked_sub(len) else {
        return Err("snapshot membership trailer is longer than the snapshot");
    };
    let m = Membership::decode(&stored[start..n - 12]).map_err(|e| e.0)?;
    Ok((Payload::from(&stored[..start]), m))
}

impl RaftNode {
    /// The membership this node works with: the latest change in its log.
    pub fn membership(&self) -> &Membership {
        self.log.confs().current()
    }

    /// The leader's progress of the other voters: what quorums count (learners never).
    pub(crate) fn voter_progress(&self) -> impl Iterator<Item = &Progress> + '_ {
        let m = self.membership();
        (self.progress.iter())
            .filter(move |(id, _)| m.is_voter(**id))
            .map(|(_, p)| p)
    }

    /// Whether this node votes in its current membership.
    pub(crate) fn is_voter(&self) -> bool {
        self.membership().is_voter(self.cfg.id)
    }

    /// Appends a membership change (leader only). It takes effect here at once, and on
    /// each follower when the entry reaches its log; it is applied as an entry when
    /// committed.
    pub fn propose_change(&mut self, change: ConfChange) -> Result<LogIndex, ChangeRefused> {
        if self.role != Role::Leader {
            let leader = self.leader;
            return Err(ChangeRefused::NotLeader(Redirect { leader }));
        }
        let overlapping = self.change_pending();
        #[cfg(feature = "planted-bugs")]
        let overlapping =
            overlapping && !self.bug(crate::config::PlantedBug::OverlappingConfigChange);
        if overlapping {
            return Err(ChangeRefused::InProgress);
        }
        let membership = (self.membership().apply(&change)).map_err(ChangeRefused::Invalid)?;
        let entry = ConfigEntry { change, membership };
        let index = self.append_local(EntryKind::Config(entry));
        self.on_membership_changed();
        Ok(index)
    }

    /// A change is not committed yet, or this leader has not committed in its term.
    fn change_pending(&self) -> bool {
        let uncommitted = self.log.confs().latest_change() > Some(self.commit);
        uncommitted || self.log.term_at(self.commit) != Some(self.term)
    }

    /// The membership may have changed (an entry appended or truncated, a snapshot
    /// installed): a leader tracks exactly the members it now has.
    pub(crate) fn on_membership_changed(&mut self) {
        if self.role != Role::Leader {
            return;
        }
        let me = self.cfg.id;
        let members: Vec<_> = self.membership().members().map(|(id, _)| id).collect();
        self.progress.retain(|id, _| members.contains(id));
        let next = self.log.last_index();
        for id in members.into_iter().filter(|id| *id != me) {
            self.progress
                .entry(id)
                .or_insert_with(|| Progress::new(next));
        }
        if self
            .transfer
            .is_some_and(|t| !self.membership().is_voter(t.to))
        {
            self.transfer = None;
        }
        self.broadcast_pending = true;
    }

    /// A leader that is no voter in a committed membership (it removed itself, or
    /// was demoted) steps down: it can no longer be part of the quorums it counts.
    pub(crate) fn step_down_if_removed(&mut self) {
        let committed = self.log.confs().latest_change() <= Some(self.commit);
        if self.role == Role::Leader && committed && !self.is_voter() {
            self.become_follower(self.term, None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::NodeId;

    fn of(ids: &[u64]) -> Membership {
        Membership::of_voters(ids.iter().map(|i| NodeId(*i)))
    }

    #[test]
    fn configs_follow_appends_truncations_and_compactions() {
        let mut c = Configs::new(of(&[1]));
        c.push(LogIndex(3), &of(&[1, 2]));
        c.push(LogIndex(5), &of(&[1, 2, 3]));
        assert_eq!(c.current().voter_count(), 3);
        assert_eq!(c.at(LogIndex(4)).voter_count(), 2);
        assert_eq!(c.at(LogIndex(2)).voter_count(), 1);
        c.truncate_from(LogIndex(5));
        assert_eq!(c.current().voter_count(), 2);
        c.compact_to(LogIndex(4));
        assert_eq!(c.latest_change(), None);
        assert_eq!(c.current().voter_count(), 2);
        c.reset(Membership::of_voters([NodeId(7)]));
        assert!(c.current().is_voter(NodeId(7)));
    }

    #[test]
    fn trailer_splits_back_and_refuses_damage() {
        let m = Membership::of_voters([NodeId(1), NodeId(2)]);
        let mut stored = b"state".to_vec();
        stored.extend(trailer(&m));
        let stored = Payload::from(stored);
        let (data, got) = split(&stored).unwrap();
        assert_eq!((&data[..], got), (&b"state"[..], m));
        for cut in 0..stored.len() {
            // Dropping state bytes from the front still splits; dropping into the
            // membership, or any cut at the end, never does.
            let front = split(&Payload::from(&stored[cut..]));
            assert_eq!(front.is_ok(), cut <= 5, "front cut {cut}");
            assert!(split(&Payload::from(&stored[..cut])).is_err(), "cut {cut}");
        }
    }
}
