//! The coordination half of the workload — watch, lease and lock clients — and what
//! the run does with them at the end: wait for the lease keys to expire, let the
//! watchers catch up, fetch the authoritative history, and check.

use super::lease::{self, LeaseLog};
use super::lease_check::{self, LeaseFigures};
use super::lock::{self, LockLog};
use super::lock_check::{self, LockFigures};
use super::watch::{self, WatchLog};
use super::watch_check::{self, WatchFigures};
use super::workload::Recording;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

/// Watch clients (the first asks for a leader: `hasleader=true`).
const WATCHERS: usize = 2;
/// Lease clients.
const LEASE_CLIENTS: u64 = 2;
/// Lock clients.
const LOCK_CLIENTS: u64 = 3;
/// How long after the clients stop the lease keys may take to go: the TTL, a leader
/// change's lengthening (checkpoint interval 5 s plus an election timeout), a lost
/// revoke's retry (3 s), and room to spare.
const LEASE_MARGIN: Duration = Duration::from_secs(15);
/// How long the watchers get to deliver the final revision after healing.
const CATCH_UP: Duration = Duration::from_secs(15);

/// The coordination clients' records.
pub struct Coord {
    pub watches: Vec<Arc<Mutex<WatchLog>>>,
    watch_stop: Arc<AtomicBool>,
    watch_tasks: Vec<JoinHandle<()>>,
    pub leases: Arc<Mutex<LeaseLog>>,
    pub locks: Arc<Mutex<LockLog>>,
}

/// What the checkers found.
pub struct Findings {
    pub watch: WatchFigures,
    pub lease: LeaseFigures,
    pub lock: LockFigures,
    /// Failures outside the checkers' figures (keys left, a stalled watcher, no history).
    pub problems: Vec<String>,
    /// The revisions the history covers.
    pub history_revs: i64,
}

/// Starts the watch, lease and lock clients on `endpoints`; the lease and lock tasks
/// stop with `rec.stop` (returned for the caller to join), the watchers at
/// [`Coord::finish`].
pub fn spawn(
    rt: &tokio::runtime::Runtime,
    rec: &Arc<Recording>,
    endpoints: &[String],
    seed: u64,
) -> (Coord, Vec<JoinHandle<()>>) {
    let n = endpoints.len();
    let watch_stop = Arc::new(AtomicBool::new(false));
    let mut coord = Coord {
        watches: Vec::new(),
        watch_stop: watch_stop.clone(),
        watch_tasks: Vec::new(),
        leases: Default::default(),
        locks: Default::default(),
    };
    for w in 0..WATCHERS {
        let log = Arc::new(Mutex::new(WatchLog {
            id: w,
            require_leader: w == 0,
            ..Default::default()
        }));
        coord.watches.push(log.clone());
        let task = watch::client(
            rec.clone(),
            log,
            watch_stop.clone(),
            endpoints.to_vec(),
            (w + 1) % n,
        );
        coord.watch_tasks.push(rt.spawn(task));
    }
    let mut tasks = Vec::new();
    for c in 0..LEASE_CLIENTS {
        let id = 2000 + c;
        let ep = endpoints[(3 + c as usize) % n].clone();
        let task = lease::client(rec.clone(), coord.leases.clone(), id, ep, seed ^ id << 20);
        tasks.push(rt.spawn(task));
    }
    for c in 0..LOCK_CLIENTS {
        let id = 3000 + c;
        let ep = endpoints[c as usize % n].clone();
        let task = lock::client(rec.clone(), coord.locks.clone(), id, ep, seed ^ id << 20);
        tasks.push(rt.spawn(task));
    }
    (coord, tasks)
}

impl Coord {
    /// After healing, with every other client stopped at `stopped`: waits for the
    /// lease keys to go, lets the watchers catch up with the leader at `leader`,
    /// fetches the history and checks it.
    pub async fn finish(&mut self, leader: &str, stopped: Instant) -> Findings {
        let mut problems = Vec::new();
        let lease_deadline = stopped + Duration::from_secs(lease::TTL_S as u64) + LEASE_MARGIN;
        if let Some(p) = wait_lease_keys_gone(leader, lease_deadline).await {
            problems.push(p);
        }
        let final_rev = watch::current_revision(leader).await;
        match &final_rev {
            Ok(r) => problems.extend(self.wait_watchers(*r).await),
            Err(e) => problems.push(format!("watch: no final revision: {e}")),
        }
        self.watch_stop.store(true, Ordering::Relaxed);
        for t in self.watch_tasks.drain(..) {
            let _ = t.await;
        }
        let logs: Vec<WatchLog> = self
            .watches
            .iter()
            .map(|l| l.lock().unwrap().clone())
            .collect();
        let seen = logs.iter().map(|l| l.last_rev).max().unwrap_or(0);
        let upto = watch::current_revision(leader).await.unwrap_or(0).max(seen);
        let lock_log = self.locks.lock().unwrap().clone();
        let (watch, lock) = match watch::history(leader, upto).await {
            Ok(h) => (
                watch_check::check(&logs, &h),
                lock_check::check(&lock_log, &h),
            ),
            Err(e) => {
                // Nothing to judge the streams and the writes by.
                problems.push(format!("watch {e}"));
                let watch = WatchFigures {
                    streams: logs.len(),
                    reconnects: logs.iter().map(WatchLog::reconnects).sum(),
                    ..Default::default()
                };
                (watch, LockFigures::default())
            }
        };
        Findings {
            watch,
            lease: lease_check::check(&self.leases.lock().unwrap().snapshot()),
            lock,
            problems,
            history_revs: upto,
        }
    }

