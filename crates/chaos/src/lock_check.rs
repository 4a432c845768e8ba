//! The lock checker: every acknowledged counter write against the authoritative
//! history. The owner of the lock at revision r is the key with the lowest create
//! revision among those existing under `chaos-lock/` at r (etcd's mutex recipe); a
//! write acknowledged at r by a client whose lock key is not that owner was made
//! outside the lock. Lost increments on a counter: the puts the history holds for it
//! less its final value (each put meant to add one).

use super::lock::{Fence, LockLog, LockWrite, Outcome, FENCED, NAME, UNFENCED};
use etcdpb::mvccpb;
use std::collections::BTreeMap;

/// Most violation lines kept (the counts are always exact).
const MAX_LINES: usize = 20;

/// One counter's figures.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counter {
    /// Acknowledged writes.
    pub acked: usize,
    /// Acknowledged writes made outside the lock.
    pub outside: usize,
    /// Writes the fence refused.
    pub refused: usize,
    /// Puts in the history less the final value.
    pub lost: i64,
}

/// The checker's findings.
#[derive(Debug, Default)]
pub struct LockFigures {
    pub unfenced: Counter,
    pub fenced: Counter,
    pub acquisitions: u64,
    pub pauses: u64,
    /// Acknowledged writes the history does not hold.
    pub missing: usize,
    /// Fenced writes outside the lock and missing writes (failures).
    pub lines: Vec<String>,
    /// Some unfenced writes outside the lock (the expected demonstration).
    pub examples: Vec<String>,
}

impl LockFigures {
    /// Failures: a fenced write outside the lock, or an acknowledged write lost.
    pub fn violations(&self) -> usize {
        self.fenced.outside + self.missing
    }

    /// The summary line.
    pub fn line(&self) -> String {
        format!(
            "lock: unfenced writes outside the lock {} of {} (lost increments {}); fenced writes outside the lock {} of {} (refused by the fence {}, lost increments {}); {} acquisitions, {} pauses",
            self.unfenced.outside,
            self.unfenced.acked,
            self.unfenced.lost,
            self.fenced.outside,
            self.fenced.acked,
            self.fenced.refused,
            self.fenced.lost,
            self.acquisitions,
            self.pauses
        )
    }
}

fn kv(e: &mvccpb::Event) -> Option<&mvccpb::KeyValue> {
    e.kv.as_ref()
}

fn is_delete(e: &mvccpb::Event) -> bool {
    e.r#type == mvccpb::event::EventType::Delete as i32
}

/// Puts in the history for `key` less its final value.
fn lost_increments(history: &[mvccpb::Event], key: &str) -> i64 {
    let puts: Vec<&mvccpb::KeyValue> = history
        .iter()
        .filter(|e| !is_delete(e))
        .filter_map(kv)
        .filter(|kv| kv.key == key.as_bytes())
        .collect();
    let last = puts.last().map_or(0, |kv| {
        String::from_utf8_lossy(&kv.value)
            .parse::<i64>()
            .unwrap_or(0)
    });
    puts.len() as i64 - last
}

/// The lock keys existing as the history is replayed, in revision order.
struct Holders<'a> {
    history: &'a [mvccpb::Event],
    next: usize,
    prefix: Vec<u8>,
    /// Key → create revision.
    keys: BTreeMap<Vec<u8>, i64>,
}

impl Holders<'_> {
    /// Applies every event through revision `r`; the owner then.
    fn owner_at(&mut self, r: i64) -> Option<&[u8]> {
        while let Some(e) = self.history.get(self.next) {
            let Some(kv) = kv(e) else {
                self.next += 1;
                continue;
            };
            if kv.mod_revision > r {
                break;
            }
            if kv.key.starts_with(&self.prefix) {
                if is_delete(e) {
                    self.keys.remove(&kv.key);
                } else {
                    self.keys.insert(kv.key.clone(), kv.create_revision);
                }
            }
            self.next += 1;
        }
        self.keys
            .iter()
            .min_by_key(|(_, c)| **c)
            .map(|(k, _)| k.as_slice())
    }
}

