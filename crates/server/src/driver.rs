//! The Raft driver: one OS thread that owns the Raft core, the WAL and the writes to the
//! key-value store. Each round it drains every queued input (peer messages, proposals,
//! reads), ticks, and then processes effects in batches: messages go to the peer queues
//! at once, all persist requests are written and made durable with one fdatasync, and
//! committed entries are applied.

use crate::cmd::Write;
use crate::inbox::{Inbox, InboxSender};
use crate::slow::{Phase, RoundTimes, SLOW_ROUND};
use crate::snapshotter::{self, SnapOutcome, SnapState};
use crate::state::{Metrics, NodeStatus, Shared};
use kv::{KvError, Store};
use raft::{
    Apply, Config, Effect, Entry, EntryKind, IoId, LogIndex, Message, NodeId, ProposeError,
    RaftNode, Role,
};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use storage::{DiskStorage, FaultyBackend, FileBackend, RaftStorage};

/// How long one slice of snapshot serialization may take (and the least time between
/// two slices).
const SLICE: Duration = Duration::from_millis(2);

/// Keys a store compaction visits per step (about a millisecond where every key loses
/// history); steps repeat until `SLICE` is spent.
const COMPACT_KEYS: usize = 1024;

/// Snapshots smaller than this follow `--snapshot-count` alone.
const GROWTH_FLOOR: u64 = 64 << 20;

/// The most command bytes a snapshot waits for beyond `--snapshot-count`.
const GROWTH_CAP: u64 = 128 << 20;

/// The storage a member runs on (faults only when configured).
pub type MemberStorage = DiskStorage<FaultyBackend<FileBackend>>;
use tokio::sync::oneshot;

/// Why the driver could not serve a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DriverError {
    /// This member is not the leader (the leader, if known).
    NotLeader(Option<NodeId>),
    /// The entry's slot was taken by another leader's entry: the write did not happen.
    LeaderChanged,
    /// The state machine refused the request.
    Kv(KvError),
    /// The driver has stopped.
    Stopped,
}

/// Replies to a proposal.
pub type WriteReply = oneshot::Sender<Result<kv::Response, DriverError>>;
/// Replies to a read barrier.
pub type ReadReply = oneshot::Sender<Result<(), DriverError>>;

/// An input to the driver.
#[derive(Debug)]
pub enum Input {
    /// A message from a peer.
    Peer(NodeId, Message),
    /// A peer's connection, its handshake checked: the inbox reads its frames from
    /// now on (`buffered`: bytes already read past the handshake).
    PeerStream {
        /// The peer.
        from: NodeId,
        /// The connection.
        stream: std::net::TcpStream,
        /// Bytes read past the handshake.
        buffered: Vec<u8>,
    },
    /// A client write to replicate.
    Propose(Write, WriteReply),
    /// A linearizable read barrier: replies once the store has applied through the
    /// leader's commit index as of the request.
    ReadIndex(ReadReply),
    /// The snapshot thread wrote its file (or failed to).
    Snapshot(SnapOutcome),
    /// The next WAL segment was prepared in the background (true) or could not be.
    SegmentPrepared(bool),
    /// Stop the driver.
    Shutdown,
}

/// Outgoing peer traffic: encoded frames per peer.
pub trait PeerSink: Send {
    /// Queues frames for `to` (dropped if the peer's queue is full).
    fn send(&mut self, to: NodeId, frames: Vec<u8>, count: u64);
}

/// Driver settings.
pub struct DriverOptions {
    /// Raft configuration.
    pub raft: Config,
    /// Real time per tick.
    pub tick: Duration,
    /// Applied entries between snapshots.
    pub snapshot_count: u64,
    /// Where snapshot files go (the WAL's directory).
    pub snapshot_dir: PathBuf,
    /// The driver's own input queue (the snapshot thread reports through it).
    pub inputs: InboxSender,
    /// A deliberately planted bug.
    #[cfg(feature = "planted-bugs")]
    pub planted_bug: Option<crate::config::ServerBug>,
}

