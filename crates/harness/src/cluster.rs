//! The cluster: member processes, their ports, their output, and their status.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How often the waits poll `/status`.
const POLL: Duration = Duration::from_millis(50);

/// Where a member's stdout and stderr go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    /// Appended to `DIR/NAME.log`.
    Files,
    /// Our own stdout, each line prefixed with `[NAME] ` (`synod dev`).
    Prefixed,
}

/// What every member of a cluster is started with.
#[derive(Clone, Debug)]
pub struct Spec {
    /// The `synod` binary.
    pub exe: PathBuf,
    /// Members keep their data in `dir/NAME` and, with [`Output::Files`], their log in
    /// `dir/NAME.log`.
    pub dir: PathBuf,
    pub output: Output,
    /// Member names are this prefix and a number from 1.
    pub name_prefix: String,
    pub token: String,
    pub snapshot_count: u64,
    /// Extra flags for every member.
    pub flags: Vec<String>,
    /// The signal a member gets when the harness process dies.
    pub parent_death_signal: libc::c_int,
    /// Remove `dir` on drop (unless the thread is panicking, so a failed test keeps
    /// its logs).
    pub remove_dir_on_drop: bool,
}

impl Spec {
    /// Defaults: members `m1`, `m2`, …; token `synod`; snapshots every 100,000
    /// entries; SIGKILL on parent death; the directory is kept.
    pub fn new(exe: PathBuf, dir: PathBuf, output: Output) -> Spec {
        Spec {
            exe,
            dir,
            output,
            name_prefix: "m".into(),
            token: "synod".into(),
            snapshot_count: 100_000,
            flags: Vec::new(),
            parent_death_signal: libc::SIGKILL,
            remove_dir_on_drop: false,
        }
    }
}

/// A member's three ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemberPorts {
    pub client: u16,
    pub peer: u16,
    /// `--listen-metrics-urls` (admin HTTP: /status, /metrics, /health).
    pub admin: u16,
}

/// One member process.
#[derive(Debug)]
pub struct Member {
    pub name: String,
    pub client: u16,
    pub peer: u16,
    pub admin: u16,
    pub child: Option<Child>,
    /// Stopped with SIGSTOP (its admin port would not answer).
    pub paused: bool,
    /// Extra flags for this member only (the chaos lab's proxies and disk faults).
    pub flags: Vec<String>,
}

/// A cluster of member processes; every one still running is killed on drop.
pub struct Cluster {
    pub spec: Spec,
    pub members: Vec<Member>,
    initial_cluster: String,
}

