//! Membership changes against real processes, with etcdctl: a learner added with
//! `member add --learner` joins with the `ETCD_*` lines etcdctl prints (as environment
//! variables), catches up, is promoted and updated; etcd's refusals; removing the
//! leader and a follower stops each, and the cluster goes on serving.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A member started by hand (the harness starts the founders); killed on drop.
struct Joiner(Child);

impl Drop for Joiner {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn stderr_of(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

/// Runs etcdctl at `endpoint` until it succeeds with output containing `want` (10 s).
fn eventually(c: &common::Cluster, endpoint: &str, args: &[&str], want: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let o = c.etcdctl_at(endpoint, args, None);
        let out = String::from_utf8_lossy(&o.stdout).to_string();
        if o.status.success() && out.contains(want) {
            return out;
        }
        assert!(
            Instant::now() < deadline,
            "etcdctl {args:?} at {endpoint}: {out}{}\n{}",
            stderr_of(&o),
            c.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// etcdctl's refusal text for `args` at `endpoint`.
fn refused(c: &common::Cluster, endpoint: &str, args: &[&str]) -> String {
    let o = c.etcdctl_at(endpoint, args, None);
    assert!(!o.status.success(), "{args:?} succeeded");
    stderr_of(&o)
}

/// Waits (20 s) for member `i` of the harness to exit; returns its stderr-bearing log.
fn wait_exit(c: &mut common::Cluster, i: usize) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if c.reap_exited().iter().any(|(j, _)| *j == i) {
            return c.log_of(i);
        }
        assert!(
            Instant::now() < deadline,
            "member {i} still runs\n{}",
            c.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn leader_id(c: &common::Cluster, i: usize) -> String {
    let v = c.status_json(i).expect("status");
    v["leader"].as_str().expect("leader").to_string()
}

/// The `ETCD_*` lines `etcdctl member add` printed, as environment variables.
fn ids_env(add: &str) -> Vec<(String, String)> {
    add.lines()
        .filter_map(|l| l.split_once('='))
        .filter(|(k, _)| k.starts_with("ETCD_"))
        .map(|(k, v)| (k.to_string(), v.trim_matches('"').to_string()))
        .collect()
}

/// Starts the member that joins, from `env` (the lines `member add` printed).
fn start_joiner(
    c: &common::Cluster,
    data: &std::path::Path,
    client: &str,
    peer: &str,
    env: Vec<(String, String)>,
    log: &str,
) -> Joiner {
    let log = std::fs::File::create(c.spec.dir.join(log)).expect("log");
    let child = Command::new(env!("CARGO_BIN_EXE_synod"))
        .args(["node", "--data-dir", &data.to_string_lossy()])
        .args([
            "--listen-client-urls",
            client,
            "--advertise-client-urls",
            client,
        ])
        .args(["--listen-peer-urls", peer])
        .envs(env)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log.try_clone().expect("log")))
        .stderr(Stdio::from(log))
        .spawn()
        .expect("joiner starts");
    Joiner(child)
}

#[test]
fn add_learner_join_promote_update_and_remove() {
    common::ensure_etcdctl();
    let mut c = common::start(3, 10_000);
    let at = |i: usize, c: &common::Cluster| format!("127.0.0.1:{}", c.members[i].client);
    let e0 = at(0, &c);
    c.ok(c.etcdctl_at(&e0, &["put", "before", "join"], None));

    // Add a learner; etcdctl prints the new member's settings.
    let ports = harness::ports::free_loopback_ports(2).expect("ports");
    let peer = format!("http://127.0.0.1:{}", ports[1]);
    let client = format!("http://127.0.0.1:{}", ports[0]);
    let add = c.ok(c.etcdctl_at(
        &e0,
        &[
            "member",
            "add",
            "m4",
            "--learner",
            &format!("--peer-urls={peer}"),
        ],
        None,
    ));
    let id = add.split_whitespace().nth(1).expect("id").to_string();
    assert!(
        add.starts_with(&format!("Member {id} added to cluster ")),
        "{add}"
    );
    assert!(
        add.contains("ETCD_INITIAL_CLUSTER_STATE=\"existing\""),
        "{add}"
    );
    let env = ids_env(&add);
    assert_eq!(env.len(), 4, "{add}");

    // The new member starts from those lines, as environment variables.
    let data = c.spec.dir.join("m4");
    let joiner = start_joiner(&c, &data, &client, &peer, env.clone(), "m4.log");
    let e4 = client.trim_start_matches("http://").to_string();
    eventually(&c, &e4, &["get", "before", "--consistency=s"], "join");
    let list = eventually(&c, &e0, &["member", "list"], "m4");
    assert!(
        list.contains(&format!("{id}, started, m4, {peer}, {client}, true")),
        "{list}"
    );

    // Promote it, once; etcd's refusals for the rest.
    let promoted = eventually(&c, &e0, &["member", "promote", &id], "promoted");
    assert!(promoted.starts_with(&format!("Member {id} promoted in cluster ")));
    let again = refused(&c, &e0, &["member", "promote", &id]);
    assert!(
        again.contains("Error: etcdserver: can only promote a learner member"),
        "{again}"
    );
    let unknown = refused(&c, &e0, &["member", "remove", "1234"]);
    assert!(
        unknown.contains("Error: etcdserver: member not found"),
        "{unknown}"
    );
    let taken = format!("--peer-urls=http://127.0.0.1:{}", c.members[1].peer);
    let dup = refused(&c, &e0, &["member", "add", "x", &taken]);
    assert!(
        dup.contains("Error: etcdserver: Peer URLs already exists"),
        "{dup}"
    );
    let updated = c.ok(c.etcdctl_at(
        &e0,
        &["member", "update", &id, &format!("--peer-urls={peer}")],
        None,
    ));
    assert!(
        updated.starts_with(&format!("Member {id} updated in cluster ")),
        "{updated}"
    );
    let list = c.ok(c.etcdctl_at(&e4, &["member", "list"], None));
    assert_eq!(list.lines().count(), 4, "{list}");
    assert!(
        list.contains(&format!("{id}, started, m4, {peer}, {client}, false")),
        "{list}"
    );

    // The member loses its data dir: started again as a joiner, it is refused (it
    // would have forgotten its votes), as etcd refuses it.
    drop(joiner);
    std::fs::remove_dir_all(&data).expect("wipe");
    let again = Command::new(env!("CARGO_BIN_EXE_synod"))
        .args(["node", "--data-dir", &data.to_string_lossy()])
        .args([
            "--listen-client-urls",
            &client,
            "--advertise-client-urls",
            &client,
        ])
        .args(["--listen-peer-urls", &peer])
        .envs(env.clone())
        .output()
        .expect("runs");
    assert!(!again.status.success());
    let err = stderr_of(&again);
    assert!(err.contains("has already been bootstrapped"), "{err}");
    // Replaced the proper way: removed, added again, started on an empty dir.
    std::fs::remove_dir_all(&data).ok();
    c.ok(c.etcdctl_at(&e0, &["member", "remove", &id], None));
    let add = c.ok(c.etcdctl_at(
        &e0,
        &["member", "add", "m4", &format!("--peer-urls={peer}")],
        None,
    ));
    let new_id = add.split_whitespace().nth(1).expect("id").to_string();
    assert_ne!(new_id, id, "a member added again gets a new id");
    let _m4 = start_joiner(&c, &data, &client, &peer, ids_env(&add), "m4b.log");
    eventually(&c, &e4, &["get", "before", "--consistency=s"], "join");

    // Remove the leader: it steps down, stops, and the others go on.
    let leader = c.wait_leader(Duration::from_secs(10));
    let lid = leader_id(&c, leader);
    let other = (leader + 1) % 3;
    let removed = c.ok(c.etcdctl_at(&at(other, &c), &["member", "remove", &lid], None));
    assert!(
        removed.starts_with(&format!("Member {lid} removed from cluster ")),
        "{removed}"
    );
    let log = wait_exit(&mut c, leader);
    assert!(
        log.contains("the member has been permanently removed from the cluster"),
        "{log}"
    );
    eventually(&c, &e4, &["put", "after", "leader-removed"], "OK");

    // Remove a follower: it hears so from its peers and stops too.
    let follower = (0..3)
        .find(|i| *i != leader && c.members[*i].child.is_some())
        .expect("one left");
    let fid = c.status_json(follower).expect("status")["member_id"]
        .as_str()
        .expect("id")
        .to_string();
    c.ok(c.etcdctl_at(&e4, &["member", "remove", &fid], None));
    let log = wait_exit(&mut c, follower);
    assert!(
        log.contains("the member has been permanently removed from the cluster"),
        "{log}"
    );
    let list = eventually(&c, &e4, &["member", "list"], "m4");
    assert_eq!(list.lines().count(), 2, "{list}");
    eventually(&c, &e4, &["put", "two", "members"], "OK");
    eventually(&c, &e4, &["get", "after"], "leader-removed");
}
