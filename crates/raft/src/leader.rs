//! Leader side: heartbeats, pipelined replication, snapshots to laggards, commit, reads.

use crate::effects::{ChunkRequest, Effect};
use crate::error::StepError;
use crate::message::{AppendOutcome, MalformedReason, Message};
use crate::node::RaftNode;
use crate::progress::FlowState;
use crate::quorum::{committed_index, majority};
use crate::read::ReadOrigin;
use crate::types::{LogIndex, NodeId, Role};

impl RaftNode {
    pub(crate) fn tick_leader(&mut self) {
        self.tick_transfer();
        self.heartbeat_elapsed += 1;
        if self.heartbeat_elapsed >= self.cfg.heartbeat_interval_ticks {
            self.heartbeat_elapsed = 0;
            self.on_heartbeat_round();
        }
        self.election_elapsed += 1;
        if self.cfg.check_quorum && self.election_elapsed >= self.cfg.election_timeout_ticks {
            self.election_elapsed = 0;
            let active = self.voter_progress().filter(|p| p.recently_active).count()
                + usize::from(self.is_voter());
            let voters = self.membership().voter_count();
            for p in self.progress.values_mut() {
                p.recently_active = false;
            }
            if active < majority(voters) {
                self.become_follower(self.term, None);
            }
        }
    }

    fn on_heartbeat_round(&mut self) {
        let mut resend_snapshot = Vec::new();
        for (id, p) in self.progress.iter_mut() {
            match p.state {
                // A lost snapshot chunk is resent; a lost probe is simply retried from the
                // same point (keeping what backtracking learned); a silent pipeline may
                // have lost anything past the match point.
                FlowState::Snapshot { .. } if p.stalled() => resend_snapshot.push(*id),
                FlowState::Probe { .. } => p.state = FlowState::Probe { paused: false },
                FlowState::Replicate if p.stalled() => p.become_probe(),
                _ => {}
            }
            p.progressed_since_heartbeat = false;
        }
        for id in resend_snapshot {
            self.send_snapshot_chunk(id);
        }
        self.broadcast_pending = true;
    }

    /// Sends whatever each follower is owed: new entries within its window, else a
    /// heartbeat when a broadcast is due.
    pub(crate) fn flush_replication(&mut self) {
        let broadcast = std::mem::take(&mut self.broadcast_pending);
        for peer in self.member_peers() {
            let mut sent = false;
            while self.maybe_send_append(peer) {
                sent = true;
            }
            if broadcast && !sent {
                self.send_heartbeat(peer);
            }
        }
    }

    fn maybe_send_append(&mut self, peer: NodeId) -> bool {
        let last = self.log.last_index();
        let Some(p) = self.progress.get(&peer) else {
            return false;
        };
        if !p.can_send(self.cfg.max_inflight_appends) || p.next_index > last {
            return false;
        }
        let prev_index = p.next_index.prev();
        let Some(prev_term) = self.log.term_at(prev_index) else {
            self.start_snapshot(peer);
            return false;
        };
        let entries = self.log.slice(
            prev_index.next(),
            self.cfg.max_append_entries,
            self.cfg.max_append_bytes,
        );
        let sent_last = entries.last().map_or(prev_index, |e| e.index);
        let read_seq = self.reads.stamp();
        let m = Message::Append {
            term: self.term,
            prev_index,
            prev_term,
            entries,
            leader_commit: self.commit,
            read_seq,
        };
        self.send(peer, m);
        if let Some(p) = self.progress.get_mut(&peer) {
            p.on_sent(sent_last, sent_last > prev_index);
        }
        true
    }

    fn send_heartbeat(&mut self, peer: NodeId) {
        let Some(p) = self.progress.get(&peer) else {
            return;
        };
        let prev_index = p.match_index.max(self.log.snapshot_meta().index);
        let Some(prev_term) = self.log.term_at(prev_index) else {
            return;
        };
        let read_seq = self.reads.stamp();
        let m = Message::Append {
            term: self.term,
            prev_index,
            prev_term,
            entries: Vec::new(),
            leader_commit: self.commit,
            read_seq,
        };
        self.send(peer, m);
    }

