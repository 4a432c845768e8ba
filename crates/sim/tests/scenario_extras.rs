//! Scenarios beyond the 6.5840 suite: pre-vote, check-quorum, ReadIndex under a
//! partition, deterministic replay, and malformed inputs through the public raft API.

mod common;

use common::*;
use raft::{
    AppendOutcome, Config, ConfigError, Effect, Entry, EntryKind, HardState, IoId, LogIndex,
    MalformedReason, Message, NodeId, ProposeError, RaftNode, RecoverError, Recovered, Role,
    SnapshotError, SnapshotMeta, StepError, Term, UnknownIo,
};
use sim::{run_seed, SimOptions};

/// The longest randomized election timeout of the default options: 2 * 15 ticks of 10 ms.
const MAX_ELECTION_TIMEOUT: u64 = 300 * MS;

/// With pre-vote on, a follower cut off for many election timeouts does not inflate its
/// term, and when it rejoins the leader and its term stay exactly the same throughout.
#[test]
fn prevote_rejoin_does_not_disrupt() {
    for seed in [401, 402, 403] {
        let n = 3;
        let mut h = Harness::new(seed, opts(n));
        h.one(1, n, true);
        let leader = h.check_one_leader();
        let term = h.sim.status(leader).expect("up").term;

        let follower = id((idx(leader) + 1) % n);
        h.disconnect(follower);
        for i in 0..5 {
            h.one(10 + i, n - 1, true);
        }
        // About 20 election timeouts alone: it keeps trying pre-votes, which fail.
        h.sleep(5 * SEC);
        let s = h.sim.status(follower).expect("up");
        assert_eq!(
            s.term, term,
            "seed {seed}: isolated follower raised its term"
        );
        assert_ne!(s.role, Role::Leader);

        h.connect(follower);
        let mut disrupted = None;
        h.sim.run_until(3 * SEC, |s| {
            let st = s.status(leader);
            if st.map(|st| (st.role, st.term)) != Some((Role::Leader, term)) {
                disrupted.get_or_insert((s.now_us(), st));
            }
            false
        });
        assert_eq!(
            disrupted, None,
            "seed {seed}: the rejoining node disrupted the leader"
        );
        h.one(100, n, true);
        assert_eq!(h.sim.leader(), Some(leader), "seed {seed}");
        for node in h.all() {
            assert_eq!(
                h.sim.status(node).expect("up").term,
                term,
                "seed {seed}: term moved"
            );
        }
        h.assert_safe();
    }
}

/// With check-quorum on, a leader cut off from everyone steps down within a few election
/// timeouts, while the majority elects a new leader in a higher term.
#[test]
fn isolated_leader_steps_down() {
    for seed in [411, 412, 413] {
        let n = 5;
        let mut h = Harness::new(seed, opts(n));
        h.one(1, n, true);
        let old = h.check_one_leader();
        let old_term = h.sim.status(old).expect("up").term;

        h.disconnect(old);
        let t0 = h.sim.now_us();
        let stepped = h.sim.run_until(3 * MAX_ELECTION_TIMEOUT, |s| {
            s.status(old).is_some_and(|st| st.role != Role::Leader)
        });
        assert!(
            stepped,
            "seed {seed}: isolated leader {old} still leads after {} ms",
            (h.sim.now_us() - t0) / MS
        );

        let new = h.check_one_leader();
        assert_ne!(new, old, "seed {seed}");
        assert!(
            h.sim.status(new).expect("up").term > old_term,
            "seed {seed}"
        );
        h.one(2, n - 1, true);

        h.connect(old);
        h.one(3, n, true);
        assert_ne!(h.role(old), Some(Role::Leader), "seed {seed}");
        h.assert_safe();
    }
}

/// A value of `probe`'s read once it settles (or the final `None` when still pending).
fn read_settled(h: &mut Harness, probe: u64) -> Option<Result<Option<u64>, Option<NodeId>>> {
    h.sim.run_until(2 * SEC, |s| s.read_result(probe).is_some());
    h.sim.read_result(probe)
}

/// ReadIndex under a partition: the leader is isolated and the majority elects a new
/// leader and commits a new value. A read at the deposed leader never returns the old
/// value (which its own state machine still holds, so a local read would be stale): it
/// is refused, aborted or stays pending. A read at the new leader sees the new value.
fn read_index_scenario(seed: u64, check_quorum: bool) {
    let n = 5;
    let (old_value, new_value) = (111, 222);
    let mut h = Harness::new(
        seed,
        SimOptions {
            check_quorum,
            ..opts(n)
        },
    );
    h.one(old_value, n, true);
    let old = h.check_one_leader();

    // Sanity: a read at the healthy leader works.
    let p = h.sim.start_read(old).expect("up");
    assert_eq!(
        read_settled(&mut h, p),
        Some(Ok(Some(old_value))),
        "seed {seed}"
    );

    h.disconnect(old);
    // Issued while the old leader still believes it leads.
    assert_eq!(h.role(old), Some(Role::Leader), "seed {seed}");
    let p_old = h.sim.start_read(old).expect("up");

    let new = h.check_one_leader();
    assert_ne!(new, old, "seed {seed}");
    h.one(new_value, n - 1, true);

    // The stale state exists locally, so the check below is meaningful.
    assert_eq!(h.sim.local_value(old), Some(old_value), "seed {seed}");
    assert_eq!(h.sim.local_value(new), Some(new_value), "seed {seed}");

    let mut stale_probes = vec![p_old];
    if !check_quorum {
        // Without check-quorum the deposed leader still believes it leads: the dangerous
        // case for reads.
        assert_eq!(h.role(old), Some(Role::Leader), "seed {seed}");
    }
    stale_probes.push(h.sim.start_read(old).expect("up"));

    let p_new = h.sim.start_read(new).expect("up");
    assert_eq!(
        read_settled(&mut h, p_new),
        Some(Ok(Some(new_value))),
        "seed {seed}"
    );

    h.sleep(SEC);
    for &p in &stale_probes {
        let r = h.sim.read_result(p);
        assert!(
            matches!(r, None | Some(Err(_))),
            "seed {seed}: a read at the deposed leader returned {r:?}"
        );
    }

    // Heal: the old leader learns the new term; its reads are aborted, never served.
    h.connect(old);
    h.one(333, n, true);
    for &p in &stale_probes {
        let r = h.sim.read_result(p);
        assert!(
            matches!(r, Some(Err(_))),
            "seed {seed}: a read at the deposed leader was not aborted after healing: {r:?}"
        );
    }
    h.assert_safe();
}

