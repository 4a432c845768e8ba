//! The Rust `etcd-client` crate works against Synod for watch, lease, lock and
//! election. The client program (`tests/rust_client`) is its own cargo project, built
//! here with a vendored protoc: etcd-client's build script needs one, and nothing else
//! in Synod does.

mod common;

use std::path::Path;
use std::process::Command;

/// Builds the client program; its path.
fn build_client() -> std::path::PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/rust_client/Cargo.toml");
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).join("rust-client");
    let protoc = protoc_bin_vendored::protoc_bin_path().expect("a vendored protoc");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let o = Command::new(cargo)
        .args(["build", "--quiet", "--manifest-path"])
        .arg(&manifest)
        .arg("--target-dir")
        .arg(&target)
        .env("PROTOC", protoc)
        .output()
        .expect("cargo runs");
    assert!(
        o.status.success(),
        "building the etcd-client program failed:\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    target.join("debug/synod-interop-rust-client")
}

#[test]
fn the_etcd_client_crate_watches_leases_locks_and_campaigns() {
    let client = build_client();
    let c = common::start(3, 10_000);
    let o = Command::new(&client)
        .arg(c.endpoints())
        .output()
        .expect("the client runs");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{out}{}\n{}",
        String::from_utf8_lossy(&o.stderr),
        c.logs()
    );
    assert_eq!(out, "watch: ok\nlease: ok\nlock: ok\nelection: ok\n");
}
