//! The replica: the engine, the state machine and the client requests in flight.

use crate::policy::SnapshotPolicy;
use engine::{
    Applied, ChangeRefused, Chunk, Committed, ConfChange, Effect, Engine, Fatal, Index, IoId,
    Membership, NodeId, Payload, Role, StateMachine, Submitted, UnknownIo,
};
use std::collections::BTreeMap;
use std::fmt;

/// Bytes of the request id the replica appends to every command it submits.
const ID_LEN: usize = 8;

/// A deliberately planted bug of the replica layer, for checker self-tests.
#[cfg(feature = "planted-bugs")]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplicaBug {
    /// A write is answered once it is ordered locally, before it commits.
    ReplyBeforeCommit,
}

/// Replica settings.
#[derive(Clone, Copy, Debug)]
pub struct ReplicaOptions {
    /// Where request ids start: different on every incarnation of every node (the
    /// driver draws it), so that a command of an earlier incarnation, applied after a
    /// restart, is never taken for a new one.
    pub id_seed: u64,
    /// When to cut snapshots.
    pub snapshot: SnapshotPolicy,
    /// Keep a record of everything applied, for checkers ([`Replica::take_applied`]).
    pub record_applied: bool,
    /// A deliberately planted bug.
    #[cfg(feature = "planted-bugs")]
    pub bug: Option<ReplicaBug>,
}

impl ReplicaOptions {
    /// Settings without a planted bug, whichever features the build has (a crate that
    /// does not plant bugs need not know whether another enabled the feature).
    pub fn new(id_seed: u64, snapshot: SnapshotPolicy, record_applied: bool) -> ReplicaOptions {
        ReplicaOptions {
            id_seed,
            snapshot,
            record_applied,
            #[cfg(feature = "planted-bugs")]
            bug: None,
        }
    }
}

/// I/O the driver carries out, in order.
pub enum Action<E: Engine> {
    /// Send a message to a peer.
    Send {
        /// Destination.
        to: NodeId,
        /// The message.
        message: E::Message,
    },
    /// Make `write` durable, then report `io` with [`Replica::on_persisted`].
    Persist {
        /// Names the write.
        io: IoId,
        /// What to write.
        write: E::Persist,
    },
    /// Read part of a stored snapshot and hand it to [`Replica::on_snapshot_chunk`].
    ReadSnapshotChunk {
        /// The peer it goes to.
        to: NodeId,
        /// What to read.
        request: E::ChunkRequest,
    },
}

/// How a client request ended.
pub enum Outcome<M: StateMachine> {
    /// The write committed at `index`; the state machine answered `response`.
    Applied {
        /// Its position.
        index: Index,
        /// The state machine's answer.
        response: M::Response,
    },
    /// The state machine refused the command (at validation or at apply); nothing
    /// changed.
    Refused(M::Error),
    /// The state machine has applied through the read point: serve the read from it.
    ReadReady,
    /// The request never entered the order here; retrying (at `leader`) is safe.
    Redirect(Option<NodeId>),
    /// The request may or may not have taken effect (leadership changed, or a snapshot
    /// covered it): etcd's "leader changed".
    Unknown,
}

impl<M: StateMachine> fmt::Debug for Outcome<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Applied { index, response } => write!(f, "Applied({index}, {response:?})"),
            Outcome::Refused(e) => write!(f, "Refused({e})"),
            Outcome::ReadReady => f.write_str("ReadReady"),
            Outcome::Redirect(l) => write!(f, "Redirect({l:?})"),
            Outcome::Unknown => f.write_str("Unknown"),
        }
    }
}

/// An answer for the client that `client` names.
pub struct Reply<C, M: StateMachine> {
    /// The driver's token for the client.
    pub client: C,
    /// The answer.
    pub outcome: Outcome<M>,
}

/// Why a peer's message was refused (the replica is unchanged by it).
#[derive(Debug)]
pub enum Refused<E: Engine, M: StateMachine> {
    /// The engine refused it.
    Engine(E::StepError),
    /// It carried a command for this node to order that the state machine cannot take.
    Command(M::Error),
}

impl<E: Engine, M: StateMachine> fmt::Display for Refused<E, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refused::Engine(e) => write!(f, "{e}"),
            Refused::Command(e) => write!(f, "forwarded command refused: {e}"),
        }
    }
}

/// One applied item, as checkers see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppliedItem {
    /// Its position.
    pub index: Index,
    /// The command's bytes as ordered (request id included); `None` for a no-op.
    pub command: Option<Payload>,
    /// A snapshot was installed through `index`.
    pub snapshot: bool,
    /// The state machine's digest after it.
    pub digest: u64,
}

/// A membership change the engine applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChangeApplied {
    /// Where it was ordered.
    pub index: Index,
    /// The change.
    pub change: ConfChange,
    /// The membership after it.
    pub membership: Membership,
}

