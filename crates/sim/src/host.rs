//! One simulated machine: a Raft node, its state machine, its disk and its client
//! requests. The host turns the node's effects into simulator actions.

use crate::invariants::{Invariants, Violation};
use crate::kv::{Command, KvMachine, KvResult};
use crate::node_disk::NodeDisk;
use crate::storage::RaftStorage;
use raft::{Apply, Config, Effect, Entry, EntryKind, IoId, LogIndex, Message, NodeId, RaftNode};
use std::collections::BTreeMap;

/// Whether and how a host runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostState {
    /// Running.
    Up,
    /// Stopped by a timing fault: no ticks, inputs queue up.
    Paused,
    /// Crashed; may restart.
    Down,
    /// Stopped for good.
    Stopped,
}

/// What a client asked a host for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientRequest {
    /// A write through the log.
    Write(Command),
    /// A linearizable read of a key, through ReadIndex.
    Read(u8),
}

/// A host's answer to a client attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientOutcome {
    /// Applied; the write's result.
    Written(KvResult),
    /// The value read.
    Read(Option<u64>),
    /// Not the leader (with a hint), or the request was lost to a leadership change.
    Redirect(Option<NodeId>),
}

/// A reply routed back to a client attempt.
#[derive(Clone, Copy, Debug)]
pub struct Reply {
    /// Client id.
    pub client: u64,
    /// The attempt being answered.
    pub attempt: u64,
    /// The answer.
    pub outcome: ClientOutcome,
}

/// Actions for the world to schedule, collected while driving a host.
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    pub(crate) messages: Vec<(NodeId, NodeId, Message)>,
    pub(crate) replies: Vec<Reply>,
    pub(crate) want_sync: bool,
    /// Writes acknowledged to a client: (index, entry hash).
    pub(crate) acked: Vec<(u64, u64)>,
    /// Whether a trace is being recorded (notes are only built then).
    pub(crate) tracing: bool,
    /// Trace notes.
    pub(crate) notes: Vec<String>,
    /// Put values applied: (index, value).
    pub(crate) values: Vec<(u64, u64)>,
}

#[derive(Debug)]
pub(crate) struct Host {
    pub(crate) id: NodeId,
    pub(crate) state: HostState,
    pub(crate) incarnation: u64,
    pub(crate) raft: Option<RaftNode>,
    pub(crate) sm: KvMachine,
    pub(crate) applied: LogIndex,
    pub(crate) storage: NodeDisk,
    /// Corruption was injected into this node's disk: refusing to start is expected.
    pub(crate) corrupted: bool,
    /// Why the node refused to start, if it did.
    pub(crate) refusal: Option<String>,
    /// What a restart recovered (for traces).
    pub(crate) restart_note: Option<String>,
    pub(crate) last_written_io: IoId,
    pub(crate) sync_scheduled: bool,
    writes: BTreeMap<LogIndex, (u64, u64, Command)>,
    /// Writes this follower handed to the leader (`RaftNode::forward`), by the command's
    /// (client, seq): answered when an entry carrying that command is applied here.
    forwarded: BTreeMap<(u64, u64), (u64, u64, Command)>,
    reads: BTreeMap<u64, (u64, u64, u8)>,
    ready_reads: Vec<(LogIndex, u64, u64, u8)>,
    next_ctx: u64,
    pub(crate) paused_inbox: Vec<(NodeId, Message)>,
    pub(crate) snapshot_every: u64,
}

impl Host {
    pub(crate) fn new(id: NodeId, raft: RaftNode, snapshot_every: u64, disk: NodeDisk) -> Host {
        Host {
            id,
            state: HostState::Up,
            incarnation: 0,
            raft: Some(raft),
            sm: KvMachine::default(),
            applied: LogIndex(0),
            storage: disk,
            corrupted: false,
            refusal: None,
            restart_note: None,
            last_written_io: IoId(0),
            sync_scheduled: false,
            writes: BTreeMap::new(),
            forwarded: BTreeMap::new(),
            reads: BTreeMap::new(),
            ready_reads: Vec::new(),
            next_ctx: 0,
            paused_inbox: Vec::new(),
            snapshot_every,
        }
    }

    /// Loses all volatile state (the process died).
    pub(crate) fn lose_volatile(&mut self) {
        self.raft = None;
        self.sm = KvMachine::default();
        self.applied = LogIndex(0);
        self.writes.clear();
        self.forwarded.clear();
        self.reads.clear();
        self.ready_reads.clear();
        self.paused_inbox.clear();
        self.sync_scheduled = false;
        self.last_written_io = IoId(0);
        self.incarnation += 1;
    }