/// [`read_index_scenario`] with check-quorum on (the deposed leader steps down) and off
/// (it keeps believing it leads, and only the ReadIndex quorum round protects reads).
#[test]
fn read_index_under_partition() {
    for seed in [421, 422] {
        read_index_scenario(seed, true);
        read_index_scenario(seed, false);
    }
}

/// A seed replays exactly: the same trace, event for event, and the same counters, under
/// every fault class with the workload running.
#[test]
fn replay_is_deterministic() {
    let opts = SimOptions {
        nodes: 5,
        fault_phase_us: 3 * SEC,
        ..SimOptions::default()
    };
    for seed in [7, 8] {
        let a = run_seed(seed, &opts, true);
        let b = run_seed(seed, &opts, true);
        assert!(a.violation.is_none(), "seed {seed}: {:?}", a.violation);
        assert!(
            a.trace.len() > 200,
            "seed {seed}: trace too short: {}",
            a.trace.len()
        );
        assert!(
            a.stats.messages_sent > 0 && a.ops > 0,
            "seed {seed}: nothing happened"
        );
        assert_eq!(
            a.stats, b.stats,
            "seed {seed}: stats differ between replays"
        );
        assert_eq!(a.sim_us, b.sim_us, "seed {seed}");
        assert_eq!(a.ops, b.ops, "seed {seed}");
        if let Some(i) = (0..a.trace.len().min(b.trace.len())).find(|i| a.trace[*i] != b.trace[*i])
        {
            panic!(
                "seed {seed}: traces diverge at line {i}:\n  {}\n  {}",
                a.trace[i], b.trace[i]
            );
        }
        assert_eq!(a.trace.len(), b.trace.len(), "seed {seed}");
    }
    // And different seeds really differ.
    let a = run_seed(7, &opts, true);
    let c = run_seed(9, &opts, true);
    assert_ne!(a.trace, c.trace);
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
        read_seq: 0,
    }
}

/// Malformed and hostile inputs through the public raft API are refused with typed
/// errors and leave the node unchanged; bad configurations and durable states are
/// refused at construction. Nothing panics.
#[test]
fn bad_inputs_do_not_panic() {
    // A follower of node 2 in term 5.
    let mut f = RaftNode::new(Config::new(NodeId(1), ids(&[1, 2, 3]))).expect("valid");
    f.step(NodeId(2), heartbeat(5, vec![])).expect("heartbeat");
    drive(&mut f);
    let before = f.status();
    assert_eq!((before.term, before.leader), (Term(5), Some(NodeId(2))));

    let refused: Vec<(NodeId, Message, StepError)> = vec![
        (
            NodeId(9),
            heartbeat(5, vec![]),
            StepError::UnknownPeer(NodeId(9)),
        ),
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
    ];
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

    // Client verbs and driver verbs misused on a follower.
    assert_eq!(
        f.propose(b"x".to_vec().into()),
        Err(ProposeError::NotLeader {
            leader: Some(NodeId(2))
        })
    );
    assert_eq!(
        f.read_index(1),
        Err(ProposeError::NotLeader {
            leader: Some(NodeId(2))
        })
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

    // Configurations.
    let cfg = |f: &dyn Fn(&mut Config)| {
        let mut c = Config::new(NodeId(1), ids(&[1, 2, 3]));
        f(&mut c);
        c
    };
    let bad: Vec<(Config, ConfigError)> = vec![
        (cfg(&|c| c.voters.clear()), ConfigError::NoVoters),
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
    assert_eq!(
        RaftNode::restart(good.clone(), rec(hs_bad_vote, vec![])).err(),
        Some(RecoverError::UnknownVote(NodeId(7)))
    );
    let mut no_voters = good.clone();
    no_voters.voters.clear();
    assert_eq!(
        RaftNode::restart(no_voters, rec(hs, vec![])).err(),
        Some(RecoverError::Config(ConfigError::NoVoters))
    );
    // A commit index beyond the surviving log is clamped, not trusted.
    let hs_far = HardState {
        commit: LogIndex(50),
        ..hs
    };
    let r = RaftNode::restart(good, rec(hs_far, vec![noop(1, 1)])).expect("clamped");
    assert_eq!(r.status().commit, LogIndex(1));
}