    /// Starts sending the latest durable snapshot to `peer` (none yet: the next
    /// heartbeat round tries again).
    pub(crate) fn start_snapshot(&mut self, peer: NodeId) {
        let Some(stored) = self.sendable_snapshot() else {
            return;
        };
        if let Some(p) = self.progress.get_mut(&peer) {
            p.become_snapshot(stored.meta, stored.len);
        }
        self.send_snapshot_chunk(peer);
    }

    /// Sends the chunk at the current offset of the snapshot being transferred to `peer`.
    pub(crate) fn send_snapshot_chunk(&mut self, peer: NodeId) {
        let Some(p) = self.progress.get(&peer) else {
            return;
        };
        let FlowState::Snapshot {
            meta,
            total_len,
            offset,
        } = p.state
        else {
            return;
        };
        let chunk = ChunkRequest {
            meta,
            offset: offset.min(total_len),
            max_len: self.cfg.snapshot_chunk_bytes,
            total_len,
            term: self.term,
            read_seq: self.reads.stamp(),
        };
        self.effects
            .push(Effect::SendSnapshotChunk { to: peer, chunk });
    }

    pub(crate) fn on_follower_response(
        &mut self,
        from: NodeId,
        msg: Message,
    ) -> Result<(), StepError> {
        let last = self.log.last_index();
        let Some(p) = self.progress.get_mut(&from) else {
            return Ok(());
        };
        p.recently_active = true;
        match msg {
            Message::AppendResponse {
                outcome, read_seq, ..
            } => {
                p.read_seq_acked = p.read_seq_acked.max(read_seq);
                match outcome {
                    AppendOutcome::Accepted { match_index } => {
                        if match_index > last {
                            let reason = MalformedReason::IndexOutOfRange;
                            return Err(StepError::Malformed { from, reason });
                        }
                        if p.on_accepted(match_index) {
                            p.progressed_since_heartbeat = true;
                            self.maybe_commit();
                        }
                        self.maybe_send_timeout_now(from);
                    }
                    AppendOutcome::Rejected {
                        rejected_index,
                        conflict_term,
                        conflict_index,
                    } => {
                        let hint = conflict_term
                            .and_then(|t| self.log.last_index_of_term(t))
                            .map_or(conflict_index, |i| i.next());
                        if let Some(p) = self.progress.get_mut(&from) {
                            if p.on_rejected(rejected_index, hint) {
                                p.progressed_since_heartbeat = true;
                            }
                        }
                    }
                }
            }
            Message::SnapshotResponse {
                index,
                next_offset,
                installed,
                read_seq,
                ..
            } => {
                p.read_seq_acked = p.read_seq_acked.max(read_seq);
                if index > last {
                    let reason = MalformedReason::IndexOutOfRange;
                    return Err(StepError::Malformed { from, reason });
                }
                self.on_snapshot_response(from, index, next_offset, installed);
            }
            _ => {}
        }
        Ok(())
    }

    fn on_snapshot_response(
        &mut self,
        from: NodeId,
        index: LogIndex,
        next_offset: u64,
        installed: bool,
    ) {
        let Some(p) = self.progress.get_mut(&from) else {
            return;
        };
        if installed {
            p.progressed_since_heartbeat = true;
            if p.on_accepted(index) {
                self.maybe_commit();
            }
            if let Some(p) = self.progress.get_mut(&from) {
                if matches!(p.state, FlowState::Snapshot { .. }) {
                    p.become_probe();
                }
            }
            return;
        }
        if let FlowState::Snapshot { meta, offset, .. } = &mut p.state {
            // The follower names the offset it wants. Only a new want moves the
            // transfer: a repeated or reordered answer (the network duplicates them,
            // and a resent chunk is answered again) must not send another chunk, or
            // every extra answer adds a chunk in flight and the transfer becomes a
            // storm. Its assembly only grows, except back to 0 (lost or damaged).
            let wanted = next_offset > *offset || (next_offset == 0 && *offset != 0);
            if meta.index == index && wanted {
                p.progressed_since_heartbeat = true;
                *offset = next_offset;
                self.send_snapshot_chunk(from);
            }
        }
    }

