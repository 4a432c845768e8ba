//! The φ-accrual failure detector against real processes: SIGSTOP of a member makes both
//! other members' φ for it cross the threshold (also the follower that exchanges no Raft
//! traffic with it: the transport's pings reach every peer), and SIGCONT brings it back.

mod common;

use common::Cluster;
use std::time::{Duration, Instant};

/// Member `i`'s view of peer `peer`: (φ, verdict).
fn view(c: &Cluster, i: usize, peer: &str) -> Option<(f64, String)> {
    let status: serde_json::Value = serde_json::from_str(&c.status(i)?).ok()?;
    let p = status["peers"]
        .as_array()?
        .iter()
        .find(|p| p["id"] == peer)?
        .clone();
    Some((p["phi"].as_f64()?, p["suspicion"].as_str()?.to_string()))
}

/// Waits until every member in `watchers` judges `peer` as `verdict`.
fn wait_verdict(c: &Cluster, watchers: &[usize], peer: &str, verdict: &str, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let views: Vec<_> = watchers.iter().map(|i| view(c, *i, peer)).collect();
        if views
            .iter()
            .all(|v| v.as_ref().is_some_and(|(_, s)| s == verdict))
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "peer {peer} not {verdict} within {within:?}: {views:?}\n{}",
            c.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn signal(c: &Cluster, i: usize, sig: libc::c_int) {
    let pid = c.members[i].child.as_ref().expect("running").id();
    // SAFETY: kill(2) on a child process we own.
    assert_eq!(unsafe { libc::kill(pid as libc::pid_t, sig) }, 0);
}

#[test]
fn a_stopped_member_is_suspected_by_the_others_and_trusted_again_after_it_resumes() {
    let c = common::start(3, 10_000);
    let leader = c.wait_leader(Duration::from_secs(20));
    let victim = (leader + 1) % 3;
    let others: Vec<usize> = (0..3).filter(|i| *i != victim).collect();
    let status: serde_json::Value = serde_json::from_str(&c.status(victim).unwrap()).unwrap();
    let id = status["member_id"].as_str().unwrap().to_string();
    wait_verdict(&c, &others, &id, "alive", Duration::from_secs(10));

    signal(&c, victim, libc::SIGSTOP);
    let stopped = Instant::now();
    wait_verdict(&c, &others, &id, "suspected", Duration::from_secs(10));
    let took = stopped.elapsed();
    for i in &others {
        let (phi, _) = view(&c, *i, &id).unwrap();
        assert!(phi >= 8.0, "member {i}: phi {phi}");
    }

    signal(&c, victim, libc::SIGCONT);
    wait_verdict(&c, &others, &id, "alive", Duration::from_secs(10));
    eprintln!("suspected {took:?} after SIGSTOP");
}
