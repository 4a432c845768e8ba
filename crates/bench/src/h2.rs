//! The load generator's KV client. By default a unary gRPC call goes straight onto an
//! h2 connection: the client task opens the stream, and the connection task wakes it
//! with the answer. tonic's `Channel` puts two more tasks and two queues in the way
//! (tower's buffer worker and hyper's dispatcher); on this 2-core machine that cost the
//! load generator 23–30 µs of CPU per request, taken from the servers it measures.
//! `--grpc-client tonic` keeps tonic's stack, for comparison.
//!
//! What the h2 client implements of gRPC: unary calls over cleartext HTTP/2
//! (`content-type: application/grpc`, `te: trailers`), uncompressed length-prefixed
//! messages, the status from the trailers (or from the headers of a trailers-only
//! answer), a per-request timeout. That is all `synod bench` sends.

use bytes::{BufMut, Bytes, BytesMut};
use etcdpb::etcdserverpb::{self as pb, kv_client::KvClient};
use h2::client::{Connection, SendRequest};
use http::header::{HeaderValue, CONTENT_TYPE, TE};
use http::{HeaderMap, Method, Request, Uri};
use prost::Message;
use server::corked::Corked;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tonic::transport::Channel;
use tonic::{Code, Status};

/// Which gRPC client the load generator uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum GrpcClient {
    /// Unary calls written straight onto an h2 connection (cleartext only).
    H2,
    /// tonic's `Channel` (tower buffer and hyper client).
    Tonic,
}

impl GrpcClient {
    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            GrpcClient::H2 => "h2",
            GrpcClient::Tonic => "tonic",
        }
    }
}

/// h2 flow-control windows: the ones hyper's client uses (2 MiB per stream, 5 MiB per
/// connection), so neither client waits on window updates the other would not.
const STREAM_WINDOW: u32 = 2 << 20;
const CONN_WINDOW: u32 = 5 << 20;

/// How long a connection that could not be re-established waits before the next try
/// (so requests on it fail a few times a second, not in a tight loop).
const REDIAL_PAUSE: Duration = Duration::from_millis(100);

/// One h2 connection; clones share it. A connection that breaks (the member died or
/// closed it) is dialled again by the next request that needs it.
#[derive(Clone)]
pub struct H2Conn {
    link: Arc<Link>,
    paths: Arc<Paths>,
    timeout: Duration,
}

/// The calls the load generator makes, as request URIs on one endpoint.
struct Paths {
    put: Uri,
    range: Uri,
    txn: Uri,
    watch: Uri,
}

struct Link {
    /// `host:port`.
    auth: String,
    connect: Duration,
    /// The live connection and its generation; `None` once it broke.
    send: Mutex<(u64, Option<SendRequest<Bytes>>)>,
    /// Held while dialling again; when the last attempt failed.
    redial: tokio::sync::Mutex<Option<Instant>>,
}

impl Link {
    /// Marks generation `generation` broken (a newer connection stays).
    fn broken(&self, generation: u64) {
        let mut send = self.send.lock().unwrap();
        if send.0 == generation {
            send.1 = None;
        }
    }

    /// The live connection, dialling a new one if it broke.
    async fn sender(self: &Arc<Self>) -> Result<(u64, SendRequest<Bytes>), Status> {
        if let (generation, Some(s)) = &*self.send.lock().unwrap() {
            return Ok((*generation, s.clone()));
        }
        let mut failed_at = self.redial.lock().await;
        if let (generation, Some(s)) = &*self.send.lock().unwrap() {
            return Ok((*generation, s.clone())); // another request dialled meanwhile
        }
        if let Some(at) = *failed_at {
            tokio::time::sleep_until((at + REDIAL_PAUSE).into()).await;
        }
        match handshake(&self.auth, self.connect).await {
            Ok((s, conn)) => {
                *failed_at = None;
                let mut send = self.send.lock().unwrap();
                send.0 += 1;
                send.1 = Some(s.clone());
                self.drive(send.0, conn);
                Ok((send.0, s))
            }
            Err(e) => {
                *failed_at = Some(Instant::now());
                Err(Status::unavailable(format!("{}: {e}", self.auth)))
            }
        }
    }

    /// Runs connection `generation` until it closes, then marks it broken.
    fn drive(self: &Arc<Self>, generation: u64, conn: Connection<Corked, Bytes>) {
        let link = Arc::downgrade(self);
        tokio::spawn(async move {
            let _ = conn.await;
            if let Some(link) = link.upgrade() {
                link.broken(generation);
            }
        });
    }
}

/// A TCP connection to `auth` and the HTTP/2 handshake on it.
async fn handshake(
    auth: &str,
    connect: Duration,
) -> Result<(SendRequest<Bytes>, Connection<Corked, Bytes>), String> {
    let connecting = async {
        let s = tokio::net::TcpStream::connect(auth).await?;
        s.set_nodelay(true)?;
        h2::client::Builder::new()
            .initial_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONN_WINDOW)
            .handshake::<_, Bytes>(Corked::new(s))
            .await
            .map_err(std::io::Error::other)
    };
    match tokio::time::timeout(connect, connecting).await {
        Err(_) => Err(format!("no connection within {connect:?}")),
        Ok(Err(e)) => Err(format!("cannot connect: {e}")),
        Ok(Ok(x)) => Ok(x),
    }
}

