//! `synod chaos`: fault injection against a cluster of real member processes, with the
//! client history checked for linearizability, and watch, lease and lock clients
//! checked against the authoritative history.

mod append;
mod cluster;
mod coord;
mod faults;
mod lease;
mod lease_check;
mod lock;
mod lock_check;
mod membership;
mod plot;
mod proxy;
mod report;
mod verify;
mod watch;
mod watch_check;
mod workload;

use clap::Args;
use cluster::Cluster;
use faults::{FaultEvent, Undo};
use indicatif::{ProgressBar, ProgressStyle};
use seedrng::Rng;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use workload::Recording;

/// Flags of `synod chaos`.
#[derive(Args, Debug)]
pub struct ChaosArgs {
    /// Number of members.
    #[arg(long, default_value_t = 5)]
    pub nodes: usize,
    /// How long faults are injected (e.g. 60s, 2m).
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Fault classes: kill, pause, partition, delay, drop, disk, membership
    /// (comma-separated, or all).
    #[arg(long, default_value = "all")]
    pub faults: String,
    /// Seed of the fault schedule and the workload.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Write the history, verdict, fault timeline and plots here.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Concurrent clients (spread over every member).
    #[arg(long, default_value_t = 10)]
    pub clients: u64,
    /// Run members with a planted bug (stale-local-read, ack-before-fsync,
    /// follower-lease-expiry); needs a build with `--features planted-bugs`.
    #[arg(long)]
    pub planted_bug: Option<String>,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration like 60s"))?;
    match unit {
        "" | "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(60 * n)),
        "ms" => Ok(Duration::from_millis(n)),
        _ => Err(format!("`{s}`: unknown unit (ms, s, m)")),
    }
}

fn parse_faults(s: &str) -> Result<Vec<&'static str>, String> {
    if s == "all" {
        return Ok(faults::KINDS.to_vec());
    }
    s.split(',')
        .filter(|k| !k.is_empty())
        .map(|k| {
            faults::KINDS
                .iter()
                .find(|x| **x == k)
                .copied()
                .ok_or_else(|| format!("unknown fault `{k}` (one of {})", faults::KINDS.join(", ")))
        })
        .collect()
}

/// The run's moving parts.
struct Run {
    cluster: Cluster,
    rec: Arc<Recording>,
    rng: Rng,
    kinds: Vec<&'static str>,
    disk_base: String,
    events: Vec<FaultEvent>,
    notes: Vec<String>,
    bar: ProgressBar,
    /// Fault kinds still to come in this round (each round is a shuffle of them all).
    queue: Vec<&'static str>,
    /// The append workload's observations.
    appends: Arc<std::sync::Mutex<append::AppendLog>>,
}

impl Run {
    fn now_s(&self) -> f64 {
        self.rec.start.elapsed().as_secs_f64()
    }

    /// Waits, keeping the progress bar current and restarting members that stopped on
    /// their own (fail-stop after a disk error).
    fn wait(&mut self, secs: f64) {
        let until = Instant::now() + Duration::from_secs_f64(secs);
        while Instant::now() < until {
            std::thread::sleep(Duration::from_millis(100));
            self.bar.set_position(self.rec.start.elapsed().as_secs());
            let ops = self.rec.ops.lock().unwrap().len();
            self.bar.set_message(format!("{ops} ops"));
            for (i, status) in self.cluster.procs.reap_exited() {
                let why = self.cluster.procs.log_tail(i, 1).join(" ");
                self.notes.push(format!(
                    "{:.2}s {} exited on its own ({status}): {why}",
                    self.now_s(),
                    self.cluster.procs.members[i].name
                ));
                let base = self.disk_base.clone();
                self.cluster.disk[i] = base;
                let _ = self.cluster.start(i);
            }
        }
    }

