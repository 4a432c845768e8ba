// The driver of every section. Not a module of the crate: the doctests include it.
use raft::{Apply, Config, Effect, Entry, EntryKind, HardState, LogIndex, Message, NodeId};
use raft::{PersistRequest, RaftNode, Recovered, Role, Snapshot, SnapshotWrite};
use std::collections::{BTreeMap, VecDeque};

/// Node `id`'s configuration: it must be the same at every start.
fn config(id: NodeId) -> Config {
    let mut cfg = Config::new(id, vec![NodeId(1), NodeId(2), NodeId(3)]);
    cfg.snapshot_chunk_bytes = 8; // tiny, so that a snapshot takes several chunks
    cfg
}

/// The state machine: a map, changed by commands of the form "key=value".
type Kv = BTreeMap<String, String>;

fn run(kv: &mut Kv, command: &str) {
    let (key, value) = command.split_once('=').unwrap();
    kv.insert(key.to_string(), value.to_string());
}

/// What one node has made durable. A real driver writes files and fsyncs them.
#[derive(Default)]
struct Disk {
    hard_state: HardState,
    snapshot: Option<Snapshot>,
    entries: Vec<Entry>,
}

impl Disk {
    /// Writes the parts of a request in the order its docs ask for.
    fn write(&mut self, req: PersistRequest) {
        if let Some(hs) = req.hard_state {
            self.hard_state = hs;
        }
        if let Some(SnapshotWrite::Store(snap)) = req.snapshot {
            self.entries.retain(|e| e.index > snap.meta.index);
            self.snapshot = Some(snap);
        }
        if let Some(w) = req.entries {
            self.entries.retain(|e| e.index < w.from);
            self.entries.extend(w.entries);
        }
    }

    /// What a restart reads back.
    fn recover(&self) -> Recovered {
        Recovered {
            hard_state: self.hard_state,
            snapshot: self.snapshot.clone(),
            entries: self.entries.clone(),
        }
    }
}

/// Three nodes, their disks and state machines, and the network between them.
#[derive(Default)]
struct Cluster {
    nodes: BTreeMap<NodeId, RaftNode>, // a node missing here is down
    disks: BTreeMap<NodeId, Disk>,
    kv: BTreeMap<NodeId, Kv>,
    net: VecDeque<(NodeId, NodeId, Message)>, // (from, to, message)
    reads: Vec<(NodeId, u64, LogIndex)>,      // ReadReady: (node, ctx, index)
    delivered: Vec<(NodeId, &'static str)>,   // (to, kind) of each delivery
}

impl Cluster {
    fn new() -> Cluster {
        let mut c = Cluster::default();
        for id in [1, 2, 3].map(NodeId) {
            c.nodes.insert(id, RaftNode::new(config(id)).unwrap());
        }
        c
    }

    fn node(&mut self, id: NodeId) -> &mut RaftNode {
        self.nodes.get_mut(&id).unwrap()
    }

    fn with_role(&self, role: Role) -> Vec<NodeId> {
        let ids = self.nodes.values().filter(|n| n.status().role == role);
        ids.map(|n| n.id()).collect()
    }

    /// Carries out node `id`'s effects, in order, until it has none left.
    fn drain(&mut self, id: NodeId) {
        let Some(node) = self.nodes.get_mut(&id) else {
            return;
        };
        let disk = self.disks.entry(id).or_default();
        let kv = self.kv.entry(id).or_default();
        loop {
            let effects = node.take_effects();
            if effects.is_empty() {
                return;
            }
            for effect in effects {
                match effect {
                    Effect::Persist(req) => {
                        let io = req.io;
                        disk.write(req);
                        node.on_persisted(io).unwrap();
                    }
                    Effect::Send { to, message } => self.net.push_back((id, to, message)),
                    Effect::SendSnapshotChunk { to, chunk } => {
                        // The core keeps no snapshot bytes: read the chunk from disk.
                        let snap = disk.snapshot.as_ref().unwrap();
                        assert_eq!(snap.meta, chunk.meta);
                        let start = chunk.offset as usize;
                        let end = snap.data.len().min(start + chunk.max_len);
                        let crc = crc32c::crc32c(&snap.data); // of the whole snapshot
                        let message = chunk.into_message(snap.data[start..end].into(), crc);
                        self.net.push_back((id, to, message));
                    }
                    Effect::Apply(Apply::Entry(e)) => match e.kind {
                        EntryKind::Command(c) => run(kv, std::str::from_utf8(&c).unwrap()),
                        EntryKind::Noop => {} // each new leader appends one
                        EntryKind::Config(_) => {} // applied as `Apply::Config`
                    },
                    Effect::Apply(Apply::Config { .. }) => {} // no membership changes here
                    Effect::Apply(Apply::Snapshot(snap)) => {
                        kv.clear();
                        let text = std::str::from_utf8(&snap.data).unwrap();
                        text.lines().for_each(|line| run(kv, line));
                    }
                    Effect::ReadReady { ctx, index } => self.reads.push((id, ctx, index)),
                    Effect::ReadAborted { ctx } => panic!("read {ctx} aborted"),
                }
            }
        }
    }

    /// Delivers the messages in flight, one at a time, until none are left.
    fn settle(&mut self) {
        for id in [1, 2, 3].map(NodeId) {
            self.drain(id);
        }
        while let Some((from, to, message)) = self.net.pop_front() {
            let Some(node) = self.nodes.get_mut(&to) else {
                continue; // the node is down: the message is lost
            };
            self.delivered.push((to, message.kind_name()));
            node.step(from, message).unwrap();
            self.drain(to);
        }
    }

    /// One tick of time on every running node, then the messages it causes.
    fn tick(&mut self) {
        for node in self.nodes.values_mut() {
            node.tick();
        }
        self.settle();
    }

    /// Ticks until a node leads, and returns it.
    fn elect(&mut self) -> NodeId {
        for _ in 0..100 {
            if let [leader] = self.with_role(Role::Leader)[..] {
                return leader;
            }
            self.tick();
        }
        panic!("no leader after 100 ticks");
    }
}
