//! Debian's `etcdctl`, installed when missing and run against a cluster.

use crate::Cluster;
use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::sync::Once;

/// Installs Debian `package` with apt-get (refreshing the package lists once if the
/// first attempt fails); panics if it cannot.
pub fn apt_install(package: &str) {
    let install = || {
        Command::new("apt-get")
            .args(["install", "-y", package])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .is_ok_and(|s| s.success())
    };
    if !install() {
        let _ = Command::new("apt-get").arg("update").status();
        assert!(install(), "could not install {package} with apt-get");
    }
}

/// `etcdctl` (API v3) against `endpoints` with `args`, ready to spawn.
pub fn etcdctl_command(endpoints: &str, args: &[&str]) -> Command {
    let mut c = Command::new("etcdctl");
    c.env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoints}"))
        .args(args);
    c
}

/// Installs Debian's etcd-client with apt-get when `etcdctl` is missing.
pub fn ensure_etcdctl() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if Command::new("etcdctl").arg("version").output().is_ok() {
            return;
        }
        eprintln!("etcdctl missing: installing Debian's etcd-client");
        apt_install("etcd-client");
    });
}

impl Cluster {
    /// Runs etcdctl (API v3) against `endpoints`, with `stdin` as its input.
    pub fn etcdctl_at(&self, endpoints: &str, args: &[&str], stdin: Option<&str>) -> Output {
        let mut child = etcdctl_command(endpoints, args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("etcdctl runs");
        let mut input = child.stdin.take().expect("piped stdin");
        if let Some(text) = stdin {
            input
                .write_all(text.as_bytes())
                .expect("etcdctl reads its input");
        }
        drop(input);
        child.wait_with_output().expect("etcdctl finishes")
    }

    /// Runs etcdctl against every member.
    pub fn etcdctl(&self, args: &[&str]) -> Output {
        self.etcdctl_at(&self.endpoints(), args, None)
    }

    /// etcdctl's stdout when it succeeded; a panic with everything it printed and every
    /// member's log tail when it did not (for tests).
    pub fn ok(&self, o: Output) -> String {
        let out = String::from_utf8_lossy(&o.stdout).to_string();
        assert!(
            o.status.success(),
            "command failed: {out}\n{}\n{}",
            String::from_utf8_lossy(&o.stderr),
            self.logs()
        );
        out
    }
}
