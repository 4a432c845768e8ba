//! The watch checkers, engine-agnostic. The reference is the committed history: the
//! events of each revision as the members applied it (the first member to apply a
//! revision records it; every later one must produce the same events, or the replicas
//! diverged). A watch's reads are checked against it:
//!
//! - ordered: events come by revision, never going back across reads (and across
//!   reconnections to other members), and by key within a revision (the order
//!   `kv::Store::events_since` documents);
//! - unique: no (revision, key) is delivered twice;
//! - atomic: a revision's events come together, all of those the watch matches;
//! - reliable: every matching event of the committed history between the watch's start
//!   and the progress it was told (`next_rev`) was delivered: no gap, including across
//!   reconnections, which resume at the last progress;
//! - prev_kv: each event's previous key-value is the committed one (or absent when not
//!   asked for);
//! - filters: only events in the watched range and of the kinds not filtered out;
//! - compacted: a read from a revision the member has compacted is refused as
//!   compacted, never served from a later revision.

use crate::invariants::{violated, Check};
use kv::{Event, EventKind};
use std::collections::BTreeMap;

/// What a watch asks for: a key range (etcd's conventions), filters and prev_kv.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct WatchSpec {
    pub(crate) key: Vec<u8>,
    pub(crate) range_end: Vec<u8>,
    pub(crate) no_put: bool,
    pub(crate) no_delete: bool,
    pub(crate) prev_kv: bool,
}

impl WatchSpec {
    /// Whether `key` is in the watched range.
    pub(crate) fn covers(&self, key: &[u8]) -> bool {
        match self.range_end.as_slice() {
            [] => key == self.key.as_slice(),
            [0] => key >= self.key.as_slice(),
            end => key >= self.key.as_slice() && key < end,
        }
    }

    /// Whether the watch wants event `e` (range and kind filters).
    pub(crate) fn wants(&self, e: &Event) -> bool {
        let kind_ok = match e.kind {
            EventKind::Put => !self.no_put,
            EventKind::Delete => !self.no_delete,
        };
        kind_ok && self.covers(&e.kv.key)
    }

    /// The events of a read as the watch delivers them: filtered, and without
    /// `prev_kv` unless asked for.
    pub(crate) fn deliver(&self, events: Vec<Event>) -> Vec<Event> {
        events
            .into_iter()
            .filter(|e| self.wants(e))
            .map(|mut e| {
                if !self.prev_kv {
                    e.prev_kv = None;
                }
                e
            })
            .collect()
    }
}

/// One logical watch's progress, across reconnections.
#[derive(Clone, Debug)]
pub(crate) struct WatchProgress {
    pub(crate) spec: WatchSpec,
    /// The revision it started from.
    pub(crate) start: i64,
    /// Where the next read resumes (the last progress).
    pub(crate) next: i64,
    /// The last event delivered: (revision, key).
    last: Option<(i64, Vec<u8>)>,
    /// Events delivered so far.
    pub(crate) delivered: u64,
}

impl WatchProgress {
    pub(crate) fn new(spec: WatchSpec, start: i64) -> WatchProgress {
        WatchProgress {
            spec,
            start,
            next: start,
            last: None,
            delivered: 0,
        }
    }
}

/// What one read of a member's history gave.
#[derive(Debug)]
pub(crate) enum Read<'a> {
    /// Events (as delivered) and the progress: the first revision not covered.
    Events { events: &'a [Event], next_rev: i64 },
    /// Refused: the start revision is compacted.
    Compacted,
}

/// The committed history, revision by revision.
#[derive(Debug, Default)]
pub(crate) struct History {
    revs: BTreeMap<i64, Vec<Event>>,
}

