//! Lock clients, following etcd's lock recipe (as the server's `recipe.rs` serves it):
//! each grants a lease and keeps it alive every TTL/3, enters the queue by creating its
//! key `lock/LEASE` under the lease if absent (its create revision is its place in line
//! and its fencing token), polls the queue until no key has a lower create revision,
//! and then holds the lock. Polls look at a running member's applied store (a
//! serializable read, as the server's recipe waits) every 20–50 ms, and go through the
//! log (linearizable) at least every `CONFIRM_MAX_US`. In the critical section it
//! writes the lock's data key one to four times: fenced three times in four (a Txn that
//! puts only if its key still has its create revision), otherwise unfenced (a plain
//! put). It releases by deleting its key, or one time in four by revoking its lease.
//! Now and then a holder pauses (a GC pause): no keep-alives for longer than the TTL,
//! after which it carries on writing as if it still held the lock, and learns otherwise
//! from a refused fenced write (or its release finds the key gone). Every other request
//! goes through the log at any member and is retried like the other clients' (same
//! session sequence number: applied at most once).
//!
//! The lease checkers see the lock clients' leases like the holders' (a pause stops the
//! keep-alives: the key must then expire within the lease liveness bound); the lock
//! checkers (`lock_check`) see the writes, acknowledgements and acquisitions.

use crate::host::{ClientOutcome, HostState};
use crate::kv::{lease_id, Command, KvOp, KvResult};
use crate::lock_check::{LockBounds, Now};
use crate::world::{Event, Simulation};

/// Session ids of the lock clients start here.
pub(crate) const LOCKER_BASE: u64 = 1 << 41;

/// Lock clients' lease ids are `lease_id(LEASE_HOLDER_BASE + c, cycle)`, apart from
/// the lease holders' (and in the lease checker's messages, lock client `c` is
/// holder `LEASE_HOLDER_BASE + c`).
const LEASE_HOLDER_BASE: u64 = 64;

/// Lease TTLs the lock clients draw from, in lease-seconds (see `kv::LESSOR_TICK_MS`).
const TTL_SECS: [i64; 2] = [20, 30];

/// A waiter looks at a running member's store (a serializable read, as the server's
/// recipe waits on its member's applied store) every 20–50 ms, and asks through the
/// log (linearizable) at least this often, so that a member that lags cannot hold it
/// back.
pub(crate) const CONFIRM_MAX_US: u64 = 500_000;

/// A holder pauses before one write in this many (about one critical section in
/// three, at 2.5 writes each).
const PAUSE_ONE_IN: u64 = 6;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    /// No lease: the next step grants one.
    Idle,
    Granting,
    Entering,
    Waiting,
    /// Holding the lock with this many writes left.
    Holding(u8),
    /// Paused in the critical section until this time, with this many writes left.
    Paused(u64, u8),
    Releasing,
}

#[derive(Clone, Copy, Debug)]
struct LockOp {
    cmd: Command,
    attempt: u64,
    /// When the operation was first sent (its first attempt).
    sent_us: u64,
    /// When the current attempt was sent.
    attempt_us: u64,
}

#[derive(Debug)]
pub(crate) struct Locker {
    seq: u64,
    target: usize,
    cycle: u64,
    lease: i64,
    ttl_us: u64,
    /// The create revision of its key (its fencing token).
    rev: i64,
    stage: Stage,
    current: Option<LockOp>,
    next_attempt: u64,
    /// When the next keep-alive is due.
    keepalive_due_us: u64,
    /// When the next poll through the log is due, while waiting.
    confirm_due_us: u64,
    /// Whether to keep going (false in the liveness phase: finish and stop).
    pub(crate) active: bool,
    /// Time spent on attempts that went nowhere (see `lock_check`).
    pub(crate) lost_us: u64,
}

impl Locker {
    fn new(target: usize) -> Locker {
        Locker {
            seq: 0,
            target,
            cycle: 0,
            lease: 0,
            ttl_us: 0,
            rev: 0,
            stage: Stage::Idle,
            current: None,
            next_attempt: 0,
            keepalive_due_us: 0,
            confirm_due_us: 0,
            active: true,
            lost_us: 0,
        }
    }

    /// Whether the client is done: inactive, without a lease or an operation.
    pub(crate) fn finished(&self) -> bool {
        !self.active && self.stage == Stage::Idle && self.current.is_none()
    }

    /// Whether it holds a lease it keeps alive.
    fn keeps_alive(&self) -> bool {
        !matches!(
            self.stage,
            Stage::Idle | Stage::Granting | Stage::Paused(..)
        )
    }
}