    /// Restarts from the durable image; returns the recovered entries for the checkers.
    pub(crate) fn restart(&mut self, cfg: Config, inv: &mut Invariants) -> Result<(), Violation> {
        let recovered = match self.storage.recover() {
            Ok(r) => r,
            Err(e) if self.corrupted => {
                // Detected corruption: the node refuses to start (repair is a later issue).
                self.state = HostState::Stopped;
                self.refusal = Some(e.to_string());
                return Ok(());
            }
            // The disk failed while recovering: the node fails to start; retried later.
            Err(e @ storage::StorageError::Io(_)) => {
                return Err(violation(STORAGE_FAILURE, e.to_string()))
            }
            Err(e) => return Err(violation("recovery", format!("node {}: {e}", self.id))),
        };
        self.refusal = None;
        self.restart_note = Some(format!(
            "recovered hard state {:?}, snapshot {:?}, {} entries, files {:?}",
            recovered.hard_state,
            recovered.snapshot.as_ref().map(|s| s.meta),
            recovered.entries.len(),
            self.storage.files()
        ));
        let snapshot = recovered.snapshot.as_ref().map(|s| s.meta);
        inv.on_restart(self.id, &recovered.entries, snapshot)?;
        let node = RaftNode::restart(cfg, recovered)
            .map_err(|e| violation("recovery", format!("node {}: {e}", self.id)))?;
        self.raft = Some(node);
        self.state = HostState::Up;
        Ok(())
    }

    /// A client request arrived.
    pub(crate) fn on_client(
        &mut self,
        client: u64,
        attempt: u64,
        req: ClientRequest,
        out: &mut Outbox,
    ) {
        let Some(raft) = self.raft.as_mut() else {
            return;
        };
        let result = match req {
            ClientRequest::Write(cmd) => {
                let payload: raft::Payload = cmd.encode().into();
                match raft.propose(payload.clone()) {
                    Ok(p) => {
                        self.writes.insert(p.index, (client, attempt, cmd));
                        Ok(())
                    }
                    // A follower that knows its leader hands the write over, as the
                    // server does (etcd's MsgProp).
                    Err(raft::ProposeError::NotLeader { .. }) => raft.forward(payload).map(|()| {
                        let entry = (client, attempt, cmd);
                        self.forwarded.insert((cmd.client, cmd.seq), entry);
                    }),
                }
            }
            ClientRequest::Read(key) => {
                self.next_ctx += 1;
                let ctx = self.next_ctx;
                raft.read_index(ctx).map(|()| {
                    self.reads.insert(ctx, (client, attempt, key));
                })
            }
        };
        if let Err(raft::ProposeError::NotLeader { leader }) = result {
            out.replies.push(Reply {
                client,
                attempt,
                outcome: ClientOutcome::Redirect(leader),
            });
        }
    }

    /// Runs the node's effects until it has nothing more to say.
    pub(crate) fn drive(
        &mut self,
        inv: &mut Invariants,
        out: &mut Outbox,
    ) -> Result<(), Violation> {
        loop {
            let Some(raft) = self.raft.as_mut() else {
                return Ok(());
            };
            let effects = raft.take_effects();
            if effects.is_empty() {
                break;
            }
            for e in effects {
                self.on_effect(e, inv, out)?;
            }
        }
        self.serve_ready_reads(out);
        self.maybe_compact(inv)?;
        let Some(raft) = self.raft.as_ref() else {
            return Ok(());
        };
        inv.on_status(&raft.status(), self.storage.durable_hard_state().commit.0)
    }

    fn on_effect(
        &mut self,
        e: Effect,
        inv: &mut Invariants,
        out: &mut Outbox,
    ) -> Result<(), Violation> {
        match e {
            Effect::Persist(req) => {
                if out.tracing {
                    out.notes.push(format!(
                        "n{} persist io={} hs={:?} snapshot={:?} entries={:?} (durable commit {})",
                        self.id,
                        req.io,
                        req.hard_state
                            .map(|h| (h.term.0, h.vote.map(|v| v.0), h.commit.0)),
                        req.snapshot.as_ref().map(|s| s.meta().index.0),
                        req.entries.as_ref().map(|w| (w.from.0, w.entries.len())),
                        self.storage.durable_hard_state().commit
                    ));
                }
                let snapshot = req.snapshot.as_ref().map(|s| s.meta());
                inv.on_log_write(self.id, snapshot, req.entries.as_ref())?;
                self.storage
                    .write(&req)
                    .map_err(|e| violation(STORAGE_FAILURE, e.to_string()))?;
                self.last_written_io = req.io;
                out.want_sync = true;
            }
            Effect::Send { to, message } => {
                if let Message::VoteResponse {
                    term,
                    granted: true,
                    pre_vote: false,
                } = message
                {
                    inv.on_vote(self.id, term, to)?;
                }
                out.messages.push((self.id, to, message));
            }
            Effect::SendSnapshotChunk { to, chunk } => {
                let (meta, offset, max) = (chunk.meta, chunk.offset, chunk.max_len);
                let read = self.storage.read_snapshot_chunk(meta, offset, max);
                match read.map_err(|e| violation(STORAGE_FAILURE, e.to_string()))? {
                    Some(c) => {
                        let message = chunk.into_message(c.data.into(), c.checksum);
                        out.messages.push((self.id, to, message));
                    }
                    None => {
                        if let Some(raft) = self.raft.as_mut() {
                            raft.snapshot_unavailable(to, meta);
                        }
                    }
                }
            }
            Effect::Apply(Apply::Entry(entry)) => self.apply_entry(entry, inv, out)?,
            Effect::Apply(Apply::Snapshot(s)) => {
                let sm = KvMachine::restore(&s.data)
                    .map_err(|e| violation("snapshot-restore", format!("node {}: {e}", self.id)))?;
                self.sm = sm;
                self.applied = s.meta.index;
                inv.on_snapshot_state(self.id, s.meta.index, self.sm.digest(), true)?;
                let stale: Vec<LogIndex> = self
                    .writes
                    .range(..=s.meta.index)
                    .map(|(i, _)| *i)
                    .collect();
                let forwarded = std::mem::take(&mut self.forwarded).into_values();
                let stale = stale.iter().filter_map(|i| self.writes.remove(i));
                // The snapshot may hold these writes: their outcome is unknown here, and
                // a retry applies at most once (client sessions).
                for (client, attempt, _) in stale.chain(forwarded) {
                    out.replies.push(Reply {
                        client,
                        attempt,
                        outcome: ClientOutcome::Redirect(None),
                    });
                }
            }
            Effect::ReadReady { ctx, index } => {
                if let Some((client, attempt, key)) = self.reads.remove(&ctx) {
                    self.ready_reads.push((index, client, attempt, key));
                }
            }
            Effect::ReadAborted { ctx } => {
                if let Some((client, attempt, _)) = self.reads.remove(&ctx) {
                    out.replies.push(Reply {
                        client,
                        attempt,
                        outcome: ClientOutcome::Redirect(None),
                    });
                }
            }
        }
        Ok(())
    }

