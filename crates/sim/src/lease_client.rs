//! Lease holders: each grants a lease, attaches two keys to it (so that its expiry
//! deletes two keys at one revision), and sends a keep-alive every TTL/3. Now and then
//! a holder stops its keep-alives (the lease must then expire) or revokes the lease;
//! either way it starts over with a new lease later. Requests are retried like the
//! other clients' (same session sequence number: applied at most once). What the
//! lease checkers need is reported to them as it happens.

use crate::host::{ClientOutcome, ClientRequest, HostState};
use crate::kv::{lease_id, Command, KvOp, KvResult, CHECKPOINT_TICKS};
use crate::lease_check::{LeaderSample, LeaseBounds};
use crate::world::{Event, Simulation};

/// Session ids of the holders start here.
pub(crate) const HOLDER_BASE: u64 = 1 << 40;

/// Holders the key space has room for (each uses 16 keys, from `k100`).
pub(crate) const MAX_HOLDERS: usize = 9;

/// Lease TTLs the holders draw from, in lease-seconds (see `kv::LESSOR_TICK_MS`).
const TTL_SECS: [i64; 2] = [20, 30];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    Idle,
    Granting,
    /// Attaching key number `n` (0 or 1).
    Attaching(u8),
    Holding,
    Revoking,
    /// Keep-alives stopped: waiting for the lease to expire before starting over.
    Stopped,
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct HolderOp {
    cmd: Command,
    attempt: u64,
    /// When the operation was first sent (its first attempt).
    sent_us: u64,
}

#[derive(Debug)]
pub(crate) struct Holder {
    seq: u64,
    pub(crate) target: usize,
    cycle: u64,
    lease: i64,
    ttl_secs: i64,
    stage: Stage,
    pub(crate) current: Option<HolderOp>,
    next_attempt: u64,
    /// Whether to keep going (false in the liveness phase: stop keep-alives).
    pub(crate) active: bool,
}

/// The two keys of holder `h`'s lease in cycle `cycle`.
fn keys_of(h: usize, cycle: u64) -> [u8; 2] {
    let base = 100 + 16 * h as u8 + 2 * (cycle % 8) as u8;
    [base, base + 1]
}

impl Holder {
    pub(crate) fn new(target: usize) -> Holder {
        Holder {
            seq: 0,
            target,
            cycle: 0,
            lease: 0,
            ttl_secs: 0,
            stage: Stage::Idle,
            current: None,
            next_attempt: 0,
            active: true,
        }
    }

    /// Whether the holder has an operation in flight.
    pub(crate) fn busy(&self) -> bool {
        self.current.is_some()
    }
}

impl Simulation {
    /// One lease-second in simulated microseconds.
    pub(crate) fn lease_second_us(&self) -> u64 {
        self.opts.tick_us * 1000 / crate::kv::LESSOR_TICK_MS
    }

    pub(crate) fn start_holders(&mut self) {
        let n = self.opts.lease_holders.min(MAX_HOLDERS);
        for h in 0..n {
            let target = self.aux_rng.range(0, self.hosts.len() as u64) as usize;
            self.holders.push(Holder::new(target));
            let d = self.aux_rng.range(0, 500_000);
            self.schedule(d, Event::HolderIssue { holder: h });
        }
    }

    /// The holder's next step.
    pub(crate) fn on_holder_issue(&mut self, h: usize) {
        let ho = &mut self.holders[h];
        if ho.busy() {
            return;
        }
        let op = match ho.stage {
            Stage::Idle | Stage::Stopped if !ho.active => return,
            Stage::Idle | Stage::Stopped => {
                ho.cycle += 1;
                ho.lease = lease_id(h as u64, ho.cycle);
                ho.ttl_secs = *self.aux_rng.pick(&TTL_SECS).unwrap_or(&TTL_SECS[0]);
                ho.stage = Stage::Granting;
                KvOp::LeaseGrant {
                    id: ho.lease,
                    ttl: ho.ttl_secs,
                }
            }
            Stage::Attaching(n) => KvOp::PutLeased {
                key: keys_of(h, ho.cycle)[n as usize],
                value: 0,
                lease: ho.lease,
            },
            Stage::Holding if !ho.active || self.aux_rng.chance(1, 10) => {
                return self.stop_holder(h);
            }
            Stage::Holding if self.aux_rng.chance(1, 12) => {
                ho.stage = Stage::Revoking;
                self.leases.on_revoke_sent(ho.lease);
                KvOp::LeaseRevoke { id: ho.lease }
            }
            Stage::Holding => KvOp::LeaseRenew { id: ho.lease },
            Stage::Granting | Stage::Revoking => return,
        };
        self.holder_begin(h, op);
    }

