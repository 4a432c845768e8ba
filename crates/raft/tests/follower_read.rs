//! Follower reads (etcd's ReadIndex from a follower): the leader confirms its leadership
//! with a quorum and names its commit index; a read whose leader is gone is aborted,
//! never left hanging or released unconfirmed.

mod common;

use raft::{LogIndex, Message, NodeId, RaftNode, Role};

/// What a pump round saw besides messages: (node, ctx, Some(index) | None = aborted).
type ReadOutcome = (NodeId, u64, Option<LogIndex>);

/// Delivers messages while `deliver` allows them; returns the read outcomes.
fn pump(
    nodes: &mut [RaftNode],
    deliver: impl FnMut(NodeId, NodeId, &Message) -> bool,
) -> Vec<ReadOutcome> {
    common::pump(nodes, deliver).reads
}

use common::all;

/// Node 1 leads with a committed entry of its term.
fn elected() -> Vec<RaftNode> {
    common::elected(common::three(false))
}

#[test]
fn a_follower_read_gets_the_leaders_commit_index() {
    let mut nodes = elected();
    let commit = nodes[0].status().commit;
    assert!(commit > LogIndex(0));
    nodes[1].read_index(7).unwrap();
    let reads = pump(&mut nodes, all);
    assert_eq!(reads, vec![(NodeId(2), 7, Some(commit))]);
}

#[test]
fn a_follower_read_needs_the_leaders_quorum() {
    let mut nodes = elected();
    // Node 2 can reach the leader, but the leader hears from nobody else: no quorum
    // confirms its leadership, so the read is never released.
    let cut = |from: NodeId, to: NodeId, m: &Message| match m {
        Message::ReadIndex { .. } => true,
        _ => from == NodeId(1) && to != NodeId(1) && !matches!(m, Message::Append { .. }),
    };
    nodes[1].read_index(8).unwrap();
    assert_eq!(pump(&mut nodes, cut), vec![]);
    for _ in 0..3 {
        nodes[0].tick();
        assert_eq!(pump(&mut nodes, cut), vec![]);
    }
    // Once the leader's messages flow again, the read is released.
    nodes[0].tick();
    let reads = pump(&mut nodes, all);
    assert_eq!(reads, vec![(NodeId(2), 8, Some(nodes[0].status().commit))]);
}

#[test]
fn a_read_waiting_on_a_deposed_leader_is_aborted() {
    let mut nodes = elected();
    // The read reaches nobody; then node 3 wins a new term and node 2 follows it.
    nodes[1].read_index(9).unwrap();
    pump(&mut nodes, |_, _, m| {
        !matches!(m, Message::ReadIndex { .. })
    });
    while nodes[2].status().role != Role::Leader {
        nodes[2].tick();
        let reads = pump(&mut nodes, |from, to, _| {
            from != NodeId(1) && to != NodeId(1)
        });
        if !reads.is_empty() {
            assert_eq!(reads, vec![(NodeId(2), 9, None)]);
            return;
        }
    }
    panic!("node 2 joined a new term without aborting its read");
}

#[test]
fn a_leader_that_steps_down_refuses_the_reads_it_holds() {
    let mut nodes = elected();
    nodes[1].read_index(10).unwrap();
    // The leader gets the request, but no acknowledgement of its round comes back.
    pump(&mut nodes, |from, _, m| {
        matches!(m, Message::ReadIndex { .. }) || from != NodeId(1)
    });
    // A higher term deposes it: it answers the read with a refusal.
    let term = nodes[0].status().term.next();
    nodes[0]
        .step(
            NodeId(3),
            Message::VoteRequest {
                term,
                last_index: LogIndex(0),
                last_term: raft::Term(0),
                pre_vote: false,
                transfer: false,
            },
        )
        .unwrap();
    let reads = pump(&mut nodes, |from, to, _| {
        from == NodeId(1) && to == NodeId(2)
    });
    assert_eq!(reads, vec![(NodeId(2), 10, None)]);
}

