//! The client port: gRPC (HTTP/2 with prior knowledge) and admin HTTP/1.1 on one
//! listener, as etcd serves them. Each accepted connection is classified by its first
//! bytes — the HTTP/2 preface starts `PRI `, no HTTP/1.1 method does — and handed to
//! tonic (through a channel that is its stream of connections) or to the admin router.
//! A connection that sends nothing recognisable within the deadline is closed.

use crate::admin;
use crate::api::Api;
use crate::corked::Corked;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// How long a new connection may stay silent before it is closed.
const FIRST_BYTES_TIMEOUT: Duration = Duration::from_secs(10);

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
    loop {
        let n = stream.peek(&mut buf).await.ok()?;
        if n == 0 {
            return None;
        }
        if let Some(p) = classify(&buf[..n]) {
            return Some(p);
        }
        // Fewer than 4 bytes of what could be the preface: wait for the rest.
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Accepts clients until tonic stops taking connections.
pub async fn accept(listener: TcpListener, grpc: mpsc::Sender<std::io::Result<Corked>>, api: Api) {
    let router = admin::router(api);
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(_) => {
                // Out of file descriptors, say: back off instead of spinning.
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if grpc.is_closed() {
            return;
        }
        let (grpc, router) = (grpc.clone(), router.clone());
        tokio::spawn(async move {
            match tokio::time::timeout(FIRST_BYTES_TIMEOUT, sniff(&stream)).await {
                Ok(Some(Protocol::Grpc)) => {
                    // The builder's tcp_nodelay does not reach sockets we accept
                    // ourselves: set it per stream, or every response's trailers wait
                    // for the client's delayed ACK (~40 ms). Writes are corked (see
                    // `corked`).
                    let _ = stream.set_nodelay(true);
                    let _ = grpc.send(Ok(Corked::new(stream))).await;
                }
                Ok(Some(Protocol::Http1)) => admin::serve_connection(stream, router).await,
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
