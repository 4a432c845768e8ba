//! The end-to-end tests' clusters: the shared process harness with the `synod` binary
//! under test, logs in a temporary directory that is removed unless the test failed.
#![allow(dead_code, unused_imports)]

pub use harness::{ensure_etcdctl, http::get as http_get, Cluster, Member};
use std::process::Output;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

static NEXT: AtomicU32 = AtomicU32::new(0);

/// Starts `n` members and waits for a leader.
pub fn start(n: usize, snapshot_count: u64) -> Cluster {
    start_with(n, snapshot_count, &[])
}

/// Starts `n` members with extra flags and waits for a leader and for every member to
/// serve.
pub fn start_with(n: usize, snapshot_count: u64, extra: &[&str]) -> Cluster {
    let dir = std::env::temp_dir().join(format!(
        "synod-e2e-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    let exe = env!("CARGO_BIN_EXE_synod").into();
    let mut spec = harness::Spec::new(exe, dir, harness::Output::Files);
    spec.snapshot_count = snapshot_count;
    spec.flags = extra.iter().map(|s| s.to_string()).collect();
    spec.remove_dir_on_drop = true;
    let mut c = Cluster::with_free_ports(spec, n).expect("free ports");
    if let Err(e) = c.spawn_all() {
        panic!("{e}");
    }
    c.wait_leader(Duration::from_secs(20));
    c.wait_all_serving(Duration::from_secs(20));
    c
}

/// stdout of a successful command, or a panic with everything it printed.
pub fn ok(o: Output, c: &Cluster) -> String {
    c.ok(o)
}
