//! The cluster under test: real `synod node` processes on loopback, every peer link
//! through its own proxy, with kill, restart, pause and resume.

use super::proxy::{self, Links};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

/// One member process.
pub struct Member {
    pub name: String,
    pub client: u16,
    pub peer: u16,
    pub admin: u16,
    pub child: Option<Child>,
    pub paused: bool,
    /// `--unsafe-peer-dial`: this member's proxies towards each peer.
    dial: String,
}

/// The cluster and its proxies.
pub struct Cluster {
    pub members: Vec<Member>,
    pub links: Links,
    pub dir: PathBuf,
    cluster: String,
    /// Extra flags for every member (disk faults, planted bugs).
    pub extra: Vec<String>,
    /// Disk-fault spec a member is started with (per member, may change).
    pub disk: Vec<String>,
}

impl Cluster {
    /// Prepares `n` members and their proxies (nothing is started yet).
    pub async fn new(n: usize, dir: PathBuf, extra: Vec<String>) -> std::io::Result<Cluster> {
        let ports = server::ports::free_loopback_ports(3 * n)?;
        let links = Links::default();
        let mut members = Vec::new();
        for i in 0..n {
            let mut dial = Vec::new();
            for j in (0..n).filter(|j| *j != i) {
                let target = format!("127.0.0.1:{}", ports[3 * j + 1]);
                let port = proxy::start(links.clone(), i, j, target).await?;
                dial.push(format!("n{}=127.0.0.1:{port}", j + 1));
            }
            members.push(Member {
                name: format!("n{}", i + 1),
                client: ports[3 * i],
                peer: ports[3 * i + 1],
                admin: ports[3 * i + 2],
                child: None,
                paused: false,
                dial: dial.join(","),
            });
        }
        let cluster = members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer))
            .collect::<Vec<_>>()
            .join(",");
        std::fs::create_dir_all(&dir)?;
        Ok(Cluster {
            disk: vec![String::new(); n],
            members,
            links,
            dir,
            cluster,
            extra,
        })
    }

    /// Starts (or restarts) member `i`.
    pub fn start(&mut self, i: usize) -> std::io::Result<()> {
        let m = &self.members[i];
        let url = |p: u16| format!("http://127.0.0.1:{p}");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("{}.log", m.name)))?;
        let mut cmd = Command::new(std::env::current_exe()?);
        cmd.arg("node")
            .args(["--name", &m.name])
            .arg("--data-dir")
            .arg(self.dir.join(&m.name))
            .args(["--listen-client-urls", &url(m.client)])
            .args(["--advertise-client-urls", &url(m.client)])
            .args(["--listen-peer-urls", &url(m.peer)])
            .args(["--initial-advertise-peer-urls", &url(m.peer)])
            .args(["--initial-cluster", &self.cluster])
            .args(["--initial-cluster-token", "synod-chaos"])
            .args(["--listen-metrics-urls", &url(m.admin)])
            .args(["--snapshot-count", "2000"])
            .args(["--unsafe-peer-dial", &m.dial])
            .args(["--unsafe-disk-faults", &self.disk[i]])
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log));
        // SAFETY: prctl only sets the child's parent-death signal.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd.spawn()?;
        self.members[i].child = Some(child);
        self.members[i].paused = false;
        Ok(())
    }

    fn signal(&self, i: usize, sig: libc::c_int) {
        if let Some(c) = &self.members[i].child {
            // SAFETY: kill(2) on our own child; no memory is touched.
            unsafe {
                libc::kill(c.id() as libc::pid_t, sig);
            }
        }
    }

    /// SIGKILL member `i`.
    pub fn kill(&mut self, i: usize) {
        self.signal(i, libc::SIGCONT);
        if let Some(mut c) = self.members[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.members[i].paused = false;
    }

    /// SIGSTOP member `i`.
    pub fn pause(&mut self, i: usize) {
        self.signal(i, libc::SIGSTOP);
        self.members[i].paused = true;
    }

    /// SIGCONT member `i`.
    pub fn resume(&mut self, i: usize) {
        self.signal(i, libc::SIGCONT);
        self.members[i].paused = false;
    }

    /// Members that exited on their own (fail-stop), reaped; their names.
    pub fn reap_exited(&mut self) -> Vec<usize> {
        let mut out = Vec::new();
        for (i, m) in self.members.iter_mut().enumerate() {
            if let Some(c) = &mut m.child {
                if let Ok(Some(_)) = c.try_wait() {
                    m.child = None;
                    out.push(i);
                }
            }
        }
        out
    }

    /// Client endpoint of member `i`.
    pub fn endpoint(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.members[i].client)
    }

    /// A field of member `i`'s `/status`, via a short blocking HTTP GET.
    pub fn status(&self, i: usize) -> Option<String> {
        if self.members[i].child.is_none() || self.members[i].paused {
            return None;
        }
        crate::dev_cmd::http_get(self.members[i].admin, "/status")
    }

    /// The member that reports itself leader, if any.
    pub fn leader(&self) -> Option<usize> {
        (0..self.members.len()).find(|&i| {
            self.status(i)
                .is_some_and(|b| b.contains("\"role\":\"leader\""))
        })
    }

    /// A numeric field of member `i`'s status.
    pub fn status_field(&self, i: usize, field: &str) -> Option<u64> {
        let body = self.status(i)?;
        let pat = format!("\"{field}\":");
        let rest = &body[body.find(&pat)? + pat.len()..];
        rest.split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()
    }

    /// Stops everything.
    pub fn shutdown(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }

    /// Last lines of member `i`'s log.
    pub fn log_tail(&self, i: usize, n: usize) -> Vec<String> {
        let text = std::fs::read_to_string(self.dir.join(format!("{}.log", self.members[i].name)))
            .unwrap_or_default();
        let lines: Vec<String> = text.lines().map(String::from).collect();
        lines[lines.len().saturating_sub(n)..].to_vec()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.shutdown();
    }
}