/// The one owner of an engine, a state machine and the client requests in flight.
pub struct Replica<E: Engine, M: StateMachine, C> {
    pub(crate) engine: E,
    pub(crate) machine: M,
    pub(crate) opts: ReplicaOptions,
    next_id: u64,
    next_ctx: u64,
    /// Writes this node ordered, by index: (request id, client).
    pub(crate) proposed: BTreeMap<Index, (u64, C)>,
    /// Writes handed to the leader, by request id.
    pub(crate) forwarded: BTreeMap<u64, C>,
    /// The (epoch, leader) the forwarded writes were handed to.
    forwarded_to: (u64, Option<NodeId>),
    /// Reads waiting for the engine's read point, by context.
    pub(crate) reads: BTreeMap<u64, C>,
    /// Reads waiting for apply, by (read point, context).
    pub(crate) ready_reads: BTreeMap<(Index, u64), C>,
    replies: Vec<Reply<C, M>>,
    applied_items: Vec<AppliedItem>,
    /// Membership changes applied since the driver last took them.
    changes_applied: Vec<ChangeApplied>,
    // Invariant: applied == the last index handed to the state machine.
    pub(crate) applied: Index,
    /// The last snapshot point (cut, begun or installed).
    pub(crate) snapshot_index: Index,
    /// Command bytes applied since the last snapshot began.
    pub(crate) log_bytes: u64,
    /// Size of the last snapshot this node cut (0: none yet).
    pub(crate) last_snapshot_len: u64,
    pub(crate) snapshots_installed: u64,
    pub(crate) commands_refused: u64,
    /// Whether the state machine was last told that this node leads.
    leading: bool,
}

impl<E: Engine, M: StateMachine, C> Replica<E, M, C> {
    /// A replica over a booted engine and the state machine it applies to.
    pub fn new(engine: E, machine: M, opts: ReplicaOptions) -> Replica<E, M, C> {
        let status = engine.status();
        Replica {
            engine,
            machine,
            opts,
            next_id: opts.id_seed,
            next_ctx: 0,
            proposed: BTreeMap::new(),
            forwarded: BTreeMap::new(),
            forwarded_to: (status.epoch, status.leader),
            reads: BTreeMap::new(),
            ready_reads: BTreeMap::new(),
            replies: Vec::new(),
            applied_items: Vec::new(),
            changes_applied: Vec::new(),
            applied: Index(0),
            snapshot_index: status.snapshot,
            log_bytes: 0,
            last_snapshot_len: 0,
            snapshots_installed: 0,
            commands_refused: 0,
            leading: false,
        }
    }

    /// One logical time unit. The state machine's timed duties run here: what it asks
    /// a leader to order (lease revokes, checkpoints) is submitted as the replica's
    /// own writes.
    pub fn tick(&mut self) {
        self.engine.tick();
        let leading = self.sync_leadership();
        for command in self.machine.on_tick(leading) {
            if self.sync_leadership() {
                self.submit_own(command);
            }
        }
    }

    /// Tells the state machine when leadership begins or ends; whether this node leads.
    fn sync_leadership(&mut self) -> bool {
        let leading = self.engine.status().role == Role::Leader;
        if leading != self.leading {
            self.leading = leading;
            self.machine.on_leadership(leading);
        }
        leading
    }

    /// Orders a command of the state machine's own; its answer goes to nobody.
    fn submit_own(&mut self, mut command: Vec<u8>) {
        if self.machine.validate(&command).is_err() {
            return;
        }
        let len = command.len();
        self.next_id = self.next_id.wrapping_add(1);
        command.extend_from_slice(&self.next_id.to_le_bytes());
        let payload: engine::Payload = command.into();
        let kept = payload.clone();
        if let Ok(Submitted::Accepted { index }) = self.engine.submit(payload) {
            self.machine.on_ordered(Some(index), &kept[..len]);
        }
    }

    /// A message from a peer. Commands it asks this node to order are validated first:
    /// one that the state machine cannot take refuses the whole message.
    pub fn step(&mut self, from: NodeId, message: E::Message) -> Result<(), Refused<E, M>> {
        for command in E::commands_in(&message) {
            let checked = match split_id(command) {
                Some((body, _)) => self.machine.validate(body),
                None => self.machine.validate(&[]),
            };
            if let Err(e) = checked {
                self.commands_refused += 1;
                return Err(Refused::Command(e));
            }
        }
        if self.sync_leadership() {
            for command in E::commands_in(&message) {
                if let Some((body, _)) = split_id(command) {
                    self.machine.on_ordered(None, body);
                }
            }
        }
        self.engine.step(from, message).map_err(Refused::Engine)
    }