/// One KV connection of either kind; clones share the connection.
#[derive(Clone)]
pub enum Kv {
    Tonic(KvClient<Channel>),
    H2(H2Conn),
}

impl Kv {
    pub async fn put(&mut self, r: pb::PutRequest) -> Result<pb::PutResponse, Status> {
        match self {
            Kv::Tonic(c) => c.put(r).await.map(|x| x.into_inner()),
            Kv::H2(c) => c.unary(&c.paths.put, &r).await,
        }
    }

    pub async fn range(&mut self, r: pb::RangeRequest) -> Result<pb::RangeResponse, Status> {
        match self {
            Kv::Tonic(c) => c.range(r).await.map(|x| x.into_inner()),
            Kv::H2(c) => c.unary(&c.paths.range, &r).await,
        }
    }

    pub async fn txn(&mut self, r: pb::TxnRequest) -> Result<pb::TxnResponse, Status> {
        match self {
            Kv::Tonic(c) => c.txn(r).await.map(|x| x.into_inner()),
            Kv::H2(c) => c.unary(&c.paths.txn, &r).await,
        }
    }
}

/// `host:port` of an endpoint given as `host:port` or `http://host:port`.
fn authority(ep: &str) -> Result<&str, String> {
    if ep.starts_with("https://") {
        return Err(format!(
            "endpoint {ep}: the h2 client speaks cleartext only (use --grpc-client tonic)"
        ));
    }
    Ok(ep.trim_start_matches("http://").trim_end_matches('/'))
}

/// One h2 connection to `ep`, established now.
pub async fn dial_h2(ep: &str, connect: Duration, request: Duration) -> Result<H2Conn, String> {
    let auth = authority(ep)?;
    let uri = |method: &str| {
        format!("http://{auth}/etcdserverpb.KV/{method}")
            .parse::<Uri>()
            .map_err(|e| format!("endpoint {ep}: {e}"))
    };
    let (put, range, txn) = (uri("Put")?, uri("Range")?, uri("Txn")?);
    let watch = format!("http://{auth}/etcdserverpb.Watch/Watch")
        .parse::<Uri>()
        .map_err(|e| format!("endpoint {ep}: {e}"))?;
    let (send, conn) = handshake(auth, connect)
        .await
        .map_err(|e| format!("endpoint {ep}: {e}"))?;
    let link = Arc::new(Link {
        auth: auth.to_string(),
        connect,
        send: Mutex::new((0, Some(send))),
        redial: tokio::sync::Mutex::new(None),
    });
    link.drive(0, conn);
    Ok(H2Conn {
        link,
        paths: Arc::new(Paths {
            put,
            range,
            txn,
            watch,
        }),
        timeout: request,
    })
}

impl H2Conn {
    /// One unary call of `path`, within the request timeout.
    async fn unary<Q: Message, R: Message + Default>(
        &self,
        path: &Uri,
        q: &Q,
    ) -> Result<R, Status> {
        match tokio::time::timeout(self.timeout, self.call(path, q)).await {
            Ok(r) => r,
            Err(_) => Err(Status::deadline_exceeded(format!(
                "no answer within {:?}",
                self.timeout
            ))),
        }
    }

    /// Opens a Watch call and sends `first` on it: the request body, open for more
    /// framed `WatchRequest`s, and the answer's body once its headers came (a server
    /// may send them only with its first answer, as etcd's does).
    pub async fn open_watch(
        &self,
        first: &pb::WatchRequest,
    ) -> Result<(h2::SendStream<Bytes>, h2::RecvStream), Status> {
        let (_, body, recv) = self.open(&self.paths.watch, frame(first), false).await?;
        Ok((body, recv))
    }

    /// Starts a call of `path` with the message `first` (the request's end when
    /// `last`) and waits for the answer's headers: the connection's generation, the
    /// request body and the answer's body.
    async fn open(
        &self,
        path: &Uri,
        first: Bytes,
        last: bool,
    ) -> Result<(u64, h2::SendStream<Bytes>, h2::RecvStream), Status> {
        let (generation, send) = self.link.sender().await?;
        let failed = |e: h2::Error| self.failed(generation, e);
        let mut send = send.ready().await.map_err(|e| {
            self.link.broken(generation); // only a dead connection is never ready
            h2_status(e)
        })?;
        let mut req = Request::new(());
        *req.method_mut() = Method::POST;
        *req.uri_mut() = path.clone();
        let h = req.headers_mut();
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
        h.insert(TE, HeaderValue::from_static("trailers"));
        let (answer, mut body) = send.send_request(req, false).map_err(failed)?;
        body.send_data(first, last).map_err(failed)?;
        let (head, recv) = answer.await.map_err(failed)?.into_parts();
        // A trailers-only answer (an error) carries its status in the headers.
        grpc_status(&head.headers)?;
        if head.status != http::StatusCode::OK {
            return Err(Status::unknown(format!("HTTP status {}", head.status)));
        }
        Ok((generation, body, recv))
    }

