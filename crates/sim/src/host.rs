//! One simulated machine: a replica (the engine, the state machine and the client
//! requests in flight — the same `replica::Replica` the server runs), its disk, and the
//! simulator's bookkeeping for the checkers. The host turns the replica's actions into
//! simulator actions; the engine's own types are reached through `raft_engine`.

use crate::hash::{fnv, mix};
use crate::invariants::{EngineChecks, Invariants, Violation};
use crate::kv::{Command, KvOp, KvResult, SimStore, LESSOR_CLIENT};
use crate::raft_engine::node_disk::NodeDisk;
use crate::raft_engine::{self, EngineConfig, Msg, SimEngine};
use engine::{Engine, Index, IoId, NodeId, StateMachine};
use replica::{Action, AppliedItem, Outcome, Refused, Replica, ReplicaOptions, SnapshotPolicy};

/// The replica a simulated machine runs.
pub(crate) type SimReplica = Replica<SimEngine, SimStore, Token>;
/// The checkers, engine-agnostic and the engine's own.
pub(crate) type SimInvariants = Invariants<raft_engine::Checks>;

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
    /// Not the leader (with a hint): the request never entered the order; retrying is
    /// safe.
    Redirect(Option<NodeId>),
    /// The request may or may not have taken effect (leadership changed).
    Unknown,
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

/// The replica's client token: who asked, and what.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Token {
    client: u64,
    attempt: u64,
    request: ClientRequest,
    /// FNV of the command's bytes as submitted (writes).
    body: u64,
}

/// Actions for the world to schedule, collected while driving a host.
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    pub(crate) messages: Vec<(NodeId, NodeId, Msg)>,
    pub(crate) replies: Vec<Reply>,
    pub(crate) want_sync: bool,
    /// Writes acknowledged to a client: (index, command hash).
    pub(crate) acked: Vec<(u64, u64)>,
    /// Whether a trace is being recorded (notes are only built then).
    pub(crate) tracing: bool,
    /// Trace notes.
    pub(crate) notes: Vec<String>,
    /// Put values applied: (index, value).
    pub(crate) values: Vec<(u64, u64)>,
    /// The events of the writes applied, in order.
    pub(crate) events: Vec<kv::Event>,
    /// Membership changes applied by a leader.
    pub(crate) changes_applied: u64,
}

/// How a host builds its replica.
#[derive(Clone, Copy, Debug)]
pub(crate) struct HostOptions {
    /// Applied entries between snapshots.
    pub(crate) snapshot_every: u64,
    /// History the leader keeps (0: no auto-compaction).
    pub(crate) auto_compact_retain: u64,
    /// How the lessor keeps time.
    pub(crate) lessor: kv::LessorOptions,
    /// A planted bug of the replica layer.
    #[cfg(feature = "planted-bugs")]
    pub(crate) bug: Option<replica::ReplicaBug>,
    /// A planted bug of the lease clock or the watch history.
    #[cfg(feature = "planted-bugs")]
    pub(crate) kv_bug: Option<kv::KvBug>,
}

#[derive(Debug)]
pub(crate) struct Host {
    pub(crate) id: NodeId,
    pub(crate) state: HostState,
    pub(crate) incarnation: u64,
    /// The running replica (`None` while down).
    pub(crate) node: Option<SimReplica>,
    pub(crate) storage: NodeDisk,
    /// Corruption was injected into this node's disk: refusing to start is expected.
    pub(crate) corrupted: bool,
    /// Why the node refused to start, if it did.
    pub(crate) refusal: Option<String>,
    /// What a restart recovered (for traces).
    pub(crate) restart_note: Option<String>,
    pub(crate) last_written_io: IoId,
    pub(crate) sync_scheduled: bool,
    pub(crate) paused_inbox: Vec<(NodeId, Msg)>,
    opts: HostOptions,
    /// The revision this incarnation last asked to compact to.
    compact_asked: i64,
}

/// The hash a command is known by to the checkers: its index and the FNV of its bytes
/// as submitted (a request id follows them in the log).
pub(crate) fn command_hash(index: u64, body_fnv: u64) -> u64 {
    mix(index, body_fnv)
}

