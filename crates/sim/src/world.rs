//! The simulated world: virtual time, an event queue, hosts, network and clients.
//! Single-threaded; every random choice comes from the run's seed.

use crate::client::Client;
use crate::hash::mix;
use crate::host::{ClientOutcome, Host, HostState, Outbox, Reply, SimInvariants, STORAGE_FAILURE};
use crate::invariants::Violation;
use crate::nemesis::{HealAction, NemesisState};
use crate::net::Network;
use crate::options::{FaultKind, SimOptions};
use crate::raft_engine::mem::CrashMode;
use crate::raft_engine::node_disk::NodeDisk;
use crate::raft_engine::{self, describe, EngineConfig, Msg, SimEngine};
use check::{KvModel, Recorder};
use engine::{Engine, NodeId, Role};
use seedrng::Rng;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

#[derive(Debug)]
pub(crate) enum Event {
    Deliver { from: NodeId, to: NodeId, msg: Msg },
    Tick { node: usize, incarnation: u64 },
    Sync { node: usize, incarnation: u64 },
    ClientIssue { client: usize },
    ClientSend { client: usize, attempt: u64 },
    ClientTimeout { client: usize, attempt: u64 },
    Nemesis,
    Heal(HealAction),
    BeginLiveness,
    LivenessCheck,
    HolderIssue { holder: usize },
    HolderSend { holder: usize, attempt: u64 },
    HolderTimeout { holder: usize, attempt: u64 },
    WatchPoll { watcher: usize },
    LeaseSample,
    LockIssue { locker: usize },
    LockSend { locker: usize, attempt: u64 },
    LockTimeout { locker: usize, attempt: u64 },
}

/// A healthy 5-node run under faults handles about 1,500 events per simulated second;
/// far more means a message or timer storm, itself a bug.
const EVENTS_PER_SIM_SECOND_MAX: u64 = 40_000;

struct Scheduled {
    at_us: u64,
    seq: u64,
    event: Event,
}

impl PartialEq for Scheduled {
    fn eq(&self, o: &Self) -> bool {
        (self.at_us, self.seq) == (o.at_us, o.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.at_us, self.seq).cmp(&(o.at_us, o.seq))
    }
}

/// Counters for reports and message-count bounds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Events processed.
    pub events: u64,
    /// Messages nodes handed to the network.
    pub messages_sent: u64,
    /// Messages delivered to a running node.
    pub messages_delivered: u64,
    /// Crashes injected.
    pub crashes: u64,
    /// Client operations completed.
    pub ops_completed: u64,
    /// Watch events delivered to the watchers (all checked).
    pub watch_events: u64,
    /// Watches refused as compacted (checked to be so).
    pub watches_compacted: u64,
    /// Leases whose holder stopped and whose keys were then deleted by expiry (a lock
    /// client's paused in its critical section included).
    pub leases_expired: u64,
    /// Times a lock client learnt that it holds the lock.
    pub lock_acquired: u64,
    /// Fenced lock writes in the history (each by the owner then: checked).
    pub lock_fenced: u64,
    /// Fenced lock writes refused (the writer's key was gone: its pause outlasted it).
    pub lock_fenced_refused: u64,
    /// Unfenced lock writes in the history.
    pub lock_unfenced: u64,
    /// Unfenced lock writes in the history by a client that was not the owner then
    /// (counted, not failed: a lease-based lock cannot prevent them).
    pub lock_unfenced_non_owner: u64,
    /// The longest lock handover (from the owner change in the history to the new
    /// owner learning it), microseconds.
    pub lock_max_handover_us: u64,
    /// The longest lock handover less what its bound allows for stalls, elections and
    /// the new owner's lost attempts (the bound's fixed part covers the rest).
    pub lock_max_handover_net_us: u64,
    /// Membership changes the nemesis asked a leader for, and those it refused (one
    /// was in progress, or no leader could be asked).
    pub changes_asked: u64,
    /// Of those, the ones a leader refused.
    pub changes_refused: u64,
    /// Membership changes applied (counted on the leader that ordered them).
    pub changes_applied: u64,
    /// Leadership transfers the nemesis started.
    pub transfers_started: u64,
    /// Of those, the ones whose target was the next node to lead.
    pub transfers_done: u64,
}

