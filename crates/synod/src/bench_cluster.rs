//! The two clusters `synod bench --compare-etcd` measures: `synod dev` as a child process
//! and Debian's etcd 3.4 through the reference-cluster script. Both are stopped when
//! their guard is dropped, on success, error or Ctrl-C alike.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

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

/// The last lines of a log file, for error messages.
fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A `synod dev` child; SIGINT and a wait on drop.
pub struct SynodDev {
    child: Child,
    /// Every member's admin HTTP base URL (`/metrics`, `/status`), in endpoint order.
    pub admin: Vec<String>,
}

impl SynodDev {
    /// Starts `nodes` members (clients on base_port, base_port+3, ...) with their data in
    /// `dir/data` (wiped first) and their output in `dir/dev.log`; returns once a leader
    /// is elected, with the client endpoints (and the admin URLs in `admin`).
    pub fn start(nodes: usize, base_port: u16, dir: &Path) -> Result<(Self, Vec<String>), String> {
        let data = dir.join("data");
        let _ = std::fs::remove_dir_all(&data);
        std::fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        let log_path = dir.join("dev.log");
        let mut log =
            File::create(&log_path).map_err(|e| format!("create {}: {e}", log_path.display()))?;
        let stderr = log.try_clone().map_err(|e| e.to_string())?;
        let exe = std::env::current_exe().map_err(|e| format!("current exe: {e}"))?;
        let mut cmd = Command::new(exe);
        cmd.arg("dev")
            .args(["--nodes", &nodes.to_string()])
            .args(["--base-port", &base_port.to_string()])
            .arg("--data-dir")
            .arg(&data)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr));
        // SAFETY: prctl only sets the child's parent-death signal, so the cluster never
        // outlives a bench that was killed.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        let mut child = cmd.spawn().map_err(|e| format!("start synod dev: {e}"))?;
        let out = child.stdout.take().expect("piped stdout");
        let mut dev = SynodDev {
            child,
            admin: Vec::new(),
        };
        let mut reader = BufReader::new(out);
        let mut line = String::new();
        let mut endpoints: Vec<String> = Vec::new();
        // `synod dev` prints `endpoints: A,B,C`, then `admin: URL,URL,URL (paths)`.
        while endpoints.is_empty() || dev.admin.is_empty() {
            line.clear();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return Err(format!(
                    "synod dev exited before printing its endpoints and admin URLs; {}:\n{}",
                    log_path.display(),
                    tail(&log_path, 20)
                ));
            }
            let _ = log.write_all(line.as_bytes());
            if let Some(eps) = line.trim().strip_prefix("endpoints: ") {
                endpoints = eps.split(',').map(str::to_string).collect();
            } else if let Some(urls) = line.trim().strip_prefix("admin: ") {
                let urls = urls.split_whitespace().next().unwrap_or_default();
                dev.admin = urls.split(',').map(str::to_string).collect();
            }
        }
        // Keep draining the members' output, or they would block on a full pipe.
        std::thread::spawn(move || std::io::copy(&mut reader, &mut log));
        Ok((dev, endpoints))
    }
}

impl Drop for SynodDev {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child's pid; no memory is touched.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGINT);
        }
        let _ = self.child.wait();
    }
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
