//! Peer transport: one outbound TCP connection per peer (frames are batched into one
//! write per wake-up) and an acceptor for inbound connections, whose frames go to the
//! driver. Queues are bounded; when one is full the frames are dropped, which Raft
//! tolerates (it retries on its own schedule), so the driver never blocks on a peer.

use crate::config::MemberInfo;
use crate::driver::{Input, PeerSink};
use crate::state::Shared;
use crate::wire::{self, Handshake, HANDSHAKE_LEN};
use raft::NodeId;
use std::collections::HashMap;
use std::sync::mpsc::Sender as StdSender;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// Batches queued per peer before new ones are dropped.
const QUEUE: usize = 4096;
/// Longest hello (name and client URLs) accepted.
const MAX_HELLO: usize = 4096;

/// The driver's handle on the outbound queues.
pub struct PeerQueues {
    queues: HashMap<NodeId, mpsc::Sender<Vec<u8>>>,
}

impl PeerSink for PeerQueues {
    fn send(&mut self, to: NodeId, frames: Vec<u8>, _count: u64) {
        if let Some(q) = self.queues.get(&to) {
            let _ = q.try_send(frames);
        }
    }
}

/// What a member tells a peer about itself after the handshake.
fn hello(name: &str, client_urls: &[String]) -> Vec<u8> {
    let text = format!("{name}\n{}", client_urls.join(","));
    let mut b = (text.len() as u32).to_le_bytes().to_vec();
    b.extend_from_slice(text.as_bytes());
    b
}

/// Starts one sender task per peer; returns the queues for the driver.
pub fn start_senders(shared: &Arc<Shared>, client_urls: &[String]) -> PeerQueues {
    let mut queues = HashMap::new();
    for m in shared.members.iter().filter(|m| m.id != shared.member_id) {
        let (tx, rx) = mpsc::channel(QUEUE);
        queues.insert(m.id, tx);
        let greeting = Handshake {
            cluster_id: shared.cluster_id,
            from: shared.member_id,
            to: m.id,
        }
        .encode()
        .into_iter()
        .chain(hello(&shared.name, client_urls))
        .collect();
        tokio::spawn(sender(m.clone(), greeting, rx));
    }
    PeerQueues { queues }
}

async fn sender(peer: MemberInfo, greeting: Vec<u8>, mut rx: mpsc::Receiver<Vec<u8>>) {
    let mut logged = false;
    loop {
        let conn =
            tokio::time::timeout(Duration::from_secs(1), TcpStream::connect(&peer.peer_addr)).await;
        let mut stream = match conn {
            Ok(Ok(s)) => s,
            _ => {
                if !logged {
                    eprintln!(
                        "info: peer {} ({}) unreachable; retrying",
                        peer.name, peer.peer_addr
                    );
                    logged = true;
                }
                // Frames queued while the peer is away are stale: drop them.
                while rx.try_recv().is_ok() {}
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        logged = false;
        let _ = stream.set_nodelay(true);
        if stream.write_all(&greeting).await.is_err() {
            continue;
        }
        loop {
            let Some(mut buf) = rx.recv().await else {
                return;
            };
            while buf.len() < (4 << 20) {
                match rx.try_recv() {
                    Ok(more) => buf.extend_from_slice(&more),
                    Err(_) => break,
                }
            }
            if stream.write_all(&buf).await.is_err() {
                break;
            }
        }
    }
}

/// Accepts peer connections until the listener fails.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>, driver: StdSender<Input>) {
    loop {
        let Ok((stream, addr)) = listener.accept().await else {
            continue;
        };
        let shared = shared.clone();
        let driver = driver.clone();
        tokio::spawn(async move {
            if let Err(e) = receive(stream, &shared, &driver).await {
                eprintln!("warn: peer connection from {addr} closed: {e}");
            }
        });
    }
}

async fn receive(
    stream: TcpStream,
    shared: &Shared,
    driver: &StdSender<Input>,
) -> Result<(), String> {
    let _ = stream.set_nodelay(true);
    let mut r = BufReader::with_capacity(256 << 10, stream);
    let mut hs = [0u8; HANDSHAKE_LEN];
    tokio::time::timeout(Duration::from_secs(5), r.read_exact(&mut hs))
        .await
        .map_err(|_| "no handshake within 5s".to_string())?
        .map_err(|e| e.to_string())?;
    let h = Handshake::decode(&hs, shared.cluster_id).map_err(|e| e.to_string())?;
    if h.to != shared.member_id || !shared.members.iter().any(|m| m.id == h.from) {
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
    let mut body = Vec::new();
    loop {
        let mut header = [0u8; 8];
        match r.read_exact(&mut header).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e.to_string()),
        }
        let (len, crc) = wire::frame_len(&header).map_err(|e| e.to_string())?;
        body.resize(len, 0);
        r.read_exact(&mut body).await.map_err(|e| e.to_string())?;
        let msg = wire::decode_frame(&body, crc).map_err(|e| e.to_string())?;
        if driver.send(Input::Peer(h.from, msg)).is_err() {
            return Ok(());
        }
    }
}
