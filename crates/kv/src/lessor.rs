//! The leader's lease clock. Not replicated and not part of the state machine: each
//! member keeps one, only the leader's has deadlines, and what it decides (a lease
//! expired, the remaining TTLs) goes through the log as [`Request::LeaseRevoke`] and
//! [`Request::LeaseCheckpoint`]. Sans-IO: time is the count of [`Lessor::tick`]s.

use crate::apply::{Request, Response};
use crate::lease::Lease;
use crate::store::Store;
use crate::types::KvError;
use std::collections::BTreeMap;

/// How a [`Lessor`] keeps time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LessorOptions {
    /// Milliseconds per tick (0 counts as 1).
    pub tick_ms: u64,
    /// Ticks between checkpoints of the remaining TTLs (0: never checkpoint).
    pub checkpoint_interval_ticks: u64,
    /// Ticks added to every deadline on promotion, so that leases do not expire
    /// during the leadership change their clients could not reach anyone in.
    pub promote_extend_ticks: u64,
    /// Ticks before a revoke proposed for an expired lease is proposed again, if the
    /// lease is still there (a proposal can be lost); 0 counts as 1.
    pub revoke_retry_ticks: u64,
}

impl Default for LessorOptions {
    /// 100 ms ticks, a checkpoint every 5 minutes (etcd's default), 1 s of grace on
    /// promotion (etcd's default election timeout), and a revoke retried after 3 s.
    fn default() -> LessorOptions {
        LessorOptions {
            tick_ms: 100,
            checkpoint_interval_ticks: 3000,
            promote_extend_ticks: 10,
            revoke_retry_ticks: 30,
        }
    }
}

/// One lease's clock on the leader.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Clock {
    /// The tick at which the lease expires.
    deadline: u64,
    /// When its revoke was last proposed.
    revoke_proposed: Option<u64>,
}

/// The leader's lease clock: deadlines in ticks, expiry revokes and checkpoints to
/// propose. A follower's has no deadlines and proposes nothing.
#[derive(Clone, Debug)]
pub struct Lessor {
    opts: LessorOptions,
    now: u64,
    leader: bool,
    /// Per lease; empty unless leader.
    clocks: BTreeMap<i64, Clock>,
    /// Keep-alives this leader put in its log, not applied yet: by log index, the
    /// lease and the tick it was ordered at.
    ordered: BTreeMap<u64, (i64, u64)>,
    /// Per lease, the latest tick at which this leader ordered a keep-alive that has
    /// since been applied (so any later leader holds it). See [`Lessor::renew_local`].
    committed_renew: BTreeMap<i64, u64>,
    last_checkpoint: u64,
    /// A deliberately planted bug.
    #[cfg(feature = "planted-bugs")]
    bug: Option<crate::KvBug>,
}

impl Lessor {
    /// A follower's lessor at tick 0.
    pub fn new(opts: LessorOptions) -> Lessor {
        Lessor {
            opts,
            now: 0,
            leader: false,
            clocks: BTreeMap::new(),
            ordered: BTreeMap::new(),
            committed_renew: BTreeMap::new(),
            last_checkpoint: 0,
            #[cfg(feature = "planted-bugs")]
            bug: None,
        }
    }

    /// Plants a deliberate bug (`None`: none), for checker self-tests.
    #[cfg(feature = "planted-bugs")]
    pub fn plant(&mut self, bug: Option<crate::KvBug>) {
        self.bug = bug;
    }

    /// Whether the planted bug `follower-lease-expiry` is on.
    fn follower_expiry_bug(&self) -> bool {
        #[cfg(feature = "planted-bugs")]
        {
            self.bug == Some(crate::KvBug::FollowerLeaseExpiry)
        }
        #[cfg(not(feature = "planted-bugs"))]
        false
    }

    /// Whether the planted bug `lease-no-checkpoint` is on.
    fn no_checkpoint_bug(&self) -> bool {
        #[cfg(feature = "planted-bugs")]
        {
            self.bug == Some(crate::KvBug::LeaseNoCheckpoint)
        }
        #[cfg(not(feature = "planted-bugs"))]
        false
    }

