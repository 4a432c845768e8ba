//! The in-memory view of the replicated log: a snapshot point followed by entries.

use crate::membership::Configs;
use crate::types::{Entry, EntryKind, LogIndex, SnapshotMeta, Term};
use engine::Membership;

/// Entries after a compaction point, and the memberships they put in force.
// Invariant: entries[i].index == snapshot.index + 1 + i, and terms never decrease.
#[derive(Clone, Debug, Default)]
pub(crate) struct RaftLog {
    snapshot: SnapshotMeta,
    entries: Vec<Entry>,
    confs: Configs,
}

impl RaftLog {
    /// A log after `snapshot`, where `base` was in force.
    pub(crate) fn new(snapshot: SnapshotMeta, base: Membership, entries: Vec<Entry>) -> RaftLog {
        let mut log = RaftLog {
            snapshot,
            entries: Vec::with_capacity(entries.len()),
            confs: Configs::new(base),
        };
        for e in entries {
            log.push(e);
        }
        log.assert_invariants();
        log
    }

    /// The memberships the log holds.
    pub(crate) fn confs(&self) -> &Configs {
        &self.confs
    }

    fn assert_invariants(&self) {
        debug_assert!(self
            .entries
            .iter()
            .enumerate()
            .all(|(i, e)| e.index.0 == self.snapshot.index.0 + 1 + i as u64));
    }

    pub(crate) fn snapshot_meta(&self) -> SnapshotMeta {
        self.snapshot
    }

    /// The first index still held as an entry (may exceed `last_index` when empty).
    pub(crate) fn first_index(&self) -> LogIndex {
        self.snapshot.index.next()
    }

    pub(crate) fn last_index(&self) -> LogIndex {
        LogIndex(self.snapshot.index.0 + self.entries.len() as u64)
    }

    pub(crate) fn last_term(&self) -> Term {
        self.entries.last().map_or(self.snapshot.term, |e| e.term)
    }

    /// The term at `index`, if known (the snapshot point counts; compacted entries don't).
    pub(crate) fn term_at(&self, index: LogIndex) -> Option<Term> {
        if index == self.snapshot.index {
            return Some(self.snapshot.term);
        }
        self.entry(index).map(|e| e.term)
    }

    pub(crate) fn entry(&self, index: LogIndex) -> Option<&Entry> {
        if index <= self.snapshot.index {
            return None;
        }
        let offset = (index.0 - self.snapshot.index.0 - 1) as usize;
        self.entries.get(offset)
    }

    /// Entries from `from` through at most `max_entries`/`max_bytes` (at least one if any).
    pub(crate) fn slice(&self, from: LogIndex, max_entries: usize, max_bytes: usize) -> Vec<Entry> {
        if from <= self.snapshot.index || from > self.last_index() {
            return Vec::new();
        }
        let start = (from.0 - self.snapshot.index.0 - 1) as usize;
        let mut out = Vec::new();
        let mut bytes = 0usize;
        for e in self.entries[start..].iter().take(max_entries) {
            bytes += e.size_bytes();
            if !out.is_empty() && bytes > max_bytes {
                break;
            }
            out.push(e.clone());
        }
        out
    }

    /// Every entry from `from` to the end.
    pub(crate) fn tail(&self, from: LogIndex) -> Vec<Entry> {
        self.slice(from, usize::MAX, usize::MAX)
    }

    /// Appends one entry at `last_index + 1`.
    pub(crate) fn push(&mut self, entry: Entry) {
        debug_assert_eq!(entry.index, self.last_index().next());
        #[cfg(not(feature = "planted-bugs"))]
        debug_assert!(entry.term >= self.last_term());
        if let EntryKind::Config(c) = &entry.kind {
            self.confs.push(entry.index, &c.membership);
        }
        self.entries.push(entry);
    }

    /// Removes every entry at or after `from`.
    pub(crate) fn truncate_from(&mut self, from: LogIndex) {
        self.confs.truncate_from(from);
        if from <= self.snapshot.index {
            self.entries.clear();
            return;
        }
        let keep = (from.0 - self.snapshot.index.0 - 1) as usize;
        self.entries.truncate(keep);
    }

