//! Admin HTTP: `/health`, `/livez`, `/readyz`, `/metrics` (Prometheus text), `/status`
//! (JSON) and `/version`, as an axum router. It answers on `--listen-metrics-urls` and
//! on the client port beside gRPC ([`crate::client_port`] hands it every connection
//! that is not HTTP/2), as etcd does.

use crate::api::Api;
use crate::listener::Listener;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::time::Duration;
use tokio::net::TcpStream;

/// Largest request head (and read buffer) accepted.
const MAX_HEAD_BYTES: usize = 64 << 10;

/// The admin routes.
pub fn router(api: Api) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/status", get(status))
        .route("/version", get(version))
        .with_state(api)
}

/// Serves admin requests on `listener` (`--listen-metrics-urls`); each request head
/// must arrive within `header_timeout`.
pub async fn serve(mut listener: Listener, api: Api, header_timeout: Duration) {
    let router = router(api);
    loop {
        let (stream, _, slot) = listener.accept().await;
        let router = router.clone();
        tokio::spawn(async move {
            serve_connection(stream, router, header_timeout).await;
            drop(slot);
        });
    }
}

/// Serves HTTP/1.1 on one connection: a bounded head, read within `header_timeout` (a
/// kept-alive connection waits at most that long for its next request, too).
pub async fn serve_connection(stream: TcpStream, router: Router, header_timeout: Duration) {
    let _ = stream.set_nodelay(true);
    let service = hyper_util::service::TowerToHyperService::new(router);
    let _ = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .max_buf_size(MAX_HEAD_BYTES)
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

fn json(code: StatusCode, value: serde_json::Value) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        value.to_string(),
    )
        .into_response()
}

/// `None` when a leader is known and a linearizable read succeeds, else why not.
async fn unhealthy(api: &Api) -> Option<String> {
    let result = match api.await_leader().await {
        Err(s) => Err(s),
        Ok(()) => api.read_barrier().await,
    };
    result.err().map(|s| s.message().to_string())
}

/// etcd's `/health`: `{"health":"true","reason":""}`, or 503 with the reason.
async fn health(State(api): State<Api>) -> Response {
    match unhealthy(&api).await {
        None => json(
            StatusCode::OK,
            serde_json::json!({"health": "true", "reason": ""}),
        ),
        Some(why) => json(
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({"health": "false", "reason": why}),
        ),
    }
}

/// etcd 3.5's `/livez`: the process answers.
async fn livez() -> &'static str {
    "ok\n"
}

/// etcd 3.5's `/readyz`: ready to serve linearizable requests.
async fn readyz(State(api): State<Api>) -> Response {
    match unhealthy(&api).await {
        None => "ok\n".into_response(),
        Some(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("[-]linearizable_read failed: {why}\n"),
        )
            .into_response(),
    }
}

async fn metrics(State(api): State<Api>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        crate::prom::render(&api),
    )
        .into_response()
}

async fn version() -> Response {
    let v = crate::maint_svc::API_VERSION;
    json(
        StatusCode::OK,
        serde_json::json!({"etcdserver": v, "etcdcluster": v, "synod": env!("CARGO_PKG_VERSION")}),
    )
}

async fn status(State(api): State<Api>) -> Response {
    json(StatusCode::OK, status_json(&api))
}

fn status_json(api: &Api) -> serde_json::Value {
    let st = api.shared.status();
    let (suspicions, threshold) = {
        let h = api.shared.health.lock().unwrap();
        (h.suspicions(), h.threshold)
    };
    let peers: Vec<serde_json::Value> = suspicions
        .iter()
        .map(|p| {
            serde_json::json!({
                "id": format!("{:x}", p.id.0),
                "match_index": st.peer_match.get(&p.id.0),
                "phi": (p.phi * 1000.0).round() / 1000.0,
                "suspicion": p.verdict.name(),
                "silent_ms": p.silent_ms,
            })
        })
        .collect();
    let rev = api.shared.store.read().revision();
    serde_json::json!({
        "member_id": format!("{:x}", api.shared.member_id.0),
        "name": api.shared.name,
        "role": st.role_detail,
        "term": st.term,
        "leader": st.leader.map_or(String::new(), |l| format!("{:x}", l.0)),
        "commit_index": st.commit,
        "applied_index": st.applied,
        "last_index": st.last_index,
        "snapshot_index": st.snapshot_index,
        "revision": rev,
        "phi_threshold": threshold,
        "peers": peers,
    })
}

/// Resident set size from /proc (0 where unavailable).
pub fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}
