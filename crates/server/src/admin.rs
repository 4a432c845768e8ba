//! Admin HTTP on `--listen-metrics-urls`: `/health`, `/metrics` (Prometheus text),
//! `/status` (JSON) and `/version`. A deliberately small HTTP/1.1 responder: one
//! request per connection, GET only.

use crate::api::Api;
use std::fmt::Write as _;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Serves admin requests until the listener fails.
pub async fn serve(listener: TcpListener, api: Api) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            // Out of file descriptors, say: back off instead of spinning.
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let api = api.clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(Duration::from_secs(10), handle(stream, api)).await;
        });
    }
}

async fn handle(mut stream: TcpStream, api: Api) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut chunk).await?;
        if n == 0 || buf.len() > 8192 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let line = String::from_utf8_lossy(&buf);
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (code, ctype, body) = if method != "GET" {
        (405, "text/plain", "method not allowed\n".to_string())
    } else {
        match path.split('?').next().unwrap_or("") {
            "/health" => health(&api).await,
            "/metrics" => (200, "text/plain; version=0.0.4", crate::prom::render(&api)),
            "/status" => (200, "application/json", status_json(&api)),
            "/version" => (
                200,
                "application/json",
                format!(
                    "{{\"etcdserver\":\"{v}\",\"etcdcluster\":\"{v}\",\"synod\":\"{}\"}}",
                    env!("CARGO_PKG_VERSION"),
                    v = crate::maint_svc::API_VERSION
                ),
            ),
            _ => (404, "text/plain", "404 page not found\n".to_string()),
        }
    };
    let reason = match code {
        200 => "OK",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Service Unavailable",
    };
    let head = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}

/// Healthy only when a leader is known and a linearizable read succeeds.
async fn health(api: &Api) -> (u16, &'static str, String) {
    let result = match api.await_leader().await {
        Err(s) => Err(s.message().to_string()),
        Ok(()) => api
            .read_barrier()
            .await
            .map_err(|s| s.message().to_string()),
    };
    match result {
        Ok(()) => (
            200,
            "application/json",
            r#"{"health":"true","reason":""}"#.into(),
        ),
        Err(why) => (
            503,
            "application/json",
            format!(r#"{{"health":"false","reason":{}}}"#, json_str(&why)),
        ),
    }
}

fn json_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn status_json(api: &Api) -> String {
    let st = api.shared.status();
    let suspicions = api.shared.health.lock().unwrap().suspicions();
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
    let status = serde_json::json!({
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
        "phi_threshold": api.shared.health.lock().unwrap().threshold,
        "peers": peers,
    });
    format!("{status}\n")
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
