//! Membership changes, one server at a time: learners catch up but never count, a
//! promoted learner does, one change at a time, a leader that removes itself steps
//! down, and a restart recovers the membership from its log and its snapshot.

mod common;

use common::{all, elected, pump, three};
use raft::{
    ChangeRefused, ConfChange, Config, Effect, HardState, LogIndex, NodeId, PersistRequest,
    RaftNode, Recovered, Role, Snapshot, SnapshotWrite,
};

fn ctx() -> raft::Payload {
    b"ctx".to_vec().into()
}

/// A brand-new member that joins a running group: it knows no voters.
fn joiner(id: u64) -> RaftNode {
    let mut c = Config::new(NodeId(id), Vec::new());
    c.election_timeout_ticks = 3;
    RaftNode::new(c).unwrap()
}

fn learner_added() -> Vec<RaftNode> {
    let mut nodes = elected(three(true));
    nodes.push(joiner(4));
    let add = ConfChange::AddLearner {
        id: NodeId(4),
        context: ctx(),
    };
    let at = nodes[0].propose_change(add).unwrap();
    pump(&mut nodes, all);
    assert!(nodes[0].status().commit >= at);
    nodes
}

fn voters(n: &RaftNode) -> Vec<u64> {
    n.membership().voters().map(|v| v.0).collect()
}

#[test]
fn a_learner_catches_up_never_votes_and_never_counts() {
    let mut nodes = learner_added();
    let last = nodes[0].status().last_index;
    assert_eq!(
        nodes[3].status().last_index,
        last,
        "the learner has the log"
    );
    assert!(nodes[3].membership().get(NodeId(4)).unwrap().learner);
    // With one voter cut off, the learner's ack does not make a majority of three:
    // a write is not committed on leader + learner alone.
    let p = nodes[0].propose(b"w".to_vec().into()).unwrap();
    pump(&mut nodes, |_, to, _| to != NodeId(2) && to != NodeId(3));
    assert_eq!(nodes[3].status().last_index, p.index);
    assert!(nodes[0].status().commit < p.index, "a learner counted");
    // The learner, left alone for a long time, never campaigns.
    for _ in 0..100 {
        nodes[3].tick();
        assert!(nodes[3]
            .take_effects()
            .iter()
            .all(|e| !matches!(e, Effect::Send { .. })));
    }
    assert_eq!(nodes[3].status().role, Role::Follower);
}

#[test]
fn a_promoted_learner_counts_in_the_quorum() {
    let mut nodes = learner_added();
    nodes[0]
        .propose_change(ConfChange::Promote { id: NodeId(4) })
        .unwrap();
    pump(&mut nodes, all);
    for n in &nodes {
        assert_eq!(voters(n), vec![1, 2, 3, 4], "node {}", n.id());
    }
    // Four voters: a majority is three, so the leader and one follower no longer
    // commit, and the leader with two followers does.
    let p = nodes[0].propose(b"a".to_vec().into()).unwrap();
    pump(&mut nodes, |_, to, _| to == NodeId(2) || to == NodeId(1));
    assert!(nodes[0].status().commit < p.index, "two of four committed");
    // Node 4 hears again (after a heartbeat round resends what it lost).
    for _ in 0..10 {
        nodes[0].tick();
        pump(&mut nodes, |_, to, _| to != NodeId(3));
    }
    assert!(nodes[0].status().commit >= p.index);
}

#[test]
fn one_change_at_a_time() {
    let mut nodes = elected(three(true));
    nodes.push(joiner(4));
    nodes.push(joiner(5));
    let add = |id| ConfChange::AddLearner {
        id: NodeId(id),
        context: ctx(),
    };
    nodes[0].propose_change(add(4)).unwrap();
    // Not committed yet (nothing delivered): a second change waits.
    assert_eq!(
        nodes[0].propose_change(add(5)),
        Err(ChangeRefused::InProgress)
    );
    assert!(matches!(
        nodes[1].propose_change(add(5)),
        Err(ChangeRefused::NotLeader(_))
    ));
    pump(&mut nodes, all);
    assert!(matches!(
        nodes[0].propose_change(ConfChange::Remove { id: NodeId(9) }),
        Err(ChangeRefused::Invalid(_))
    ));
    nodes[0].propose_change(add(5)).unwrap();
}

