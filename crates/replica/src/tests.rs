//! The replica over the real Raft engine and the real `kv::Store`, on a tiny
//! in-memory network that delivers everything in order.

use crate::{Action, Refused, Replica, ReplicaOptions, SnapshotPolicy};
use engine::{Index, NodeId, StateMachine};
use kv::{PutRequest, Request, Store};
use raft::{Config, Message, RaftNode};

type Client = u32;

/// A store that lets anything into the log: what a buggy or older member might order.
struct Lenient(Store);

impl StateMachine for Lenient {
    type Response = kv::Response;
    type Error = kv::KvError;
    fn validate(&self, _: &[u8]) -> Result<(), kv::KvError> {
        Ok(())
    }
    fn apply(&mut self, index: Index, c: &[u8]) -> Option<engine::Applied<Lenient>> {
        StateMachine::apply(&mut self.0, index, c)
    }
    fn apply_noop(&mut self, index: Index) {
        self.0.apply_noop(index)
    }
    fn applied_index(&self) -> Index {
        StateMachine::applied_index(&self.0)
    }
    fn snapshot(&self) -> Vec<u8> {
        StateMachine::snapshot(&self.0)
    }
    fn restore(&mut self, data: &[u8]) -> Result<(), kv::KvError> {
        self.0.restore(data)
    }
    fn digest(&self) -> u64 {
        self.0.digest()
    }
}

struct Cluster<M: StateMachine> {
    nodes: Vec<Replica<RaftNode, M, Client>>,
    replies: Vec<(usize, Client, String)>,
    /// Nodes cut off from everyone: their mail is dropped and they do not tick.
    down: Vec<usize>,
}

fn opts(seed: u64) -> ReplicaOptions {
    ReplicaOptions {
        id_seed: seed << 32,
        snapshot: SnapshotPolicy::exact(1_000),
        record_applied: true,
        #[cfg(feature = "planted-bugs")]
        bug: None,
    }
}

fn cluster<M: StateMachine>(n: u64, machine: impl Fn() -> M) -> Cluster<M> {
    let ids: Vec<NodeId> = (1..=n).map(NodeId).collect();
    let nodes = ids
        .iter()
        .map(|id| {
            let mut cfg = Config::new(*id, ids.clone());
            cfg.seed = id.0;
            Replica::new(RaftNode::new(cfg).unwrap(), machine(), opts(id.0))
        })
        .collect();
    Cluster {
        nodes,
        replies: Vec::new(),
        down: Vec::new(),
    }
}

fn put(key: &str) -> Vec<u8> {
    kv::command::encode(&Request::Put(PutRequest {
        key: key.as_bytes().to_vec(),
        value: b"v".to_vec(),
        ..Default::default()
    }))
}

impl<M: StateMachine> Cluster<M> {
    /// Delivers everything until the cluster is quiet; storage is instant.
    fn settle(&mut self) {
        for _ in 0..1000 {
            let mut mail: Vec<(usize, NodeId, Message)> = Vec::new();
            let mut busy = false;
            for (i, r) in self.nodes.iter_mut().enumerate() {
                for a in r.take_effects().unwrap() {
                    busy = true;
                    match a {
                        Action::Send { to, message } => mail.push((i, to, message)),
                        Action::Persist { io, .. } => r.on_persisted(io).unwrap(),
                        Action::ReadSnapshotChunk { .. } => unreachable!("no snapshots here"),
                    }
                }
                for reply in r.take_replies() {
                    self.replies
                        .push((i, reply.client, format!("{:?}", reply.outcome)));
                }
            }
            if !busy {
                return;
            }
            for (from, to, m) in mail {
                if self.down.contains(&from) || self.down.contains(&(to.0 as usize - 1)) {
                    continue;
                }
                let from = NodeId(from as u64 + 1);
                let _ = self.nodes[to.0 as usize - 1].step(from, m);
            }
        }
        panic!("the cluster never went quiet");
    }

    fn elect(&mut self, who: usize) {
        while self.nodes[who].status().role != engine::Role::Leader {
            self.nodes[who].tick();
            self.settle();
        }
    }

