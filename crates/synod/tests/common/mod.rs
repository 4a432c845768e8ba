//! A cluster of real `synod node` processes on loopback, for end-to-end tests.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Once;
use std::time::{Duration, Instant};

/// One member process.
pub struct Member {
    pub name: String,
    pub client: u16,
    pub peer: u16,
    pub admin: u16,
    pub child: Option<Child>,
}

/// A running cluster; every process is killed and the data removed on drop.
pub struct Cluster {
    pub dir: PathBuf,
    pub members: Vec<Member>,
    pub snapshot_count: u64,
    /// Extra flags for every member.
    pub extra: Vec<String>,
    cluster: String,
}

static NEXT: AtomicU32 = AtomicU32::new(0);

/// GET a path on a local port; (status code, body).
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let addr = format!("127.0.0.1:{port}").parse().ok()?;
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let code = text.split_whitespace().nth(1)?.parse().ok()?;
    Some((code, text.split_once("\r\n\r\n")?.1.to_string()))
}

/// Installs Debian's etcd-client when `etcdctl` is missing.
pub fn ensure_etcdctl() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let have = Command::new("etcdctl").arg("version").output().is_ok();
        if have {
            return;
        }
        eprintln!("etcdctl missing: installing Debian's etcd-client");
        let install = || {
            Command::new("apt-get")
                .args(["install", "-y", "etcd-client"])
                .env("DEBIAN_FRONTEND", "noninteractive")
                .status()
                .is_ok_and(|s| s.success())
        };
        if !install() {
            let _ = Command::new("apt-get").arg("update").status();
            assert!(install(), "could not install etcd-client with apt-get");
        }
    });
}

impl Cluster {
    /// Starts `n` members and waits for a leader.
    pub fn start(n: usize, snapshot_count: u64) -> Cluster {
        Cluster::start_with(n, snapshot_count, &[])
    }

    /// Starts `n` members with extra flags and waits for a leader.
    pub fn start_with(n: usize, snapshot_count: u64, extra: &[&str]) -> Cluster {
        let dir = std::env::temp_dir().join(format!(
            "synod-e2e-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let ports = server::ports::free_loopback_ports(3 * n).expect("free ports");
        let members: Vec<Member> = (0..n)
            .map(|i| Member {
                name: format!("m{}", i + 1),
                client: ports[3 * i],
                peer: ports[3 * i + 1],
                admin: ports[3 * i + 2],
                child: None,
            })
            .collect();
        let cluster = members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer))
            .collect::<Vec<_>>()
            .join(",");
        let mut c = Cluster {
            dir,
            members,
            snapshot_count,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            cluster,
        };
        for i in 0..n {
            c.spawn(i);
        }
        c.wait_leader(Duration::from_secs(20));
        c.wait_all_serving(Duration::from_secs(20));
        c
    }

    /// Waits until every running member answers /status; panics with the logs if one
    /// has exited (a port it could not bind, say) instead of letting a test fail later
    /// with a confusing "cannot connect".
    pub fn wait_all_serving(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        for i in 0..self.members.len() {
            while let Some(child) = self.members[i].child.as_mut() {
                if let Ok(Some(st)) = child.try_wait() {
                    panic!("member {i} exited at start ({st})\n{}", self.logs());
                }
                if self.status(i).is_some() {
                    break;
                }
                if Instant::now() >= deadline {
                    panic!("member {i} not serving within {timeout:?}\n{}", self.logs());
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// Starts (or restarts) member `i`.
    pub fn spawn(&mut self, i: usize) {
        let m = &self.members[i];
        let url = |p: u16| format!("http://127.0.0.1:{p}");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("{}.log", m.name)))
            .unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_synod"));
        cmd.arg("node")
            .args(["--name", &m.name])
            .arg("--data-dir")
            .arg(self.dir.join(&m.name))
            .args(["--listen-client-urls", &url(m.client)])
            .args(["--advertise-client-urls", &url(m.client)])
            .args(["--listen-peer-urls", &url(m.peer)])
            .args(["--initial-advertise-peer-urls", &url(m.peer)])
            .args(["--initial-cluster", &self.cluster])
            .args(["--listen-metrics-urls", &url(m.admin)])
            .args(["--snapshot-count", &self.snapshot_count.to_string()])
            .args(&self.extra)
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log));
        // SAFETY: prctl only sets the child's parent-death signal, so members never
        // outlive a test process that was killed.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd.spawn().expect("synod node starts");
        self.members[i].child = Some(child);
    }

    /// SIGKILL member `i`.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Member `i`'s /status body.
    pub fn status(&self, i: usize) -> Option<String> {
        http_get(self.members[i].admin, "/status").map(|(_, b)| b)
    }

    /// A numeric field of member `i`'s /status.
    pub fn status_field(&self, i: usize, field: &str) -> Option<u64> {
        let status: serde_json::Value = serde_json::from_str(&self.status(i)?).ok()?;
        status[field].as_u64()
    }

    /// A counter or gauge of member `i`'s /metrics (Prometheus text).
    pub fn metric(&self, i: usize, name: &str) -> Option<u64> {
        let (_, body) = http_get(self.members[i].admin, "/metrics")?;
        body.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
    }

    /// Waits until some running member is leader; returns its index.
    pub fn wait_leader(&self, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            for (i, m) in self.members.iter().enumerate() {
                if m.child.is_some()
                    && self
                        .status(i)
                        .and_then(|b| serde_json::from_str::<serde_json::Value>(&b).ok())
                        .is_some_and(|v| v["role"] == "leader")
                {
                    return i;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("no leader within {timeout:?}\n{}", self.logs());
    }

    /// Every member's client endpoint.
    pub fn endpoints(&self) -> String {
        self.members
            .iter()
            .map(|m| format!("127.0.0.1:{}", m.client))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Runs etcdctl against `endpoints`.
    pub fn etcdctl_at(&self, endpoints: &str, args: &[&str], stdin: Option<&str>) -> Output {
        let mut cmd = Command::new("etcdctl");
        cmd.env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={endpoints}"))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("etcdctl runs");
        let mut input = child.stdin.take().unwrap();
        if let Some(text) = stdin {
            input.write_all(text.as_bytes()).unwrap();
        }
        drop(input);
        child.wait_with_output().unwrap()
    }

    /// Runs etcdctl against every member.
    pub fn etcdctl(&self, args: &[&str]) -> Output {
        self.etcdctl_at(&self.endpoints(), args, None)
    }

    /// Member `i`'s whole log.
    pub fn log_of(&self, i: usize) -> String {
        let name = &self.members[i].name;
        std::fs::read_to_string(self.dir.join(format!("{name}.log"))).unwrap_or_default()
    }

    /// Every member's log, for failure messages.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for m in &self.members {
            let text = std::fs::read_to_string(self.dir.join(format!("{}.log", m.name)))
                .unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(40).collect();
            out.push_str(&format!("--- {} (last lines) ---\n", m.name));
            for l in tail.iter().rev() {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// stdout of a successful command, or a panic with everything it printed.
pub fn ok(o: Output, c: &Cluster) -> String {
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(
        o.status.success(),
        "command failed: {out}\n{}\n{}",
        String::from_utf8_lossy(&o.stderr),
        c.logs()
    );
    out
}