#[test]
fn a_new_leader_changes_nothing_before_committing_in_its_term() {
    let mut nodes = elected(three(false));
    // Node 2 takes over, but its appends are lost: its no-op is not committed, and
    // it may not know of a change its predecessor left uncommitted, so it refuses.
    nodes[1].transfer_leadership(NodeId(2)).unwrap_err();
    nodes[0].transfer_leadership(NodeId(2)).unwrap();
    let no_appends_from_2 = |from: NodeId, _: NodeId, m: &raft::Message| {
        from != NodeId(2) || !matches!(m, raft::Message::Append { .. })
    };
    pump(&mut nodes, no_appends_from_2);
    assert_eq!(nodes[1].status().role, Role::Leader);
    let remove = ConfChange::Remove { id: NodeId(3) };
    assert_eq!(
        nodes[1].propose_change(remove.clone()),
        Err(ChangeRefused::InProgress)
    );
    nodes[1].tick();
    nodes[1].tick();
    pump(&mut nodes, all);
    assert!(nodes[1].propose_change(remove).is_ok());
}

#[test]
fn a_leader_that_removes_itself_steps_down_after_the_change_commits() {
    let mut nodes = elected(three(true));
    let at = nodes[0]
        .propose_change(ConfChange::Remove { id: NodeId(1) })
        .unwrap();
    assert_eq!(
        nodes[0].status().role,
        Role::Leader,
        "leads until committed"
    );
    pump(&mut nodes, all);
    assert!(nodes[1].status().commit >= at || nodes[0].status().commit >= at);
    assert_ne!(nodes[0].status().role, Role::Leader);
    // The two that are left elect one of them; node 1 never campaigns again.
    for _ in 0..200 {
        for n in nodes.iter_mut() {
            n.tick();
        }
        pump(&mut nodes, all);
        if nodes[1..].iter().any(|n| n.status().role == Role::Leader) {
            break;
        }
    }
    let leader = nodes[1..]
        .iter()
        .find(|n| n.status().role == Role::Leader)
        .expect("a leader among 2 and 3");
    assert_eq!(voters(leader), vec![2, 3]);
    let term = leader.status().term;
    for _ in 0..100 {
        nodes[0].tick();
        pump(&mut nodes, all);
    }
    assert_eq!(nodes[0].status().role, Role::Follower);
    assert!(nodes[1..].iter().all(|n| n.status().term == term));
}

/// Restart from what `node` would have persisted (replayed from its persist requests).
fn restart(cfg: Config, writes: &[PersistRequest]) -> RaftNode {
    let mut r = Recovered::default();
    for w in writes {
        if let Some(h) = w.hard_state {
            r.hard_state = h;
        }
        if let Some(SnapshotWrite::Store(s)) = &w.snapshot {
            r.entries.retain(|e| e.index > s.meta.index);
            r.snapshot = Some(s.clone());
        }
        if let Some(e) = &w.entries {
            r.entries.retain(|x| x.index < e.from);
            r.entries.extend(e.entries.iter().cloned());
        }
    }
    RaftNode::restart(cfg, r).unwrap()
}

#[test]
fn a_restart_recovers_the_membership_from_the_log_and_the_snapshot() {
    // A single node grows to two by log entries, restarts, then compacts and restarts.
    let cfg = Config::new(NodeId(1), vec![NodeId(1)]);
    let mut n = RaftNode::new(cfg.clone()).unwrap();
    let mut writes = Vec::new();
    let drive = |n: &mut RaftNode, writes: &mut Vec<PersistRequest>| loop {
        let effects = n.take_effects();
        if effects.is_empty() {
            break;
        }
        for e in effects {
            if let Effect::Persist(p) = e {
                n.on_persisted(p.io).unwrap();
                writes.push(p);
            }
        }
    };
    while n.status().role != Role::Leader {
        n.tick();
        drive(&mut n, &mut writes);
    }
    let add = ConfChange::AddLearner {
        id: NodeId(2),
        context: ctx(),
    };
    let at = n.propose_change(add).unwrap();
    drive(&mut n, &mut writes);
    assert_eq!(n.status().applied, at);
    let again = restart(cfg.clone(), &writes);
    assert!(again.membership().contains(NodeId(2)), "from the log");
    n.compact(at, b"state".to_vec().into()).unwrap();
    drive(&mut n, &mut writes);
    let again = restart(cfg.clone(), &writes);
    assert!(again.membership().contains(NodeId(2)), "from the snapshot");
    assert_eq!(again.status().snapshot.index, at);
    let stored = writes.iter().rev().find_map(|w| match &w.snapshot {
        Some(SnapshotWrite::Store(s)) => Some(s.clone()),
        _ => None,
    });
    let Snapshot { data, .. } = stored.unwrap();
    let (state, m) = raft::split_stored_snapshot(&data).unwrap();
    assert_eq!((&state[..], m.contains(NodeId(2))), (&b"state"[..], true));
    let _ = HardState::default();
    assert!(n.status().commit >= LogIndex(2));
}
