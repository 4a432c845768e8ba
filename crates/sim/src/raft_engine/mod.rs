//! The Raft engine's adapter for the simulator: the one module of `sim` that names
//! Raft's node, messages and records. The rest of the simulator drives
//! `replica::Replica<SimEngine, …>` through the engine contract and reaches Raft only
//! through the aliases and functions here: how a node is configured, booted and
//! restarted, its disk (the in-memory model or the real WAL), how its messages read in
//! a trace, which of them are worth crashing after, and Raft's own checkers
//! ([`checks::RaftChecks`]). A second engine supplies the same items.

pub(crate) mod checks;
pub(crate) mod mem;
pub(crate) mod node_disk;

use crate::hash::mix;
use crate::nemesis::CrashPoint;
use crate::options::SimOptions;
use raft::{AppendOutcome, Config, Message, NodeId, PersistRequest, RaftNode};

/// The engine every simulated host runs.
pub(crate) type SimEngine = RaftNode;
/// Its peer messages.
pub(crate) type Msg = Message;
/// Its configuration.
pub(crate) type EngineConfig = Config;
/// What a node recovers from its disk.
pub(crate) type Recovered = raft::Recovered;
/// Its own checkers.
pub(crate) type Checks = checks::RaftChecks;
/// The detailed status the simulator's API reports (Raft's: term, vote, commit, log).
pub type Status = raft::Status;

/// Node `id`'s configuration in a cluster of `ids`, under `opts` and the run's `seed`.
pub(crate) fn config(opts: &SimOptions, seed: u64, ids: &[NodeId], id: NodeId) -> Config {
    let mut c = Config::new(id, ids.to_vec());
    c.election_timeout_ticks = opts.election_timeout_ticks;
    c.heartbeat_interval_ticks = opts.heartbeat_interval_ticks;
    c.snapshot_chunk_bytes = opts.snapshot_chunk_bytes;
    c.max_inflight_appends = opts.max_inflight_appends;
    c.max_append_entries = opts.max_append_entries;
    c.seed = mix(seed, id.0);
    c.pre_vote = opts.pre_vote;
    c.check_quorum = opts.check_quorum;
    #[cfg(feature = "planted-bugs")]
    {
        c.planted_bug = opts.planted_bug;
    }
    c
}

/// A fresh node.
pub(crate) fn boot(cfg: Config) -> SimEngine {
    RaftNode::new(cfg).unwrap_or_else(|e| panic!("simulator built an invalid config: {e}"))
}

/// A node restarted from what its disk recovered.
pub(crate) fn restart(cfg: Config, recovered: Recovered) -> Result<SimEngine, String> {
    RaftNode::restart(cfg, recovered).map_err(|e| e.to_string())
}

/// A trace line for what a restart recovered.
pub(crate) fn restart_note(r: &Recovered, files: &[String]) -> String {
    format!(
        "recovered hard state {:?}, snapshot {:?}, {} entries, files {files:?}",
        r.hard_state,
        r.snapshot.as_ref().map(|s| s.meta),
        r.entries.len(),
    )
}

/// A trace line for a durable write.
pub(crate) fn persist_note(req: &PersistRequest) -> String {
    format!(
        "hs={:?} snapshot={:?} entries={:?}",
        req.hard_state
            .map(|h| (h.term.0, h.vote.map(|v| v.0), h.commit.0)),
        req.snapshot.as_ref().map(|s| s.meta().index.0),
        req.entries.as_ref().map(|w| (w.from.0, w.entries.len())),
    )
}

/// Whether `m` is the promise `point` waits for.
pub(crate) fn crash_point_matches(point: CrashPoint, m: &Message) -> bool {
    match (point, m) {
        (
            CrashPoint::VoteGranted,
            Message::VoteResponse {
                granted: true,
                pre_vote: false,
                ..
            },
        ) => true,
        (
            CrashPoint::AppendAcked,
            Message::AppendResponse {
                outcome: AppendOutcome::Accepted { .. },
                ..
            },
        ) => true,
        (CrashPoint::EntriesSent, Message::Append { entries, .. }) => !entries.is_empty(),
        _ => false,
    }
}

/// A one-line description of a message for traces.
pub(crate) fn describe(m: &Message) -> String {
    match m {
        Message::VoteRequest {
            term,
            last_index,
            last_term,
            pre_vote,
            transfer,
        } => {
            format!(
                "{} t{term} last={last_index}/t{last_term}{}",
                if *pre_vote { "PreVote" } else { "Vote" },
                if *transfer { " transfer" } else { "" }
            )
        }
        Message::VoteResponse {
            term,
            granted,
            pre_vote,
        } => {
            format!(
                "{} t{term} granted={granted}",
                if *pre_vote { "PreVoteResp" } else { "VoteResp" }
            )
        }
        Message::Append {
            term,
            prev_index,
            prev_term,
            entries,
            leader_commit,
            ..
        } => format!(
            "{} t{term} prev={prev_index}/t{prev_term} n={} commit={leader_commit}",
            m.kind_name(),
            entries.len()
        ),
        Message::AppendResponse { term, outcome, .. } => format!("AppendResp t{term} {outcome:?}"),
        Message::Snapshot {
            term,
            meta,
            offset,
            total_len,
            ..
        } => {
            format!(
                "Snapshot t{term} at {}/t{} bytes {offset}/{total_len}",
                meta.index, meta.term
            )
        }
        Message::SnapshotResponse {
            term,
            index,
            next_offset,
            installed,
            ..
        } => {
            format!("SnapshotResp t{term} at {index} next={next_offset} installed={installed}")
        }
        Message::ReadIndex { term, ctx } => format!("ReadIndex t{term} ctx={ctx}"),
        Message::Propose { term, command } => format!("Propose t{term} {}B", command.len()),
        Message::ReadIndexResponse { term, ctx, index } => {
            format!("ReadIndexResp t{term} ctx={ctx} index={index:?}")
        }
        Message::TimeoutNow { term } => format!("TimeoutNow t{term}"),
    }
}
