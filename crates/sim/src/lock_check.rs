//! The lock checkers, engine-agnostic: the lock clients' writes and what they learnt
//! (acknowledgements, acquisitions) against the committed history, the events of each
//! revision as the first member applied it. The queue is rebuilt from that history: the
//! keys under [`LOCK_PREFIX`] by create revision; the owner at a revision is the key
//! with the lowest create revision just before it.
//!
//! - Mutual exclusion for fenced writes: every fenced write in the history happened at
//!   a revision where its writer's key was the owner.
//! - No fenced write lost or doubled: a write acknowledged as done is in the history
//!   (when the acknowledgement arrives, since the member that answers applied it), one
//!   acknowledged as refused never is, and no write is there twice.
//! - Liveness of the handover: once a key becomes the owner in the history (its
//!   predecessor's key was deleted — released, revoked or expired —, or it was created
//!   into an empty queue) at `t`, its client, if still waiting for it, learns that it
//!   holds the lock by `t + HANDOVER + stalled + promotions * PER_PROMOTION + lost`:
//!   `stalled` and `promotions` as in the lease liveness bound (`lease_check`), `lost`
//!   the client's own time since `t` spent on attempts that went nowhere (sent to a
//!   member that was down, cut off or not the leader, and retried). A key whose
//!   client went quiet (paused, or stuck) is the lease liveness checker's: it must
//!   expire within that bound, and then the next key's handover starts.
//!
//! Unfenced writes by a client that was not the owner at their revision are counted,
//! not failed: a lease-based lock cannot prevent them (a client paused past its lease
//! still believes it holds the lock), which is why the fenced write exists.

use crate::invariants::{violated, Check};
use crate::kv::{LOCK_DATA, LOCK_PREFIX};
use kv::{Event, EventKind};
use std::collections::BTreeMap;

/// How the handover bound is stated, in simulated microseconds.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LockBounds {
    /// A waiter's polling period (at most `POLL_MAX`), one operation in flight before
    /// the poll (a keep-alive) and the poll itself, each committed within the lease
    /// liveness allowance of 50 ticks: `POLL_MAX + 2 * 50` ticks.
    pub(crate) handover_us: u64,
    /// What one change of leader may add (the lease checker's figure: it covers the
    /// election and the first commit of the new term).
    pub(crate) per_promotion_us: u64,
}

/// The cluster's stall counters at a moment (from the lease checker's samples).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Now {
    pub(crate) at_us: u64,
    pub(crate) stalled_us: u64,
    pub(crate) promotions: u64,
}

/// One write to the lock's data key, as its client sent it and the history shows it.
#[derive(Clone, Copy, Debug)]
struct Write {
    client: usize,
    lease: i64,
    /// The create revision of the writer's key as the writer knew it (its fencing
    /// token, which a fenced write compares).
    rev: i64,
    fenced: bool,
    /// The revision it was applied at (first application).
    applied: Option<i64>,
    /// What the client was told: done or refused.
    acked: Option<bool>,
}

/// A key that became the owner and whose client has not learnt it yet.
#[derive(Clone, Copy, Debug)]
struct Handover {
    lease: i64,
    client: usize,
    since: Now,
    /// The client's lost time then.
    lost_us: u64,
}

/// What the lock checkers counted, for the run's report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct LockStats {
    /// Times a client learnt that it holds the lock.
    pub(crate) acquired: u64,
    /// Fenced writes in the history.
    pub(crate) fenced: u64,
    /// Fenced writes refused (the writer's key was gone).
    pub(crate) fenced_refused: u64,
    /// Unfenced writes in the history.
    pub(crate) unfenced: u64,
    /// Unfenced writes in the history by a client that was not the owner then.
    pub(crate) unfenced_non_owner: u64,
    /// The longest handover, microseconds.
    pub(crate) max_handover_us: u64,
    /// The longest handover less what the bound allows for stalls, elections and the
    /// client's lost attempts: what the bound's fixed part must cover.
    pub(crate) max_handover_net_us: u64,
}

/// The lock checkers' state.
#[derive(Debug)]
pub(crate) struct LockChecker {
    bounds: LockBounds,
    /// The queue in the history: create revision → lease (a lease may enter again
    /// after releasing: each entry is a new key with a new create revision).
    queue: BTreeMap<i64, i64>,
    /// Which client each lease belongs to.
    clients: BTreeMap<i64, usize>,
    writes: BTreeMap<u64, Write>,
    handover: Option<Handover>,
    pub(crate) stats: LockStats,
}

/// The lease of a contender key `lock/LEASE`.
fn lease_of_key(key: &[u8]) -> Option<i64> {
    let hex = std::str::from_utf8(key.strip_prefix(LOCK_PREFIX)?).ok()?;
    i64::from_str_radix(hex, 16).ok()
}