/// The driver's state.
pub struct Driver {
    raft: RaftNode,
    storage: MemberStorage,
    shared: Arc<Shared>,
    peers: Box<dyn PeerSink>,
    tick: Duration,
    snapshot_count: u64,
    snapshot_dir: PathBuf,
    inputs: InboxSender,
    snap: SnapState,
    /// Applied entries between snapshots here: `snapshot_count` plus up to a tenth,
    /// different on each member, so that members do not all cut theirs at once.
    snapshot_stride: u64,
    /// Command bytes applied since the last snapshot began.
    log_bytes: u64,
    /// Size of the last snapshot this member wrote (0: none yet).
    last_snapshot_len: u64,
    last_slice: Instant,
    /// The store began a compaction whose history is not all dropped yet.
    compacting: bool,
    ticks: u64,
    next_id: u64,
    next_ctx: u64,
    writes: BTreeMap<LogIndex, (u64, WriteReply)>,
    /// Writes this follower handed to the leader, by request id (answered when an
    /// entry carrying the id is applied; given up when the client stops waiting).
    forwarded: HashMap<u64, WriteReply>,
    reads: HashMap<u64, ReadReply>,
    ready_reads: Vec<(LogIndex, ReadReply)>,
    applied: LogIndex,
    snapshot_index: LogIndex,
    last_leader: Option<NodeId>,
    /// Where the current round's time went (a slow round is logged).
    times: RoundTimes,
    #[cfg(feature = "planted-bugs")]
    lazy_sync: Option<Instant>,
}

/// Whether `log_bytes` of commands applied since the last snapshot, of `last_len`
/// bytes, pay for writing the next. A snapshot rewrites the whole store, history
/// included, so with a fixed entry count its cost per entry grows with the store. Once
/// snapshots pass [`GROWTH_FLOOR`], the next also waits until the log holds half as
/// many bytes as the last snapshot had (at most [`GROWTH_CAP`]), which keeps the bytes
/// written per entry bounded, as Redis's `auto-aof-rewrite-percentage` does; the cap
/// bounds the memory the Raft log holds meanwhile.
fn log_grew_enough(log_bytes: u64, last_len: u64) -> bool {
    last_len < GROWTH_FLOOR || log_bytes >= (last_len / 2).min(GROWTH_CAP)
}

/// A fatal storage failure: the member must stop (a failed fsync is never retried).
fn fatal(what: &str, e: impl std::fmt::Display) -> ! {
    eprintln!("fatal: {what}: {e}; stopping this member (a failed sync is never retried)");
    std::process::exit(2)
}

impl Driver {
    /// Builds a driver from recovered storage.
    pub fn new(
        opts: DriverOptions,
        storage: MemberStorage,
        recovered: raft::Recovered,
        shared: Arc<Shared>,
        peers: Box<dyn PeerSink>,
    ) -> Result<Driver, String> {
        let snapshot_index = recovered
            .snapshot
            .as_ref()
            .map_or(LogIndex(0), |s| s.meta.index);
        let seed = opts.raft.seed;
        let raft = RaftNode::restart(opts.raft, recovered).map_err(|e| e.to_string())?;
        let count = opts.snapshot_count.max(1);
        let snapshot_stride = count + shared.member_id.0 % (count / 10).max(1);
        Ok(Driver {
            raft,
            storage,
            shared,
            peers,
            tick: opts.tick,
            snapshot_count: opts.snapshot_count.max(1),
            snapshot_dir: opts.snapshot_dir,
            inputs: opts.inputs,
            snap: SnapState::Idle,
            snapshot_stride,
            log_bytes: 0,
            last_snapshot_len: 0,
            last_slice: Instant::now(),
            compacting: false,
            ticks: 0,
            next_id: seed,
            next_ctx: 0,
            writes: BTreeMap::new(),
            forwarded: HashMap::new(),
            reads: HashMap::new(),
            ready_reads: Vec::new(),
            applied: LogIndex(0),
            snapshot_index,
            last_leader: None,
            times: RoundTimes::default(),
            #[cfg(feature = "planted-bugs")]
            lazy_sync: opts
                .planted_bug
                .filter(|b| *b == crate::config::ServerBug::AckBeforeFsync)
                .map(|_| Instant::now()),
        })
    }

