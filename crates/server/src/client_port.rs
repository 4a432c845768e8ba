//! The client port: gRPC (HTTP/2 with prior knowledge) and admin HTTP/1.1 on one
//! listener, as etcd serves them. Each accepted connection is classified by its first
//! bytes — the HTTP/2 preface starts `PRI `, no HTTP/1.1 method does — and handed to
//! tonic (through a channel that is its stream of connections) or to the admin router.
//! A connection that sends nothing recognisable within the header deadline is closed,
//! and the listener holds at most `--max-client-connections` at once (see
//! [`crate::listener`]).

use crate::admin;
use crate::api::Api;
use crate::corked::Corked;
use crate::listener::Listener;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::mpsc;

/// The longest pause between two looks at a connection that sent part of a preface.
const MAX_SNIFF_PAUSE: Duration = Duration::from_millis(64);

/// What a new connection speaks.
#[derive(Debug, PartialEq, Eq)]
enum Protocol {
    Grpc,
    Http1,
}

/// The protocol of a connection whose first bytes are `b` (`None`: too few to tell).
fn classify(b: &[u8]) -> Option<Protocol> {
    const PREFACE: &[u8] = b"PRI ";
    if b.len() >= PREFACE.len() || !PREFACE.starts_with(b) {
        return Some(if b.starts_with(PREFACE) {
            Protocol::Grpc
        } else {
            Protocol::Http1
        });
    }
    None
}

/// Waits for enough bytes to classify the connection, without consuming them.
async fn sniff(stream: &TcpStream) -> Option<Protocol> {
    let mut buf = [0u8; 4];
    let mut pause = Duration::from_millis(1);
    loop {
        let n = stream.peek(&mut buf).await.ok()?;
        if n == 0 {
            return None;
        }
        if let Some(p) = classify(&buf[..n]) {
            return Some(p);
        }
        // Fewer than 4 bytes of what could be the preface: wait for the rest (the
        // socket stays readable meanwhile, so poll it, less and less often: a client
        // that dribbles costs a few wake-ups, not one a millisecond).
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(MAX_SNIFF_PAUSE);
    }
}

/// Accepts clients until tonic stops taking connections. `header_timeout` bounds the
/// wait for a connection's first bytes and, for HTTP/1.1, for its request head.
pub async fn accept(
    mut listener: Listener,
    grpc: mpsc::Sender<std::io::Result<Corked>>,
    api: Api,
    header_timeout: Duration,
) {
    let router = admin::router(api);
    loop {
        let (stream, _, slot) = listener.accept().await;
        if grpc.is_closed() {
            return;
        }
        let (grpc, router) = (grpc.clone(), router.clone());
        tokio::spawn(async move {
            match tokio::time::timeout(header_timeout, sniff(&stream)).await {
                Ok(Some(Protocol::Grpc)) => {
                    // The builder's tcp_nodelay does not reach sockets we accept
                    // ourselves: set it per stream, or every response's trailers wait
                    // for the client's delayed ACK (~40 ms). Writes are corked (see
                    // `corked`); the slot is given back once the socket is closed.
                    let _ = stream.set_nodelay(true);
                    let _ = grpc.send(Ok(Corked::holding(stream, slot))).await;
                }
                Ok(Some(Protocol::Http1)) => {
                    admin::serve_connection(stream, router, header_timeout).await;
                    drop(slot);
                }
                _ => {}
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_preface_means_grpc_and_anything_else_http1() {
        assert_eq!(classify(b"PRI "), Some(Protocol::Grpc));
        assert_eq!(classify(b"GET "), Some(Protocol::Http1));
        assert_eq!(classify(b"POST"), Some(Protocol::Http1));
        assert_eq!(classify(b"PO"), Some(Protocol::Http1));
        assert_eq!(classify(b"PR"), None);
        assert_eq!(classify(b"P"), None);
        assert_eq!(classify(b"\x16\x03"), Some(Protocol::Http1));
    }
}