    /// The next fault kind: rounds of shuffled kinds, so every class shows up early.
    fn next_kind(&mut self) -> &'static str {
        if self.queue.is_empty() {
            self.queue = self.kinds.clone();
            for i in (1..self.queue.len()).rev() {
                let j = self.rng.range(0, i as u64 + 1) as usize;
                self.queue.swap(i, j);
            }
        }
        self.queue.pop().expect("kinds")
    }

    /// One fault window (transient, intermittent or permanent).
    fn one_fault(&mut self, permanent: &mut Vec<(usize, Undo)>) {
        let kind = self.next_kind();
        let nth = self.events.iter().filter(|e| e.kind == kind).count();
        let leader = self.cluster.procs.leader();
        let start_s = self.now_s();
        let style = self.rng.range(0, 10);
        let base = self.disk_base.clone();
        let Some((detail, hit, mut undo)) =
            faults::inject(&mut self.cluster, kind, nth, &mut self.rng, leader, &base)
        else {
            return;
        };
        let detail = match style {
            9 if permanent.is_empty()
                && matches!(kind, "kill" | "partition")
                && !detail.contains("all") =>
            {
                permanent.push((self.events.len(), undo));
                self.events.push(FaultEvent {
                    kind,
                    detail: format!("{detail} (permanent)"),
                    start_s,
                    end_s: f64::NAN,
                    hit_leader: hit,
                });
                return;
            }
            7 | 8 if matches!(kind, "partition" | "drop" | "pause" | "delay") => {
                let mut again = Vec::new();
                for _ in 0..3 {
                    self.wait(0.8);
                    faults::undo(&mut self.cluster, &undo, &base);
                    self.wait(0.5);
                    let l = self.cluster.procs.leader();
                    // A flap may pick another target (another member to pause): what
                    // is undone next is what this flap did.
                    if let Some((d, _, u)) =
                        faults::inject(&mut self.cluster, kind, nth, &mut self.rng, l, &base)
                    {
                        again.push(d);
                        undo = u;
                    }
                }
                self.wait(0.8);
                format!("{detail} (intermittent, then: {})", again.join("; "))
            }
            _ => {
                let secs = 2.0 + self.rng.unit() * 3.0;
                self.wait(secs);
                detail
            }
        };
        faults::undo(&mut self.cluster, &undo, &base);
        self.events.push(FaultEvent {
            kind,
            detail,
            start_s,
            end_s: self.now_s(),
            hit_leader: hit,
        });
    }

    fn fault_phase(&mut self, duration: Duration) {
        let mut permanent = Vec::new();
        self.wait(1.5);
        while self.now_s() + 3.0 < duration.as_secs_f64() {
            self.one_fault(&mut permanent);
            let quiet = 1.0 + self.rng.unit() * 1.5;
            self.wait(quiet);
        }
        let end = self.now_s();
        let base = self.disk_base.clone();
        for (i, undo) in permanent {
            faults::undo(&mut self.cluster, &undo, &base);
            self.events[i].end_s = end;
        }
        self.heal_everything();
    }

    fn heal_everything(&mut self) {
        self.cluster.links.heal_all();
        for i in 0..self.cluster.procs.members.len() {
            if self.cluster.procs.members[i].paused {
                self.cluster.procs.resume(i);
            }
            if self.cluster.procs.members[i].child.is_none() {
                self.cluster.disk[i] = self.disk_base.clone();
                let _ = self.cluster.start(i);
            }
        }
    }
}

fn build_run(args: &ChaosArgs, rt: &tokio::runtime::Runtime) -> Result<Run, String> {
    let kinds = parse_faults(&args.faults)?;
    if !(1..=9).contains(&args.nodes) {
        return Err("--nodes must be between 1 and 9".into());
    }
    let mut extra = Vec::new();
    if let Some(bug) = &args.planted_bug {
        if !cfg!(feature = "planted-bugs") {
            return Err("--planted-bug needs a build with `--features planted-bugs`".into());
        }
        extra = vec!["--planted-bug".to_string(), bug.clone()];
    }
    let dir = match &args.report {
        Some(r) => r.join("data"),
        None => std::env::temp_dir().join(format!("synod-chaos-{}", std::process::id())),
    };
    let _ = std::fs::remove_dir_all(&dir);
    let mut cluster = rt
        .block_on(Cluster::new(args.nodes, dir, extra))
        .map_err(|e| format!("cannot set up the cluster: {e}"))?;
    let disk_base = if kinds.contains(&"disk") {
        "tear".to_string()
    } else {
        String::new()
    };
    for i in 0..args.nodes {
        cluster.disk[i] = disk_base.clone();
        cluster
            .start(i)
            .map_err(|e| format!("cannot start member {i}: {e}"))?;
    }
    let never = std::sync::atomic::AtomicBool::new(false);
    cluster
        .procs
        .leader_within(Duration::from_secs(30), &never)
        .map_err(|e| format!("{e}; logs in {}", cluster.dir().display()))?;
    let bar = ProgressBar::new(args.duration.as_secs());
    bar.set_style(
        ProgressStyle::with_template("chaos {bar:40} {pos}/{len}s {msg}").expect("template"),
    );
    Ok(Run {
        cluster,
        rec: Recording::new(),
        rng: Rng::new(args.seed),
        kinds,
        disk_base,
        events: Vec::new(),
        notes: Vec::new(),
        bar,
        queue: Vec::new(),
        appends: Default::default(),
    })
}

