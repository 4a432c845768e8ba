//! `/metrics`: the Prometheus text exposition, through the `prometheus` crate. etcd's
//! metric names where the meaning is the same (so etcd's dashboards and alerts work),
//! `synod_*` for the rest. Counters and gauges are read from the live state at each
//! scrape; the WAL fsync latency is a real histogram with etcd's buckets.

use crate::api::Api;
use crate::state::Metrics;
use engine::Role;
use prometheus::{Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, IntCounter, Opts, Registry};

/// etcd's buckets for `etcd_disk_wal_fsync_duration_seconds`: 1 ms doubling 14 times.
pub fn wal_fsync_histogram() -> Histogram {
    let buckets = prometheus::exponential_buckets(0.001, 2.0, 14).unwrap_or_default();
    let opts = HistogramOpts::new(
        "etcd_disk_wal_fsync_duration_seconds",
        "The latency distributions of fsync called by WAL.",
    )
    .buckets(buckets);
    Histogram::with_opts(opts).unwrap_or_else(|_| {
        Histogram::with_opts(HistogramOpts::new("synod_unused", "unused"))
            .expect("a plain histogram")
    })
}

/// A registry filled for one scrape (metric names are constants: registration cannot
/// clash, and a failure drops only that metric).
struct Scrape(Registry);

impl Scrape {
    fn gauge(&self, name: &str, help: &str, value: f64) {
        if let Ok(g) = Gauge::new(name, help) {
            g.set(value);
            let _ = self.0.register(Box::new(g));
        }
    }

    fn counter(&self, name: &str, help: &str, value: u64) {
        if let Ok(c) = IntCounter::new(name, help) {
            c.inc_by(value);
            let _ = self.0.register(Box::new(c));
        }
    }

    fn per_peer(&self, name: &str, help: &str, values: &[(String, f64)]) {
        let Ok(v) = GaugeVec::new(Opts::new(name, help), &["peer"]) else {
            return;
        };
        for (peer, x) in values {
            v.with_label_values(&[peer.as_str()]).set(*x);
        }
        let _ = self.0.register(Box::new(v));
    }
}

/// The `/metrics` body.
pub fn render(api: &Api) -> String {
    let s = Scrape(Registry::new());
    for (name, help, value) in gauges(api) {
        s.gauge(name, help, value);
    }
    for (name, help, value) in counters(&api.shared.metrics) {
        s.counter(name, help, value);
    }
    let _ =
        s.0.register(Box::new(api.shared.metrics.wal_fsync_seconds.clone()));
    peer_gauges(api, &s);
    let mut out = Vec::new();
    let _ = prometheus::TextEncoder::new().encode(&s.0.gather(), &mut out);
    String::from_utf8(out).unwrap_or_default()
}

type Row = (&'static str, &'static str, f64);

/// Gauges read from the published status and the store.
fn gauges(api: &Api) -> Vec<Row> {
    let st = api.shared.status();
    let (keys, bytes, rev) = {
        let s = api.shared.store.read();
        (s.stored_keys(), s.approx_bytes(), s.revision())
    };
    let flag = |b: bool| b as u8 as f64;
    vec![
        (
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            crate::admin::resident_bytes() as f64,
        ),
        (
            "etcd_server_has_leader",
            "Whether a leader is known.",
            flag(st.leader.is_some()),
        ),
        (
            "etcd_server_is_leader",
            "Whether this member leads.",
            flag(st.role == Role::Leader),
        ),
        (
            "etcd_server_proposals_committed_total",
            "Commit index.",
            st.commit as f64,
        ),
        (
            "etcd_server_proposals_applied_total",
            "Applied index.",
            st.applied as f64,
        ),
        (
            "etcd_mvcc_db_total_size_in_bytes",
            "Approximate store size.",
            bytes as f64,
        ),
        (
            "synod_raft_term",
            "Current Raft term (durable).",
            st.term as f64,
        ),
        (
            "synod_raft_last_index",
            "Last log index.",
            st.last_index as f64,
        ),
        (
            "synod_raft_snapshot_index",
            "Log compaction point.",
            st.snapshot_index as f64,
        ),
        (
            "synod_mvcc_keys",
            "Keys with history in the store.",
            keys as f64,
        ),
        ("synod_mvcc_revision", "Store revision.", rev as f64),
    ]
}

/// Counters kept by the driver and the services.
fn counters(m: &Metrics) -> Vec<(&'static str, &'static str, u64)> {
    let g = Metrics::get;
    vec![
        (
            "etcd_server_leader_changes_seen_total",
            "Leader changes seen.",
            g(&m.leader_changes),
        ),
        (
            "etcd_server_proposals_failed_total",
            "Failed proposals.",
            g(&m.proposals_failed),
        ),
        (
            "synod_commands_refused_total",
            "Commands forwarded by peers that failed validation and never entered the log.",
            g(&m.commands_refused),
        ),
        (
            "synod_raft_proposals_total",
            "Proposals accepted as leader.",
            g(&m.proposals),
        ),
        (
            "synod_raft_snapshots_total",
            "Snapshots taken.",
            g(&m.snapshots),
        ),
        (
            "synod_raft_snapshots_installed_total",
            "Snapshots installed from a leader.",
            g(&m.snapshots_installed),
        ),
        (
            "synod_peer_messages_sent_total",
            "Raft messages sent.",
            g(&m.peer_sent),
        ),
        (
            "synod_peer_messages_received_total",
            "Raft messages received.",
            g(&m.peer_received),
        ),
        (
            "synod_wal_writes_total",
            "Persist requests written to the WAL.",
            g(&m.wal_writes),
        ),
    ]
}

/// The failure detector's φ and verdict per peer.
fn peer_gauges(api: &Api, s: &Scrape) {
    let suspicions = api.shared.health.lock().unwrap().suspicions();
    let label = |id: engine::NodeId| format!("{:x}", id.0);
    let phi: Vec<(String, f64)> = suspicions.iter().map(|p| (label(p.id), p.phi)).collect();
    let suspected: Vec<(String, f64)> = suspicions
        .iter()
        .map(|p| {
            (
                label(p.id),
                (p.verdict == detector::Verdict::Suspected) as u8 as f64,
            )
        })
        .collect();
    s.per_peer(
        "synod_peer_phi",
        "The failure detector's suspicion level of a peer (phi accrual).",
        &phi,
    );
    s.per_peer(
        "synod_peer_suspected",
        "Whether a peer's phi is at or above the threshold.",
        &suspected,
    );
}
