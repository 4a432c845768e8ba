//! Follower side: the AppendEntries consistency check, conflict truncation, commit
//! learning, and chunked InstallSnapshot.

use crate::effects::Effect;
use crate::error::StepError;
use crate::message::{AppendOutcome, Message};
use crate::node::{IncomingSnapshot, RaftNode};
use crate::types::{Entry, LogIndex, NodeId, Payload, Snapshot, SnapshotMeta, Term};
use engine::Membership;

impl RaftNode {
    pub(crate) fn on_leader_message(
        &mut self,
        from: NodeId,
        msg: Message,
    ) -> Result<(), StepError> {
        self.election_elapsed = 0;
        match msg {
            Message::Append {
                prev_index,
                prev_term,
                entries,
                leader_commit,
                read_seq,
                ..
            } => self.on_append(
                from,
                prev_index,
                prev_term,
                entries,
                leader_commit,
                read_seq,
            ),
            Message::Snapshot {
                meta,
                offset,
                total_len,
                data,
                checksum,
                read_seq,
                ..
            } => {
                let chunk = Chunk {
                    meta,
                    offset,
                    total_len,
                    data,
                    checksum,
                };
                self.on_snapshot_chunk(from, chunk, read_seq);
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn on_append(
        &mut self,
        from: NodeId,
        prev_index: LogIndex,
        prev_term: Term,
        entries: Vec<Entry>,
        leader_commit: LogIndex,
        read_seq: u64,
    ) -> Result<(), StepError> {
        if prev_index < self.commit {
            // Everything through our commit index matches the leader already.
            self.ack(from, self.commit, read_seq);
            return Ok(());
        }
        if self.log.term_at(prev_index) != Some(prev_term) {
            self.reject(from, prev_index, read_seq);
            return Ok(());
        }
        let last_new = LogIndex(prev_index.0 + entries.len() as u64);
        self.merge_entries(from, entries)?;
        let learned = leader_commit.min(last_new);
        if learned > self.commit {
            self.commit = learned;
        }
        self.ack(from, last_new, read_seq);
        Ok(())
    }

    /// Appends what is new, truncating our suffix at the first conflicting entry.
    fn merge_entries(&mut self, from: NodeId, entries: Vec<Entry>) -> Result<(), StepError> {
        for e in &entries {
            match self.log.term_at(e.index) {
                Some(t) if t == e.term => continue,
                Some(_) if e.index <= self.commit => {
                    return Err(StepError::ConflictWithCommitted {
                        from,
                        index: e.index,
                    });
                }
                Some(_) => {
                    #[cfg(feature = "planted-bugs")]
                    if self.bug(crate::config::PlantedBug::NoConflictTruncate) {
                        continue;
                    }
                    self.log.truncate_from(e.index);
                }
                None => {}
            }
            if e.index != self.log.last_index().next() {
                // Only reachable with a planted bug that skipped a conflict.
                continue;
            }
            self.log.push(e.clone());
            self.io.mark_entries_from(e.index);
        }
        Ok(())
    }

    fn ack(&mut self, to: NodeId, match_index: LogIndex, read_seq: u64) {
        let outcome = AppendOutcome::Accepted { match_index };
        let m = Message::AppendResponse {
            term: self.term,
            outcome,
            read_seq,
        };
        self.io.gate(to, m);
    }

    fn reject(&mut self, to: NodeId, rejected_index: LogIndex, read_seq: u64) {
        let last = self.log.last_index();
        let (conflict_term, conflict_index) = if rejected_index > last {
            (None, last.next())
        } else {
            let t = self.log.term_at(rejected_index);
            let first = t.map_or(rejected_index, |t| {
                self.log.first_index_of_term_run(rejected_index, t)
            });
            (t, first)
        };
        let outcome = AppendOutcome::Rejected {
            rejected_index,
            conflict_term,
            conflict_index,
        };
        self.send(
            to,
            Message::AppendResponse {
                term: self.term,
                outcome,
                read_seq,
            },
        );
    }

    fn on_snapshot_chunk(&mut self, from: NodeId, c: Chunk, read_seq: u64) {
        let (meta, total_len) = (c.meta, c.total_len);
        if meta.index <= self.commit {
            // We already have everything it covers.
            self.snapshot_reply(from, meta.index, total_len, true, read_seq);
            return;
        }
        let fresh = !matches!(&self.incoming, Some(s) if s.meta == meta
            && s.total_len == total_len && s.checksum == c.checksum);
        if fresh {
            if c.offset != 0 {
                self.snapshot_reply(from, meta.index, 0, false, read_seq);
                return;
            }
            self.incoming = Some(IncomingSnapshot {
                meta,
                total_len,
                checksum: c.checksum,
                crc: 0,
                buf: Vec::new(),
            });
        }
        let Some(inc) = self.incoming.as_mut() else {
            return;
        };
        if c.offset != inc.buf.len() as u64 {
            let expected = inc.buf.len() as u64;
            self.snapshot_reply(from, meta.index, expected, false, read_seq);
            return;
        }
        inc.buf.extend_from_slice(&c.data);
        inc.crc = crc32c::crc32c_append(inc.crc, &c.data);
        if (inc.buf.len() as u64) < total_len {
            let next = inc.buf.len() as u64;
            self.snapshot_reply(from, meta.index, next, false, read_seq);
            return;
        }
        let Some(done) = self.incoming.take() else {
            return;
        };
        if done.crc != done.checksum || done.buf.len() as u64 != total_len {
            // Damaged on the leader's disk or on the way: start over, never install it.
            self.snapshot_reply(from, meta.index, 0, false, read_seq);
            return;
        }
        let stored = Payload::from(done.buf);
        let Ok((data, membership)) = crate::membership::split(&stored) else {
            // Not a snapshot Raft wrote: never install it.
            self.snapshot_reply(from, meta.index, 0, false, read_seq);
            return;
        };
        self.install_snapshot(Snapshot { meta, data: stored }, data, membership);
        let m = Message::SnapshotResponse {
            term: self.term,
            index: meta.index,
            next_offset: total_len,
            installed: true,
            read_seq,
        };
        self.io.gate(from, m);
    }

    fn snapshot_reply(
        &mut self,
        to: NodeId,
        index: LogIndex,
        next_offset: u64,
        installed: bool,
        read_seq: u64,
    ) {
        let m = Message::SnapshotResponse {
            term: self.term,
            index,
            next_offset,
            installed,
            read_seq,
        };
        if installed {
            self.io.gate(to, m);
        } else {
            self.send(to, m);
        }
    }

    /// `stored`: the snapshot as storage keeps it; `data` the state machine's part;
    /// `membership` the one in force at its index.
    fn install_snapshot(&mut self, stored: Snapshot, data: Payload, membership: Membership) {
        let meta = stored.meta;
        if self.log.term_at(meta.index) == Some(meta.term) {
            self.log.compact_to(meta);
        } else {
            // Our durable entries past the commit index may conflict with the snapshot.
            self.io.distrust_above(self.commit);
            self.log.reset_to(meta, membership);
            self.io.mark_entries_from(meta.index.next());
        }
        self.commit = self.commit.max(meta.index);
        self.applied = meta.index;
        self.pending_restore = None;
        let restore = Snapshot { meta, data };
        self.effects
            .push(Effect::Apply(crate::effects::Apply::Snapshot(restore)));
        let len = stored.data.len() as u64;
        self.unsaved_snapshot = Some((crate::effects::SnapshotWrite::Store(stored), len));
    }
}

/// One received InstallSnapshot chunk.
struct Chunk {
    meta: SnapshotMeta,
    offset: u64,
    total_len: u64,
    data: Payload,
    checksum: u32,
}