    /// Drops entries through `meta.index`, which must be in the log; keeps the suffix.
    pub(crate) fn compact_to(&mut self, meta: SnapshotMeta) {
        debug_assert_eq!(self.term_at(meta.index), Some(meta.term));
        let drop = (meta.index.0 - self.snapshot.index.0) as usize;
        self.entries.drain(..drop.min(self.entries.len()));
        self.confs.compact_to(meta.index);
        self.snapshot = meta;
        self.assert_invariants();
    }

    /// Replaces the whole log by a snapshot point, where `base` was in force.
    pub(crate) fn reset_to(&mut self, meta: SnapshotMeta, base: Membership) {
        self.entries.clear();
        self.confs.reset(base);
        self.snapshot = meta;
    }

    /// First index of the run of `term` that contains `index` (for rejection hints).
    pub(crate) fn first_index_of_term_run(&self, index: LogIndex, term: Term) -> LogIndex {
        let mut i = index;
        while i.prev() > self.snapshot.index && self.term_at(i.prev()) == Some(term) {
            i = i.prev();
        }
        i
    }

    /// Last index holding `term`, if the log has any such entry.
    pub(crate) fn last_index_of_term(&self, term: Term) -> Option<LogIndex> {
        self.entries
            .iter()
            .rev()
            .skip_while(|e| e.term > term)
            .take_while(|e| e.term == term)
            .map(|e| e.index)
            .next()
    }

    /// Raft's "at least as up-to-date" comparison (§5.4.1).
    pub(crate) fn is_up_to_date(&self, last_index: LogIndex, last_term: Term) -> bool {
        last_term > self.last_term()
            || (last_term == self.last_term() && last_index >= self.last_index())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log_with_terms(snapshot: (u64, u64), terms: &[u64]) -> RaftLog {
        let meta = SnapshotMeta {
            index: LogIndex(snapshot.0),
            term: Term(snapshot.1),
        };
        let entries = terms
            .iter()
            .enumerate()
            .map(|(i, t)| Entry {
                term: Term(*t),
                index: LogIndex(snapshot.0 + 1 + i as u64),
                kind: EntryKind::Noop,
            })
            .collect();
        RaftLog::new(meta, Membership::default(), entries)
    }

    #[test]
    fn term_lookup_respects_snapshot_point() {
        let log = log_with_terms((5, 2), &[2, 3, 3]);
        assert_eq!(log.term_at(LogIndex(4)), None);
        assert_eq!(log.term_at(LogIndex(5)), Some(Term(2)));
        assert_eq!(log.term_at(LogIndex(8)), Some(Term(3)));
        assert_eq!(log.term_at(LogIndex(9)), None);
        assert_eq!(log.last_index(), LogIndex(8));
    }

    #[test]
    fn truncate_and_compact() {
        let mut log = log_with_terms((0, 0), &[1, 1, 2, 2, 3]);
        log.truncate_from(LogIndex(4));
        assert_eq!(log.last_index(), LogIndex(3));
        log.compact_to(SnapshotMeta {
            index: LogIndex(2),
            term: Term(1),
        });
        assert_eq!(log.first_index(), LogIndex(3));
        assert_eq!(log.term_at(LogIndex(3)), Some(Term(2)));
        assert_eq!(log.slice(LogIndex(2), 10, 1000).len(), 0);
        assert_eq!(log.slice(LogIndex(3), 10, 1000).len(), 1);
    }

    #[test]
    fn term_runs_and_up_to_date() {
        let log = log_with_terms((0, 0), &[1, 1, 4, 4, 4, 5]);
        assert_eq!(
            log.first_index_of_term_run(LogIndex(5), Term(4)),
            LogIndex(3)
        );
        assert_eq!(log.last_index_of_term(Term(4)), Some(LogIndex(5)));
        assert_eq!(log.last_index_of_term(Term(2)), None);
        assert_eq!(log.last_index_of_term(Term(1)), Some(LogIndex(2)));
        assert!(log.is_up_to_date(LogIndex(1), Term(6)));
        assert!(log.is_up_to_date(LogIndex(6), Term(5)));
        assert!(!log.is_up_to_date(LogIndex(5), Term(5)));
        assert!(!log.is_up_to_date(LogIndex(100), Term(4)));
    }

    #[test]
    fn slice_honours_byte_limit_but_sends_one() {
        let log = log_with_terms((0, 0), &[1, 1, 1]);
        assert_eq!(log.slice(LogIndex(1), 10, 1).len(), 1);
        assert_eq!(log.slice(LogIndex(1), 2, usize::MAX).len(), 2);
    }
}
