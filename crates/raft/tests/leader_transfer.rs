//! Leadership transfer: the leader catches the target up, sends it TimeoutNow, and the
//! target wins an election at once even though every voter still hears from the old
//! leader (check-quorum on: they would ignore any other candidate). Nothing committed
//! is lost, a lagging target is caught up first, and a transfer that cannot finish is
//! abandoned after an election timeout.

mod common;

use raft::{LogIndex, Message, NodeId, RaftNode, Role, TransferError};

use common::all;

/// Node 1 leads with a committed command of its term; pre-vote and check-quorum on, as
/// the server runs: only the transfer flag gets a vote from a node that hears from its
/// leader.
fn elected() -> Vec<RaftNode> {
    common::elected(common::three(true))
}

fn leader_of(nodes: &[RaftNode]) -> Vec<Option<NodeId>> {
    nodes.iter().map(|n| n.status().leader).collect()
}

#[test]
fn leadership_moves_to_the_target_without_an_election_timeout() {
    let mut nodes = elected();
    let term = nodes[0].status().term;
    let commit = nodes[0].status().commit;
    nodes[0].transfer_leadership(NodeId(3)).unwrap();
    assert_eq!(nodes[0].transferring_to(), Some(NodeId(3)));
    let seen = common::pump(&mut nodes, all);
    assert!(seen
        .delivered
        .iter()
        .any(|(f, t, m)| (*f, *t) == (NodeId(1), NodeId(3)) && m.kind_name() == "TimeoutNow"));
    // No tick passed: nobody timed out, yet node 3 leads the next term.
    assert_eq!(nodes[2].status().role, Role::Leader);
    assert_eq!(nodes[2].status().term, term.next());
    assert_eq!(leader_of(&nodes), vec![Some(NodeId(3)); 3]);
    assert_eq!(nodes[0].transferring_to(), None);
    // What was committed stays, and the new leader commits its own entries.
    assert!(nodes[2].status().commit > commit);
    let p = nodes[2].propose(b"y".to_vec().into()).unwrap();
    common::pump(&mut nodes, all);
    assert!(nodes.iter().all(|n| n.status().commit >= p.index));
}

#[test]
fn a_lagging_target_is_caught_up_before_it_is_told_to_campaign() {
    let mut nodes = elected();
    // Node 3 misses three commands.
    for c in [b"a", b"b", b"c"] {
        nodes[0].propose(c.to_vec().into()).unwrap();
    }
    common::pump(&mut nodes, |_, to, _| to != NodeId(3));
    let last = nodes[0].status().last_index;
    assert!(nodes[2].status().last_index < last);
    nodes[0].transfer_leadership(NodeId(3)).unwrap();
    let seen = common::pump(&mut nodes, all);
    let timeout_now_at = seen
        .delivered
        .iter()
        .position(|(_, _, m)| m.kind_name() == "TimeoutNow")
        .expect("TimeoutNow sent once caught up");
    // Every append that brought node 3 up to date came before it was told to campaign.
    let caught_up = seen.delivered[..timeout_now_at].iter().any(|(_, t, m)| {
        *t == NodeId(1) && matches!(m, Message::AppendResponse { outcome: raft::AppendOutcome::Accepted { match_index }, .. } if *match_index >= last)
    });
    assert!(caught_up, "TimeoutNow before node 3 held the log");
    assert_eq!(nodes[2].status().role, Role::Leader);
    assert!(
        nodes[2].status().last_index > last,
        "its own no-op follows them"
    );
    for i in 1..=last.0 {
        assert_eq!(
            nodes[2].log_term(LogIndex(i)),
            nodes[0].log_term(LogIndex(i))
        );
    }
}

#[test]
fn without_the_transfer_flag_a_voter_in_touch_with_its_leader_refuses() {
    let mut nodes = elected();
    let term = nodes[0].status().term;
    let last_index = nodes[2].status().last_index;
    // A candidate of a higher term asking without the flag is ignored by node 2, which
    // hears from leader 1 (check-quorum's lease); with the flag it is heard.
    let ask = |transfer| Message::VoteRequest {
        term: term.next(),
        last_index,
        last_term: term,
        pre_vote: false,
        transfer,
    };
    nodes[1].step(NodeId(3), ask(false)).unwrap();
    assert_eq!(
        nodes[1].status().term,
        term,
        "a disruptive candidate moved the term"
    );
    nodes[1].step(NodeId(3), ask(true)).unwrap();
    assert_eq!(
        nodes[1].status().term,
        term.next(),
        "the transfer vote was ignored"
    );
    let granted = nodes[1].take_effects();
    assert!(!granted.is_empty(), "no vote (or its persist) followed");
}

#[test]
fn a_transfer_to_an_unreachable_target_is_abandoned_and_leadership_stays() {
    let mut nodes = elected();
    nodes[0].transfer_leadership(NodeId(3)).unwrap();
    let cut = |from: NodeId, to: NodeId, _: &Message| from != NodeId(3) && to != NodeId(3);
    let mut ticks = 0;
    while nodes[0].transferring_to().is_some() {
        nodes[0].tick();
        nodes[1].tick();
        common::pump(&mut nodes, cut);
        ticks += 1;
        assert!(
            ticks <= 3,
            "a transfer outlived the election timeout (3 ticks)"
        );
    }
    assert_eq!(nodes[0].status().role, Role::Leader);
    // Proposals were never refused meanwhile, and still commit.
    let p = nodes[0].propose(b"z".to_vec().into()).unwrap();
    common::pump(&mut nodes, cut);
    assert!(nodes[0].status().commit >= p.index);
}

#[test]
fn only_the_leader_transfers_and_only_to_a_voter() {
    let mut nodes = elected();
    assert_eq!(
        nodes[1].transfer_leadership(NodeId(3)),
        Err(TransferError::NotLeader {
            leader: Some(NodeId(1))
        })
    );
    assert_eq!(
        nodes[0].transfer_leadership(NodeId(9)),
        Err(TransferError::NotAVoter(NodeId(9)))
    );
    assert_eq!(nodes[0].transfer_leadership(NodeId(1)), Ok(()));
    assert_eq!(nodes[0].transferring_to(), None);
}
