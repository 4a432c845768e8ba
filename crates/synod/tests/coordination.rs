//! Watch, Lease, Lock and Election through Debian's etcdctl against real members, with
//! the output etcdctl prints for etcd: watches (key, prefix, history replay from a
//! revision, prev_kv, a compacted revision refused), leases (grant, put with a lease,
//! timetolive --keys on the leader and on a follower, list, keep-alive, revoke, expiry
//! deleting the key), `etcdctl lock` excluding a second holder, and `etcdctl elect`.

mod common;

use common::{ok, Cluster};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

fn text(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

/// The store's revision now.
fn revision(c: &Cluster) -> i64 {
    let out = ok(c.etcdctl(&["get", "nothing-here", "-w", "json"]), c);
    let v: serde_json::Value = serde_json::from_str(&out).expect("etcdctl's JSON");
    v["header"]["revision"].as_i64().expect("a revision")
}

/// A long-running etcdctl whose stdout lines arrive on a channel.
struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Running {
    fn start(endpoints: &str, args: &[&str]) -> Running {
        let mut child = harness::etcdctl_command(endpoints, args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("etcdctl runs");
        let out = child.stdout.take().expect("piped");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    return;
                }
            }
        });
        Running { child, lines }
    }

    /// The next `n` lines, each within `wait`.
    fn take(&self, n: usize, wait: Duration) -> Vec<String> {
        (0..n)
            .map(|i| {
                self.lines
                    .recv_timeout(wait)
                    .unwrap_or_else(|_| panic!("line {i} of {n} did not come"))
            })
            .collect()
    }

    fn interrupt(&mut self) {
        // SAFETY: kill(2) on our own child; no memory is touched.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGINT) };
        let _ = self.child.wait();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `f` until it is true or `within` passes.
fn eventually(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[test]
fn watch_streams_live_events_replays_history_and_refuses_a_compacted_revision() {
    common::ensure_etcdctl();
    let c = common::start(3, 10_000);
    // From the next revision on, through a follower: no event can slip past.
    let from = revision(&c) + 1;
    let follower = (c.wait_leader(Duration::from_secs(10)) + 1) % 3;
    let ep = format!("127.0.0.1:{}", c.members[follower].client);
    let rev = from.to_string();
    let live = Running::start(
        &ep,
        &["watch", "--prefix", "/w/", "--prev-kv", "--rev", &rev],
    );
    ok(c.etcdctl(&["put", "/w/a", "1"]), &c);
    ok(c.etcdctl(&["put", "/w/a", "2"]), &c);
    ok(c.etcdctl(&["del", "/w/a"]), &c);
    ok(c.etcdctl(&["put", "/other", "x"]), &c);
    // No compares, two puts, no failure ops.
    let txn = "\nput /w/b x\nput /w/c y\n\n\n";
    ok(c.etcdctl_at(&c.endpoints(), &["txn"], Some(txn)), &c);
    // etcdctl prints an event as TYPE, then (with --prev-kv) the previous key and
    // value, then the key and value.
    let got = live.take(17, Duration::from_secs(10));
    let want = [
        "PUT", "/w/a", "1", // first put: no previous value
        "PUT", "/w/a", "1", "/w/a", "2", // second put, after 1
        "DELETE", "/w/a", "2", "/w/a", "", // delete: previous value, then no value
        "PUT", "/w/b", "x", "PUT",
    ];
    assert_eq!(got, want);
    drop(live);

    // History from a revision, as a plain key watch.
    let replay = Running::start(&c.endpoints(), &["watch", "/w/a", "--rev", &rev]);
    let got = replay.take(8, Duration::from_secs(10));
    assert_eq!(
        got,
        ["PUT", "/w/a", "1", "PUT", "/w/a", "2", "DELETE", "/w/a"]
    );
    drop(replay);

    // A compacted revision is refused as etcd refuses it. Compaction and watch go to
    // one member: it answers the compaction once it applied it (another member may
    // not have yet, and would serve the watch, as etcd's would). A watch that is not
    // refused is ended after 30 s so the test fails instead of hanging.
    let now = revision(&c);
    let one = format!("127.0.0.1:{}", c.members[follower].client);
    ok(
        c.etcdctl_at(&one, &["compaction", &now.to_string()], None),
        &c,
    );
    let o = Command::new("timeout")
        .args(["30", "etcdctl"])
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={one}"))
        .args(["watch", "/w/a", "--rev", &rev])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let all = format!("{}{}", text(&o), String::from_utf8_lossy(&o.stderr));
    assert!(!o.status.success(), "{all}");
    assert!(
        all.contains("watch was canceled (etcdserver: mvcc: required revision has been compacted)"),
        "{all}"
    );
}

#[test]
fn leases_grant_attach_report_keep_alive_revoke_and_expire() {
    common::ensure_etcdctl();
    let c = common::start(3, 10_000);
    let leader = c.wait_leader(Duration::from_secs(10));
    let follower = format!("127.0.0.1:{}", c.members[(leader + 1) % 3].client);
    let granted = ok(c.etcdctl(&["lease", "grant", "60"]), &c);
    // "lease 694d77aa4cf4ae0f granted with TTL(60s)"
    let id = granted
        .split_whitespace()
        .nth(1)
        .expect("a lease id")
        .to_string();
    assert_eq!(granted, format!("lease {id} granted with TTL(60s)\n"));
    ok(c.etcdctl(&["put", "--lease", &id, "leased", "v"]), &c);
    for ep in [c.endpoints(), follower] {
        let ttl = ok(
            c.etcdctl_at(&ep, &["lease", "timetolive", &id, "--keys"], None),
            &c,
        );
        assert!(
            ttl.starts_with(&format!("lease {id} granted with TTL(60s), remaining(")),
            "{ttl}"
        );
        assert!(ttl.ends_with("attached keys([leased])\n"), "{ttl}");
    }
    let list = ok(c.etcdctl(&["lease", "list"]), &c);
    assert_eq!(list, format!("found 1 leases\n{id}\n"));
    let kept = ok(c.etcdctl(&["lease", "keep-alive", "--once", &id]), &c);
    assert_eq!(kept, format!("lease {id} keepalived with TTL(60)\n"));
    ok(c.etcdctl(&["lease", "revoke", &id]), &c);
    assert_eq!(ok(c.etcdctl(&["get", "leased"]), &c), "");
    let gone = c.etcdctl(&["lease", "revoke", &id]);
    assert!(String::from_utf8_lossy(&gone.stderr).contains("etcdserver: requested lease not found"));

    // A short lease (raised to the 2 s minimum) expires on the leader's clock, and its
    // key goes with it.
    let short = ok(c.etcdctl(&["lease", "grant", "1"]), &c);
    assert!(short.ends_with("granted with TTL(2s)\n"), "{short}");
    let short = short.split_whitespace().nth(1).unwrap().to_string();
    ok(c.etcdctl(&["put", "--lease", &short, "brief", "v"]), &c);
    let vanished = eventually(Duration::from_secs(10), || {
        c.etcdctl(&["get", "brief"]).stdout.is_empty()
    });
    assert!(vanished, "the leased key outlived its lease\n{}", c.logs());
    let ttl = ok(c.etcdctl(&["lease", "timetolive", &short]), &c);
    assert_eq!(ttl, format!("lease {short} already expired\n"));
}

#[test]
fn lock_excludes_a_second_holder_and_elect_reports_the_leader() {
    common::ensure_etcdctl();
    let c = common::start(3, 10_000);
    let dir = c.spec.dir.join("lock");
    std::fs::create_dir_all(&dir).unwrap();
    let (started, ended) = (dir.join("a.started"), dir.join("a.ended"));
    // The first holder marks its start and, a moment later, its end. (Scripts in
    // files: etcdctl would take a `-c` for its own flag.)
    let first_sh = dir.join("first.sh");
    let second_sh = dir.join("second.sh");
    let script = format!(
        "touch {}; sleep 1; touch {}\n",
        started.display(),
        ended.display()
    );
    std::fs::write(&first_sh, script).unwrap();
    let check = format!("test -e {} && echo after-the-first\n", ended.display());
    std::fs::write(&second_sh, check).unwrap();
    let first_sh = first_sh.to_string_lossy().to_string();
    let mut first = Running::start(&c.endpoints(), &["lock", "mylock", "sh", &first_sh]);
    assert!(eventually(Duration::from_secs(10), || started.exists()));
    // The second holder gets the lock only once the first let it go.
    let second_sh = second_sh.to_string_lossy().to_string();
    let second = c.etcdctl(&["lock", "mylock", "sh", &second_sh]);
    assert_eq!(text(&second), "after-the-first\n");
    let _ = first.child.wait();

    // Election: alice leads; bob waits; alice resigns (SIGINT) and bob leads. An
    // observer (`elect -l`, which keeps listening) sees both.
    let mut alice = Running::start(&c.endpoints(), &["elect", "myelection", "alice"]);
    let key = &alice.take(2, Duration::from_secs(10));
    assert!(key[0].starts_with("myelection/"), "{key:?}");
    assert_eq!(key[1], "alice");
    let observer = Running::start(&c.endpoints(), &["elect", "-l", "myelection"]);
    assert_eq!(observer.take(2, Duration::from_secs(10)), *key);
    let bob = Running::start(&c.endpoints(), &["elect", "myelection", "bob"]);
    alice.interrupt();
    let won = bob.take(2, Duration::from_secs(10));
    assert_eq!(won[1], "bob");
    assert_ne!(won[0], key[0]);
    assert_eq!(observer.take(2, Duration::from_secs(10)), won);
}
