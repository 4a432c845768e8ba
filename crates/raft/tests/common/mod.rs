//! A hand-driven cluster shared by the integration tests: messages are delivered
//! between nodes with instantly durable disks, through a filter.

use raft::{Effect, LogIndex, Message, NodeId, RaftNode};

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
                        Effect::Persist(p) => n.on_persisted(p.io).unwrap(),
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
