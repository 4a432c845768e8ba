//! Messages exchanged between Raft nodes.

use crate::types::{Entry, LogIndex, Payload, SnapshotMeta, Term};

/// A Raft message. The driver transports it unchanged; `step` validates it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// RequestVote, or its pre-vote probe (which does not raise anyone's term).
    VoteRequest {
        /// The term the candidate runs in (for a pre-vote: the term it would run in).
        term: Term,
        /// Index of the candidate's last log entry.
        last_index: LogIndex,
        /// Term of the candidate's last log entry.
        last_term: Term,
        /// True for a pre-vote probe.
        pre_vote: bool,
        /// The leader asked for this election ([`Message::TimeoutNow`]): a voter that
        /// still hears from that leader votes all the same.
        transfer: bool,
    },
    /// Answer to a [`Message::VoteRequest`].
    VoteResponse {
        /// The responder's term (for a granted pre-vote: the term asked about).
        term: Term,
        /// Whether the vote is granted.
        granted: bool,
        /// Echoes the request's flag.
        pre_vote: bool,
    },
    /// AppendEntries: replication, and heartbeat when `entries` is empty.
    Append {
        /// The leader's term.
        term: Term,
        /// Index of the entry just before `entries`.
        prev_index: LogIndex,
        /// Term of that entry.
        prev_term: Term,
        /// Entries `prev_index + 1 ..`, contiguous.
        entries: Vec<Entry>,
        /// The leader's commit index.
        leader_commit: LogIndex,
        /// The leader's read-confirmation round, echoed in the response (ReadIndex).
        read_seq: u64,
    },
    /// Answer to [`Message::Append`].
    AppendResponse {
        /// The responder's term.
        term: Term,
        /// Accepted or rejected, with hints.
        outcome: AppendOutcome,
        /// Echo of the append's `read_seq`.
        read_seq: u64,
    },
    /// One chunk of InstallSnapshot.
    Snapshot {
        /// The leader's term.
        term: Term,
        /// The snapshot being sent.
        meta: SnapshotMeta,
        /// Byte offset of `data` within the snapshot.
        offset: u64,
        /// Total snapshot size in bytes.
        total_len: u64,
        /// This chunk.
        data: Payload,
        /// CRC32C of the whole snapshot's data: the follower checks what it assembled
        /// (the chunks are read from the leader's disk) before installing it.
        checksum: u32,
        /// Read-confirmation round, as in `Append`.
        read_seq: u64,
    },
    /// Answer to a snapshot chunk.
    SnapshotResponse {
        /// The responder's term.
        term: Term,
        /// The snapshot index the answer refers to.
        index: LogIndex,
        /// The next byte offset the follower expects.
        next_offset: u64,
        /// True once the whole snapshot is durable at the follower.
        installed: bool,
        /// Echo of `read_seq`.
        read_seq: u64,
    },
    /// A follower asks the leader for a read index (a linearizable read it will serve
    /// itself once it has applied that far).
    ReadIndex {
        /// The follower's term.
        term: Term,
        /// The follower's name for the read, echoed back.
        ctx: u64,
    },
    /// A follower hands a client command to its leader, which appends it like its own
    /// proposal (or drops it if it no longer leads). The follower recognises the entry
    /// by its payload when it applies it.
    Propose {
        /// The follower's term.
        term: Term,
        /// The command.
        command: Payload,
    },
    /// Answer to [`Message::ReadIndex`], sent once a quorum confirmed the leadership.
    ReadIndexResponse {
        /// The leader's term.
        term: Term,
        /// Echo of the request's `ctx`.
        ctx: u64,
        /// The index to read at; `None` when the leader cannot serve it (it stepped down).
        index: Option<LogIndex>,
    },
    /// The leader hands its leadership over: the receiver, caught up with the leader's
    /// log, starts an election at once (no pre-vote, no waiting for a timeout).
    TimeoutNow {
        /// The leader's term.
        term: Term,
    },
}

