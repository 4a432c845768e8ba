//! The sans-IO contract, driven by hand: durability gating, typed errors for bad input,
//! configuration validation. No simulator: every message is moved explicitly.

use raft::{
    AppendOutcome, Config, Effect, Entry, EntryKind, HardState, IoId, LogIndex, Message, NodeId,
    ProposeError, RaftNode, RecoverError, Recovered, Role, Snapshot, SnapshotMeta, Term,
};

fn ids(n: u64) -> Vec<NodeId> {
    (1..=n).map(NodeId).collect()
}

fn node(id: u64, n: u64) -> RaftNode {
    RaftNode::new(Config::new(NodeId(id), ids(n))).expect("valid config")
}

fn sends(effects: &[Effect]) -> Vec<(NodeId, Message)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Send { to, message } => Some((*to, message.clone())),
            _ => None,
        })
        .collect()
}

fn persist_ios(effects: &[Effect]) -> Vec<IoId> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Persist(p) => Some(p.io),
            _ => None,
        })
        .collect()
}

fn vote_request(term: u64, last_index: u64, last_term: u64) -> Message {
    Message::VoteRequest {
        term: Term(term),
        last_index: LogIndex(last_index),
        last_term: Term(last_term),
        pre_vote: false,
        transfer: false,
    }
}

/// The contract's epoch is the durable term: a term adopted in memory and lost in a
/// crash before its hard state is written must never have been reported.
#[test]
fn the_epoch_is_the_durable_term_and_never_decreases() {
    let mut n = node(1, 3);
    let epoch = |n: &RaftNode| engine::Engine::status(n).epoch;
    n.step(NodeId(2), vote_request(4, 0, 0)).unwrap();
    assert_eq!(n.status().term, Term(4), "adopted in memory at once");
    assert_eq!(epoch(&n), 0, "not durable yet");
    let ios = persist_ios(&n.take_effects());
    n.on_persisted(ios[0]).unwrap();
    assert_eq!(epoch(&n), 4);
    let restarted = RaftNode::restart(
        Config::new(NodeId(1), ids(3)),
        Recovered {
            hard_state: HardState {
                term: Term(4),
                vote: Some(NodeId(2)),
                commit: LogIndex(0),
            },
            snapshot: None,
            entries: Vec::new(),
        },
    )
    .unwrap();
    assert_eq!(
        epoch(&restarted),
        4,
        "a restart starts from the durable term"
    );
}

/// A granted vote leaves the node only after the hard state recording it is durable.
#[test]
fn vote_is_sent_only_after_it_is_durable() {
    let mut n = node(1, 3);
    n.step(NodeId(2), vote_request(1, 0, 0)).unwrap();
    let effects = n.take_effects();
    let ios = persist_ios(&effects);
    assert_eq!(ios.len(), 1, "the vote must be persisted");
    assert!(
        sends(&effects).is_empty(),
        "vote sent before durable: {effects:?}"
    );
    n.on_persisted(ios[0]).unwrap();
    let after = sends(&n.take_effects());
    assert!(matches!(
        after.as_slice(),
        [(
            NodeId(2),
            Message::VoteResponse {
                granted: true,
                pre_vote: false,
                ..
            }
        )]
    ));
    // One vote per term: a second candidate in the same term is refused.
    n.step(NodeId(3), vote_request(1, 5, 1)).unwrap();
    let refused = sends(&n.take_effects());
    assert!(matches!(
        refused.as_slice(),
        [(NodeId(3), Message::VoteResponse { granted: false, .. })]
    ));
}

/// An append acknowledgement waits for the entries to be durable.
#[test]
fn append_ack_waits_for_durability() {
    let mut n = node(2, 3);
    let entry = Entry {
        term: Term(1),
        index: LogIndex(1),
        kind: EntryKind::Noop,
    };
    let append = Message::Append {
        term: Term(1),
        prev_index: LogIndex(0),
        prev_term: Term(0),
        entries: vec![entry],
        leader_commit: LogIndex(0),
        read_seq: 1,
    };
    n.step(NodeId(1), append).unwrap();
    let effects = n.take_effects();
    assert!(sends(&effects).is_empty());
    let io = persist_ios(&effects)[0];
    n.on_persisted(io).unwrap();
    let acks = sends(&n.take_effects());
    assert!(matches!(
        acks.as_slice(),
        [(
            NodeId(1),
            Message::AppendResponse {
                outcome: AppendOutcome::Accepted {
                    match_index: LogIndex(1)
                },
                read_seq: 1,
                ..
            }
        )]
    ));
    assert_eq!(n.on_persisted(IoId(99)), Err(raft::UnknownIo(IoId(99))));
}