    /// Ticks every node that is up until one of them leads; returns it.
    fn elect_any(&mut self) -> usize {
        loop {
            let up = |i: &usize| !self.down.contains(i);
            let leader = (0..self.nodes.len())
                .filter(up)
                .find(|i| self.nodes[*i].status().role == engine::Role::Leader);
            if let Some(l) = leader {
                return l;
            }
            for i in (0..self.nodes.len()).filter(up) {
                self.nodes[i].tick();
            }
            self.settle();
        }
    }
}

#[test]
fn writes_and_reads_are_answered_on_the_leader_and_through_a_follower() {
    let mut c = cluster(3, Store::new);
    c.elect(0);
    c.nodes[0].submit(1, put("a"));
    c.nodes[2].submit(2, put("b"));
    c.nodes[2].read(3);
    c.settle();
    let r = &c.replies;
    assert!(
        r.iter()
            .any(|(n, c, o)| (*n, *c) == (0, 1) && o.starts_with("Applied")),
        "{r:?}"
    );
    assert!(
        r.iter()
            .any(|(n, c, o)| (*n, *c) == (2, 2) && o.starts_with("Applied")),
        "{r:?}"
    );
    assert!(
        r.iter()
            .any(|(n, c, o)| (*n, *c) == (2, 3) && o == "ReadReady"),
        "{r:?}"
    );
    let digests: Vec<u64> = c.nodes.iter().map(|n| n.machine().digest()).collect();
    assert!(digests.windows(2).all(|w| w[0] == w[1]), "{digests:?}");
    assert_eq!(c.nodes.iter().map(|n| n.in_flight()).sum::<usize>(), 0);
}

#[test]
fn a_command_that_does_not_decode_never_enters_the_log() {
    let mut c = cluster(3, Store::new);
    c.elect(0);
    c.nodes[0].submit(1, b"garbage".to_vec());
    c.settle();
    assert_eq!(
        c.replies,
        vec![(
            0,
            1,
            "Refused(synod: replicated command does not decode)".into()
        )]
    );
    assert_eq!(c.nodes[0].commands_refused(), 1);
    // A peer's Propose carrying garbage is refused before it reaches the engine.
    let forged = Message::Propose {
        term: raft::Term(c.nodes[0].status().epoch),
        command: b"garbage and its id".to_vec().into(),
    };
    let last = c.nodes[0].status().last_index;
    assert!(matches!(
        c.nodes[0].step(NodeId(2), forged),
        Err(Refused::Command(_))
    ));
    c.settle();
    assert_eq!(c.nodes[0].status().last_index, last);
}

#[test]
fn a_committed_command_that_does_not_decode_is_refused_alike_everywhere() {
    let mut c = cluster(3, || Lenient(Store::new()));
    c.elect(0);
    c.nodes[0].submit(1, put("before"));
    c.nodes[0].submit(2, b"garbage".to_vec());
    c.nodes[1].submit(3, put("after"));
    c.settle();
    let answer = |client| c.replies.iter().find(|r| r.1 == client).unwrap().2.clone();
    assert!(answer(1).starts_with("Applied"));
    assert_eq!(
        answer(2),
        "Refused(synod: replicated command does not decode)"
    );
    assert!(answer(3).starts_with("Applied"));
    let applied: Vec<Index> = c.nodes.iter().map(|n| n.applied()).collect();
    assert!(applied.iter().all(|a| *a == applied[0]), "{applied:?}");
    let digests: Vec<u64> = c.nodes.iter().map(|n| n.machine().digest()).collect();
    assert!(digests.windows(2).all(|w| w[0] == w[1]), "{digests:?}");
}

#[test]
fn forwarded_writes_are_answered_unknown_when_the_leader_changes() {
    let mut c = cluster(3, Store::new);
    c.elect(0);
    // Node 3 forwards a write, but the leader never hears of it: node 2 takes over.
    c.nodes[2].submit(7, put("lost"));
    let _ = c.nodes[2].take_effects().unwrap();
    c.down.push(0);
    assert_ne!(c.elect_any(), 0);
    assert!(
        c.replies
            .iter()
            .any(|r| (r.0, r.1, r.2.as_str()) == (2, 7, "Unknown")),
        "{:?}",
        c.replies
    );
    assert_eq!(c.nodes[2].in_flight(), 0);
}

