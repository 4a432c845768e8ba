//! Accepting connections without being overrun: a listener holds at most a fixed number
//! of connections open (a [`Slot`] each), and an accept that fails (out of file
//! descriptors, say) is counted and followed by a pause instead of an immediate retry.
//!
//! A listener at its limit stops accepting: new connections wait in the kernel's accept
//! backlog (bounded by the listen backlog; beyond it the kernel drops their SYNs and
//! the clients retry), and are accepted as slots free up. Memory in the member stays
//! bounded by the limit, clients already connected are served as before, and nothing
//! spins. An accept error leaves the pending connection in the backlog and the
//! listener readable, so retrying at once would spin on the same error.

use crate::state::Metrics;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The pause after a failed accept.
pub const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// A listener with a connection limit (or none) and a back-off on accept errors.
pub struct Listener {
    inner: TcpListener,
    name: &'static str,
    slots: Option<Arc<Semaphore>>,
    errors: prometheus::IntCounter,
    open: prometheus::IntGauge,
    /// The previous accept failed (only the first error of a streak is logged).
    failing: bool,
}

/// An accepted connection's place under its listener's limit, given back on drop.
#[derive(Debug)]
pub struct Slot {
    _permit: Option<OwnedSemaphorePermit>,
    open: prometheus::IntGauge,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.open.dec();
    }
}

impl Listener {
    /// `inner`, known as `name` in logs and metrics (label `listener`), holding at most
    /// `limit` connections at once (`None`: no limit).
    pub fn new(
        inner: TcpListener,
        name: &'static str,
        limit: Option<usize>,
        metrics: &Metrics,
    ) -> Listener {
        Listener {
            inner,
            name,
            slots: limit.map(|n| Arc::new(Semaphore::new(n))),
            errors: metrics.accept_errors.with_label_values(&[name]),
            open: metrics.listener_connections.with_label_values(&[name]),
            failing: false,
        }
    }

    /// The next connection, once a slot is free. Failed accepts are counted in
    /// `synod_accept_errors_total` and each is followed by [`ACCEPT_BACKOFF`].
    pub async fn accept(&mut self) -> (TcpStream, SocketAddr, Slot) {
        loop {
            let permit = match &self.slots {
                // Never closed: an error would only mean no limit.
                Some(s) => s.clone().acquire_owned().await.ok(),
                None => None,
            };
            match self.inner.accept().await {
                Ok((stream, addr)) => {
                    if self.failing {
                        tracing::info!(
                            event = "accepting",
                            listener = self.name,
                            "accepting connections again"
                        );
                        self.failing = false;
                    }
                    self.open.inc();
                    let slot = Slot {
                        _permit: permit,
                        open: self.open.clone(),
                    };
                    return (stream, addr, slot);
                }
                Err(e) => {
                    self.errors.inc();
                    if !self.failing {
                        tracing::warn!(event = "accept_failed", listener = self.name, error = %e, "accept failed; retrying every 100 ms");
                        self.failing = true;
                    }
                    drop(permit);
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn a_listener_at_its_limit_accepts_again_once_a_slot_is_given_back() {
        let metrics = Metrics::default();
        let inner = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = inner.local_addr().unwrap();
        let mut l = Listener::new(inner, "test", Some(2), &metrics);
        let _clients: Vec<TcpStream> = connect_n(addr, 3).await;
        let (_a, _, first) = l.accept().await;
        let (_b, _, _second) = l.accept().await;
        let open = metrics.listener_connections.with_label_values(&["test"]);
        assert_eq!(open.get(), 2);
        // The third connection waits in the backlog while both slots are held.
        let third = tokio::time::timeout(Duration::ZERO, l.accept()).await;
        assert!(third.is_err(), "accepted beyond the limit");
        drop(first);
        assert_eq!(open.get(), 1);
        let (_c, _, _third) = l.accept().await;
        assert_eq!(open.get(), 2);
    }

    async fn connect_n(addr: SocketAddr, n: usize) -> Vec<TcpStream> {
        let mut out = Vec::new();
        for _ in 0..n {
            out.push(TcpStream::connect(addr).await.unwrap());
        }
        out
    }
}
