//! Leadership transfer against real processes: `etcdctl move-leader` moves it as with
//! etcd (and gets etcd's errors), and a leader stopped with SIGTERM hands leadership to
//! a follower before it exits, so the cluster elects no one by timeout.

mod common;

use etcdpb::etcdserverpb as pb;
use std::time::{Duration, Instant};
use tonic::Code;

/// Waits (up to 10 s) until member `i` reports itself leader.
fn wait_until_leads(c: &common::Cluster, i: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while c.leader() != Some(i) {
        assert!(
            Instant::now() < deadline,
            "member {i} never led\n{}",
            c.logs()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn member_id(c: &common::Cluster, i: usize) -> String {
    let v = c.status_json(i).expect("status");
    v["member_id"].as_str().expect("member_id").to_string()
}

fn term(c: &common::Cluster, i: usize) -> u64 {
    c.status_field(i, "term").expect("term")
}

#[test]
fn move_leader_and_a_stopping_leader_hand_leadership_over() {
    common::ensure_etcdctl();
    let mut c = common::start(3, 10_000);
    let leader = c.wait_leader(Duration::from_secs(20));
    let target = (leader + 1) % 3;
    let (from_id, to_id) = (member_id(&c, leader), member_id(&c, target));
    let before = term(&c, leader);

    let out = c.ok(c.etcdctl(&["move-leader", &to_id]));
    assert_eq!(
        out,
        format!("Leadership transferred from {from_id} to {to_id}\n")
    );
    wait_until_leads(&c, target);
    assert_eq!(term(&c, target), before + 1, "one election, no timeouts");

    // etcd's refusals: an unknown member, and a member that does not lead.
    let bad = c.etcdctl(&["move-leader", "1234"]);
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("Error: etcdserver: bad leader transferee"),
        "{err}"
    );
    let follower = (target + 1) % 3;
    let url = format!("http://127.0.0.1:{}", c.members[follower].client);
    let refused = tokio::runtime::Runtime::new().unwrap().block_on(async {
        let mut m = pb::maintenance_client::MaintenanceClient::connect(url)
            .await
            .unwrap();
        let target_id = u64::from_str_radix(&from_id, 16).unwrap();
        m.move_leader(pb::MoveLeaderRequest { target_id })
            .await
            .unwrap_err()
    });
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert_eq!(refused.message(), "etcdserver: not leader");

    // SIGTERM to the leader: it hands over first, then exits.
    let before = term(&c, target);
    c.signal(target, libc::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(20);
    while c.reap_exited().is_empty() {
        assert!(
            Instant::now() < deadline,
            "the leader did not stop\n{}",
            c.logs()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        c.log_of(target).contains("handed_over"),
        "{}",
        c.log_of(target)
    );
    let next = c.wait_leader(Duration::from_secs(20));
    assert_ne!(next, target);
    assert_eq!(term(&c, next), before + 1, "one election, no timeouts");
    c.ok(c.etcdctl_at(
        &format!("127.0.0.1:{}", c.members[next].client),
        &["put", "after", "handover"],
        None,
    ));
}