impl History {
    /// A member applied writes whose events are `events`, in order. Returns the
    /// events of revisions seen for the first time (for the lease checker).
    pub(crate) fn on_applied(
        &mut self,
        node: u64,
        events: Vec<Event>,
    ) -> Result<Vec<Event>, crate::Violation> {
        let mut fresh = Vec::new();
        let mut by_rev: BTreeMap<i64, Vec<Event>> = BTreeMap::new();
        for e in events {
            by_rev.entry(e.revision()).or_default().push(e);
        }
        for (rev, evs) in by_rev {
            match self.revs.get(&rev) {
                Some(known) if *known != evs => {
                    violated(
                        "watch-history",
                        format!("n{node} applied other events at revision {rev} than the first member that applied it"),
                    )?;
                }
                Some(_) => {}
                None => {
                    fresh.extend(evs.iter().cloned());
                    self.revs.insert(rev, evs);
                }
            }
        }
        Ok(fresh)
    }

    /// The events of `rev` the watch `spec` must deliver, in key order; `None` if the
    /// revision is not (yet) in the committed history.
    fn expected(&self, spec: &WatchSpec, rev: i64) -> Option<Vec<Event>> {
        let mut evs = spec.deliver(self.revs.get(&rev)?.clone());
        evs.sort_by(|a, b| a.kv.key.cmp(&b.kv.key));
        Some(evs)
    }

    /// Checks one read of watch `w` from `w.next`, at a member whose compact revision
    /// is `compacted`, and advances the watch.
    pub(crate) fn check_read(
        &self,
        w: &mut WatchProgress,
        read: Read<'_>,
        compacted: i64,
    ) -> Check {
        let from = w.next;
        let (events, next_rev) = match read {
            Read::Compacted if from < compacted => return Ok(()),
            Read::Compacted => {
                return violated(
                    "watch-compacted",
                    format!("a read from {from} was refused as compacted; the member compacted through {compacted}"),
                )
            }
            Read::Events { events, next_rev } => (events, next_rev),
        };
        if next_rev < from {
            return violated(
                "watch-ordered",
                format!("a read from {from} went back to {next_rev}"),
            );
        }
        check_sequence(w, events, from, next_rev)?;
        let mut got: BTreeMap<i64, Vec<Event>> = BTreeMap::new();
        for e in events {
            got.entry(e.revision()).or_default().push(e.clone());
        }
        for rev in from.max(2)..next_rev {
            let Some(expected) = self.expected(&w.spec, rev) else {
                return violated(
                    "watch-history",
                    format!(
                        "a read through {} covers revision {rev}, not in the committed history",
                        next_rev - 1
                    ),
                );
            };
            let expected = if rev == compacted {
                kept_by_compaction(expected)
            } else {
                expected
            };
            let delivered = got.remove(&rev).unwrap_or_default();
            compare_revision(w, rev, &delivered, &expected)?;
        }
        if from < compacted {
            return violated(
                "watch-compacted",
                format!("a read from {from} at a member compacted through {compacted} was served from {} instead of refused", events.first().map_or(next_rev, |e| e.revision())),
            );
        }
        w.delivered += events.len() as u64;
        w.next = next_rev;
        Ok(())
    }
}

/// What a watch from the compact revision itself still gets of that revision (as
/// etcd): its puts, without prev_kv; its deletions went with the compaction.
fn kept_by_compaction(expected: Vec<Event>) -> Vec<Event> {
    expected
        .into_iter()
        .filter(|e| e.kind == EventKind::Put)
        .map(|mut e| {
            e.prev_kv = None;
            e
        })
        .collect()
}

