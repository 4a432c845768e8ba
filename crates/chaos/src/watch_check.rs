//! The watch checker: each watch client's recorded streams against the authoritative
//! history (a watch from revision 1 on the leader after healing, same key range).
//!
//! - ordered: event revisions never go back, on a stream and across its reconnects;
//! - unique: no event (revision, key) is delivered twice;
//! - atomic: all events of one revision come in one response (or one chain of
//!   fragments);
//! - reliable: from the first start revision to the last revision the watcher saw,
//!   exactly the history's events, none missing — across reconnects too;
//! - `prev_kv` (and the event itself) as in the history;
//! - resumable: every stream after the first starts exactly at the revision after the
//!   last one delivered, and delivers nothing before its start.

use super::watch::{Entry, WatchLog};
use etcdpb::mvccpb;
use std::collections::{BTreeMap, BTreeSet};

/// Most violation lines kept per watcher (the count is always exact).
const MAX_LINES: usize = 20;

/// The checker's findings.
#[derive(Debug, Default)]
pub struct WatchFigures {
    pub streams: usize,
    pub reconnects: usize,
    /// Events delivered and compared with the history.
    pub events: usize,
    /// Every violation found.
    pub violations: usize,
    /// Their descriptions (at most [`MAX_LINES`] per watcher).
    pub lines: Vec<String>,
}

/// The history's events by (revision, key).
type History<'a> = BTreeMap<(i64, &'a [u8]), &'a mvccpb::Event>;

fn rev_of(e: &mvccpb::Event) -> i64 {
    e.kv.as_ref().map_or(0, |kv| kv.mod_revision)
}

fn key_of(e: &mvccpb::Event) -> &[u8] {
    e.kv.as_ref().map_or(&[][..], |kv| kv.key.as_slice())
}

/// What one watcher's check keeps while it walks the entries.
#[derive(Default)]
struct Walk {
    first_start: Option<i64>,
    /// The start of the current stream.
    start: i64,
    last_rev: i64,
    /// The response chain (a response and the fragments continuing it) of each
    /// delivered revision.
    chain_of_rev: BTreeMap<i64, usize>,
    chain: usize,
    continues: bool,
    seen: BTreeSet<(i64, Vec<u8>)>,
    events: usize,
    bad: Vec<String>,
}

impl Walk {
    fn on_start(&mut self, start_rev: i64) {
        match self.first_start {
            None => self.first_start = Some(start_rev),
            Some(_) => {
                let owed = self.start.max(self.last_rev + 1);
                if start_rev != owed {
                    self.bad.push(format!(
                        "not resumable: a stream restarted at revision {start_rev}, but revision {owed} was owed next"
                    ));
                }
            }
        }
        self.start = start_rev;
        self.continues = false;
    }

    fn on_response(
        &mut self,
        header_rev: i64,
        fragment: bool,
        events: &[mvccpb::Event],
        hist: &History<'_>,
    ) {
        if !self.continues {
            self.chain += 1;
        }
        self.continues = fragment;
        for e in events {
            self.on_event(e, hist);
            if rev_of(e) > header_rev {
                self.bad.push(format!(
                    "header: a response with header revision {header_rev} carries an event of revision {}",
                    rev_of(e)
                ));
            }
        }
    }

    fn on_event(&mut self, e: &mvccpb::Event, hist: &History<'_>) {
        let (rev, key) = (rev_of(e), key_of(e));
        let name = format!("revision {rev} key {:?}", String::from_utf8_lossy(key));
        self.events += 1;
        if rev < self.start {
            self.bad.push(format!(
                "not resumable: {name} delivered on a stream started at revision {}",
                self.start
            ));
        }
        if rev < self.last_rev {
            self.bad.push(format!(
                "out of order: {name} after revision {}",
                self.last_rev
            ));
        }
        self.last_rev = self.last_rev.max(rev);
        if *self.chain_of_rev.entry(rev).or_insert(self.chain) != self.chain {
            self.bad
                .push(format!("not atomic: revision {rev} split over responses"));
        }
        if !self.seen.insert((rev, key.to_vec())) {
            self.bad.push(format!("duplicate: {name} delivered twice"));
        }
        match hist.get(&(rev, key)) {
            None => self
                .bad
                .push(format!("phantom: {name} is not in the history")),
            Some(a) if a.kv != e.kv || a.r#type != e.r#type => self
                .bad
                .push(format!("wrong event: {name} differs from the history")),
            Some(a) if a.prev_kv != e.prev_kv => self.bad.push(format!(
                "wrong prev_kv: {name} has prev {:?}, the history {:?}",
                e.prev_kv.as_ref().map(|p| p.mod_revision),
                a.prev_kv.as_ref().map(|p| p.mod_revision)
            )),
            Some(_) => {}
        }
    }