/// Stale-term messages are ignored (answered with our term), not obeyed.
#[test]
fn stale_terms_are_ignored() {
    let mut n = node(1, 3);
    n.step(NodeId(2), vote_request(4, 0, 0)).unwrap();
    let ios = persist_ios(&n.take_effects());
    n.on_persisted(ios[0]).unwrap();
    n.take_effects();
    let old = Message::Append {
        term: Term(2),
        prev_index: LogIndex(0),
        prev_term: Term(0),
        entries: vec![Entry {
            term: Term(2),
            index: LogIndex(1),
            kind: EntryKind::Noop,
        }],
        leader_commit: LogIndex(1),
        read_seq: 0,
    };
    n.step(NodeId(3), old).unwrap();
    let effects = n.take_effects();
    assert!(
        persist_ios(&effects).is_empty(),
        "a stale leader's entries must not be stored"
    );
    assert_eq!(n.status().term, Term(4));
    assert!(matches!(
        sends(&effects).as_slice(),
        [(NodeId(3), Message::AppendResponse { term: Term(4), .. })]
    ));
}

/// A leader refuses acknowledgements for entries it never had.
#[test]
fn out_of_range_acknowledgements_are_rejected() {
    let mut n = node(1, 1);
    for _ in 0..40 {
        n.tick();
        for e in n.take_effects() {
            if let Effect::Persist(p) = e {
                n.on_persisted(p.io).unwrap();
            }
        }
        if n.status().role == Role::Leader {
            break;
        }
    }
    assert_eq!(n.status().role, Role::Leader);
    // Single-node cluster: no followers to acknowledge anything; a reply from a
    // non-member (a node removed, say) is dropped and changes nothing.
    let bogus = Message::AppendResponse {
        term: n.status().term,
        outcome: AppendOutcome::Accepted {
            match_index: LogIndex(1_000),
        },
        read_seq: 0,
    };
    let before = n.status();
    assert!(n.step(NodeId(2), bogus).is_ok());
    assert_eq!(n.status(), before);
    assert_eq!(n.read_index(7), Ok(()));
    let mut f = node(2, 3);
    assert_eq!(
        f.propose(vec![1].into()),
        Err(ProposeError::NotLeader { leader: None })
    );
    assert_eq!(
        f.read_index(1),
        Err(ProposeError::NotLeader { leader: None })
    );
}

/// Inconsistent durable state is refused at restart rather than trusted.
#[test]
fn recovery_validates_durable_state() {
    let cfg = Config::new(NodeId(1), ids(3));
    let entry = |i: u64, t: u64| Entry {
        term: Term(t),
        index: LogIndex(i),
        kind: EntryKind::Noop,
    };
    let hs = HardState {
        term: Term(2),
        vote: None,
        commit: LogIndex(1),
    };
    let gap = Recovered {
        hard_state: hs,
        snapshot: None,
        entries: vec![entry(1, 1), entry(3, 1)],
    };
    assert!(matches!(
        RaftNode::restart(cfg.clone(), gap),
        Err(RecoverError::LogGap { .. })
    ));
    let future = Recovered {
        hard_state: hs,
        snapshot: None,
        entries: vec![entry(1, 3)],
    };
    assert!(matches!(
        RaftNode::restart(cfg.clone(), future),
        Err(RecoverError::BadEntryTerm { .. })
    ));
    let stranger = Recovered {
        hard_state: HardState {
            vote: Some(NodeId(7)),
            ..hs
        },
        ..Recovered::default()
    };
    // A vote may name a member of a membership this node's log no longer holds.
    assert!(RaftNode::restart(cfg.clone(), stranger).is_ok());
    let meta = SnapshotMeta {
        index: LogIndex(5),
        term: Term(2),
    };
    let members = raft::Membership::of_voters(cfg.voters.iter().copied());
    let bare = Recovered {
        hard_state: hs,
        snapshot: Some(Snapshot {
            meta,
            data: vec![1, 2].into(),
        }),
        entries: vec![],
    };
    assert!(matches!(
        RaftNode::restart(cfg.clone(), bare),
        Err(RecoverError::BadSnapshot(_))
    ));
    let snap = Snapshot {
        meta,
        data: vec![1, 2].into(),
    };
    let stored = Snapshot {
        meta,
        data: raft::stored_snapshot(&[1, 2], &members),
    };
    let ok = Recovered {
        hard_state: hs,
        snapshot: Some(stored),
        entries: vec![entry(6, 2)],
    };
    let mut n = RaftNode::restart(cfg, ok).unwrap();
    let s = n.status();
    assert_eq!(
        (s.snapshot.index, s.last_index, s.commit),
        (LogIndex(5), LogIndex(6), LogIndex(5))
    );
    let applied: Vec<Effect> = n.take_effects();
    assert!(matches!(applied.first(), Some(Effect::Apply(raft::Apply::Snapshot(s))) if *s == snap));
}

/// Compaction refuses what has not been applied yet, or is already compacted.
#[test]
fn compaction_is_validated() {
    let mut n = node(1, 1);
    assert!(n.compact(LogIndex(1), vec![].into()).is_err());
    assert!(n.compact(LogIndex(0), vec![].into()).is_err());
}

