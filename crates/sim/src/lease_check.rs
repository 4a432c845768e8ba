//! The lease checkers, engine-agnostic: the holders' view (when a keep-alive was first
//! sent and when its acknowledgement arrived, in simulated time) against the committed
//! history (when the deletion of a lease's key was first applied by any member).
//!
//! - Safety: a lease's key is not deleted, unless its holder asked for the revoke,
//!   before `s + TTL - SAFETY_BOUND`, where `s` is when the holder first sent the grant
//!   or the latest keep-alive that was acknowledged as applied (whether the ack arrives
//!   before or after the deletion).
//! - Liveness: once its holder stops sending keep-alives, a lease's key is deleted by
//!   `a + TTL + LIVENESS_BOUND + stalled + promotions * PER_PROMOTION`, where `a` is
//!   when the last acknowledgement arrived, `stalled` the simulated time since `a`
//!   during which there was no running leader or the leader had entries it could not
//!   commit, and `promotions` the leaders elected since `a` (each may lawfully restart
//!   a lease from its last checkpoint plus the promotion grace).

use crate::invariants::{violated, Check};
use std::collections::BTreeMap;

/// How the bounds are stated, in simulated microseconds.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LeaseBounds {
    /// A keep-alive restarts the TTL on the leader's tick count: the expiry may come
    /// up to one tick early in simulated time. Two ticks.
    pub(crate) safety_us: u64,
    /// Proposing the revoke (at the next tick, retried every 10 ticks when lost) and
    /// committing it: 50 ticks.
    pub(crate) liveness_us: u64,
    /// What one change of leader may add: the checkpoint interval (a checkpoint is
    /// that stale at most), one lease-second of rounding up, the promotion grace and
    /// one tick: `CHECKPOINT_TICKS + 10 + election timeout + 1` ticks.
    pub(crate) per_promotion_us: u64,
}

/// One lease as its holder and the history saw it.
#[derive(Clone, Debug)]
struct Track {
    holder: u64,
    ttl_us: u64,
    /// The key may not be deleted before this (safety).
    safe_until_us: u64,
    /// The last acknowledgement, with the stall counters then.
    last_ack: Mark,
    /// A key was attached to it (acknowledged put).
    attached: bool,
    /// The holder stopped its keep-alives.
    stopped: bool,
    /// The holder sent a revoke.
    revoke_sent: bool,
    /// When a deletion of its key was first applied.
    removed_us: Option<u64>,
}

/// A point in time with the stall counters as they stood then.
#[derive(Clone, Copy, Debug, Default)]
struct Mark {
    at_us: u64,
    stalled_us: u64,
    promotions: u64,
}

/// What the leader looked like at a sample.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LeaderSample {
    pub(crate) id: u64,
    pub(crate) epoch: u64,
    pub(crate) committed: u64,
    pub(crate) last_index: u64,
}

/// The lease checkers' state.
#[derive(Debug)]
pub(crate) struct LeaseChecker {
    bounds: LeaseBounds,
    leases: BTreeMap<i64, Track>,
    stalled_us: u64,
    promotions: u64,
    last_leader: Option<LeaderSample>,
    now_us: u64,
    /// Stopped leases whose keys were deleted.
    pub(crate) expired: u64,
}

impl LeaseChecker {
    pub(crate) fn new(bounds: LeaseBounds) -> LeaseChecker {
        LeaseChecker {
            bounds,
            leases: BTreeMap::new(),
            stalled_us: 0,
            promotions: 0,
            last_leader: None,
            now_us: 0,
            expired: 0,
        }
    }

    fn mark(&self) -> Mark {
        Mark {
            at_us: self.now_us,
            stalled_us: self.stalled_us,
            promotions: self.promotions,
        }
    }

    /// The cluster as it stood for the `dt_us` before `now_us`: `leader` is the
    /// running leader of the highest epoch, if any.
    pub(crate) fn sample(&mut self, now_us: u64, dt_us: u64, leader: Option<LeaderSample>) {
        self.now_us = now_us;
        let stalled = match (leader, self.last_leader) {
            (None, _) => true,
            (Some(l), Some(p)) if (l.id, l.epoch) == (p.id, p.epoch) => {
                l.committed == p.committed && l.last_index > l.committed
            }
            (Some(_), _) => false,
        };
        if let Some(l) = leader {
            if self
                .last_leader
                .is_none_or(|p| (p.id, p.epoch) != (l.id, l.epoch))
            {
                self.promotions += 1;
            }
            self.last_leader = Some(l);
        }
        if stalled {
            self.stalled_us += dt_us;
        }
    }