impl LockChecker {
    pub(crate) fn new(bounds: LockBounds) -> LockChecker {
        LockChecker {
            bounds,
            queue: BTreeMap::new(),
            clients: BTreeMap::new(),
            writes: BTreeMap::new(),
            handover: None,
            stats: LockStats::default(),
        }
    }

    /// The owner's key in the history now: (create revision, lease); (0, 0): nobody.
    fn owner(&self) -> (i64, i64) {
        self.queue
            .first_key_value()
            .map_or((0, 0), |(rev, lease)| (*rev, *lease))
    }

    /// Client `client` was granted `lease` (before it enters the queue with it).
    pub(crate) fn on_granted(&mut self, lease: i64, client: usize) {
        self.clients.insert(lease, client);
    }

    /// Client `client` sends write `value` while holding the key of `lease` created at
    /// `rev`, fenced or not.
    pub(crate) fn on_write_sent(
        &mut self,
        value: u64,
        client: usize,
        key: (i64, i64),
        fenced: bool,
    ) {
        let (lease, rev) = key;
        let w = Write {
            client,
            lease,
            rev,
            fenced,
            applied: None,
            acked: None,
        };
        self.writes.insert(value, w);
    }

    /// The history grew by `events` (whole revisions, in order), first applied at
    /// `now`; `lost` is every client's lost time so far.
    pub(crate) fn on_events(&mut self, events: &[Event], now: Now, lost: &[u64]) -> Check {
        let before = self.owner();
        for e in events {
            if e.kv.key == LOCK_DATA && e.kind == EventKind::Put {
                self.on_data_write(e)?;
            } else if let Some(lease) = lease_of_key(&e.kv.key) {
                match e.kind {
                    EventKind::Put if e.kv.create_revision == e.kv.mod_revision => {
                        self.queue.insert(e.kv.create_revision, lease);
                    }
                    EventKind::Put => {}
                    EventKind::Delete => {
                        let created = e.prev_kv.as_ref().map_or(0, |p| p.create_revision);
                        self.queue.remove(&created);
                    }
                }
            }
        }
        let after = self.owner();
        if after != before {
            self.handover = self.clients.get(&after.1).map(|&client| Handover {
                lease: after.1,
                client,
                since: now,
                lost_us: lost.get(client).copied().unwrap_or(0),
            });
        }
        Ok(())
    }

    /// A put of the lock's data key: judged against the owner before its revision
    /// (no lock key changes at the revision of a data write: one request each).
    fn on_data_write(&mut self, e: &Event) -> Check {
        let rev = e.kv.mod_revision;
        let value = e.kv.value.as_slice().try_into().map(u64::from_le_bytes);
        let owner = self.owner();
        let Some(w) = value.ok().and_then(|v| self.writes.get_mut(&v)) else {
            return violated(
                "lock-write-unknown",
                format!("revision {rev} puts a value no lock client wrote"),
            );
        };
        let what = describe(w, value.unwrap_or(0));
        if let Some(first) = w.applied {
            return violated(
                "lock-write-doubled",
                format!("{what} applied at revision {first} and again at {rev}"),
            );
        }
        w.applied = Some(rev);
        if w.acked == Some(false) {
            return violated(
                "lock-write-lost",
                format!("{what} was answered as refused but applied at revision {rev}"),
            );
        }
        match (w.fenced, (w.rev, w.lease) == owner) {
            (true, true) => self.stats.fenced += 1,
            (true, false) => {
                return violated(
                    "lock-mutual-exclusion",
                    format!(
                        "{what} applied at revision {rev}, when the owner was {}",
                        owner_name(owner)
                    ),
                )
            }
            (false, owned) => {
                self.stats.unfenced += 1;
                self.stats.unfenced_non_owner += u64::from(!owned);
            }
        }
        Ok(())
    }

    /// The client was told whether write `value` was done.
    pub(crate) fn on_write_acked(&mut self, value: u64, done: bool) -> Check {
        let Some(w) = self.writes.get_mut(&value) else {
            return Ok(());
        };
        w.acked = Some(done);
        let what = describe(w, value);
        match (done, w.applied) {
            (true, None) => violated(
                "lock-write-lost",
                format!("{what} was answered as done but is not in the history"),
            ),
            (false, Some(rev)) => violated(
                "lock-write-lost",
                format!("{what} was answered as refused but applied at revision {rev}"),
            ),
            (false, None) => {
                self.stats.fenced_refused += 1;
                Ok(())
            }
            (true, Some(_)) => Ok(()),
        }
    }

