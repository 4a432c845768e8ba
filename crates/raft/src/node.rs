//! The node: state, constructors, the driving verbs and read-only accessors.

use crate::config::Config;
use crate::durability::Durability;
use crate::effects::{Apply, Effect, SnapshotWrite};
use crate::error::{ProposeError, RecoverError, SnapshotError, StepError, UnknownIo};
use crate::log::RaftLog;
use crate::message::{self, Message};
use crate::progress::{FlowState, Progress};
use crate::read::{ReadQueue, RemoteReads};
use crate::types::{
    Entry, EntryKind, HardState, IoId, LogIndex, NodeId, Payload, Role, Snapshot, SnapshotMeta,
    Term,
};
use seedrng::Rng;
use std::collections::BTreeMap;

/// Durable state read back from storage at restart.
#[derive(Clone, Debug, Default)]
pub struct Recovered {
    /// Last durable hard state.
    pub hard_state: HardState,
    /// Latest durable snapshot, if any.
    pub snapshot: Option<Snapshot>,
    /// Durable entries after the snapshot, contiguous.
    pub entries: Vec<Entry>,
}

/// Where a proposal landed in the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Proposal {
    /// The leader's term.
    pub term: Term,
    /// The entry's index.
    pub index: LogIndex,
}

/// A read-only summary of a node, for drivers, checkers and status pages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Status {
    /// This node.
    pub id: NodeId,
    /// Current role.
    pub role: Role,
    /// Current term.
    pub term: Term,
    /// Vote in the current term.
    pub vote: Option<NodeId>,
    /// Known leader.
    pub leader: Option<NodeId>,
    /// Commit index.
    pub commit: LogIndex,
    /// Highest index handed out for apply.
    pub applied: LogIndex,
    /// Last log index (in memory).
    pub last_index: LogIndex,
    /// Last log index known durable.
    pub persisted_index: LogIndex,
    /// Compaction point.
    pub snapshot: SnapshotMeta,
}

/// A snapshot being received chunk by chunk.
#[derive(Debug)]
pub(crate) struct IncomingSnapshot {
    pub(crate) meta: SnapshotMeta,
    pub(crate) total_len: u64,
    /// The CRC32C the leader's storage recorded for the whole snapshot.
    pub(crate) checksum: u32,
    /// CRC32C of `buf` so far.
    pub(crate) crc: u32,
    pub(crate) buf: Vec<u8>,
}

/// The latest snapshot handed to storage: the core keeps its name and size, not its
/// bytes (InstallSnapshot chunks are read back from storage).
#[derive(Clone, Copy, Debug)]
pub(crate) struct StoredSnapshot {
    pub(crate) meta: SnapshotMeta,
    pub(crate) len: u64,
    /// The persist request that carried it; chunks are sent once it is durable.
    pub(crate) io: IoId,
}

/// A Raft node: a deterministic state machine driven by the verbs below.
#[derive(Debug)]
pub struct RaftNode {
    pub(crate) cfg: Config,
    pub(crate) rng: Rng,
    pub(crate) term: Term,
    pub(crate) vote: Option<NodeId>,
    pub(crate) log: RaftLog,
    /// A snapshot taken or received but not yet handed to storage, with its size.
    pub(crate) unsaved_snapshot: Option<(SnapshotWrite, u64)>,
    pub(crate) stored_snapshot: Option<StoredSnapshot>,
    pub(crate) role: Role,
    pub(crate) leader: Option<NodeId>,
    // Invariant: applied <= commit <= log.last_index().
    pub(crate) commit: LogIndex,
    pub(crate) applied: LogIndex,
    pub(crate) election_elapsed: u64,
    pub(crate) heartbeat_elapsed: u64,
    pub(crate) randomized_timeout: u64,
    pub(crate) votes: BTreeMap<NodeId, bool>,
    pub(crate) progress: BTreeMap<NodeId, Progress>,
    pub(crate) io: Durability,
    pub(crate) effects: Vec<Effect>,
    pub(crate) reads: ReadQueue,
    /// This follower's reads waiting for the leader's read index.
    pub(crate) remote_reads: RemoteReads,
    pub(crate) incoming: Option<IncomingSnapshot>,
    pub(crate) pending_restore: Option<Snapshot>,
    /// Every follower should hear from the leader at the next flush.
    pub(crate) broadcast_pending: bool,
    /// Messages released to this node itself (its own vote), processed at the next flush.
    pub(crate) self_inbox: Vec<Message>,
    /// A leadership transfer under way (leader only).
    pub(crate) transfer: Option<crate::transfer::Transfer>,
}