/// A deterministic simulation of a Raft cluster under faults.
pub struct Simulation {
    pub(crate) opts: SimOptions,
    pub(crate) seed: u64,
    pub(crate) rng: Rng,
    pub(crate) now_us: u64,
    queue: BinaryHeap<Reverse<Scheduled>>,
    next_seq: u64,
    pub(crate) hosts: Vec<Host>,
    pub(crate) ids: Vec<NodeId>,
    pub(crate) net: Network,
    pub(crate) clients: Vec<Client>,
    pub(crate) history: Recorder<KvModel>,
    pub(crate) inv: SimInvariants,
    pub(crate) violation: Option<Violation>,
    pub(crate) trace: Option<Vec<String>>,
    pub(crate) stats: Stats,
    pub(crate) disk_latency_us: (u64, u64),
    pub(crate) crash_mode: CrashMode,
    pub(crate) nemesis: NemesisState,
    pub(crate) liveness: Option<crate::run::LivenessState>,
    /// Value written at each applied index (Put commands), for scenario tests.
    pub(crate) values_at: std::collections::BTreeMap<u64, u64>,
    /// Writes acknowledged to clients: (index, entry hash).
    pub(crate) acked: Vec<(u64, u64)>,
    /// Answers to reads issued directly by scenario tests: (probe id, outcome).
    pub(crate) probe_replies: Vec<(u64, ClientOutcome)>,
    pub(crate) next_probe: u64,
    pub(crate) next_start_seq: u64,
    /// The lease holders' and watchers' own choices (so that they do not shift the
    /// draws of the rest of the run).
    pub(crate) aux_rng: Rng,
    pub(crate) holders: Vec<crate::lease_client::Holder>,
    pub(crate) watchers: Vec<crate::watch::Watcher>,
    pub(crate) leases: crate::lease_check::LeaseChecker,
    /// The committed history, revision by revision: the watch checkers' reference.
    pub(crate) watch_history: crate::watch_check::History,
    /// The lock clients' own choices.
    pub(crate) lock_rng: Rng,
    pub(crate) lockers: Vec<crate::lock_client::Locker>,
    pub(crate) locks: crate::lock_check::LockChecker,
}

/// Session id of commands that scenario tests start directly.
pub(crate) const START_CLIENT: u64 = u64::MAX - 1;

/// The client id of the leader's own auto-compaction requests (answers are dropped).
pub(crate) const COMPACTOR: u64 = u64::MAX - 2;

/// Client id used for reads that scenario tests issue directly.
pub(crate) const PROBE_CLIENT: u64 = u64::MAX;

impl Simulation {
    /// Builds a cluster of `opts.nodes` fresh nodes; nothing runs until time advances.
    pub fn new(seed: u64, opts: SimOptions) -> Simulation {
        let mut rng = Rng::new(seed);
        let spares = if opts.faults.has(FaultKind::Membership) {
            crate::membership::SPARES
        } else {
            0
        };
        let ids: Vec<NodeId> = (1..=(opts.nodes + spares) as u64).map(NodeId).collect();
        let mut sim = Simulation {
            hosts: Vec::new(),
            ids: ids.clone(),
            net: Network::default(),
            clients: Vec::new(),
            history: Recorder::new(),
            inv: SimInvariants::default(),
            violation: None,
            trace: None,
            stats: Stats::default(),
            disk_latency_us: (50, 400),
            crash_mode: if opts.faults.has(FaultKind::Disk) {
                CrashMode::TearUnsynced
            } else {
                CrashMode::LoseUnsynced
            },
            nemesis: NemesisState::default(),
            liveness: None,
            values_at: Default::default(),
            acked: Vec::new(),
            probe_replies: Vec::new(),
            next_probe: 0,
            next_start_seq: 0,
            queue: BinaryHeap::new(),
            next_seq: 0,
            now_us: 0,
            rng: rng.fork(0),
            aux_rng: rng.fork(1),
            holders: Vec::new(),
            watchers: Vec::new(),
            leases: crate::lease_check::LeaseChecker::new(crate::lease_client::bounds(&opts)),
            watch_history: Default::default(),
            lock_rng: rng.fork(2),
            lockers: Vec::new(),
            locks: crate::lock_check::LockChecker::new(crate::lock_client::bounds(&opts)),
            seed,
            opts,
        };
        for (i, id) in ids.iter().enumerate() {
            let node = raft_engine::boot(sim.engine_config(*id));
            let disk = if sim.opts.faults.has(FaultKind::Disk) {
                NodeDisk::wal(mix(seed, id.0 + 1000), sim.opts.wal_segment_bytes)
            } else {
                NodeDisk::model()
            };
            let host_opts = crate::host::HostOptions {
                snapshot_every: sim.opts.snapshot_every,
                auto_compact_retain: sim.opts.auto_compact_retain,
                lessor: crate::kv::lessor_options(sim.opts.election_timeout_ticks),
                #[cfg(feature = "planted-bugs")]
                bug: sim.opts.replica_bug,
                #[cfg(feature = "planted-bugs")]
                kv_bug: sim.opts.kv_bug,
            };
            sim.hosts.push(Host::new(*id, node, host_opts, disk));
            let offset = rng.range(0, sim.opts.tick_us);
            sim.schedule(
                offset,
                Event::Tick {
                    node: i,
                    incarnation: 0,
                },
            );
        }
        sim
    }