/// Ordered, unique and filtered: each event after the last one delivered, within the
/// read's range, and wanted by the watch.
fn check_sequence(w: &mut WatchProgress, events: &[Event], from: i64, next_rev: i64) -> Check {
    for e in events {
        let (rev, key) = (e.revision(), e.kv.key.clone());
        if !w.spec.wants(e) || (!w.spec.prev_kv && e.prev_kv.is_some()) {
            return violated(
                "watch-filter",
                format!(
                    "event {:?} at {rev} delivered to a watch of {:?}",
                    String::from_utf8_lossy(&key),
                    w.spec
                ),
            );
        }
        if let Some(last) = &w.last {
            if (rev, &key) == (last.0, &last.1) {
                return violated(
                    "watch-unique",
                    format!(
                        "event {:?} at {rev} delivered twice",
                        String::from_utf8_lossy(&key)
                    ),
                );
            }
            if (rev, &key) < (last.0, &last.1) {
                return violated(
                    "watch-ordered",
                    format!("event at {rev} delivered after one at {}", last.0),
                );
            }
        }
        if rev < from || rev >= next_rev {
            return violated(
                "watch-ordered",
                format!("a read from {from} to {next_rev} delivered an event at {rev}"),
            );
        }
        w.last = Some((rev, key));
    }
    Ok(())
}