impl Host {
    pub(crate) fn new(id: NodeId, node: SimEngine, opts: HostOptions, disk: NodeDisk) -> Host {
        let mut h = Host {
            id,
            state: HostState::Up,
            incarnation: 0,
            node: None,
            storage: disk,
            corrupted: false,
            refusal: None,
            restart_note: None,
            last_written_io: IoId(0),
            sync_scheduled: false,
            paused_inbox: Vec::new(),
            opts,
            compact_asked: 0,
        };
        h.node = Some(h.replica(node));
        h
    }

    fn replica(&self, node: SimEngine) -> SimReplica {
        let opts = ReplicaOptions {
            // Request ids never repeat across incarnations of a node.
            id_seed: (self.id.0 << 48) | (self.incarnation << 32),
            snapshot: SnapshotPolicy::exact(self.opts.snapshot_every),
            record_applied: true,
            #[cfg(feature = "planted-bugs")]
            bug: self.opts.bug,
        };
        #[allow(unused_mut)]
        let mut store = SimStore::new(self.opts.lessor);
        #[cfg(feature = "planted-bugs")]
        store.plant(self.opts.kv_bug);
        Replica::new(node, store, opts)
    }

    /// The engine's own detailed status, while running.
    pub(crate) fn status(&self) -> Option<raft_engine::Status> {
        self.node.as_ref().map(|r| r.engine().status())
    }

    /// The engine-neutral status, while running.
    pub(crate) fn engine_status(&self) -> Option<engine::Status> {
        self.node.as_ref().map(|r| Engine::status(r.engine()))
    }

    /// The last index applied (0 while down).
    pub(crate) fn applied(&self) -> Index {
        self.node.as_ref().map_or(Index(0), |r| r.applied())
    }

    /// The state machine's value of `key` (none while down).
    pub(crate) fn value(&self, key: u8) -> Option<u64> {
        self.node.as_ref().and_then(|r| r.machine().get(key))
    }

    /// The state machine's digest (of the empty state while down).
    pub(crate) fn digest(&self) -> u64 {
        match &self.node {
            Some(r) => r.machine().digest(),
            None => SimStore::default().digest(),
        }
    }

    /// Loses all volatile state (the process died).
    pub(crate) fn lose_volatile(&mut self) {
        self.node = None;
        self.paused_inbox.clear();
        self.sync_scheduled = false;
        self.last_written_io = IoId(0);
        self.compact_asked = 0;
        self.incarnation += 1;
    }

    /// Restarts from the durable image; returns the recovered entries for the checkers.
    pub(crate) fn restart(
        &mut self,
        cfg: EngineConfig,
        inv: &mut SimInvariants,
    ) -> Result<(), Violation> {
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
        let files = self.storage.files();
        self.restart_note = Some(raft_engine::restart_note(&recovered, &files));
        inv.on_restart(self.id);
        inv.engine.on_restart(self.id, &recovered)?;
        let node = raft_engine::restart(cfg, recovered)
            .map_err(|e| violation("recovery", format!("node {}: {e}", self.id)))?;
        self.node = Some(self.replica(node));
        self.state = HostState::Up;
        Ok(())
    }

    /// A client request arrived. Returns the index it was given, when this node leads.
    pub(crate) fn on_client(
        &mut self,
        client: u64,
        attempt: u64,
        request: ClientRequest,
    ) -> Option<Index> {
        let node = self.node.as_mut()?;
        let mut token = Token {
            client,
            attempt,
            request,
            body: 0,
        };
        match request {
            ClientRequest::Write(cmd) => {
                // A leader answers a keep-alive from memory when its lessor allows,
                // after a ReadIndex round, as the server does.
                if let KvOp::LeaseRenew { id } = cmd.op {
                    if node.machine().can_renew_local(id) {
                        node.read(token);
                        return None;
                    }
                }
                let body = cmd.encode(node.machine().revision());
                token.body = fnv(&body);
                node.submit(token, body)
            }
            ClientRequest::Read(_) => {
                node.read(token);
                None
            }
        }
    }

