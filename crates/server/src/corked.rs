//! A TCP stream whose writes are gathered and sent by a companion task ("corked").
//!
//! h2 sends every DATA frame of 256 bytes or more as its own `writev`: it flushes
//! before it encodes the next frame. A gRPC response carrying a 256-byte value is such a
//! frame, so 8 answers on one connection cost 8 syscalls, each running the loopback
//! receive path of the other side inline. [`Corked`] accepts writes into a buffer, and
//! `poll_flush` only hands the buffer to a writer task spawned next to it. That task
//! yields once before it takes the buffer, so it runs after every task that was ready
//! (the other requests' handlers, woken one by one when the Raft thread completes a
//! batch), and everything they produced in the meantime leaves in one `write`.
//!
//! What stays true: bytes reach the socket in the order they were written; a write error
//! is reported by the next write, flush or shutdown; `poll_shutdown` completes only once
//! everything buffered was written and the write side is shut; at most [`HIGH_WATER`]
//! bytes wait in the buffer (writes beyond it wait for the writer task). What changes:
//! `poll_flush` returning `Ready` means "handed over", not "in the kernel".

use parking_lot::Mutex;
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

/// Bytes buffered before writes wait for the writer task.
pub const HIGH_WATER: usize = 256 << 10;

#[derive(Default)]
struct Cork {
    buf: Vec<u8>,
    /// The stream asked for a shutdown (or was dropped).
    closing: bool,
    /// The writer task has written everything and shut the write side.
    closed: bool,
    /// The writer task's write error, reported to the next caller.
    error: Option<(io::ErrorKind, String)>,
    /// The writer task, waiting for bytes.
    writer: Option<Waker>,
    /// A caller waiting for room in the buffer or for the shutdown to finish.
    caller: Option<Waker>,
    /// Dropped with the last half of the socket (a listener's slot, say).
    _guard: Option<Box<dyn Send>>,
}

impl Cork {
    fn failed(&self) -> Option<io::Error> {
        self.error
            .as_ref()
            .map(|(k, m)| io::Error::new(*k, m.clone()))
    }

    fn wake_writer(&mut self) {
        if let Some(w) = self.writer.take() {
            w.wake();
        }
    }

    fn wake_caller(&mut self) {
        if let Some(w) = self.caller.take() {
            w.wake();
        }
    }
}

/// A [`TcpStream`] with corked writes (see the module docs). Must be created inside a
/// tokio runtime: it spawns its writer task there.
pub struct Corked {
    read: OwnedReadHalf,
    cork: Arc<Mutex<Cork>>,
    local: Option<std::net::SocketAddr>,
    peer: Option<std::net::SocketAddr>,
}

impl Corked {
    /// Splits `stream` and spawns the task that writes its buffered bytes.
    pub fn new(stream: TcpStream) -> Corked {
        Corked::with_guard(stream, None)
    }

    /// As [`Corked::new`], and keeps `guard` until both halves of the socket are gone
    /// (the stream dropped and its writer task finished), i.e. until the socket closes.
    pub fn holding(stream: TcpStream, guard: impl Send + 'static) -> Corked {
        Corked::with_guard(stream, Some(Box::new(guard)))
    }

    fn with_guard(stream: TcpStream, guard: Option<Box<dyn Send>>) -> Corked {
        let (local, peer) = (stream.local_addr().ok(), stream.peer_addr().ok());
        let (read, write) = stream.into_split();
        let cork = Arc::new(Mutex::new(Cork {
            _guard: guard,
            ..Cork::default()
        }));
        tokio::spawn(write_loop(write, cork.clone()));
        Corked {
            read,
            cork,
            local,
            peer,
        }
    }
}

/// Waits until bytes are buffered or the stream is closing, then lets every task that
/// is ready run first (answers completed by other threads arrive as separate wake-ups),
/// and takes the buffered bytes (swapping in `spare`). Returns whether the stream is
/// closing.
async fn next_batch(cork: &Mutex<Cork>, spare: &mut Vec<u8>) -> bool {
    poll_fn(|cx| {
        let mut c = cork.lock();
        if !c.buf.is_empty() || c.closing {
            Poll::Ready(())
        } else {
            c.writer = Some(cx.waker().clone());
            Poll::Pending
        }
    })
    .await;
    tokio::task::yield_now().await;
    let mut c = cork.lock();
    std::mem::swap(&mut c.buf, spare);
    // Room again for a caller held at the high-water mark.
    c.wake_caller();
    c.closing
}