    /// The time stalled and the leaders elected so far (for the lock checkers).
    pub(crate) fn stall_marks(&self) -> (u64, u64) {
        (self.stalled_us, self.promotions)
    }

    /// Holder `holder` was granted `lease` of `ttl_us`; it first sent the grant at
    /// `sent_us`, and the acknowledgement arrived now.
    pub(crate) fn on_granted(
        &mut self,
        lease: i64,
        holder: u64,
        ttl_us: u64,
        sent_us: u64,
        now_us: u64,
    ) {
        self.now_us = now_us;
        let track = Track {
            holder,
            ttl_us,
            safe_until_us: (sent_us + ttl_us).saturating_sub(self.bounds.safety_us),
            last_ack: self.mark(),
            attached: false,
            stopped: false,
            revoke_sent: false,
            removed_us: None,
        };
        self.leases.insert(lease, track);
    }

    /// A put of a key to `lease` was acknowledged.
    pub(crate) fn on_attached(&mut self, lease: i64) {
        if let Some(t) = self.leases.get_mut(&lease) {
            t.attached = true;
        }
    }

    /// A keep-alive of `lease` first sent at `sent_us` was acknowledged as applied now.
    pub(crate) fn on_keepalive(&mut self, lease: i64, sent_us: u64, now_us: u64) -> Check {
        self.now_us = now_us;
        let (mark, safety) = (self.mark(), self.bounds.safety_us);
        let Some(t) = self.leases.get_mut(&lease) else {
            return Ok(());
        };
        t.last_ack = mark;
        t.safe_until_us = t
            .safe_until_us
            .max((sent_us + t.ttl_us).saturating_sub(safety));
        early(lease, t)
    }

    /// The holder asked for the revoke of `lease`.
    pub(crate) fn on_revoke_sent(&mut self, lease: i64) {
        if let Some(t) = self.leases.get_mut(&lease) {
            t.revoke_sent = true;
        }
    }

    /// The holder learnt that `lease` is gone, or stopped sending its keep-alives.
    pub(crate) fn on_stopped(&mut self, lease: i64) {
        if let Some(t) = self.leases.get_mut(&lease) {
            t.stopped = true;
        }
    }

    /// A deletion of a key attached to `lease` was applied for the first time.
    pub(crate) fn on_deleted(&mut self, lease: i64, now_us: u64) -> Check {
        self.now_us = now_us;
        let Some(t) = self.leases.get_mut(&lease) else {
            return Ok(());
        };
        if t.removed_us.is_none() {
            t.removed_us = Some(now_us);
            if t.stopped && !t.revoke_sent {
                self.expired += 1;
            }
        }
        early(lease, t)
    }

    /// Liveness: every stopped lease whose deadline passed is gone.
    pub(crate) fn check_liveness(&self) -> Check {
        if let Some((id, t)) = self.overdue().next() {
            let d = self.deadline(t);
            return violated(
                "lease-liveness",
                format!(
                    "lease {id:#x} of holder {}: last keep-alive acknowledged at {:.3}s, TTL {:.3}s, key still there at {:.3}s (deadline {:.3}s: {} leader(s) elected and {:.3}s stalled since)",
                    t.holder,
                    secs(t.last_ack.at_us),
                    secs(t.ttl_us),
                    secs(self.now_us),
                    secs(d),
                    self.promotions - t.last_ack.promotions,
                    secs(self.stalled_us - t.last_ack.stalled_us),
                ),
            );
        }
        Ok(())
    }

    /// A stopped lease whose key is still there, if any (the run is not over yet).
    pub(crate) fn pending(&self) -> Option<String> {
        let (id, t) = self.waiting().next()?;
        Some(format!(
            "lease {id:#x} of holder {} not expired yet",
            t.holder
        ))
    }

    /// The latest deadline of a stopped lease still waiting to expire: until then its
    /// key may stay (each leader change since its last keep-alive lets it stay longer).
    pub(crate) fn latest_deadline(&self) -> Option<u64> {
        self.waiting().map(|(_, t)| self.deadline(t)).max()
    }

