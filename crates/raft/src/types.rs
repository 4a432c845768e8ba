//! Identifier newtypes, log entries, hard state and snapshots.

/// A position in the replicated log; the first entry has index 1, 0 means "none"
/// (the engine contract's [`engine::Index`]).
pub use engine::Index as LogIndex;
pub use engine::{IoId, NodeId, Payload};

engine::id_newtype!(
    /// A Raft term: a logical clock that increases with each election.
    Term
);

impl Term {
    /// The next term (saturating, so a hostile term can never overflow).
    pub fn next(self) -> Term {
        Term(self.0.saturating_add(1))
    }
}

/// What a log entry carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntryKind {
    /// Appended by each new leader so that it can commit an entry of its own term.
    Noop,
    /// A client command, opaque to Raft.
    Command(Payload),
    /// A membership change, in force from the moment it is in the log.
    Config(ConfigEntry),
}

/// A membership change as the log holds it: the change, and the whole membership after
/// it, so that a member that joins (and never saw the group's first membership) knows
/// its group from the first change it receives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigEntry {
    /// What changed.
    pub change: engine::ConfChange,
    /// The membership after the change.
    pub membership: engine::Membership,
}

impl ConfigEntry {
    /// Appends the binary form: `change_len u32 | change | membership`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let mut change = Vec::new();
        self.change.encode(&mut change);
        out.extend_from_slice(&(change.len() as u32).to_le_bytes());
        out.extend_from_slice(&change);
        self.membership.encode(out);
    }

    /// Reads the binary form; the whole of `bytes` must be one entry.
    pub fn decode(bytes: &[u8]) -> Result<ConfigEntry, engine::DecodeError> {
        const SHORT: &str = "membership change entry truncated";
        let short = || engine::DecodeError(SHORT);
        let len = bytes.get(..4).ok_or_else(short)?;
        let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
        let rest = &bytes[4..];
        if rest.len() < len {
            return Err(short());
        }
        Ok(ConfigEntry {
            change: engine::ConfChange::decode(&rest[..len])?,
            membership: engine::Membership::decode(&rest[len..])?,
        })
    }
}

/// One slot of the replicated log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The leader's term when the entry was created.
    pub term: Term,
    /// The entry's position.
    pub index: LogIndex,
    /// The payload.
    pub kind: EntryKind,
}

impl Entry {
    /// Approximate encoded size, used for batching limits.
    pub fn size_bytes(&self) -> usize {
        24 + match &self.kind {
            EntryKind::Noop => 0,
            EntryKind::Command(p) => p.len(),
            EntryKind::Config(c) => 64 + c.membership.members().count() * 16,
        }
    }
}

/// State that must be durable before the node promises anything that depends on it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HardState {
    /// The latest term this node has seen.
    pub term: Term,
    /// The candidate voted for in `term`, if any.
    pub vote: Option<NodeId>,
    /// The commit index known when this was written (lets a restart resume applying).
    pub commit: LogIndex,
}

/// Where a snapshot sits in the log.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SnapshotMeta {
    /// The last log index the snapshot covers.
    pub index: LogIndex,
    /// The term of that entry.
    pub term: Term,
}

/// A state-machine snapshot: everything applied up to `meta.index`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// Position in the log.
    pub meta: SnapshotMeta,
    /// The state machine's serialized state, opaque to Raft.
    pub data: Payload,
}

/// The role a node plays in its current term.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Follows a leader, or waits for one.
    Follower,
    /// Asking whether an election could succeed, without raising its term (pre-vote).
    PreCandidate,
    /// Asking for votes in a new term.
    Candidate,
    /// Replicates the log.
    Leader,
}
