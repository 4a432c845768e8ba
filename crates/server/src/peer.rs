//! Peer transport: one outbound TCP connection per peer and an acceptor for inbound
//! connections. An inbound connection's handshake is checked here; then the socket is
//! handed to the driver's inbox, and the Raft thread reads its frames itself.
//!
//! Outbound, the driver writes a round's frames straight into the socket when nothing
//! is waiting to be sent (non-blocking; no thread hand-off on the way to the peer).
//! Whatever the socket does not take goes to the peer's sender task, and later frames
//! queue behind it until the task has written it all, so frames stay in order. Queues
//! are bounded; when one is full the frames are dropped, which Raft tolerates (it
//! retries on its own schedule), so the driver never blocks on a peer.

use crate::config::MemberInfo;
use crate::driver::{Input, PeerSink};
use crate::inbox::InboxSender;
use crate::listener::Listener;
use crate::raft_engine::MemberEngine;
use crate::state::Shared;
use crate::wire::{Handshake, HANDSHAKE_LEN, MAX_HELLO};
use engine::NodeId;
use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// Batches queued per peer before new ones are dropped.
const QUEUE: usize = 4096;

/// One outbound connection as the driver sees it.
#[derive(Default)]
struct LinkState {
    /// A second handle on the connected socket (non-blocking), for direct writes.
    stream: Option<std::net::TcpStream>,
    /// Batches handed to the sender task and not yet fully written.
    backlog: usize,
}

struct Link {
    /// The address its sender task dials.
    addr: String,
    state: Mutex<LinkState>,
    queue: mpsc::Sender<Vec<u8>>,
    /// Bytes written to the peer (`etcd_network_peer_sent_bytes_total`).
    sent: prometheus::IntCounter,
}

/// The driver's handle on the outbound connections: one per member, following the
/// membership (a link to a member that left closes; one to a member that joined, or
/// whose address changed, is dialled).
pub struct PeerQueues {
    links: HashMap<NodeId, Arc<Link>>,
    /// The peer runtime, where sender tasks run.
    runtime: tokio::runtime::Handle,
    shared: Arc<Shared>,
    /// What this member says about itself after each handshake.
    hello: Vec<u8>,
    /// The driver, told when a peer says this member was removed.
    driver: InboxSender,
}

/// What a member answers a handshake from a member removed from the cluster, before
/// it closes the connection (etcd's peers answer such a member `410 Gone`).
pub const REMOVED_NOTICE: &[u8; 8] = b"REMOVED\0";

impl PeerQueues {
    fn connect(&mut self, m: &MemberInfo) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let to = crate::state::Metrics::peer_label(m.id);
        let link = Arc::new(Link {
            addr: m.peer_addr.clone(),
            state: Mutex::new(LinkState::default()),
            queue: tx,
            sent: self
                .shared
                .metrics
                .peer_sent_bytes
                .with_label_values(&[&to]),
        });
        self.links.insert(m.id, link.clone());
        let greeting = Handshake {
            cluster_id: self.shared.cluster_id,
            from: self.shared.member_id,
            to: m.id,
            engine: <MemberEngine as engine::Engine>::NAME,
        }
        .encode()
        .into_iter()
        .chain(self.hello.iter().copied())
        .collect();
        let driver = self.driver.clone();
        self.runtime
            .spawn(sender(m.clone(), greeting, link, rx, driver));
    }
}

impl PeerSink for PeerQueues {
    fn set_peers(&mut self, members: &[MemberInfo]) {
        let me = self.shared.member_id;
        let wanted = |id: &NodeId, link: &Link| {
            members
                .iter()
                .any(|m| m.id == *id && m.peer_addr == link.addr && m.id != me)
        };
        // Dropping a link's queue ends its sender task; its socket closes with it.
        self.links.retain(|id, link| wanted(id, link));
        for m in members
            .iter()
            .filter(|m| m.id != me && !m.peer_addr.is_empty())
        {
            if !self.links.contains_key(&m.id) {
                self.connect(m);
            }
        }
    }