#[test]
fn a_forwarded_write_is_appended_by_the_leader_and_applied_everywhere() {
    let mut nodes = elected();
    let before = nodes[0].status().last_index;
    nodes[1]
        .forward(b"from a follower".to_vec().into())
        .unwrap();
    pump(&mut nodes, all);
    let after = nodes[0].status();
    assert_eq!(after.last_index, before.next(), "the leader appended it");
    assert!(after.commit >= after.last_index, "and committed it");
    for n in &nodes[1..] {
        assert!(
            n.status().applied >= after.last_index,
            "applied on {}",
            n.id()
        );
    }
    // The leader refuses nothing, but a non-follower cannot forward.
    assert!(nodes[0].forward(b"x".to_vec().into()).is_err());
    // Lost on the way (the leader is unreachable): nothing is appended anywhere.
    nodes[2].forward(b"lost".to_vec().into()).unwrap();
    pump(&mut nodes, |_, _, m| !matches!(m, Message::Propose { .. }));
    assert_eq!(nodes[0].status().last_index, after.last_index);
}

/// Messages of one kind among those a pump delivered.
fn count(p: &common::Pumped, kind: fn(&Message) -> bool) -> usize {
    p.delivered.iter().filter(|(_, _, m)| kind(m)).count()
}

fn is_read_index(m: &Message) -> bool {
    matches!(m, Message::ReadIndex { .. })
}

#[test]
fn a_burst_of_follower_reads_has_one_request_in_flight() {
    let mut nodes = elected();
    let commit = nodes[0].status().commit;
    for ctx in 20..25 {
        nodes[1].read_index(ctx).unwrap();
    }
    let p = common::pump(&mut nodes, all);
    // The first read asks at once; the four that came while it was out share the next.
    assert_eq!(count(&p, is_read_index), 2);
    let mut reads = p.reads;
    reads.sort();
    let want: Vec<_> = (20..25).map(|c| (NodeId(2), c, Some(commit))).collect();
    assert_eq!(reads, want);
}

#[test]
fn reads_at_the_leader_during_a_round_wait_for_the_next_one() {
    let mut nodes = elected();
    let commit = nodes[0].status().commit;
    nodes[0].read_index(30).unwrap();
    // The first read's round reaches the followers; their acknowledgements are lost.
    let first = common::pump(&mut nodes, |from, _, _| from == NodeId(1));
    assert_eq!(
        first.delivered.len(),
        2,
        "one round: a heartbeat to each follower"
    );
    assert!(first.reads.is_empty());
    for ctx in 31..34 {
        nodes[0].read_index(ctx).unwrap();
    }
    let mut offered = 0;
    let held = common::pump(&mut nodes, |_, _, _| {
        offered += 1;
        false
    });
    assert_eq!(
        offered, 0,
        "a read during a round started a round of its own"
    );
    assert!(held.reads.is_empty());
    // The next heartbeat round confirms every read registered before it.
    let mut reads = Vec::new();
    for _ in 0..20 {
        nodes[0].tick();
        reads.extend(common::pump(&mut nodes, all).reads);
        if reads.len() == 4 {
            break;
        }
    }
    reads.sort();
    let want: Vec<_> = (30..34).map(|c| (NodeId(1), c, Some(commit))).collect();
    assert_eq!(reads, want);
}

#[test]
fn a_lost_read_request_is_asked_for_again() {
    let mut nodes = elected();
    let commit = nodes[0].status().commit;
    nodes[1].read_index(40).unwrap();
    let lost = common::pump(&mut nodes, |_, _, m| !is_read_index(m));
    assert!(lost.reads.is_empty());
    // Heartbeats keep node 2 a follower; after half its election timeout (50 ticks) it
    // asks again.
    let mut reads = Vec::new();
    for _ in 0..25 {
        nodes[0].tick();
        nodes[1].tick();
        reads.extend(common::pump(&mut nodes, all).reads);
        if !reads.is_empty() {
            break;
        }
    }
    assert_eq!(reads, vec![(NodeId(2), 40, Some(commit))]);
}