/// The result of an AppendEntries consistency check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AppendOutcome {
    /// The follower's log matches the leader's through `match_index` (and it is durable).
    Accepted {
        /// Last index known to match.
        match_index: LogIndex,
    },
    /// The entry at `rejected_index` did not match; hints for fast backtracking.
    Rejected {
        /// The `prev_index` that failed the check.
        rejected_index: LogIndex,
        /// The follower's term at `rejected_index`, if it has that entry.
        conflict_term: Option<Term>,
        /// First index of `conflict_term` in the follower's log, or its last index + 1.
        conflict_index: LogIndex,
    },
}

impl Message {
    /// The sender's term carried by every message.
    pub fn term(&self) -> Term {
        match self {
            Message::VoteRequest { term, .. }
            | Message::VoteResponse { term, .. }
            | Message::Append { term, .. }
            | Message::AppendResponse { term, .. }
            | Message::Snapshot { term, .. }
            | Message::SnapshotResponse { term, .. }
            | Message::ReadIndex { term, .. }
            | Message::Propose { term, .. }
            | Message::ReadIndexResponse { term, .. }
            | Message::TimeoutNow { term } => *term,
        }
    }

    /// A short name for traces.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Message::VoteRequest { pre_vote: true, .. } => "PreVote",
            Message::VoteRequest { .. } => "Vote",
            Message::VoteResponse { pre_vote: true, .. } => "PreVoteResp",
            Message::VoteResponse { .. } => "VoteResp",
            Message::Append { entries, .. } if entries.is_empty() => "Heartbeat",
            Message::Append { .. } => "Append",
            Message::AppendResponse { .. } => "AppendResp",
            Message::Snapshot { .. } => "Snapshot",
            Message::SnapshotResponse { .. } => "SnapshotResp",
            Message::ReadIndex { .. } => "ReadIndex",
            Message::Propose { .. } => "Propose",
            Message::ReadIndexResponse { .. } => "ReadIndexResp",
            Message::TimeoutNow { .. } => "TimeoutNow",
        }
    }
}

/// Checks structural validity of a message on its own (not against node state).
pub(crate) fn validate(msg: &Message) -> Result<(), MalformedReason> {
    match msg {
        Message::Append {
            term,
            prev_index,
            entries,
            ..
        } => {
            if prev_index.0.checked_add(entries.len() as u64 + 1).is_none() {
                return Err(MalformedReason::IndexOutOfRange);
            }
            let mut expected = prev_index.next();
            for e in entries {
                if e.index != expected {
                    return Err(MalformedReason::NonContiguousEntries);
                }
                if e.term > *term {
                    return Err(MalformedReason::EntryTermAboveMessageTerm);
                }
                expected = expected.next();
            }
            if entries.windows(2).any(|w| w[0].term > w[1].term) {
                return Err(MalformedReason::DecreasingEntryTerms);
            }
            Ok(())
        }
        Message::Snapshot {
            meta,
            offset,
            total_len,
            data,
            ..
        } => {
            if meta.index == LogIndex(0) {
                return Err(MalformedReason::SnapshotAtIndexZero);
            }
            let end = offset.checked_add(data.len() as u64);
            match end {
                Some(end) if end <= *total_len => Ok(()),
                _ => Err(MalformedReason::SnapshotChunkOutOfBounds),
            }
        }
        _ => Ok(()),
    }
}

/// Why a message was rejected as malformed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MalformedReason {
    /// Entry indexes do not follow `prev_index` one by one.
    NonContiguousEntries,
    /// An entry claims a term newer than the message.
    EntryTermAboveMessageTerm,
    /// Entry terms go down.
    DecreasingEntryTerms,
    /// A snapshot must cover at least index 1.
    SnapshotAtIndexZero,
    /// A chunk extends past the snapshot's declared size.
    SnapshotChunkOutOfBounds,
    /// A response names an index this node never sent.
    IndexOutOfRange,
}