    fn send(&mut self, to: NodeId, frames: Vec<u8>, _count: u64) {
        let Some(link) = self.links.get(&to) else {
            return;
        };
        let mut st = link.state.lock().unwrap();
        let Some(stream) = &st.stream else {
            return; // Not connected: Raft resends once the peer is back.
        };
        let rest = if st.backlog == 0 {
            let written = write_nonblocking(stream, &frames);
            if let Ok(n) = written {
                link.sent.inc_by(n as u64);
            }
            match written {
                Ok(n) if n == frames.len() => return,
                Ok(n) => frames[n..].to_vec(),
                Err(_) => {
                    // Broken: the sender task sees it too and reconnects.
                    st.stream = None;
                    return;
                }
            }
        } else {
            frames
        };
        if link.queue.try_send(rest).is_ok() {
            st.backlog += 1;
        } else {
            // A partial frame may be in the socket: only a new connection is safe now.
            if let Some(s) = st.stream.take() {
                let _ = s.shutdown(std::net::Shutdown::Both);
            }
        }
    }
}

/// Writes as much of `b` as the socket takes without blocking.
fn write_nonblocking(mut s: &std::net::TcpStream, b: &[u8]) -> std::io::Result<usize> {
    let mut at = 0;
    while at < b.len() {
        match s.write(&b[at..]) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => at += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(at)
}

/// What a member tells a peer about itself after the handshake.
fn hello(name: &str, client_urls: &[String]) -> Vec<u8> {
    let text = format!("{name}\n{}", client_urls.join(","));
    let mut b = (text.len() as u32).to_le_bytes().to_vec();
    b.extend_from_slice(text.as_bytes());
    b
}

/// Starts one sender task per member (on the current runtime, the peer runtime);
/// returns the queues for the driver.
pub fn start_senders(
    shared: &Arc<Shared>,
    client_urls: &[String],
    driver: InboxSender,
) -> PeerQueues {
    let mut queues = PeerQueues {
        links: HashMap::new(),
        runtime: tokio::runtime::Handle::current(),
        shared: shared.clone(),
        hello: hello(&shared.name, client_urls),
        driver,
    };
    queues.set_peers(&shared.members());
    queues
}

async fn sender(
    peer: MemberInfo,
    greeting: Vec<u8>,
    link: Arc<Link>,
    mut rx: mpsc::Receiver<Vec<u8>>,
    driver: InboxSender,
) {
    let mut logged = false;
    loop {
        let conn =
            tokio::time::timeout(Duration::from_secs(1), TcpStream::connect(&peer.peer_addr)).await;
        let Ok(Ok(mut stream)) = conn else {
            if !logged {
                tracing::info!(
                    event = "peer_unreachable",
                    peer = %peer.name,
                    addr = %peer.peer_addr,
                    "peer unreachable; retrying"
                );
                logged = true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        logged = false;
        let _ = stream.set_nodelay(true);
        if stream.write_all(&greeting).await.is_err() {
            continue;
        }
        link.sent.inc_by(greeting.len() as u64);
        tracing::info!(event = "peer_connected", peer = %peer.name, addr = %peer.peer_addr, "connected to peer");
        tracing::debug!(event = "handshake_sent", peer = %peer.name, bytes = greeting.len(), "handshake sent");
        let Some(stream) = share(stream, &link, &mut rx) else {
            continue;
        };
        match pump(stream, &link, &mut rx).await {
            Pumped::DriverGone => return,
            Pumped::Removed => {
                tracing::warn!(event = "member_removed", peer = %peer.name, "a peer says this member was removed from the cluster");
                let _ = driver.send(Input::Removed);
                return;
            }
            Pumped::Broken => {}
        }
        tracing::info!(event = "peer_lost", peer = %peer.name, addr = %peer.peer_addr, "connection to peer lost; redialing");
        *link.state.lock().unwrap() = LinkState::default();
    }
}

/// Gives the driver its own handle on a fresh connection; frames queued for an older
/// connection are stale and dropped.
fn share(stream: TcpStream, link: &Link, rx: &mut mpsc::Receiver<Vec<u8>>) -> Option<TcpStream> {
    let std = stream.into_std().ok()?;
    let dup = std.try_clone().ok()?;
    let stream = TcpStream::from_std(std).ok()?;
    let mut st = link.state.lock().unwrap();
    while rx.try_recv().is_ok() {}
    *st = LinkState {
        stream: Some(dup),
        backlog: 0,
    };
    Some(stream)
}

/// Writes what the driver queues until the connection breaks (`Some`) or the driver
/// is gone (`None`). Peers never send on this connection, so readability means it
/// was closed.
/// How a sender's connection ended.
enum Pumped {
    /// It broke: redial.
    Broken,
    /// The driver is gone.
    DriverGone,
    /// The peer answered that this member was removed.
    Removed,
}

async fn pump(mut stream: TcpStream, link: &Link, rx: &mut mpsc::Receiver<Vec<u8>>) -> Pumped {
    let mut probe = [0u8; 64];
    loop {
        tokio::select! {
            got = rx.recv() => {
                let Some(mut buf) = got else {
                    return Pumped::DriverGone;
                };
                let mut taken = 1;
                while buf.len() < (4 << 20) {
                    match rx.try_recv() {
                        Ok(more) => {
                            buf.extend_from_slice(&more);
                            taken += 1;
                        }
                        Err(_) => break,
                    }
                }
                if stream.write_all(&buf).await.is_err() {
                    return Pumped::Broken;
                }
                link.sent.inc_by(buf.len() as u64);
                let mut st = link.state.lock().unwrap();
                st.backlog = st.backlog.saturating_sub(taken);
                if st.stream.is_none() {
                    return Pumped::Broken; // The driver saw it break.
                }
            }
            r = stream.read(&mut probe) => {
                return match r {
                    Ok(n) if probe[..n].starts_with(REMOVED_NOTICE) => Pumped::Removed,
                    _ => Pumped::Broken,
                };
            }
        }
    }
}

/// Accepts peer connections (a failed accept is counted and followed by a pause, see
/// [`Listener`]). A connection counts as open on the listener until its handshake is
/// checked and the socket handed to the Raft thread.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>, driver: InboxSender) {
    let mut listener = Listener::new(listener, "peer", None, &shared.metrics);
    loop {
        let (stream, addr, slot) = listener.accept().await;
        let shared = shared.clone();
        let driver = driver.clone();
        tokio::spawn(async move {
            if let Err(e) = receive(stream, &shared, &driver).await {
                tracing::info!(event = "peer_lost", addr = %addr, error = %e, "peer connection closed");
            }
            drop(slot);
        });
    }
}

async fn receive(stream: TcpStream, shared: &Shared, driver: &InboxSender) -> Result<(), String> {
    let _ = stream.set_nodelay(true);
    // Only the handshake and hello are read here; bytes read past them go with the
    // socket to the inbox.
    let mut r = BufReader::with_capacity(HANDSHAKE_LEN + 4 + MAX_HELLO, stream);
    let mut hs = [0u8; HANDSHAKE_LEN];
    tokio::time::timeout(Duration::from_secs(5), r.read_exact(&mut hs))
        .await
        .map_err(|_| "no handshake within 5s".to_string())?
        .map_err(|e| e.to_string())?;
    if crate::join::is_query(&hs) {
        return crate::join::answer(r.into_inner(), shared).await;
    }
    let h = Handshake::decode::<MemberEngine>(&hs, shared.cluster_id).map_err(|e| e.to_string())?;
    if shared.removed.lock().unwrap().contains(&h.from) {
        let mut stream = r.into_inner();
        let _ = stream.write_all(REMOVED_NOTICE).await;
        return Err(format!("{:x} was removed from the cluster", h.from.0));
    }
    // Any member of this cluster may connect, including one this member has not yet
    // seen join (its membership may lag the leader's).
    if h.to != shared.member_id || h.from == NodeId(0) {
        return Err(format!(
            "handshake from {:x} to {:x} is not for us",
            h.from.0, h.to.0
        ));
    }
    let len = r.read_u32_le().await.map_err(|e| e.to_string())? as usize;
    if len > MAX_HELLO {
        return Err("oversized hello".into());
    }
    let mut text = vec![0u8; len];
    r.read_exact(&mut text).await.map_err(|e| e.to_string())?;
    let text = String::from_utf8(text).map_err(|_| "hello is not UTF-8".to_string())?;
    if let Some((_, urls)) = text.split_once('\n') {
        let urls: Vec<String> = urls
            .split(',')
            .filter(|u| !u.is_empty())
            .map(String::from)
            .collect();
        shared.client_urls.lock().unwrap().insert(h.from, urls);
    }
    if let Some((name, _)) = text.split_once('\n') {
        let name = name.to_string();
        shared.peer_names.lock().unwrap().insert(h.from, name);
    }
    // From here on the Raft thread reads the frames itself (see `inbox`).
    let buffered = r.buffer().to_vec();
    let from = crate::state::Metrics::peer_label(h.from);
    let received = shared
        .metrics
        .peer_received_bytes
        .with_label_values(&[&from]);
    received.inc_by((HANDSHAKE_LEN + 4 + len + buffered.len()) as u64);
    let stream = r.into_inner().into_std().map_err(|e| e.to_string())?;
    let _ = driver.send(Input::PeerStream {
        from: h.from,
        stream,
        buffered,
        received,
    });
    Ok(())
}