    /// A client write. It is validated, tagged with a request id and submitted; the
    /// answer comes back through [`Replica::take_replies`]. Returns the index this node
    /// gave it, when it leads.
    pub fn submit(&mut self, client: C, mut command: Vec<u8>) -> Option<Index> {
        if let Err(e) = self.machine.validate(&command) {
            self.commands_refused += 1;
            self.reply(client, Outcome::Refused(e));
            return None;
        }
        #[cfg(feature = "planted-bugs")]
        let preview = match self.opts.bug {
            Some(ReplicaBug::ReplyBeforeCommit) => Some(self.machine.preview(&command)),
            None => None,
        };
        let leading = self.sync_leadership();
        let len = command.len();
        self.next_id = self.next_id.wrapping_add(1);
        let id = self.next_id;
        command.extend_from_slice(&id.to_le_bytes());
        let payload: engine::Payload = command.into();
        let kept = payload.clone();
        let submitted = self.engine.submit(payload);
        if let (true, Ok(Submitted::Accepted { index })) = (leading, &submitted) {
            self.machine.on_ordered(Some(*index), &kept[..len]);
        }
        match submitted {
            #[cfg(feature = "planted-bugs")]
            Ok(Submitted::Accepted { index }) if preview.is_some() => {
                // Planted bug: the answer leaves before the write commits.
                let outcome = match preview.flatten() {
                    Some(Ok(response)) => Outcome::Applied { index, response },
                    Some(Err(e)) => Outcome::Refused(e),
                    None => Outcome::Unknown,
                };
                self.reply(client, outcome);
                Some(index)
            }
            Ok(Submitted::Accepted { index }) => {
                self.proposed.insert(index, (id, client));
                Some(index)
            }
            Ok(Submitted::Forwarded) => {
                self.check_leadership();
                self.forwarded.insert(id, client);
                None
            }
            Err(r) => {
                self.reply(client, Outcome::Redirect(r.leader));
                None
            }
        }
    }

    /// A linearizable read: [`Outcome::ReadReady`] once the state machine has applied
    /// through a point the engine confirmed.
    pub fn read(&mut self, client: C) {
        self.next_ctx += 1;
        let ctx = self.next_ctx;
        match self.engine.read(ctx) {
            Ok(()) => {
                self.reads.insert(ctx, client);
            }
            Err(r) => self.reply(client, Outcome::Redirect(r.leader)),
        }
    }

    /// Starts handing leadership to `to` (see [`Engine::transfer_leadership`]).
    pub fn transfer_leadership(&mut self, to: NodeId) -> Result<(), engine::TransferRefused> {
        self.engine.transfer_leadership(to)
    }

    /// Orders a membership change (leader only); it is applied at the index returned,
    /// and reported by [`Replica::take_changes`] then. Another entry applied at that
    /// index means the change was lost with this leader's term.
    pub fn change_membership(&mut self, change: ConfChange) -> Result<Index, ChangeRefused> {
        self.engine.change_membership(change)
    }

    /// Membership changes applied since the last call, in order.
    pub fn take_changes(&mut self) -> Vec<ChangeApplied> {
        std::mem::take(&mut self.changes_applied)
    }

    /// Storage made `io` (and every earlier io) durable.
    pub fn on_persisted(&mut self, io: IoId) -> Result<(), UnknownIo> {
        self.engine.on_persisted(io)
    }

    /// The chunk an [`Action::ReadSnapshotChunk`] asked for (`None`: no longer stored).
    pub fn on_snapshot_chunk(
        &mut self,
        to: NodeId,
        request: E::ChunkRequest,
        chunk: Option<Chunk>,
    ) {
        self.engine.on_snapshot_chunk(to, request, chunk);
    }

    /// The I/O to carry out now, in order. Committed state is applied on the way and
    /// reads that became safe are released. A snapshot the state machine cannot
    /// restore is fatal (storage or transfer handed over corrupt bytes).
    pub fn take_effects(&mut self) -> Result<Vec<Action<E>>, Fatal> {
        let effects = self.engine.take_effects();
        let mut actions = Vec::with_capacity(effects.len());
        for e in effects {
            match e {
                Effect::Send { to, message } => actions.push(Action::Send { to, message }),
                Effect::Persist { io, write } => actions.push(Action::Persist { io, write }),
                Effect::ReadSnapshotChunk { to, request } => {
                    actions.push(Action::ReadSnapshotChunk { to, request })
                }
                Effect::Apply(c) => self.apply(c)?,
                Effect::ReadReady { ctx, index } => {
                    if let Some(c) = self.reads.remove(&ctx) {
                        self.ready_reads.insert((index, ctx), c);
                    }
                }
                Effect::ReadAborted { ctx } => {
                    if let Some(c) = self.reads.remove(&ctx) {
                        self.reply(c, Outcome::Redirect(None));
                    }
                }
            }
        }
        self.serve_reads();
        self.check_leadership();
        self.sync_leadership();
        Ok(actions)
    }