/// The lock checkers' handover bound for a run with options `opts`.
pub(crate) fn bounds(opts: &crate::options::SimOptions) -> LockBounds {
    LockBounds {
        handover_us: CONFIRM_MAX_US + 100 * opts.tick_us,
        per_promotion_us: crate::lease_client::bounds(opts).per_promotion_us,
    }
}

impl Simulation {
    pub(crate) fn start_lockers(&mut self) {
        for c in 0..self.opts.lock_clients {
            let target = self.lock_rng.range(0, self.hosts.len() as u64) as usize;
            self.lockers.push(Locker::new(target));
            let d = self.lock_rng.range(0, 500_000);
            self.schedule(d, Event::LockIssue { locker: c });
        }
    }

    /// The stall counters now, and every lock client's lost time.
    fn lock_now(&self) -> (Now, Vec<u64>) {
        let (stalled_us, promotions) = self.leases.stall_marks();
        let now = Now {
            at_us: self.now_us,
            stalled_us,
            promotions,
        };
        (now, self.lockers.iter().map(|l| l.lost_us).collect())
    }

    /// The lock client's next step.
    pub(crate) fn on_lock_issue(&mut self, c: usize) {
        let (now, lease_second_us) = (self.now_us, self.lease_second_us());
        let l = &mut self.lockers[c];
        if l.current.is_some() {
            return;
        }
        if let Stage::Paused(until, left) = l.stage {
            if now < until {
                return;
            }
            // It carries on where it stopped, as if it still held the lock: its writes
            // come before the keep-alive it owes (until it releases, or a refused
            // fenced write tells it the lock is gone).
            l.stage = Stage::Holding(left);
            l.keepalive_due_us = u64::MAX;
            self.log(|| format!("lock client {c} resumes after its pause"));
            return self.lock_write(c);
        }
        if l.keeps_alive() && now >= l.keepalive_due_us {
            let id = l.lease;
            return self.lock_begin(c, KvOp::LeaseRenew { id });
        }
        let op = match l.stage {
            Stage::Idle if !l.active => return,
            Stage::Idle => {
                l.cycle += 1;
                l.lease = lease_id(LEASE_HOLDER_BASE + c as u64, l.cycle);
                let ttl = *self.lock_rng.pick(&TTL_SECS).unwrap_or(&TTL_SECS[0]);
                l.ttl_us = ttl as u64 * lease_second_us;
                l.stage = Stage::Granting;
                KvOp::LeaseGrant { id: l.lease, ttl }
            }
            Stage::Entering => KvOp::LockEnter { lease: l.lease },
            Stage::Waiting if now < l.confirm_due_us => return self.lock_peek(c),
            Stage::Waiting => {
                l.confirm_due_us = now + self.lock_rng.range(300_000, CONFIRM_MAX_US + 1);
                KvOp::LockOwner { lease: l.lease }
            }
            Stage::Holding(0) => return self.lock_release(c),
            Stage::Holding(left) if l.active && self.lock_rng.chance(1, PAUSE_ONE_IN) => {
                return self.lock_pause(c, left);
            }
            Stage::Holding(_) => return self.lock_write(c),
            Stage::Granting | Stage::Paused(..) | Stage::Releasing => return,
        };
        self.lock_begin(c, op);
    }

    /// A write in the critical section: fenced three times in four.
    fn lock_write(&mut self, c: usize) {
        let fenced = self.lock_rng.chance(3, 4);
        let l = &self.lockers[c];
        let value = (LOCKER_BASE + c as u64) * 1_000_000 + l.seq + 1;
        #[allow(unused_mut)]
        let mut rev = if fenced { l.rev } else { 0 };
        #[cfg(feature = "planted-bugs")]
        if self.opts.workload_bug == Some(crate::options::WorkloadBug::LockUnfenced) {
            // Planted bug: the fenced write forgets its compare.
            rev = 0;
        }
        let (lease, token) = (l.lease, l.rev);
        self.locks.on_write_sent(value, c, (lease, token), fenced);
        self.lock_begin(c, KvOp::LockWrite { lease, rev, value });
    }

    /// A GC-like pause: no keep-alives (nor anything else) for longer than the TTL.
    fn lock_pause(&mut self, c: usize, left: u8) {
        let l = &mut self.lockers[c];
        let pause = l.ttl_us + self.lock_rng.range(500_000, 2_500_000);
        l.stage = Stage::Paused(self.now_us + pause, left);
        let lease = l.lease;
        self.leases.on_stopped(lease);
        self.log(|| format!("lock client {c} pauses for {pause} µs holding lease {lease:#x}"));
        self.schedule(pause, Event::LockIssue { locker: c });
    }

    /// The end of the critical section: delete the key, or revoke the lease.
    fn lock_release(&mut self, c: usize) {
        let l = &mut self.lockers[c];
        l.stage = Stage::Releasing;
        let lease = l.lease;
        self.leases.on_revoke_sent(lease);
        let op = if self.lock_rng.chance(1, 4) {
            KvOp::LeaseRevoke { id: lease }
        } else {
            KvOp::LockRelease { lease }
        };
        self.lock_begin(c, op);
    }