    /// A message from a peer.
    pub(crate) fn step(&mut self, from: NodeId, msg: Msg) -> Result<(), Violation> {
        let Some(node) = self.node.as_mut() else {
            return Ok(());
        };
        node.step(from, msg).map_err(|e| {
            let property = match e {
                Refused::Engine(_) => "protocol-error",
                // Every command the simulator's nodes forward is well formed.
                Refused::Command(_) => "command-validation",
            };
            violation(
                property,
                format!("node {} refused a message from {from}: {e}", self.id),
            )
        })
    }

    /// One logical time unit.
    /// What the lessor asked for while not leading goes to the leader like a client's
    /// write (its answer to nobody).
    pub(crate) fn tick(&mut self) {
        let Some(node) = self.node.as_mut() else {
            return;
        };
        node.tick();
        for body in node.machine_mut().take_forward() {
            let token = Token {
                client: LESSOR_CLIENT,
                attempt: 0,
                request: ClientRequest::Write(Command {
                    client: LESSOR_CLIENT,
                    seq: 0,
                    op: KvOp::Compact { behind: 0 },
                }),
                body: fnv(&body),
            };
            node.submit(token, body);
        }
    }

    /// Runs the replica's actions until it has nothing more to say.
    pub(crate) fn drive(
        &mut self,
        inv: &mut SimInvariants,
        out: &mut Outbox,
    ) -> Result<(), Violation> {
        self.auto_compact();
        loop {
            let Some(node) = self.node.as_mut() else {
                return Ok(());
            };
            let actions = node
                .take_effects()
                .map_err(|e| violation("snapshot-restore", format!("node {}: {e}", self.id)))?;
            self.check_applied(inv, out)?;
            self.answer(out);
            if actions.is_empty() {
                break;
            }
            for a in actions {
                self.on_action(a, inv, out)?;
            }
        }
        self.maybe_snapshot(inv)?;
        if let Some(node) = self.node.as_mut() {
            // Drop the history a Compact made unreachable (the server does it in slices).
            let store = &mut node.machine_mut().store;
            while store.compaction_pending() && !store.compact_step(1024) {}
        }
        let Some(node) = self.node.as_ref() else {
            return Ok(());
        };
        inv.on_status(
            &Engine::status(node.engine()),
            self.storage.durable_commit(),
        )?;
        inv.engine.on_engine(node.engine())
    }

    fn on_action(
        &mut self,
        a: Action<SimEngine>,
        inv: &mut SimInvariants,
        out: &mut Outbox,
    ) -> Result<(), Violation> {
        match a {
            Action::Persist { io, write: req } => {
                if out.tracing {
                    out.notes.push(format!(
                        "n{} persist io={io} {} (durable commit {})",
                        self.id,
                        raft_engine::persist_note(&req),
                        self.storage.durable_commit()
                    ));
                }
                inv.engine.on_persist(self.id, &req)?;
                self.storage
                    .write(&req)
                    .map_err(|e| violation(STORAGE_FAILURE, e.to_string()))?;
                self.last_written_io = io;
                out.want_sync = true;
            }
            Action::Send { to, message } => {
                inv.engine.on_send(self.id, to, &message)?;
                out.messages.push((self.id, to, message));
            }
            Action::ReadSnapshotChunk { to, request } => {
                let read = self.storage.read_chunk(&request);
                let chunk = read.map_err(|e| violation(STORAGE_FAILURE, e.to_string()))?;
                if let Some(node) = self.node.as_mut() {
                    // The chunk leaves as a message with the next batch.
                    node.on_snapshot_chunk(to, request, chunk);
                }
            }
        }
        Ok(())
    }

    /// Feeds what the replica applied to the checkers.
    fn check_applied(
        &mut self,
        inv: &mut SimInvariants,
        out: &mut Outbox,
    ) -> Result<(), Violation> {
        let Some(node) = self.node.as_mut() else {
            return Ok(());
        };
        for item in node.take_applied() {
            let AppliedItem {
                index,
                command,
                snapshot,
                digest,
            } = item;
            if snapshot {
                inv.on_snapshot_state(self.id, index, digest, true)?;
                continue;
            }
            let body = command.as_deref().map(strip_id);
            let hash = body.map_or(0, |b| command_hash(index.0, fnv(b)));
            inv.on_apply(self.id, index, hash, digest)?;
            if let Some(value) = body.and_then(crate::kv::put_value) {
                out.values.push((index.0, value));
            }
        }
        out.events.extend(node.machine_mut().take_events());
        let leads = engine::Engine::status(node.engine()).role == engine::Role::Leader;
        for _ in node.take_changes() {
            out.changes_applied += u64::from(leads);
        }
        Ok(())
    }

