//! Backup, restore and defragmentation against real processes: `etcdctl snapshot save`
//! from a member, `synod snapshot status` and `synod snapshot restore` into a new
//! three-member cluster that serves the same keys at the same revision, a damaged file
//! refused; `etcdctl defrag` shrinks the reported db size after a large delete.

mod common;

use std::process::Command;
use std::time::Duration;

fn synod(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_synod"))
        .args(args)
        .output()
        .expect("synod runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).to_string()
}

fn revision(c: &common::Cluster, endpoint: &str) -> u64 {
    let out = c.ok(c.etcdctl_at(endpoint, &["get", "nothing", "-w", "json"], None));
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    v["header"]["revision"].as_u64().expect("revision")
}

fn db_size(c: &common::Cluster, endpoint: &str) -> u64 {
    let out = c.ok(c.etcdctl_at(endpoint, &["endpoint", "status", "-w", "json"], None));
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    v[0]["Status"]["dbSize"].as_u64().expect("dbSize")
}

#[test]
fn snapshot_save_status_and_restore_into_a_new_cluster() {
    common::ensure_etcdctl();
    let c = common::start(3, 10_000);
    let e = format!("127.0.0.1:{}", c.members[0].client);
    for i in 0..40 {
        c.ok(c.etcdctl_at(&e, &["put", &format!("k{i:02}"), &format!("v{i}")], None));
    }
    c.ok(c.etcdctl_at(&e, &["del", "k07"], None));
    let lease = c.ok(c.etcdctl_at(&e, &["lease", "grant", "600"], None));
    let lease = lease
        .split_whitespace()
        .nth(1)
        .expect("lease id")
        .to_string();
    c.ok(c.etcdctl_at(
        &e,
        &["put", "leased", "yes", &format!("--lease={lease}")],
        None,
    ));
    let rev = revision(&c, &e);

    let file = c.spec.dir.join("backup.db");
    let f = file.to_string_lossy().to_string();
    let saved = c.etcdctl_at(&e, &["snapshot", "save", &f], None);
    assert!(
        text(&saved.stdout).contains(&format!("Snapshot saved at {f}")),
        "{}{}",
        text(&saved.stdout),
        text(&saved.stderr)
    );
    let status = synod(&["snapshot", "status", &f, "-w", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&status.stdout).expect("status json");
    assert_eq!(v["revision"].as_u64(), Some(rev), "{v}");
    assert!(v["totalKey"].as_u64() >= Some(41), "{v}");

    // A damaged copy is refused, and leaves no data dir behind.
    let mut bytes = std::fs::read(&file).expect("backup");
    bytes[100] ^= 0xff;
    let bad = c.spec.dir.join("bad.db");
    std::fs::write(&bad, &bytes).expect("write");
    let refused = synod(&["snapshot", "status", &bad.to_string_lossy()]);
    assert!(!refused.status.success());
    assert!(
        text(&refused.stderr).contains("checksum mismatch"),
        "{}",
        text(&refused.stderr)
    );

    // Restore into a new cluster of three, each member from the same file.
    let dir = c.spec.dir.join("restored");
    let mut spec = harness::Spec::new(
        env!("CARGO_BIN_EXE_synod").into(),
        dir.clone(),
        harness::Output::Files,
    );
    spec.name_prefix = "r".into();
    spec.token = "restored".into();
    let mut r = harness::Cluster::with_free_ports(spec, 3).expect("ports");
    let broken = synod(&[
        "snapshot",
        "restore",
        &bad.to_string_lossy(),
        "--name",
        "r1",
        "--data-dir",
        &dir.join("r1").to_string_lossy(),
        "--initial-cluster",
        r.initial_cluster(),
        "--initial-advertise-peer-urls",
        &format!("http://127.0.0.1:{}", r.members[0].peer),
        "--initial-cluster-token",
        "restored",
    ]);
    assert!(!broken.status.success());
    assert!(
        !dir.join("r1").exists(),
        "a refused restore left a data dir"
    );
    for i in 0..3 {
        let m = &r.members[i];
        let out = synod(&[
            "snapshot",
            "restore",
            &f,
            "--name",
            &m.name,
            "--data-dir",
            &dir.join(&m.name).to_string_lossy(),
            "--initial-cluster",
            r.initial_cluster(),
            "--initial-advertise-peer-urls",
            &format!("http://127.0.0.1:{}", m.peer),
            "--initial-cluster-token",
            "restored",
        ]);
        assert!(
            out.status.success(),
            "{}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
    }
    r.spawn_all().expect("restored members start");
    r.wait_leader(Duration::from_secs(20));
    r.wait_all_serving(Duration::from_secs(20));
    for i in 0..3 {
        let e = format!("127.0.0.1:{}", r.members[i].client);
        assert_eq!(revision(&r, &e), rev, "member {i}");
        let keys = r.ok(r.etcdctl_at(
            &e,
            &["get", "k", "--prefix", "--keys-only", "--consistency=s"],
            None,
        ));
        assert_eq!(keys.lines().filter(|l| !l.is_empty()).count(), 39, "{keys}");
        let leased = r.ok(r.etcdctl_at(&e, &["lease", "timetolive", &lease, "--keys"], None));
        assert!(leased.contains("leased"), "{leased}");
    }
    let re = format!("127.0.0.1:{}", r.members[0].client);
    r.ok(r.etcdctl_at(&re, &["put", "after", "restore"], None));
    assert_eq!(revision(&r, &re), rev + 1);
    let hashes = r.ok(r.etcdctl_at(&r.endpoints(), &["endpoint", "hashkv"], None));
    let distinct: std::collections::BTreeSet<&str> = hashes
        .lines()
        .filter_map(|l| l.split(", ").nth(1))
        .collect();
    assert_eq!(distinct.len(), 1, "{hashes}");
}

#[test]
fn defrag_shrinks_the_db_size_after_a_large_delete() {
    common::ensure_etcdctl();
    let c = common::start(3, 100_000);
    let e = format!("127.0.0.1:{}", c.members[0].client);
    let value = "x".repeat(900_000);
    for i in 0..80 {
        c.ok(c.etcdctl_at(&e, &["put", &format!("big{i}")], Some(&value)));
    }
    c.ok(c.etcdctl_at(&e, &["del", "--prefix", "big"], None));
    let rev = revision(&c, &e);
    c.ok(c.etcdctl_at(&e, &["compaction", &rev.to_string()], None));
    let before = db_size(&c, &e);
    let out = c.ok(c.etcdctl_at(&e, &["defrag"], None));
    assert!(out.contains("Finished defragmenting etcd member"), "{out}");
    let after = db_size(&c, &e);
    assert!(after < before / 2, "db size {before} before, {after} after");
    // Still serving, the keys gone, the log after the new snapshot intact.
    c.ok(c.etcdctl_at(&e, &["put", "after", "defrag"], None));
    let got = c.ok(c.etcdctl_at(&e, &["get", "big", "--prefix", "--keys-only"], None));
    assert!(got.trim().is_empty(), "{got}");
}
