//! `synod node`: one member, with etcd's flag names where the meaning is the same.

use clap::Args;
use server::config::{parse_initial_cluster, url_socket, ListenerLimits, ServerConfig};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Flags of `synod node`. Each flag with an etcd name can also be set by etcd's
/// environment variable (`ETCD_NAME`, `ETCD_INITIAL_CLUSTER`, …); a flag wins.
#[derive(Args, Debug, Clone)]
pub struct NodeArgs {
    /// Human-readable name for this member.
    #[arg(long, env = "ETCD_NAME", default_value = "default")]
    pub name: String,
    /// Path to the data directory (default: <name>.synod).
    #[arg(long, env = "ETCD_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// URL to listen on for client traffic (one http://IP:port).
    #[arg(
        long,
        env = "ETCD_LISTEN_CLIENT_URLS",
        default_value = "http://127.0.0.1:2379"
    )]
    pub listen_client_urls: String,
    /// Client URLs to advertise to the rest of the cluster (comma-separated).
    #[arg(
        long,
        env = "ETCD_ADVERTISE_CLIENT_URLS",
        default_value = "http://127.0.0.1:2379"
    )]
    pub advertise_client_urls: String,
    /// URL to listen on for peer traffic.
    #[arg(
        long,
        env = "ETCD_LISTEN_PEER_URLS",
        default_value = "http://127.0.0.1:2380"
    )]
    pub listen_peer_urls: String,
    /// This member's peer URLs to advertise.
    #[arg(
        long,
        env = "ETCD_INITIAL_ADVERTISE_PEER_URLS",
        default_value = "http://127.0.0.1:2380"
    )]
    pub initial_advertise_peer_urls: String,
    /// Initial cluster configuration: name=peer-url,...
    #[arg(
        long,
        env = "ETCD_INITIAL_CLUSTER",
        default_value = "default=http://127.0.0.1:2380"
    )]
    pub initial_cluster: String,
    /// `new` to found a cluster, `existing` to join a running one (as `etcdctl member
    /// add` prints); a member with a data dir restarts from it either way.
    #[arg(long, env = "ETCD_INITIAL_CLUSTER_STATE", default_value = "new")]
    pub initial_cluster_state: String,
    /// Initial cluster token, mixed into member and cluster ids.
    #[arg(
        long,
        env = "ETCD_INITIAL_CLUSTER_TOKEN",
        default_value = "etcd-cluster"
    )]
    pub initial_cluster_token: String,
    /// Applied entries between snapshots (and log compactions).
    #[arg(long, env = "ETCD_SNAPSHOT_COUNT", default_value_t = 100_000)]
    pub snapshot_count: u64,
    /// Time (ms) of a heartbeat interval.
    #[arg(long, env = "ETCD_HEARTBEAT_INTERVAL", default_value_t = 100)]
    pub heartbeat_interval: u64,
    /// Time (ms) for an election to time out.
    #[arg(long, env = "ETCD_ELECTION_TIMEOUT", default_value_t = 1000)]
    pub election_timeout: u64,
    /// Raise alarms when the backend exceeds this size (0 means the 2 GiB default).
    #[arg(long, env = "ETCD_QUOTA_BACKEND_BYTES", default_value_t = 0)]
    pub quota_backend_bytes: u64,
    /// Maximum client request size in bytes the server will accept.
    #[arg(long, env = "ETCD_MAX_REQUEST_BYTES", default_value_t = 1_572_864)]
    pub max_request_bytes: usize,
    /// The failure detector's suspicion level at which a peer counts as suspected
    /// (φ = −log10 of the chance it is merely late; 8 = one in 10⁸).
    #[arg(long, default_value_t = 8.0)]
    pub phi_threshold: f64,
    /// Ping intervals the failure detector remembers per peer.
    #[arg(long, default_value_t = 100)]
    pub phi_window: usize,
    /// Connections each client listener (client URL, metrics URL) holds open at once;
    /// more wait in the kernel's accept backlog until one closes.
    #[arg(long, default_value_t = ListenerLimits::default().max_connections)]
    pub max_client_connections: usize,
    /// Maximum concurrent streams that each client connection can open at a time.
    #[arg(long, env = "ETCD_MAX_CONCURRENT_STREAMS", default_value_t = ListenerLimits::default().max_concurrent_streams)]
    pub max_concurrent_streams: u32,
    /// Testing only: ms a new client connection may take to send its first bytes and an
    /// HTTP/1.1 client its request head.
    #[arg(long, hide = true, default_value_t = ListenerLimits::default().header_timeout.as_millis() as u64)]
    pub unsafe_header_timeout: u64,
    #[command(flatten)]
    pub log: crate::logging::LogArgs,
    /// URL for /health, /metrics, /status and /version.
    #[arg(long, env = "ETCD_LISTEN_METRICS_URLS")]
    pub listen_metrics_urls: Option<String>,
    /// Testing only: dial peers at these addresses (`name=host:port,...`).
    #[arg(long, hide = true, default_value = "")]
    pub unsafe_peer_dial: String,
    /// Testing only: inject disk faults (`fsync-eio=N` per mille, `tear`, `seed=S`).
    #[arg(long, hide = true, default_value = "")]
    pub unsafe_disk_faults: String,
    /// Testing only: plant a bug (stale-local-read, ack-before-fsync,
    /// follower-lease-expiry).
    #[cfg(feature = "planted-bugs")]
    #[arg(long)]
    pub planted_bug: Option<String>,
}

