//! Raft's own safety properties, supplied to the simulator's engine-agnostic checkers
//! through [`EngineChecks`]: one vote per term, election safety, log contiguity and log
//! matching, leader completeness, the commit rule (Raft §5.4.2), and that a committed
//! index holds one entry.
//!
//! Each node's log is mirrored from the persist requests it emits (every change to a
//! Raft log leaves the core as one) as a hash chain, so log matching is one lookup per
//! new entry and leader completeness one lookup per election.

use crate::hash::{fnv, mix};
use crate::invariants::{violated, Check, EngineChecks};
use raft::{
    Entry, EntryKind, EntryWrite, LogIndex, Message, NodeId, PersistRequest, RaftNode, Recovered,
    Role, SnapshotMeta, Status, Term,
};
use std::collections::BTreeMap;

/// Hash of one entry's identity (term, index, payload).
pub fn entry_hash(e: &Entry) -> u64 {
    let payload = match &e.kind {
        EntryKind::Noop => 0,
        EntryKind::Command(p) => fnv(p),
        EntryKind::Config(c) => {
            let mut b = vec![0xc0];
            c.encode(&mut b);
            fnv(&b)
        }
    };
    mix(mix(e.term.0, e.index.0), payload)
}

/// One node's log as (term, chain hash) from a base point.
#[derive(Clone, Debug, Default)]
pub(crate) struct LogMirror {
    base_index: u64,
    /// Chain hash at the base; `None` when the base is not anchored to a known chain.
    base_chain: Option<u64>,
    entries: Vec<(Term, u64)>,
}

impl LogMirror {
    fn last_index(&self) -> u64 {
        self.base_index + self.entries.len() as u64
    }

    fn chain_at(&self, index: u64) -> Option<(Term, u64)> {
        if index == self.base_index {
            return None;
        }
        let off = index.checked_sub(self.base_index + 1)? as usize;
        self.entries.get(off).copied()
    }
}

#[derive(Clone, Debug, Default)]
struct NodeWatch {
    commit: u64,
    was_leader_in: Option<Term>,
}

/// Raft's incrementally checked safety properties.
#[derive(Debug, Default)]
pub(crate) struct RaftChecks {
    leaders: BTreeMap<Term, NodeId>,
    /// (voter, term) -> candidate of every vote a node cast (granted or for itself).
    votes: BTreeMap<(NodeId, Term), NodeId>,
    /// (index, term) -> chain hash: log matching.
    chains: BTreeMap<(u64, Term), u64>,
    /// index -> (entry term, chain, commit term) of every entry some node has counted as
    /// committed; the commit term is the lowest term of a node that counted it, which
    /// is the term of the leader that committed it.
    committed: BTreeMap<u64, (Term, u64, Term)>,
    mirrors: BTreeMap<NodeId, LogMirror>,
    watch: BTreeMap<NodeId, NodeWatch>,
}

impl EngineChecks<RaftNode> for RaftChecks {
    type Recovered = Recovered;

    fn on_persist(&mut self, node: NodeId, req: &PersistRequest) -> Check {
        let snapshot = req.snapshot.as_ref().map(|s| s.meta());
        self.on_log_write(node, snapshot, req.entries.as_ref())
    }

    fn on_send(&mut self, from: NodeId, to: NodeId, message: &Message) -> Check {
        if let Message::VoteResponse {
            term,
            granted: true,
            pre_vote: false,
        } = message
        {
            self.on_vote(from, *term, to)?;
        }
        Ok(())
    }

    fn on_restart(&mut self, node: NodeId, recovered: &Recovered) -> Check {
        let snapshot = recovered.snapshot.as_ref().map(|s| s.meta);
        self.restarted(node, &recovered.entries, snapshot)
    }

    fn on_engine(&mut self, engine: &RaftNode) -> Check {
        self.on_status(&engine.status())
    }
}

