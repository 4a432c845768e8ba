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

/// A follower's reads waiting for the leader's read index. One request is in flight at a
/// time and names a batch; reads arriving meanwhile wait for the next request (etcd's
/// linearizable read loop does the same), so a burst of reads costs one round trip.
#[derive(Debug, Default)]
pub(crate) struct RemoteReads {
    /// The last batch name used (the request's `ctx`).
    batch: u64,
    /// The reads of the batch in flight, if one is.
    inflight: Option<Vec<u64>>,
    /// Ticks since the batch in flight was asked for.
    age: u64,
    waiting: Vec<u64>,
}

impl RemoteReads {
    /// Queues a read; returns the name of a batch to ask for now, if none is in flight.
    pub(crate) fn add(&mut self, ctx: u64) -> Option<u64> {
        self.waiting.push(ctx);
        self.start()
    }

    /// Starts the next batch from the waiting reads, unless one is in flight.
    fn start(&mut self) -> Option<u64> {
        if self.inflight.is_some() || self.waiting.is_empty() {
            return None;
        }
        self.batch += 1;
        self.age = 0;
        self.inflight = Some(std::mem::take(&mut self.waiting));
        Some(self.batch)
    }

    /// The leader answered batch `batch`: its reads, and the next batch to ask for.
    pub(crate) fn answered(&mut self, batch: u64) -> Option<(Vec<u64>, Option<u64>)> {
        if batch != self.batch {
            return None; // an answer to a batch given up on
        }
        let done = self.inflight.take()?;
        Some((done, self.start()))
    }

    /// One tick passed. After `limit` ticks without an answer the request or its answer
    /// is presumed lost: the batch is asked for again under a new name (a read index
    /// obtained later is still valid for every read in it).
    pub(crate) fn tick(&mut self, limit: u64) -> Option<u64> {
        self.inflight.as_ref()?;
        self.age += 1;
        if self.age < limit {
            return None;
        }
        let mut reads = self.inflight.take().unwrap_or_default();
        reads.append(&mut self.waiting);
        self.waiting = reads;
        self.start()
    }

    /// Every read, in flight or waiting (the leader changed: none will be answered).
    pub(crate) fn take_all(&mut self) -> Vec<u64> {
        let mut all = self.inflight.take().unwrap_or_default();
        all.append(&mut self.waiting);
        all
    }
}

impl ReadQueue {
    /// Whether some pending read was already stamped on messages and awaits their
    /// acknowledgements: a new read then waits for that round to end (or for the next
    /// message sent anyway) rather than starting a round of its own.
    pub(crate) fn round_in_flight(&self) -> bool {
        // The sequence only moves past a pending read's round once that round went out.
        self.pending
            .first()
            .is_some_and(|r| r.seq < self.seq || self.seq_sent)
    }

    /// Whether some pending read was registered after the last stamped round.
    pub(crate) fn needs_round(&self) -> bool {
        !self.seq_sent && self.pending.last().is_some_and(|r| r.seq == self.seq)
    }

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

    /// Releases the reads confirmed by the voters' `peer_acks` (the leader's own ack
    /// is implied when it votes, `counts_self`) among `voters`.
    pub(crate) fn confirmed(
        &mut self,
        mut peer_acks: Vec<u64>,
        voters: usize,
        counts_self: bool,
    ) -> Vec<ReadOrigin> {
        if counts_self {
            peer_acks.push(self.seq);
        }
        peer_acks.sort_unstable_by(|a, b| b.cmp(a));
        let Some(&quorum_seq) = peer_acks.get(majority(voters).wrapping_sub(1)) else {
            return Vec::new();
        };
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
        assert!(q.confirmed(vec![old, old], 3, true).is_empty());
        let round = q.stamp();
        q.register((None, 3)); // needs a later round
        assert_eq!(
            q.confirmed(vec![round, old], 3, true),
            vec![(None, 1), (Some(NodeId(7)), 2)]
        );
        let round2 = q.stamp();
        assert!(q.confirmed(vec![round, round], 3, true).is_empty());
        assert_eq!(q.confirmed(vec![round2, old], 3, true), vec![(None, 3)]);
    }

    #[test]
    fn a_read_during_a_round_waits_for_the_next_one() {
        let mut q = ReadQueue::default();
        assert!(!q.round_in_flight() && !q.needs_round());
        q.register((None, 1));
        assert!(!q.round_in_flight() && q.needs_round());
        let round = q.stamp();
        assert!(q.round_in_flight() && !q.needs_round());
        q.register((None, 2));
        assert!(q.round_in_flight() && q.needs_round());
        assert_eq!(q.confirmed(vec![round, 0], 3, true), vec![(None, 1)]);
        assert!(!q.round_in_flight() && q.needs_round());
    }

    #[test]
    fn follower_reads_go_in_batches_one_in_flight() {
        let mut r = RemoteReads::default();
        let b1 = r.add(10).expect("first read asks at once");
        assert_eq!(r.add(11), None);
        assert_eq!(r.add(12), None);
        let (done, next) = r.answered(b1).unwrap();
        assert_eq!(done, vec![10]);
        let b2 = next.expect("waiting reads make the next batch");
        assert_eq!(r.answered(b1), None, "a repeated answer releases nothing");
        let (done, next) = r.answered(b2).unwrap();
        assert_eq!((done, next), (vec![11, 12], None));
    }

    #[test]
    fn a_lost_batch_is_asked_again_under_a_new_name() {
        let mut r = RemoteReads::default();
        let b1 = r.add(1).unwrap();
        r.add(2);
        assert_eq!(r.tick(3), None);
        assert_eq!(r.tick(3), None);
        let b2 = r.tick(3).expect("asked again after the limit");
        assert_ne!(b1, b2);
        assert_eq!(
            r.answered(b1),
            None,
            "the late answer to the old name is ignored"
        );
        assert_eq!(r.answered(b2).unwrap().0, vec![1, 2]);
        assert_eq!(r.take_all(), Vec::<u64>::new());
    }

    #[test]
    fn single_voter_confirms_itself() {
        let mut q = ReadQueue::default();
        q.register((None, 9));
        assert_eq!(q.confirmed(vec![], 1, true), vec![(None, 9)]);
    }
}