impl RaftNode {
    /// A brand-new node with an empty log.
    pub fn new(cfg: Config) -> Result<RaftNode, crate::config::ConfigError> {
        cfg.validate()?;
        let log = RaftLog::new(SnapshotMeta::default(), cfg.founding(), Vec::new());
        Ok(Self::build(cfg, HardState::default(), None, log))
    }

    /// A node restarting from durable state.
    pub fn restart(cfg: Config, recovered: Recovered) -> Result<RaftNode, RecoverError> {
        cfg.validate().map_err(RecoverError::Config)?;
        let hs = recovered.hard_state;
        // The stored snapshot ends with the membership in force at its index; the
        // state machine gets the bytes before it.
        let (snapshot, base) = match recovered.snapshot {
            Some(s) => {
                let (data, m) =
                    crate::membership::split(&s.data).map_err(RecoverError::BadSnapshot)?;
                let restore = Snapshot { meta: s.meta, data };
                (Some((restore, s.data.len() as u64)), m)
            }
            None => (None, cfg.founding()),
        };
        let meta = snapshot.as_ref().map(|(s, _)| s.meta).unwrap_or_default();
        let mut expected = meta.index.next();
        let mut prev_term = meta.term;
        let mut entries = Vec::with_capacity(recovered.entries.len());
        for e in recovered.entries {
            if e.index <= meta.index {
                continue;
            }
            if e.index != expected {
                return Err(RecoverError::LogGap {
                    expected,
                    found: e.index,
                });
            }
            if e.term < prev_term || e.term > hs.term {
                return Err(RecoverError::BadEntryTerm { index: e.index });
            }
            prev_term = e.term;
            expected = expected.next();
            entries.push(e);
        }
        let log = RaftLog::new(meta, base, entries);
        Ok(Self::build(cfg, hs, snapshot, log))
    }

    /// `snapshot`: the state machine's part of the stored snapshot, and the stored size.
    fn build(
        cfg: Config,
        hs: HardState,
        snapshot: Option<(Snapshot, u64)>,
        log: RaftLog,
    ) -> RaftNode {
        let rng = Rng::new(cfg.seed);
        let snap_index = log.snapshot_meta().index;
        let commit = hs.commit.max(snap_index).min(log.last_index());
        let mut node = RaftNode {
            rng,
            term: hs.term,
            vote: hs.vote,
            io: Durability::recovered(hs, log.last_index()),
            log,
            stored_snapshot: snapshot.as_ref().map(|(s, len)| StoredSnapshot {
                meta: s.meta,
                len: *len,
                io: IoId(0),
            }),
            pending_restore: snapshot.map(|(s, _)| s),
            unsaved_snapshot: None,
            role: Role::Follower,
            leader: None,
            commit,
            applied: snap_index,
            election_elapsed: 0,
            heartbeat_elapsed: 0,
            randomized_timeout: cfg.election_timeout_ticks,
            votes: BTreeMap::new(),
            progress: BTreeMap::new(),
            effects: Vec::new(),
            reads: ReadQueue::default(),
            remote_reads: RemoteReads::default(),
            incoming: None,
            broadcast_pending: false,
            self_inbox: Vec::new(),
            transfer: None,
            cfg,
        };
        node.reset_election_timer();
        node
    }

    /// One logical time unit has passed.
    pub fn tick(&mut self) {
        match self.role {
            Role::Leader => self.tick_leader(),
            _ => {
                self.tick_remote_reads();
                self.election_elapsed += 1;
                if self.election_elapsed >= self.randomized_timeout && self.is_voter() {
                    self.campaign(self.cfg.pre_vote);
                }
            }
        }
    }

    /// A message arrived from `from`. Refused messages leave the node unchanged.
    pub fn step(&mut self, from: NodeId, msg: Message) -> Result<(), StepError> {
        if from == self.cfg.id {
            return Err(StepError::FromSelf);
        }
        if from == NodeId(0) {
            return Err(StepError::UnknownPeer(from));
        }
        if !self.accepts_from(from, &msg) {
            // A node removed (or not yet added, as far as this node knows) that does
            // not know it: honest, and ignored.
            return Ok(());
        }
        message::validate(&msg).map_err(|reason| StepError::Malformed { from, reason })?;
        let term = msg.term();
        if term > self.term {
            match &msg {
                Message::VoteRequest {
                    transfer: false, ..
                } if self.in_lease() => return Ok(()),
                Message::VoteRequest { pre_vote: true, .. } => {}
                Message::VoteResponse {
                    pre_vote: true,
                    granted: true,
                    ..
                } => {}
                Message::Append { .. } | Message::Snapshot { .. } => {
                    self.become_follower(term, Some(from))
                }
                _ => self.become_follower(term, None),
            }
        } else if term < self.term {
            self.on_stale_term(from, &msg);
            return Ok(());
        }
        self.dispatch(from, msg)
    }

