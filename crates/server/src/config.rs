//! Member configuration: etcd's flag meanings, member and cluster ids.

use engine::NodeId;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Everything a member needs to start.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// This member's name (`--name`).
    pub name: String,
    /// Where the WAL and snapshots live (`--data-dir`).
    pub data_dir: PathBuf,
    /// Client (gRPC) listen address.
    pub listen_client: SocketAddr,
    /// Client URLs this member advertises to others.
    pub advertise_client_urls: Vec<String>,
    /// Peer listen address.
    pub listen_peer: SocketAddr,
    /// Every member: (name, peer URL).
    pub initial_cluster: Vec<(String, String)>,
    /// `--initial-cluster-state existing`: join a running cluster (the members of
    /// `initial_cluster` tell this one its id) instead of founding one.
    pub join_existing: bool,
    /// `--initial-cluster-token`: mixed into member and cluster ids.
    pub cluster_token: String,
    /// Admin HTTP (`/health`, `/metrics`, `/status`, `/version`), if any.
    pub listen_metrics: Option<SocketAddr>,
    /// Applied entries between snapshots (`--snapshot-count`).
    pub snapshot_count: u64,
    /// Heartbeat interval (`--heartbeat-interval`, ms).
    pub heartbeat: Duration,
    /// Election timeout (`--election-timeout`, ms).
    pub election: Duration,
    /// Backend quota (`--quota-backend-bytes`); 0 means etcd's default of 2 GiB.
    pub quota_backend_bytes: u64,
    /// Largest client request (`--max-request-bytes`).
    pub max_request_bytes: usize,
    /// The failure detector's φ at which a peer is suspected (`--phi-threshold`).
    pub phi_threshold: f64,
    /// Heartbeat intervals the failure detector remembers per peer (`--phi-window`).
    pub phi_window: usize,
    /// Testing only: dial these addresses for the named peers instead of their peer URLs
    /// (the chaos lab routes each link through its own proxy). Identity is unchanged.
    pub peer_dial: Vec<(String, String)>,
    /// Injected disk faults (chaos testing only; none by default).
    pub disk_faults: storage::FaultPlan,
    /// What clients may hold on the client and metrics listeners.
    pub limits: ListenerLimits,
    /// A deliberately planted bug (chaos checker tests only).
    #[cfg(feature = "planted-bugs")]
    pub planted_bug: Option<ServerBug>,
}

/// What clients may hold on the client and metrics listeners: memory stays bounded by
/// these whatever clients do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListenerLimits {
    /// Connections open at once on each listener (`--max-client-connections`); a
    /// connection beyond it waits in the kernel's accept backlog until one closes.
    pub max_connections: usize,
    /// Concurrent gRPC streams per HTTP/2 connection (`--max-concurrent-streams`).
    pub max_concurrent_streams: u32,
    /// How long a new connection may take to send its first bytes, and an HTTP/1.1
    /// client its request head (`--unsafe-header-timeout`, testing only).
    pub header_timeout: Duration,
}

impl Default for ListenerLimits {
    fn default() -> ListenerLimits {
        ListenerLimits {
            max_connections: 2048,
            max_concurrent_streams: 1024,
            header_timeout: Duration::from_secs(10),
        }
    }
}

/// Bugs planted on purpose, to prove the chaos lab catches them.
#[cfg(feature = "planted-bugs")]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerBug {
    /// Linearizable reads are served from the local store without ReadIndex.
    StaleLocalRead,
    /// Persisted is reported to Raft at write time; the fsync follows lazily.
    AckBeforeFsync,
    /// The lease clock's `follower-lease-expiry` (`kv::KvBug`): a follower keeps
    /// lease deadlines on its own clock, never renewed by keep-alives, and hands the
    /// revoke of a lease past its deadline to the leader.
    FollowerLeaseExpiry,
}

#[cfg(feature = "planted-bugs")]
impl ServerBug {
    /// Every planted bug's name.
    pub const NAMES: [&'static str; 3] = [
        "stale-local-read",
        "ack-before-fsync",
        "follower-lease-expiry",
    ];

    /// A bug by name.
    pub fn from_name(name: &str) -> Option<ServerBug> {
        match name {
            "stale-local-read" => Some(ServerBug::StaleLocalRead),
            "ack-before-fsync" => Some(ServerBug::AckBeforeFsync),
            "follower-lease-expiry" => Some(ServerBug::FollowerLeaseExpiry),
            _ => None,
        }
    }
}

/// A configuration that cannot start a member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// One member of the cluster as every member computes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberInfo {
    /// Member id (also the Raft node id).
    pub id: NodeId,
    /// Name.
    pub name: String,
    /// Peer URL (the first of `peer_urls`; the one dialled).
    pub peer_url: String,
    /// Every peer URL.
    pub peer_urls: Vec<String>,
    /// Peer address to dial.
    pub peer_addr: String,
    /// A non-voting member.
    pub learner: bool,
}