#[test]
fn snapshots_follow_the_policy() {
    let mut c = cluster(1, Store::new);
    c.elect(0);
    let r = &mut c.nodes[0];
    assert_eq!(r.snapshot_due(), None);
    for i in 0..1_000 {
        r.submit(i, put(&format!("k{i}")));
    }
    c.settle();
    let r = &mut c.nodes[0];
    assert_eq!(r.snapshot_due(), Some(r.applied()));
    assert!(r.maybe_snapshot().unwrap());
    assert_eq!(r.snapshot_due(), None);
    c.settle();
    assert_eq!(c.nodes[0].status().snapshot, c.nodes[0].applied());
}

/// A store with timed duties: as leader it orders a put every third tick, and it keeps
/// what the replica told it about leadership and ordering.
struct Timed {
    store: Store,
    ticks: u64,
    leadership: Vec<bool>,
    ordered: Vec<Vec<u8>>,
}

impl Timed {
    fn new() -> Timed {
        Timed {
            store: Store::new(),
            ticks: 0,
            leadership: Vec::new(),
            ordered: Vec::new(),
        }
    }
}

impl StateMachine for Timed {
    type Response = kv::Response;
    type Error = kv::KvError;
    fn validate(&self, c: &[u8]) -> Result<(), kv::KvError> {
        self.store.validate(c)
    }
    fn apply(&mut self, index: Index, c: &[u8]) -> Option<engine::Applied<Timed>> {
        StateMachine::apply(&mut self.store, index, c)
    }
    fn apply_noop(&mut self, index: Index) {
        self.store.apply_noop(index)
    }
    fn applied_index(&self) -> Index {
        StateMachine::applied_index(&self.store)
    }
    fn snapshot(&self) -> Vec<u8> {
        StateMachine::snapshot(&self.store)
    }
    fn restore(&mut self, data: &[u8]) -> Result<(), kv::KvError> {
        self.store.restore(data)
    }
    fn digest(&self) -> u64 {
        self.store.digest()
    }
    fn on_tick(&mut self, leader: bool) -> Vec<Vec<u8>> {
        self.ticks += 1;
        if !leader || !self.ticks.is_multiple_of(3) {
            return Vec::new();
        }
        vec![put(&format!("timer-{}", self.ticks))]
    }
    fn on_leadership(&mut self, leader: bool) {
        self.leadership.push(leader);
    }
    fn on_ordered(&mut self, _index: Option<Index>, command: &[u8]) {
        self.ordered.push(command.to_vec());
    }
}

#[test]
fn a_leaders_timed_duties_are_ordered_and_only_the_leader_sees_ordering() {
    let mut c = cluster(3, Timed::new);
    c.elect(0);
    c.nodes[0].submit(1, put("by-leader"));
    c.nodes[2].submit(2, put("by-follower"));
    c.settle();
    for _ in 0..3 {
        for n in &mut c.nodes {
            n.tick();
        }
        c.settle();
    }
    let leader = c.nodes[0].machine();
    assert_eq!(leader.leadership, vec![true]);
    // The client's write, the follower's forwarded one and the timer's own put.
    assert!(leader.ordered.contains(&put("by-leader")));
    assert!(leader.ordered.contains(&put("by-follower")));
    let timer = leader
        .ordered
        .iter()
        .find(|c| **c != put("by-leader") && **c != put("by-follower"))
        .expect("the leader's timer ordered a put")
        .clone();
    for n in &c.nodes[1..] {
        assert!(n.machine().leadership.is_empty());
        assert!(n.machine().ordered.is_empty());
    }
    // The timer's put is applied everywhere, as any write.
    let digests: Vec<u64> = c.nodes.iter().map(|n| n.machine().digest()).collect();
    assert!(digests.windows(2).all(|w| w[0] == w[1]), "{digests:?}");
    assert!(c.nodes[1].machine().store.validate(&timer).is_ok());
    // A new leader is told; the old one hears it lost leadership once it learns.
    c.down.push(0);
    let next = c.elect_any();
    assert_eq!(c.nodes[next].machine().leadership, vec![true]);
    c.down.clear();
    for _ in 0..3 {
        for n in &mut c.nodes {
            n.tick();
        }
        c.settle();
    }
    assert_eq!(c.nodes[0].machine().leadership, vec![true, false]);
}