    /// The client of `lease` learnt that it holds the lock.
    pub(crate) fn on_acquired(&mut self, lease: i64, now: Now, lost: &[u64]) {
        self.stats.acquired += 1;
        let Some(h) = self.handover.filter(|h| h.lease == lease) else {
            return;
        };
        let took = now.at_us - h.since.at_us;
        let allowed = self.allowance(&h, now, lost);
        let s = &mut self.stats;
        s.max_handover_us = s.max_handover_us.max(took);
        s.max_handover_net_us = s.max_handover_net_us.max(took.saturating_sub(allowed));
        self.handover = None;
    }

    /// What the bound allows handover `h` at `now` besides its fixed part: stalls,
    /// elections and the client's lost attempts since it started.
    fn allowance(&self, h: &Handover, now: Now, lost: &[u64]) -> u64 {
        let lost_since = lost.get(h.client).copied().unwrap_or(0) - h.lost_us;
        (now.stalled_us - h.since.stalled_us)
            + (now.promotions - h.since.promotions) * self.bounds.per_promotion_us
            + lost_since
    }

    /// The client of `lease` gave it up (it learnt that the lease or its key is gone,
    /// or it stopped): it no longer waits for its turn with it.
    pub(crate) fn on_abandoned(&mut self, lease: i64) {
        if self.handover.is_some_and(|h| h.lease == lease) {
            self.handover = None;
        }
    }

    /// Handover liveness at `now`, with every client's lost time so far.
    pub(crate) fn check_handover(&self, now: Now, lost: &[u64]) -> Check {
        let Some(h) = self.handover else {
            return Ok(());
        };
        let lost_since = lost.get(h.client).copied().unwrap_or(0) - h.lost_us;
        let (stalled, promotions) = (
            now.stalled_us - h.since.stalled_us,
            now.promotions - h.since.promotions,
        );
        let deadline = h.since.at_us + self.bounds.handover_us + self.allowance(&h, now, lost);
        if now.at_us <= deadline {
            return Ok(());
        }
        violated(
            "lock-liveness",
            format!(
                "lock client {} owns the lock with lease {:#x} since {:.3}s in the history but has not learnt it by {:.3}s (deadline {:.3}s: {promotions} leader(s) elected, {:.3}s stalled and {:.3}s of its own attempts lost since)",
                h.client,
                h.lease,
                secs(h.since.at_us),
                secs(now.at_us),
                secs(deadline),
                secs(stalled),
                secs(lost_since),
            ),
        )
    }
}

fn describe(w: &Write, value: u64) -> String {
    let kind = if w.fenced { "fenced" } else { "unfenced" };
    format!(
        "lock client {}'s {kind} write {value} (lease {:#x}, token {})",
        w.client, w.lease, w.rev
    )
}

fn owner_name((rev, lease): (i64, i64)) -> String {
    match lease {
        0 => "nobody".into(),
        l => format!("the key of lease {l:#x} created at revision {rev}"),
    }
}