    fn lock_begin(&mut self, c: usize, op: KvOp) {
        let now = self.now_us;
        let l = &mut self.lockers[c];
        l.seq += 1;
        let cmd = Command {
            client: LOCKER_BASE + c as u64,
            seq: l.seq,
            op,
        };
        l.next_attempt += 1;
        let attempt = l.next_attempt;
        l.current = Some(LockOp {
            cmd,
            attempt,
            sent_us: now,
            attempt_us: now,
        });
        self.log(|| format!("lock client {c} invokes {op:?}"));
        self.lock_send_later(c, attempt, 0);
    }

    fn lock_send_later(&mut self, c: usize, attempt: u64, delay_us: u64) {
        let lat = self.rng.range(50, 300);
        let locker = c;
        self.schedule(delay_us + lat, Event::LockSend { locker, attempt });
        let timeout = delay_us + self.opts.client_timeout_us;
        self.schedule(timeout, Event::LockTimeout { locker, attempt });
    }

    pub(crate) fn on_lock_send(&mut self, c: usize, attempt: u64) {
        let l = &self.lockers[c];
        let Some(cur) = l.current.filter(|o| o.attempt == attempt) else {
            return;
        };
        let target = l.target;
        self.send_write(target, LOCKER_BASE + c as u64, attempt, cur.cmd);
    }

    /// Retries the current attempt, if it is still `attempt`, at the next member (or
    /// at `hint`) after `delay_us`; the time since the attempt was sent is lost.
    pub(crate) fn lock_retry(
        &mut self,
        c: usize,
        attempt: u64,
        hint: Option<usize>,
        delay_us: u64,
    ) {
        let (n, now) = (self.hosts.len(), self.now_us);
        let l = &mut self.lockers[c];
        let Some(cur) = l.current.as_mut().filter(|o| o.attempt == attempt) else {
            return;
        };
        l.lost_us += now - cur.attempt_us + delay_us;
        l.target = hint.unwrap_or((l.target + 1) % n);
        l.next_attempt += 1;
        cur.attempt = l.next_attempt;
        cur.attempt_us = now + delay_us;
        let attempt = cur.attempt;
        self.lock_send_later(c, attempt, delay_us);
    }

    pub(crate) fn on_lock_reply(&mut self, c: usize, attempt: u64, outcome: ClientOutcome) {
        match outcome {
            ClientOutcome::Redirect(Some(id)) => {
                self.lock_retry(c, attempt, Some((id.0 - 1) as usize), 200)
            }
            ClientOutcome::Redirect(None) | ClientOutcome::Unknown => {
                self.lock_retry(c, attempt, None, 20_000)
            }
            ClientOutcome::Written(result) => self.lock_done(c, attempt, result),
            ClientOutcome::Read(_) => {}
        }
    }

    fn lock_done(&mut self, c: usize, attempt: u64, result: KvResult) {
        let Some(op) = self.lockers[c].current.filter(|o| o.attempt == attempt) else {
            return;
        };
        self.lockers[c].current = None;
        self.log(|| format!("lock client {c} completed {:?}: {result:?}", op.cmd.op));
        let next = match (op.cmd.op, result) {
            (KvOp::LeaseGrant { .. }, KvResult::Lease(true)) => self.lock_granted(c, op),
            (KvOp::LeaseRenew { .. }, KvResult::Lease(true)) => self.lock_renewed(c, op),
            (KvOp::LockEnter { .. }, KvResult::Created(rev)) if rev > 0 => {
                let confirm = self.lock_rng.range(300_000, CONFIRM_MAX_US + 1);
                let l = &mut self.lockers[c];
                (l.rev, l.stage) = (rev, Stage::Waiting);
                l.confirm_due_us = self.now_us + confirm;
                self.leases.on_attached(l.lease);
                Some(0)
            }
            (KvOp::LockOwner { lease }, KvResult::Owner { first, mine }) if mine > 0 => {
                Some(self.lock_polled(c, lease, first))
            }
            (KvOp::LockWrite { value, .. }, r @ (KvResult::Cas(_) | KvResult::Done)) => {
                self.lock_written(c, value, r != KvResult::Cas(false))
            }
            (KvOp::LockRelease { .. } | KvOp::LeaseRevoke { .. }, _) => self.lock_idle(c),
            // The lease or the key is gone (expired, or revoked by a pause): start over.
            _ => self.lock_abandon(c),
        };
        if let Some(d) = next {
            self.schedule(d, Event::LockIssue { locker: c });
        }
    }

