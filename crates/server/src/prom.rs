//! `/metrics`: the Prometheus text exposition, through the `prometheus` crate. etcd's
//! metric names where the meaning is the same (so etcd's dashboards and alerts work),
//! `synod_*` for the rest. Counters and gauges kept as plain atomics are read from the
//! live state at each scrape; the latencies, the per-peer and per-method counters and
//! the pending proposals are `prometheus` families that live in [`Metrics`] and are
//! registered into each scrape's registry.

use crate::api::Api;
use crate::state::Metrics;
use engine::Role;
use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, IntGaugeVec, Opts, Registry,
};
use std::sync::atomic::AtomicU64;

/// etcd's buckets for its disk latencies (WAL fsync, backend commit): 1 ms doubling 14
/// times.
fn disk_buckets() -> Vec<f64> {
    prometheus::exponential_buckets(0.001, 2.0, 14).expect("constant buckets")
}

/// etcd's buckets for `etcd_network_peer_round_trip_time_seconds`: 0.1 ms doubling 16
/// times.
fn round_trip_buckets() -> Vec<f64> {
    prometheus::exponential_buckets(0.0001, 2.0, 16).expect("constant buckets")
}

// The families below have constant, valid names: building one cannot fail.

fn histogram(name: &str, help: &str, buckets: Vec<f64>) -> Histogram {
    Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets)).expect("a valid family")
}

fn histogram_vec(name: &str, help: &str, label: &str, buckets: Vec<f64>) -> HistogramVec {
    HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), &[label])
        .expect("a valid family")
}

fn counter_vec(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    IntCounterVec::new(Opts::new(name, help), labels).expect("a valid family")
}

impl Default for Metrics {
    fn default() -> Metrics {
        let buckets = disk_buckets();
        Metrics {
            wal_fsync_seconds: histogram(
                "etcd_disk_wal_fsync_duration_seconds",
                "The latency distributions of fsync called by WAL.",
                buckets.clone(),
            ),
            backend_commit_seconds: histogram(
                "etcd_disk_backend_commit_duration_seconds",
                "The latency distributions of commit called by backend. Synod's backend (the \
                 store) lives in memory and reaches the disk only as snapshots: this is a \
                 snapshot's commit, its last bytes written and the file synced.",
                buckets,
            ),
            proposals_pending: IntGauge::new(
                "etcd_server_proposals_pending",
                "The current number of pending proposals to commit (writes proposed through \
                 this member and not answered yet).",
            )
            .expect("a valid family"),
            peer_sent_bytes: counter_vec(
                "etcd_network_peer_sent_bytes_total",
                "The total number of bytes sent to peers.",
                &["To"],
            ),
            peer_received_bytes: counter_vec(
                "etcd_network_peer_received_bytes_total",
                "The total number of bytes received from peers.",
                &["From"],
            ),
            peer_round_trip_seconds: histogram_vec(
                "etcd_network_peer_round_trip_time_seconds",
                "Round-Trip-Time histogram between peers (a transport ping to its pong, \
                 through both members' Raft threads).",
                "To",
                round_trip_buckets(),
            ),
            grpc_started: counter_vec(
                "grpc_server_started_total",
                "Total number of RPCs started on the server.",
                &["grpc_type", "grpc_service", "grpc_method"],
            ),
            grpc_handled: counter_vec(
                "grpc_server_handled_total",
                "Total number of RPCs completed on the server, regardless of success or failure.",
                &["grpc_type", "grpc_service", "grpc_method", "grpc_code"],
            ),
            accept_errors: counter_vec(
                "synod_accept_errors_total",
                "Failed accepts (out of file descriptors, say), each followed by a 100 ms pause.",
                &["listener"],
            ),
            listener_connections: IntGaugeVec::new(
                Opts::new(
                    "synod_listener_connections",
                    "Connections open on a listener: client and metrics hold at most \
                     --max-client-connections each; peer, those whose handshake is not \
                     checked yet.",
                ),
                &["listener"],
            )
            .expect("a valid family"),
            wal_writes: AtomicU64::new(0),
            proposals: AtomicU64::new(0),
            proposals_failed: AtomicU64::new(0),
            applied_entries: AtomicU64::new(0),
            snapshots: AtomicU64::new(0),
            snapshots_installed: AtomicU64::new(0),
            peer_sent: AtomicU64::new(0),
            peer_received: AtomicU64::new(0),
            commands_refused: AtomicU64::new(0),
            leader_changes: AtomicU64::new(0),
        }
    }
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
    let m = &api.shared.metrics;
    let families: [Box<dyn prometheus::core::Collector>; 10] = [
        Box::new(m.wal_fsync_seconds.clone()),
        Box::new(m.backend_commit_seconds.clone()),
        Box::new(m.proposals_pending.clone()),
        Box::new(m.peer_sent_bytes.clone()),
        Box::new(m.peer_received_bytes.clone()),
        Box::new(m.peer_round_trip_seconds.clone()),
        Box::new(m.grpc_started.clone()),
        Box::new(m.grpc_handled.clone()),
        Box::new(m.accept_errors.clone()),
        Box::new(m.listener_connections.clone()),
    ];
    for f in families {
        let _ = s.0.register(f);
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_builds_and_the_buckets_are_etcds() {
        let m = Metrics::default();
        m.peer_round_trip_seconds
            .with_label_values(&["1"])
            .observe(0.0003);
        assert_eq!(
            m.peer_round_trip_seconds
                .with_label_values(&["1"])
                .get_sample_count(),
            1
        );
        let disk = disk_buckets();
        assert_eq!((disk.len(), disk[0], disk[13]), (14, 0.001, 8.192));
        let trips = round_trip_buckets();
        assert_eq!((trips.len(), trips[0], trips[15]), (16, 0.0001, 3.2768));
    }
}