/// A candidate's vote requests leave only once its new term and self-vote are durable,
/// so it can never lead a term it could forget in a crash.
#[test]
fn vote_requests_wait_for_the_candidates_durable_term() {
    let mut c = Config::new(NodeId(1), ids(3));
    c.pre_vote = false;
    let mut n = RaftNode::new(c).unwrap();
    let mut effects = Vec::new();
    for _ in 0..40 {
        n.tick();
        effects = n.take_effects();
        if !effects.is_empty() {
            break;
        }
    }
    assert_eq!(n.status().role, Role::Candidate);
    assert!(
        sends(&effects).is_empty(),
        "vote requests sent before the term is durable"
    );
    n.on_persisted(persist_ios(&effects)[0]).unwrap();
    let requests = sends(&n.take_effects());
    assert_eq!(requests.len(), 2);
    assert!(requests.iter().all(|(_, m)| matches!(
        m,
        Message::VoteRequest {
            pre_vote: false,
            ..
        }
    )));
}

/// Thousands of arbitrary messages (random kinds, terms, indexes, entries, chunks, from
/// members and strangers) never panic a node, whatever state they drive it into.
#[test]
fn arbitrary_messages_never_panic() {
    let mut rng = seedrng::Rng::new(2024);
    for round in 0..20u64 {
        let mut n = node(1 + round % 3, 3);
        for _ in 0..500 {
            let from = NodeId(rng.range(0, 5));
            let msg = arbitrary_message(&mut rng);
            let _ = n.step(from, msg);
            if rng.chance(1, 4) {
                n.tick();
            }
            for e in n.take_effects() {
                if let Effect::Persist(p) = e {
                    if rng.chance(3, 4) {
                        let _ = n.on_persisted(p.io);
                    }
                }
            }
            let _ = n.propose(vec![1, 2, 3].into());
            let _ = n.read_index(rng.next_u64());
            let s = n.status();
            assert!(s.applied <= s.commit && s.commit <= s.last_index, "{s:?}");
        }
    }
}

fn small_or_huge(rng: &mut seedrng::Rng) -> u64 {
    match rng.range(0, 4) {
        0 => u64::MAX - rng.range(0, 3),
        _ => rng.range(0, 12),
    }
}

fn arbitrary_message(rng: &mut seedrng::Rng) -> Message {
    let term = Term(small_or_huge(rng));
    let idx = |rng: &mut seedrng::Rng| LogIndex(small_or_huge(rng));
    match rng.range(0, 10) {
        9 => Message::TimeoutNow { term },
        8 => Message::Propose {
            term,
            command: vec![1u8; rng.range(0, 40) as usize].into(),
        },
        6 => Message::ReadIndex {
            term,
            ctx: small_or_huge(rng),
        },
        7 => Message::ReadIndexResponse {
            term,
            ctx: small_or_huge(rng),
            index: Some(idx(rng)).filter(|_| rng.chance(1, 2)),
        },
        0 => Message::VoteRequest {
            term,
            last_index: idx(rng),
            last_term: Term(small_or_huge(rng)),
            pre_vote: rng.chance(1, 2),
            transfer: rng.chance(1, 4),
        },
        1 => Message::VoteResponse {
            term,
            granted: rng.chance(1, 2),
            pre_vote: rng.chance(1, 2),
        },
        2 => {
            let prev_index = idx(rng);
            let count = rng.range(0, 4);
            let entries = (1..=count)
                .map(|k| Entry {
                    term: Term(rng.range(0, term.0.min(12) + 1)),
                    index: LogIndex(prev_index.0.wrapping_add(k)),
                    kind: EntryKind::Command(vec![k as u8].into()),
                })
                .collect();
            Message::Append {
                term,
                prev_index,
                prev_term: Term(rng.range(0, 12)),
                entries,
                leader_commit: idx(rng),
                read_seq: rng.range(0, 5),
            }
        }
        3 => {
            let outcome = if rng.chance(1, 2) {
                AppendOutcome::Accepted {
                    match_index: idx(rng),
                }
            } else {
                AppendOutcome::Rejected {
                    rejected_index: idx(rng),
                    conflict_term: Some(Term(rng.range(0, 12))),
                    conflict_index: idx(rng),
                }
            };
            Message::AppendResponse {
                term,
                outcome,
                read_seq: rng.range(0, 5),
            }
        }
        4 => {
            let total_len = rng.range(0, 40);
            let len = rng.range(0, 20) as usize;
            Message::Snapshot {
                term,
                meta: SnapshotMeta {
                    index: idx(rng),
                    term: Term(rng.range(0, 12)),
                },
                offset: small_or_huge(rng),
                total_len,
                data: vec![7u8; len].into(),
                checksum: rng.range(0, 3) as u32,
                read_seq: 0,
            }
        }
        _ => Message::SnapshotResponse {
            term,
            index: idx(rng),
            next_offset: small_or_huge(rng),
            installed: rng.chance(1, 2),
            read_seq: 0,
        },
    }
}
