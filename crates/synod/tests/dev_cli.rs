//! `synod dev`: starts a local cluster of real member processes, prints the endpoints,
//! passes `etcdctl check perf --load=s`, stops cleanly on SIGINT, and brings the data
//! back when run again on the same data dir.

mod common;

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// A base port with 9 free consecutive ports after it.
fn free_base() -> u16 {
    for base in (21_000..60_000).step_by(97) {
        let ls: Vec<_> = (0..9)
            .map(|i| TcpListener::bind(("127.0.0.1", base + i)))
            .collect();
        if ls.iter().all(|l| l.is_ok()) {
            return base;
        }
    }
    panic!("no free port range");
}

struct Dev {
    child: Child,
    lines: mpsc::Receiver<String>,
    endpoints: String,
}

fn start_dev(dir: &Path, base: u16) -> Dev {
    let mut child = Command::new(env!("CARGO_BIN_EXE_synod"))
        .args(["dev", "--base-port", &base.to_string()])
        .arg("--data-dir")
        .arg(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("synod dev starts");
    let out: ChildStdout = child.stdout.take().unwrap();
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    let endpoints = loop {
        let l = lines
            .recv_timeout(Duration::from_secs(30))
            .expect("synod dev prints its endpoints within 30 s");
        if let Some(ep) = l.strip_prefix("endpoints: ") {
            break ep.to_string();
        }
    };
    Dev {
        child,
        lines,
        endpoints,
    }
}

fn etcdctl(endpoints: &str, args: &[&str]) -> String {
    let o = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoints}"))
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.status.success(), "etcdctl {args:?} failed:\n{text}");
    text
}

impl Drop for Dev {
    /// A failed assertion must not leave the cluster running: SIGKILL reaches the
    /// members through their parent-death signal.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// SIGINT, then every member must report a clean stop and dev must exit 0.
fn interrupt(mut dev: Dev) {
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(dev.child.id() as libc::pid_t, libc::SIGINT) };
    let status = dev.child.wait().unwrap();
    let rest: Vec<String> = dev.lines.try_iter().collect();
    assert!(status.success(), "synod dev exited with {status}: {rest:?}");
    let stopped = rest
        .iter()
        .filter(|l| l.contains("stopped (exit status: 0)"))
        .count();
    assert_eq!(stopped, 3, "{rest:#?}");
}

#[test]
fn dev_cluster_passes_check_perf_and_keeps_data_across_runs() {
    common::ensure_etcdctl();
    let dir = std::env::temp_dir().join(format!("synod-dev-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let base = free_base();
    let dev = start_dev(&dir, base);
    assert_eq!(dev.endpoints.split(',').count(), 3, "{}", dev.endpoints);
    let perf = etcdctl(&dev.endpoints, &["check", "perf", "--load=s"]);
    assert!(perf.contains("PASS: Throughput"), "{perf}");
    assert!(
        perf.contains("\nPASS\n") || perf.trim_end().ends_with("PASS"),
        "{perf}"
    );
    // check perf deletes what it wrote.
    let left = etcdctl(
        &dev.endpoints,
        &["get", "--prefix", "/etcdctl-check-perf/", "--keys-only"],
    );
    assert_eq!(left.trim(), "", "check perf left keys behind");
    etcdctl(&dev.endpoints, &["put", "survivor", "still-here"]);
    interrupt(dev);

    let dev = start_dev(&dir, base);
    let got = etcdctl(&dev.endpoints, &["get", "survivor"]);
    assert_eq!(got, "survivor\nstill-here\n");
    interrupt(dev);
    let _ = std::fs::remove_dir_all(&dir);
}
