//! A hand-driven cluster shared by the integration tests: messages are delivered
//! between nodes with instantly durable disks, through a filter.
#![allow(dead_code)] // each test file uses part of it

use raft::{
    Config, Effect, LogIndex, Message, NodeId, Payload, RaftNode, Role, SnapshotMeta, SnapshotWrite,
};
use std::cell::RefCell;
use std::collections::BTreeMap;

thread_local! {
    /// Each node's stored snapshots (each test runs on its own thread): like real
    /// storage, the newest two.
    static DISKS: RefCell<BTreeMap<NodeId, Vec<(SnapshotMeta, Payload)>>> =
        const { RefCell::new(BTreeMap::new()) };
}

fn store_snapshot(node: NodeId, meta: SnapshotMeta, data: Payload) {
    DISKS.with(|d| {
        let mut d = d.borrow_mut();
        let held = d.entry(node).or_default();
        held.push((meta, data));
        held.sort_by_key(|(m, _)| std::cmp::Reverse(m.index));
        held.truncate(2);
    });
}

/// The chunk `node`'s storage would read, with the whole snapshot's CRC.
fn read_chunk(node: NodeId, meta: SnapshotMeta, offset: u64, max: usize) -> Option<(Payload, u32)> {
    DISKS.with(|d| {
        let d = d.borrow();
        let (_, data) = d.get(&node)?.iter().find(|(m, _)| *m == meta)?;
        let start = (offset as usize).min(data.len());
        let end = start.saturating_add(max).min(data.len());
        Some((data[start..end].into(), crc32c::crc32c(data)))
    })
}

/// What a pump saw: the messages delivered, and the reads nodes released
/// (`Some(index)`) or aborted (`None`).
#[derive(Default)]
pub struct Pumped {
    pub delivered: Vec<(NodeId, NodeId, Message)>,
    pub reads: Vec<(NodeId, u64, Option<LogIndex>)>,
}

/// Runs every node's effects and delivers the messages `deliver` allows, until the
/// cluster is quiet (at most 50 rounds).
pub fn pump(
    nodes: &mut [RaftNode],
    mut deliver: impl FnMut(NodeId, NodeId, &Message) -> bool,
) -> Pumped {
    let mut out = Pumped::default();
    for _ in 0..50 {
        let mut queue = Vec::new();
        for n in nodes.iter_mut() {
            loop {
                let effects = n.take_effects();
                if effects.is_empty() {
                    break;
                }
                for e in effects {
                    match e {
                        Effect::Persist(p) => {
                            if let Some(SnapshotWrite::Store(snap)) = p.snapshot {
                                store_snapshot(n.id(), snap.meta, snap.data);
                            }
                            n.on_persisted(p.io).unwrap()
                        }
                        Effect::SendSnapshotChunk { to, chunk } => {
                            let (meta, offset) = (chunk.meta, chunk.offset);
                            match read_chunk(n.id(), meta, offset, chunk.max_len) {
                                Some((data, crc)) => {
                                    queue.push((n.id(), to, chunk.into_message(data, crc)))
                                }
                                None => n.snapshot_unavailable(to, meta),
                            }
                        }
                        Effect::Send { to, message } => queue.push((n.id(), to, message)),
                        Effect::ReadReady { ctx, index } => {
                            out.reads.push((n.id(), ctx, Some(index)))
                        }
                        Effect::ReadAborted { ctx } => out.reads.push((n.id(), ctx, None)),
                        Effect::Apply(_) => {}
                    }
                }
            }
        }
        if queue.is_empty() {
            break;
        }
        for (from, to, m) in queue {
            if deliver(from, to, &m) {
                let _ = nodes[(to.0 - 1) as usize].step(from, m.clone());
                out.delivered.push((from, to, m));
            }
        }
    }
    out
}

/// Delivers everything.
pub fn all(_: NodeId, _: NodeId, _: &Message) -> bool {
    true
}

/// Three nodes; node 1 times out first (3 ticks, the others 50). `guarded` turns on
/// pre-vote and check-quorum, as the server runs.
pub fn three(guarded: bool) -> Vec<RaftNode> {
    (1..=3)
        .map(|i| {
            let mut c = Config::new(NodeId(i), (1..=3).map(NodeId).collect());
            c.pre_vote = guarded;
            c.check_quorum = guarded;
            c.election_timeout_ticks = if i == 1 { 3 } else { 50 };
            RaftNode::new(c).unwrap()
        })
        .collect()
}

/// `nodes` with node 1 leading and a command of its term committed.
pub fn elected(mut nodes: Vec<RaftNode>) -> Vec<RaftNode> {
    while nodes[0].status().role != Role::Leader {
        nodes[0].tick();
        pump(&mut nodes, all);
    }
    nodes[0].propose(b"x".to_vec().into()).unwrap();
    pump(&mut nodes, all);
    nodes
}
