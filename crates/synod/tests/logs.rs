//! Structured logs from real members: with `--log-format json` every line is one JSON
//! event, and killing the leader makes the survivors log the election as events with
//! `term` and `leader` fields.

mod common;

use common::Cluster;
use std::time::{Duration, Instant};

/// Member `i`'s events: every log line parsed as JSON (panics on a line that is not).
fn events(c: &Cluster, i: usize) -> Vec<serde_json::Value> {
    c.log_of(i)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON event ({e}): {l}")))
        .collect()
}

#[test]
fn killing_the_leader_logs_the_election_as_structured_events() {
    let mut c = common::start_with(3, 10_000, &["--log-format", "json"]);
    let old = c.wait_leader(Duration::from_secs(20));
    let recovered = events(&c, old);
    assert!(recovered
        .iter()
        .any(|e| e["event"] == "recovered" && e["level"] == "INFO"));
    let old_term = c.status_field(old, "term").unwrap();
    c.kill(old);
    let survivors: Vec<usize> = (0..3).filter(|i| *i != old).collect();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        // Each survivor has followed a new leader of a later term, and one was elected.
        let followed = survivors.iter().all(|i| {
            events(&c, *i).iter().any(|e| {
                e["event"] == "leader_changed"
                    && e["term"].as_u64() > Some(old_term)
                    && e["leader"].as_str().is_some_and(|l| !l.is_empty())
            })
        });
        let elected = survivors.iter().any(|i| {
            events(&c, *i)
                .iter()
                .any(|e| e["event"] == "elected" && e["term"].as_u64() > Some(old_term))
        });
        if followed && elected {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no election events\n{}",
            c.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
