//! The two clusters `synod bench --compare-etcd` measures: Synod members started by the
//! shared process harness, and Debian's etcd 3.4 through the reference-cluster script.
//! Both are stopped when their guard is dropped, on success, error or Ctrl-C alike.

use crate::load::STOP;
use harness::{Cluster, MemberPorts, Output, Spec};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// First client port of the reference script (members use 23791.., peers 23801..).
pub const ETCD_CLIENT_PORT: u16 = 23_791;
/// First peer port of the reference script.
pub const ETCD_PEER_PORT: u16 = 23_801;

/// Fails if any of `ports` is taken (a leftover cluster would answer in place of the
/// one we start).
pub fn check_free(ports: impl IntoIterator<Item = u16>, whose: &str) -> Result<(), String> {
    for p in ports {
        if TcpListener::bind(("127.0.0.1", p)).is_err() {
            return Err(format!(
                "port {p} for the {whose} cluster is in use (a leftover cluster?)"
            ));
        }
    }
    Ok(())
}

/// Starts `nodes` Synod members of the running binary through the shared harness
/// (clients on base_port, base_port+3, …; data and logs in `dir`, wiped first) and
/// returns once a leader is elected. Members are killed when the cluster is dropped.
pub fn start_synod(nodes: usize, base_port: u16, dir: &Path) -> Result<Cluster, String> {
    let _ = std::fs::remove_dir_all(dir);
    let exe = std::env::current_exe().map_err(|e| format!("current exe: {e}"))?;
    let mut spec = Spec::new(exe, dir.to_path_buf(), Output::Files);
    spec.token = "synod-bench".into();
    let ports: Vec<MemberPorts> = (0..nodes as u16)
        .map(|i| MemberPorts {
            client: base_port + 3 * i,
            peer: base_port + 3 * i + 1,
            admin: base_port + 3 * i + 2,
        })
        .collect();
    let mut cluster = Cluster::new(spec, &ports);
    cluster.spawn_all()?;
    cluster
        .leader_within(Duration::from_secs(30), &STOP)
        .map_err(|e| format!("synod: {e}; logs:\n{}", cluster.logs()))?;
    Ok(cluster)
}

/// An etcd reference cluster started by the script; `script stop DIR` on drop.
pub struct EtcdRef {
    script: PathBuf,
    dir: PathBuf,
}

impl EtcdRef {
    /// Runs `script start NODES DIR` (which installs etcd-server with apt-get when
    /// missing) and returns the endpoints it prints.
    pub fn start(script: &Path, nodes: usize, dir: &Path) -> Result<(Self, Vec<String>), String> {
        let guard = EtcdRef {
            script: script.to_path_buf(),
            dir: dir.to_path_buf(),
        };
        let out = Command::new("bash")
            .arg(script)
            .args(["start", &nodes.to_string()])
            .arg(dir)
            .stdin(Stdio::null())
            .stderr(Stdio::inherit())
            .output()
            .map_err(|e| format!("run {}: {e}", script.display()))?;
        let text = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            return Err(format!(
                "{} start failed ({}): {text}",
                script.display(),
                out.status
            ));
        }
        let last = text.lines().rev().find(|l| !l.trim().is_empty());
        let endpoints: Vec<String> = last
            .unwrap_or_default()
            .trim()
            .split(',')
            .map(str::to_string)
            .collect();
        if endpoints.len() != nodes {
            return Err(format!(
                "unexpected output from {}: {text}",
                script.display()
            ));
        }
        Ok((guard, endpoints))
    }
}

impl Drop for EtcdRef {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(&self.script)
            .arg("stop")
            .arg(&self.dir)
            .stdin(Stdio::null())
            .status();
    }
}
