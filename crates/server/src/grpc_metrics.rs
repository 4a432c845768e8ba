//! `grpc_server_started_total` and `grpc_server_handled_total` as etcd exports them
//! (go-grpc-prometheus): a tower layer on the tonic server sees each call's path when
//! it starts and its final status code when it ends — `grpc-status` in the response
//! headers (an error answered at once) or in the trailers after the body. A call whose
//! caller went away first (its handler or its body dropped) counts as `Canceled`.
//!
//! Only the methods Synod serves are counted, so a client cannot grow the label sets
//! by calling made-up paths (tonic answers those `Unimplemented`, uncounted).

use http_body::{Body, Frame, SizeHint};
use prometheus::IntCounterVec;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use tonic::codegen::http::{HeaderMap, Request, Response};
use tonic::codegen::Service;
use tonic::Code;

/// How a method streams (the `grpc_type` label, as go-grpc-prometheus names it).
const UNARY: &str = "unary";
const BIDI: &str = "bidi_stream";
const SERVER_STREAM: &str = "server_stream";

/// The services Synod serves and their methods with their kinds, as etcd's
/// `rpc.proto` names them.
const METHODS: [(&str, &[(&str, &str)]); 7] = [
    (
        "etcdserverpb.KV",
        &[
            ("Range", UNARY),
            ("Put", UNARY),
            ("DeleteRange", UNARY),
            ("Txn", UNARY),
            ("Compact", UNARY),
        ],
    ),
    ("etcdserverpb.Watch", &[("Watch", BIDI)]),
    (
        "etcdserverpb.Lease",
        &[
            ("LeaseGrant", UNARY),
            ("LeaseRevoke", UNARY),
            ("LeaseKeepAlive", BIDI),
            ("LeaseTimeToLive", UNARY),
            ("LeaseLeases", UNARY),
        ],
    ),
    (
        "etcdserverpb.Cluster",
        &[
            ("MemberAdd", UNARY),
            ("MemberRemove", UNARY),
            ("MemberUpdate", UNARY),
            ("MemberList", UNARY),
            ("MemberPromote", UNARY),
        ],
    ),
    (
        "etcdserverpb.Maintenance",
        &[
            ("Alarm", UNARY),
            ("Status", UNARY),
            ("Defragment", UNARY),
            ("Hash", UNARY),
            ("HashKV", UNARY),
            ("Snapshot", SERVER_STREAM),
            ("MoveLeader", UNARY),
        ],
    ),
    ("v3lockpb.Lock", &[("Lock", UNARY), ("Unlock", UNARY)]),
    (
        "v3electionpb.Election",
        &[
            ("Campaign", UNARY),
            ("Proclaim", UNARY),
            ("Leader", UNARY),
            ("Observe", SERVER_STREAM),
            ("Resign", UNARY),
        ],
    ),
];

/// A counted method: its kind, service and name.
type Method = (&'static str, &'static str, &'static str);

/// The method a request path names, if Synod serves it.
fn method_of(path: &str) -> Option<Method> {
    let (service, method) = path.strip_prefix('/')?.split_once('/')?;
    let (service, methods) = METHODS.iter().find(|(s, _)| *s == service)?;
    let (method, kind) = methods.iter().find(|(m, _)| *m == method)?;
    Some((kind, service, method))
}

/// A status code's name as grpc-go spells it (the `grpc_code` label).
fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "Canceled",
        Code::Unknown => "Unknown",
        Code::InvalidArgument => "InvalidArgument",
        Code::DeadlineExceeded => "DeadlineExceeded",
        Code::NotFound => "NotFound",
        Code::AlreadyExists => "AlreadyExists",
        Code::PermissionDenied => "PermissionDenied",
        Code::ResourceExhausted => "ResourceExhausted",
        Code::FailedPrecondition => "FailedPrecondition",
        Code::Aborted => "Aborted",
        Code::OutOfRange => "OutOfRange",
        Code::Unimplemented => "Unimplemented",
        Code::Internal => "Internal",
        Code::Unavailable => "Unavailable",
        Code::DataLoss => "DataLoss",
        Code::Unauthenticated => "Unauthenticated",
    }
}

/// The status code in `headers` (response headers or trailers), if any.
fn status_in(headers: &HeaderMap) -> Option<Code> {
    headers
        .get("grpc-status")
        .map(|v| Code::from_bytes(v.as_bytes()))
}