    fn holder_begin(&mut self, h: usize, op: KvOp) {
        let ho = &mut self.holders[h];
        ho.seq += 1;
        let value = (HOLDER_BASE + h as u64) * 1_000_000 + ho.seq;
        let op = match op {
            KvOp::PutLeased { key, lease, .. } => KvOp::PutLeased { key, value, lease },
            op => op,
        };
        let cmd = Command {
            client: HOLDER_BASE + h as u64,
            seq: ho.seq,
            op,
        };
        ho.next_attempt += 1;
        let attempt = ho.next_attempt;
        ho.current = Some(HolderOp {
            cmd,
            attempt,
            sent_us: self.now_us,
        });
        self.log(|| format!("holder {h} invokes {op:?}"));
        self.holder_send_later(h, attempt, 0);
    }

    /// Stops the keep-alives: the lease must now expire; a new one is granted later.
    fn stop_holder(&mut self, h: usize) {
        let ho = &mut self.holders[h];
        ho.stage = Stage::Stopped;
        let (lease, ttl_secs, active) = (ho.lease, ho.ttl_secs, ho.active);
        self.leases.on_stopped(lease);
        self.log(|| format!("holder {h} stops the keep-alives of lease {lease:#x}"));
        if active {
            let wait = ttl_secs as u64 * self.lease_second_us() + 2_000_000;
            self.schedule(wait, Event::HolderIssue { holder: h });
        }
    }

    fn holder_send_later(&mut self, h: usize, attempt: u64, delay_us: u64) {
        let lat = self.rng.range(50, 300);
        let holder = h;
        self.schedule(delay_us + lat, Event::HolderSend { holder, attempt });
        let timeout = delay_us + self.opts.client_timeout_us;
        self.schedule(timeout, Event::HolderTimeout { holder, attempt });
    }

    pub(crate) fn on_holder_send(&mut self, h: usize, attempt: u64) {
        let ho = &self.holders[h];
        let Some(cur) = ho.current.filter(|c| c.attempt == attempt) else {
            return;
        };
        let target = ho.target;
        self.send_write(target, HOLDER_BASE + h as u64, attempt, cur.cmd);
    }

    /// Sends attempt `attempt` of a workload client's write `cmd` to member `target`,
    /// or, one time in two, to a member picked at random (nothing if it is down).
    pub(crate) fn send_write(&mut self, target: usize, client: u64, attempt: u64, cmd: Command) {
        let mut i = target;
        if self.rng.chance(1, 2) {
            i = self.rng.range(0, self.hosts.len() as u64) as usize;
        }
        if self.hosts[i].state != HostState::Up {
            return;
        }
        self.with_host(i, |host, _, _| {
            host.on_client(client, attempt, ClientRequest::Write(cmd));
            Ok(())
        });
    }

    /// Retries the current attempt, if it is still `attempt`, at the next member (or
    /// at `hint`).
    pub(crate) fn holder_retry(
        &mut self,
        h: usize,
        attempt: u64,
        hint: Option<usize>,
        delay_us: u64,
    ) {
        let n = self.hosts.len();
        let ho = &mut self.holders[h];
        let Some(cur) = ho.current.as_mut().filter(|c| c.attempt == attempt) else {
            return;
        };
        ho.target = hint.unwrap_or((ho.target + 1) % n);
        ho.next_attempt += 1;
        cur.attempt = ho.next_attempt;
        let attempt = cur.attempt;
        self.holder_send_later(h, attempt, delay_us);
    }

    pub(crate) fn on_holder_reply(&mut self, h: usize, attempt: u64, outcome: ClientOutcome) {
        match outcome {
            ClientOutcome::Redirect(Some(id)) => {
                self.holder_retry(h, attempt, Some((id.0 - 1) as usize), 200)
            }
            ClientOutcome::Redirect(None) | ClientOutcome::Unknown => {
                self.holder_retry(h, attempt, None, 20_000)
            }
            ClientOutcome::Written(result) => self.holder_done(h, attempt, result),
            ClientOutcome::Read(_) => {}
        }
    }

