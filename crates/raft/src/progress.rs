//! A leader's view of one follower's replication (etcd calls this "Progress").

use crate::types::{LogIndex, SnapshotMeta};
use std::collections::VecDeque;

/// How the leader currently feeds a follower.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum FlowState {
    /// Find the match point: one append in flight at a time.
    Probe { paused: bool },
    /// Stream appends optimistically, up to the inflight window.
    Replicate,
    /// Send the stored snapshot `meta` (`total_len` bytes) chunk by chunk; `offset` is
    /// the next byte to send. A newer compaction on the leader does not restart the
    /// transfer from zero (which can livelock a slow transfer under a steady write
    /// rate): storage keeps the previous snapshot for it.
    Snapshot {
        meta: SnapshotMeta,
        total_len: u64,
        offset: u64,
    },
}

// Invariant: match_index < next_index.
#[derive(Clone, Debug)]
pub(crate) struct Progress {
    pub(crate) match_index: LogIndex,
    pub(crate) next_index: LogIndex,
    pub(crate) state: FlowState,
    /// Last index of each un-acknowledged append, oldest first (Replicate only).
    inflight: VecDeque<LogIndex>,
    /// Whether the current flow (probe, pipeline or snapshot transfer) advanced since the
    /// last heartbeat round. Heartbeat answers alone do not count: a follower can answer
    /// heartbeats forever while the append or snapshot chunk it needs keeps being lost.
    pub(crate) progressed_since_heartbeat: bool,
    /// Whether the follower answered anything since the last check-quorum round.
    pub(crate) recently_active: bool,
    /// Highest read-confirmation round the follower echoed in this term.
    pub(crate) read_seq_acked: u64,
}

impl Progress {
    pub(crate) fn new(next_index: LogIndex) -> Progress {
        Progress {
            match_index: LogIndex(0),
            next_index,
            state: FlowState::Probe { paused: false },
            inflight: VecDeque::new(),
            progressed_since_heartbeat: false,
            recently_active: false,
            read_seq_acked: 0,
        }
    }

    /// Whether another append may be sent now.
    pub(crate) fn can_send(&self, max_inflight: usize) -> bool {
        match self.state {
            FlowState::Probe { paused } => !paused,
            FlowState::Replicate => self.inflight.len() < max_inflight,
            FlowState::Snapshot { .. } => false,
        }
    }

    /// Records that an append ending at `last` was sent.
    pub(crate) fn on_sent(&mut self, last: LogIndex, carried_entries: bool) {
        match self.state {
            FlowState::Probe { .. } => self.state = FlowState::Probe { paused: true },
            FlowState::Replicate if carried_entries => {
                self.inflight.push_back(last);
                self.next_index = last.next();
            }
            _ => {}
        }
    }

    /// The follower matches through `index`; returns whether anything advanced.
    pub(crate) fn on_accepted(&mut self, index: LogIndex) -> bool {
        let advanced = index > self.match_index;
        if advanced {
            self.match_index = index;
        }
        if self.next_index <= index {
            self.next_index = index.next();
        }
        while self.inflight.front().is_some_and(|i| *i <= index) {
            self.inflight.pop_front();
        }
        if let FlowState::Probe { .. } = self.state {
            if advanced || index.next() == self.next_index {
                self.become_replicate();
            }
        }
        advanced
    }

    /// The follower rejected `rejected`; moves `next_index` to `hint` unless the rejection
    /// is stale. Returns whether it was acted on.
    pub(crate) fn on_rejected(&mut self, rejected: LogIndex, hint: LogIndex) -> bool {
        // At or below the match point the follower already acknowledged durable,
        // matching entries: the rejection is a reordered old message (or the follower is
        // broken) and must not move us backwards or trigger an immediate resend.
        if rejected <= self.match_index {
            return false;
        }
        match self.state {
            FlowState::Probe { .. } if rejected != self.next_index.prev() => return false,
            FlowState::Snapshot { .. } => return false,
            _ => {}
        }
        let floor = self.match_index.next();
        self.next_index = hint.max(floor).min(rejected.max(floor));
        self.state = FlowState::Probe { paused: false };
        self.inflight.clear();
        true
    }