    /// The options it was made with.
    pub fn options(&self) -> LessorOptions {
        self.opts
    }

    /// Ticks since it was made.
    pub fn now(&self) -> u64 {
        self.now
    }

    /// Whether it keeps deadlines (this member leads).
    pub fn is_leader(&self) -> bool {
        self.leader
    }

    fn tick_ms(&self) -> u64 {
        self.opts.tick_ms.max(1)
    }

    /// `secs` in ticks, rounded up (a negative count is 0).
    fn ticks_for(&self, secs: i64) -> u64 {
        let ms = u64::try_from(secs).unwrap_or(0).saturating_mul(1000);
        ms.div_ceil(self.tick_ms())
    }

    /// `ticks` in seconds, rounded up.
    fn secs_for(&self, ticks: u64) -> i64 {
        let secs = ticks.saturating_mul(self.tick_ms()).div_ceil(1000);
        i64::try_from(secs).unwrap_or(i64::MAX)
    }

    /// A clock for `lease` as a new leader starts it: the checkpointed remaining TTL
    /// (the whole TTL if none), rounded up, plus the promotion grace.
    fn promoted_clock(&self, lease: &Lease) -> Clock {
        let secs = match lease.remaining_ttl {
            // Planted bug: the checkpointed remaining TTL is ignored.
            _ if self.no_checkpoint_bug() => lease.ttl,
            r if r > 0 => r,
            _ => lease.ttl,
        };
        let ticks = self.ticks_for(secs);
        Clock {
            deadline: self
                .now
                .saturating_add(ticks)
                .saturating_add(self.opts.promote_extend_ticks),
            revoke_proposed: None,
        }
    }

    /// A clock that runs the whole `ttl` from now.
    fn fresh_clock(&self, ttl: i64) -> Clock {
        Clock {
            deadline: self.now.saturating_add(self.ticks_for(ttl)),
            revoke_proposed: None,
        }
    }

    /// This member became leader: every lease gets a deadline of its checkpointed
    /// remaining TTL (its TTL if none) plus [`LessorOptions::promote_extend_ticks`]
    /// from now, and expiries proposed before are forgotten.
    pub fn promote(&mut self, store: &Store) {
        self.leader = true;
        self.ordered.clear();
        self.committed_renew.clear();
        self.last_checkpoint = self.now;
        self.clocks = store
            .leases
            .iter()
            .map(|(id, lease)| (*id, self.promoted_clock(lease)))
            .collect();
    }

    /// This member no longer leads: no deadlines, nothing expires.
    pub fn demote(&mut self) {
        self.leader = false;
        self.ordered.clear();
        self.committed_renew.clear();
        if !self.follower_expiry_bug() {
            self.clocks.clear();
        }
    }

    /// Advances time by one tick. The leader returns what to propose: a
    /// [`Request::LeaseRevoke`] for each lease whose deadline has come (once, and
    /// again every [`LessorOptions::revoke_retry_ticks`] while it is still granted),
    /// then every [`LessorOptions::checkpoint_interval_ticks`] a
    /// [`Request::LeaseCheckpoint`] of the other leases' remaining TTLs, in seconds
    /// rounded up (none if there are no such leases). In lease id order.
    pub fn tick(&mut self, store: &Store) -> Vec<Request> {
        self.now += 1;
        if !self.leader {
            if self.follower_expiry_bug() {
                // Planted bug: a follower expires leases on its own clock.
                self.follow(store);
                return self.expired();
            }
            return Vec::new();
        }
        self.follow(store);
        let mut out = self.expired();
        out.extend(self.checkpoint());
        out
    }

