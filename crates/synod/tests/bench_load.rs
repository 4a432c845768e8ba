//! `synod bench` (the load generator) on the real binary: every workload against a real
//! 3-member cluster, the open-loop rate, and clear failures for endpoints that do not
//! answer.

mod common;

use serde_json::Value;
use std::net::TcpListener;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Runs `synod bench ARGS`; a watchdog kills it after 60 s so a hang fails the test.
fn bench(args: &[&str]) -> (Output, Duration) {
    let started = Instant::now();
    let child = Command::new(env!("CARGO_BIN_EXE_synod"))
        .arg("bench")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("synod runs");
    let pid = child.id() as libc::pid_t;
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if done_rx.recv_timeout(Duration::from_secs(60)).is_err() {
            // SAFETY: kill(2) on our own child's pid; no memory is touched.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
    });
    let out = child.wait_with_output().expect("synod finishes");
    let _ = done_tx.send(());
    watchdog.join().unwrap();
    (out, started.elapsed())
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).to_string()
}

/// Runs one JSON bench and checks what every run must satisfy.
fn json_run(c: &common::Cluster, extra: &[&str]) -> Value {
    let eps = c.endpoints();
    let mut args = vec!["--endpoints", eps.as_str(), "--json"];
    args.extend_from_slice(extra);
    let (o, _) = bench(&args);
    let out = text(&o.stdout);
    let ctx = format!("{args:?}\nstdout: {out}\nstderr: {}", text(&o.stderr));
    assert!(o.status.success(), "{ctx}\n{}", c.logs());
    let v: Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {ctx}"));
    let f = |k: &str| {
        v[k].as_f64()
            .unwrap_or_else(|| panic!("no number '{k}': {ctx}"))
    };
    assert!(f("ops") > 0.0, "{ctx}");
    assert_eq!(f("errors"), 0.0, "{ctx}");
    assert!(f("ops_per_s") > 0.0, "{ctx}");
    assert!(f("p50_ms") > 0.0, "{ctx}");
    assert!(f("p50_ms") <= f("p99_ms"), "{ctx}");
    assert!(f("p99_ms") <= f("p999_ms"), "{ctx}");
    assert!(f("p999_ms") <= f("max_ms"), "{ctx}");
    let leader = v["leader"]
        .as_str()
        .unwrap_or_else(|| panic!("no leader: {ctx}"));
    assert_eq!(
        v["endpoints"][0].as_str(),
        Some(leader),
        "leader first: {ctx}"
    );
    v
}

#[test]
fn every_workload_runs_against_a_real_cluster() {
    let c = common::start(3, 100_000);
    for w in ["put", "get", "sget", "txn", "mixed"] {
        let v = json_run(&c, &["--workload", w, "--clients", "4", "--duration", "2s"]);
        assert_eq!(v["workload"], w, "{v}");
        assert_eq!(v["clients"], 4, "{v}");
        assert_eq!(v["grpc_client"], "h2", "{v}");
        assert_eq!(v["endpoints"].as_array().map(Vec::len), Some(3), "{v}");
    }
    // The coordination workloads: keep-alives and lease cycles on tonic's clients,
    // watch fan-out on the h2 client (and on tonic's, below).
    for (w, client) in [("keepalive", "tonic"), ("lease", "tonic"), ("watch", "h2")] {
        let v = json_run(&c, &["--workload", w, "--clients", "8", "--duration", "1s"]);
        assert_eq!(v["workload"], w, "{v}");
        assert_eq!(v["grpc_client"], client, "{v}");
        assert_eq!(v["errors"], 0, "{v}");
        assert!(v["ops"].as_u64().is_some_and(|n| n > 0), "{v}");
    }
    // tonic's client, kept for comparison, answers the same workloads.
    for w in ["put", "txn", "watch"] {
        let v = json_run(
            &c,
            &[
                "--workload",
                w,
                "--clients",
                "4",
                "--duration",
                "1s",
                "--grpc-client",
                "tonic",
            ],
        );
        assert_eq!(v["grpc_client"], "tonic", "{v}");
    }

    // Open loop: 100 requests per second for 1 s over 3 connections.
    let v = json_run(
        &c,
        &[
            "--rate",
            "100",
            "--clients",
            "8",
            "--conns",
            "3",
            "--duration",
            "1s",
        ],
    );
    let ops = v["ops"].as_u64().unwrap();
    assert!((10..=100).contains(&ops), "a fixed schedule: {v}");
    assert_eq!(v["rate"], 100, "{v}");

    // Only the leader.
    let v = json_run(
        &c,
        &["--target", "leader", "--conns", "2", "--duration", "1s"],
    );
    assert_eq!(v["endpoints"].as_array().map(Vec::len), Some(1), "{v}");

    // Text output ends with one key=value summary line.
    let (o, _) = bench(&["--endpoints", &c.endpoints(), "--duration", "1s"]);
    let out = text(&o.stdout);
    assert!(o.status.success(), "{out}{}", text(&o.stderr));
    let last = out.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("ops=") && last.contains(" errors=0 "),
        "{out}"
    );
}