impl Cluster {
    /// A cluster on the given ports (nothing is started yet).
    pub fn new(spec: Spec, ports: &[MemberPorts]) -> Cluster {
        let members: Vec<Member> = ports
            .iter()
            .enumerate()
            .map(|(i, p)| Member {
                name: format!("{}{}", spec.name_prefix, i + 1),
                client: p.client,
                peer: p.peer,
                admin: p.admin,
                child: None,
                paused: false,
                flags: Vec::new(),
            })
            .collect();
        let initial_cluster = members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer))
            .collect::<Vec<_>>()
            .join(",");
        Cluster {
            spec,
            members,
            initial_cluster,
        }
    }

    /// A cluster of `n` members on free loopback ports (nothing is started yet).
    pub fn with_free_ports(spec: Spec, n: usize) -> std::io::Result<Cluster> {
        let p = crate::ports::free_loopback_ports(3 * n)?;
        let ports: Vec<MemberPorts> = p
            .chunks(3)
            .map(|c| MemberPorts {
                client: c[0],
                peer: c[1],
                admin: c[2],
            })
            .collect();
        Ok(Cluster::new(spec, &ports))
    }

    /// The `--initial-cluster` value.
    pub fn initial_cluster(&self) -> &str {
        &self.initial_cluster
    }

    /// Member `i`'s command line, without the program.
    pub fn args(&self, i: usize) -> Vec<String> {
        let m = &self.members[i];
        let url = |p: u16| format!("http://127.0.0.1:{p}");
        let data = self.spec.dir.join(&m.name);
        let mut a: Vec<String> = [
            "node",
            "--name",
            &m.name,
            "--data-dir",
            &data.to_string_lossy(),
            "--listen-client-urls",
            &url(m.client),
            "--advertise-client-urls",
            &url(m.client),
            "--listen-peer-urls",
            &url(m.peer),
            "--initial-advertise-peer-urls",
            &url(m.peer),
            "--initial-cluster",
            &self.initial_cluster,
            "--initial-cluster-token",
            &self.spec.token,
            "--listen-metrics-urls",
            &url(m.admin),
            "--snapshot-count",
            &self.spec.snapshot_count.to_string(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        a.extend(self.spec.flags.iter().cloned());
        a.extend(m.flags.iter().cloned());
        a
    }

    /// Starts (or restarts) member `i`.
    pub fn spawn(&mut self, i: usize) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.spec.dir)?;
        let mut cmd = Command::new(&self.spec.exe);
        cmd.args(self.args(i)).stdin(Stdio::null());
        match self.spec.output {
            Output::Files => {
                let log = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(self.log_path(i))?;
                cmd.stdout(Stdio::from(log.try_clone()?))
                    .stderr(Stdio::from(log));
            }
            Output::Prefixed => {
                cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
            }
        }
        let sig = self.spec.parent_death_signal;
        // SAFETY: prctl is async-signal-safe; it only sets this child's parent-death
        // signal, so members never outlive a harness that was killed.
        unsafe {
            cmd.pre_exec(move || {
                libc::prctl(libc::PR_SET_PDEATHSIG, sig);
                Ok(())
            });
        }
        let mut child = cmd.spawn()?;
        if self.spec.output == Output::Prefixed {
            copy_prefixed(&mut child, &self.members[i].name);
        }
        self.members[i].child = Some(child);
        self.members[i].paused = false;
        Ok(())
    }

    /// Starts every member; on a failure, those already started are killed.
    pub fn spawn_all(&mut self) -> Result<(), String> {
        for i in 0..self.members.len() {
            if let Err(e) = self.spawn(i) {
                self.kill_all();
                return Err(format!("cannot start {}: {e}", self.members[i].name));
            }
        }
        Ok(())
    }

    /// Sends `sig` to member `i`, if it runs.
    pub fn signal(&self, i: usize, sig: libc::c_int) {
        if let Some(c) = &self.members[i].child {
            // SAFETY: kill(2) on our own child's pid; no memory is touched.
            unsafe {
                libc::kill(c.id() as libc::pid_t, sig);
            }
        }
    }

    /// SIGKILL member `i` and reap it (a paused member is resumed first).
    pub fn kill(&mut self, i: usize) {
        self.signal(i, libc::SIGCONT);
        if let Some(mut c) = self.members[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.members[i].paused = false;
    }

    /// SIGKILL every member.
    pub fn kill_all(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
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

    /// SIGTERM every member, then wait up to `grace` for each before SIGKILL. Returns
    /// each member that ran with how it ended (`None`: killed after the grace period).
    pub fn terminate_all(&mut self, grace: Duration) -> Vec<(usize, Option<ExitStatus>)> {
        for i in 0..self.members.len() {
            self.signal(i, libc::SIGCONT);
            self.signal(i, libc::SIGTERM);
        }
        let deadline = Instant::now() + grace;
        let mut out = Vec::new();
        for (i, m) in self.members.iter_mut().enumerate() {
            let Some(mut c) = m.child.take() else {
                continue;
            };
            m.paused = false;
            let status = loop {
                match c.try_wait() {
                    Ok(Some(s)) => break Some(s),
                    Ok(None) if Instant::now() < deadline => std::thread::sleep(POLL),
                    _ => {
                        let _ = c.kill();
                        let _ = c.wait();
                        break None;
                    }
                }
            };
            out.push((i, status));
        }
        out
    }

    /// Members that exited on their own, reaped, with their exit status.
    pub fn reap_exited(&mut self) -> Vec<(usize, ExitStatus)> {
        let mut out = Vec::new();
        for (i, m) in self.members.iter_mut().enumerate() {
            if let Some(c) = &mut m.child {
                if let Ok(Some(s)) = c.try_wait() {
                    m.child = None;
                    m.paused = false;
                    out.push((i, s));
                }
            }
        }
        out
    }

    /// Member `i`'s `/status` text; `None` when it does not run, is paused, or does
    /// not answer.
    pub fn status(&self, i: usize) -> Option<String> {
        let m = &self.members[i];
        if m.child.is_none() || m.paused {
            return None;
        }
        crate::http::get(m.admin, "/status").map(|(_, body)| body)
    }

    /// Member `i`'s `/status` as JSON.
    pub fn status_json(&self, i: usize) -> Option<serde_json::Value> {
        serde_json::from_str(&self.status(i)?).ok()
    }

    /// A numeric field of member `i`'s `/status`.
    pub fn status_field(&self, i: usize, field: &str) -> Option<u64> {
        self.status_json(i)?[field].as_u64()
    }

    /// An unlabelled counter or gauge of member `i`'s `/metrics`.
    pub fn metric(&self, i: usize, name: &str) -> Option<f64> {
        let (_, body) = crate::http::get(self.members[i].admin, "/metrics")?;
        crate::http::metric_value(&body, name)
    }

    /// The running member that reports itself leader, if any.
    pub fn leader(&self) -> Option<usize> {
        (0..self.members.len())
            .find(|&i| self.status_json(i).is_some_and(|v| v["role"] == "leader"))
    }

    /// Waits until some running member is leader, until `timeout` passes or `stop` is
    /// set; fails early when a member has exited.
    pub fn leader_within(&mut self, timeout: Duration, stop: &AtomicBool) -> Result<usize, String> {
        let deadline = Instant::now() + timeout;
        while !stop.load(Ordering::SeqCst) {
            if let Some((i, s)) = self.reap_exited().first() {
                return Err(format!("member {} exited ({s})", self.members[*i].name));
            }
            if let Some(i) = self.leader() {
                return Ok(i);
            }
            if Instant::now() >= deadline {
                return Err(format!("no leader was elected within {timeout:?}"));
            }
            std::thread::sleep(POLL);
        }
        Err("stopped".into())
    }

    /// Waits for a leader; panics with every member's log tail if there is none (for
    /// tests).
    pub fn wait_leader(&self, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(i) = self.leader() {
                return i;
            }
            if Instant::now() >= deadline {
                panic!("no leader within {timeout:?}\n{}", self.logs());
            }
            std::thread::sleep(POLL);
        }
    }

    /// Waits until every running member answers `/status`; panics with the logs if one
    /// has exited (a port it could not bind, say) or stays silent (for tests).
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
                std::thread::sleep(POLL);
            }
        }
    }

    /// Every member's client address (`127.0.0.1:PORT`), comma-separated.
    pub fn endpoints(&self) -> String {
        self.members
            .iter()
            .map(|m| format!("127.0.0.1:{}", m.client))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Every member's admin base URL.
    pub fn admin_urls(&self) -> Vec<String> {
        self.members
            .iter()
            .map(|m| format!("http://127.0.0.1:{}", m.admin))
            .collect()
    }

    /// Member `i`'s log file (with [`Output::Files`]).
    pub fn log_path(&self, i: usize) -> PathBuf {
        self.spec.dir.join(format!("{}.log", self.members[i].name))
    }

    /// Member `i`'s whole log.
    pub fn log_of(&self, i: usize) -> String {
        std::fs::read_to_string(self.log_path(i)).unwrap_or_default()
    }

    /// The last `n` lines of member `i`'s log.
    pub fn log_tail(&self, i: usize, n: usize) -> Vec<String> {
        let text = self.log_of(i);
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..]
            .iter()
            .map(|l| l.to_string())
            .collect()
    }

    /// Every member's last 40 log lines, for failure messages.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for (i, m) in self.members.iter().enumerate() {
            out.push_str(&format!("--- {} (last lines) ---\n", m.name));
            for l in self.log_tail(i, 40) {
                out.push_str(&l);
                out.push('\n');
            }
        }
        out
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.kill_all();
        if self.spec.remove_dir_on_drop && !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.spec.dir);
        }
    }
}

