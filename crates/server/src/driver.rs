//! The member's driver: one OS thread that owns the replica (the consensus engine, the
//! state machine's writes and the client requests in flight) and the WAL. Each round it
//! ticks, drains every queued input (peer messages, proposals, reads), and then carries
//! out the replica's actions in batches: messages go to the peer queues at once, all
//! durable writes are made durable with one fdatasync, and answers go to the clients.
//! Everything about requests and apply lives in the `replica` crate, which the
//! simulator drives too; this file keeps only the runtime.

use crate::inbox::{Inbox, InboxError, InboxSender};
use crate::machine::{Client, ServerMachine};
pub use crate::machine::{DriverError, ReadReply, WriteReply};
pub use crate::raft_engine::MemberStorage;
use crate::raft_engine::{self, EngineConfig, MemberEngine, Recovered, SnapshotMeta};
use crate::slow::{Phase, RoundTimes, SLOW_ROUND};
use crate::snapshotter::{self, SnapOutcome, SnapState};
use crate::state::{Metrics, NodeStatus, Shared};
use engine::{Engine, Fatal, IoId, NodeId, Role};
use replica::{Action, Refused, Replica, ReplicaOptions, SnapshotPolicy};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long one slice of snapshot serialization may take (and the least time between
/// two slices).
const SLICE: Duration = Duration::from_millis(2);

/// Keys a store compaction visits per step (about a millisecond where every key loses
/// history); steps repeat until `SLICE` is spent.
const COMPACT_KEYS: usize = 1024;

/// How long a member that was removed from the cluster lingers before it stops.
const REMOVED_GRACE: Duration = Duration::from_secs(1);

/// A peer message of the member's engine.
pub type PeerMessage = <MemberEngine as Engine>::Message;

/// An input to the driver.
#[derive(Debug)]
pub enum Input {
    /// A message from a peer.
    Peer(NodeId, PeerMessage),
    /// A transport ping from a peer (a heartbeat for the failure detector), with the
    /// token to answer with.
    Ping(NodeId, u64),
    /// A peer's answer to our ping, with that ping's token.
    Pong(NodeId, u64),
    /// A peer's connection, its handshake checked: the inbox reads its frames from
    /// now on (`buffered`: bytes already read past the handshake).
    PeerStream {
        /// The peer.
        from: NodeId,
        /// The connection.
        stream: std::net::TcpStream,
        /// Bytes read past the handshake.
        buffered: Vec<u8>,
        /// Counts the bytes the inbox reads from it.
        received: prometheus::IntCounter,
    },
    /// A client write to replicate: a command in `kv::command`'s encoding.
    Propose(Vec<u8>, WriteReply),
    /// A linearizable read barrier: replies once the store has applied through the
    /// leader's commit index as of the request.
    ReadIndex(ReadReply),
    /// A membership change a client asked for (MemberAdd, MemberRemove, MemberUpdate,
    /// MemberPromote): answered once applied, or refused.
    ChangeMembership(crate::members::MemberRequest, crate::change::ChangeReply),
    /// Hand leadership to a member (MoveLeader, or a leader stopping): the answer says
    /// whether the hand-over started.
    TransferLeader(
        NodeId,
        tokio::sync::oneshot::Sender<Result<(), engine::TransferRefused>>,
    ),
    /// The snapshot thread wrote its file (or failed to).
    Snapshot(SnapOutcome),
    /// The next WAL segment was prepared in the background (true) or could not be.
    SegmentPrepared(bool),
    /// A peer answered that this member was removed from the cluster: stop.
    Removed,
    /// Defragment: rewrite what the store and the log need, drop the rest.
    Defragment(crate::defrag::DefragReply),
    /// Stop the driver.
    Shutdown,
}

/// Outgoing peer traffic: encoded frames per peer.
pub trait PeerSink: Send {
    /// Queues frames for `to` (dropped if the peer's queue is full).
    fn send(&mut self, to: NodeId, frames: Vec<u8>, count: u64);
    /// The members to keep links to (this member among them or not).
    fn set_peers(&mut self, members: &[crate::config::MemberInfo]);
}

/// Driver settings.
pub struct DriverOptions {
    /// The engine's configuration.
    pub engine: EngineConfig,
    /// Real time per tick.
    pub tick: Duration,
    /// Applied entries between snapshots.
    pub snapshot_count: u64,
    /// Where snapshot files go (the WAL's directory).
    pub snapshot_dir: PathBuf,
    /// The driver's own input queue (the snapshot thread reports through it).
    pub inputs: InboxSender,
    /// Where request ids start (different on every start of every member).
    pub id_seed: u64,
    /// Testing only: addresses to dial by member name (`--unsafe-peer-dial`).
    pub peer_dial: Vec<(String, String)>,
    /// A deliberately planted bug.
    #[cfg(feature = "planted-bugs")]
    pub planted_bug: Option<crate::config::ServerBug>,
}

/// The driver's state.
pub struct Driver {
    pub(crate) replica: Replica<MemberEngine, ServerMachine, Client>,
    storage: MemberStorage,
    pub(crate) shared: Arc<Shared>,
    pub(crate) peers: Box<dyn PeerSink>,
    /// Membership changes clients asked for, in order (the first may be ordered).
    pub(crate) changes: std::collections::VecDeque<crate::change::PendingChange>,
    /// The membership the links and detectors follow.
    pub(crate) membership: engine::Membership,
    /// The membership of the last change applied, and the one the links include.
    pub(crate) applied_membership: engine::Membership,
    pub(crate) linked: engine::Membership,
    /// Testing only: addresses to dial by member name.
    pub(crate) peer_dial: Vec<(String, String)>,
    /// A change removing this member applied: the driver stops.
    pub(crate) removed: bool,
    /// When the driver saw this member removed.
    pub(crate) removed_at: Option<Instant>,
    /// Defragmentations under way.
    pub(crate) defrag: crate::defrag::Defrag,
    /// Removed members whose connections to this one must close.
    pub(crate) dropped: Vec<NodeId>,
    tick: Duration,
    snapshot_dir: PathBuf,
    inputs: InboxSender,
    snap: SnapState,
    last_slice: Instant,
    /// The store began a compaction whose history is not all dropped yet.
    compacting: bool,
    ticks: u64,
    /// The tick of the last ping sent to every peer.
    pinged_at: u64,
    /// The clock of ping tokens (microseconds since the driver started).
    clock: Instant,
    /// Each peer's ping round-trip histogram.
    pub(crate) round_trips: BTreeMap<NodeId, prometheus::Histogram>,
    last_leader: Option<NodeId>,
    last_role: Role,
    /// Where the current round's time went (a slow round is logged).
    times: RoundTimes,
    #[cfg(feature = "planted-bugs")]
    lazy_sync: Option<Instant>,
}

impl Driver {
    /// Builds a driver from recovered storage.
    pub fn new(
        opts: DriverOptions,
        storage: MemberStorage,
        recovered: Recovered,
        shared: Arc<Shared>,
        peers: Box<dyn PeerSink>,
    ) -> Result<Driver, String> {
        let engine = raft_engine::boot(opts.engine, recovered)?;
        let replica_opts = ReplicaOptions::new(
            opts.id_seed,
            SnapshotPolicy::spread(opts.snapshot_count),
            false,
        );
        let machine = ServerMachine::new(shared.clone());
        let round_trips = shared
            .members()
            .iter()
            .filter(|m| m.id != shared.member_id)
            .map(|m| {
                let to = Metrics::peer_label(m.id);
                let h = shared
                    .metrics
                    .peer_round_trip_seconds
                    .with_label_values(&[&to]);
                (m.id, h)
            })
            .collect();
        Ok(Driver {
            replica: Replica::new(engine, machine, replica_opts),
            storage,
            shared,
            peers,
            changes: Default::default(),
            membership: Default::default(),
            applied_membership: Default::default(),
            linked: Default::default(),
            peer_dial: opts.peer_dial,
            removed: false,
            defrag: Default::default(),
            removed_at: None,
            dropped: Vec::new(),
            tick: opts.tick,
            snapshot_dir: opts.snapshot_dir,
            inputs: opts.inputs,
            snap: SnapState::Idle,
            last_slice: Instant::now(),
            compacting: false,
            ticks: 0,
            pinged_at: 0,
            clock: Instant::now(),
            round_trips,
            last_role: Role::Follower,
            last_leader: None,
            times: RoundTimes::default(),
            #[cfg(feature = "planted-bugs")]
            lazy_sync: opts
                .planted_bug
                .filter(|b| *b == crate::config::ServerBug::AckBeforeFsync)
                .map(|_| Instant::now()),
        })
    }

    /// Runs until `Shutdown` or until every sender is gone. An environmental failure
    /// (a failed write or fsync, a corrupt snapshot) stops it with a [`Fatal`] error:
    /// clients waiting get "stopped", and the caller must stop the member.
    pub fn run(mut self, inbox: Inbox) -> Result<(), Fatal> {
        let result = self.serve(inbox);
        for c in self.replica.drain_clients() {
            c.fail(DriverError::Stopped);
        }
        result
    }

    fn serve(&mut self, mut inbox: Inbox) -> Result<(), Fatal> {
        let mut next_tick = Instant::now() + self.tick;
        let mut inputs: Vec<Input> = Vec::new();
        loop {
            // While a snapshot is being cut or the store compacted, wake up for the
            // next slice.
            let mut wait = next_tick.saturating_duration_since(Instant::now());
            if self.compacting || matches!(self.snap, SnapState::Serializing { .. }) {
                wait = wait.min(SLICE);
            }
            match inbox.wait(wait, &mut inputs) {
                Ok(()) => {}
                Err(InboxError::Disconnected) => return Ok(()),
                Err(InboxError::Failed(e)) => return Err(e),
            }
            self.times.begin();
            // Time first: after a stall (a slow fsync, a paused process) the overdue
            // ticks run before the inputs that waited, so a keep-alive is never clocked
            // from a stale tick (its lease would expire early by the stall).
            let now = Instant::now();
            while now >= next_tick {
                self.replica.tick();
                next_tick += self.tick;
                self.ticks += 1;
                if self.ticks.is_multiple_of(64) {
                    // Clients that stopped waiting (their request was lost with a
                    // leader, or timed out): forget them.
                    self.replica.retain_clients(|c| !c.is_closed());
                }
            }
            let stepping = Instant::now();
            for input in inputs.drain(..) {
                if matches!(input, Input::Shutdown) {
                    return Ok(());
                }
                self.on_input(input)?;
            }
            self.times.add(Phase::Step, stepping.elapsed());
            #[cfg(feature = "planted-bugs")]
            self.forward_planted();
            self.ping_peers();
            self.process()?;
            for id in self.dropped.drain(..) {
                inbox.drop_peer(id);
            }
            if self.removed {
                // A grace of a second, so that the answer to the request that removed
                // this member (it may have ordered its own removal) reaches its client.
                let since = *self.removed_at.get_or_insert_with(Instant::now);
                if since.elapsed() >= REMOVED_GRACE {
                    let why = "the member has been permanently removed from the cluster";
                    return Err(Fatal::new("membership", why));
                }
            }
            if let Some(slow) = self.times.slow(SLOW_ROUND) {
                tracing::warn!(
                    event = "slow_round",
                    round_ms = slow.total_ms(),
                    phase = slow.phase(),
                    applied = slow.applied(),
                    "{slow}"
                );
            }
        }
    }

    /// Under `follower-lease-expiry`: what this follower's lessor asked to order goes
    /// to the leader as a client's write would (nobody waits for the answer).
    #[cfg(feature = "planted-bugs")]
    fn forward_planted(&mut self) {
        let commands = std::mem::take(&mut *self.shared.planted_forward.lock().unwrap());
        for command in commands {
            let (reply, _) = tokio::sync::oneshot::channel();
            self.replica.submit(Client::Write(reply), command);
        }
    }

    fn on_input(&mut self, input: Input) -> Result<(), Fatal> {
        match input {
            Input::Peer(from, msg) => {
                Metrics::add(&self.shared.metrics.peer_received, 1);
                match self.replica.step(from, msg) {
                    Ok(()) => {}
                    Err(Refused::Command(e)) => {
                        Metrics::add(&self.shared.metrics.commands_refused, 1);
                        tracing::warn!(event = "command_refused", peer = %format_args!("{:x}", from.0), error = %e, "refused a command a peer forwarded");
                    }
                    Err(e) => {
                        tracing::warn!(event = "message_dropped", peer = %format_args!("{:x}", from.0), error = %e, "dropped a peer message")
                    }
                }
            }
            Input::Ping(from, token) => {
                self.shared.health.lock().unwrap().heartbeat(from);
                let mut pong = Vec::with_capacity(crate::wire::PING_FRAME);
                crate::wire::encode_pong(token, &mut pong);
                self.peers.send(from, pong, 0);
            }
            Input::Pong(from, token) => self.on_pong(from, token),
            Input::Propose(command, reply) => {
                Metrics::add(&self.shared.metrics.proposals, 1);
                self.replica.submit(Client::Write(reply), command);
            }
            Input::ReadIndex(reply) => self.replica.read(Client::Read(reply)),
            Input::ChangeMembership(request, reply) => self.on_change_request(request, reply),
            Input::TransferLeader(to, reply) => {
                let _ = reply.send(self.replica.transfer_leadership(to));
            }
            Input::Snapshot(outcome) => self.on_snapshot_written(outcome)?,
            Input::SegmentPrepared(ok) => self.storage.segment_prepared(ok),
            Input::Removed => self.removed = true,
            Input::Defragment(reply) => self.on_defrag(reply),
            Input::Shutdown | Input::PeerStream { .. } => {}
        }
        Ok(())
    }

    /// Every heartbeat interval (two ticks), a ping to every peer for its failure
    /// detector: at most one per round, so a late round never sends a burst.
    fn ping_peers(&mut self) {
        if self.ticks < self.pinged_at + 2 {
            return;
        }
        self.pinged_at = self.ticks;
        let me = self.shared.member_id;
        let token = self.clock_us();
        for m in self.shared.members().iter().filter(|m| m.id != me) {
            let mut frame = Vec::with_capacity(crate::wire::PING_FRAME);
            crate::wire::encode_ping(token, &mut frame);
            self.peers.send(m.id, frame, 0);
        }
    }

    /// Microseconds since the driver started: the tokens of its pings.
    fn clock_us(&self) -> u64 {
        self.clock.elapsed().as_micros() as u64
    }

    /// A peer answered a ping: the time since that ping left is a round trip (through
    /// both members' Raft threads). A token from the future is not ours: ignored.
    fn on_pong(&mut self, from: NodeId, token: u64) {
        let now = self.clock_us();
        let Some(h) = self.round_trips.get(&from) else {
            return;
        };
        if token <= now {
            h.observe((now - token) as f64 / 1e6);
        }
    }

    /// Carries out actions until none are left (a snapshot handed over on the way adds
    /// its own durable write, which goes through the same path).
    fn process(&mut self) -> Result<(), Fatal> {
        while self.drain_actions()? || self.maybe_snapshot()? {}
        self.finish_defrag()?;
        self.snapshot_slice();
        self.compaction_slice();
        self.publish();
        Ok(())
    }

    /// One batch of actions: sends first, then one durable write batch. False when
    /// there was nothing to do.
    fn drain_actions(&mut self) -> Result<bool, Fatal> {
        let applying = Instant::now();
        let actions = self.replica.take_effects()?;
        self.times.add(Phase::Apply, applying.elapsed());
        // Before this batch's messages go out: a member just added gets a link.
        self.follow_membership();
        self.advance_changes();
        self.after_apply();
        // Answered at once: not behind this batch's fdatasync.
        self.answer();
        if actions.is_empty() {
            return Ok(false);
        }
        let mut outbox: BTreeMap<NodeId, (Vec<u8>, u64)> = BTreeMap::new();
        let mut last_io: Option<IoId> = None;
        for action in actions {
            match action {
                Action::Send { to, message } => {
                    let slot = outbox.entry(to).or_default();
                    crate::wire::encode_frame::<MemberEngine>(&message, &mut slot.0);
                    slot.1 += 1;
                }
                Action::Persist { io, write } => {
                    let writing = Instant::now();
                    raft_engine::write(&mut self.storage, &write)?;
                    self.times.add(Phase::Write, writing.elapsed());
                    Metrics::add(&self.shared.metrics.wal_writes, 1);
                    last_io = Some(io);
                }
                Action::ReadSnapshotChunk { to, request } => {
                    // The chunk goes out as a message with the next batch.
                    let chunk = raft_engine::read_chunk(&mut self.storage, &request)?;
                    self.replica.on_snapshot_chunk(to, request, chunk);
                }
            }
        }
        for (to, (frames, n)) in outbox {
            Metrics::add(&self.shared.metrics.peer_sent, n);
            self.peers.send(to, frames, n);
        }
        if let Some(io) = last_io {
            self.sync(io)?;
        }
        Ok(true)
    }

    /// Bookkeeping after the replica applied a batch.
    fn after_apply(&mut self) {
        let machine = self.replica.machine_mut();
        let applied = machine.take_applied();
        self.compacting |= machine.take_compaction_started();
        let restored = machine.take_restored();
        self.times.applied(applied);
        if !restored {
            return;
        }
        if let SnapState::Serializing { .. } = &self.snap {
            // The store it was reading has been replaced.
            self.snap = SnapState::Idle;
        }
        self.compacting = self.shared.store.read().compaction_pending();
        let installed = self.replica.snapshots_installed();
        let counted = Metrics::get(&self.shared.metrics.snapshots_installed);
        if installed > counted {
            Metrics::add(
                &self.shared.metrics.snapshots_installed,
                installed - counted,
            );
            let index = self.replica.applied();
            tracing::info!(
                event = "snapshot_installed",
                index = index.0,
                "installed a snapshot from the leader"
            );
        }
    }

    fn sync(&mut self, io: IoId) -> Result<(), Fatal> {
        let unknown = |e: engine::UnknownIo| Fatal::new("storage acknowledged a write", e);
        #[cfg(feature = "planted-bugs")]
        if let Some(last) = self.lazy_sync {
            // Planted bug: report durability now, fsync at most every 200 ms.
            self.replica.on_persisted(io).map_err(unknown)?;
            if last.elapsed() < Duration::from_millis(200) {
                return Ok(());
            }
            self.lazy_sync = Some(Instant::now());
            return raft_engine::sync(&mut self.storage);
        }
        let start = Instant::now();
        raft_engine::sync(&mut self.storage)?;
        let took = start.elapsed();
        self.times.add(Phase::Sync, took);
        self.shared
            .metrics
            .wal_fsync_seconds
            .observe(took.as_secs_f64());
        self.replica.on_persisted(io).map_err(unknown)?;
        if let Some(bytes) = self.storage.segment_to_prepare() {
            // Zero-filled off the commit path; the next rotation only renames it.
            let dir = self.snapshot_dir.clone();
            snapshotter::prepare_segment(dir, bytes, self.inputs.clone());
        }
        Ok(())
    }

    fn answer(&mut self) {
        for reply in self.replica.take_replies() {
            if reply.client.answer(reply.outcome) {
                Metrics::add(&self.shared.metrics.proposals_failed, 1);
            }
        }
    }

    /// Starts a background snapshot once the policy says one is due; hands a written
    /// one to the engine once the log has moved far enough past it. True when the
    /// engine took it (it then has a durable write to drain).
    fn maybe_snapshot(&mut self) -> Result<bool, Fatal> {
        match &self.snap {
            SnapState::Idle => {
                let due = self.replica.snapshot_due();
                if let Some(index) = due.or_else(|| self.defrag_due()) {
                    tracing::debug!(
                        event = "snapshot_started",
                        index = index.0,
                        "cutting a snapshot"
                    );
                    self.start_snapshot(index)?;
                }
                Ok(false)
            }
            SnapState::Ready(meta, _)
                if self.replica.compact_ready(meta.index) || self.defrag_wants(meta.index) =>
            {
                let SnapState::Ready(meta, len) = std::mem::take(&mut self.snap) else {
                    unreachable!("matched above");
                };
                let compacted = self.compact(meta, len);
                self.defrag_compacted(meta.index);
                Ok(compacted)
            }
            _ => Ok(false),
        }
    }

    fn start_snapshot(&mut self, index: engine::Index) -> Result<(), Fatal> {
        self.replica.snapshot_begun(index);
        let Some(meta) = raft_engine::snapshot_meta(self.replica.engine(), index) else {
            // The applied entry is already compacted away (a snapshot was installed).
            return Ok(());
        };
        let Some(trailer) = engine::Engine::snapshot_trailer(self.replica.engine(), index) else {
            return Ok(());
        };
        let dir = self.snapshot_dir.clone();
        let target = snapshotter::Target { meta, dir, trailer };
        self.snap = snapshotter::begin(&self.shared, target, self.inputs.clone())
            .map_err(|e| Fatal::new("snapshot", e))?;
        Ok(())
    }

    /// One slice of the snapshot being cut, if any; once it has read every key, the
    /// history is released and the file is written in the background.
    fn snapshot_slice(&mut self) {
        let SnapState::Serializing { writer, sink } = &mut self.snap else {
            return;
        };
        // At most every other SLICE: the driver and the member's network threads keep
        // at least half of a core while all members cut their snapshots at once.
        if self.last_slice.elapsed() < SLICE {
            return;
        }
        let slicing = Instant::now();
        let done = snapshotter::step(writer, sink, &self.shared, SLICE);
        self.last_slice = Instant::now();
        self.times.add(Phase::Serialize, slicing.elapsed());
        if !done {
            return;
        }
        self.shared.store.write().release_history();
        let SnapState::Serializing { writer, sink } =
            std::mem::replace(&mut self.snap, SnapState::Writing)
        else {
            unreachable!("matched above");
        };
        snapshotter::finish(writer, sink);
    }

    /// Up to a `SLICE` of dropping the history a Compact made unreachable, so that a
    /// large compaction does not hold up a round. Not while a snapshot is being cut: it
    /// needs that history until it has read every key.
    fn compaction_slice(&mut self) {
        if !self.compacting || matches!(self.snap, SnapState::Serializing { .. }) {
            return;
        }
        let started = Instant::now();
        let mut store = self.shared.store.write();
        while !store.compact_step(COMPACT_KEYS) && started.elapsed() < SLICE {}
        self.compacting = store.compaction_pending();
        drop(store);
        self.times.add(Phase::StoreCompact, started.elapsed());
    }

    fn on_snapshot_written(&mut self, outcome: SnapOutcome) -> Result<(), Fatal> {
        self.snap = match outcome {
            SnapOutcome::Written(meta, len) => SnapState::Ready(meta, len),
            SnapOutcome::Failed(e) => return Err(Fatal::new("snapshot file", e)),
        };
        Ok(())
    }

    /// Deletes every snapshot file older than `index`.
    pub(crate) fn remove_snapshots_before(&mut self, index: engine::Index) -> Result<(), Fatal> {
        (self.storage.remove_snapshots_before(index))
            .map_err(|e| Fatal::new("removing old snapshot files failed", e))
    }

    fn compact(&mut self, meta: SnapshotMeta, len: u64) -> bool {
        let compacting = Instant::now();
        let compacted = self.replica.snapshot_saved(meta.index, len);
        self.times.add(Phase::Compact, compacting.elapsed());
        match compacted {
            Ok(()) => {
                Metrics::add(&self.shared.metrics.snapshots, 1);
                tracing::debug!(
                    event = "log_compacted",
                    index = meta.index.0,
                    bytes = len,
                    "log compacted behind a snapshot"
                );
                true
            }
            Err(e) => {
                // Superseded by a snapshot from the leader: its file is simply older.
                tracing::info!(event = "snapshot_unused", index = meta.index.0, error = %e, "snapshot not used");
                false
            }
        }
    }

    /// Elected, stepped down, and the leader this member follows, as events.
    fn log_leadership(&mut self, s: &engine::Status) {
        if s.role != self.last_role {
            if s.role == Role::Leader {
                tracing::info!(event = "elected", term = s.epoch, "became leader");
            } else if self.last_role == Role::Leader {
                tracing::info!(
                    event = "stepped_down",
                    term = s.epoch,
                    role = s.role_detail,
                    "stepped down"
                );
            }
            self.last_role = s.role;
        }
        if s.leader != self.last_leader {
            match s.leader {
                Some(l) => {
                    tracing::info!(event = "leader_changed", term = s.epoch, leader = %format_args!("{:x}", l.0), "leader changed")
                }
                None => tracing::info!(event = "leader_lost", term = s.epoch, "no leader known"),
            }
        }
    }

    fn publish(&mut self) {
        let s = self.replica.status();
        self.log_leadership(&s);
        if s.leader != self.last_leader {
            if s.leader.is_some() {
                Metrics::add(&self.shared.metrics.leader_changes, 1);
            }
            self.last_leader = s.leader;
        }
        let peer_match = if s.role == Role::Leader {
            let engine = self.replica.engine();
            (engine.membership().members())
                .map(|(id, _)| id)
                .filter(|id| *id != s.id)
                .map(|id| (id.0, engine.peer_progress(id).map_or(0, |i| i.0)))
                .collect()
        } else {
            BTreeMap::new()
        };
        let status = NodeStatus {
            role: s.role,
            role_detail: s.role_detail,
            term: s.epoch,
            leader: s.leader,
            commit: s.committed.0,
            applied: self.replica.applied().0,
            last_index: s.last_index.0,
            snapshot_index: s.snapshot.0,
            compacting: self.compacting,
            peer_match,
        };
        self.shared.status.send_if_modified(|old| {
            let changed = *old != status;
            *old = status;
            changed
        });
    }
}