    /// The revokes due now: each lease past its deadline, once, and again every
    /// [`LessorOptions::revoke_retry_ticks`].
    fn expired(&mut self) -> Vec<Request> {
        let (now, retry) = (self.now, self.opts.revoke_retry_ticks.max(1));
        let mut out = Vec::new();
        for (&id, clock) in &mut self.clocks {
            let due =
                now >= clock.deadline && clock.revoke_proposed.is_none_or(|at| now - at >= retry);
            if due {
                clock.revoke_proposed = Some(now);
                out.push(Request::LeaseRevoke { id });
            }
        }
        out
    }

    /// Keeps a clock for exactly the leases the store has (a lease granted or revoked
    /// without [`Lessor::on_applied`] seeing it, as after a restore, is caught up
    /// with: a new one is clocked as on promotion).
    fn follow(&mut self, store: &Store) {
        self.clocks.retain(|id, _| store.leases.contains_key(id));
        if self.clocks.len() == store.leases.len() {
            return;
        }
        for (id, lease) in &store.leases {
            if !self.clocks.contains_key(id) {
                let clock = self.promoted_clock(lease);
                self.clocks.insert(*id, clock);
            }
        }
    }

    /// The checkpoint due at this tick, if any.
    fn checkpoint(&mut self) -> Option<Request> {
        let every = self.opts.checkpoint_interval_ticks;
        if every == 0 || self.now - self.last_checkpoint < every {
            return None;
        }
        self.last_checkpoint = self.now;
        let checkpoints: Vec<(i64, i64)> = self
            .clocks
            .iter()
            .filter(|(_, c)| self.now < c.deadline)
            .map(|(id, c)| (*id, self.secs_for(c.deadline - self.now)))
            .collect();
        (!checkpoints.is_empty()).then_some(Request::LeaseCheckpoint { checkpoints })
    }

    /// The leader has put `req` in its log now. A [`Request::LeaseRenew`] of a lease
    /// that has not expired restarts its whole TTL from now; of one that has, it does
    /// nothing (that renew is ordered after the lease's revoke, and fails).
    ///
    /// `index` is the entry's log index when known: once an entry so ordered is
    /// applied ([`Lessor::on_applied_index`]), keep-alives of that lease may be
    /// answered from memory for a while ([`Lessor::renew_local`]).
    pub fn on_ordered(&mut self, store: &Store, req: &Request, index: Option<u64>) {
        let Request::LeaseRenew { id } = req else {
            return;
        };
        let Some(ttl) = store.leases.get(id).map(|l| l.ttl) else {
            return;
        };
        let fresh = self.fresh_clock(ttl);
        if let Some(clock) = self.clocks.get_mut(id) {
            if self.now < clock.deadline {
                *clock = fresh;
                if let Some(index) = index {
                    self.ordered.insert(index, (*id, self.now));
                }
            }
        }
    }

    /// The entry at `index` was applied: a keep-alive this leader ordered there is in
    /// every later leader's log now.
    pub fn on_applied_index(&mut self, index: u64) {
        if self.ordered.is_empty() {
            return;
        }
        // Everything up to `index` is applied; what was ordered there is settled.
        let later = self.ordered.split_off(&(index + 1));
        let settled = std::mem::replace(&mut self.ordered, later);
        if let Some((id, at)) = settled.get(&index).copied() {
            if self.clocks.contains_key(&id) {
                let t = self.committed_renew.entry(id).or_insert(at);
                *t = (*t).max(at);
            }
        }
    }

    /// Ticks after a committed keep-alive's ordering during which further keep-alives
    /// of that lease are answered from memory: half the promotion grace.
    pub fn local_renew_window(&self) -> u64 {
        self.opts.promote_extend_ticks / 2
    }

    /// Whether [`Lessor::renew_local`] would renew lease `id` now: this member leads,
    /// the lease has not expired (no revoke is proposed), and a keep-alive of it this
    /// leader put in its log no more than [`Lessor::local_renew_window`] ticks ago has
    /// been applied.
    pub fn can_renew_local(&self, id: i64) -> bool {
        if !self.leader {
            return false;
        }
        let Some(ordered_at) = self.committed_renew.get(&id) else {
            return false;
        };
        let Some(clock) = self.clocks.get(&id) else {
            return false;
        };
        self.now.saturating_sub(*ordered_at) <= self.local_renew_window()
            && self.now < clock.deadline
            && clock.revoke_proposed.is_none()
    }