/// FNV-1a, 64-bit: a stable hash for ids (the same on every member and every run).
pub fn fnv64(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for &b in *p {
            h ^= b as u64;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        h ^= 0xff;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Parses `name=url,name=url`.
pub fn parse_initial_cluster(s: &str) -> Result<Vec<(String, String)>, ConfigError> {
    let mut out = Vec::new();
    for part in s.split(',').filter(|p| !p.is_empty()) {
        let (name, url) = part
            .split_once('=')
            .ok_or_else(|| ConfigError(format!("--initial-cluster: `{part}` is not name=url")))?;
        url_addr(url)?;
        out.push((name.to_string(), url.to_string()));
    }
    if out.is_empty() {
        return Err(ConfigError("--initial-cluster is empty".into()));
    }
    Ok(out)
}

/// `http://host:port[/]` → `host:port`.
pub fn url_addr(url: &str) -> Result<String, ConfigError> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| ConfigError(format!("`{url}`: only http:// URLs are supported")))?;
    let hostport = rest.trim_end_matches('/');
    if !hostport.contains(':') || hostport.contains('/') {
        return Err(ConfigError(format!("`{url}`: expected http://host:port")));
    }
    Ok(hostport.to_string())
}

/// `http://host:port` → a socket address to bind.
pub fn url_socket(url: &str) -> Result<SocketAddr, ConfigError> {
    let hp = url_addr(url)?;
    let hp = hp.replace("localhost", "127.0.0.1");
    hp.parse()
        .map_err(|_| ConfigError(format!("`{url}`: cannot listen there (need an IP:port)")))
}

impl ServerConfig {
    /// Every member, with ids derived from name, peer URL and cluster token.
    pub fn members(&self) -> Vec<MemberInfo> {
        self.initial_cluster
            .iter()
            .map(|(name, url)| MemberInfo {
                id: NodeId(member_id(name, url, &self.cluster_token)),
                name: name.clone(),
                peer_url: url.clone(),
                peer_urls: vec![url.clone()],
                learner: false,
                peer_addr: self
                    .peer_dial
                    .iter()
                    .find(|(n, _)| n == name || n == url)
                    .map_or_else(|| url_addr(url).expect("validated"), |(_, a)| a.clone()),
            })
            .collect()
    }

    /// This member's peer URL, as `--initial-cluster` names it.
    pub fn own_peer_url(&self) -> Option<&str> {
        let mine = self.initial_cluster.iter().find(|(n, _)| *n == self.name);
        mine.map(|(_, u)| u.as_str())
    }

    /// This member's id.
    pub fn member_id(&self) -> Result<NodeId, ConfigError> {
        self.members()
            .into_iter()
            .find(|m| m.name == self.name)
            .map(|m| m.id)
            .ok_or_else(|| {
                ConfigError(format!(
                    "--initial-cluster has no member named `{}`",
                    self.name
                ))
            })
    }

    /// The cluster id: a hash of every member id and the token.
    pub fn cluster_id(&self) -> u64 {
        let ids: Vec<NodeId> = self.members().iter().map(|m| m.id).collect();
        cluster_id_of(&ids, &self.cluster_token)
    }

    /// Ticks: one tick is half a heartbeat interval.
    pub fn tick(&self) -> Duration {
        (self.heartbeat / 2).max(Duration::from_millis(1))
    }

    /// Checks what etcd checks.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.member_id()?;
        if self.election < self.heartbeat * 5 {
            return Err(ConfigError(format!(
                "--election-timeout[{}ms] should be at least 5 times --heartbeat-interval[{}ms]",
                self.election.as_millis(),
                self.heartbeat.as_millis()
            )));
        }
        if self.heartbeat.is_zero() {
            return Err(ConfigError("--heartbeat-interval must be positive".into()));
        }
        if self.limits.max_connections == 0 || self.limits.max_concurrent_streams == 0 {
            return Err(ConfigError(
                "--max-client-connections and --max-concurrent-streams must be at least 1".into(),
            ));
        }
        if self.limits.header_timeout.is_zero() {
            return Err(ConfigError(
                "--unsafe-header-timeout must be positive".into(),
            ));
        }
        let mut names: Vec<&str> = self
            .initial_cluster
            .iter()
            .map(|(n, _)| n.as_str())
            .collect();
        names.sort_unstable();
        if names.windows(2).any(|w| w[0] == w[1]) {
            return Err(ConfigError("--initial-cluster names a member twice".into()));
        }
        Ok(())
    }
}

/// The id of a cluster founded by `members` with `token`.
pub fn cluster_id_of(members: &[NodeId], token: &str) -> u64 {
    let mut ids: Vec<u64> = members.iter().map(|m| m.0).collect();
    ids.sort_unstable();
    let bytes: Vec<u8> = ids.iter().flat_map(|i| i.to_le_bytes()).collect();
    fnv64(&[&bytes, token.as_bytes()])
}

/// A member id: never zero (zero means "none" in Raft and in etcd).
pub fn member_id(name: &str, peer_url: &str, token: &str) -> u64 {
    fnv64(&[name.as_bytes(), peer_url.as_bytes(), token.as_bytes()]).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_cluster_parse() {
        assert_eq!(url_addr("http://127.0.0.1:2380").unwrap(), "127.0.0.1:2380");
        assert!(url_addr("https://x:1").is_err());
        assert!(url_addr("http://nohost").is_err());
        let c = parse_initial_cluster("a=http://127.0.0.1:1,b=http://127.0.0.1:2").unwrap();
        assert_eq!(c.len(), 2);
        assert!(parse_initial_cluster("a").is_err());
        assert_ne!(member_id("a", "u", "t"), member_id("b", "u", "t"));
    }
}