    /// Members may send anything. A node outside this one's membership may still be
    /// a leader (one whose log holds a change this node has not seen, or the leader of
    /// a group this node is joining) or a candidate that such a leader's group
    /// elects; its other messages are dropped.
    fn accepts_from(&self, from: NodeId, msg: &Message) -> bool {
        self.membership().contains(from)
            || matches!(
                msg,
                Message::Append { .. } | Message::Snapshot { .. } | Message::VoteRequest { .. }
            )
    }

    fn dispatch(&mut self, from: NodeId, msg: Message) -> Result<(), StepError> {
        match msg {
            Message::VoteRequest {
                term,
                last_index,
                last_term,
                pre_vote,
                transfer,
            } => {
                let kind = (pre_vote, transfer);
                self.on_vote_request(from, term, last_index, last_term, kind);
                Ok(())
            }
            Message::TimeoutNow { .. } => {
                self.on_timeout_now();
                Ok(())
            }
            Message::VoteResponse {
                term,
                granted,
                pre_vote,
            } => {
                self.on_vote_response(from, term, granted, pre_vote);
                Ok(())
            }
            Message::ReadIndex { ctx, .. } => {
                self.on_read_index(from, ctx);
                Ok(())
            }
            Message::Propose { command, .. } => {
                // Not the leader (any more): dropped, as a lost message would be.
                let _ = self.propose(command);
                Ok(())
            }
            Message::ReadIndexResponse { ctx, index, .. } => {
                self.on_read_index_response(ctx, index);
                Ok(())
            }
            Message::Append { .. } | Message::Snapshot { .. } => {
                if self.role == Role::Leader {
                    return Err(StepError::DuplicateLeader {
                        from,
                        term: self.term,
                    });
                }
                if self.role != Role::Follower || self.leader != Some(from) {
                    self.become_follower(self.term, Some(from));
                }
                self.on_leader_message(from, msg)
            }
            Message::AppendResponse { .. } | Message::SnapshotResponse { .. } => {
                if self.role != Role::Leader {
                    return Ok(());
                }
                self.on_follower_response(from, msg)
            }
        }
    }

    /// Appends a client command (leader only); many proposals between two
    /// `take_effects` calls share one persist request and one message per follower.
    pub fn propose(&mut self, command: Payload) -> Result<Proposal, ProposeError> {
        if self.role != Role::Leader {
            return Err(ProposeError::NotLeader {
                leader: self.leader,
            });
        }
        let index = self.append_local(EntryKind::Command(command));
        Ok(Proposal {
            term: self.term,
            index,
        })
    }

    /// A follower's write: hands `command` to the leader, which appends it as its own
    /// proposal. Nothing reports back: the caller recognises the command when it is
    /// applied, and a command lost on the way (the leader changed) is never applied.
    pub fn forward(&mut self, command: Payload) -> Result<(), ProposeError> {
        match (self.role, self.leader) {
            (Role::Follower, Some(leader)) => {
                let m = Message::Propose {
                    term: self.term,
                    command,
                };
                self.send(leader, m);
                Ok(())
            }
            _ => Err(ProposeError::NotLeader {
                leader: self.leader,
            }),
        }
    }

    pub(crate) fn append_local(&mut self, kind: EntryKind) -> LogIndex {
        let index = self.log.last_index().next();
        self.log.push(Entry {
            term: self.term,
            index,
            kind,
        });
        self.io.mark_entries_from(index);
        index
    }

    /// Asks for a linearizable read; an [`Effect::ReadReady`] with `ctx` follows once
    /// leadership is confirmed by a quorum, or [`Effect::ReadAborted`] if it is lost.
    pub fn read_index(&mut self, ctx: u64) -> Result<(), ProposeError> {
        match (self.role, self.leader) {
            (Role::Leader, _) => self.register_read((None, ctx)),
            (Role::Follower, Some(leader)) => {
                // etcd's follower read: the leader confirms its leadership and names
                // the index; this node serves the read once it has applied that far.
                if let Some(batch) = self.remote_reads.add(ctx) {
                    self.ask_read_index(leader, batch);
                }
            }
            _ => {
                return Err(ProposeError::NotLeader {
                    leader: self.leader,
                })
            }
        }
        Ok(())
    }

