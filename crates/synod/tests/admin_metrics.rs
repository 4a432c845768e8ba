//! `/metrics` from a real member parses with a Prometheus text parser and carries etcd's
//! names: the WAL fsync latency as a histogram with etcd's buckets, leadership gauges,
//! and the failure detector's φ per peer.

mod common;

use common::{http_get, ok};
use prometheus_parse::{Scrape, Value};
use std::time::Duration;

#[test]
fn metrics_parse_and_the_fsync_latency_is_a_histogram_with_etcds_buckets() {
    common::ensure_etcdctl();
    let c = common::start(3, 10_000);
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

/// Sends `request` to `port` and returns the status line of the answer ("" if none).
fn raw(port: u16, request: &[u8]) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let _ = s.write_all(request);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out);
    text.lines().next().unwrap_or("").to_string()
}

#[test]
fn the_client_port_serves_admin_http_beside_grpc_and_refuses_bad_requests() {
    common::ensure_etcdctl();
    let c = common::start(3, 10_000);
    c.wait_leader(Duration::from_secs(20));
    let port = c.members[0].client;
    let (code, body) = http_get(port, "/health").expect("/health on the client port");
    assert_eq!(
        (code, body.trim()),
        (200, r#"{"health":"true","reason":""}"#)
    );
    let (code, body) = http_get(port, "/version").unwrap();
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!((code, v["etcdserver"].as_str()), (200, Some("3.4.0")));
    assert_eq!(http_get(port, "/livez").map(|(c, _)| c), Some(200));
    assert_eq!(http_get(port, "/readyz").map(|(c, _)| c), Some(200));
    let (_, metrics) = http_get(port, "/metrics").unwrap();
    assert!(metrics.contains("etcd_disk_wal_fsync_duration_seconds_bucket"));
    assert_eq!(http_get(port, "/nope").map(|(c, _)| c), Some(404));
    // Hostile requests get an error and change nothing else.
    assert!(raw(port, b"GARBAGE\r\n\r\n").contains(" 400 "));
    let mut big = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: ".to_vec();
    big.extend(std::iter::repeat_n(b'a', 200_000));
    big.extend_from_slice(b"\r\n\r\n");
    assert!(raw(port, &big).contains(" 431 "));
    // gRPC on the same port, from etcdctl.
    let one = format!("127.0.0.1:{port}");
    ok(c.etcdctl_at(&one, &["put", "k", "v"], None), &c);
    let got = ok(
        c.etcdctl_at(&one, &["get", "k", "--print-value-only"], None),
        &c,
    );
    assert_eq!(got, "v\n");
}