    /// A keep-alive answered by the leader from memory, without a log entry (etcd's
    /// leader renews in memory too): the lease gets its whole TTL from now, and the
    /// answer is that TTL. `None` unless [`Lessor::can_renew_local`]: then the
    /// keep-alive goes through the log.
    ///
    /// The caller must first confirm, after the keep-alive arrived, that this member
    /// still leads (a ReadIndex round with a quorum). Then it is safe, pauses and all:
    /// - any later leader is elected after that round, so after the keep-alive was
    ///   sent (a voter that answered this leader's round voted later);
    /// - its log holds the applied keep-alive ordered at `t`, and anything this leader
    ///   ordered later. If the last lease entry before promotion is that keep-alive,
    ///   the new leader clocks the whole TTL from promotion; if it is a later
    ///   checkpoint, taken at `c ≤ now ≤ t + window`, it says at least `TTL - window`
    ///   (this leader's deadline was at least `t + TTL` then), and the promotion adds
    ///   a grace of twice the window.
    ///
    /// So the lease lives at least TTL after the keep-alive was sent, as the answer
    /// promises.
    pub fn renew_local(&mut self, store: &Store, id: i64) -> Option<i64> {
        if !self.can_renew_local(id) {
            return None;
        }
        let ttl = store.leases.get(&id)?.ttl;
        let fresh = self.fresh_clock(ttl);
        let clock = self.clocks.get_mut(&id)?;
        clock.deadline = clock.deadline.max(fresh.deadline);
        Some(ttl)
    }

    /// `req` was applied to `store` with `result`. On the leader a granted lease gets
    /// its whole TTL from now (the id comes from the result, for a grant of id 0), and
    /// so does a renewed one that has not expired, unless its deadline is later
    /// already; a revoked lease,
    /// or one a revoke did not find, is forgotten.
    pub fn on_applied(&mut self, store: &Store, req: &Request, result: &Result<Response, KvError>) {
        match (req, result) {
            (Request::LeaseRevoke { id }, _) => {
                self.clocks.remove(id);
                self.committed_renew.remove(id);
            }
            // A keep-alive ordered by an earlier leader, committed before this one took
            // over but applied only since: it counts from now (the promotion clocked the
            // lease from a checkpoint that may predate it).
            (Request::LeaseRenew { id }, Ok(_)) if self.leader => {
                if let Some(ttl) = store.leases.get(id).map(|l| l.ttl) {
                    let fresh = self.fresh_clock(ttl);
                    let now = self.now;
                    if let Some(c) = self.clocks.get_mut(id) {
                        // Not past its deadline: a revoke proposed already is ordered
                        // after this renew and ends the lease anyway.
                        if now < c.deadline && fresh.deadline > c.deadline {
                            *c = fresh;
                        }
                    }
                }
            }
            (Request::LeaseGrant { .. }, Ok(Response::LeaseGranted { id, .. }))
                if self.leader || self.follower_expiry_bug() =>
            {
                // Unless a later entry, applied already, revoked it.
                if let Some(ttl) = store.leases.get(id).map(|l| l.ttl) {
                    let clock = self.fresh_clock(ttl);
                    self.clocks.insert(*id, clock);
                }
            }
            _ => {}
        }
    }

    /// Seconds until lease `id` expires, rounded up (0 once expired); `None` unless
    /// this lessor leads and clocks that lease. For LeaseTimeToLive.
    pub fn remaining_secs(&self, id: i64) -> Option<i64> {
        if !self.leader {
            return None;
        }
        let clock = self.clocks.get(&id)?;
        Some(self.secs_for(clock.deadline.saturating_sub(self.now)))
    }
}
