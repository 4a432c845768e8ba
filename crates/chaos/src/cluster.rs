//! The cluster under test: the shared process harness's members, every peer link
//! through its own proxy, and each member's disk-fault spec.

use super::proxy::{self, Links};
use harness::{Output, Spec};
use std::path::{Path, PathBuf};

/// The member processes and their proxies.
pub struct Cluster {
    /// The member processes (kill, pause, resume, status, logs).
    pub procs: harness::Cluster,
    pub links: Links,
    /// Disk-fault spec a member is started with (per member, may change).
    pub disk: Vec<String>,
    /// `--unsafe-peer-dial` per member: its proxies towards each peer.
    dial: Vec<String>,
    /// Members that were replaced: they start with `--initial-cluster-state existing`.
    pub joining: Vec<bool>,
    /// The runtime the membership operations' gRPC calls run on.
    pub runtime: tokio::runtime::Handle,
}

impl Cluster {
    /// Prepares `n` members (`n1`, `n2`, …) of the running `synod` binary and their
    /// proxies; nothing is started yet.
    pub async fn new(n: usize, dir: PathBuf, extra: Vec<String>) -> std::io::Result<Cluster> {
        let mut spec = Spec::new(std::env::current_exe()?, dir, Output::Files);
        spec.name_prefix = "n".into();
        spec.token = "synod-chaos".into();
        spec.snapshot_count = 2000;
        spec.flags = extra;
        let procs = harness::Cluster::with_free_ports(spec, n)?;
        let links = Links::default();
        let mut dial = Vec::new();
        for i in 0..n {
            let mut to = Vec::new();
            for j in (0..n).filter(|j| *j != i) {
                let target = format!("127.0.0.1:{}", procs.members[j].peer);
                let port = proxy::start(links.clone(), i, j, target).await?;
                // Keyed by peer URL: a member that joins has no name in the
                // membership until it runs.
                let url = format!("http://127.0.0.1:{}", procs.members[j].peer);
                to.push(format!("{url}=127.0.0.1:{port}"));
            }
            dial.push(to.join(","));
        }
        Ok(Cluster {
            procs,
            links,
            disk: vec![String::new(); n],
            dial,
            joining: vec![false; n],
            runtime: tokio::runtime::Handle::current(),
        })
    }

    /// Starts (or restarts) member `i` through its proxies, with its disk-fault spec.
    pub fn start(&mut self, i: usize) -> std::io::Result<()> {
        self.procs.members[i].flags = vec![
            "--unsafe-peer-dial".into(),
            self.dial[i].clone(),
            "--unsafe-disk-faults".into(),
            self.disk[i].clone(),
        ];
        if self.joining[i] {
            let flags = &mut self.procs.members[i].flags;
            flags.extend(["--initial-cluster-state".into(), "existing".into()]);
        }
        self.procs.spawn(i)
    }

    /// Client endpoint of member `i`.
    pub fn endpoint(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.procs.members[i].client)
    }

    /// Where the members keep their data and logs.
    pub fn dir(&self) -> &Path {
        &self.procs.spec.dir
    }
}
