//! The Synod member: the Raft core driven over real sockets and a real WAL, the etcd v3
//! gRPC API (KV, Cluster, Maintenance) on the client port, and admin HTTP.
//!
//! Layout of a data dir: `member/identity` (cluster and member id, checked at every
//! start), `member/wal/` (WAL segments and snapshot files, see `docs/storage.md`).
#![deny(missing_docs)]

pub mod admin;
pub mod api;
pub mod backup;
pub mod change;
pub mod client_port;
pub mod config;
pub mod convert;
pub mod corked;
pub mod defrag;
pub mod driver;
pub mod election_svc;
pub mod grpc_metrics;
pub mod inbox;
pub mod join;
pub mod kv_svc;
pub mod lease_svc;
pub mod listener;
pub mod lock_svc;
pub mod machine;
pub mod maint_svc;
pub mod members;
pub mod peer;
pub mod prom;
pub mod raft_engine;
pub mod recipe;
pub mod restore;
pub mod slow;
pub mod snapshotter;
pub mod state;
pub mod watch_hub;
pub mod watch_svc;
pub mod watch_wire;
pub mod wire;

use crate::api::Api;
use crate::config::{ConfigError, ServerConfig};
use crate::driver::{Driver, DriverOptions, Input};
use crate::state::{NodeStatus, Shared};
use engine::Role;
use etcdpb::etcdserverpb as pb;
use raft_engine::EngineConfig;
use raft_storage::DiskStorage;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use storage::{FaultyBackend, FileBackend, StorageOptions};
use tokio::net::TcpListener;

/// gRPC framing overhead allowed above `--max-request-bytes` (as etcd does).
const GRPC_OVERHEAD: usize = 512 << 10;

/// The data dir's format, the same number as the WAL's segment layout
/// ([`storage::WAL_FORMAT`]): 4 since Raft's log holds membership changes and its
/// snapshots end with the membership (3: every segment starts with a header naming the
/// engine; 2 had Raft's records and no header; 1 also held protobuf commands).
const DATA_FORMAT: u32 = storage::WAL_FORMAT;

/// Checks (or writes, on first start) the data dir's identity and format.
pub(crate) fn check_identity(
    dir: &Path,
    cluster_id: u64,
    member_id: u64,
) -> Result<(), ConfigError> {
    let path = dir.join("identity");
    let want =
        format!("cluster_id={cluster_id:x}\nmember_id={member_id:x}\nformat={DATA_FORMAT}\n");
    match std::fs::read_to_string(&path) {
        Ok(found) if found == want => Ok(()),
        Ok(found) if !found.contains(&format!("format={DATA_FORMAT}\n")) => {
            let had = found
                .lines()
                .find_map(|l| l.strip_prefix("format="))
                .unwrap_or("1");
            Err(ConfigError(format!(
                "{} holds data dir format {had}; this version of synod reads format \
                 {DATA_FORMAT} only (see docs/storage.md): start it on an empty data dir",
                dir.display()
            )))
        }
        Ok(found) => Err(ConfigError(format!(
            "{} belongs to another member or cluster ({}), not {}",
            path.display(),
            found.trim().replace('\n', " "),
            want.trim().replace('\n', " ")
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let tmp = dir.join("identity.tmp");
            let io = |e: std::io::Error| ConfigError(format!("{}: {e}", path.display()));
            std::fs::write(&tmp, &want).map_err(io)?;
            std::fs::File::open(&tmp)
                .and_then(|f| f.sync_all())
                .map_err(io)?;
            std::fs::rename(&tmp, &path).map_err(io)?;
            std::fs::File::open(dir)
                .and_then(|f| f.sync_all())
                .map_err(io)
        }
        Err(e) => Err(ConfigError(format!("{}: {e}", path.display()))),
    }
}

async fn bind(what: &str, addr: std::net::SocketAddr) -> Result<TcpListener, ConfigError> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| ConfigError(format!("cannot listen for {what} on {addr}: {e}")))
}

