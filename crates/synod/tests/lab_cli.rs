//! `synod lab` as a user runs it: the list, one scenario replayed byte for byte from
//! its seed, and the whole report.

use std::process::{Command, Output};

fn synod(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_synod"))
        .args(args)
        .output()
        .expect("synod runs")
}

#[test]
fn list_names_every_scenario() {
    let out = synod(&["lab", "list"]);
    assert!(out.status.success());
    let names = String::from_utf8(out.stdout).unwrap();
    for want in [
        "two-generals",
        "two-phase-commit",
        "three-phase-commit",
        "tmr",
    ] {
        assert!(names.lines().any(|l| l == want), "{names}");
    }
    assert_eq!(names.lines().count(), 10, "{names}");
}

#[test]
fn a_counter_example_replays_byte_identically_from_its_seed() {
    let args = ["lab", "three-phase-commit", "--seed", "1", "--trace"];
    let (a, b) = (synod(&args), synod(&args));
    assert!(a.status.success(), "{}", String::from_utf8_lossy(&a.stderr));
    assert!(!a.stdout.is_empty());
    assert_eq!(a.stdout, b.stdout);
}

#[test]
fn an_unknown_scenario_is_an_error() {
    let out = synod(&["lab", "no-such-thing"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no-such-thing"));
}

#[test]
fn all_writes_a_report_with_every_verdict() {
    let dir = std::env::temp_dir().join(format!("synod-lab-{}", std::process::id()));
    let out = synod(&["lab", "all", "--report", dir.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let html = std::fs::read_to_string(dir.join("index.html")).unwrap();
    assert!(html.contains("<svg") && html.contains("two-generals"));
    let _ = std::fs::remove_dir_all(&dir);
}