fn secs(us: u64) -> f64 {
    us as f64 / 1e6
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::lock_key;
    use kv::KeyValue;

    const BOUNDS: LockBounds = LockBounds {
        handover_us: 1_100_000,
        per_promotion_us: 460_000,
    };

    fn at(at_us: u64) -> Now {
        Now {
            at_us,
            ..Now::default()
        }
    }

    fn put(key: &[u8], value: u64, create: i64, rev: i64, lease: i64) -> Event {
        Event {
            kind: EventKind::Put,
            kv: KeyValue {
                key: key.to_vec(),
                create_revision: create,
                mod_revision: rev,
                version: 1,
                value: value.to_le_bytes().to_vec(),
                lease,
            },
            prev_kv: None,
        }
    }

    fn enter(lease: i64, rev: i64) -> Event {
        put(&lock_key(lease), 0, rev, rev, lease)
    }

    fn delete(lease: i64, create: i64, rev: i64) -> Event {
        Event {
            kind: EventKind::Delete,
            kv: KeyValue {
                key: lock_key(lease),
                mod_revision: rev,
                ..KeyValue::default()
            },
            prev_kv: Some(enter(lease, create).kv),
        }
    }

    fn data(value: u64, rev: i64) -> Event {
        put(LOCK_DATA, value, 2, rev, 0)
    }

    /// Two clients: 0 with lease 10 enters at revision 2, 1 with lease 11 at 3.
    fn two_in_line() -> LockChecker {
        let mut c = LockChecker::new(BOUNDS);
        c.on_granted(10, 0);
        c.on_granted(11, 1);
        let lost = [0, 0];
        c.on_events(&[enter(10, 2)], at(1_000), &lost).unwrap();
        c.on_events(&[enter(11, 3)], at(2_000), &lost).unwrap();
        c
    }

    #[test]
    fn a_passing_history_hands_the_lock_over_and_counts_unfenced_writes() {
        let mut c = two_in_line();
        let lost = [0, 0];
        c.on_acquired(10, at(5_000), &[0, 0]);
        c.on_write_sent(100, 0, (10, 2), true);
        c.on_events(&[data(100, 4)], at(6_000), &lost).unwrap();
        c.on_write_acked(100, true).unwrap();
        // Client 0's key expires (it was paused); its unfenced write comes later and
        // is counted, its fenced one refused; client 1 owns the lock now.
        c.on_events(&[delete(10, 2, 5)], at(3_000_000), &lost)
            .unwrap();
        c.on_write_sent(101, 0, (10, 2), false);
        c.on_events(&[data(101, 6)], at(3_100_000), &lost).unwrap();
        c.on_write_acked(101, true).unwrap();
        c.on_write_sent(102, 0, (10, 2), true);
        c.on_write_acked(102, false).unwrap();
        c.check_handover(at(3_500_000), &lost).unwrap();
        c.on_acquired(11, at(3_600_000), &[0, 0]);
        c.on_write_sent(103, 1, (11, 3), true);
        c.on_events(&[data(103, 7)], at(3_700_000), &lost).unwrap();
        c.on_write_acked(103, true).unwrap();
        let s = c.stats;
        assert_eq!((s.acquired, s.fenced, s.fenced_refused), (2, 2, 1));
        assert_eq!((s.unfenced, s.unfenced_non_owner), (1, 1));
        assert_eq!(s.max_handover_us, 600_000);
        c.check_handover(at(60_000_000), &lost).unwrap();
    }

    #[test]
    fn a_fenced_write_by_a_non_owner_is_caught() {
        let mut c = two_in_line();
        c.on_write_sent(200, 1, (11, 3), true);
        let v = c.on_events(&[data(200, 4)], at(5_000), &[0, 0]);
        assert_eq!(v.unwrap_err().property, "lock-mutual-exclusion");
        // Nor after the owner's key went, by a client whose key is gone too.
        let mut c = two_in_line();
        let lost = [0, 0];
        c.on_events(&[delete(10, 2, 4)], at(5_000), &lost).unwrap();
        c.on_write_sent(201, 0, (10, 2), true);
        let v = c.on_events(&[data(201, 5)], at(6_000), &lost);
        assert_eq!(v.unwrap_err().property, "lock-mutual-exclusion");
    }

    #[test]
    fn fenced_writes_lost_doubled_or_answered_wrongly_are_caught() {
        let mut c = two_in_line();
        let lost = [0, 0];
        c.on_write_sent(300, 0, (10, 2), true);
        assert_eq!(
            c.on_write_acked(300, true).unwrap_err().property,
            "lock-write-lost"
        );
        c.on_write_sent(301, 0, (10, 2), true);
        c.on_events(&[data(301, 4)], at(5_000), &lost).unwrap();
        let v = c.on_events(&[data(301, 5)], at(6_000), &lost);
        assert_eq!(v.unwrap_err().property, "lock-write-doubled");
        c.on_write_sent(302, 0, (10, 2), true);
        c.on_write_acked(302, false).unwrap();
        let v = c.on_events(&[data(302, 6)], at(7_000), &lost);
        assert_eq!(v.unwrap_err().property, "lock-write-lost");
        let v = c.on_events(&[data(999, 7)], at(8_000), &lost);
        assert_eq!(v.unwrap_err().property, "lock-write-unknown");
    }

    #[test]
    fn a_waiter_must_learn_its_turn_within_the_bound_plus_stalls_and_lost_attempts() {
        let mut c = two_in_line();
        c.on_acquired(10, at(5_000), &[0, 0]);
        c.on_events(&[delete(10, 2, 4)], at(1_000_000), &[0, 0])
            .unwrap();
        // Deadline 1 + 1.1 s; client 1 lost 0.3 s on attempts since, and a leader
        // was elected: 0.46 s more.
        c.check_handover(at(2_100_000), &[0, 0]).unwrap();
        let late = at(2_100_001);
        assert_eq!(
            c.check_handover(late, &[0, 0]).unwrap_err().property,
            "lock-liveness"
        );
        let later = Now {
            at_us: 2_860_000,
            stalled_us: 0,
            promotions: 1,
        };
        c.check_handover(later, &[0, 300_000]).unwrap();
        // A client that gave its key up owes nothing; one that learnt it is done.
        c.on_abandoned(11);
        c.check_handover(at(9_000_000), &[0, 0]).unwrap();
        let mut c = two_in_line();
        c.on_events(&[delete(10, 2, 4)], at(1_000_000), &[0, 0])
            .unwrap();
        c.on_acquired(11, at(1_500_000), &[0, 0]);
        c.check_handover(at(9_000_000), &[0, 0]).unwrap();
        assert_eq!(c.stats.max_handover_us, 500_000);
    }
}