    fn apply_entry(
        &mut self,
        entry: Entry,
        inv: &mut Invariants,
        out: &mut Outbox,
    ) -> Result<(), Violation> {
        let result = match &entry.kind {
            EntryKind::Noop => None,
            EntryKind::Command(p) => {
                let cmd = Command::decode(p).map_err(|e| {
                    violation("command-decode", format!("index {}: {e}", entry.index))
                })?;
                Some((cmd, self.sm.apply(&cmd)))
            }
        };
        self.applied = entry.index;
        if let Some((
            crate::kv::Command {
                op: crate::kv::KvOp::Put { value, .. },
                ..
            },
            _,
        )) = result
        {
            out.values.push((entry.index.0, value));
        }
        let sm = &self.sm;
        inv.on_apply(self.id, &entry, || sm.digest())?;
        let forwarded = result
            .as_ref()
            .and_then(|(applied, _)| self.forwarded.remove(&(applied.client, applied.seq)));
        let proposed = self.writes.remove(&entry.index);
        for waiting in forwarded.into_iter().chain(proposed) {
            answer_write(&entry, result, waiting, out);
        }
        Ok(())
    }

    fn serve_ready_reads(&mut self, out: &mut Outbox) {
        let applied = self.applied;
        let sm = &self.sm;
        self.ready_reads.retain(|(index, client, attempt, key)| {
            if *index > applied {
                return true;
            }
            out.replies.push(Reply {
                client: *client,
                attempt: *attempt,
                outcome: ClientOutcome::Read(sm.get(*key)),
            });
            false
        });
    }

    fn maybe_compact(&mut self, inv: &mut Invariants) -> Result<(), Violation> {
        let Some(raft) = self.raft.as_mut() else {
            return Ok(());
        };
        let compacted = raft.status().snapshot.index;
        if self.applied.0 < compacted.0 + self.snapshot_every {
            return Ok(());
        }
        let data = self.sm.snapshot();
        if raft.compact(self.applied, data.into()).is_ok() {
            inv.on_snapshot_state(self.id, self.applied, self.sm.digest(), false)?;
        }
        Ok(())
    }

    /// The disk finished a sync: everything written so far is durable.
    pub(crate) fn on_sync(&mut self) -> Result<(), Violation> {
        self.sync_scheduled = false;
        self.storage
            .sync()
            .map_err(|e| violation(STORAGE_FAILURE, e.to_string()))?;
        let io = self.last_written_io;
        if let Some(raft) = self.raft.as_mut() {
            if io.0 > 0 {
                raft.on_persisted(io)
                    .map_err(|e| violation("io-order", format!("node {}: {e}", self.id)))?;
            }
        }
        Ok(())
    }
}

/// Answers a client whose write (`waiting`: client, attempt, command) was expected in
/// `entry`: written if the entry carries that very command, otherwise unknown (retry).
fn answer_write(
    entry: &Entry,
    result: Option<(Command, KvResult)>,
    (client, attempt, cmd): (u64, u64, Command),
    out: &mut Outbox,
) {
    let outcome = match result {
        Some((applied, r)) if applied == cmd => {
            out.acked
                .push((entry.index.0, crate::invariants::entry_hash(entry)));
            ClientOutcome::Written(r)
        }
        _ => ClientOutcome::Redirect(None),
    };
    out.replies.push(Reply {
        client,
        attempt,
        outcome,
    });
}

/// Not a protocol violation: the disk failed and the node must stop (fail-stop).
pub(crate) const STORAGE_FAILURE: &str = "storage-failure";

pub(crate) fn violation(property: &'static str, detail: String) -> Violation {
    Violation {
        property,
        detail,
        at_us: 0,
    }
}