    fn waiting(&self) -> impl Iterator<Item = (&i64, &Track)> {
        self.leases
            .iter()
            .filter(|(_, t)| t.stopped && t.attached && !t.revoke_sent && t.removed_us.is_none())
    }

    fn overdue(&self) -> impl Iterator<Item = (&i64, &Track)> {
        self.waiting()
            .filter(|(_, t)| self.now_us > self.deadline(t))
    }

    fn deadline(&self, t: &Track) -> u64 {
        let b = &self.bounds;
        t.last_ack.at_us
            + t.ttl_us
            + b.liveness_us
            + (self.stalled_us - t.last_ack.stalled_us)
            + (self.promotions - t.last_ack.promotions) * b.per_promotion_us
    }
}

/// Safety for one lease: removed, without a revoke asked for, before it could expire.
fn early(lease: i64, t: &Track) -> Check {
    match t.removed_us {
        Some(at) if !t.revoke_sent && at < t.safe_until_us => violated(
            "lease-safety",
            format!(
                "lease {lease:#x} of holder {}: key deleted at {:.3}s, but a keep-alive acknowledged to the holder keeps it until {:.3}s (TTL {:.3}s)",
                t.holder,
                secs(at),
                secs(t.safe_until_us),
                secs(t.ttl_us)
            ),
        ),
        _ => Ok(()),
    }
}

fn secs(us: u64) -> f64 {
    us as f64 / 1e6
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUNDS: LeaseBounds = LeaseBounds {
        safety_us: 20_000,
        liveness_us: 500_000,
        per_promotion_us: 460_000,
    };

    fn leader(id: u64, epoch: u64, committed: u64, last_index: u64) -> Option<LeaderSample> {
        Some(LeaderSample {
            id,
            epoch,
            committed,
            last_index,
        })
    }

    #[test]
    fn a_key_deleted_while_a_keepalive_holds_it_is_caught_either_way_round() {
        let mut c = LeaseChecker::new(BOUNDS);
        c.on_granted(1, 0, 2_000_000, 0, 10_000);
        c.on_attached(1);
        c.on_keepalive(1, 1_000_000, 1_010_000).unwrap();
        // Deleted at 2.5 s although the keep-alive sent at 1 s holds it until 3 s.
        assert_eq!(
            c.on_deleted(1, 2_500_000).unwrap_err().property,
            "lease-safety"
        );
        // The acknowledgement arriving after the deletion is caught as well.
        c.on_granted(2, 0, 2_000_000, 0, 10_000);
        c.on_deleted(2, 2_500_000).unwrap();
        assert_eq!(
            c.on_keepalive(2, 1_000_000, 2_600_000)
                .unwrap_err()
                .property,
            "lease-safety"
        );
        // Within the bound, or after a revoke the holder asked for: fine.
        c.on_granted(3, 0, 2_000_000, 0, 10_000);
        c.on_deleted(3, 1_985_000).unwrap();
        c.on_granted(4, 0, 2_000_000, 0, 10_000);
        c.on_revoke_sent(4);
        c.on_deleted(4, 50_000).unwrap();
    }

    #[test]
    fn a_stopped_lease_must_go_within_its_bound_plus_leader_changes_and_stalls() {
        let mut c = LeaseChecker::new(BOUNDS);
        c.sample(0, 20_000, leader(1, 1, 5, 5));
        c.on_granted(1, 0, 2_000_000, 0, 10_000);
        c.on_attached(1);
        c.on_stopped(1);
        // Deadline: 0.01 + 2 + 0.5 s.
        c.sample(2_500_000, 20_000, leader(1, 1, 6, 6));
        c.check_liveness().unwrap();
        assert!(c.pending().is_some());
        c.sample(2_520_000, 20_000, leader(1, 1, 7, 7));
        assert_eq!(c.check_liveness().unwrap_err().property, "lease-liveness");
        // A new leader and a stall since extend it.
        c.sample(2_540_000, 20_000, leader(2, 2, 7, 7));
        c.sample(2_560_000, 20_000, None);
        c.check_liveness().unwrap();
        c.on_deleted(1, 2_600_000).unwrap();
        assert!(c.pending().is_none());
        c.sample(9_000_000, 20_000, leader(2, 2, 8, 9));
        c.check_liveness().unwrap();
    }
}