#[test]
fn endpoints_that_do_not_answer_fail_clearly() {
    // Nothing listens: connection refused.
    let port = harness::ports::free_loopback_ports(1).unwrap()[0];
    let ep = format!("127.0.0.1:{port}");
    let (o, took) = bench(&["--endpoints", &ep, "--duration", "30s", "--json"]);
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains(&ep) && err.contains("cannot connect"), "{err}");
    assert!(o.stdout.is_empty(), "no results: {}", text(&o.stdout));
    assert!(took < Duration::from_secs(20), "took {took:?}");

    // Something accepts connections (the kernel's backlog) but never answers.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let ep = silent.local_addr().unwrap().to_string();
    let (o, took) = bench(&[
        "--endpoints",
        &ep,
        "--duration",
        "30s",
        "--connect-timeout",
        "1s",
    ]);
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains(&ep) && err.contains("no answer"), "{err}");
    assert!(took < Duration::from_secs(20), "took {took:?}");
    drop(silent);
}

#[test]
fn flags_are_checked_before_anything_runs() {
    let cases: [&[&str]; 5] = [
        &["--compare-etcd", "--endpoints", "127.0.0.1:1"],
        &["--endpoints", "127.0.0.1:1", "--duration", "ten"],
        &["--endpoints", "127.0.0.1:1", "--workload", "scan"],
        &["--repeat", "3"],
        &["--warmup", "1s"],
    ];
    for args in cases {
        let (o, _) = bench(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", text(&o.stderr));
    }
    // A key size too small for the key space is refused with a reason.
    let (o, _) = bench(&["--endpoints", "127.0.0.1:1", "--key-size", "3"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o.stderr).contains("--key-size 3"),
        "{}",
        text(&o.stderr)
    );
}

/// Waits (polling, up to 20 s) until the leader has committed `more` entries past `from`.
fn commits_past(c: &common::Cluster, leader: usize, from: u64, more: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let now = c.status_field(leader, "commit_index").unwrap_or(0);
        if now >= from + more {
            return now;
        }
        assert!(
            Instant::now() < deadline,
            "the leader committed {} of {more} entries in 20 s: the load stalled\n{}",
            now.saturating_sub(from),
            c.logs()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A member that dies mid-run costs the requests on its connections a few errors a
/// second while it is down (the h2 client dials it again, pausing between attempts),
/// not a tight loop of failures; once it is back its connections carry load again.
#[test]
fn a_member_that_dies_and_returns_costs_errors_not_a_spin() {
    let mut c = common::start(3, 100_000);
    let leader = c.wait_leader(Duration::from_secs(20));
    let victim = (leader + 1) % 3;
    let eps = c.endpoints();
    let run = std::thread::spawn(move || {
        let args = [
            "--endpoints",
            &eps,
            "--clients",
            "8",
            "--conns",
            "3",
            "--duration",
            "8s",
            "--timeout",
            "2s",
            "--json",
        ];
        bench(&args)
    });
    let start = c.status_field(leader, "commit_index").unwrap_or(0);
    let at = commits_past(&c, leader, start, 200);
    c.kill(victim);
    commits_past(&c, leader, at, 500);
    c.spawn(victim).unwrap();
    let (o, _) = run.join().unwrap();
    let out = text(&o.stdout);
    let ctx = format!("stdout: {out}\nstderr: {}", text(&o.stderr));
    assert!(o.status.success(), "{ctx}");
    let v: Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {ctx}"));
    let errors = v["errors"].as_u64().unwrap();
    assert!(v["ops"].as_u64().unwrap() > 1000, "{ctx}");
    // A dead connection that is not dialled again fails every request at once: millions.
    assert!(errors < 2000, "{errors} errors: {ctx}");
    // The restarted member (its counters start at zero) took writes again.
    let served = c.metric(victim, "synod_raft_proposals_total");
    assert!(served.is_some_and(|n| n > 0.0), "{served:?}: {ctx}");
}

/// `synod bench null-server` answers the load generator and etcdctl, stores nothing, and
/// stops cleanly on Ctrl-C.
#[test]
fn the_null_server_answers_and_stores_nothing() {
    use std::io::BufRead;
    let ports = harness::ports::free_loopback_ports(2).expect("free ports");
    let eps: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let mut child = Command::new(env!("CARGO_BIN_EXE_synod"))
        .args(["bench", "null-server", "--threads", "1", "--listen"])
        .arg(eps.join(","))
        .stderr(Stdio::piped())
        .spawn()
        .expect("synod runs");
    let pid = child.id() as libc::pid_t;
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let announced = lines
        .by_ref()
        .map_while(Result::ok)
        .find(|l| l.starts_with("info: null server"));
    assert!(announced.is_some(), "the null server did not start");

    let (o, _) = bench(&["--endpoints", &eps.join(","), "--json", "--duration", "1s"]);
    let out = text(&o.stdout);
    assert!(o.status.success(), "{out}\n{}", text(&o.stderr));
    let v: Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert!(v["ops"].as_f64().unwrap_or(0.0) > 0.0, "{v}");
    assert_eq!(v["errors"].as_f64(), Some(0.0), "{v}");

    common::ensure_etcdctl();
    let etcdctl = |args: &[&str]| {
        let o = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", eps[0]))
            .args(args)
            .output()
            .expect("etcdctl runs");
        assert!(o.status.success(), "{args:?}: {}", text(&o.stderr));
        text(&o.stdout)
    };
    assert_eq!(etcdctl(&["put", "k", "v"]).trim(), "OK");
    assert_eq!(etcdctl(&["get", "k"]), "", "the null server keeps nothing");

    // SAFETY: kill(2) on our own child's pid; no memory is touched.
    unsafe {
        libc::kill(pid, libc::SIGINT);
    }
    let status = child.wait().expect("the null server exits");
    assert!(status.success(), "Ctrl-C should stop it cleanly: {status}");
}