/// Copies a child's stdout and stderr to ours, a line at a time, each prefixed with
/// `[name] `.
fn copy_prefixed(child: &mut Child, name: &str) {
    let out = child
        .stdout
        .take()
        .map(|s| Box::new(s) as Box<dyn Read + Send>);
    let err = child
        .stderr
        .take()
        .map(|s| Box::new(s) as Box<dyn Read + Send>);
    for stream in [out, err].into_iter().flatten() {
        let prefix = format!("[{name}] ");
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                let mut o = std::io::stdout().lock();
                let _ = writeln!(o, "{prefix}{line}");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ports(n: u16) -> Vec<MemberPorts> {
        (0..n)
            .map(|i| MemberPorts {
                client: 2379 + 3 * i,
                peer: 2380 + 3 * i,
                admin: 2381 + 3 * i,
            })
            .collect()
    }

    #[test]
    fn a_members_command_line_has_etcds_flags_then_the_extra_ones() {
        let mut spec = Spec::new("synod".into(), "/d".into(), Output::Files);
        spec.flags = vec!["--log-level".into(), "debug".into()];
        let mut c = Cluster::new(spec, &ports(2));
        c.members[1].flags = vec!["--unsafe-disk-faults".into(), "".into()];
        let a = c.args(1);
        let after = |flag: &str| a[a.iter().position(|x| x == flag).unwrap() + 1].clone();
        assert_eq!(a[0], "node");
        assert_eq!(after("--name"), "m2");
        assert_eq!(after("--data-dir"), "/d/m2");
        assert_eq!(after("--listen-client-urls"), "http://127.0.0.1:2382");
        assert_eq!(after("--listen-metrics-urls"), "http://127.0.0.1:2384");
        assert_eq!(
            after("--initial-cluster"),
            "m1=http://127.0.0.1:2380,m2=http://127.0.0.1:2383"
        );
        assert_eq!(after("--log-level"), "debug");
        assert_eq!(a.last().unwrap(), "");
        assert_eq!(c.endpoints(), "127.0.0.1:2379,127.0.0.1:2382");
    }

    #[test]
    fn a_member_that_does_not_run_has_no_status_and_there_is_no_leader() {
        let c = Cluster::new(
            Spec::new("synod".into(), "/d".into(), Output::Files),
            &ports(3),
        );
        assert_eq!(c.status(0), None);
        assert_eq!(c.leader(), None);
    }

    #[test]
    fn leader_within_reports_a_member_that_exited() {
        let dir = std::env::temp_dir().join(format!("harness-exit-{}", std::process::id()));
        let mut spec = Spec::new("false".into(), dir, Output::Files);
        spec.remove_dir_on_drop = true;
        let mut c = Cluster::with_free_ports(spec, 1).unwrap();
        c.spawn_all().unwrap();
        let never = AtomicBool::new(false);
        let err = c
            .leader_within(Duration::from_secs(30), &never)
            .unwrap_err();
        assert!(err.contains("m1 exited"), "{err}");
    }
}