impl RaftChecks {
    /// A node's log changed: mirror it and check log matching for the new entries.
    fn on_log_write(
        &mut self,
        node: NodeId,
        snapshot: Option<SnapshotMeta>,
        write: Option<&EntryWrite>,
    ) -> Check {
        let mut mirror = self.mirrors.remove(&node).unwrap_or_default();
        let result = self.apply_log_write(&mut mirror, node, snapshot, write);
        self.mirrors.insert(node, mirror);
        result
    }

    fn apply_log_write(
        &mut self,
        m: &mut LogMirror,
        node: NodeId,
        snapshot: Option<SnapshotMeta>,
        write: Option<&EntryWrite>,
    ) -> Check {
        if let Some(meta) = snapshot {
            let idx = meta.index.0;
            let keep = m.chain_at(idx).filter(|(t, _)| *t == meta.term);
            let tail_from = (idx - m.base_index.min(idx)) as usize;
            let tail = if keep.is_some() {
                m.entries.split_off(tail_from.min(m.entries.len()))
            } else {
                Vec::new()
            };
            m.base_chain = keep
                .map(|(_, c)| c)
                .or_else(|| self.committed.get(&idx).map(|(_, c, _)| *c));
            m.base_index = idx;
            m.entries = tail;
        }
        let Some(w) = write else { return Ok(()) };
        let from = w.from.0.max(m.base_index + 1);
        m.entries.truncate((from - m.base_index - 1) as usize);
        for e in w.entries.iter().filter(|e| e.index.0 >= from) {
            if e.index.0 != m.last_index() + 1 {
                return violated(
                    "log-contiguity",
                    format!(
                        "node {node} wrote index {} after {}",
                        e.index,
                        m.last_index()
                    ),
                );
            }
            let prev = if m.entries.is_empty() {
                m.base_chain
            } else {
                m.entries.last().map(|(_, c)| *c)
            };
            let Some(prev) = prev else {
                // Unanchored (snapshot point of unknown chain): record terms only.
                m.entries.push((e.term, 0));
                continue;
            };
            let chain = mix(prev, entry_hash(e));
            m.entries.push((e.term, chain));
            match self.chains.get(&(e.index.0, e.term)) {
                Some(c) if *c != chain => {
                    return violated(
                        "log-matching",
                        format!(
                            "node {node} holds a different log prefix at index {} term {}",
                            e.index, e.term
                        ),
                    );
                }
                Some(_) => {}
                None => {
                    self.chains.insert((e.index.0, e.term), chain);
                }
            }
        }
        Ok(())
    }

    /// A node cast a vote (a granted vote message, or a candidate's vote for itself):
    /// one vote per term, whatever crashes happen in between.
    fn on_vote(&mut self, voter: NodeId, term: Term, candidate: NodeId) -> Check {
        match self.votes.get(&(voter, term)) {
            Some(c) if *c != candidate => {
                let c = *c;
                violated(
                    "one-vote-per-term",
                    format!("node {voter} voted for {c} and then for {candidate} in term {term}"),
                )
            }
            Some(_) => Ok(()),
            None => {
                self.votes.insert((voter, term), candidate);
                Ok(())
            }
        }
    }