/// Checks every write of `log` against `history` (every event from revision 1, in
/// revision order).
pub fn check(log: &LockLog, history: &[mvccpb::Event]) -> LockFigures {
    let mut f = LockFigures {
        acquisitions: log.acquisitions,
        pauses: log.pauses,
        ..Default::default()
    };
    f.unfenced.lost = lost_increments(history, UNFENCED);
    f.fenced.lost = lost_increments(history, FENCED);
    let by_rev_key: BTreeMap<(i64, &[u8]), &mvccpb::KeyValue> = history
        .iter()
        .filter_map(kv)
        .map(|kv| ((kv.mod_revision, kv.key.as_slice()), kv))
        .collect();
    let mut acked: Vec<(i64, &LockWrite)> = Vec::new();
    for w in &log.writes {
        let c = counter(&mut f, w.fence);
        match w.outcome {
            Outcome::Acked(r) => {
                c.acked += 1;
                acked.push((r, w));
            }
            Outcome::Refused => c.refused += 1,
            Outcome::Unknown => {}
        }
    }
    acked.sort_by_key(|(r, _)| *r);
    let mut holders = Holders {
        history,
        next: 0,
        prefix: format!("{NAME}/").into_bytes(),
        keys: BTreeMap::new(),
    };
    for (r, w) in acked {
        let key = match w.fence {
            Fence::Unfenced => UNFENCED,
            Fence::Fenced => FENCED,
        };
        let held = by_rev_key.get(&(r, key.as_bytes()));
        if held.is_none_or(|kv| kv.value != w.value.to_string().as_bytes()) {
            f.missing += 1;
            f.lines.push(format!(
                "lock: client {}'s write of {key} = {} acknowledged at revision {r} is not in the history",
                w.client, w.value
            ));
        }
        let owner = holders
            .owner_at(r)
            .map(|o| String::from_utf8_lossy(o).to_string());
        if owner.as_deref() == Some(w.lock_key.as_str()) {
            continue;
        }
        counter(&mut f, w.fence).outside += 1;
        let line = format!(
            "lock: client {} wrote {key} = {} at revision {r} holding {} (created at {}{}), but the owner then was {}",
            w.client,
            w.value,
            w.lock_key,
            w.rk,
            if w.after_pause { ", after a pause" } else { "" },
            owner.unwrap_or_else(|| "nobody".into())
        );
        match w.fence {
            Fence::Fenced => f.lines.push(line),
            Fence::Unfenced => f.examples.push(line),
        }
    }
    f.lines.truncate(MAX_LINES);
    f.examples.truncate(MAX_LINES);
    f
}

