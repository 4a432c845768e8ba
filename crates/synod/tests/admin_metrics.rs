//! `/metrics` from a real member parses with a Prometheus text parser and carries etcd's
//! names: the WAL fsync latency as a histogram with etcd's buckets, leadership gauges,
//! and the failure detector's φ per peer.

mod common;

use common::{http_get, ok, Cluster};
use prometheus_parse::{Scrape, Value};
use std::time::Duration;

#[test]
fn metrics_parse_and_the_fsync_latency_is_a_histogram_with_etcds_buckets() {
    common::ensure_etcdctl();
    let c = Cluster::start(3, 10_000);
    let leader = c.wait_leader(Duration::from_secs(20));
    for i in 0..5 {
        ok(c.etcdctl(&["put", &format!("k{i}"), "v"]), &c);
    }
    let (code, body) = http_get(c.members[leader].admin, "/metrics").expect("/metrics");
    assert_eq!(code, 200);
    let lines = body.lines().map(|l| Ok(l.to_string()));
    let scrape = Scrape::parse(lines).expect("Prometheus text");
    let sample = |name: &str| {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == name)
            .unwrap_or_else(|| panic!("no {name} in\n{body}"))
    };
    let Value::Histogram(buckets) = &sample("etcd_disk_wal_fsync_duration_seconds").value else {
        panic!("fsync latency is not a histogram:\n{body}");
    };
    let bounds: Vec<f64> = buckets.iter().map(|b| b.less_than).collect();
    let etcd: Vec<f64> = (0..14).map(|k| 0.001 * 2f64.powi(k)).collect();
    for b in &etcd {
        assert!(
            bounds.iter().any(|x| (x - b).abs() < 1e-9),
            "bucket {b} missing: {bounds:?}"
        );
    }
    let total = buckets.iter().map(|b| b.count).fold(0.0, f64::max);
    assert!(total >= 5.0, "the puts' fsyncs were counted: {total}");
    assert!(matches!(sample("etcd_server_is_leader").value, Value::Gauge(v) if v == 1.0));
    assert!(matches!(sample("etcd_server_has_leader").value, Value::Gauge(v) if v == 1.0));
    let peers = scrape
        .samples
        .iter()
        .filter(|s| s.metric == "synod_peer_phi")
        .count();
    assert_eq!(peers, 2, "one phi per peer");
}