    /// Storage reports `io` (and all earlier ios) durable.
    pub fn on_persisted(&mut self, io: IoId) -> Result<(), UnknownIo> {
        let released = self.io.on_persisted(io).ok_or(UnknownIo(io))?;
        self.route_released(released);
        self.drain_self_inbox();
        if self.role == Role::Leader {
            self.maybe_commit();
        }
        Ok(())
    }

    fn route_released(&mut self, released: Vec<(NodeId, Message)>) {
        for (to, message) in released {
            if to == self.cfg.id {
                self.self_inbox.push(message);
            } else {
                self.effects.push(Effect::Send { to, message });
            }
        }
    }

    fn drain_self_inbox(&mut self) -> bool {
        let inbox = std::mem::take(&mut self.self_inbox);
        let any = !inbox.is_empty();
        for m in inbox {
            if let Message::VoteResponse {
                term,
                granted,
                pre_vote,
            } = m
            {
                if term == self.term {
                    self.on_vote_response(self.cfg.id, term, granted, pre_vote);
                }
            }
        }
        any
    }

    /// Everything the driver must do now, in order.
    pub fn take_effects(&mut self) -> Vec<Effect> {
        // A released self-vote can make this node leader, which creates more work.
        for _ in 0..3 {
            if self.role == Role::Leader {
                self.flush_replication();
            }
            self.flush_persist();
            if !self.drain_self_inbox() {
                break;
            }
        }
        self.flush_apply();
        self.flush_reads();
        if self.role == Role::Leader && self.broadcast_pending {
            // Reads that waited for the round just confirmed start the next one now.
            self.flush_replication();
        }
        std::mem::take(&mut self.effects)
    }

    fn flush_persist(&mut self) {
        let hs = self.hard_state();
        let log = &self.log;
        let handed = self
            .unsaved_snapshot
            .as_ref()
            .map(|(w, len)| (w.meta(), *len));
        let snapshot = self.unsaved_snapshot.take().map(|(w, _)| w);
        let (request, released) = self.io.flush(
            hs,
            |from| {
                let from = from.max(log.first_index());
                (from, log.tail(from))
            },
            snapshot,
            self.log.last_index(),
        );
        if let (Some((meta, len)), Some(r)) = (handed, &request) {
            self.stored_snapshot = Some(StoredSnapshot {
                meta,
                len,
                io: r.io,
            });
        }
        if let Some(r) = request {
            self.effects.push(Effect::Persist(r));
        }
        self.route_released(released);
    }

    fn flush_apply(&mut self) {
        if let Some(s) = self.pending_restore.take() {
            self.effects.push(Effect::Apply(Apply::Snapshot(s)));
        }
        let upto = self.commit.min(self.io.persisted_last());
        while self.applied < upto {
            let next = self.applied.next();
            let Some(entry) = self.log.entry(next) else {
                break;
            };
            let apply = match &entry.kind {
                EntryKind::Config(c) => Apply::Config {
                    index: next,
                    change: c.change.clone(),
                    membership: c.membership.clone(),
                },
                _ => Apply::Entry(entry.clone()),
            };
            self.effects.push(Effect::Apply(apply));
            self.applied = next;
        }
    }

    /// The state machine has applied through `index` and serialized itself as `data`:
    /// the log is compacted through `index` and the snapshot is persisted and used for
    /// lagging followers.
    pub fn compact(&mut self, index: LogIndex, data: Payload) -> Result<(), SnapshotError> {
        let tail = self.snapshot_trailer(index);
        let meta = self.compact_log(index)?;
        let mut stored = Vec::with_capacity(data.len() + 64);
        stored.extend_from_slice(&data);
        stored.extend(tail.unwrap_or_default());
        let len = stored.len() as u64;
        let data = Payload::from(stored);
        self.unsaved_snapshot = Some((SnapshotWrite::Store(Snapshot { meta, data }), len));
        Ok(())
    }

    /// The bytes Raft keeps at the end of a snapshot of `index` (the membership in
    /// force there): a driver that writes snapshots itself appends them after the
    /// state machine's bytes, then calls [`RaftNode::compact_saved`]. `None` once
    /// `index` is compacted away.
    pub fn snapshot_trailer(&self, index: LogIndex) -> Option<Vec<u8>> {
        if index < self.log.snapshot_meta().index || index > self.log.last_index() {
            return None;
        }
        Some(crate::membership::trailer(self.log.confs().at(index)))
    }