/// Runs `synod chaos`.
pub fn run(args: ChaosArgs) -> ExitCode {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let mut r = match build_run(&args, &rt) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let n = args.nodes;
    let mut clients: Vec<_> = (0..args.clients)
        .map(|c| {
            let member = (c as usize) % n;
            let ep = r.cluster.endpoint(member);
            rt.spawn(workload::client(
                r.rec.clone(),
                c + 1,
                member,
                ep,
                args.seed ^ (c + 1) << 20,
            ))
        })
        .collect();
    for j in 0..2u64 {
        let ep = r.cluster.endpoint((j as usize + 1) % n);
        let id = 1000 + j;
        let seed = args.seed ^ id << 20;
        clients.push(rt.spawn(append::client(
            r.rec.clone(),
            r.appends.clone(),
            id,
            ep,
            seed,
        )));
    }
    let endpoints: Vec<String> = (0..n).map(|i| r.cluster.endpoint(i)).collect();
    let (mut coord, tasks) = coord::spawn(&rt, &r.rec, &endpoints, args.seed);
    clients.extend(tasks);
    r.fault_phase(args.duration);
    let end_s = r.now_s();
    r.bar.finish_and_clear();
    r.rec.stop.store(true, Ordering::Relaxed);
    for c in clients {
        let _ = rt.block_on(c);
    }
    let stopped = Instant::now();
    let mut outcome = rt.block_on(finish(&mut r));
    if let Some(l) = outcome.leader {
        let leader = r.cluster.endpoint(l);
        outcome.coord = Some(rt.block_on(coord.finish(&leader, stopped)));
    }
    conclude(&args, &r, &coord, end_s, outcome)
}

/// After healing: convergence, final reads and hashes.
struct Outcome {
    finals: BTreeMap<String, Option<u64>>,
    /// Append-workload anomalies: (lost acknowledged appends, other anomalies).
    append: (Vec<String>, Vec<String>),
    hashes: Vec<String>,
    converged: bool,
    problems: Vec<String>,
    /// The leader after healing, if one was found.
    leader: Option<usize>,
    /// What the watch, lease and lock checkers found (None without a leader).
    coord: Option<coord::Findings>,
}