    /// Runs until `Shutdown` or until every sender is gone.
    pub fn run(mut self, mut inbox: Inbox) {
        let mut next_tick = Instant::now() + self.tick;
        let mut inputs: Vec<Input> = Vec::new();
        loop {
            // While a snapshot is being cut or the store compacted, wake up for the
            // next slice.
            let mut wait = next_tick.saturating_duration_since(Instant::now());
            if self.compacting || matches!(self.snap, SnapState::Serializing { .. }) {
                wait = wait.min(SLICE);
            }
            if inbox.wait(wait, &mut inputs).is_err() {
                return;
            }
            self.times.begin();
            let stepping = Instant::now();
            for input in inputs.drain(..) {
                if matches!(input, Input::Shutdown) {
                    self.fail_pending();
                    return;
                }
                self.on_input(input);
            }
            self.times.add(Phase::Step, stepping.elapsed());
            let now = Instant::now();
            while now >= next_tick {
                self.raft.tick();
                next_tick += self.tick;
                self.ticks += 1;
                if self.ticks.is_multiple_of(64) {
                    self.purge_forwarded();
                }
            }
            self.process();
            if let Some(slow) = self.times.slow(SLOW_ROUND) {
                eprintln!("warn: {slow}");
            }
        }
    }

    fn on_input(&mut self, input: Input) {
        match input {
            Input::Peer(from, msg) => {
                Metrics::add(&self.shared.metrics.peer_received, 1);
                if let Err(e) = self.raft.step(from, msg) {
                    eprintln!("warn: dropped a message from {:x}: {e}", from.0);
                }
            }
            Input::Propose(w, reply) => self.on_propose(w, reply),
            Input::ReadIndex(reply) => {
                self.next_ctx += 1;
                match self.raft.read_index(self.next_ctx) {
                    Ok(()) => {
                        self.reads.insert(self.next_ctx, reply);
                    }
                    Err(e) => {
                        let _ = reply.send(Err(not_leader(e)));
                    }
                }
            }
            Input::Snapshot(outcome) => self.on_snapshot_written(outcome),
            Input::SegmentPrepared(ok) => self.storage.segment_prepared(ok),
            Input::Shutdown | Input::PeerStream { .. } => {}
        }
    }

    fn on_propose(&mut self, w: Write, reply: WriteReply) {
        self.next_id = self.next_id.wrapping_add(1);
        let id = self.next_id;
        let payload: raft::Payload = w.encode(id).into();
        let outcome = match self.raft.propose(payload.clone()) {
            Ok(p) => Ok(Some(p.index)),
            // A follower hands the write to its leader over the peer link (batched
            // with the round's other frames; no gRPC hop).
            Err(ProposeError::NotLeader { leader: Some(_) }) => {
                self.raft.forward(payload).map(|()| None)
            }
            Err(e) => Err(e),
        };
        match outcome {
            Ok(Some(index)) => {
                self.writes.insert(index, (id, reply));
            }
            Ok(None) => {
                self.forwarded.insert(id, reply);
            }
            Err(e) => {
                Metrics::add(&self.shared.metrics.proposals_failed, 1);
                let _ = reply.send(Err(not_leader(e)));
                return;
            }
        }
        Metrics::add(&self.shared.metrics.proposals, 1);
    }

    /// Forwarded writes whose clients stopped waiting (the leader changed and the
    /// entry never came back): forget them.
    fn purge_forwarded(&mut self) {
        self.forwarded.retain(|_, reply| !reply.is_closed());
    }

