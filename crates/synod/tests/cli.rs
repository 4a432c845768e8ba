//! The `synod sim raft` command-line contract, on the real binary.

use std::process::{Command, Output};

fn synod(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_synod"))
        .args(args)
        .output()
        .expect("synod runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn sweep_prints_one_summary_line_and_exits_zero() {
    let o = synod(&[
        "sim",
        "raft",
        "--seeds",
        "0..6",
        "--nodes",
        "3",
        "--seconds",
        "5",
    ]);
    let out = stdout(&o);
    assert!(
        o.status.success(),
        "{out}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let line = out.lines().last().unwrap_or_default();
    let keys: Vec<&str> = line
        .split(' ')
        .map(|kv| kv.split('=').next().unwrap_or_default())
        .collect();
    assert_eq!(
        keys,
        [
            "seeds",
            "violations",
            "sim_seconds",
            "wall_seconds",
            "speedup"
        ],
        "{line}"
    );
    assert!(line.starts_with("seeds=6 violations=0 "), "{line}");
    // Before it: the membership changes and the leadership transfers of the fault mix,
    // and before those the lock clients' figures, unfenced writes by a non-owner
    // among them.
    let changes = out.lines().rev().nth(1).unwrap_or_default();
    assert!(changes.starts_with("membership changes: "), "{out}");
    assert!(changes.contains(" asked, "), "{changes}");
    let transfers = out.lines().rev().nth(2).unwrap_or_default();
    assert!(transfers.starts_with("transfers: "), "{out}");
    assert!(transfers.contains(" started, "), "{transfers}");
    let locks = out.lines().rev().nth(3).unwrap_or_default();
    assert!(locks.starts_with("locks: lock_acquired="), "{out}");
    assert!(locks.contains(" lock_unfenced_non_owner="), "{locks}");
}

#[test]
fn replays_are_byte_identical() {
    let args = ["sim", "raft", "--replay", "11", "--seconds", "3", "--trace"];
    let a = synod(&args);
    let b = synod(&args);
    assert!(a.status.success());
    assert!(stdout(&a).lines().count() > 100, "a trace has events");
    assert_eq!(a.stdout, b.stdout);
}

#[test]
fn bad_arguments_are_refused_clearly() {
    let o = synod(&["sim", "raft", "--seeds", "0..4", "--faults", "drop,meteor"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("unknown fault class 'meteor'"));
    let o = synod(&["sim", "raft", "--seeds", "5..5"]);
    assert!(!o.status.success());
    let o = synod(&["sim", "raft", "--seeds", "0..2", "--nodes", "0"]);
    assert!(!o.status.success());
}

#[cfg(feature = "planted-bugs")]
#[test]
fn planted_bug_sweep_exits_one_and_names_the_seed() {
    let o = synod(&[
        "sim",
        "raft",
        "--seeds",
        "0..10",
        "--seconds",
        "20",
        "--planted-bug",
        "figure8-commit",
    ]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(out.contains("first failing seed: "), "{out}");
    assert!(out.contains("replay: synod sim raft --replay "), "{out}");
}