async fn finish(r: &mut Run) -> Outcome {
    let mut problems = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let leader = loop {
        if let Some(l) = r.cluster.procs.leader() {
            break Some(l);
        }
        if Instant::now() > deadline {
            problems.push("no leader within 30 s after healing".to_string());
            break None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut finals = BTreeMap::new();
    if let Some(l) = leader {
        let mut kv = workload::connect(&r.cluster.endpoint(l));
        let keys: std::collections::BTreeSet<String> = r
            .rec
            .ops
            .lock()
            .unwrap()
            .iter()
            .map(|o| o.input.key().to_string())
            .collect();
        for key in keys {
            for _ in 0..20 {
                let input = check::KvInput::Get { key: key.clone() };
                let op = workload::record(&r.rec, &mut kv, 0, l, input).await;
                if let Some(check::KvOutput::Get(v)) = op.output {
                    finals.insert(key.to_string(), v);
                    break;
                }
            }
            if !finals.contains_key(&key) {
                problems.push(format!("final read of {key} never succeeded"));
            }
        }
    }
    let append = final_appends(r, leader, &mut problems).await;
    let (hashes, converged) = converge(r, leader).await;
    Outcome {
        finals,
        append,
        hashes,
        converged,
        problems,
        leader,
        coord: None,
    }
}

/// The append workload's anomalies, split into (lost acknowledged appends, others).
async fn final_appends(
    r: &Run,
    leader: Option<usize>,
    problems: &mut Vec<String>,
) -> (Vec<String>, Vec<String>) {
    let Some(l) = leader else {
        return (Vec::new(), Vec::new());
    };
    match append::finals(&r.cluster.endpoint(l)).await {
        Ok(f) => append::check(&r.appends.lock().unwrap(), &f)
            .into_iter()
            .partition(|a| a.contains("missing")),
        Err(e) => {
            problems.push(e);
            (Vec::new(), Vec::new())
        }
    }
}

/// Waits for every member to apply the leader's commit, then compares HashKV.
async fn converge(r: &Run, leader: Option<usize>) -> (Vec<String>, bool) {
    let Some(l) = leader else {
        return (Vec::new(), false);
    };
    let n = r.cluster.procs.members.len();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let want = r
            .cluster
            .procs
            .status_field(l, "commit_index")
            .unwrap_or(u64::MAX);
        if (0..n).all(|i| {
            r.cluster
                .procs
                .status_field(i, "applied_index")
                .is_some_and(|a| a >= want)
        }) {
            break;
        }
        if Instant::now() > deadline {
            return (vec!["members did not catch up within 30 s".into()], false);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut hashes = Vec::new();
    let mut rev = 0;
    for i in 0..n {
        let ch = tonic::transport::Endpoint::from_shared(r.cluster.endpoint(i))
            .expect("url")
            .connect_lazy();
        let mut m = etcdpb::etcdserverpb::maintenance_client::MaintenanceClient::new(ch);
        let req = etcdpb::etcdserverpb::HashKvRequest { revision: rev };
        let mut answer = m.hash_kv(req).await;
        // The revision may have moved after the wait (leases left to expire are
        // revoked by the leader): a member not there yet says it is in the future.
        while answer
            .as_ref()
            .is_err_and(|e| e.code() == tonic::Code::OutOfRange && Instant::now() < deadline)
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
            answer = m.hash_kv(req).await;
        }
        match answer {
            Ok(resp) => {
                let resp = resp.into_inner();
                if rev == 0 {
                    rev = resp.header.map_or(0, |h| h.revision);
                }
                hashes.push(format!(
                    "{}:{}@{rev}",
                    r.cluster.procs.members[i].name, resp.hash
                ));
            }
            Err(e) => hashes.push(format!(
                "{}:error {}",
                r.cluster.procs.members[i].name,
                e.message()
            )),
        }
    }
    let distinct: std::collections::BTreeSet<_> = hashes
        .iter()
        .map(|h| h.split(':').nth(1).unwrap_or(""))
        .collect();
    let ok = distinct.len() == 1 && !hashes.iter().any(|h| h.contains("error"));
    (hashes, ok)
}

fn conclude(args: &ChaosArgs, r: &Run, coord: &coord::Coord, end_s: f64, out: Outcome) -> ExitCode {
    let ops = r.rec.ops.lock().unwrap().clone();
    let co = coord::parts(out.coord.as_ref());
    let (mut lin, offending) = verify::linearizability(&ops);
    let mut lost = verify::lost_acked(&ops, &out.finals);
    lost.extend(out.append.0.iter().cloned());
    if !out.append.1.is_empty() {
        lin = "no";
    }
    let regressions = r.rec.regressions.lock().unwrap().clone();
    let availability = report::availability(&ops, end_s);
    let failovers: Vec<f64> = r
        .events
        .iter()
        .filter(|e| e.hit_leader)
        .map(|e| report::first_write_after(&ops, e.start_s).unwrap_or((end_s - e.start_s) * 1000.0))
        .collect();
    let max_failover = failovers.iter().copied().fold(0.0, f64::max);
    let mut summary = String::new();
    let _ = writeln!(
        summary,
        "seed={} nodes={} faults={} duration={:?}",
        args.seed, args.nodes, args.faults, args.duration
    );
    for e in &r.events {
        let rec = match report::first_write_after(&ops, e.end_s) {
            Some(ms) => format!("{ms:.0} ms"),
            None if e.detail.ends_with("(permanent)") => "healed at the end".into(),
            None => "never".into(),
        };
        let fo = if e.hit_leader {
            report::first_write_after(&ops, e.start_s).map_or(", failover never".into(), |ms| {
                format!(", failover {ms:.0} ms")
            })
        } else {
            String::new()
        };
        let _ = writeln!(
            summary,
            "{:6.2}s-{:6.2}s {:9} {} (recovered {rec}{fo})",
            e.start_s, e.end_s, e.kind, e.detail
        );
    }
    for n in &r.notes {
        let _ = writeln!(summary, "note: {n}");
    }
    {
        let a = r.appends.lock().unwrap();
        let _ = writeln!(
            summary,
            "append workload: {} appends acknowledged of {} attempted, {} lists read",
            a.acked.len(),
            a.attempted.len(),
            a.reads.len()
        );
    }
    for l in &co.summary {
        let _ = writeln!(summary, "{l}");
    }
    let _ = writeln!(
        summary,
        "hashkv: {} ({})",
        out.hashes.join(" "),
        if out.converged {
            "converged"
        } else {
            "DIVERGED"
        }
    );
    let mut verdict = format!("linearizable={lin}\n{offending}\n");
    for l in lost
        .iter()
        .chain(&out.append.1)
        .chain(&regressions)
        .chain(&out.problems)
        .chain(&co.verdict)
    {
        let _ = writeln!(verdict, "{l}");
    }
    let line = format!(
        "ops={} linearizable={lin} lost_acked={} availability={:.1}% max_failover_ms={:.0}{}",
        ops.len(),
        lost.len(),
        availability * 100.0,
        max_failover,
        co.keys
    );
    let _ = writeln!(summary, "{line}");
    if let Some(dir) = &args.report {
        let rep = report::Report {
            ops: &ops,
            faults: &r.events,
            end_s,
            verdict: &verdict,
            summary: &summary,
            extra: &coord::files(coord),
        };
        if let Err(e) = report::write(dir, &rep) {
            eprintln!("error: cannot write the report: {e}");
        }
    }
    print!("{}", summary.replace(&format!("{line}\n"), ""));
    if lin != "yes" || !lost.is_empty() || !regressions.is_empty() || !co.ok {
        print!("{verdict}");
    }
    println!("{line}");
    let ok = lin == "yes"
        && lost.is_empty()
        && regressions.is_empty()
        && out.converged
        && out.problems.is_empty()
        && co.ok;
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
