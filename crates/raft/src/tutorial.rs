//! A tutorial: a three-node cluster driven by hand.
//!
//! The core does no I/O, so a driver has to do it. Here the driver is a small
//! test harness: it carries messages between three nodes, keeps their "disks" and
//! runs their state machines, all in memory. Each section below is a doctest that
//! `cargo test -p raft --doc` runs.
//!
//! 1. A three-node cluster: elect a leader, write a command, see it applied.
//! 2. A restart from durable state: a follower loses its memory, keeps its disk.
//! 3. A linearizable read: ReadIndex on the leader and on a follower.
//! 4. A snapshot: compact the leader's log and catch up a lagging follower.
//!
//! ## 1. A three-node cluster
//!
//! The driver has four parts. Section 1 shows all of them. Later sections hide them
//! and show only what is new.
//!
//! - **`config`** builds a node's [`Config`](crate::Config). A node must get the
//!   same configuration every time it starts.
//! - **`Disk`** is one node's stable storage. A
//!   [`PersistRequest`](crate::PersistRequest) can hold a hard state, a snapshot and
//!   log entries. The disk writes them in that order. Then the driver calls
//!   [`on_persisted`](crate::RaftNode::on_persisted) with the request's `io`. Until
//!   it does, the node holds back every message that promises the write is safe,
//!   such as a granted vote or an append acknowledgement.
//! - **The network** is a queue of `(from, to, message)`. `settle` takes one message
//!   at a time and hands it to [`step`](crate::RaftNode::step) on the receiver. A
//!   message to a node that is down is lost.
//! - **The state machine** is a map of strings. Commands look like `"key=value"`.
//!   An [`Apply`](crate::Apply) effect runs a committed command, or replaces the
//!   whole map with a snapshot.
//!
//! `drain` is the heart of it. It calls [`take_effects`](crate::RaftNode::take_effects)
//! and carries out each [`Effect`](crate::Effect) in order, until there are none.
//! Time only passes when `tick` calls [`tick`](crate::RaftNode::tick) on each node.
//! After about ten ticks a node's election timer fires and it runs for leader.
//!
//! ```
#![doc = include_str!("tutorial/driver.rs")]
//!
//! use raft::ProposeError;
//!
//! let mut c = Cluster::new();
//! assert!(c.with_role(Role::Leader).is_empty()); // nobody leads at first
//!
//! // Tick until one node wins an election. The others follow it in its term.
//! let leader = c.elect();
//! let term = c.nodes[&leader].status().term;
//! for node in c.nodes.values() {
//!     assert_eq!(node.status().term, term);
//!     assert_eq!(node.status().leader, Some(leader));
//! }
//! let followers = c.with_role(Role::Follower);
//! assert_eq!(followers.len(), 2);
//!
//! // Only the leader takes writes. A follower refuses and names the leader.
//! let refused = c.node(followers[0]).propose("x=1".as_bytes().into());
//! assert_eq!(refused, Err(ProposeError::NotLeader { leader: Some(leader) }));
//!
//! // The leader appends the command. Index 1 holds the no-op it wrote on election.
//! let p = c.node(leader).propose("x=1".as_bytes().into()).unwrap();
//! assert_eq!((p.term, p.index), (term, LogIndex(2)));
//!
//! // Deliver everything. The entry commits once two of three nodes hold it.
//! c.settle();
//! assert_eq!(c.nodes[&leader].status().commit, p.index);
//!
//! // Followers learn the commit index from the leader's next messages. A follower
//! // whose answer came in after the commit hears it at the next heartbeat.
//! // The default heartbeat interval is 2 ticks.
//! c.tick();
//! c.tick();
//! for id in [1, 2, 3].map(NodeId) {
//!     let s = c.nodes[&id].status();
//!     assert_eq!((s.commit, s.applied), (p.index, p.index));
//!     assert_eq!(c.kv[&id]["x"], "1");
//!     assert_eq!(c.disks[&id].entries.len(), 2); // the no-op and the command
//! }
//! ```
//!
//! ## 2. A restart from durable state
//!
//! A crash loses a node's memory but not its disk. To restart it, read back what it
//! persisted into a [`Recovered`](crate::Recovered): the hard state (term, vote,
//! commit index), the latest snapshot, and the log entries after it. Pass that and
//! the same configuration to [`RaftNode::restart`](crate::RaftNode::restart).
//!
//! The restarted node keeps its term and its vote. This matters: if it forgot its
//! vote, it could vote twice in one term, and two leaders could be elected. It
//! does not know the leader yet. Its state machine starts empty: the node hands it
//! the snapshot, if there is one, then the entries up to the commit index it
//! persisted. That index may lag a little, since the node writes its hard state only
//! along with other writes. The leader's next heartbeats find what it missed and
//! send it, along with the current commit index.
//!
//! ```
//! # include!("tutorial/driver.rs");
//! # fn main() {
//! let mut c = Cluster::new();
//! let leader = c.elect();
//! c.node(leader).propose("x=1".as_bytes().into()).unwrap();
//! c.settle();
//!
//! let f = c.with_role(Role::Follower)[0];
//! let before = c.nodes[&f].status();
//! assert_eq!(before.vote, Some(leader)); // it voted for the leader
//!
//! // The crash: the node object and its state machine are gone. The disk stays.
//! c.nodes.remove(&f);
//! c.kv.remove(&f);
//!
//! // Two of three nodes are still a majority, so the cluster goes on without it.
//! let p = c.node(leader).propose("y=2".as_bytes().into()).unwrap();
//! c.settle();
//! assert_eq!(c.nodes[&leader].status().commit, p.index);
//!
//! // The restart sees only what the node persisted.
//! let node = RaftNode::restart(config(f), c.disks[&f].recover()).unwrap();
//! let after = node.status();
//! assert_eq!((after.term, after.vote), (before.term, before.vote));
//! assert_eq!(after.last_index, before.last_index); // its log survived
//! assert_eq!((after.role, after.leader), (Role::Follower, None));
//! assert!(after.last_index < p.index); // it missed "y=2"
//!
//! // Back in the cluster, it hears the leader and catches up.
//! c.nodes.insert(f, node);
//! for _ in 0..10 {
//!     c.tick();
//! }
//! let s = c.nodes[&f].status();
//! assert_eq!((s.term, s.leader, s.applied), (before.term, Some(leader), p.index));
//! assert_eq!(c.kv[&f], c.kv[&leader]);
//! assert_eq!(c.kv[&f]["y"], "2");
//! # }
//! ```
//!
//! ## 3. A linearizable read
//!
//! A leader cannot answer a read from its own state right away. Another node may
//! have been elected meanwhile, and the old leader would return stale data. A
//! ReadIndex read checks first. [`read_index(ctx)`](crate::RaftNode::read_index)
//! notes the commit index. The leader then sends a round of heartbeats. Once a
//! majority has answered that round, it is sure it was still leader when the read
//! arrived. Then it emits [`Effect::ReadReady`](crate::Effect::ReadReady) with the
//! read's `ctx` and an `index`. The driver serves the read once its state machine
//! has applied that index. `ctx` is the driver's own name for the read.
//!
//! A follower can serve a read too. It asks the leader for the index, waits until it
//! has applied that far, and then emits its own `ReadReady`.
//!
//! ```
//! # include!("tutorial/driver.rs");
//! # fn main() {
//! let mut c = Cluster::new();
//! let leader = c.elect();
//! c.node(leader).propose("x=1".as_bytes().into()).unwrap();
//! c.settle();
//! let commit = c.nodes[&leader].status().commit;
//!
//! // Ask. The leader's effects are one heartbeat to each follower, and no answer.
//! c.node(leader).read_index(7).unwrap();
//! c.drain(leader);
//! assert_eq!(c.net.len(), 2);
//! assert!(c.reads.is_empty());
//!
//! // Lose that round: the read waits. Nothing else can confirm it.
//! c.net.clear();
//! c.settle();
//! assert!(c.reads.is_empty());
//!
//! // The next heartbeat round reaches the followers. Their answers confirm it.
//! c.tick();
//! c.tick();
//! assert_eq!(c.reads, vec![(leader, 7, commit)]);
//! assert!(c.nodes[&leader].status().applied >= commit);
//! assert_eq!(c.kv[&leader]["x"], "1"); // the read's answer
//!
//! // A follower's read goes through the leader and is served at the follower.
//! let f = c.with_role(Role::Follower)[0];
//! c.node(f).read_index(8).unwrap();
//! c.settle();
//! assert_eq!(c.reads.last(), Some(&(f, 8, commit)));
//! assert!(c.nodes[&f].status().applied >= commit);
//! assert_eq!(c.kv[&f]["x"], "1");
//! # }
//! ```
//!
//! ## 4. A snapshot
//!
//! The log cannot grow forever. Once the state machine has applied an index, the
//! driver can serialize its state and call
//! [`compact(index, data)`](crate::RaftNode::compact). The node drops its log up to
//! that index and asks, in a `Persist` request, for the snapshot to be stored.
//!
//! A follower that needs entries the leader has dropped gets the snapshot instead.
//! The leader emits [`Effect::SendSnapshotChunk`](crate::Effect::SendSnapshotChunk)
//! effects. The core keeps no snapshot bytes, so the driver reads each chunk from
//! the leader's disk and sends it, with a CRC32C of the whole snapshot. (If the disk
//! no longer holds that snapshot, the driver calls
//! [`snapshot_unavailable`](crate::RaftNode::snapshot_unavailable) instead.) The
//! follower puts the chunks together and checks the CRC. Then it asks for the
//! snapshot to be stored, hands it to its state machine with
//! [`Apply::Snapshot`](crate::Apply::Snapshot), and tells the leader. The leader
//! goes on with the entries after the snapshot.
//!
//! ```
//! # include!("tutorial/driver.rs");
//! # fn main() {
//! let mut c = Cluster::new();
//! let leader = c.elect();
//!
//! // Cut a follower off: it stays out of the cluster for a while, and every
//! // message to it is lost.
//! let f = c.with_role(Role::Follower)[0];
//! let lagging = c.nodes.remove(&f).unwrap();
//! for command in ["a=apple", "b=banana", "c=cherry"] {
//!     c.node(leader).propose(command.as_bytes().into()).unwrap();
//! }
//! c.settle();
//!
//! // Snapshot the leader's state machine at its applied index.
//! let applied = c.nodes[&leader].status().applied;
//! assert_eq!(applied, LogIndex(4)); // the no-op and three commands
//! let data: String = c.kv[&leader].iter().map(|(k, v)| format!("{k}={v}\n")).collect();
//! c.node(leader).compact(applied, data.as_bytes().into()).unwrap();
//! c.settle(); // the Persist request stores the snapshot
//!
//! let snap = c.nodes[&leader].status().snapshot;
//! assert_eq!(snap.index, applied);
//! assert!(c.nodes[&leader].entry(applied).is_none()); // the log before it is gone
//! assert_eq!(c.disks[&leader].snapshot.as_ref().unwrap().meta, snap);
//! assert!(c.disks[&leader].entries.is_empty());
//!
//! // The follower comes back. It holds only the no-op at index 1, and the leader
//! // no longer has entries 2 to 4. Only the snapshot can help.
//! c.nodes.insert(f, lagging);
//! assert_eq!(c.nodes[&f].status().last_index, LogIndex(1));
//! c.delivered.clear();
//! for _ in 0..10 {
//!     c.tick();
//! }
//!
//! // It arrived in chunks of 8 bytes (the config's `snapshot_chunk_bytes`). Raft
//! // stored the state machine's bytes followed by the membership in force at the
//! // snapshot's index, and sends them together.
//! let stored = c.disks[&leader].snapshot.as_ref().unwrap().data.len();
//! assert!(stored > data.len());
//! let chunks = c.delivered.iter().filter(|d| **d == (f, "Snapshot")).count();
//! assert_eq!(chunks, stored.div_ceil(8));
//! let s = c.nodes[&f].status();
//! assert_eq!((s.snapshot, s.applied), (snap, applied));
//! assert_eq!(c.disks[&f].snapshot.as_ref().unwrap().meta, snap);
//! assert_eq!(c.kv[&f], c.kv[&leader]);
//! assert_eq!(c.kv[&f]["c"], "cherry");
//!
//! // New entries follow the snapshot as usual.
//! let p = c.node(leader).propose("d=date".as_bytes().into()).unwrap();
//! c.settle();
//! assert_eq!(c.nodes[&f].status().applied, p.index);
//! assert_eq!(c.kv[&f]["d"], "date");
//!
//! // A restart begins with the stored snapshot, then replays the log after it.
//! c.nodes.remove(&f);
//! c.kv.remove(&f);
//! let node = RaftNode::restart(config(f), c.disks[&f].recover()).unwrap();
//! assert_eq!(node.status().snapshot, snap);
//! c.nodes.insert(f, node);
//! c.settle();
//! assert_eq!(c.kv[&f]["c"], "cherry");
//! # }
//! ```