    /// `e` as a status, marking connection `generation` broken when `e` says so.
    fn failed(&self, generation: u64, e: h2::Error) -> Status {
        if e.is_io() || e.is_go_away() {
            self.link.broken(generation);
        }
        h2_status(e)
    }

    async fn call<Q: Message, R: Message + Default>(&self, path: &Uri, q: &Q) -> Result<R, Status> {
        let (generation, _body, mut recv) = self.open(path, frame(q), true).await?;
        let failed = |e: h2::Error| self.failed(generation, e);
        let mut msg = BytesMut::new();
        while let Some(chunk) = recv.data().await {
            let chunk = chunk.map_err(failed)?;
            let _ = recv.flow_control().release_capacity(chunk.len());
            msg.extend_from_slice(&chunk);
        }
        match recv.trailers().await.map_err(failed)? {
            Some(t) if t.contains_key("grpc-status") => grpc_status(&t)?,
            _ => return Err(Status::internal("answer without a grpc-status")),
        }
        unframe(&msg)
    }
}

/// `q` as one gRPC message: no compression, 4-byte big-endian length, the message.
pub fn frame<Q: Message>(q: &Q) -> Bytes {
    let len = q.encoded_len();
    let mut b = BytesMut::with_capacity(5 + len);
    b.put_u8(0);
    b.put_u32(len as u32);
    q.encode(&mut b).expect("capacity reserved");
    b.freeze()
}

/// The one message of a unary answer.
fn unframe<R: Message + Default>(b: &[u8]) -> Result<R, Status> {
    let bad = |what: &str| Status::internal(format!("malformed gRPC answer: {what}"));
    let (head, rest) = b.split_at_checked(5).ok_or_else(|| bad("short frame"))?;
    if head[0] != 0 {
        return Err(bad("compressed message"));
    }
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    if rest.len() != len {
        return Err(bad("length does not match"));
    }
    R::decode(rest).map_err(|e| bad(&e.to_string()))
}

/// `Err` for a gRPC status other than OK in `h`; `Ok` when OK or absent.
pub fn grpc_status(h: &HeaderMap) -> Result<(), Status> {
    match Status::from_header_map(h) {
        Some(s) if s.code() != Code::Ok => Err(s),
        _ => Ok(()),
    }
}

pub fn h2_status(e: h2::Error) -> Status {
    let code = if e.is_io() || e.is_go_away() || e.reason() == Some(h2::Reason::REFUSED_STREAM) {
        Code::Unavailable
    } else {
        Code::Internal
    };
    Status::new(code, format!("h2: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_framed_message_reads_back() {
        let q = pb::PutRequest {
            key: b"k".to_vec(),
            value: vec![7; 300],
            ..Default::default()
        };
        let b = frame(&q);
        assert_eq!(b[0], 0);
        assert_eq!(
            u32::from_be_bytes([b[1], b[2], b[3], b[4]]) as usize,
            b.len() - 5
        );
        assert_eq!(unframe::<pb::PutRequest>(&b).unwrap(), q);
    }

    #[test]
    fn malformed_answers_are_errors_not_panics() {
        let ok = frame(&pb::PutResponse::default());
        assert!(unframe::<pb::PutResponse>(&ok).is_ok());
        assert!(unframe::<pb::PutResponse>(&ok[..3]).is_err());
        let mut compressed = ok.to_vec();
        compressed[0] = 1;
        assert!(unframe::<pb::PutResponse>(&compressed).is_err());
        let mut long = ok.to_vec();
        long.push(0);
        assert!(unframe::<pb::PutResponse>(&long).is_err());
    }

    #[test]
    fn status_comes_from_grpc_status_and_message() {
        let mut h = HeaderMap::new();
        assert!(grpc_status(&h).is_ok());
        h.insert("grpc-status", HeaderValue::from_static("0"));
        assert!(grpc_status(&h).is_ok());
        h.insert("grpc-status", HeaderValue::from_static("9"));
        h.insert(
            "grpc-message",
            HeaderValue::from_static("etcdserver: no leader"),
        );
        let s = grpc_status(&h).unwrap_err();
        assert_eq!(s.code(), Code::FailedPrecondition);
        assert_eq!(s.message(), "etcdserver: no leader");
    }

    #[test]
    fn tls_endpoints_are_refused_with_a_pointer() {
        assert!(authority("https://h:1")
            .unwrap_err()
            .contains("--grpc-client tonic"));
        assert_eq!(authority("http://h:1").unwrap(), "h:1");
        assert_eq!(authority("h:1").unwrap(), "h:1");
    }
}
