//! Joining a running cluster (`--initial-cluster-state existing`). The new member asks
//! the members named in `--initial-cluster` who is in the cluster: a *membership
//! query* on the peer port is a handshake whose cluster id, sender and receiver are all
//! 0; the member answers `cluster_id u64 | len u32 | membership` (the engine's
//! membership encoding, each member's context holding its name and peer URLs) and
//! closes. The new member finds itself by its peer URL (`etcdctl member add` put it
//! there), and learns its id and the cluster's. A member that already ran (the
//! answer names it) is refused: its data dir was lost, and with it its votes.

use crate::config::{url_addr, ConfigError, ServerConfig};
use crate::members::context;
use crate::state::Shared;
use crate::wire::{Handshake, HANDSHAKE_LEN};
use engine::{ConfChange, Membership, NodeId};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest answer accepted (a membership of a few hundred members).
const MAX_ANSWER: usize = 1 << 20;

/// The handshake that asks for the membership.
fn query() -> Vec<u8> {
    Handshake {
        cluster_id: 0,
        from: NodeId(0),
        to: NodeId(0),
        engine: <crate::raft_engine::MemberEngine as engine::Engine>::NAME,
    }
    .encode()
}

/// Whether a received handshake is a membership query.
pub fn is_query(hs: &[u8; HANDSHAKE_LEN]) -> bool {
    hs[..32] == query()[..32]
}

/// The membership with every member's name and peer URLs in its context.
pub fn described(shared: &Shared) -> Membership {
    let mut m = Membership::default();
    // Named: a member that has run at least once has said its name in a hello.
    for info in shared.members() {
        let context = context(&info.name, &info.peer_urls);
        let change = if info.learner {
            ConfChange::AddLearner {
                id: info.id,
                context,
            }
        } else {
            ConfChange::AddVoter {
                id: info.id,
                context,
            }
        };
        m = m.apply(&change).unwrap_or(m);
    }
    m
}

/// Answers a membership query on `stream`.
pub async fn answer(mut stream: TcpStream, shared: &Shared) -> Result<(), String> {
    let body = described(shared).to_bytes();
    let mut out = shared.cluster_id.to_le_bytes().to_vec();
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&body);
    stream.write_all(&out).await.map_err(|e| e.to_string())?;
    stream.shutdown().await.map_err(|e| e.to_string())
}

/// Asks the member at `addr` for the cluster id and membership.
async fn ask(addr: &str) -> Result<(u64, Membership), String> {
    let mut s = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    s.write_all(&query()).await.map_err(|e| e.to_string())?;
    let cluster_id = s.read_u64_le().await.map_err(|e| e.to_string())?;
    let len = s.read_u32_le().await.map_err(|e| e.to_string())? as usize;
    if len > MAX_ANSWER {
        return Err("oversized membership answer".into());
    }
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).await.map_err(|e| e.to_string())?;
    let m = Membership::decode(&body).map_err(|e| e.to_string())?;
    Ok((cluster_id, m))
}

/// The member whose peer URLs include `url`.
pub fn find_by_peer_url(m: &Membership, url: &str) -> Option<NodeId> {
    m.members().find_map(|(id, member)| {
        let (_, urls) = crate::members::parse_context(&member.context)?;
        urls.iter().any(|u| u == url).then_some(id)
    })
}

/// What a joining member learns: its id, the cluster's, and the membership.
pub struct Discovered {
    /// This member.
    pub id: NodeId,
    /// The cluster.
    pub cluster_id: u64,
    /// Who is in it (contexts hold names and peer URLs).
    pub membership: Membership,
}

/// This member's id, the cluster's and the membership, from the members of
/// `--initial-cluster`.
pub async fn discover(cfg: &ServerConfig) -> Result<Discovered, ConfigError> {
    let own = cfg.own_peer_url().ok_or_else(|| {
        ConfigError(format!(
            "--initial-cluster has no member named `{}`",
            cfg.name
        ))
    })?;
    let mut tried = Vec::new();
    for (name, url) in cfg.initial_cluster.iter().filter(|(n, _)| *n != cfg.name) {
        let Ok(addr) = url_addr(url) else { continue };
        let answer = tokio::time::timeout(Duration::from_secs(3), ask(&addr)).await;
        match answer {
            Ok(Ok((cluster_id, m))) => {
                let id = find_by_peer_url(&m, own).ok_or_else(|| {
                    ConfigError(format!(
                        "member {name} knows no member with peer URL {own} in cluster {cluster_id:x}: \
                         add it first (`etcdctl member add {} --peer-urls={own}`)",
                        cfg.name
                    ))
                })?;
                // A member that already ran has a name; starting it again on an empty
                // data dir would forget its votes and its log (etcd refuses it too).
                let ran = m
                    .get(id)
                    .and_then(|x| crate::members::parse_context(&x.context));
                if ran.is_some_and(|(n, _)| !n.is_empty()) {
                    let id = id.0;
                    return Err(ConfigError(format!(
                        "member {id:x} has already been bootstrapped: its data dir is gone; \
                         remove it (`etcdctl member remove {id:x}`) and add it again"
                    )));
                }
                return Ok(Discovered {
                    id,
                    cluster_id,
                    membership: m,
                });
            }
            Ok(Err(e)) => tried.push(format!("{name} ({url}): {e}")),
            Err(_) => tried.push(format!("{name} ({url}): no answer within 3s")),
        }
    }
    Err(ConfigError(format!(
        "--initial-cluster-state existing: no member of --initial-cluster answered: {}",
        tried.join("; ")
    )))
}

/// The ids an `identity` file in `dir` records, if there is one.
fn read_identity(dir: &std::path::Path) -> Option<(u64, NodeId)> {
    let text = std::fs::read_to_string(dir.join("identity")).ok()?;
    let field = |name: &str| {
        let line = text.lines().find_map(|l| l.strip_prefix(name))?;
        u64::from_str_radix(line, 16).ok()
    };
    Some((field("cluster_id=")?, NodeId(field("member_id=")?)))
}

/// Who this member is: its id, the cluster's, and the members to dial at start. A
/// founding member computes its ids from its flags; a joining one reads them from
/// its data dir, or asks the cluster the first time.
pub async fn identify(
    cfg: &ServerConfig,
    member_dir: &std::path::Path,
) -> Result<(NodeId, u64, Vec<crate::config::MemberInfo>), ConfigError> {
    let founders = cfg.members();
    if !cfg.join_existing {
        return Ok((cfg.member_id()?, cfg.cluster_id(), founders));
    }
    let own = cfg.own_peer_url().unwrap_or_default().to_string();
    if let Some((cluster_id, id)) = read_identity(member_dir) {
        let others = founders.into_iter().filter(|m| m.peer_url != own);
        return Ok((id, cluster_id, others.collect()));
    }
    let d = discover(cfg).await?;
    let dial = crate::members::directory(&d.membership, &founders, &cfg.peer_dial);
    Ok((d.id, d.cluster_id, dial))
}