    /// After an event touched `node`: leader uniqueness, completeness and Raft's commit
    /// rule (commit and durable commit monotonic are engine-agnostic checks).
    fn on_status(&mut self, s: &Status) -> Check {
        let w = self.watch.entry(s.id).or_default().clone();
        // A candidate's vote for itself counts only once durable (a candidate that crashes
        // first may vote for another after restart); a winner's self-vote was durable.
        if s.role == Role::Leader {
            self.on_vote(s.id, s.term, s.id)?;
        }
        if s.role == Role::Leader && w.was_leader_in == Some(s.term) && s.commit.0 > w.commit {
            let m = self.mirrors.get(&s.id);
            let term = m.and_then(|m| m.chain_at(s.commit.0)).map(|(t, _)| t);
            if term.is_some_and(|t| t != s.term) {
                return violated(
                    "commit-rule",
                    format!("leader {} of term {} advanced its commit index to {} whose entry is from term {:?} (Raft 5.4.2)", s.id, s.term, s.commit, term.unwrap_or_default()),
                );
            }
        }
        if s.role == Role::Leader && w.was_leader_in != Some(s.term) {
            self.check_new_leader(s)?;
        }
        if s.commit.0 > w.commit {
            self.record_commits(s.id, s.term, w.commit, s.commit.0)?;
        }
        let w = self.watch.entry(s.id).or_default();
        w.commit = w.commit.max(s.commit.0);
        if s.role == Role::Leader {
            w.was_leader_in = Some(s.term);
        }
        Ok(())
    }

    fn check_new_leader(&mut self, s: &Status) -> Check {
        if let Some(other) = self.leaders.get(&s.term) {
            if *other != s.id {
                return violated(
                    "election-safety",
                    format!(
                        "nodes {other} and {} are both leader of term {}",
                        s.id, s.term
                    ),
                );
            }
        }
        self.leaders.insert(s.term, s.id);
        // Leader completeness binds leaders of terms after the one an entry committed in.
        let required = self
            .committed
            .iter()
            .rev()
            .find(|(_, (_, _, committed_in))| *committed_in < s.term);
        let Some((&top, &(term, chain, _))) = required else {
            return Ok(());
        };
        let (base, held) = self
            .mirrors
            .get(&s.id)
            .map_or((0, None), |m| (m.base_index, m.chain_at(top)));
        if top <= base {
            return Ok(());
        }
        match held {
            Some((t, c)) if t == term && (c == chain || c == 0) => Ok(()),
            _ => violated(
                "leader-completeness",
                format!(
                    "node {} became leader of term {} without committed entry {top} (term {term})",
                    s.id, s.term
                ),
            ),
        }
    }

    fn record_commits(&mut self, node: NodeId, node_term: Term, from: u64, to: u64) -> Check {
        // The mirror is moved out (not cloned) while `committed` is updated.
        let m = self.mirrors.remove(&node).unwrap_or_default();
        let result = self.record_commits_from(&m, node, node_term, from, to);
        self.mirrors.insert(node, m);
        result
    }

    fn record_commits_from(
        &mut self,
        m: &LogMirror,
        node: NodeId,
        node_term: Term,
        from: u64,
        to: u64,
    ) -> Check {
        for idx in from.max(m.base_index) + 1..=to {
            let Some((term, chain)) = m.chain_at(idx) else {
                return violated(
                    "commit-beyond-log",
                    format!(
                        "node {node} commits {idx} beyond its log ({})",
                        m.last_index()
                    ),
                );
            };
            match self.committed.get_mut(&idx) {
                Some((t, c, _)) if *t != term || (*c != chain && *c != 0 && chain != 0) => {
                    let t = *t;
                    return violated("state-machine-safety", format!("node {node} committed a different entry at index {idx} (term {term} vs {t})"));
                }
                Some((_, _, committed_in)) => *committed_in = (*committed_in).min(node_term),
                None => {
                    self.committed.insert(idx, (term, chain, node_term));
                }
            }
        }
        Ok(())
    }

    /// A node restarted: its volatile watch state resets; its log is what it recovered.
    fn restarted(
        &mut self,
        node: NodeId,
        mirror_entries: &[Entry],
        snapshot: Option<SnapshotMeta>,
    ) -> Check {
        let w = self.watch.entry(node).or_default();
        w.commit = 0;
        w.was_leader_in = None;
        self.mirrors.remove(&node);
        let from = snapshot.map_or(LogIndex(1), |m| m.index.next());
        let write = EntryWrite {
            from,
            entries: mirror_entries.to_vec(),
        };
        self.on_log_write(node, snapshot, Some(&write))
    }
}