    fn holder_done(&mut self, h: usize, attempt: u64, result: KvResult) {
        let Some(op) = self.holders[h].current.filter(|c| c.attempt == attempt) else {
            return;
        };
        self.log(|| format!("holder {h} completed {:?}: {result:?}", op.cmd.op));
        let ttl_us = self.holders[h].ttl_secs as u64 * self.lease_second_us();
        let ho = &mut self.holders[h];
        ho.current = None;
        let (lease, now) = (ho.lease, self.now_us);
        let next = match (op.cmd.op, result) {
            (KvOp::LeaseGrant { .. }, _) => {
                self.leases
                    .on_granted(lease, h as u64, ttl_us, op.sent_us, now);
                ho.stage = Stage::Attaching(0);
                Some(0)
            }
            (KvOp::PutLeased { .. }, KvResult::Done) => {
                self.leases.on_attached(lease);
                match ho.stage {
                    Stage::Attaching(0) => ho.stage = Stage::Attaching(1),
                    _ => ho.stage = Stage::Holding,
                }
                Some(if ho.stage == Stage::Holding {
                    ttl_us / 3
                } else {
                    0
                })
            }
            (KvOp::LeaseRenew { .. }, KvResult::Lease(true)) => {
                if let Err(v) = self.leases.on_keepalive(lease, op.sent_us, now) {
                    self.fail(v);
                }
                // Now and then a burst, so that keep-alives also meet a leader that
                // renews from memory (it does so shortly after one went through its log).
                Some(if self.aux_rng.chance(2, 3) {
                    self.aux_rng.range(1_000, 30_000)
                } else {
                    ttl_us / 3
                })
            }
            _ => {
                // Revoked, or the lease is gone: start over after a while.
                ho.stage = Stage::Idle;
                self.leases.on_stopped(lease);
                Some(self.aux_rng.range(20_000, 200_000))
            }
        };
        if let Some(d) = next {
            self.schedule(d, Event::HolderIssue { holder: h });
        }
    }
}

/// How often the lease checker samples the leader.
const SAMPLE_US: u64 = 20_000;

/// The lease checkers' stated bounds for a run with options `opts` (see
/// `lease_check`).
pub(crate) fn bounds(opts: &crate::options::SimOptions) -> LeaseBounds {
    let tick = opts.tick_us;
    let lease_second_ticks = crate::kv::LESSOR_TICK_MS * 1000 / tick.max(1);
    LeaseBounds {
        safety_us: 2 * tick,
        liveness_us: 50 * tick,
        per_promotion_us: (CHECKPOINT_TICKS + lease_second_ticks + opts.election_timeout_ticks + 1)
            * tick,
    }
}

impl Simulation {
    /// Starts sampling the leader for the lease checkers.
    pub(crate) fn start_lease_sampling(&mut self) {
        self.schedule(SAMPLE_US, Event::LeaseSample);
    }

    pub(crate) fn on_lease_sample(&mut self) {
        self.schedule(SAMPLE_US, Event::LeaseSample);
        let leader = self.leader().and_then(|id| {
            let s = self.hosts[(id.0 - 1) as usize].engine_status()?;
            Some(LeaderSample {
                id: id.0,
                epoch: s.epoch,
                committed: s.committed.0,
                last_index: s.last_index.0,
            })
        });
        self.leases.sample(self.now_us, SAMPLE_US, leader);
        if let Err(v) = self.leases.check_liveness() {
            self.fail(v);
        }
        self.check_lock_handover();
    }

    /// Member `i` applied writes with these events: the committed history grows, and
    /// the deletion of a lease's key reaches the lease checker.
    pub(crate) fn on_events(&mut self, i: usize, events: Vec<kv::Event>) {
        let fresh = match self.watch_history.on_applied(self.ids[i].0, events) {
            Ok(fresh) => fresh,
            Err(v) => return self.fail(v),
        };
        self.lock_events(&fresh);
        for e in fresh {
            let lease = e.prev_kv.as_ref().map_or(0, |p| p.lease);
            if e.kind == kv::EventKind::Delete && lease != 0 {
                if let Err(v) = self.leases.on_deleted(lease, self.now_us) {
                    return self.fail(v);
                }
            }
        }
    }
}