    /// Advances the commit index to the highest entry of the current term that a
    /// majority holds durably (Raft §5.4.2: never by counting replicas of older terms).
    pub(crate) fn maybe_commit(&mut self) {
        let own = self.io.persisted_last().min(self.log.last_index());
        let mut matches: Vec<LogIndex> = self.voter_progress().map(|p| p.match_index).collect();
        if self.is_voter() {
            matches.push(own);
        }
        let candidate = committed_index(&mut matches, self.membership().voter_count());
        if candidate <= self.commit {
            return;
        }
        let current_term = self.log.term_at(candidate) == Some(self.term);
        #[cfg(feature = "planted-bugs")]
        let current_term = current_term || self.bug(crate::config::PlantedBug::Figure8Commit);
        if !current_term {
            return;
        }
        self.commit = candidate;
        self.broadcast_pending = true;
        self.step_down_if_removed();
    }

    pub(crate) fn flush_reads(&mut self) {
        if self.role != Role::Leader || self.reads.is_empty() {
            return;
        }
        // A new leader learns the commit index only once an entry of its term commits.
        if self.log.term_at(self.commit) != Some(self.term) {
            return;
        }
        let acks = self.voter_progress().map(|p| p.read_seq_acked).collect();
        let (voters, counts_self) = (self.membership().voter_count(), self.is_voter());
        for origin in self.reads.confirmed(acks, voters, counts_self) {
            self.answer_read(origin, Some(self.commit));
        }
        if !self.reads.round_in_flight() && self.reads.needs_round() {
            self.broadcast_pending = true;
        }
    }

    /// Queues a read at the leader. A round of messages confirms leadership for every
    /// read registered before it; while one is under way, new reads wait for the next.
    pub(crate) fn register_read(&mut self, origin: ReadOrigin) {
        self.reads.register(origin);
        if !self.reads.round_in_flight() {
            self.broadcast_pending = true;
        }
    }
}

impl RaftNode {
    /// Releases (`Some(index)`) or refuses (`None`) a read, here or at the follower that
    /// asked for it.
    pub(crate) fn answer_read(&mut self, (from, ctx): ReadOrigin, index: Option<LogIndex>) {
        match (from, index) {
            (None, Some(index)) => self.effects.push(Effect::ReadReady { ctx, index }),
            (None, None) => self.effects.push(Effect::ReadAborted { ctx }),
            (Some(to), index) => {
                let m = Message::ReadIndexResponse {
                    term: self.term,
                    ctx,
                    index,
                };
                self.send(to, m);
            }
        }
    }

    /// A follower's [`Message::ReadIndex`]: queued like a local read, or refused.
    pub(crate) fn on_read_index(&mut self, from: NodeId, ctx: u64) {
        if self.role == Role::Leader {
            self.register_read((Some(from), ctx));
        } else {
            self.answer_read((Some(from), ctx), None);
        }
    }

    /// The leader's answer to one of this follower's reads.
    pub(crate) fn on_read_index_response(&mut self, batch: u64, index: Option<LogIndex>) {
        let Some((done, next)) = self.remote_reads.answered(batch) else {
            return;
        };
        for ctx in done {
            self.answer_read((None, ctx), index);
        }
        if let (Some(next), Some(leader)) = (next, self.leader) {
            self.ask_read_index(leader, next);
        }
    }

    /// Asks the leader for a read index on behalf of the reads in `batch`.
    pub(crate) fn ask_read_index(&mut self, leader: NodeId, batch: u64) {
        let m = Message::ReadIndex {
            term: self.term,
            ctx: batch,
        };
        self.send(leader, m);
    }

    /// A follower's tick: a read batch unanswered for half an election timeout is asked
    /// for again (its request or the answer was lost). etcd retries after 500 ms, half
    /// its default election timeout; waiting a whole one held every later read of this
    /// follower for that long after a single lost message.
    pub(crate) fn tick_remote_reads(&mut self) {
        let limit = self.retry_read_after();
        if let (Some(batch), Some(leader)) = (self.remote_reads.tick(limit), self.leader) {
            self.ask_read_index(leader, batch);
        }
    }

    /// Ticks after which an unanswered read batch is asked for again.
    fn retry_read_after(&self) -> u64 {
        (self.cfg.election_timeout_ticks / 2).max(self.cfg.heartbeat_interval_ticks + 1)
    }

    /// Reads waiting on a leader that is no longer ours.
    pub(crate) fn abort_remote_reads(&mut self) {
        for ctx in self.remote_reads.take_all() {
            self.effects.push(Effect::ReadAborted { ctx });
        }
    }
}
