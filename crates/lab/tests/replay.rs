//! Same seed, same trace bytes; the API's error and report directory.

#[test]
fn every_scenario_replays_byte_identically_from_its_seed() {
    for name in lab::list() {
        let a = lab::run(name, 3, true)
            .expect("known")
            .trace
            .expect("traced");
        let b = lab::run(name, 3, true)
            .expect("known")
            .trace
            .expect("traced");
        assert!(!a.is_empty(), "{name}: empty trace");
        assert!(a == b, "{name}: traces differ between two runs of seed 3");
    }
}

#[test]
fn a_counter_example_replays_from_its_own_seed() {
    let r = lab::run("two-phase-commit", 1, false).expect("known");
    let blocking = r.verdict("blocking:").expect("verdict");
    let again = lab::run("two-phase-commit", blocking.seed, true).expect("known");
    let v = again.verdict("blocking:").expect("verdict");
    assert_eq!(
        v.seed, blocking.seed,
        "starting the search at the found seed finds it at once"
    );
    assert_eq!(v.runs, 1);
    assert_eq!(v.violation, blocking.violation);
}

#[test]
fn traces_off_means_no_trace_and_unknown_names_are_errors() {
    assert!(lab::run("tmr", 1, false).expect("known").trace.is_none());
    let err = lab::run("no-such-scenario", 1, false).unwrap_err();
    assert!(matches!(err, lab::LabError::UnknownScenario(_)));
    assert!(err.to_string().contains("two-generals"));
}

#[test]
fn the_report_directory_has_an_index_with_every_verdict_and_plot() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("lab-report-test");
    let _ = std::fs::remove_dir_all(&dir);
    let reports: Vec<lab::Report> = ["two-generals", "tmr"]
        .iter()
        .map(|n| lab::run(n, 1, true).expect("known"))
        .collect();
    lab::write_report(&dir, &reports).expect("written");
    let index = std::fs::read_to_string(dir.join("index.html")).expect("index");
    for r in &reports {
        for v in &r.verdicts {
            let escaped = v
                .claim
                .replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;");
            assert!(index.contains(&escaped), "{}", v.claim);
        }
        for f in &r.figures {
            assert!(dir.join(format!("{}-{}.svg", r.scenario, f.id)).exists());
        }
        assert!(dir.join(format!("{}.trace.txt", r.scenario)).exists());
    }
    assert_eq!(
        index.matches("<svg").count(),
        reports.iter().map(|r| r.figures.len()).sum::<usize>()
    );
}