    /// Node `id`'s configuration: the first `opts.nodes` ids found the cluster; the
    /// spares start knowing no group, and join when a leader adds them.
    pub(crate) fn engine_config(&self, id: NodeId) -> EngineConfig {
        let founders = &self.ids[..self.opts.nodes.min(self.ids.len())];
        let voters = if founders.contains(&id) {
            founders
        } else {
            &[]
        };
        raft_engine::config(&self.opts, self.seed, voters, id)
    }

    /// Turns on trace recording (a line per event).
    pub fn enable_trace(&mut self) {
        self.trace = Some(Vec::new());
    }

    pub(crate) fn log(&mut self, line: impl FnOnce() -> String) {
        if let Some(t) = self.trace.as_mut() {
            let s = line();
            t.push(format!("[{:>10.6}s] {s}", self.now_us as f64 / 1e6));
        }
    }

    pub(crate) fn schedule(&mut self, delay_us: u64, event: Event) {
        self.next_seq += 1;
        let s = Scheduled {
            at_us: self.now_us + delay_us,
            seq: self.next_seq,
            event,
        };
        self.queue.push(Reverse(s));
    }

    /// Processes events until simulated time `until_us`, or a violation.
    pub(crate) fn run_until_time(&mut self, until_us: u64) {
        while self.violation.is_none() {
            let Some(Reverse(top)) = self.queue.peek() else {
                break;
            };
            if top.at_us > until_us {
                break;
            }
            let Some(Reverse(s)) = self.queue.pop() else {
                break;
            };
            self.now_us = s.at_us;
            self.inv.set_time(self.now_us);
            self.stats.events += 1;
            if self.stats.events > EVENTS_PER_SIM_SECOND_MAX * (self.now_us / 1_000_000 + 1) {
                let detail = format!(
                    "{} events in {:.3} simulated seconds: a message or timer storm",
                    self.stats.events,
                    self.now_us as f64 / 1e6
                );
                self.fail(Violation {
                    property: "event-rate-bound",
                    detail,
                    at_us: self.now_us,
                });
                break;
            }
            self.handle(s.event);
        }
        if self.violation.is_none() {
            self.now_us = self.now_us.max(until_us);
        }
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Deliver { from, to, msg } => self.on_deliver(from, to, msg),
            Event::Tick { node, incarnation } => self.on_tick(node, incarnation),
            Event::Sync { node, incarnation } => self.on_sync(node, incarnation),
            Event::ClientIssue { client } => self.on_client_issue(client),
            Event::ClientSend { client, attempt } => self.on_client_send(client, attempt),
            Event::ClientTimeout { client, attempt } => self.on_client_timeout(client, attempt),
            Event::Nemesis => self.on_nemesis(),
            Event::Heal(action) => self.on_heal(action),
            Event::BeginLiveness => self.begin_liveness(),
            Event::LivenessCheck => self.on_liveness_check(),
            Event::HolderIssue { holder } => self.on_holder_issue(holder),
            Event::HolderSend { holder, attempt } => self.on_holder_send(holder, attempt),
            Event::HolderTimeout { holder, attempt } => self.holder_retry(holder, attempt, None, 0),
            Event::WatchPoll { watcher } => self.on_watch_poll(watcher),
            Event::LeaseSample => self.on_lease_sample(),
            Event::LockIssue { locker } => self.on_lock_issue(locker),
            Event::LockSend { locker, attempt } => self.on_lock_send(locker, attempt),
            Event::LockTimeout { locker, attempt } => self.lock_retry(locker, attempt, None, 0),
        }
    }

    pub(crate) fn fail(&mut self, mut v: Violation) {
        if self.violation.is_none() {
            v.at_us = self.now_us;
            self.log(|| format!("VIOLATION {v}"));
            self.violation = Some(v);
        }
    }

    /// Runs `f` on host `i`, drives its effects and schedules what they produced.
    pub(crate) fn with_host(
        &mut self,
        i: usize,
        f: impl FnOnce(&mut Host, &mut Outbox, &mut SimInvariants) -> Result<(), Violation>,
    ) {
        let tracing = self.trace.is_some();
        let mut out = Outbox {
            tracing,
            ..Outbox::default()
        };
        let role_term = |h: &Host| h.engine_status().map(|s| (s.role_detail, s.epoch));
        let before = if tracing {
            role_term(&self.hosts[i])
        } else {
            None
        };
        let host = &mut self.hosts[i];
        let result =
            f(host, &mut out, &mut self.inv).and_then(|()| host.drive(&mut self.inv, &mut out));
        let mut disk_failed = None;
        match result {
            Err(v) if v.property == STORAGE_FAILURE => disk_failed = Some(v.detail),
            Err(v) => self.fail(v),
            Ok(()) => {}
        }
        self.note_transfer(i);
        if let Some(note) = self.hosts[i].restart_note.take() {
            let id = self.ids[i];
            self.log(|| format!("n{id} {note}"));
        }
        if let Some(why) = self.hosts[i].refusal.take() {
            let id = self.ids[i];
            self.log(|| format!("n{id} refuses to start: {why}"));
        }
        if tracing {
            let after = role_term(&self.hosts[i]);
            if after != before {
                if let Some((role, term)) = after {
                    let id = self.ids[i];
                    self.log(|| format!("n{id} is now {role} in epoch {term}"));
                }
            }
        }
        self.dispatch(i, out);
        if let Some(why) = disk_failed {
            self.fail_stop(i, &why);
        }
    }

    fn dispatch(&mut self, i: usize, out: Outbox) {
        let crash_now = self.nemesis.crash_point.is_some_and(|(node, point)| {
            node == i && out.messages.iter().any(|(_, _, m)| point.matches(m))
        });
        for (from, to, msg) in out.messages {
            self.stats.messages_sent += 1;
            let delays = self.net.route(&mut self.rng, from, to);
            if delays.is_empty() {
                self.log(|| format!("n{from}->n{to} {} LOST", SimEngine::message_kind(&msg)));
            }
            for d in delays {
                self.schedule(
                    d,
                    Event::Deliver {
                        from,
                        to,
                        msg: msg.clone(),
                    },
                );
            }
        }
        if out.want_sync && !self.hosts[i].sync_scheduled {
            self.hosts[i].sync_scheduled = true;
            let d = self
                .rng
                .range(self.disk_latency_us.0, self.disk_latency_us.1 + 1);
            let incarnation = self.hosts[i].incarnation;
            self.schedule(
                d,
                Event::Sync {
                    node: i,
                    incarnation,
                },
            );
        }
        for note in out.notes {
            self.log(|| note);
        }
        self.acked.extend(out.acked);
        self.stats.changes_applied += out.changes_applied;
        for (index, value) in out.values {
            self.values_at.entry(index).or_insert(value);
        }
        if !out.events.is_empty() {
            self.on_events(i, out.events);
        }
        for r in out.replies {
            self.on_reply(r);
        }
        if crash_now {
            self.nemesis.crash_point = None;
            self.crash_at_point(i);
        }
    }

    fn on_deliver(&mut self, from: NodeId, to: NodeId, msg: Msg) {
        let i = (to.0 - 1) as usize;
        match self.hosts[i].state {
            HostState::Up => {}
            HostState::Paused => {
                self.hosts[i].paused_inbox.push((from, msg));
                return;
            }
            HostState::Down | HostState::Stopped => return,
        }
        self.stats.messages_delivered += 1;
        self.log(|| format!("n{from}->n{to} {}", describe(&msg)));
        self.with_host(i, |h, _, _| h.step(from, msg));
    }

    fn on_tick(&mut self, i: usize, incarnation: u64) {
        let (inc, state) = (self.hosts[i].incarnation, self.hosts[i].state);
        if inc != incarnation || matches!(state, HostState::Down | HostState::Stopped) {
            return;
        }
        self.schedule(
            self.opts.tick_us,
            Event::Tick {
                node: i,
                incarnation,
            },
        );
        if state == HostState::Paused {
            return;
        }
        self.with_host(i, |h, _, _| {
            h.tick();
            Ok(())
        });
    }

    fn on_sync(&mut self, i: usize, incarnation: u64) {
        let h = &mut self.hosts[i];
        if h.incarnation != incarnation || h.state != HostState::Up {
            // Paused hosts resync on resume; crashed ones lost the write.
            h.sync_scheduled = false;
            return;
        }
        self.with_host(i, |h, _, _| h.on_sync());
    }

    pub(crate) fn schedule_sync(&mut self, i: usize) {
        let out = Outbox {
            want_sync: true,
            ..Outbox::default()
        };
        self.dispatch(i, out);
    }

    fn on_reply(&mut self, r: Reply) {
        if r.client == PROBE_CLIENT {
            self.probe_replies.push((r.attempt, r.outcome));
            return;
        }
        let holder = r.client.wrapping_sub(crate::lease_client::HOLDER_BASE) as usize;
        if holder < self.holders.len() {
            self.on_holder_reply(holder, r.attempt, r.outcome);
            return;
        }
        let locker = r.client.wrapping_sub(crate::lock_client::LOCKER_BASE) as usize;
        if locker < self.lockers.len() {
            self.on_lock_reply(locker, r.attempt, r.outcome);
            return;
        }
        let c = r.client as usize;
        let Some(client) = self.clients.get_mut(c) else {
            return;
        };
        match r.outcome {
            ClientOutcome::Redirect(hint) => {
                let current = client.current.map(|f| f.attempt);
                if current != Some(r.attempt) {
                    return;
                }
                let n = self.hosts.len();
                client.target = match hint {
                    Some(id) => (id.0 - 1) as usize,
                    None => (client.target + 1) % n,
                };
                let backoff = if hint.is_some() { 200 } else { 20_000 };
                if let Some(attempt) = client.retry() {
                    self.send_attempt(c, attempt, backoff);
                }
            }
            ClientOutcome::Unknown => self.on_unknown(c, r.attempt),
            outcome => {
                if client.complete(r.attempt, outcome, &mut self.history, self.now_us) {
                    self.stats.ops_completed += 1;
                    self.log(|| format!("client {c} completed {outcome:?}"));
                    self.think(c);
                }
            }
        }
    }

    /// The client's next operation after it thinks a while.
    fn think(&mut self, c: usize) {
        let think = self.opts.think_us;
        let d = self.rng.range(think / 2, think + think / 2);
        self.schedule(d, Event::ClientIssue { client: c });
    }

    /// The outcome of attempt `attempt` is unknown: it is retried at another member
    /// (a write too: its session makes a second application a no-op).
    fn on_unknown(&mut self, c: usize, attempt: u64) {
        self.retry_elsewhere(c, attempt, 20_000);
    }

    /// Retries the client's current attempt, if it is still `attempt`, at the next
    /// member after `delay_us`.
    fn retry_elsewhere(&mut self, c: usize, attempt: u64, delay_us: u64) {
        let n = self.hosts.len();
        let client = &mut self.clients[c];
        if client.current.map(|f| f.attempt) != Some(attempt) {
            return;
        }
        client.target = (client.target + 1) % n;
        if let Some(a) = client.retry() {
            self.send_attempt(c, a, delay_us);
        }
    }

    pub(crate) fn send_attempt(&mut self, c: usize, attempt: u64, delay_us: u64) {
        let lat = self.rng.range(50, 300);
        self.schedule(delay_us + lat, Event::ClientSend { client: c, attempt });
        self.schedule(
            delay_us + self.opts.client_timeout_us,
            Event::ClientTimeout { client: c, attempt },
        );
    }

    fn on_client_issue(&mut self, c: usize) {
        if self.clients[c].current.is_some() {
            return;
        }
        let keys = self.opts.keys;
        let Some(req) = self.clients[c].next_request(&mut self.rng, keys) else {
            return;
        };
        let attempt = self.clients[c].begin(req, &mut self.history, self.now_us);
        self.log(|| format!("client {c} invokes {req:?}"));
        self.send_attempt(c, attempt, 0);
    }

    fn on_client_send(&mut self, c: usize, attempt: u64) {
        let client = &self.clients[c];
        let Some(cur) = client.current.filter(|f| f.attempt == attempt) else {
            return;
        };
        let mut i = client.target;
        if self.rng.chance(1, 2) {
            // Half of the requests go to any member: followers serve reads through the
            // leader's read index and hand writes to the leader.
            i = self.rng.range(0, self.hosts.len() as u64) as usize;
        }
        if self.hosts[i].state != HostState::Up {
            return;
        }
        let id = client.id;
        self.with_host(i, |h, _, _| {
            h.on_client(id, attempt, cur.request);
            Ok(())
        });
    }

    fn on_client_timeout(&mut self, c: usize, attempt: u64) {
        self.retry_elsewhere(c, attempt, 0);
    }

    /// The running leader with the highest term, if any.
    pub fn leader(&self) -> Option<NodeId> {
        self.hosts
            .iter()
            .filter(|h| h.state == HostState::Up)
            .filter_map(|h| h.engine_status())
            .filter(|s| s.role == Role::Leader)
            .max_by_key(|s| s.epoch)
            .map(|s| s.id)
    }
}