async fn write_loop(mut w: OwnedWriteHalf, cork: Arc<Mutex<Cork>>) {
    let mut out = Vec::new();
    loop {
        let closing = next_batch(&cork, &mut out).await;
        if !out.is_empty() {
            if let Err(e) = w.write_all(&out).await {
                let mut c = cork.lock();
                c.error = Some((e.kind(), e.to_string()));
                c.wake_caller();
                return;
            }
            out.clear();
            out.shrink_to(HIGH_WATER);
            continue; // more may have arrived while writing, even when closing
        }
        if closing {
            let res = w.shutdown().await;
            let mut c = cork.lock();
            if let Err(e) = res {
                c.error = Some((e.kind(), e.to_string()));
            }
            c.closed = true;
            c.wake_caller();
            return;
        }
    }
}

impl AsyncRead for Corked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.read).poll_read(cx, buf)
    }
}

impl Corked {
    /// Copies as much of `bufs` as fits below the high-water mark.
    fn poll_put(&self, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        let mut c = self.cork.lock();
        if let Some(e) = c.failed() {
            return Poll::Ready(Err(e));
        }
        if c.closing {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        if c.buf.len() >= HIGH_WATER {
            c.caller = Some(cx.waker().clone());
            c.wake_writer();
            return Poll::Pending;
        }
        let mut n = 0;
        for b in bufs {
            let room = HIGH_WATER - c.buf.len();
            let take = b.len().min(room);
            c.buf.extend_from_slice(&b[..take]);
            n += take;
            if take < b.len() {
                break;
            }
        }
        if c.buf.len() >= HIGH_WATER {
            c.wake_writer();
        }
        Poll::Ready(Ok(n))
    }
}

impl AsyncWrite for Corked {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_put(cx, &[io::IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.poll_put(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut c = self.cork.lock();
        if let Some(e) = c.failed() {
            return Poll::Ready(Err(e));
        }
        if !c.buf.is_empty() {
            c.wake_writer();
        }
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut c = self.cork.lock();
        if c.closed {
            return Poll::Ready(c.failed().map_or(Ok(()), Err));
        }
        if let Some(e) = c.failed() {
            return Poll::Ready(Err(e));
        }
        c.closing = true;
        c.caller = Some(cx.waker().clone());
        c.wake_writer();
        Poll::Pending
    }
}

impl Drop for Corked {
    fn drop(&mut self) {
        // The writer task sends what is buffered, shuts the write side and ends.
        let mut c = self.cork.lock();
        c.closing = true;
        c.wake_writer();
    }
}

impl tonic::transport::server::Connected for Corked {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        tonic::transport::server::TcpConnectInfo {
            local_addr: self.local,
            remote_addr: self.peer,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    async fn pair() -> (Corked, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let (a, b) = tokio::join!(TcpStream::connect(addr), l.accept());
        (Corked::new(a.unwrap()), b.unwrap().0)
    }

    #[tokio::test(flavor = "current_thread")]
    async fn flushed_bytes_arrive_in_order_and_shutdown_ends_the_stream() {
        let (mut c, mut peer) = pair().await;
        let mut want = Vec::new();
        for i in 0..1000u32 {
            let chunk = vec![(i % 251) as u8; (i as usize * 37) % 2000 + 1];
            c.write_all(&chunk).await.unwrap();
            want.extend_from_slice(&chunk);
            if i % 7 == 0 {
                c.flush().await.unwrap();
            }
        }
        c.shutdown().await.unwrap();
        let mut got = Vec::new();
        peer.read_to_end(&mut got).await.unwrap();
        assert_eq!(got.len(), want.len());
        assert!(got == want, "bytes reordered or damaged");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn writes_beyond_the_high_water_mark_wait_and_still_arrive() {
        let (mut c, mut peer) = pair().await;
        let big = vec![7u8; 3 * HIGH_WATER + 11];
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            peer.read_to_end(&mut got).await.unwrap();
            got
        });
        c.write_all(&big).await.unwrap();
        c.shutdown().await.unwrap();
        assert_eq!(reader.await.unwrap(), big);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn dropping_the_stream_still_delivers_what_was_flushed() {
        let (mut c, mut peer) = pair().await;
        c.write_all(b"last words").await.unwrap();
        c.flush().await.unwrap();
        drop(c);
        let mut got = Vec::new();
        peer.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"last words");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_write_error_reaches_the_writer() {
        let (mut c, peer) = pair().await;
        // With a zero linger time, closing resets the connection (RST, not FIN).
        peer.set_zero_linger().unwrap();
        drop(peer);
        let mut failed = false;
        for _ in 0..200 {
            let r = async {
                c.write_all(&[1u8; 4096]).await?;
                c.flush().await
            }
            .await;
            if r.is_err() {
                failed = true;
                break;
            }
            tokio::task::yield_now().await;
        }
        assert!(failed, "writes to a reset connection kept succeeding");
    }
}