    fn lock_granted(&mut self, c: usize, op: LockOp) -> Option<u64> {
        let l = &mut self.lockers[c];
        l.stage = Stage::Entering;
        l.keepalive_due_us = op.sent_us + l.ttl_us / 3;
        let (lease, ttl_us) = (l.lease, l.ttl_us);
        let holder = LEASE_HOLDER_BASE + c as u64;
        self.leases
            .on_granted(lease, holder, ttl_us, op.sent_us, self.now_us);
        self.locks.on_granted(lease, c);
        Some(0)
    }

    fn lock_renewed(&mut self, c: usize, op: LockOp) -> Option<u64> {
        let l = &mut self.lockers[c];
        l.keepalive_due_us = op.sent_us + l.ttl_us / 3;
        if let Err(v) = self.leases.on_keepalive(l.lease, op.sent_us, self.now_us) {
            self.fail(v);
        }
        Some(0)
    }

    /// The queue as a poll found it: the lock is ours once our key is the first.
    /// Returns when to look next.
    fn lock_polled(&mut self, c: usize, lease: i64, first: i64) -> u64 {
        if first != lease {
            return self.lock_rng.range(20_000, 50_001);
        }
        let writes = self.lock_rng.range(1, 5) as u8;
        self.lockers[c].stage = Stage::Holding(writes);
        let (now, lost) = self.lock_now();
        self.locks.on_acquired(lease, now, &lost);
        self.log(|| format!("lock client {c} holds the lock with lease {lease:#x}"));
        self.lock_rng.range(1_000, 20_000)
    }

    /// A serializable look at the queue in a running member's applied store. Safe to
    /// act on, as the server's recipe does: a store that holds our key has applied
    /// its creation, so a key created before it that this store no longer holds is
    /// gone for good (a key created again gets a later create revision).
    fn lock_peek(&mut self, c: usize) {
        let i = self.lock_rng.range(0, self.hosts.len() as u64) as usize;
        let (lease, rev) = (self.lockers[c].lease, self.lockers[c].rev);
        let view = match (&self.hosts[i].node, self.hosts[i].state) {
            (Some(node), HostState::Up) => node.machine().lock_owner(lease),
            _ => KvResult::Owner { first: 0, mine: 0 },
        };
        let first = match view {
            KvResult::Owner { first, mine } if mine == rev => first,
            _ => 0,
        };
        let next = self.lock_polled(c, lease, first);
        self.schedule(next, Event::LockIssue { locker: c });
    }

    fn lock_written(&mut self, c: usize, value: u64, done: bool) -> Option<u64> {
        if let Err(v) = self.locks.on_write_acked(value, done) {
            self.fail(v);
        }
        if !done {
            // The fencing token is stale: the lock was lost (a pause outlasted it).
            return self.lock_abandon(c);
        }
        if let Stage::Holding(left) = &mut self.lockers[c].stage {
            *left = left.saturating_sub(1);
        }
        Some(self.lock_rng.range(1_000, 40_000))
    }

    /// Done with this lease: a new cycle later.
    fn lock_idle(&mut self, c: usize) -> Option<u64> {
        self.lockers[c].stage = Stage::Idle;
        Some(self.lock_rng.range(20_000, 300_000))
    }

    /// The lease or the key is gone: no longer in line with it.
    fn lock_abandon(&mut self, c: usize) -> Option<u64> {
        let lease = self.lockers[c].lease;
        self.leases.on_stopped(lease);
        self.locks.on_abandoned(lease);
        self.log(|| format!("lock client {c} lost lease {lease:#x}"));
        self.lock_idle(c)
    }

    /// Member `i` applied writes: the lock checkers see the fresh ones.
    pub(crate) fn lock_events(&mut self, fresh: &[kv::Event]) {
        let (now, lost) = self.lock_now();
        if let Err(v) = self.locks.on_events(fresh, now, &lost) {
            self.fail(v);
        }
    }

    /// Handover liveness, at each of the lease checker's samples.
    pub(crate) fn check_lock_handover(&mut self) {
        let (now, lost) = self.lock_now();
        if let Err(v) = self.locks.check_handover(now, &lost) {
            self.fail(v);
        }
    }
}

impl Simulation {
    /// The lock checkers' counters, into the run's stats.
    pub(crate) fn record_lock_stats(&mut self) {
        let s = self.locks.stats;
        self.stats.lock_acquired = s.acquired;
        self.stats.lock_fenced = s.fenced;
        self.stats.lock_fenced_refused = s.fenced_refused;
        self.stats.lock_unfenced = s.unfenced;
        self.stats.lock_unfenced_non_owner = s.unfenced_non_owner;
        self.stats.lock_max_handover_us = s.max_handover_us;
        self.stats.lock_max_handover_net_us = s.max_handover_net_us;
    }
}