/// One counted call: counted as handled exactly once, `Canceled` if dropped unfinished.
struct Call {
    handled: IntCounterVec,
    method: Method,
    done: bool,
}

impl Call {
    fn finish(mut self, code: Code) {
        self.count(code_name(code));
        self.done = true;
    }

    fn count(&self, code: &str) {
        let (kind, service, method) = self.method;
        let labels = [kind, service, method, code];
        self.handled.with_label_values(&labels).inc();
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        if !self.done {
            self.count("Canceled");
        }
    }
}

/// The layer: wraps the tonic server's routes.
#[derive(Clone)]
pub struct GrpcMetricsLayer {
    started: IntCounterVec,
    handled: IntCounterVec,
}

impl GrpcMetricsLayer {
    /// Counts into `started` (`grpc_server_started_total`) and `handled`
    /// (`grpc_server_handled_total`).
    pub fn new(started: IntCounterVec, handled: IntCounterVec) -> GrpcMetricsLayer {
        GrpcMetricsLayer { started, handled }
    }
}

impl<S> tower_layer::Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetrics<S>;

    fn layer(&self, inner: S) -> GrpcMetrics<S> {
        GrpcMetrics {
            inner,
            layer: self.clone(),
        }
    }
}

/// The counting service around `S`.
#[derive(Clone)]
pub struct GrpcMetrics<S> {
    inner: S,
    layer: GrpcMetricsLayer,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for GrpcMetrics<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Future: Send + 'static,
{
    type Response = Response<Counted<ResBody>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let call = method_of(req.uri().path()).map(|method| {
            let (kind, service, name) = method;
            self.layer
                .started
                .with_label_values(&[kind, service, name])
                .inc();
            Call {
                handled: self.layer.handled.clone(),
                method,
                done: false,
            }
        });
        let response = self.inner.call(req);
        Box::pin(async move {
            let mut call = call;
            let (parts, body) = response.await?.into_parts();
            if let Some(code) = status_in(&parts.headers) {
                // Trailers-only: the call ended with its headers.
                if let Some(c) = call.take() {
                    c.finish(code);
                }
            }
            Ok(Response::from_parts(parts, Counted { inner: body, call }))
        })
    }
}

/// A response body that counts its call when the trailers carrying the status pass.
pub struct Counted<B> {
    inner: B,
    call: Option<Call>,
}

impl<B: Body + Unpin> Body for Counted<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(code) = frame.trailers_ref().and_then(status_in) {
                if let Some(c) = self.call.take() {
                    c.finish(code);
                }
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;
    use tonic::codegen::Bytes;

    #[test]
    fn the_table_names_every_method_of_the_proto_and_only_those_paths_count() {
        let protos = [
            (
                "etcdserverpb",
                include_str!("../../etcdpb/proto/etcdserverpb/rpc.proto"),
            ),
            (
                "v3lockpb",
                include_str!("../../etcdpb/proto/v3lockpb/v3lock.proto"),
            ),
            (
                "v3electionpb",
                include_str!("../../etcdpb/proto/v3electionpb/v3election.proto"),
            ),
        ];
        let mut in_proto = Vec::new();
        for (package, proto) in protos {
            let mut service = "";
            for line in proto.lines().map(str::trim) {
                if let Some(rest) = line.strip_prefix("service ") {
                    service = rest.trim_end_matches(" {").trim();
                } else if let Some(rest) = line.strip_prefix("rpc ") {
                    let method = rest.split('(').next().unwrap_or_default().trim();
                    let (args, returns) = rest.split_once("returns").unwrap_or((rest, ""));
                    let kind = match (args.contains("(stream "), returns.contains("(stream ")) {
                        (false, false) => UNARY,
                        (true, true) => BIDI,
                        (false, true) => SERVER_STREAM,
                        (true, false) => panic!("{method}: no client-stream kind in the table"),
                    };
                    in_proto.push(format!("{kind} {package}.{service}/{method}"));
                }
            }
        }
        let in_table: Vec<String> = METHODS
            .iter()
            .flat_map(|(s, ms)| ms.iter().map(move |(m, k)| format!("{k} {s}/{m}")))
            .collect();
        assert_eq!(in_table, in_proto);
        assert_eq!(
            method_of("/etcdserverpb.KV/Put"),
            Some((UNARY, "etcdserverpb.KV", "Put"))
        );
        assert_eq!(
            method_of("/etcdserverpb.Watch/Watch"),
            Some((BIDI, "etcdserverpb.Watch", "Watch"))
        );
        for path in [
            "/etcdserverpb.KV/Nope",
            "/x/Put",
            "etcdserverpb.KV/Put",
            "/",
        ] {
            assert_eq!(method_of(path), None, "{path}");
        }
        assert_eq!(code_name(Code::Cancelled), "Canceled");
        assert_eq!(code_name(Code::Ok), "OK");
    }

