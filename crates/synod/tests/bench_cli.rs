//! The `synod bench wal` command-line contract, on the real binary.

use std::process::Command;

#[test]
fn bench_wal_ends_with_one_summary_line() {
    let o = Command::new(env!("CARGO_BIN_EXE_synod"))
        .args(["bench", "wal", "--appenders", "4", "--seconds", "1"])
        .output()
        .expect("synod runs");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{out}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let line = out.lines().last().unwrap_or_default();
    let pairs: Vec<(&str, f64)> = line
        .split(' ')
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            let v: f64 = v
                .parse()
                .unwrap_or_else(|_| panic!("value of '{k}' is not a number: {line}"));
            (k, v)
        })
        .collect();
    let keys: Vec<&str> = pairs.iter().map(|(k, _)| *k).collect();
    assert_eq!(
        keys,
        [
            "appenders",
            "entries_per_s",
            "fsyncs_per_s",
            "raw_fsyncs_per_s",
            "p99_append_ms"
        ],
        "{line}"
    );
    assert_eq!(pairs[0].1, 4.0, "{line}");
    assert!(pairs[1].1 > 0.0, "{line}");
}