    /// Takes effects until none are left (a snapshot taken on the way adds its own
    /// persist request, which goes through the same path), then serves ready reads.
    fn process(&mut self) {
        while self.drain_effects() || self.maybe_snapshot() {}
        self.snapshot_slice();
        self.compaction_slice();
        self.serve_reads();
        self.publish();
    }

    /// One batch of effects: sends first, then one durable write batch. False when
    /// there was nothing to do.
    fn drain_effects(&mut self) -> bool {
        let effects = self.raft.take_effects();
        if effects.is_empty() {
            return false;
        }
        let mut outbox: BTreeMap<NodeId, (Vec<u8>, u64)> = BTreeMap::new();
        let mut last_io: Option<IoId> = None;
        for e in effects {
            match e {
                Effect::Send { to, message } => {
                    let slot = outbox.entry(to).or_default();
                    crate::wire::encode_frame(&message, &mut slot.0);
                    slot.1 += 1;
                }
                Effect::Persist(req) => {
                    let writing = Instant::now();
                    if let Err(e) = self.storage.write(&req) {
                        fatal("WAL write failed", e);
                    }
                    self.times.add(Phase::Write, writing.elapsed());
                    Metrics::add(&self.shared.metrics.wal_writes, 1);
                    last_io = Some(req.io);
                }
                Effect::SendSnapshotChunk { to, chunk } => {
                    let meta = chunk.meta;
                    match self
                        .storage
                        .read_snapshot_chunk(meta, chunk.offset, chunk.max_len)
                    {
                        Ok(Some(c)) => {
                            let slot = outbox.entry(to).or_default();
                            let m = chunk.into_message(c.data.into(), c.checksum);
                            crate::wire::encode_frame(&m, &mut slot.0);
                            slot.1 += 1;
                        }
                        // A newer snapshot replaced it: the next drain sends that one.
                        Ok(None) => self.raft.snapshot_unavailable(to, meta),
                        Err(e) => fatal("reading a snapshot file failed", e),
                    }
                }
                Effect::Apply(a) => {
                    let applying = Instant::now();
                    self.apply(a);
                    self.times.add(Phase::Apply, applying.elapsed());
                }
                Effect::ReadReady { ctx, index } => {
                    if let Some(r) = self.reads.remove(&ctx) {
                        self.ready_reads.push((index, r));
                    }
                }
                Effect::ReadAborted { ctx } => {
                    if let Some(r) = self.reads.remove(&ctx) {
                        let _ = r.send(Err(DriverError::LeaderChanged));
                    }
                }
            }
        }
        for (to, (frames, n)) in outbox {
            Metrics::add(&self.shared.metrics.peer_sent, n);
            self.peers.send(to, frames, n);
        }
        if let Some(io) = last_io {
            self.sync(io);
        }
        true
    }

    fn sync(&mut self, io: IoId) {
        #[cfg(feature = "planted-bugs")]
        if let Some(last) = self.lazy_sync {
            // Planted bug: report durability now, fsync at most every 200 ms.
            if let Err(e) = self.raft.on_persisted(io) {
                fatal("storage acknowledged an unknown write", format!("{e:?}"));
            }
            if last.elapsed() < Duration::from_millis(200) {
                return;
            }
            self.lazy_sync = Some(Instant::now());
            if let Err(e) = self.storage.sync() {
                fatal("WAL fdatasync failed", e);
            }
            return;
        }
        let start = Instant::now();
        if let Err(e) = self.storage.sync() {
            fatal("WAL fdatasync failed", e);
        }
        let took = start.elapsed();
        self.times.add(Phase::Sync, took);
        let m = &self.shared.metrics;
        Metrics::add(&m.wal_fsyncs, 1);
        Metrics::add(&m.wal_fsync_micros, took.as_micros() as u64);
        if let Err(e) = self.raft.on_persisted(io) {
            fatal("storage acknowledged an unknown write", format!("{e:?}"));
        }
        if let Some(bytes) = self.storage.segment_to_prepare() {
            // Zero-filled off the commit path; the next rotation only renames it.
            let dir = self.snapshot_dir.clone();
            snapshotter::prepare_segment(dir, bytes, self.inputs.clone());
        }
    }

