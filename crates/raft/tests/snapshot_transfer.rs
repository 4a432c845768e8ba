//! InstallSnapshot with the bytes kept in storage, not in the core: chunks are read back
//! from storage, only durable snapshots are offered, a damaged snapshot is never
//! installed, and a transfer whose snapshot storage dropped restarts with the newest.

mod common;

use raft::{
    Apply, Config, Effect, LogIndex, Message, NodeId, RaftNode, Role, SnapshotMeta, SnapshotWrite,
    Term,
};

fn cluster() -> Vec<RaftNode> {
    (1..=3)
        .map(|i| {
            let mut c = Config::new(NodeId(i), (1..=3).map(NodeId).collect());
            c.pre_vote = false;
            c.check_quorum = false; // node 3 stays cut off while the leader ticks
            c.snapshot_chunk_bytes = 100;
            c.election_timeout_ticks = if i == 1 { 3 } else { 50 };
            RaftNode::new(c).unwrap()
        })
        .collect()
}

/// Node 3 hears nothing.
fn cut(from: NodeId, to: NodeId, _: &Message) -> bool {
    from != NodeId(3) && to != NodeId(3)
}

fn elect_node_1(nodes: &mut [RaftNode]) {
    while nodes[0].status().role != Role::Leader {
        nodes[0].tick();
        common::pump(nodes, cut);
    }
}

/// Five commands, then a snapshot of `fill` bytes at the applied index.
fn write_and_compact(nodes: &mut [RaftNode], fill: u8) -> LogIndex {
    for k in 0..5u8 {
        nodes[0].propose(vec![k].into()).unwrap();
    }
    common::pump(nodes, cut);
    let applied = nodes[0].status().applied;
    nodes[0].compact(applied, vec![fill; 1000].into()).unwrap();
    applied
}

fn chunk_requests(effects: &[Effect]) -> Vec<(NodeId, SnapshotMeta, u64)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::SendSnapshotChunk { to, chunk } => Some((*to, chunk.meta, chunk.offset)),
            _ => None,
        })
        .collect()
}

/// A snapshot is sent to a lagging follower only once storage holds it durably (its
/// chunks are read back from there).
#[test]
fn a_snapshot_is_offered_only_once_durable() {
    let mut nodes = cluster();
    elect_node_1(&mut nodes);
    let index = write_and_compact(&mut nodes, 1);
    let mut effects = nodes[0].take_effects();
    let persist = effects.iter().find_map(|e| match e {
        Effect::Persist(p) if p.snapshot.is_some() => Some(p.io),
        _ => None,
    });
    let io = persist.expect("the snapshot is handed to storage");
    for _ in 0..4 {
        nodes[0].tick();
        effects.extend(nodes[0].take_effects());
    }
    assert_eq!(chunk_requests(&effects), vec![], "sent before durable");
    nodes[0].on_persisted(io).unwrap();
    let mut later = Vec::new();
    for _ in 0..4 {
        nodes[0].tick();
        later.extend(nodes[0].take_effects());
    }
    let first = chunk_requests(&later).into_iter().next();
    assert_eq!(
        first.map(|(to, m, o)| (to, m.index, o)),
        Some((NodeId(3), index, 0))
    );
}

fn chunk(data: &[u8], offset: u64, total_len: u64, checksum: u32) -> Message {
    Message::Snapshot {
        term: Term(1),
        meta: SnapshotMeta {
            index: LogIndex(10),
            term: Term(1),
        },
        offset,
        total_len,
        data: data.to_vec().into(),
        checksum,
        read_seq: 0,
    }
}

fn installed(effects: &[Effect]) -> bool {
    effects
        .iter()
        .any(|e| matches!(e, Effect::Apply(Apply::Snapshot(_))))
}

/// A repeated or stale answer to a chunk sends nothing: only a new offset the follower
/// asks for does (otherwise duplicated answers multiply the chunks in flight; the
/// simulator found that storm once snapshots spanned many chunks).
#[test]
fn repeated_snapshot_answers_send_one_chunk() {
    let mut nodes = cluster();
    elect_node_1(&mut nodes);
    let index = write_and_compact(&mut nodes, 1);
    common::pump(&mut nodes, cut);
    for _ in 0..4 {
        nodes[0].tick();
    }
    common::pump(&mut nodes, cut);
    let term = nodes[0].status().term;
    let answer = |next_offset| Message::SnapshotResponse {
        term,
        index,
        next_offset,
        installed: false,
        read_seq: 0,
    };
    let mut sent = Vec::new();
    for next in [100, 100, 100, 0, 100, 200, 100, 200] {
        nodes[0].step(NodeId(3), answer(next)).unwrap();
        sent.extend(chunk_requests(&nodes[0].take_effects()));
    }
    let offsets: Vec<u64> = sent.iter().map(|(_, _, o)| *o).collect();
    // 100 once; 0 (a restart) once; then 100 and 200 once each.
    assert_eq!(offsets, vec![100, 0, 100, 200]);
}