    /// Routes the replica's answers to their clients.
    fn answer(&mut self, out: &mut Outbox) {
        let Some(node) = self.node.as_mut() else {
            return;
        };
        let replies = node.take_replies();
        for r in replies {
            let Token {
                client,
                attempt,
                request,
                body,
            } = r.client;
            let outcome = match (request, r.outcome) {
                (ClientRequest::Write(_), Outcome::Applied { index, response }) => {
                    out.acked.push((index.0, command_hash(index.0, body)));
                    ClientOutcome::Written(response)
                }
                (ClientRequest::Read(key), Outcome::ReadReady) => {
                    ClientOutcome::Read(node.machine().get(key))
                }
                // A keep-alive confirmed by a ReadIndex round, renewed from memory.
                (ClientRequest::Write(c), Outcome::ReadReady) => match c.op {
                    KvOp::LeaseRenew { id } if node.machine_mut().renew_local(id) => {
                        ClientOutcome::Written(KvResult::Lease(true))
                    }
                    _ => ClientOutcome::Unknown,
                },
                (_, Outcome::Redirect(leader)) => ClientOutcome::Redirect(leader),
                // A compaction below the store's compaction point is refused; it
                // changes nothing either way.
                (ClientRequest::Write(c), Outcome::Refused(_))
                    if matches!(c.op, KvOp::Compact { .. }) =>
                {
                    ClientOutcome::Written(KvResult::Done)
                }
                _ => ClientOutcome::Unknown,
            };
            if out.tracing {
                let applied = node.applied();
                out.notes.push(format!(
                    "n{} answers client {client} attempt {attempt}: {outcome:?} (applied {applied})",
                    self.id
                ));
            }
            out.replies.push(Reply {
                client,
                attempt,
                outcome,
            });
        }
    }

    /// etcd's revision-mode auto-compaction: the leader keeps the store's history to
    /// about `auto_compact_retain` revisions, through the log like any Compact.
    fn auto_compact(&mut self) {
        let retain = self.opts.auto_compact_retain as i64;
        let Some(node) = self.node.as_mut() else {
            return;
        };
        if retain == 0 || node.status().role != engine::Role::Leader {
            return;
        }
        let store = &node.machine().store;
        let target = store.revision() - retain;
        if target <= store.compact_revision() + retain || target <= self.compact_asked {
            return;
        }
        self.compact_asked = target;
        let cmd = Command {
            client: crate::world::COMPACTOR,
            // Increasing, as the session requires: the revision it compacts to.
            seq: target as u64,
            op: KvOp::Compact {
                behind: retain.min(255) as u8,
            },
        };
        let body = cmd.encode(store.revision());
        let token = Token {
            client: crate::world::COMPACTOR,
            attempt: 0,
            request: ClientRequest::Write(cmd),
            body: fnv(&body),
        };
        node.submit(token, body);
    }

    fn maybe_snapshot(&mut self, inv: &mut SimInvariants) -> Result<(), Violation> {
        let Some(node) = self.node.as_mut() else {
            return Ok(());
        };
        if let Ok(true) = node.maybe_snapshot() {
            let (applied, digest) = (node.applied(), node.machine().digest());
            inv.on_snapshot_state(self.id, applied, digest, false)?;
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
        if let Some(node) = self.node.as_mut() {
            if io.0 > 0 {
                node.on_persisted(io)
                    .map_err(|e| violation("io-order", format!("node {}: {e}", self.id)))?;
            }
        }
        Ok(())
    }
}

/// A command as submitted: the log entry without the request id the replica appends.
fn strip_id(payload: &[u8]) -> &[u8] {
    &payload[..payload.len().saturating_sub(8)]
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