fn counter(f: &mut LockFigures, fence: Fence) -> &mut Counter {
    match fence {
        Fence::Unfenced => &mut f.unfenced,
        Fence::Fenced => &mut f.fenced,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mvccpb::event::EventType;

    fn ev(kind: EventType, key: &str, rev: i64, create: i64, value: &str) -> mvccpb::Event {
        mvccpb::Event {
            r#type: kind as i32,
            kv: Some(mvccpb::KeyValue {
                key: key.as_bytes().to_vec(),
                create_revision: create,
                mod_revision: rev,
                value: value.as_bytes().to_vec(),
                ..Default::default()
            }),
            prev_kv: None,
        }
    }

    /// Client 1 holds chaos-lock/a (created at 2) and writes both counters at 3 and
    /// 4; client 2 queues as chaos-lock/b (5); a expires at 6 (client 1 was paused);
    /// b writes at 7 and 8; the paused client 1 then writes the unfenced counter from
    /// its stale read (value 1 again) at 9, and its fenced write is refused.
    fn scenario() -> (LockLog, Vec<mvccpb::Event>) {
        use EventType::{Delete, Put};
        let history = vec![
            ev(Put, "chaos-lock/a", 2, 2, ""),
            ev(Put, UNFENCED, 3, 3, "1"),
            ev(Put, FENCED, 4, 4, "1"),
            ev(Put, "chaos-lock/b", 5, 5, ""),
            ev(Delete, "chaos-lock/a", 6, 0, ""),
            ev(Put, UNFENCED, 7, 3, "2"),
            ev(Put, FENCED, 8, 4, "2"),
            ev(Put, UNFENCED, 9, 3, "2"),
        ];
        let w = |client, lock_key: &str, rk, fence, value, outcome, after_pause| LockWrite {
            client,
            lock_key: lock_key.into(),
            rk,
            fence,
            value,
            call_us: 0,
            outcome,
            after_pause,
        };
        let log = LockLog {
            writes: vec![
                w(
                    1,
                    "chaos-lock/a",
                    2,
                    Fence::Unfenced,
                    1,
                    Outcome::Acked(3),
                    false,
                ),
                w(
                    1,
                    "chaos-lock/a",
                    2,
                    Fence::Fenced,
                    1,
                    Outcome::Acked(4),
                    false,
                ),
                w(
                    2,
                    "chaos-lock/b",
                    5,
                    Fence::Unfenced,
                    2,
                    Outcome::Acked(7),
                    false,
                ),
                w(
                    2,
                    "chaos-lock/b",
                    5,
                    Fence::Fenced,
                    2,
                    Outcome::Acked(8),
                    false,
                ),
                w(
                    1,
                    "chaos-lock/a",
                    2,
                    Fence::Unfenced,
                    2,
                    Outcome::Acked(9),
                    true,
                ),
                w(
                    1,
                    "chaos-lock/a",
                    2,
                    Fence::Fenced,
                    2,
                    Outcome::Refused,
                    true,
                ),
            ],
            acquisitions: 2,
            pauses: 1,
        };
        (log, history)
    }

    #[test]
    fn an_unfenced_write_after_a_pause_is_counted_and_the_fenced_one_is_refused() {
        let (log, history) = scenario();
        let f = check(&log, &history);
        assert_eq!(f.violations(), 0, "{:?}", f.lines);
        let unfenced = Counter {
            acked: 3,
            outside: 1,
            refused: 0,
            lost: 1,
        };
        let fenced = Counter {
            acked: 2,
            outside: 0,
            refused: 1,
            lost: 0,
        };
        assert_eq!((f.unfenced, f.fenced), (unfenced, fenced));
        assert!(
            f.examples[0].contains("after a pause")
                && f.examples[0].contains("owner then was chaos-lock/b"),
            "{:?}",
            f.examples
        );
        assert!(
            f.line()
                .contains("unfenced writes outside the lock 1 of 3 (lost increments 1)"),
            "{}",
            f.line()
        );
    }

    #[test]
    fn a_fenced_write_outside_the_lock_fails_the_check() {
        let (mut log, mut history) = scenario();
        // A broken fence: the paused client's fenced write went through at 10.
        history.push(ev(EventType::Put, FENCED, 10, 4, "2"));
        log.writes[5].outcome = Outcome::Acked(10);
        let f = check(&log, &history);
        assert_eq!(f.fenced.outside, 1);
        assert_eq!(f.violations(), 1);
        assert!(
            f.lines[0].contains("wrote lockctr-fenced = 2 at revision 10"),
            "{:?}",
            f.lines
        );
        // A write by a client still waiting in line (b exists, but a is older) is
        // outside too.
        let (mut log, mut history) = scenario();
        history.insert(4, ev(EventType::Put, FENCED, 5, 4, "2"));
        log.writes[3].outcome = Outcome::Acked(5);
        let f = check(&log, &history);
        assert_eq!(f.fenced.outside, 1, "{:?}", f.lines);
        assert!(
            f.lines[0].contains("owner then was chaos-lock/a"),
            "{:?}",
            f.lines
        );
    }

    #[test]
    fn an_acknowledged_write_missing_from_the_history_fails_the_check() {
        let (log, mut history) = scenario();
        history.retain(|e| e.kv.as_ref().unwrap().mod_revision != 8);
        let f = check(&log, &history);
        assert_eq!(f.missing, 1, "{:?}", f.lines);
        assert_eq!(f.violations(), 1);
    }
}
