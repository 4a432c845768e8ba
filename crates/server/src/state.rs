//! State shared between the Raft driver thread and the network tasks.

use crate::config::MemberInfo;
use engine::{NodeId, Role};
use kv::Store;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;
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

/// Counters and histograms for `/metrics` (the families' names and help are in
/// `prom.rs`, which builds them).
#[derive(Debug)]
pub struct Metrics {
    /// WAL fdatasync latency (`etcd_disk_wal_fsync_duration_seconds`).
    pub wal_fsync_seconds: prometheus::Histogram,
    /// A snapshot's commit to disk (`etcd_disk_backend_commit_duration_seconds`).
    pub backend_commit_seconds: prometheus::Histogram,
    /// Writes proposed through this member and not answered yet
    /// (`etcd_server_proposals_pending`).
    pub proposals_pending: prometheus::IntGauge,
    /// Bytes written to each peer's connection, label `To`.
    pub peer_sent_bytes: prometheus::IntCounterVec,
    /// Bytes read from each peer's connection, label `From`.
    pub peer_received_bytes: prometheus::IntCounterVec,
    /// Ping to pong round trips per peer, label `To`.
    pub peer_round_trip_seconds: prometheus::HistogramVec,
    /// gRPC calls started, by type, service and method.
    pub grpc_started: prometheus::IntCounterVec,
    /// gRPC calls finished, by type, service, method and status code.
    pub grpc_handled: prometheus::IntCounterVec,
    /// Failed accepts per listener.
    pub accept_errors: prometheus::IntCounterVec,
    /// Connections open per listener.
    pub listener_connections: prometheus::IntGaugeVec,
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

    /// The label of a member in per-peer families (its id in hex, as etcd's).
    pub fn peer_label(id: NodeId) -> String {
        format!("{:x}", id.0)
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
    /// Every member of the membership in force (the driver updates it).
    pub members: parking_lot::RwLock<Vec<MemberInfo>>,
    /// The founding members, from `--initial-cluster`: names and URLs of members
    /// whose context the membership does not carry.
    pub founders: Vec<MemberInfo>,
    /// Members removed from the cluster (while this member ran): their connections
    /// are answered with [`crate::peer::REMOVED_NOTICE`].
    pub removed: Mutex<std::collections::BTreeSet<NodeId>>,
    /// The member's WAL and snapshot directory.
    pub wal_dir: std::path::PathBuf,
    /// Bumped each time a snapshot from the leader replaces the store (a reader going
    /// through it in pieces must start over).
    pub store_generation: AtomicU64,
    /// Names peers gave in their hellos.
    pub peer_names: Mutex<BTreeMap<NodeId, String>>,
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
    /// The failure detector, per peer, fed by the transport's pings.
    pub health: Mutex<PeerHealth>,
    /// Every applied revision's events, for this member's watch streams.
    pub watch_hub: crate::watch_hub::WatchHub,
    /// The lease clock: expiry and remaining TTLs while this member leads.
    pub lessor: parking_lot::Mutex<kv::Lessor>,
    /// A deliberately planted bug.
    #[cfg(feature = "planted-bugs")]
    pub planted_bug: Option<crate::config::ServerBug>,
    /// What a follower's lessor asks to order under `follower-lease-expiry`, for the
    /// driver to hand to the leader.
    #[cfg(feature = "planted-bugs")]
    pub planted_forward: Mutex<Vec<Vec<u8>>>,
}

/// Each peer's φ-accrual detector, on a clock that starts with the member.
#[derive(Debug)]
pub struct PeerHealth {
    origin: Instant,
    /// The threshold the verdicts use.
    pub threshold: f64,
    /// The detectors' settings (for peers that join).
    pub cfg: detector::PhiConfig,
    peers: BTreeMap<NodeId, detector::PhiDetector>,
}

/// One peer's suspicion level, as `/status` and `/metrics` show it.
#[derive(Clone, Debug, PartialEq)]
pub struct PeerSuspicion {
    /// The peer.
    pub id: NodeId,
    /// φ now.
    pub phi: f64,
    /// What φ means against the threshold.
    pub verdict: detector::Verdict,
    /// Milliseconds since its last ping (none yet: `None`).
    pub silent_ms: Option<u64>,
}

impl PeerHealth {
    /// Detectors for `peers`, heard from by nobody yet.
    pub fn new(peers: impl IntoIterator<Item = NodeId>, cfg: detector::PhiConfig) -> PeerHealth {
        PeerHealth {
            origin: Instant::now(),
            threshold: cfg.threshold,
            cfg,
            peers: peers
                .into_iter()
                .map(|p| (p, detector::PhiDetector::new(cfg)))
                .collect(),
        }
    }

    /// Tracks exactly `peers`: new ones start unheard of, gone ones are dropped.
    pub fn set_peers(&mut self, peers: &[NodeId], cfg: detector::PhiConfig) {
        self.peers.retain(|id, _| peers.contains(id));
        for p in peers {
            self.peers
                .entry(*p)
                .or_insert_with(|| detector::PhiDetector::new(cfg));
        }
    }

    /// Whether `peer` is alive by the detector's verdict.
    pub fn alive(&self, peer: NodeId) -> bool {
        let now = self.now_us();
        self.peers
            .get(&peer)
            .is_some_and(|d| d.verdict(now) == detector::Verdict::Alive)
    }

    fn now_us(&self) -> u64 {
        self.origin.elapsed().as_micros() as u64
    }

    /// A ping from `peer` arrived now.
    pub fn heartbeat(&mut self, peer: NodeId) {
        let now = self.now_us();
        if let Some(d) = self.peers.get_mut(&peer) {
            d.heartbeat(now);
        }
    }

    /// Every peer's suspicion level now.
    pub fn suspicions(&self) -> Vec<PeerSuspicion> {
        let now = self.now_us();
        self.peers
            .iter()
            .map(|(id, d)| PeerSuspicion {
                id: *id,
                phi: d.phi(now),
                verdict: d.verdict(now),
                silent_ms: d.last_heartbeat().map(|t| now.saturating_sub(t) / 1_000),
            })
            .collect()
    }
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

    /// Bytes this member's data takes on disk (WAL segments and snapshot files):
    /// `Status.dbSize`.
    pub fn disk_bytes(&self) -> u64 {
        let Ok(dir) = std::fs::read_dir(&self.wal_dir) else {
            return 0;
        };
        let files = dir.filter_map(|e| e.ok()?.metadata().ok());
        files.filter(|m| m.is_file()).map(|m| m.len()).sum()
    }

    /// Every member now, named.
    pub fn members(&self) -> Vec<MemberInfo> {
        self.named(self.members.read().clone())
    }

    /// `members` with the names their contexts lack filled in: this member's own, and
    /// those peers gave in their hellos (a member added by `MemberAdd` has no name in
    /// the membership; etcd learns it when the member first runs, and so do we).
    pub fn named(&self, mut members: Vec<MemberInfo>) -> Vec<MemberInfo> {
        let heard = self.peer_names.lock().unwrap();
        for m in members.iter_mut().filter(|m| m.name.is_empty()) {
            if m.id == self.member_id {
                m.name = self.name.clone();
            } else if let Some(n) = heard.get(&m.id) {
                m.name = n.clone();
            }
        }
        members
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