    /// Falls back to probing from the match point: whatever was sent beyond it may
    /// have been lost.
    pub(crate) fn become_probe(&mut self) {
        self.state = FlowState::Probe { paused: false };
        self.next_index = self.match_index.next();
        self.inflight.clear();
    }

    pub(crate) fn become_replicate(&mut self) {
        self.state = FlowState::Replicate;
        self.next_index = self.match_index.next();
        self.inflight.clear();
    }

    pub(crate) fn become_snapshot(&mut self, meta: SnapshotMeta, total_len: u64) {
        self.state = FlowState::Snapshot {
            meta,
            total_len,
            offset: 0,
        };
        self.inflight.clear();
    }

    /// Heartbeat round: true when the follower has un-acknowledged appends but has said
    /// nothing since the last round (messages were probably lost), so the leader should
    /// fall back to probing from the match point.
    pub(crate) fn stalled(&self) -> bool {
        let waiting = match self.state {
            FlowState::Probe { paused } => paused,
            FlowState::Replicate => !self.inflight.is_empty(),
            FlowState::Snapshot { .. } => true,
        };
        waiting && !self.progressed_since_heartbeat
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_pauses_until_answer_then_replicates() {
        let mut p = Progress::new(LogIndex(6));
        assert!(p.can_send(4));
        p.on_sent(LogIndex(7), true);
        assert!(!p.can_send(4));
        assert!(p.on_accepted(LogIndex(7)));
        assert_eq!(p.state, FlowState::Replicate);
        assert_eq!(p.next_index, LogIndex(8));
    }

    #[test]
    fn replicate_window_is_bounded_and_freed_by_acks() {
        let mut p = Progress::new(LogIndex(1));
        p.become_replicate();
        for last in 1..=3 {
            assert!(p.can_send(3));
            p.on_sent(LogIndex(last), true);
        }
        assert!(!p.can_send(3));
        assert_eq!(p.next_index, LogIndex(4));
        p.on_accepted(LogIndex(2));
        assert!(p.can_send(3));
        assert_eq!(p.match_index, LogIndex(2));
    }

    #[test]
    fn stale_rejections_are_ignored() {
        let mut p = Progress::new(LogIndex(10));
        p.on_accepted(LogIndex(5));
        assert_eq!(p.state, FlowState::Replicate);
        // A rejection at or below the match point is a reordered old message.
        assert!(!p.on_rejected(LogIndex(4), LogIndex(1)));
        assert!(p.on_rejected(LogIndex(8), LogIndex(7)));
        assert_eq!(p.next_index, LogIndex(7));
        // In probe, only the rejection of the outstanding probe counts.
        assert!(!p.on_rejected(LogIndex(3), LogIndex(2)));
        assert!(p.on_rejected(LogIndex(6), LogIndex(2)));
        // Never below match + 1.
        assert_eq!(p.next_index, LogIndex(6));
    }

    #[test]
    fn stalled_pipeline_restarts_from_the_match_point() {
        let mut p = Progress::new(LogIndex(1));
        p.on_accepted(LogIndex(4));
        p.on_sent(LogIndex(9), true);
        assert_eq!(p.next_index, LogIndex(10));
        assert!(p.stalled());
        p.become_probe();
        assert_eq!(p.next_index, LogIndex(5));
        assert!(p.can_send(1));
    }

    #[test]
    fn stall_detection_needs_silence() {
        let mut p = Progress::new(LogIndex(1));
        p.become_replicate();
        p.on_sent(LogIndex(3), true);
        p.progressed_since_heartbeat = true;
        assert!(!p.stalled());
        p.progressed_since_heartbeat = false;
        assert!(p.stalled());
    }
}
