//! State shared between the Raft driver thread and the network tasks.

use crate::config::MemberInfo;
use engine::{NodeId, Role};
use kv::Store;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use tokio::sync::watch;

/// What the driver publishes after each round.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeStatus {
    /// Current role.
    pub role: Role,
    /// The engine's own name for it (`pre-candidate`, …).
    pub role_detail: &'static str,
    /// Current term.
    pub term: u64,
    /// Known leader.
    pub leader: Option<NodeId>,
    /// Commit index.
    pub commit: u64,
    /// Applied index.
    pub applied: u64,
    /// Last log index.
    pub last_index: u64,
    /// Compaction point.
    pub snapshot_index: u64,
    /// The store is still dropping the history of a Compact.
    pub compacting: bool,
    /// Each peer's match index, as the leader sees it.
    pub peer_match: BTreeMap<u64, u64>,
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct Metrics {
    /// WAL fdatasyncs.
    pub wal_fsyncs: AtomicU64,
    /// Total microseconds spent in WAL syncs.
    pub wal_fsync_micros: AtomicU64,
    /// Persist requests written.
    pub wal_writes: AtomicU64,
    /// Proposals accepted by the leader.
    pub proposals: AtomicU64,
    /// Proposals that failed (not leader, leader changed, timeout).
    pub proposals_failed: AtomicU64,
    /// Entries applied.
    pub applied_entries: AtomicU64,
    /// Snapshots taken.
    pub snapshots: AtomicU64,
    /// Snapshots received from a leader and installed.
    pub snapshots_installed: AtomicU64,
    /// Peer messages sent.
    pub peer_sent: AtomicU64,
    /// Peer messages received.
    pub peer_received: AtomicU64,
    /// Commands forwarded by peers that failed validation (never entered the log).
    pub commands_refused: AtomicU64,
    /// Leader changes seen.
    pub leader_changes: AtomicU64,
}

impl Metrics {
    /// Adds `n` to a counter.
    pub fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }

    /// Reads a counter.
    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}

/// Everything shared.
#[derive(Debug)]
pub struct Shared {
    /// This member.
    pub member_id: NodeId,
    /// The cluster.
    pub cluster_id: u64,
    /// This member's name.
    pub name: String,
    /// Every member.
    pub members: Vec<MemberInfo>,
    /// Client URLs: our own from flags, peers' learned from their handshakes.
    pub client_urls: Mutex<BTreeMap<NodeId, Vec<String>>>,
    /// The key-value state machine (the driver writes; readers read).
    pub store: parking_lot::RwLock<Store>,
    /// Latest published status.
    pub status: watch::Sender<NodeStatus>,
    /// Counters.
    pub metrics: Metrics,
    /// Largest client request.
    pub max_request_bytes: usize,
    /// Backend quota.
    pub quota_backend_bytes: u64,
    /// Election timeout (how long a request waits for a leader).
    pub election: std::time::Duration,
    /// A deliberately planted bug.
    #[cfg(feature = "planted-bugs")]
    pub planted_bug: Option<crate::config::ServerBug>,
}

impl Shared {
    /// The latest status.
    pub fn status(&self) -> NodeStatus {
        self.status.borrow().clone()
    }

    /// Whether `bug` is planted in this member.
    #[cfg(feature = "planted-bugs")]
    pub fn bug(&self, bug: crate::config::ServerBug) -> bool {
        self.planted_bug == Some(bug)
    }

    /// Client URLs of a member, if known.
    pub fn client_urls_of(&self, id: NodeId) -> Vec<String> {
        self.client_urls
            .lock()
            .unwrap()
            .get(&id)
            .cloned()
            .unwrap_or_default()
    }
}