    fn apply(&mut self, a: Apply) {
        match a {
            Apply::Entry(e) => self.apply_entry(e),
            Apply::Snapshot(s) => {
                let store = match Store::restore(&s.data) {
                    Ok(st) => st,
                    Err(e) => fatal("snapshot does not decode", format!("{e:?}")),
                };
                if let SnapState::Serializing { .. } = &self.snap {
                    // The store it was reading is being replaced.
                    self.snap = SnapState::Idle;
                }
                *self.shared.store.write() = store;
                if s.meta.index > self.snapshot_index {
                    Metrics::add(&self.shared.metrics.snapshots_installed, 1);
                    eprintln!(
                        "info: installed a snapshot at index {} from the leader",
                        s.meta.index
                    );
                }
                self.applied = s.meta.index;
                self.snapshot_index = self.snapshot_index.max(s.meta.index);
                // Writes whose slots the snapshot covers: their outcome is unknown here.
                let covered: Vec<LogIndex> = self
                    .writes
                    .range(..=s.meta.index)
                    .map(|(i, _)| *i)
                    .collect();
                for i in covered {
                    if let Some((_, r)) = self.writes.remove(&i) {
                        let _ = r.send(Err(DriverError::LeaderChanged));
                    }
                }
            }
        }
    }

    fn apply_entry(&mut self, e: Entry) {
        let index = e.index;
        self.applied = index;
        self.times.applied_one();
        Metrics::add(&self.shared.metrics.applied_entries, 1);
        let EntryKind::Command(payload) = &e.kind else {
            return;
        };
        self.log_bytes += payload.len() as u64;
        let (id, write) = match Write::decode(payload) {
            Ok(x) => x,
            Err(err) => fatal(&format!("log entry {index} is damaged"), err),
        };
        let result = {
            let mut store = self.shared.store.write();
            let result = store.apply(index.0, write.into_kv());
            self.compacting |= store.compaction_pending();
            result
        };
        if let Some(reply) = self.forwarded.remove(&id) {
            let _ = reply.send(result.clone().map_or(Err(DriverError::LeaderChanged), |r| {
                r.map_err(DriverError::Kv)
            }));
        }
        if let Some((want, reply)) = self.writes.remove(&index) {
            let out = match result {
                _ if want != id => Err(DriverError::LeaderChanged),
                Some(r) => r.map_err(DriverError::Kv),
                None => Err(DriverError::LeaderChanged),
            };
            let _ = reply.send(out);
        }
    }

    fn serve_reads(&mut self) {
        let applied = self.applied;
        let (done, wait): (Vec<_>, Vec<_>) = std::mem::take(&mut self.ready_reads)
            .into_iter()
            .partition(|(index, _)| *index <= applied);
        self.ready_reads = wait;
        for (_, r) in done {
            let _ = r.send(Ok(()));
        }
    }

    /// Starts a background snapshot once `snapshot_count` entries were applied since
    /// the last one; hands a written one to the core once the log has moved far enough
    /// past it. True when the core compacted (it then has a persist request to drain).
    fn maybe_snapshot(&mut self) -> bool {
        match &self.snap {
            SnapState::Idle
                if self.applied.0 >= self.snapshot_index.0 + self.snapshot_stride
                    && log_grew_enough(self.log_bytes, self.last_snapshot_len) =>
            {
                self.start_snapshot();
                false
            }
            SnapState::Ready(meta, _) if self.applied.0 >= meta.index.0 + self.keep_entries() => {
                let SnapState::Ready(meta, len) = std::mem::take(&mut self.snap) else {
                    unreachable!("matched above");
                };
                self.compact(meta, len)
            }
            _ => false,
        }
    }

