//! Golden traces: small scenarios whose full event trace is checked in, so that a
//! behaviour change shows up as a readable text diff in review. Regenerate after an
//! intended change with `SYNOD_BLESS=1 cargo test -p sim --test golden`.

use raft::NodeId;
use sim::{FaultSet, SimOptions, Simulation};
use std::path::PathBuf;

fn opts() -> SimOptions {
    SimOptions {
        nodes: 3,
        faults: FaultSet::none(),
        clients: 0,
        swarm: false,
        ..SimOptions::default()
    }
}

fn check_golden(name: &str, trace: &[String]) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(format!("{name}.trace"));
    let actual = trace.join("\n") + "\n";
    if std::env::var_os("SYNOD_BLESS").is_some() {
        std::fs::write(&path, &actual).expect("write golden trace");
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_default();
    if expected != actual {
        let first = expected
            .lines()
            .zip(actual.lines())
            .position(|(a, b)| a != b);
        let line = first.unwrap_or(expected.lines().count().min(actual.lines().count()));
        panic!(
            "{name}: trace differs from {} at line {}\n  expected: {:?}\n  actual:   {:?}\n(rerun with SYNOD_BLESS=1 if the change is intended)",
            path.display(),
            line + 1,
            expected.lines().nth(line).unwrap_or("<end>"),
            actual.lines().nth(line).unwrap_or("<end>")
        );
    }
}

/// Three nodes elect a leader (pre-vote, vote, durable term before requests), then
/// agree on two commands: persist, append, acknowledge after fsync, commit, apply.
#[test]
fn election_then_agreement() {
    let mut sim = Simulation::new(1, opts());
    sim.enable_trace();
    assert!(sim.run_until(2_000_000, |s| s.leader().is_some()));
    let leader = sim.leader().expect("leader");
    sim.start(leader, 7);
    sim.start(leader, 8);
    sim.run_for(60_000);
    assert_eq!(sim.n_committed(3), (3, Some(8)));
    assert!(sim.violation().is_none());
    check_golden("election_then_agreement", sim.trace_lines());
}

/// The leader is cut off: followers stop hearing heartbeats, one wins pre-vote and a
/// new term, and the old leader steps down by check-quorum.
#[test]
fn leader_isolation() {
    let mut sim = Simulation::new(2, opts());
    sim.enable_trace();
    assert!(sim.run_until(2_000_000, |s| s.leader().is_some()));
    let old = sim.leader().expect("leader");
    sim.disconnect(old);
    let moved = sim.run_until(2_000_000, |s| s.leaders().iter().any(|l| l.id != old));
    assert!(moved);
    let stepped_down = sim.run_until(2_000_000, |s| {
        s.status(old)
            .is_some_and(|st| st.role != raft::Role::Leader)
    });
    assert!(stepped_down);
    assert!(sim.violation().is_none());
    assert_ne!(sim.leader(), Some(NodeId(0)));
    check_golden("leader_isolation", sim.trace_lines());
}