/// The peer runtime; stopped without blocking when dropped, which may happen inside the
/// client runtime (dropping a runtime there directly panics), on any early return.
struct PeerRuntime(Option<tokio::runtime::Runtime>);

impl Drop for PeerRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// Raft's peer traffic (receiving, and sending what the driver could not write at once)
/// runs on a runtime and thread of its own: however busy the client runtime is, it never
/// holds back heartbeats and appends.
fn start_peer_runtime(
    listener: std::net::TcpListener,
    shared: &Arc<Shared>,
    client_urls: &[String],
    driver: inbox::InboxSender,
) -> Result<(PeerRuntime, peer::PeerQueues), ConfigError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("peers")
        .enable_all()
        .build()
        .map_err(|e| ConfigError(format!("cannot start the peer runtime: {e}")))?;
    let handle = rt.handle().clone();
    let rt = PeerRuntime(Some(rt));
    let _in_rt = handle.enter();
    let listener = TcpListener::from_std(listener)
        .map_err(|e| ConfigError(format!("cannot listen for peers: {e}")))?;
    let queues = peer::start_senders(shared, client_urls, driver.clone());
    handle.spawn(peer::serve(listener, shared.clone(), driver));
    Ok((rt, queues))
}

/// Serves clients until `stop`: admin HTTP on the metrics listener (if any), gRPC and
/// admin HTTP on the client listener, each holding at most `--max-client-connections`.
async fn serve_clients(
    cfg: &ServerConfig,
    client_l: TcpListener,
    admin_l: Option<TcpListener>,
    api: Api,
    stop: impl std::future::Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    let (limits, metrics) = (cfg.limits, &api.shared.metrics);
    let slots = Some(limits.max_connections);
    if let Some(l) = admin_l {
        let l = listener::Listener::new(l, "metrics", slots, metrics);
        tokio::spawn(admin::serve(l, api.clone(), limits.header_timeout));
    }
    // gRPC and admin HTTP share the client port: the acceptor hands tonic the HTTP/2
    // connections through this channel.
    let (grpc_tx, grpc_rx) = tokio::sync::mpsc::channel(64);
    let client_l = listener::Listener::new(client_l, "client", slots, metrics);
    let accept = client_port::accept(client_l, grpc_tx, api.clone(), limits.header_timeout);
    tokio::spawn(accept);
    let incoming = tokio_stream::wrappers::ReceiverStream::new(grpc_rx);
    let counted = grpc_metrics::GrpcMetricsLayer::new(
        metrics.grpc_started.clone(),
        metrics.grpc_handled.clone(),
    );
    let limit = cfg.max_request_bytes + GRPC_OVERHEAD;
    tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .max_concurrent_streams(limits.max_concurrent_streams)
        .layer(counted)
        .add_service(
            pb::kv_server::KvServer::new(kv_svc::KvService::new(api.clone()))
                .max_decoding_message_size(limit),
        )
        .add_service(watch_wire::WatchRoute::new(watch_svc::WatchService::new(
            api.clone(),
        )))
        .add_service(pb::lease_server::LeaseServer::new(
            lease_svc::LeaseService::new(api.clone()),
        ))
        .add_service(etcdpb::v3lockpb::lock_server::LockServer::new(
            lock_svc::LockService::new(api.clone()),
        ))
        .add_service(etcdpb::v3electionpb::election_server::ElectionServer::new(
            election_svc::ElectionService::new(api.clone()),
        ))
        .add_service(pb::cluster_server::ClusterServer::new(
            maint_svc::ClusterService::new(api.clone()),
        ))
        .add_service(
            pb::maintenance_server::MaintenanceServer::new(maint_svc::MaintenanceService::new(api))
                .max_decoding_message_size(limit),
        )
        .serve_with_incoming_shutdown(incoming, stop)
        .await
}

/// Why a member stopped other than by request.
#[derive(Debug)]
pub enum RunError {
    /// It could not start (bad configuration, a data dir it refuses, a port in use).
    Start(ConfigError),
    /// An environmental failure stopped it (a failed fsync, corrupt data): the caller
    /// must exit; nothing is retried.
    Fatal(engine::Fatal),
}