    /// Entries kept behind a snapshot so that followers a little behind catch up by log.
    fn keep_entries(&self) -> u64 {
        (self.snapshot_count / 4).min(5000)
    }

    fn start_snapshot(&mut self) {
        let index = self.applied;
        let Some(term) = self.raft.log_term(index) else {
            // The applied entry is already compacted away (a snapshot was installed).
            self.snapshot_index = index;
            return;
        };
        let meta = raft::SnapshotMeta { index, term };
        let dir = self.snapshot_dir.clone();
        self.snap = match snapshotter::begin(&self.shared, meta, dir, self.inputs.clone()) {
            Ok(state) => state,
            Err(e) => fatal("snapshot", e),
        };
        self.log_bytes = 0;
        // The next snapshot counts from this one.
        self.snapshot_index = index;
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

    fn on_snapshot_written(&mut self, outcome: SnapOutcome) {
        self.snap = match outcome {
            SnapOutcome::Written(meta, len) => {
                self.last_snapshot_len = len;
                SnapState::Ready(meta, len)
            }
            SnapOutcome::Failed(e) => fatal("snapshot file", e),
        };
    }

    fn compact(&mut self, meta: raft::SnapshotMeta, len: u64) -> bool {
        let compacting = Instant::now();
        let compacted = self.raft.compact_saved(meta.index, len);
        self.times.add(Phase::Compact, compacting.elapsed());
        match compacted {
            Ok(()) => {
                Metrics::add(&self.shared.metrics.snapshots, 1);
                true
            }
            Err(e) => {
                // Superseded by a snapshot from the leader: its file is simply older.
                eprintln!("info: snapshot at {} not used: {e:?}", meta.index);
                false
            }
        }
    }

    fn publish(&mut self) {
        let s = self.raft.status();
        if s.leader != self.last_leader {
            if s.leader.is_some() {
                Metrics::add(&self.shared.metrics.leader_changes, 1);
            }
            self.last_leader = s.leader;
        }
        let peer_match = if s.role == Role::Leader {
            self.shared
                .members
                .iter()
                .filter(|m| m.id != s.id)
                .map(|m| (m.id.0, self.raft.peer_match(m.id).map_or(0, |i| i.0)))
                .collect()
        } else {
            BTreeMap::new()
        };
        let status = NodeStatus {
            role: s.role,
            term: s.term.0,
            leader: s.leader,
            commit: s.commit.0,
            applied: self.applied.0,
            last_index: s.last_index.0,
            snapshot_index: s.snapshot.index.0,
            compacting: self.compacting,
            peer_match,
        };
        self.shared.status.send_if_modified(|old| {
            let changed = *old != status;
            *old = status;
            changed
        });
    }

    fn fail_pending(&mut self) {
        for (_, (_, r)) in std::mem::take(&mut self.writes) {
            let _ = r.send(Err(DriverError::Stopped));
        }
        for (_, r) in self.reads.drain() {
            let _ = r.send(Err(DriverError::Stopped));
        }
        for (_, r) in self.ready_reads.drain(..) {
            let _ = r.send(Err(DriverError::Stopped));
        }
    }
}

fn not_leader(e: ProposeError) -> DriverError {
    let ProposeError::NotLeader { leader } = e;
    DriverError::NotLeader(leader)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshots_wait_for_log_growth_only_once_they_are_large() {
        const MIB: u64 = 1 << 20;
        // Small snapshots: the entry count alone decides.
        assert!(log_grew_enough(0, 0));
        assert!(log_grew_enough(0, GROWTH_FLOOR - 1));
        // Large ones: half their size in new log bytes...
        assert!(!log_grew_enough(50 * MIB - 1, 100 * MIB));
        assert!(log_grew_enough(50 * MIB, 100 * MIB));
        // ...but never more than the cap.
        assert!(!log_grew_enough(GROWTH_CAP - 1, 4096 * MIB));
        assert!(log_grew_enough(GROWTH_CAP, 4096 * MIB));
    }
}