    /// Answers for clients, in the order they were decided.
    pub fn take_replies(&mut self) -> Vec<Reply<C, M>> {
        std::mem::take(&mut self.replies)
    }

    /// What was applied since the last call (only with `record_applied`).
    pub fn take_applied(&mut self) -> Vec<AppliedItem> {
        std::mem::take(&mut self.applied_items)
    }

    fn reply(&mut self, client: C, outcome: Outcome<M>) {
        self.replies.push(Reply { client, outcome });
    }

    fn apply(&mut self, c: Committed) -> Result<(), Fatal> {
        match c {
            Committed::Noop { index } => {
                self.machine.apply_noop(index);
                self.applied = index;
                if let Some((_, c)) = self.proposed.remove(&index) {
                    self.reply(c, Outcome::Unknown);
                }
                self.record(index, None, false);
            }
            Committed::Command { index, command } => self.apply_command(index, command),
            Committed::Membership {
                index,
                change,
                membership,
            } => {
                self.machine.apply_noop(index);
                self.applied = index;
                if let Some((_, c)) = self.proposed.remove(&index) {
                    self.reply(c, Outcome::Unknown);
                }
                self.record(index, None, false);
                let applied = ChangeApplied {
                    index,
                    change,
                    membership,
                };
                self.changes_applied.push(applied);
            }
            Committed::Snapshot { index, data } => self.install(index, &data)?,
        }
        Ok(())
    }

    fn apply_command(&mut self, index: Index, payload: Payload) {
        self.log_bytes += payload.len() as u64;
        // A command too short to carry a request id is nobody's here.
        let (body, id) = match split_id(&payload) {
            Some((body, id)) => (body, Some(id)),
            None => (&[][..], None),
        };
        let result = self.machine.apply(index, body);
        self.applied = index;
        if let Some(c) = id.and_then(|id| self.forwarded.remove(&id)) {
            let outcome = outcome(index, result.clone());
            self.reply(c, outcome);
        }
        if let Some((want, c)) = self.proposed.remove(&index) {
            let outcome = match result {
                // Another leader's entry took the slot: the write did not happen here.
                _ if Some(want) != id => Outcome::Unknown,
                r => outcome(index, r),
            };
            self.reply(c, outcome);
        }
        self.record(index, Some(payload), false);
    }

    fn install(&mut self, index: Index, data: &[u8]) -> Result<(), Fatal> {
        if let Err(e) = self.machine.restore(data) {
            return Err(Fatal::new(format!("restoring the snapshot at {index}"), e));
        }
        self.applied = index;
        if index > self.snapshot_index {
            self.snapshots_installed += 1;
            self.snapshot_index = index;
        }
        // The snapshot may hold these writes: their outcome is unknown here.
        let rest = self.proposed.split_off(&index.next());
        let covered = std::mem::replace(&mut self.proposed, rest);
        let forwarded = std::mem::take(&mut self.forwarded);
        for c in covered
            .into_values()
            .map(|(_, c)| c)
            .chain(forwarded.into_values())
        {
            self.reply(c, Outcome::Unknown);
        }
        self.record(index, None, true);
        Ok(())
    }

    fn record(&mut self, index: Index, command: Option<Payload>, snapshot: bool) {
        if self.opts.record_applied {
            let digest = self.machine.digest();
            self.applied_items.push(AppliedItem {
                index,
                command,
                snapshot,
                digest,
            });
        }
    }

    fn serve_reads(&mut self) {
        while let Some(entry) = self.ready_reads.first_entry() {
            if entry.key().0 > self.applied {
                break;
            }
            let c = entry.remove();
            self.reply(c, Outcome::ReadReady);
        }
    }

    /// Forwarded writes went to one leader in one epoch: once either changes, the
    /// leader they went to may have dropped them, and nothing would ever answer them.
    fn check_leadership(&mut self) {
        let s = self.engine.status();
        if (s.epoch, s.leader) == self.forwarded_to {
            return;
        }
        self.forwarded_to = (s.epoch, s.leader);
        for c in std::mem::take(&mut self.forwarded).into_values() {
            self.reply(c, Outcome::Unknown);
        }
    }
}

/// Splits a submitted command into its body and request id.
fn split_id(payload: &[u8]) -> Option<(&[u8], u64)> {
    let cut = payload.len().checked_sub(ID_LEN)?;
    let (body, id) = payload.split_at(cut);
    Some((body, u64::from_le_bytes(id.try_into().ok()?)))
}

fn outcome<M: StateMachine>(index: Index, result: Option<Applied<M>>) -> Outcome<M> {
    match result {
        Some(Ok(response)) => Outcome::Applied { index, response },
        Some(Err(e)) => Outcome::Refused(e),
        // Applied before (a replay): this node cannot tell the answer.
        None => Outcome::Unknown,
    }
}