impl NodeArgs {
    /// The server configuration these flags describe.
    pub fn config(&self) -> Result<ServerConfig, String> {
        let e = |e: server::config::ConfigError| e.0;
        if !matches!(self.initial_cluster_state.as_str(), "new" | "existing") {
            return Err(format!(
                "--initial-cluster-state: `{}` is not one of new, existing",
                self.initial_cluster_state
            ));
        }
        let peer_urls: Vec<&str> = self.initial_advertise_peer_urls.split(',').collect();
        let initial_cluster = parse_initial_cluster(&self.initial_cluster).map_err(e)?;
        let mine = initial_cluster.iter().find(|(n, _)| *n == self.name);
        if let Some((_, url)) = mine {
            if !peer_urls.contains(&url.as_str()) {
                return Err(format!(
                    "--initial-cluster has {}={url}, but --initial-advertise-peer-urls is {}",
                    self.name, self.initial_advertise_peer_urls
                ));
            }
        }
        if !(self.phi_threshold > 0.0 && self.phi_threshold.is_finite()) || self.phi_window == 0 {
            return Err(
                "--phi-threshold must be a positive number and --phi-window at least 1".into(),
            );
        }
        Ok(ServerConfig {
            phi_threshold: self.phi_threshold,
            phi_window: self.phi_window,
            name: self.name.clone(),
            data_dir: self
                .data_dir
                .clone()
                .unwrap_or_else(|| PathBuf::from(format!("{}.synod", self.name))),
            listen_client: url_socket(&self.listen_client_urls).map_err(e)?,
            advertise_client_urls: self
                .advertise_client_urls
                .split(',')
                .map(String::from)
                .collect(),
            listen_peer: url_socket(&self.listen_peer_urls).map_err(e)?,
            initial_cluster,
            join_existing: self.initial_cluster_state == "existing",
            cluster_token: self.initial_cluster_token.clone(),
            listen_metrics: match &self.listen_metrics_urls {
                Some(u) => Some(url_socket(u).map_err(e)?),
                None => None,
            },
            snapshot_count: self.snapshot_count,
            heartbeat: Duration::from_millis(self.heartbeat_interval),
            election: Duration::from_millis(self.election_timeout),
            quota_backend_bytes: self.quota_backend_bytes,
            max_request_bytes: self.max_request_bytes,
            peer_dial: self
                .unsafe_peer_dial
                .split(',')
                .filter(|p| !p.is_empty())
                .map(|p| {
                    p.split_once('=')
                        .map(|(n, a)| (n.to_string(), a.to_string()))
                        .ok_or_else(|| format!("--unsafe-peer-dial: `{p}` is not name=host:port"))
                })
                .collect::<Result<_, _>>()?,
            disk_faults: storage::FaultPlan::parse(&self.unsafe_disk_faults)
                .map_err(|e| format!("--unsafe-disk-faults: {e}"))?,
            limits: ListenerLimits {
                max_connections: self.max_client_connections,
                max_concurrent_streams: self.max_concurrent_streams,
                header_timeout: Duration::from_millis(self.unsafe_header_timeout),
            },
            #[cfg(feature = "planted-bugs")]
            planted_bug: match &self.planted_bug {
                None => None,
                Some(n) => Some(server::config::ServerBug::from_name(n).ok_or_else(|| {
                    format!(
                        "--planted-bug: unknown bug `{n}` (one of {})",
                        server::config::ServerBug::NAMES.join(", ")
                    )
                })?),
            },
        })
    }
}

async fn stop_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!(event = "signal", "stopping on signal");
}

/// Runs one member until SIGINT or SIGTERM.
pub fn run(args: NodeArgs) -> ExitCode {
    crate::logging::init(&args.log);
    let cfg = match args.config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    // One thread for client requests: on a small machine the members' runtimes compete
    // for the same cores, and hand-offs between workers cost more than they spread
    // (measured: +8 % puts, +15 % serializable gets at 64 clients). Peer traffic and
    // the Raft driver have threads of their own.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match rt.block_on(server::run(cfg, stop_signal())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(server::RunError::Fatal(e)) if e.what == "membership" => {
            // etcd's words for a member that was removed from the cluster.
            eprintln!("error: {}; stopping this member", e.cause);
            ExitCode::from(1)
        }
        Err(server::RunError::Fatal(e)) => {
            eprintln!("fatal: {e}; stopping this member (a failed sync is never retried)");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}
