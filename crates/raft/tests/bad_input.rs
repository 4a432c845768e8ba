//! Malformed and hostile inputs through the public API are refused with typed errors
//! and leave the node unchanged; bad configurations and durable states are refused at
//! construction. Nothing panics.

use raft::{
    AppendOutcome, Config, ConfigError, Effect, Entry, EntryKind, HardState, IoId, LogIndex,
    MalformedReason, Message, NodeId, ProposeError, RaftNode, RecoverError, Recovered, Role,
    SnapshotError, SnapshotMeta, StepError, Term, UnknownIo,
};

/// A follower of node 2 in term 5, and its status.
fn follower_of_2() -> (RaftNode, raft::Status) {
    let mut f = RaftNode::new(Config::new(NodeId(1), ids(&[1, 2, 3]))).expect("valid");
    f.step(NodeId(2), heartbeat(5, vec![])).expect("heartbeat");
    drive(&mut f);
    let before = f.status();
    assert_eq!((before.term, before.leader), (Term(5), Some(NodeId(2))));

    (f, before)
}

/// Foreign, self-addressed, malformed and stale messages to a follower.
#[test]
fn follower_refuses_bad_messages() {
    let (mut f, before) = follower_of_2();
    let refused = refused_messages();
    for (from, msg, want) in refused {
        assert_eq!(f.step(from, msg.clone()), Err(want), "{msg:?}");
        assert_eq!(
            f.status(),
            before,
            "a refused message changed the node: {msg:?}"
        );
    }

    // Stale terms are answered, not obeyed.
    assert_eq!(f.step(NodeId(3), heartbeat(3, vec![noop(3, 1)])), Ok(()));
    let sent = drive(&mut f);
    assert!(
        sent.iter()
            .all(|(to, m)| *to == NodeId(3) && m.term() == Term(5)),
        "{sent:?}"
    );
    assert_eq!(f.status(), before, "a stale-term append changed the node");
    // An out-of-order snapshot chunk (structurally valid) is answered with the offset
    // the follower expects, and installs nothing.
    assert_eq!(f.step(NodeId(2), chunk(10, 16, 64, 16)), Ok(()));
    drive(&mut f);
    assert_eq!(f.status().snapshot.index, LogIndex(0));
    // A response to a follower is ignored.
    let resp = Message::AppendResponse {
        term: Term(5),
        outcome: AppendOutcome::Accepted {
            match_index: LogIndex(1_000),
        },
        read_seq: 0,
    };
    assert_eq!(f.step(NodeId(2), resp), Ok(()));
}

/// Client and driver verbs misused on a follower are typed errors.
#[test]
fn misused_verbs_are_typed_errors() {
    let (mut f, _) = follower_of_2();
    // Client verbs and driver verbs misused on a follower.
    assert_eq!(
        f.propose(b"x".to_vec().into()),
        Err(ProposeError::NotLeader {
            leader: Some(NodeId(2))
        })
    );
    // A read on a follower goes to its leader as a ReadIndex request.
    assert_eq!(f.read_index(1), Ok(()));
    let sent = drive(&mut f);
    assert!(
        matches!(&sent[..], [(NodeId(2), Message::ReadIndex { ctx: 1, .. })]),
        "{sent:?}"
    );
    assert_eq!(f.on_persisted(IoId(999)), Err(UnknownIo(IoId(999))));
    assert_eq!(
        f.compact(LogIndex(5), b"s".to_vec().into()),
        Err(SnapshotError::NotApplied {
            index: LogIndex(5),
            applied: LogIndex(0)
        })
    );
    assert_eq!(
        f.compact(LogIndex(0), b"s".to_vec().into()),
        Err(SnapshotError::Stale {
            index: LogIndex(0),
            compacted: LogIndex(0)
        })
    );
}