impl From<ConfigError> for RunError {
    fn from(e: ConfigError) -> RunError {
        RunError::Start(e)
    }
}

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunError::Start(e) => write!(f, "{e}"),
            RunError::Fatal(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for RunError {}

/// Runs a member until `shutdown` resolves (or a fatal failure stops its driver);
/// returns once the driver has stopped.
pub async fn run(
    cfg: ServerConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    cfg.validate()?;
    let member_dir = cfg.data_dir.join("member");
    let wal_dir = member_dir.join("wal");
    std::fs::create_dir_all(&wal_dir)
        .map_err(|e| ConfigError(format!("{}: {e}", wal_dir.display())))?;
    let (me, cluster_id, dial) = join::identify(&cfg, &member_dir).await?;
    check_identity(&member_dir, cluster_id, me.0)?;
    let backend = FileBackend::open(&wal_dir)
        .map_err(|e| ConfigError(format!("{}: {e}", wal_dir.display())))?;
    if cfg.disk_faults.is_active() {
        tracing::warn!(faults = ?cfg.disk_faults, "injecting disk faults (testing only)");
    }
    let backend = FaultyBackend::new(backend, cfg.disk_faults);
    let (storage, recovered) = DiskStorage::open(backend, StorageOptions::default())
        .map_err(|e| ConfigError(format!("refusing to start: {e}")))?;
    tracing::info!(
        event = "recovered",
        member = %cfg.name,
        member_id = %format_args!("{:x}", me.0),
        cluster_id = %format_args!("{cluster_id:x}"),
        term = recovered.hard_state.term.0,
        commit = recovered.hard_state.commit.0,
        snapshot = recovered.snapshot.as_ref().map_or(0, |s| s.meta.index.0),
        entries = recovered.entries.len(),
        "recovered durable state"
    );
    let client_l = bind("clients", cfg.listen_client).await?;
    let peer_l = std::net::TcpListener::bind(cfg.listen_peer)
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .map_err(|e| {
            ConfigError(format!(
                "cannot listen for peers on {}: {e}",
                cfg.listen_peer
            ))
        })?;
    let admin_l = match cfg.listen_metrics {
        Some(a) => Some(bind("metrics", a).await?),
        None => None,
    };
    let (status_tx, _) = tokio::sync::watch::channel(NodeStatus {
        role: Role::Follower,
        role_detail: "follower",
        term: recovered.hard_state.term.0,
        leader: None,
        commit: 0,
        applied: 0,
        last_index: 0,
        snapshot_index: 0,
        compacting: false,
        peer_match: BTreeMap::new(),
    });
    let shared = Arc::new(Shared {
        member_id: me,
        cluster_id,
        name: cfg.name.clone(),
        members: parking_lot::RwLock::new(dial),
        founders: cfg.members(),
        peer_names: Default::default(),
        removed: Default::default(),
        store_generation: Default::default(),
        wal_dir: wal_dir.clone(),
        client_urls: std::sync::Mutex::new(BTreeMap::from([(
            me,
            cfg.advertise_client_urls.clone(),
        )])),
        store: parking_lot::RwLock::new(kv::Store::new()),
        status: status_tx,
        metrics: Default::default(),
        max_request_bytes: cfg.max_request_bytes,
        quota_backend_bytes: cfg.quota_backend_bytes,
        election: cfg.election,
        health: std::sync::Mutex::new(state::PeerHealth::new(
            cfg.members().iter().map(|m| m.id).filter(|id| *id != me),
            detector::PhiConfig {
                threshold: cfg.phi_threshold,
                window: cfg.phi_window,
                // The pings' cadence; a σ below it would suspect a peer for one
                // heartbeat's lateness.
                min_std_dev_us: cfg.heartbeat.as_micros() as u64,
                acceptable_pause_us: 0,
                expected_interval_us: cfg.heartbeat.as_micros() as u64,
            },
        )),
        watch_hub: Default::default(),
        lessor: parking_lot::Mutex::new(lessor(&cfg)),
        #[cfg(feature = "planted-bugs")]
        planted_bug: cfg.planted_bug,
        #[cfg(feature = "planted-bugs")]
        planted_forward: Default::default(),
    });
    // Founders start from the founding membership; a member that joined learns its
    // group from its log, or from the leader.
    let founders: Vec<_> = shared.founders.iter().map(|m| m.id).collect();
    let voters = if founders.contains(&me) {
        founders
    } else {
        Vec::new()
    };
    let mut raft_cfg = EngineConfig::new(me, voters);
    raft_cfg.contexts = (shared.founders.iter())
        .map(|m| (m.id, members::context(&m.name, &m.peer_urls)))
        .collect();
    let tick = cfg.tick();
    raft_cfg.heartbeat_interval_ticks = 2;
    raft_cfg.election_timeout_ticks = (cfg.election.as_millis() / tick.as_millis().max(1)) as u64;
    raft_cfg.seed = me.0
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
    let (driver_tx, driver_rx) = inbox::channel()
        .map_err(|e| ConfigError(format!("cannot set up the driver's inbox: {e}")))?;
    let (peer_rt, queues) = start_peer_runtime(
        peer_l,
        &shared,
        &cfg.advertise_client_urls,
        driver_tx.clone(),
    )?;
    let driver = Driver::new(
        DriverOptions {
            id_seed: raft_cfg.seed,
            engine: raft_cfg,
            tick,
            snapshot_count: cfg.snapshot_count,
            snapshot_dir: wal_dir.clone(),
            inputs: driver_tx.clone(),
            peer_dial: cfg.peer_dial.clone(),
            #[cfg(feature = "planted-bugs")]
            planted_bug: cfg.planted_bug,
        },
        storage,
        recovered,
        shared.clone(),
        Box::new(queues),
    )
    .map_err(|e| ConfigError(format!("refusing to start: {e}")))?;
    // The driver thread reports a fatal failure; serving stops then too.
    let (fatal_tx, fatal_rx) = tokio::sync::oneshot::channel::<engine::Fatal>();
    let driver_thread = std::thread::Builder::new()
        .name("driver".into())
        .spawn(move || {
            if let Err(e) = driver.run(driver_rx) {
                let _ = fatal_tx.send(e);
            }
        })
        .map_err(|e| ConfigError(format!("cannot start the driver thread: {e}")))?;
    let fatal = Arc::new(std::sync::Mutex::new(None));
    let api = Api::new(shared.clone(), driver_tx.clone());
    let stop = {
        let (fatal, api) = (fatal.clone(), api.clone());
        async move {
            tokio::select! {
                () = shutdown => hand_over(&api).await,
                Ok(e) = fatal_rx => *fatal.lock().unwrap() = Some(e),
            }
        }
    };
    tracing::info!(
        event = "serving",
        clients = %cfg.listen_client,
        peers = %cfg.listen_peer,
        "serving clients and peers"
    );
    // Once asked to stop, requests in flight get a grace to finish; streams that stay
    // open (watches, keep-alives) do not hold the member up beyond it.
    let (stopping_tx, mut stopping) = tokio::sync::watch::channel(false);
    let stop = async move {
        stop.await;
        let _ = stopping_tx.send(true);
    };
    let served = serve_clients(&cfg, client_l, admin_l, api, stop);
    let grace = async move {
        let _ = stopping.wait_for(|s| *s).await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    let served = tokio::select! {
        r = served => r,
        () = grace => Ok(()),
    };
    let _ = driver_tx.send(Input::Shutdown);
    let _ = tokio::task::spawn_blocking(move || driver_thread.join()).await;
    drop(peer_rt);
    tracing::info!(event = "stopped", member = %cfg.name, "member stopped");
    if let Some(e) = fatal.lock().unwrap().take() {
        return Err(RunError::Fatal(e));
    }
    served.map_err(|e| ConfigError(format!("client server failed: {e}")).into())
}

/// How long requests in flight may take to finish once a member is asked to stop.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Asked to stop, a leader first hands leadership to a follower (still serving
/// clients meanwhile), so that its departure costs the cluster no election timeout; it
/// stops anyway if that does not happen within two.
async fn hand_over(api: &Api) {
    let Some(to) = successor(&api.shared) else {
        return;
    };
    match api.move_leader(to, api.shared.election * 2).await {
        Ok(()) => {
            tracing::info!(event = "handed_over", to = %to, "handed leadership over before stopping")
        }
        Err(e) => tracing::warn!(
            event = "hand_over_failed",
            to = %to,
            error = %e.message(),
            "could not hand leadership over before stopping"
        ),
    }
}

/// The follower a stopping leader hands over to: the most caught-up of those its
/// failure detector holds alive (a stopped peer may have caught up before it died).
fn successor(shared: &state::Shared) -> Option<engine::NodeId> {
    let alive: Vec<engine::NodeId> = shared
        .health
        .lock()
        .unwrap()
        .suspicions()
        .into_iter()
        .filter(|s| s.verdict == detector::Verdict::Alive)
        .map(|s| s.id)
        .collect();
    let s = shared.status.borrow();
    if s.leader != Some(shared.member_id) {
        return None;
    }
    s.peer_match
        .iter()
        .map(|(p, m)| (engine::NodeId(*p), *m))
        .filter(|(p, _)| alive.contains(p))
        .max_by_key(|(_, m)| *m)
        .map(|(p, _)| p)
}

/// How often the leader checkpoints the remaining TTLs. A new leader resumes each
/// lease from its last checkpoint (plus one election timeout of grace), so a leader
/// change lengthens a lease by at most this and one election timeout, and never
/// shortens it.
pub const LEASE_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(5);

/// The lease clock's settings: the member's tick, checkpoints every
/// [`LEASE_CHECKPOINT_INTERVAL`], an election timeout of grace on promotion, and an
/// expiry revoke proposed again after 3 s if it has not applied.
fn lessor_options(cfg: &ServerConfig) -> kv::LessorOptions {
    let tick_ms = cfg.tick().as_millis().max(1) as u64;
    let ticks = |d: Duration| (d.as_millis() as u64).div_ceil(tick_ms).max(1);
    kv::LessorOptions {
        tick_ms,
        checkpoint_interval_ticks: ticks(LEASE_CHECKPOINT_INTERVAL),
        promote_extend_ticks: ticks(cfg.election),
        revoke_retry_ticks: ticks(Duration::from_secs(3)),
    }
}

/// The member's lease clock (with the planted bug, if it is the lessor's).
fn lessor(cfg: &ServerConfig) -> kv::Lessor {
    #[allow(unused_mut)]
    let mut lessor = kv::Lessor::new(lessor_options(cfg));
    #[cfg(feature = "planted-bugs")]
    if cfg.planted_bug == Some(config::ServerBug::FollowerLeaseExpiry) {
        lessor.plant(Some(kv::KvBug::FollowerLeaseExpiry));
    }
    lessor
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_data_dir_of_another_format_is_refused_with_a_message_that_says_so() {
        let dir = std::env::temp_dir().join(format!("synod-identity-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        check_identity(&dir, 7, 9).unwrap();
        check_identity(&dir, 7, 9).unwrap();
        let other = check_identity(&dir, 7, 10).unwrap_err().0;
        assert!(other.contains("another member or cluster"), "{other}");
        std::fs::write(dir.join("identity"), "cluster_id=7\nmember_id=9\n").unwrap();
        let old = check_identity(&dir, 7, 9).unwrap_err().0;
        assert!(old.contains("data dir format 1; this version"), "{old}");
        std::fs::write(
            dir.join("identity"),
            "cluster_id=7\nmember_id=9\nformat=3\n",
        )
        .unwrap();
        let old = check_identity(&dir, 7, 9).unwrap_err().0;
        assert!(
            old.contains("holds data dir format 3; this version of synod reads format 4 only"),
            "{old}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