/// The follower checks the assembled snapshot against the CRC the leader's storage
/// recorded: bytes damaged on the leader's disk or on the way are never installed.
#[test]
fn a_damaged_snapshot_is_never_installed() {
    let mut f = RaftNode::new(Config::new(NodeId(2), (1..=3).map(NodeId).collect())).unwrap();
    let members = raft::Membership::of_voters((1..=3).map(NodeId));
    let body = &raft::stored_snapshot(b"the state at ten", &members)[..];
    let good = crc32c::crc32c(body);
    let mut damaged = body.to_vec();
    damaged[12] ^= 1;
    let total = body.len() as u64;
    f.step(NodeId(1), chunk(&damaged[..8], 0, total, good))
        .unwrap();
    f.step(NodeId(1), chunk(&damaged[8..], 8, total, good))
        .unwrap();
    let effects = f.take_effects();
    assert!(!installed(&effects), "a damaged snapshot was installed");
    let restart = effects.iter().any(|e| {
        matches!(
            e,
            Effect::Send {
                message: Message::SnapshotResponse {
                    next_offset: 0,
                    installed: false,
                    ..
                },
                ..
            }
        )
    });
    assert!(restart, "the leader is asked to start over: {effects:?}");
    assert_eq!(f.status().commit, LogIndex(0));
    f.step(NodeId(1), chunk(&body[..8], 0, total, good))
        .unwrap();
    f.step(NodeId(1), chunk(&body[8..], 8, total, good))
        .unwrap();
    assert!(
        installed(&f.take_effects()),
        "the intact snapshot is installed"
    );
    assert_eq!(f.status().commit, LogIndex(10));
}

/// Node 3 receives exactly the next two snapshot chunks, then is cut off again.
fn deliver_two_chunks_to_3(nodes: &mut [RaftNode]) {
    common::pump(nodes, cut);
    let mut chunks = 0;
    nodes[0].tick();
    nodes[0].tick();
    common::pump(nodes, |from, to, m| match m {
        Message::Snapshot { .. } if to == NodeId(3) && chunks < 2 => {
            chunks += 1;
            true
        }
        Message::SnapshotResponse { .. } => from == NodeId(3),
        _ => cut(from, to, m),
    });
    assert_eq!(chunks, 2);
    common::pump(nodes, cut);
}

/// The snapshot chunks delivered to node 3 once everything flows: (index, offset).
fn chunks_to_3_when_healed(nodes: &mut [RaftNode]) -> Vec<(LogIndex, u64)> {
    for _ in 0..4 {
        nodes[0].tick();
    }
    let sent = common::pump(nodes, |_, _, _| true).delivered;
    sent.iter()
        .filter_map(|(_, to, m)| match m {
            Message::Snapshot { meta, offset, .. } if *to == NodeId(3) => {
                Some((meta.index, *offset))
            }
            _ => None,
        })
        .collect()
}

/// A leader that compacts again while a snapshot transfer is under way finishes the
/// transfer it started instead of restarting from offset 0 with the new snapshot (a
/// restart on every compaction can livelock a slow follower under a steady write rate);
/// storage still holds the previous snapshot for it.
#[test]
fn a_transfer_survives_a_new_compaction() {
    let mut nodes = cluster();
    elect_node_1(&mut nodes);
    let first = write_and_compact(&mut nodes, 1);
    deliver_two_chunks_to_3(&mut nodes);
    let second = write_and_compact(&mut nodes, 2);
    assert!(second > first);
    common::pump(&mut nodes, cut);
    let to_3 = chunks_to_3_when_healed(&mut nodes);
    assert_eq!(
        to_3.first(),
        Some(&(first, 200)),
        "restarted instead of resuming"
    );
    assert!(
        nodes[2].status().commit >= second,
        "{:?}",
        nodes[2].status()
    );
}

/// Storage keeps the newest two snapshots. A transfer that outlives both restarts with
/// the newest (through `snapshot_unavailable`) and the follower catches up.
#[test]
fn a_transfer_whose_snapshot_is_gone_restarts_with_the_newest() {
    let mut nodes = cluster();
    elect_node_1(&mut nodes);
    let first = write_and_compact(&mut nodes, 1);
    deliver_two_chunks_to_3(&mut nodes);
    write_and_compact(&mut nodes, 2);
    common::pump(&mut nodes, cut);
    let third = write_and_compact(&mut nodes, 3);
    common::pump(&mut nodes, cut);
    let to_3 = chunks_to_3_when_healed(&mut nodes);
    assert!(to_3.iter().all(|(i, _)| *i != first), "{to_3:?}");
    assert_eq!(to_3.first(), Some(&(third, 0)), "restarted with the newest");
    assert!(nodes[2].status().commit >= third, "{:?}", nodes[2].status());
}

/// A snapshot the driver saved itself is only named in the persist request, and its
/// chunks are offered with the size the driver gave once that request is durable.
#[test]
fn a_saved_snapshot_is_named_not_carried() {
    let mut nodes = cluster();
    elect_node_1(&mut nodes);
    for k in 0..5u8 {
        nodes[0].propose(vec![k].into()).unwrap();
    }
    common::pump(&mut nodes, cut);
    let index = nodes[0].status().applied;
    nodes[0].compact_saved(index, 4321).unwrap();
    let effects = nodes[0].take_effects();
    let persist = effects.iter().find_map(|e| match e {
        Effect::Persist(p) => p.snapshot.clone().map(|s| (p.io, s)),
        _ => None,
    });
    let (io, write) = persist.expect("a persist request names the snapshot");
    let meta = SnapshotMeta {
        index,
        term: nodes[0].status().term,
    };
    assert_eq!(write, SnapshotWrite::Saved(meta));
    nodes[0].on_persisted(io).unwrap();
    let mut later = Vec::new();
    for _ in 0..4 {
        nodes[0].tick();
        later.extend(nodes[0].take_effects());
    }
    let chunk = later.iter().find_map(|e| match e {
        Effect::SendSnapshotChunk { to, chunk } => Some((*to, chunk.meta, chunk.total_len)),
        _ => None,
    });
    assert_eq!(chunk, Some((NodeId(3), meta, 4321)));
}