/// A leader refuses responses naming indexes it never sent, and a second leader in its term.
#[test]
fn leader_refuses_impossible_responses() {
    // A leader: responses naming indexes it never sent, and a second leader in its term.
    let mut l = leader_node();
    let before = l.status();
    let term = before.term;
    let out_of_range = StepError::Malformed {
        from: NodeId(2),
        reason: MalformedReason::IndexOutOfRange,
    };
    let resp = Message::AppendResponse {
        term,
        outcome: AppendOutcome::Accepted {
            match_index: LogIndex(1_000),
        },
        read_seq: 0,
    };
    assert_eq!(l.step(NodeId(2), resp), Err(out_of_range.clone()));
    let resp = Message::SnapshotResponse {
        term,
        index: LogIndex(1_000),
        next_offset: 0,
        installed: true,
        read_seq: 0,
    };
    assert_eq!(l.step(NodeId(2), resp), Err(out_of_range));
    assert_eq!(
        l.step(NodeId(3), heartbeat(term.0, vec![])),
        Err(StepError::DuplicateLeader {
            from: NodeId(3),
            term
        })
    );
    // A rejection hint pointing far beyond the log is harmless.
    let resp = Message::AppendResponse {
        term,
        outcome: AppendOutcome::Rejected {
            rejected_index: LogIndex(u64::MAX),
            conflict_term: Some(Term(u64::MAX)),
            conflict_index: LogIndex(u64::MAX),
        },
        read_seq: 0,
    };
    assert_eq!(l.step(NodeId(2), resp), Ok(()));
    drive(&mut l);
    assert_eq!(l.status().role, Role::Leader);
    assert_eq!(l.status().term, term);
}

#[test]
fn bad_configurations_are_refused() {
    // Configurations.
    let cfg = |f: &dyn Fn(&mut Config)| {
        let mut c = Config::new(NodeId(1), ids(&[1, 2, 3]));
        f(&mut c);
        c
    };
    let bad: Vec<(Config, ConfigError)> = vec![
        (
            cfg(&|c| c.voters = ids(&[1, 2, 2])),
            ConfigError::DuplicateVoter(NodeId(2)),
        ),
        (
            cfg(&|c| c.election_timeout_ticks = c.heartbeat_interval_ticks),
            ConfigError::ElectionTimeoutNotAboveHeartbeat {
                election_timeout_ticks: 2,
                heartbeat_interval_ticks: 2,
            },
        ),
        (cfg(&|c| c.id = NodeId(0)), ConfigError::ZeroNodeId),
        (
            cfg(&|c| c.voters = ids(&[2, 3])),
            ConfigError::SelfNotVoter(NodeId(1)),
        ),
        (
            cfg(&|c| c.heartbeat_interval_ticks = 0),
            ConfigError::ZeroHeartbeat,
        ),
        (cfg(&|c| c.snapshot_chunk_bytes = 0), ConfigError::ZeroLimit),
    ];
    for (c, want) in bad {
        assert_eq!(c.validate(), Err(want.clone()));
        assert_eq!(RaftNode::new(c).err(), Some(want));
    }
}

#[test]
fn bad_durable_state_is_refused() {
    // Inconsistent durable state at restart.
    let good = Config::new(NodeId(1), ids(&[1, 2, 3]));
    let hs = HardState {
        term: Term(3),
        vote: None,
        commit: LogIndex(0),
    };
    let rec = |hs: HardState, entries: Vec<Entry>| Recovered {
        hard_state: hs,
        snapshot: None,
        entries,
    };
    assert_eq!(
        RaftNode::restart(good.clone(), rec(hs, vec![noop(1, 1), noop(1, 3)])).err(),
        Some(RecoverError::LogGap {
            expected: LogIndex(2),
            found: LogIndex(3)
        })
    );
    assert_eq!(
        RaftNode::restart(good.clone(), rec(hs, vec![noop(2, 1), noop(1, 2)])).err(),
        Some(RecoverError::BadEntryTerm { index: LogIndex(2) })
    );
    assert_eq!(
        RaftNode::restart(good.clone(), rec(hs, vec![noop(4, 1)])).err(),
        Some(RecoverError::BadEntryTerm { index: LogIndex(1) })
    );
    let hs_bad_vote = HardState {
        vote: Some(NodeId(7)),
        ..hs
    };
    // A vote may name a member of a membership the log no longer holds; a member
    // with no voters configured is joining and learns its group from the leader.
    assert!(RaftNode::restart(good.clone(), rec(hs_bad_vote, vec![])).is_ok());
    let mut joining = good.clone();
    joining.voters.clear();
    assert!(RaftNode::restart(joining, rec(hs, vec![])).is_ok());
    // A commit index beyond the surviving log is clamped, not trusted.
    let hs_far = HardState {
        commit: LogIndex(50),
        ..hs
    };
    let r = RaftNode::restart(good, rec(hs_far, vec![noop(1, 1)])).expect("clamped");
    assert_eq!(r.status().commit, LogIndex(1));
}

