//! ReadIndex: reads released once a quorum has confirmed leadership after the request.

use crate::quorum::majority;
use crate::types::NodeId;

/// Who asked for a read: this node (`None`) or a follower, and its name for it.
pub(crate) type ReadOrigin = (Option<NodeId>, u64);

#[derive(Clone, Copy, Debug)]
struct PendingRead {
    origin: ReadOrigin,
    seq: u64,
}

/// Pending linearizable reads. Every message a leader sends carries the current round
/// number (`seq`); a read registered at round `s` is safe once a majority (the leader
/// included) has echoed a round `>= s` in the leader's term.
// Invariant: pending is sorted by seq.
#[derive(Debug, Default)]
pub(crate) struct ReadQueue {
    seq: u64,
    /// Whether some message already carried `seq` (then a new read needs a new round).
    seq_sent: bool,
    pending: Vec<PendingRead>,
}

impl ReadQueue {
    pub(crate) fn register(&mut self, origin: ReadOrigin) {
        if self.seq_sent || self.pending.is_empty() {
            self.seq += 1;
            self.seq_sent = false;
        }
        self.pending.push(PendingRead {
            origin,
            seq: self.seq,
        });
    }

    /// The round to stamp on an outgoing message.
    pub(crate) fn stamp(&mut self) -> u64 {
        self.seq_sent = true;
        self.seq
    }

    pub(crate) fn on_new_term(&mut self) {
        self.seq += 1;
        self.seq_sent = false;
    }

    pub(crate) fn abort_all(&mut self) -> Vec<ReadOrigin> {
        self.pending.drain(..).map(|r| r.origin).collect()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Releases the reads confirmed by `peer_acks` (the leader's own ack is implied).
    pub(crate) fn confirmed(&mut self, mut peer_acks: Vec<u64>, voters: usize) -> Vec<ReadOrigin> {
        peer_acks.push(self.seq);
        peer_acks.sort_unstable_by(|a, b| b.cmp(a));
        let quorum_seq = peer_acks[majority(voters) - 1];
        let n = self
            .pending
            .iter()
            .take_while(|r| r.seq <= quorum_seq)
            .count();
        self.pending.drain(..n).map(|r| r.origin).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_need_a_round_sent_after_them() {
        let mut q = ReadQueue::default();
        let old = q.stamp();
        q.register((None, 1));
        q.register((Some(NodeId(7)), 2));
        // Acks of a round stamped before the reads prove nothing.
        assert!(q.confirmed(vec![old, old], 3).is_empty());
        let round = q.stamp();
        q.register((None, 3)); // needs a later round
        assert_eq!(
            q.confirmed(vec![round, old], 3),
            vec![(None, 1), (Some(NodeId(7)), 2)]
        );
        let round2 = q.stamp();
        assert!(q.confirmed(vec![round, round], 3).is_empty());
        assert_eq!(q.confirmed(vec![round2, old], 3), vec![(None, 3)]);
    }

    #[test]
    fn single_voter_confirms_itself() {
        let mut q = ReadQueue::default();
        q.register((None, 9));
        assert_eq!(q.confirmed(vec![], 1), vec![(None, 9)]);
    }
}
