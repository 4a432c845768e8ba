//! Persist-before-promise bookkeeping: io ids, what each io makes durable, and the
//! messages held back until their io completes.

use crate::effects::{EntryWrite, PersistRequest, SnapshotWrite};
use crate::message::Message;
use crate::types::{HardState, IoId, LogIndex, NodeId, Term};
use std::collections::VecDeque;

/// The node's write pipeline towards stable storage.
// Invariant: persisted <= issued; `held` is sorted by the io it waits for.
#[derive(Debug, Default)]
pub(crate) struct Durability {
    issued: u64,
    persisted: u64,
    /// Lowest log index changed in memory since the last persist request.
    unstable_from: Option<LogIndex>,
    last_written: HardState,
    /// Log last index that each issued io leaves on disk, when it touches the log.
    io_last: VecDeque<(u64, LogIndex)>,
    /// Last log index known durable *and* equal to the in-memory log: entries replaced
    /// in memory (conflict truncation, snapshot reset) stop counting at once.
    persisted_last: LogIndex,
    /// The term of the newest durable hard state, and the term each issued io that
    /// changes it writes.
    persisted_term: Term,
    io_term: VecDeque<(u64, Term)>,
    /// Messages produced since the last flush that promise durability.
    gated: Vec<(NodeId, Message)>,
    /// Messages waiting for an io.
    held: VecDeque<(u64, NodeId, Message)>,
}

impl Durability {
    pub(crate) fn recovered(hard_state: HardState, last_index: LogIndex) -> Durability {
        Durability {
            last_written: hard_state,
            persisted_last: last_index,
            persisted_term: hard_state.term,
            ..Durability::default()
        }
    }

    pub(crate) fn persisted_last(&self) -> LogIndex {
        self.persisted_last
    }

    /// The term of the newest hard state known durable: it never decreases, across
    /// restarts too (the engine contract's epoch).
    pub(crate) fn persisted_term(&self) -> Term {
        self.persisted_term
    }

    /// Whether any issued io is still outstanding.
    pub(crate) fn busy(&self) -> bool {
        self.persisted < self.issued
    }

    pub(crate) fn mark_entries_from(&mut self, index: LogIndex) {
        self.unstable_from = Some(self.unstable_from.map_or(index, |u| u.min(index)));
        self.distrust_above(index.prev());
    }

    /// Durable entries above `index` no longer match the in-memory log.
    pub(crate) fn distrust_above(&mut self, index: LogIndex) {
        self.persisted_last = self.persisted_last.min(index);
    }

    /// Whether storage reported `io` durable.
    pub(crate) fn is_persisted(&self, io: IoId) -> bool {
        io.0 <= self.persisted
    }

    /// Queues a message that may only leave once everything issued so far is durable.
    pub(crate) fn gate(&mut self, to: NodeId, message: Message) {
        self.gated.push((to, message));
    }

    /// Builds the next persist request, if anything needs writing (`snapshot` always
    /// does), and assigns the gated messages to the newest io. Returns the request and
    /// messages released now.
    pub(crate) fn flush(
        &mut self,
        hard_state: HardState,
        tail: impl FnOnce(LogIndex) -> (LogIndex, Vec<crate::types::Entry>),
        snapshot: Option<SnapshotWrite>,
        last_index: LogIndex,
    ) -> (Option<PersistRequest>, Vec<(NodeId, Message)>) {
        // Persist only a commit index whose entries are already durable, so that a crash
        // can never leave a durable commit index pointing past the surviving log (which
        // would make the commit index move backwards across the restart).
        let mut hard_state = hard_state;
        hard_state.commit = hard_state
            .commit
            .min(self.persisted_last)
            .max(self.last_written.commit);
        let vote_changed =
            (hard_state.term, hard_state.vote) != (self.last_written.term, self.last_written.vote);
        let request = if self.unstable_from.is_some() || snapshot.is_some() || vote_changed {
            self.issued += 1;
            let entries = self.unstable_from.take().map(|from| {
                let (from, entries) = tail(from);
                EntryWrite { from, entries }
            });
            if entries.is_some() || snapshot.is_some() {
                self.io_last.push_back((self.issued, last_index));
            }
            if hard_state.term != self.last_written.term {
                self.io_term.push_back((self.issued, hard_state.term));
            }
            let hard_state = (hard_state != self.last_written).then_some(hard_state);
            self.last_written = hard_state.unwrap_or(self.last_written);
            Some(PersistRequest {
                io: IoId(self.issued),
                snapshot,
                entries,
                hard_state,
            })
        } else {
            None
        };
        let gated = std::mem::take(&mut self.gated);
        if self.busy() {
            let wait = self.issued;
            self.held
                .extend(gated.into_iter().map(|(to, m)| (wait, to, m)));
            (request, Vec::new())
        } else {
            (request, gated)
        }
    }

    /// Storage reports `io` (and every earlier io) durable; returns released messages,
    /// or `None` if `io` was never issued.
    pub(crate) fn on_persisted(&mut self, io: IoId) -> Option<Vec<(NodeId, Message)>> {
        if io.0 > self.issued {
            return None;
        }
        if io.0 <= self.persisted {
            return Some(Vec::new());
        }
        self.persisted = io.0;
        while let Some(&(id, last)) = self.io_last.front() {
            if id > io.0 {
                break;
            }
            self.persisted_last = last;
            self.io_last.pop_front();
        }
        while let Some(&(id, term)) = self.io_term.front() {
            if id > io.0 {
                break;
            }
            self.persisted_term = term;
            self.io_term.pop_front();
        }
        let mut released = Vec::new();
        while self.held.front().is_some_and(|(wait, _, _)| *wait <= io.0) {
            if let Some((_, to, m)) = self.held.pop_front() {
                released.push((to, m));
            }
        }
        Some(released)
    }
}