    /// Reliable: every history event from the first start through the last revision
    /// seen was delivered.
    fn gaps(&mut self, hist: &History<'_>) {
        let Some(first) = self.first_start else {
            return;
        };
        let mut missing: Vec<i64> = hist
            .range((first, &[][..])..)
            .filter(|((rev, key), _)| {
                *rev <= self.last_rev && !self.seen.contains(&(*rev, key.to_vec()))
            })
            .map(|((rev, _), _)| *rev)
            .collect();
        missing.dedup();
        if let (Some(lo), Some(hi)) = (missing.first(), missing.last()) {
            self.bad.push(format!(
                "gap: events of {} revisions between {lo} and {hi} never delivered (watched {first}..={})",
                missing.len(),
                self.last_rev
            ));
        }
    }
}

/// Checks every watcher's log against `history` (every event from revision 1).
pub fn check(logs: &[WatchLog], history: &[mvccpb::Event]) -> WatchFigures {
    let hist: History<'_> = history
        .iter()
        .map(|e| ((rev_of(e), key_of(e)), e))
        .collect();
    let mut f = WatchFigures::default();
    for log in logs {
        let mut w = Walk::default();
        for entry in &log.entries {
            match entry {
                Entry::Start { start_rev, .. } => w.on_start(*start_rev),
                Entry::Response {
                    header_rev,
                    fragment,
                    events,
                    ..
                } => w.on_response(*header_rev, *fragment, events, &hist),
                Entry::End { .. } => {}
            }
        }
        w.gaps(&hist);
        f.streams += 1;
        f.reconnects += log.reconnects();
        f.events += w.events;
        f.violations += w.bad.len();
        let extra = w.bad.len().saturating_sub(MAX_LINES);
        f.lines.extend(
            w.bad
                .into_iter()
                .take(MAX_LINES)
                .map(|b| format!("watch {}: {b}", log.id)),
        );
        if extra > 0 {
            f.lines
                .push(format!("watch {}: … and {extra} more", log.id));
        }
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;
    use mvccpb::event::EventType;

    fn kv(key: &str, rev: i64, value: &str) -> mvccpb::KeyValue {
        mvccpb::KeyValue {
            key: key.as_bytes().to_vec(),
            create_revision: 2,
            mod_revision: rev,
            version: rev - 1,
            value: value.as_bytes().to_vec(),
            lease: 0,
        }
    }

    fn put(key: &str, rev: i64, prev: Option<i64>) -> mvccpb::Event {
        mvccpb::Event {
            r#type: EventType::Put as i32,
            kv: Some(kv(key, rev, &format!("v{rev}"))),
            prev_kv: prev.map(|p| kv(key, p, &format!("v{p}"))),
        }
    }

    /// Revisions 2..=7: a put of `a` each; revision 5 also puts `b` (a txn).
    fn history() -> Vec<mvccpb::Event> {
        let mut h = Vec::new();
        for rev in 2..=7 {
            h.push(put("a", rev, (rev > 2).then_some(rev - 1)));
            if rev == 5 {
                h.push(put("b", 5, None));
            }
        }
        h
    }

    fn resp(events: Vec<mvccpb::Event>) -> Entry {
        let header_rev = events.iter().map(rev_of).max().unwrap_or(0);
        Entry::Response {
            at_us: 0,
            header_rev,
            fragment: false,
            events,
        }
    }

    fn start(start_rev: i64) -> Entry {
        Entry::Start {
            at_us: 0,
            member: 0,
            requested: start_rev,
            start_rev,
        }
    }

    fn of_revs(h: &[mvccpb::Event], revs: std::ops::RangeInclusive<i64>) -> Vec<mvccpb::Event> {
        h.iter()
            .filter(|e| revs.contains(&rev_of(e)))
            .cloned()
            .collect()
    }

    fn log(entries: Vec<Entry>) -> WatchLog {
        WatchLog {
            entries,
            ..Default::default()
        }
    }

    /// A watcher from 3 with one reconnect after revision 4, one response a revision.
    fn good(h: &[mvccpb::Event]) -> Vec<Entry> {
        let mut e = vec![start(3)];
        e.extend((3..=4).map(|r| resp(of_revs(h, r..=r))));
        e.push(Entry::End {
            at_us: 0,
            why: "killed".into(),
        });
        e.push(start(5));
        e.extend((5..=7).map(|r| resp(of_revs(h, r..=r))));
        e
    }

    fn violations(entries: Vec<Entry>) -> Vec<String> {
        let f = check(&[log(entries)], &history());
        assert_eq!(f.violations, f.lines.len());
        f.lines
    }

    #[test]
    fn a_faithful_stream_with_a_reconnect_passes() {
        let h = history();
        let f = check(&[log(good(&h))], &h);
        assert_eq!(f.violations, 0, "{:?}", f.lines);
        assert_eq!((f.streams, f.reconnects, f.events), (1, 1, 6));
        // A watcher that stopped early is checked only as far as it got.
        let mut short = good(&h);
        short.truncate(5);
        assert!(violations(short).is_empty());
    }

    #[test]
    fn a_gap_across_a_reconnect_is_caught() {
        let h = history();
        let mut e = good(&h);
        // The stream restarts at 6 and says so: revision 5 is never delivered.
        e.retain(|x| !matches!(x, Entry::Response { header_rev: 5, .. }));
        e[4] = start(6);
        let v = violations(e);
        assert!(v.iter().any(|l| l.contains("not resumable")), "{v:?}");
        assert!(
            v.iter()
                .any(|l| l.contains("gap") && l.contains("between 5 and 5")),
            "{v:?}"
        );
        // A stream that silently skips revision 5 (no reconnect at all).
        let mut e = good(&h);
        e.retain(|x| !matches!(x, Entry::Response { header_rev: 5, .. }));
        let v = violations(e);
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(v[0].contains("gap"), "{v:?}");
    }

    #[test]
    fn a_duplicate_and_a_reordering_are_caught() {
        let h = history();
        let mut e = good(&h);
        e.push(resp(of_revs(&h, 7..=7)));
        let v = violations(e);
        assert!(v.iter().any(|l| l.contains("duplicate")), "{v:?}");
        let mut e = good(&h);
        e.swap(6, 7);
        let v = violations(e);
        assert!(v.iter().any(|l| l.contains("out of order")), "{v:?}");
        // A resume that starts one revision early repeats an event.
        let mut e = good(&h);
        e[4] = start(4);
        e.insert(5, resp(of_revs(&h, 4..=4)));
        let v = violations(e);
        assert!(v.iter().any(|l| l.contains("duplicate")), "{v:?}");
        assert!(v.iter().any(|l| l.contains("not resumable")), "{v:?}");
    }

    #[test]
    fn a_split_revision_is_caught_unless_fragmented() {
        let h = history();
        let five = of_revs(&h, 5..=5);
        let mut e = good(&h);
        let at = e
            .iter()
            .position(|x| matches!(x, Entry::Response { header_rev: 5, .. }))
            .unwrap();
        e[at] = resp(vec![five[0].clone()]);
        e.insert(at + 1, resp(vec![five[1].clone()]));
        let v = violations(e.clone());
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(v[0].contains("not atomic: revision 5"), "{v:?}");
        if let Entry::Response { fragment, .. } = &mut e[at] {
            *fragment = true;
        }
        assert!(violations(e).is_empty());
    }

    #[test]
    fn a_wrong_prev_kv_and_a_phantom_are_caught() {
        let h = history();
        let mut e = good(&h);
        if let Entry::Response { events, .. } = &mut e[2] {
            events[0].prev_kv = None;
        }
        let v = violations(e);
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(
            v[0].contains("wrong prev_kv") && v[0].contains("revision 4"),
            "{v:?}"
        );
        let mut e = good(&h);
        e.push(resp(vec![put("c", 7, None)]));
        let v = violations(e);
        assert!(v.iter().any(|l| l.contains("phantom")), "{v:?}");
    }
}
