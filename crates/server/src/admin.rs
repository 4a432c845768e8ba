//! Admin HTTP on `--listen-metrics-urls`: `/health`, `/metrics` (Prometheus text),
//! `/status` (JSON) and `/version`. A deliberately small HTTP/1.1 responder: one
//! request per connection, GET only.

use crate::api::Api;
use crate::state::Metrics;
use engine::Role;
use std::fmt::Write as _;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Serves admin requests until the listener fails.
pub async fn serve(listener: TcpListener, api: Api) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
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
            "/metrics" => (200, "text/plain; version=0.0.4", metrics(&api)),
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

/// Each peer's suspicion level as labelled gauges.
fn peer_metrics(api: &Api, out: &mut String) {
    let suspicions = api.shared.health.lock().unwrap().suspicions();
    out.push_str("# HELP synod_peer_phi The failure detector's suspicion level of a peer (phi accrual).\n# TYPE synod_peer_phi gauge\n");
    for p in &suspicions {
        let _ = writeln!(out, "synod_peer_phi{{peer=\"{:x}\"}} {:.3}", p.id.0, p.phi);
    }
    out.push_str("# HELP synod_peer_suspected Whether a peer's phi is at or above the threshold.\n# TYPE synod_peer_suspected gauge\n");
    for p in &suspicions {
        let suspected = p.verdict == detector::Verdict::Suspected;
        let _ = writeln!(
            out,
            "synod_peer_suspected{{peer=\"{:x}\"}} {}",
            p.id.0, suspected as u8
        );
    }
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

fn metrics(api: &Api) -> String {
    let st = api.shared.status();
    let m = &api.shared.metrics;
    let (keys, bytes, rev) = {
        let s = api.shared.store.read();
        (s.stored_keys(), s.approx_bytes(), s.revision())
    };
    let g = Metrics::get;
    let rows: Vec<(&str, &str, &str, String)> = vec![
        (
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size in bytes.",
            resident_bytes().to_string(),
        ),
        (
            "etcd_server_has_leader",
            "gauge",
            "Whether a leader is known.",
            (st.leader.is_some() as u8).to_string(),
        ),
        (
            "etcd_server_is_leader",
            "gauge",
            "Whether this member leads.",
            ((st.role == Role::Leader) as u8).to_string(),
        ),
        (
            "synod_commands_refused_total",
            "counter",
            "Commands forwarded by peers that failed validation and never entered the log.",
            g(&m.commands_refused).to_string(),
        ),
        (
            "etcd_server_leader_changes_seen_total",
            "counter",
            "Leader changes seen.",
            g(&m.leader_changes).to_string(),
        ),
        (
            "etcd_server_proposals_committed_total",
            "gauge",
            "Commit index.",
            st.commit.to_string(),
        ),
        (
            "etcd_server_proposals_applied_total",
            "gauge",
            "Applied index.",
            st.applied.to_string(),
        ),
        (
            "etcd_server_proposals_failed_total",
            "counter",
            "Failed proposals.",
            g(&m.proposals_failed).to_string(),
        ),
        (
            "synod_raft_term",
            "gauge",
            "Current Raft term.",
            st.term.to_string(),
        ),
        (
            "synod_raft_last_index",
            "gauge",
            "Last log index.",
            st.last_index.to_string(),
        ),
        (
            "synod_raft_snapshot_index",
            "gauge",
            "Log compaction point.",
            st.snapshot_index.to_string(),
        ),
        (
            "synod_raft_proposals_total",
            "counter",
            "Proposals accepted as leader.",
            g(&m.proposals).to_string(),
        ),
        (
            "synod_raft_snapshots_total",
            "counter",
            "Snapshots taken.",
            g(&m.snapshots).to_string(),
        ),
        (
            "synod_raft_snapshots_installed_total",
            "counter",
            "Snapshots installed from a leader.",
            g(&m.snapshots_installed).to_string(),
        ),
        (
            "synod_peer_messages_sent_total",
            "counter",
            "Raft messages sent.",
            g(&m.peer_sent).to_string(),
        ),
        (
            "synod_peer_messages_received_total",
            "counter",
            "Raft messages received.",
            g(&m.peer_received).to_string(),
        ),
        (
            "synod_wal_writes_total",
            "counter",
            "Persist requests written to the WAL.",
            g(&m.wal_writes).to_string(),
        ),
        (
            "etcd_disk_wal_fsync_duration_seconds_count",
            "counter",
            "WAL fdatasyncs.",
            g(&m.wal_fsyncs).to_string(),
        ),
        (
            "etcd_disk_wal_fsync_duration_seconds_sum",
            "counter",
            "Seconds spent in WAL fdatasyncs.",
            format!("{:.6}", g(&m.wal_fsync_micros) as f64 / 1e6),
        ),
        (
            "etcd_mvcc_db_total_size_in_bytes",
            "gauge",
            "Approximate store size.",
            bytes.to_string(),
        ),
        (
            "synod_mvcc_keys",
            "gauge",
            "Keys with history in the store.",
            keys.to_string(),
        ),
        (
            "synod_mvcc_revision",
            "gauge",
            "Store revision.",
            rev.to_string(),
        ),
    ];
    let mut out = String::new();
    for (name, kind, help, value) in rows {
        let _ = write!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
        );
    }
    peer_metrics(api, &mut out);
    out
}