    /// Waits until every watcher has seen `rev`; a line for each that has not within
    /// [`CATCH_UP`].
    async fn wait_watchers(&self, rev: i64) -> Vec<String> {
        let deadline = Instant::now() + CATCH_UP;
        loop {
            let behind: Vec<(usize, i64)> = self
                .watches
                .iter()
                .map(|l| l.lock().unwrap())
                .filter(|l| l.last_rev < rev)
                .map(|l| (l.id, l.last_rev))
                .collect();
            if behind.is_empty() {
                return Vec::new();
            }
            if Instant::now() > deadline {
                return behind
                    .into_iter()
                    .map(|(id, last)| {
                        format!("watch {id}: stalled: saw through revision {last} of {rev} {CATCH_UP:?} after healing")
                    })
                    .collect();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Waits for every lease key to be gone; what is wrong if they are not by `deadline`.
async fn wait_lease_keys_gone(leader: &str, deadline: Instant) -> Option<String> {
    loop {
        let last = match lease::keys_left(leader).await {
            Ok(0) => return None,
            Ok(n) => format!("{n} lease keys"),
            Err(e) => format!("lease keys unknown ({e})"),
        };
        if Instant::now() > deadline {
            return Some(format!(
                "lease liveness: {last} still present after healing + TTL + {LEASE_MARGIN:?}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The summary's lines for the coordination clients.
pub fn summary_lines(f: &Findings) -> Vec<String> {
    let w = &f.watch;
    let l = &f.lease;
    let lateness = l
        .worst_lateness_ms()
        .map_or("none measured".to_string(), |ms| format!("{ms} ms"));
    vec![
        format!(
            "watch: {} streams, {} events checked against the history (revisions 1..={}), {} reconnects, {} violations",
            w.streams, w.events, f.history_revs, w.reconnects, w.violations
        ),
        format!(
            "lease: {} leases, {} keep-alives acknowledged, {} reads, {} premature expiries, {} revokes ({} keys outlived them), worst expiry lateness {lateness} ({} expiries measured)",
            l.leases,
            l.keepalives,
            l.reads,
            l.premature,
            l.revokes,
            l.survived_revoke,
            l.lateness_ms.len()
        ),
        f.lock.line(),
    ]
}

/// The verdict's lines: every failure, then a few of the unfenced writes outside the
/// lock (expected: the demonstration).
pub fn verdict_lines(f: &Findings) -> Vec<String> {
    let mut v: Vec<String> = f
        .problems
        .iter()
        .chain(&f.watch.lines)
        .chain(&f.lease.lines)
        .chain(&f.lock.lines)
        .cloned()
        .collect();
    v.extend(
        f.lock
            .examples
            .iter()
            .take(5)
            .map(|e| format!("expected, unfenced: {e}")),
    );
    v
}

/// The figures appended to the final line.
pub fn line_keys(f: &Findings) -> String {
    format!(
        " watch_violations={} lease_violations={} lock_fenced_violations={} lock_unfenced_outside={}",
        f.watch.violations + f.problems.iter().filter(|p| p.starts_with("watch")).count(),
        f.lease.violations() + f.problems.iter().filter(|p| p.starts_with("lease")).count(),
        f.lock.violations(),
        f.lock.unfenced.outside
    )
}

/// Whether every check passed.
pub fn ok(f: &Findings) -> bool {
    f.problems.is_empty()
        && f.watch.violations == 0
        && f.lease.violations() == 0
        && f.lock.violations() == 0
}

/// The report's files: (name, contents).
pub fn files(c: &Coord) -> Vec<(&'static str, String)> {
    let logs: Vec<WatchLog> = c
        .watches
        .iter()
        .map(|l| l.lock().unwrap().clone())
        .collect();
    vec![
        ("watch.jsonl", watch::jsonl(&logs)),
        (
            "leases.txt",
            lease::text(&c.leases.lock().unwrap().snapshot()),
        ),
        ("locks.txt", lock::text(&c.locks.lock().unwrap())),
    ]
}

/// What the run's conclusion takes from the coordination clients.
pub struct Parts {
    pub summary: Vec<String>,
    pub verdict: Vec<String>,
    /// Appended to the final line.
    pub keys: String,
    pub ok: bool,
}

/// The conclusion's parts; without findings (no leader after healing) every figure
/// is unknown and the run fails.
pub fn parts(f: Option<&Findings>) -> Parts {
    match f {
        Some(f) => Parts {
            summary: summary_lines(f),
            verdict: verdict_lines(f),
            keys: line_keys(f),
            ok: ok(f),
        },
        None => Parts {
            summary: vec!["watch, lease, lock: not checked (no leader after healing)".into()],
            verdict: Vec::new(),
            keys: " watch_violations=unknown lease_violations=unknown lock_fenced_violations=unknown lock_unfenced_outside=unknown".into(),
            ok: false,
        },
    }
}
