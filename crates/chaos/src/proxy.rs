//! Per-link userspace TCP proxies between members. Each directed link `from → to` has its
//! own listener; `from` dials it instead of `to`'s peer port (`--unsafe-peer-dial`). The
//! proxy understands Synod's peer framing (handshake, hello, then `len | crc | body`
//! frames), so it can cut, delay or drop individual Raft messages, or reset the
//! connection.

use server::wire;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// What a link does to traffic right now.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LinkState {
    /// No traffic at all: connections are closed and refused.
    pub cut: bool,
    /// Added latency per frame.
    pub delay: Duration,
    /// Extra random latency, up to this much.
    pub jitter: Duration,
    /// Probability of dropping each frame.
    pub drop: f64,
    /// Probability of resetting the connection at each frame.
    pub reset: f64,
}

/// Every link's state, shared with the proxies.
#[derive(Clone, Default)]
pub struct Links {
    inner: Arc<Mutex<BTreeMap<(usize, usize), LinkState>>>,
}

impl Links {
    /// The state of `from → to`.
    pub fn get(&self, from: usize, to: usize) -> LinkState {
        self.inner
            .lock()
            .unwrap()
            .get(&(from, to))
            .copied()
            .unwrap_or_default()
    }

    /// Changes `from → to`.
    pub fn set(&self, from: usize, to: usize, s: LinkState) {
        self.inner.lock().unwrap().insert((from, to), s);
    }

    /// Heals every link.
    pub fn heal_all(&self) {
        self.inner.lock().unwrap().clear();
    }
}

/// Starts the proxy for `from → to`, forwarding to `target`; returns its port.
pub async fn start(links: Links, from: usize, to: usize, target: String) -> std::io::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(async move {
        let mut seed = (from as u64) << 32 | to as u64;
        loop {
            let Ok((inbound, _)) = listener.accept().await else {
                continue;
            };
            if links.get(from, to).cut {
                drop(inbound);
                continue;
            }
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let (links, target) = (links.clone(), target.clone());
            tokio::spawn(async move {
                let _ = relay(inbound, &target, links, from, to, seed).await;
            });
        }
    });
    Ok(port)
}

/// A tiny PRNG for per-connection fault decisions.
struct Lcg(u64);

impl Lcg {
    fn unit(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

async fn relay(
    mut inbound: TcpStream,
    target: &str,
    links: Links,
    from: usize,
    to: usize,
    seed: u64,
) -> std::io::Result<()> {
    let outbound = TcpStream::connect(target).await?;
    outbound.set_nodelay(true)?;
    inbound.set_nodelay(true)?;
    // The handshake and hello (u32 length + text) pass through untouched.
    const HS: usize = wire::HANDSHAKE_LEN;
    let mut head = vec![0u8; HS + 4];
    inbound.read_exact(&mut head).await?;
    let hello_len = u32::from_le_bytes(head[HS..HS + 4].try_into().unwrap()) as usize;
    if hello_len > wire::MAX_HELLO {
        return Ok(());
    }
    let mut hello = vec![0u8; hello_len];
    inbound.read_exact(&mut hello).await?;
    head.extend_from_slice(&hello);
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let (_, mut out_w) = outbound.into_split();
    out_w.write_all(&head).await?;
    let writer = tokio::spawn(async move {
        while let Some((at, frame)) = rx.recv().await {
            tokio::time::sleep_until(at.into()).await;
            if out_w.write_all(&frame).await.is_err() {
                return;
            }
        }
    });
    let mut rng = Lcg(seed);
    let result = async {
        loop {
            let mut header = [0u8; wire::FRAME_HEADER];
            inbound.read_exact(&mut header).await?;
            let len = u32::from_le_bytes(header[..4].try_into().unwrap()) as usize;
            if len > wire::MAX_FRAME {
                return Ok(());
            }
            let mut frame = header.to_vec();
            frame.resize(wire::FRAME_HEADER + len, 0);
            inbound.read_exact(&mut frame[wire::FRAME_HEADER..]).await?;
            let s = links.get(from, to);
            if s.cut || rng.unit() < s.reset {
                return Ok(());
            }
            if rng.unit() < s.drop {
                continue;
            }
            let extra = s.jitter.mul_f64(rng.unit());
            if tx.send((Instant::now() + s.delay + extra, frame)).is_err() {
                return Ok(());
            }
        }
    }
    .await;
    writer.abort();
    result
}