/// Atomic, reliable and prev_kv at one revision.
fn compare_revision(w: &WatchProgress, rev: i64, delivered: &[Event], expected: &[Event]) -> Check {
    if delivered == expected {
        return Ok(());
    }
    if delivered.is_empty() {
        return violated(
            "watch-reliable",
            format!(
                "revision {rev} ({} matching event(s)) skipped by a watch from {} now at {}",
                expected.len(),
                w.start,
                w.next
            ),
        );
    }
    let shape = |es: &[Event]| -> Vec<(EventKind, Vec<u8>)> {
        es.iter().map(|e| (e.kind, e.kv.key.clone())).collect()
    };
    let same_kvs = delivered.iter().zip(expected).all(|(a, b)| a.kv == b.kv);
    if shape(delivered) == shape(expected) && same_kvs {
        return violated("watch-prev-kv", format!("wrong prev_kv at revision {rev}"));
    }
    violated(
        "watch-atomic",
        format!(
            "revision {rev}: delivered {} event(s), the committed revision has {} matching",
            delivered.len(),
            expected.len()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use kv::KeyValue;

    fn put(key: &str, rev: i64, prev: Option<i64>) -> Event {
        let kv = |rev| KeyValue {
            key: key.as_bytes().to_vec(),
            mod_revision: rev,
            value: vec![rev as u8],
            ..KeyValue::default()
        };
        Event {
            kind: EventKind::Put,
            kv: kv(rev),
            prev_kv: prev.map(kv),
        }
    }

    fn history() -> History {
        let mut h = History::default();
        h.on_applied(1, vec![put("a", 2, None), put("b", 3, None)])
            .unwrap();
        h.on_applied(1, vec![put("a", 4, Some(2)), put("c", 4, None)])
            .unwrap();
        h.on_applied(1, vec![put("b", 5, Some(3))]).unwrap();
        h
    }

    fn all() -> WatchSpec {
        WatchSpec {
            key: vec![0],
            range_end: vec![0],
            no_put: false,
            no_delete: false,
            prev_kv: true,
        }
    }

    fn read(h: &History, w: &mut WatchProgress, events: &[Event], next_rev: i64) -> Check {
        h.check_read(w, Read::Events { events, next_rev }, 0)
    }

    fn property(c: Check) -> &'static str {
        c.unwrap_err().property
    }

    #[test]
    fn a_faithful_stream_passes_in_batches_and_after_a_resume() {
        let h = history();
        let mut w = WatchProgress::new(all(), 2);
        read(&h, &mut w, &[put("a", 2, None), put("b", 3, None)], 4).unwrap();
        read(&h, &mut w, &[put("a", 4, Some(2)), put("c", 4, None)], 5).unwrap();
        read(&h, &mut w, &[], 5).unwrap();
        read(&h, &mut w, &[put("b", 5, Some(3))], 6).unwrap();
        assert_eq!((w.next, w.delivered), (6, 5));
        // A member behind the watch: nothing, and no progress lost.
        read(&h, &mut w, &[], 6).unwrap();
    }

    #[test]
    fn each_watch_guarantee_has_its_checker() {
        let h = history();
        let mut w = WatchProgress::new(all(), 2);
        // A gap: revision 3 skipped.
        assert_eq!(
            property(read(&h, &mut w, &[put("a", 2, None)], 4)),
            "watch-reliable"
        );
        let mut w = WatchProgress::new(all(), 2);
        read(&h, &mut w, &[put("a", 2, None)], 3).unwrap();
        // Delivered again from an earlier progress: a duplicate.
        w.next = 2;
        assert_eq!(
            property(read(&h, &mut w, &[put("a", 2, None)], 3)),
            "watch-unique"
        );
        // Half a revision.
        let mut w = WatchProgress::new(all(), 4);
        assert_eq!(
            property(read(&h, &mut w, &[put("a", 4, Some(2))], 5)),
            "watch-atomic"
        );
        // Key order within a revision.
        let mut w = WatchProgress::new(all(), 4);
        let swapped = [put("c", 4, None), put("a", 4, Some(2))];
        assert_eq!(property(read(&h, &mut w, &swapped, 5)), "watch-ordered");
        // A wrong previous value.
        let mut w = WatchProgress::new(all(), 5);
        assert_eq!(
            property(read(&h, &mut w, &[put("b", 5, Some(2))], 6)),
            "watch-prev-kv"
        );
        // Filters: a single key; no puts; prev_kv not asked for.
        let only_a = WatchSpec {
            key: b"a".to_vec(),
            range_end: Vec::new(),
            ..all()
        };
        let mut w = WatchProgress::new(only_a.clone(), 3);
        assert_eq!(
            property(read(&h, &mut w, &[put("b", 3, None)], 4)),
            "watch-filter"
        );
        let mut w = WatchProgress::new(only_a.clone(), 3);
        read(&h, &mut w, &[], 4).unwrap();
        let no_prev = WatchSpec {
            prev_kv: false,
            ..only_a
        };
        let mut w = WatchProgress::new(no_prev, 4);
        assert_eq!(
            property(read(&h, &mut w, &[put("a", 4, Some(2))], 5)),
            "watch-filter"
        );
        // A revision that is not in the committed history.
        let mut w = WatchProgress::new(all(), 6);
        assert_eq!(property(read(&h, &mut w, &[], 7)), "watch-history");
    }

    #[test]
    fn a_compacted_start_must_be_refused_and_only_then() {
        let h = history();
        let mut w = WatchProgress::new(all(), 2);
        h.check_read(&mut w, Read::Compacted, 3).unwrap();
        // From the compact revision itself a watch is served (as etcd serves it).
        for start in [3, 4] {
            let mut w = WatchProgress::new(all(), start);
            assert_eq!(
                property(h.check_read(&mut w, Read::Compacted, 3)),
                "watch-compacted",
                "start {start}"
            );
        }
        // Served from the oldest kept revision instead: the gap shows first.
        let mut w = WatchProgress::new(all(), 2);
        let later = [put("a", 4, Some(2)), put("c", 4, None)];
        let served = h.check_read(
            &mut w,
            Read::Events {
                events: &later,
                next_rev: 5,
            },
            3,
        );
        assert_eq!(property(served), "watch-reliable");
        // With nothing in the skipped range, the refusal checker still sees it.
        let only_c = WatchSpec {
            key: b"c".to_vec(),
            range_end: Vec::new(),
            ..all()
        };
        let mut w = WatchProgress::new(only_c, 2);
        let served = h.check_read(
            &mut w,
            Read::Events {
                events: &later[1..],
                next_rev: 5,
            },
            3,
        );
        assert_eq!(property(served), "watch-compacted");
    }

    #[test]
    fn members_that_disagree_on_a_revision_are_caught() {
        let mut h = history();
        h.on_applied(2, vec![put("b", 5, Some(3))]).unwrap();
        let v = h.on_applied(3, vec![put("c", 5, None)]).unwrap_err();
        assert_eq!(v.property, "watch-history");
    }
}