    /// As [`RaftNode::compact`] for a snapshot of `len` bytes (the state machine's,
    /// then [`RaftNode::snapshot_trailer`]) that the driver already
    /// made durable in storage itself (written off the Raft thread): the core keeps
    /// none of its bytes at any point, and the persist request only names it
    /// ([`SnapshotWrite::Saved`]).
    pub fn compact_saved(&mut self, index: LogIndex, len: u64) -> Result<(), SnapshotError> {
        let meta = self.compact_log(index)?;
        self.unsaved_snapshot = Some((SnapshotWrite::Saved(meta), len));
        Ok(())
    }

    /// Drops the log through `index` (applied, still in the log); returns the snapshot's
    /// name.
    fn compact_log(&mut self, index: LogIndex) -> Result<SnapshotMeta, SnapshotError> {
        let compacted = self.log.snapshot_meta().index;
        if index <= compacted {
            return Err(SnapshotError::Stale { index, compacted });
        }
        if index > self.applied {
            return Err(SnapshotError::NotApplied {
                index,
                applied: self.applied,
            });
        }
        let Some(term) = self.log.term_at(index) else {
            return Err(SnapshotError::Stale { index, compacted });
        };
        let meta = SnapshotMeta { index, term };
        self.log.compact_to(meta);
        Ok(meta)
    }

    /// Storage no longer holds snapshot `meta`, whose chunk an
    /// [`Effect::SendSnapshotChunk`] asked for: the transfer to `peer` restarts with the
    /// latest durable snapshot, or falls back to probing until there is one.
    pub fn snapshot_unavailable(&mut self, peer: NodeId, meta: SnapshotMeta) {
        let Some(p) = self.progress.get_mut(&peer) else {
            return;
        };
        if !matches!(p.state, FlowState::Snapshot { meta: m, .. } if m == meta) {
            return;
        }
        p.become_probe();
        if self.sendable_snapshot().is_some_and(|s| s.meta != meta) {
            self.start_snapshot(peer);
        }
    }

    /// The latest snapshot storage holds durably: what lagging followers are sent.
    pub(crate) fn sendable_snapshot(&self) -> Option<StoredSnapshot> {
        self.stored_snapshot.filter(|s| self.io.is_persisted(s.io))
    }

    pub(crate) fn hard_state(&self) -> HardState {
        HardState {
            term: self.term,
            vote: self.vote,
            commit: self.commit,
        }
    }

    pub(crate) fn reset_election_timer(&mut self) {
        self.election_elapsed = 0;
        let t = self.cfg.election_timeout_ticks;
        self.randomized_timeout = self.rng.range(t, 2 * t);
    }

    pub(crate) fn in_lease(&self) -> bool {
        self.cfg.check_quorum
            && self.leader.is_some()
            && self.election_elapsed < self.cfg.election_timeout_ticks
    }

    /// The other voters: who a candidate asks.
    pub(crate) fn voter_peers(&self) -> Vec<NodeId> {
        let me = self.cfg.id;
        self.membership().voters().filter(|v| *v != me).collect()
    }

    /// Every other member, learners too: who a leader replicates to.
    pub(crate) fn member_peers(&self) -> Vec<NodeId> {
        let me = self.cfg.id;
        let members = self.membership().members();
        members.map(|(id, _)| id).filter(|v| *v != me).collect()
    }

    pub(crate) fn send(&mut self, to: NodeId, message: Message) {
        self.effects.push(Effect::Send { to, message });
    }

    #[cfg(feature = "planted-bugs")]
    pub(crate) fn bug(&self, bug: crate::config::PlantedBug) -> bool {
        self.cfg.planted_bug == Some(bug)
    }

    /// The term of the entry at `index` while the log holds it (or it is the snapshot
    /// point): what a snapshot taken at `index` is named by.
    pub fn log_term(&self, index: LogIndex) -> Option<Term> {
        self.log.term_at(index)
    }

    /// A summary of this node's state.
    pub fn status(&self) -> Status {
        Status {
            id: self.cfg.id,
            role: self.role,
            term: self.term,
            vote: self.vote,
            leader: self.leader,
            commit: self.commit,
            applied: self.applied,
            last_index: self.log.last_index(),
            persisted_index: self.io.persisted_last(),
            snapshot: self.log.snapshot_meta(),
        }
    }

    /// The term of the newest hard state storage reported durable: unlike
    /// `status().term`, it never decreases across a crash and restart.
    pub fn durable_term(&self) -> Term {
        self.io.persisted_term()
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.cfg.id
    }

    /// The entry at `index`, if held in memory (not compacted).
    pub fn entry(&self, index: LogIndex) -> Option<&Entry> {
        self.log.entry(index)
    }

    /// The leader's view of a follower's match index (leader only).
    pub fn peer_match(&self, peer: NodeId) -> Option<LogIndex> {
        self.progress.get(&peer).map(|p| p.match_index)
    }
}
