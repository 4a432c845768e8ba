//! `/metrics` from a real member parses with a Prometheus text parser and carries etcd's
//! names: the WAL fsync latency as a histogram with etcd's buckets, leadership gauges,
//! the failure detector's φ per peer, peer traffic and round trips, the backend commit
//! (a snapshot's), pending proposals, and gRPC calls per method and code.

mod common;

use common::{http_get, ok, Cluster};
use prometheus_parse::{Sample, Scrape, Value};
use std::time::{Duration, Instant};

/// Member `i`'s /metrics, parsed.
fn scrape(c: &Cluster, i: usize) -> (Scrape, String) {
    let (code, body) = http_get(c.members[i].admin, "/metrics").expect("/metrics");
    assert_eq!(code, 200);
    let lines = body.lines().map(|l| Ok(l.to_string()));
    (Scrape::parse(lines).expect("Prometheus text"), body)
}

/// The sample of `name` whose labels include `labels`.
fn find<'a>(s: &'a Scrape, name: &str, labels: &[(&str, &str)]) -> Option<&'a Sample> {
    s.samples
        .iter()
        .find(|x| x.metric == name && labels.iter().all(|(k, v)| x.labels.get(k) == Some(v)))
}

/// A counter's or gauge's value (0 when the series does not exist yet).
fn number(s: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    match find(s, name, labels).map(|x| &x.value) {
        Some(Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v)) => *v,
        Some(other) => panic!("{name} is not a number: {other:?}"),
        None => 0.0,
    }
}

/// A histogram's bucket bounds and its number of observations.
fn histogram(s: &Scrape, name: &str, labels: &[(&str, &str)]) -> Option<(Vec<f64>, f64)> {
    let Value::Histogram(buckets) = &find(s, name, labels)?.value else {
        panic!("{name} is not a histogram");
    };
    let bounds = buckets.iter().map(|b| b.less_than).collect();
    Some((bounds, buckets.iter().map(|b| b.count).fold(0.0, f64::max)))
}

/// Every bound of `etcd` is among `bounds`.
fn has_buckets(bounds: &[f64], etcd: impl Iterator<Item = f64>) -> bool {
    let mut all = true;
    for b in etcd {
        all &= bounds.iter().any(|x| (x - b).abs() < 1e-12);
    }
    all
}

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

#[test]
fn peer_traffic_round_trips_backend_commits_and_grpc_calls_are_counted_as_etcd_names_them() {
    common::ensure_etcdctl();
    // A small snapshot count: a few dozen puts make every member commit a snapshot.
    let c = common::start(3, 20);
    c.wait_leader(Duration::from_secs(20));
    let ids: Vec<String> = (0..3)
        .map(|i| {
            let st: serde_json::Value = serde_json::from_str(&c.status(i).unwrap()).unwrap();
            st["member_id"].as_str().unwrap().to_string()
        })
        .collect();
    // Member 0 serves the calls (forwarding writes if it follows).
    let one = format!("127.0.0.1:{}", c.members[0].client);
    let (before, _) = scrape(&c, 0);
    let put = [("grpc_method", "Put"), ("grpc_code", "OK")];
    let puts = 30;
    for i in 0..puts {
        ok(
            c.etcdctl_at(&one, &["put", &format!("k{i}"), "v"], None),
            &c,
        );
    }
    ok(c.etcdctl_at(&one, &["get", "k1"], None), &c);
    let future = c.etcdctl_at(&one, &["get", "k1", "--rev", "1000000"], None);
    assert!(
        !future.status.success(),
        "a read of a future revision fails"
    );
    // The snapshot is written in the background: poll for its commit.
    let deadline = Instant::now() + Duration::from_secs(20);
    let (after, body) = loop {
        let (s, body) = scrape(&c, 0);
        let commits = histogram(&s, "etcd_disk_backend_commit_duration_seconds", &[]);
        if commits.as_ref().is_some_and(|(_, n)| *n >= 1.0) || Instant::now() > deadline {
            break (s, body);
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let grown = |name: &str, labels: &[(&str, &str)]| {
        number(&after, name, labels) - number(&before, name, labels)
    };
    let kv = [("grpc_type", "unary"), ("grpc_service", "etcdserverpb.KV")];
    let with = |extra: &[(&'static str, &'static str)]| [&kv[..], extra].concat();
    assert_eq!(
        grown("grpc_server_handled_total", &with(&put)),
        puts as f64,
        "{body}"
    );
    let put_started = with(&[("grpc_method", "Put")]);
    assert_eq!(
        grown("grpc_server_started_total", &put_started),
        puts as f64
    );
    let range_ok = with(&[("grpc_method", "Range"), ("grpc_code", "OK")]);
    assert!(
        grown("grpc_server_handled_total", &range_ok) >= 1.0,
        "{body}"
    );
    let range_future = with(&[("grpc_method", "Range"), ("grpc_code", "OutOfRange")]);
    assert_eq!(
        grown("grpc_server_handled_total", &range_future),
        1.0,
        "{body}"
    );
    // Nothing is waiting once every put was answered.
    assert_eq!(number(&after, "etcd_server_proposals_pending", &[]), 0.0);
    assert!(find(&after, "etcd_server_proposals_pending", &[]).is_some());
    let (bounds, commits) =
        histogram(&after, "etcd_disk_backend_commit_duration_seconds", &[]).expect("commits");
    assert!(
        commits >= 1.0,
        "no snapshot committed:\n{body}\n{}",
        c.logs()
    );
    assert!(has_buckets(&bounds, (0..14).map(|k| 0.001 * 2f64.powi(k))));
    for peer in &ids[1..] {
        let to = [("To", peer.as_str())];
        let from = [("From", peer.as_str())];
        let sent = grown("etcd_network_peer_sent_bytes_total", &to);
        let received = grown("etcd_network_peer_received_bytes_total", &from);
        // Each put's entry (and the key) went to and was acknowledged by every peer.
        assert!(sent > (puts * 10) as f64, "sent {sent} to {peer}:\n{body}");
        assert!(received > 0.0, "received {received} from {peer}:\n{body}");
        let (bounds, trips) = histogram(&after, "etcd_network_peer_round_trip_time_seconds", &to)
            .unwrap_or_else(|| panic!("no round trips to {peer}:\n{body}"));
        assert!(trips >= 1.0, "{body}");
        assert!(has_buckets(&bounds, (0..16).map(|k| 0.0001 * 2f64.powi(k))));
    }
    assert!(find(
        &after,
        "etcd_network_peer_sent_bytes_total",
        &[("To", &ids[0])]
    )
    .is_none());
}
