//! Raft behind the engine contract ([`engine::Engine`]): the one place where Raft's
//! verbs and effects are translated into the words every driver speaks.

use crate::effects::{Apply, ChunkRequest, Effect, PersistRequest};
use crate::error::{ProposeError, StepError};
use crate::message::Message;
use crate::node::RaftNode;
use crate::types::{EntryKind, IoId, LogIndex, NodeId, Payload, Role};
use engine::{
    Chunk, Committed, DecodeError, Redirect, SnapshotRefused, Status, Submitted, UnknownIo,
};

fn redirect(e: ProposeError) -> Redirect {
    let ProposeError::NotLeader { leader } = e;
    Redirect { leader }
}

fn role(r: Role) -> (engine::Role, &'static str) {
    match r {
        Role::Follower => (engine::Role::Follower, "follower"),
        Role::PreCandidate => (engine::Role::Candidate, "pre-candidate"),
        Role::Candidate => (engine::Role::Candidate, "candidate"),
        Role::Leader => (engine::Role::Leader, "leader"),
    }
}

fn translate(e: Effect) -> engine::Effect<RaftNode> {
    match e {
        Effect::Persist(req) => engine::Effect::Persist {
            io: req.io,
            write: req,
        },
        Effect::Send { to, message } => engine::Effect::Send { to, message },
        Effect::SendSnapshotChunk { to, chunk } => {
            engine::Effect::ReadSnapshotChunk { to, request: chunk }
        }
        Effect::Apply(Apply::Config {
            index,
            change,
            membership,
        }) => engine::Effect::Apply(Committed::Membership {
            index,
            change,
            membership,
        }),
        Effect::Apply(Apply::Entry(entry)) => engine::Effect::Apply(match entry.kind {
            // Config entries are applied as `Apply::Config`.
            EntryKind::Noop | EntryKind::Config(_) => Committed::Noop { index: entry.index },
            EntryKind::Command(command) => Committed::Command {
                index: entry.index,
                command,
            },
        }),
        Effect::Apply(Apply::Snapshot(s)) => engine::Effect::Apply(Committed::Snapshot {
            index: s.meta.index,
            data: s.data,
        }),
        Effect::ReadReady { ctx, index } => engine::Effect::ReadReady { ctx, index },
        Effect::ReadAborted { ctx } => engine::Effect::ReadAborted { ctx },
    }
}

impl engine::Engine for RaftNode {
    type Message = Message;
    type Persist = PersistRequest;
    type ChunkRequest = ChunkRequest;
    type StepError = StepError;

    const NAME: &'static str = "raft";

    fn tick(&mut self) {
        RaftNode::tick(self)
    }

    fn step(&mut self, from: NodeId, message: Message) -> Result<(), StepError> {
        RaftNode::step(self, from, message)
    }

    fn submit(&mut self, command: Payload) -> Result<Submitted, Redirect> {
        match self.propose(command.clone()) {
            Ok(p) => Ok(Submitted::Accepted { index: p.index }),
            // A follower that knows its leader hands the command over (etcd's MsgProp).
            Err(ProposeError::NotLeader { leader: Some(_) }) => self
                .forward(command)
                .map(|()| Submitted::Forwarded)
                .map_err(redirect),
            Err(e) => Err(redirect(e)),
        }
    }

    fn read(&mut self, ctx: u64) -> Result<(), Redirect> {
        self.read_index(ctx).map_err(redirect)
    }

    fn transfer_leadership(&mut self, to: NodeId) -> Result<(), engine::TransferRefused> {
        RaftNode::transfer_leadership(self, to).map_err(|e| match e {
            crate::TransferError::NotLeader { leader } => {
                engine::TransferRefused::NotLeader(Redirect { leader })
            }
            crate::TransferError::NotAVoter(n) => engine::TransferRefused::NotAVoter(n),
        })
    }

    fn change_membership(
        &mut self,
        change: engine::ConfChange,
    ) -> Result<LogIndex, engine::ChangeRefused> {
        self.propose_change(change)
    }

    fn membership(&self) -> &engine::Membership {
        RaftNode::membership(self)
    }

    fn snapshot_trailer(&self, index: LogIndex) -> Option<Vec<u8>> {
        RaftNode::snapshot_trailer(self, index)
    }

    fn on_persisted(&mut self, io: IoId) -> Result<(), UnknownIo> {
        RaftNode::on_persisted(self, io).map_err(|e| UnknownIo(e.0))
    }

    fn take_effects(&mut self) -> Vec<engine::Effect<RaftNode>> {
        RaftNode::take_effects(self)
            .into_iter()
            .map(translate)
            .collect()
    }

    fn status(&self) -> Status {
        let s = RaftNode::status(self);
        let (role, role_detail) = role(s.role);
        Status {
            id: s.id,
            role,
            role_detail,
            // The durable term: the in-memory one can be lost in a crash before its
            // hard state is written, and the epoch must never decrease.
            epoch: self.durable_term().0,
            leader: s.leader,
            committed: s.commit,
            applied: s.applied,
            last_index: s.last_index,
            persisted: s.persisted_index,
            snapshot: s.snapshot.index,
        }
    }

    fn peer_progress(&self, peer: NodeId) -> Option<LogIndex> {
        self.peer_match(peer)
    }

    fn commands_in(message: &Message) -> Vec<&[u8]> {
        match message {
            Message::Propose { command, .. } => vec![&command[..]],
            _ => Vec::new(),
        }
    }

    fn epoch_at(&self, index: LogIndex) -> Option<u64> {
        self.log_term(index).map(|t| t.0)
    }

    fn snapshot_taken(&mut self, index: LogIndex, data: Payload) -> Result<(), SnapshotRefused> {
        self.compact(index, data)
            .map_err(|e| SnapshotRefused(format!("{e:?}")))
    }

    fn snapshot_saved(&mut self, index: LogIndex, len: u64) -> Result<(), SnapshotRefused> {
        self.compact_saved(index, len)
            .map_err(|e| SnapshotRefused(format!("{e:?}")))
    }

    fn on_snapshot_chunk(&mut self, to: NodeId, request: ChunkRequest, chunk: Option<Chunk>) {
        match chunk {
            Some(c) => {
                let message = request.into_message(c.data.into(), c.checksum);
                self.send(to, message);
            }
            // A newer snapshot replaced it: the transfer restarts with that one.
            None => self.snapshot_unavailable(to, request.meta),
        }
    }

    fn encode_message(message: &Message, out: &mut Vec<u8>) {
        crate::codec::encode(message, out)
    }

    fn decode_message(bytes: &[u8]) -> Result<Message, DecodeError> {
        crate::codec::decode(bytes)
    }

    fn message_kind(message: &Message) -> &'static str {
        message.kind_name()
    }
}