    /// A body of the given frames.
    struct Frames(VecDeque<Frame<Bytes>>);

    impl Body for Frames {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            Poll::Ready(self.0.pop_front().map(Ok))
        }
    }

    fn trailers(code: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("grpc-status", code.parse().unwrap());
        h
    }

    /// A frame of a test body.
    #[derive(Clone)]
    enum Part {
        Data(&'static [u8]),
        Trailers(HeaderMap),
    }

    /// Answers every call with `headers` and a body of `parts`.
    #[derive(Clone)]
    struct Answer {
        headers: HeaderMap,
        parts: Vec<Part>,
    }

    impl Service<Request<()>> for Answer {
        type Response = Response<Frames>;
        type Error = std::convert::Infallible;
        type Future = std::future::Ready<Result<Response<Frames>, Self::Error>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: Request<()>) -> Self::Future {
            let frames = self
                .parts
                .iter()
                .map(|p| match p {
                    Part::Data(d) => Frame::data(Bytes::from_static(d)),
                    Part::Trailers(t) => Frame::trailers(t.clone()),
                })
                .collect();
            let mut r = Response::new(Frames(frames));
            *r.headers_mut() = self.headers.clone();
            std::future::ready(Ok(r))
        }
    }

    /// Calls `path` on a counting `answer`, reading `frames_read` frames of the body
    /// before dropping it; returns the handled counts by code for that method.
    fn run(path: &str, answer: Answer, frames_read: usize) -> (u64, Vec<(String, u64)>) {
        use tower_layer::Layer;
        let layer = GrpcMetricsLayer::new(
            prometheus::IntCounterVec::new(
                prometheus::Opts::new("s", "s"),
                &["grpc_type", "grpc_service", "grpc_method"],
            )
            .unwrap(),
            prometheus::IntCounterVec::new(
                prometheus::Opts::new("h", "h"),
                &["grpc_type", "grpc_service", "grpc_method", "grpc_code"],
            )
            .unwrap(),
        );
        let mut svc = layer.layer(answer);
        let req = Request::builder().uri(path).body(()).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let mut body = rt.block_on(svc.call(req)).unwrap().into_body();
        for _ in 0..frames_read {
            let _ = rt.block_on(std::future::poll_fn(|cx| {
                Pin::new(&mut body).poll_frame(cx)
            }));
        }
        drop(body);
        let started = layer
            .started
            .with_label_values(&["unary", "etcdserverpb.KV", "Put"]);
        let handled = ["OK", "NotFound", "Canceled"]
            .iter()
            .map(|code| {
                let l = ["unary", "etcdserverpb.KV", "Put", code];
                (code.to_string(), layer.handled.with_label_values(&l).get())
            })
            .filter(|(_, n)| *n > 0)
            .collect();
        (started.get(), handled)
    }

    #[test]
    fn each_call_is_counted_once_with_the_code_that_ended_it() {
        let ok = Answer {
            headers: HeaderMap::new(),
            parts: vec![Part::Data(b"x"), Part::Trailers(trailers("0"))],
        };
        let one = |code: &str| vec![(code.to_string(), 1)];
        assert_eq!(run("/etcdserverpb.KV/Put", ok.clone(), 2), (1, one("OK")));
        // Dropped before its trailers: the caller went away.
        assert_eq!(
            run("/etcdserverpb.KV/Put", ok.clone(), 1),
            (1, one("Canceled"))
        );
        let trailers_only = Answer {
            headers: trailers("5"),
            parts: Vec::new(),
        };
        assert_eq!(
            run("/etcdserverpb.KV/Put", trailers_only, 0),
            (1, one("NotFound"))
        );
        // A path Synod does not serve is not counted at all.
        assert_eq!(run("/etcdserverpb.KV/Watch", ok, 2), (0, Vec::new()));
    }
}