fn ids(xs: &[u64]) -> Vec<NodeId> {
    xs.iter().map(|x| NodeId(*x)).collect()
}

/// Runs a node's effects with an instantly durable disk; returns the messages sent.
fn drive(node: &mut RaftNode) -> Vec<(NodeId, Message)> {
    let mut sent = Vec::new();
    loop {
        let effects = node.take_effects();
        if effects.is_empty() {
            return sent;
        }
        for e in effects {
            match e {
                Effect::Persist(r) => node.on_persisted(r.io).expect("issued io"),
                Effect::Send { to, message } => sent.push((to, message)),
                _ => {}
            }
        }
    }
}

/// Node 1 of {1, 2, 3}, elected leader with node 2's (pre-)votes.
fn leader_node() -> RaftNode {
    let mut n = RaftNode::new(Config::new(NodeId(1), ids(&[1, 2, 3]))).expect("valid");
    while n.status().role != Role::PreCandidate {
        n.tick();
        drive(&mut n);
    }
    let t = Term(n.status().term.0 + 1);
    n.step(
        NodeId(2),
        Message::VoteResponse {
            term: t,
            granted: true,
            pre_vote: true,
        },
    )
    .expect("pre-vote");
    drive(&mut n);
    assert_eq!(n.status().role, Role::Candidate);
    n.step(
        NodeId(2),
        Message::VoteResponse {
            term: t,
            granted: true,
            pre_vote: false,
        },
    )
    .expect("vote");
    drive(&mut n);
    assert_eq!(n.status().role, Role::Leader);
    n
}

fn heartbeat(term: u64, entries: Vec<Entry>) -> Message {
    Message::Append {
        term: Term(term),
        prev_index: LogIndex(0),
        prev_term: Term(0),
        entries,
        leader_commit: LogIndex(0),
        read_seq: 0,
    }
}

fn noop(term: u64, index: u64) -> Entry {
    Entry {
        term: Term(term),
        index: LogIndex(index),
        kind: EntryKind::Noop,
    }
}

fn chunk(index: u64, offset: u64, total_len: u64, len: usize) -> Message {
    Message::Snapshot {
        term: Term(5),
        meta: SnapshotMeta {
            index: LogIndex(index),
            term: Term(5),
        },
        offset,
        total_len,
        data: vec![7u8; len].into(),
        // As if the whole snapshot were `total_len` sevens.
        checksum: crc32c::crc32c(&vec![7u8; total_len.min(1 << 20) as usize]),
        read_seq: 0,
    }
}

/// Messages a follower of node 2 in term 5 must refuse, with the error each gets.
fn refused_messages() -> Vec<(NodeId, Message, StepError)> {
    vec![
        (
            NodeId(0),
            heartbeat(5, vec![]),
            StepError::UnknownPeer(NodeId(0)),
        ),
        (NodeId(1), heartbeat(5, vec![]), StepError::FromSelf),
        (
            NodeId(2),
            heartbeat(5, vec![noop(5, 1), noop(5, 3)]),
            StepError::Malformed {
                from: NodeId(2),
                reason: MalformedReason::NonContiguousEntries,
            },
        ),
        (
            NodeId(2),
            heartbeat(5, vec![noop(6, 1)]),
            StepError::Malformed {
                from: NodeId(2),
                reason: MalformedReason::EntryTermAboveMessageTerm,
            },
        ),
        (
            NodeId(2),
            heartbeat(5, vec![noop(4, 1), noop(3, 2)]),
            StepError::Malformed {
                from: NodeId(2),
                reason: MalformedReason::DecreasingEntryTerms,
            },
        ),
        (
            NodeId(2),
            chunk(0, 0, 10, 10),
            StepError::Malformed {
                from: NodeId(2),
                reason: MalformedReason::SnapshotAtIndexZero,
            },
        ),
        (
            NodeId(2),
            chunk(10, 8, 10, 4),
            StepError::Malformed {
                from: NodeId(2),
                reason: MalformedReason::SnapshotChunkOutOfBounds,
            },
        ),
        (
            NodeId(2),
            chunk(10, u64::MAX, u64::MAX, 4),
            StepError::Malformed {
                from: NodeId(2),
                reason: MalformedReason::SnapshotChunkOutOfBounds,
            },
        ),
    ]
}
