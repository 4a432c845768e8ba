//! The Synod member: the Raft core driven over real sockets and a real WAL, the etcd v3
//! gRPC API (KV, Cluster, Maintenance) on the client port, and admin HTTP.
//!
//! Layout of a data dir: `member/identity` (cluster and member id, checked at every
//! start), `member/wal/` (WAL segments and snapshot files, see `docs/storage.md`).
#![deny(missing_docs)]

pub mod admin;
pub mod api;
pub mod cmd;
pub mod config;
pub mod convert;
pub mod corked;
pub mod driver;
pub mod inbox;
pub mod kv_svc;
pub mod maint_svc;
pub mod peer;
pub mod ports;
pub mod slow;
pub mod snapshotter;
pub mod state;
pub mod wire;

use crate::api::Api;
use crate::config::{ConfigError, ServerConfig};
use crate::driver::{Driver, DriverOptions, Input};
use crate::state::{NodeStatus, Shared};
use etcdpb::etcdserverpb as pb;
use raft::{Config, Role};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use storage::{DiskStorage, FaultyBackend, FileBackend, StorageOptions};
use tokio::net::TcpListener;

/// gRPC framing overhead allowed above `--max-request-bytes` (as etcd does).
const GRPC_OVERHEAD: usize = 512 << 10;

/// Checks (or writes, on first start) the data dir's identity.
fn check_identity(dir: &Path, cluster_id: u64, member_id: u64) -> Result<(), ConfigError> {
    let path = dir.join("identity");
    let want = format!("cluster_id={cluster_id:x}\nmember_id={member_id:x}\n");
    match std::fs::read_to_string(&path) {
        Ok(found) if found == want => Ok(()),
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
    let queues = peer::start_senders(shared, client_urls);
    handle.spawn(peer::serve(listener, shared.clone(), driver));
    Ok((rt, queues))
}

/// Runs a member until `shutdown` resolves; returns once the driver has stopped.
pub async fn run(
    cfg: ServerConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ConfigError> {
    cfg.validate()?;
    let me = cfg.member_id()?;
    let cluster_id = cfg.cluster_id();
    let member_dir = cfg.data_dir.join("member");
    let wal_dir = member_dir.join("wal");
    std::fs::create_dir_all(&wal_dir)
        .map_err(|e| ConfigError(format!("{}: {e}", wal_dir.display())))?;
    check_identity(&member_dir, cluster_id, me.0)?;
    let backend = FileBackend::open(&wal_dir)
        .map_err(|e| ConfigError(format!("{}: {e}", wal_dir.display())))?;
    if cfg.disk_faults.is_active() {
        eprintln!(
            "warn: injecting disk faults {:?} (testing only)",
            cfg.disk_faults
        );
    }
    let backend = FaultyBackend::new(backend, cfg.disk_faults);
    let (storage, recovered) = DiskStorage::open(backend, StorageOptions::default())
        .map_err(|e| ConfigError(format!("refusing to start: {e}")))?;
    eprintln!(
        "info: member {} ({:x}) of cluster {cluster_id:x}: recovered term {}, commit {}, snapshot at {}, {} log entries",
        cfg.name,
        me.0,
        recovered.hard_state.term.0,
        recovered.hard_state.commit.0,
        recovered.snapshot.as_ref().map_or(0, |s| s.meta.index.0),
        recovered.entries.len()
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
        members: cfg.members(),
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
        #[cfg(feature = "planted-bugs")]
        planted_bug: cfg.planted_bug,
    });
    let mut raft_cfg = Config::new(me, shared.members.iter().map(|m| m.id).collect());
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
            raft: raft_cfg,
            tick,
            snapshot_count: cfg.snapshot_count,
            snapshot_dir: wal_dir.clone(),
            inputs: driver_tx.clone(),
            #[cfg(feature = "planted-bugs")]
            planted_bug: cfg.planted_bug,
        },
        storage,
        recovered,
        shared.clone(),
        Box::new(queues),
    )
    .map_err(|e| ConfigError(format!("refusing to start: {e}")))?;
    let driver_thread = std::thread::Builder::new()
        .name("raft".into())
        .spawn(move || driver.run(driver_rx))
        .map_err(|e| ConfigError(format!("cannot start the raft thread: {e}")))?;
    let api = Api::new(shared.clone(), driver_tx.clone());
    if let Some(l) = admin_l {
        tokio::spawn(admin::serve(l, api.clone()));
    }
    eprintln!(
        "info: serving clients on {}, peers on {}",
        cfg.listen_client, cfg.listen_peer
    );
    let limit = cfg.max_request_bytes + GRPC_OVERHEAD;
    // The builder's tcp_nodelay does not reach sockets we accept ourselves: set it per
    // stream, or every response's trailers wait for the client's delayed ACK (~40 ms).
    // Writes are corked (see `corked`): the answers completed in one scheduler pass
    // leave in one write per connection.
    let incoming = tokio_stream::StreamExt::map(
        tokio_stream::wrappers::TcpListenerStream::new(client_l),
        |s| {
            s.map(|s| {
                let _ = s.set_nodelay(true);
                corked::Corked::new(s)
            })
        },
    );
    let served = tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .add_service(
            pb::kv_server::KvServer::new(kv_svc::KvService::new(api.clone()))
                .max_decoding_message_size(limit),
        )
        .add_service(pb::cluster_server::ClusterServer::new(
            maint_svc::ClusterService::new(api.clone()),
        ))
        .add_service(
            pb::maintenance_server::MaintenanceServer::new(maint_svc::MaintenanceService::new(
                api.clone(),
            ))
            .max_decoding_message_size(limit),
        )
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await;
    let _ = driver_tx.send(Input::Shutdown);
    let _ = tokio::task::spawn_blocking(move || driver_thread.join()).await;
    drop(peer_rt);
    eprintln!("info: member {} stopped", cfg.name);
    served.map_err(|e| ConfigError(format!("client server failed: {e}")))
}
