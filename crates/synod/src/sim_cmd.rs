//! `synod sim raft`: seed sweeps and exact replays on the deterministic simulator.

use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use sim::{run_seed, FaultSet, SeedOutcome, SimOptions};
use std::ops::Range;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

#[derive(Subcommand)]
pub enum SimCommand {
    /// Simulate a Raft cluster.
    Raft(RaftArgs),
}

#[derive(Args)]
pub struct RaftArgs {
    /// Seeds to run, `A..B` (A inclusive, B exclusive).
    #[arg(long, value_parser = parse_range, conflicts_with = "replay")]
    seeds: Option<Range<u64>>,
    /// Rerun one seed and print its outcome.
    #[arg(long)]
    replay: Option<u64>,
    /// With --replay: print the event trace.
    #[arg(long, requires = "replay")]
    trace: bool,
    /// Cluster size.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=15))]
    nodes: u64,
    /// Fault classes: `all`, `none`, or a list from drop,delay,duplicate,partition,crash,pause,disk,transfer.
    #[arg(long, default_value = "all", value_parser = FaultSet::parse)]
    faults: FaultSet,
    /// Simulated seconds of faults per seed.
    #[arg(long, default_value_t = 30)]
    seconds: u64,
    /// Worker threads (default: available cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Plant a deliberate bug: figure8-commit, unpersisted-vote, no-conflict-truncate,
    /// transfer-unchecked (Raft), reply-before-commit (the replica), follower-lease-expiry,
    /// watch-skip-compacted, lease-no-checkpoint (leases and watches), lock-unfenced
    /// (the lock clients).
    #[cfg(feature = "planted-bugs")]
    #[arg(long, value_parser = parse_bug)]
    planted_bug: Option<Planted>,
}

fn parse_range(s: &str) -> Result<Range<u64>, String> {
    let (a, b) = s
        .split_once("..")
        .ok_or_else(|| format!("expected A..B, got '{s}'"))?;
    let a: u64 = a
        .trim()
        .parse()
        .map_err(|_| format!("bad start seed '{a}'"))?;
    let b: u64 = b
        .trim()
        .parse()
        .map_err(|_| format!("bad end seed '{b}'"))?;
    if b <= a {
        return Err(format!("empty seed range {a}..{b}"));
    }
    Ok(a..b)
}

/// A planted bug of either layer.
#[cfg(feature = "planted-bugs")]
#[derive(Clone, Copy, Debug)]
enum Planted {
    Raft(raft::PlantedBug),
    Replica(replica::ReplicaBug),
    Kv(kv::KvBug),
    Workload(sim::WorkloadBug),
}

#[cfg(feature = "planted-bugs")]
fn parse_bug(s: &str) -> Result<Planted, String> {
    if s == "reply-before-commit" {
        return Ok(Planted::Replica(replica::ReplicaBug::ReplyBeforeCommit));
    }
    if let Some(bug) = kv::KvBug::from_name(s) {
        return Ok(Planted::Kv(bug));
    }
    if let Some(bug) = sim::WorkloadBug::from_name(s) {
        return Ok(Planted::Workload(bug));
    }
    raft::PlantedBug::from_name(s)
        .map(Planted::Raft)
        .ok_or_else(|| {
            format!(
                "unknown planted bug '{s}' (expected one of {}, reply-before-commit, {}, {})",
                raft::PlantedBug::NAMES.join(", "),
                kv::KvBug::NAMES.join(", "),
                sim::WorkloadBug::NAMES.join(", ")
            )
        })
}

pub fn run(cmd: SimCommand) -> ExitCode {
    let SimCommand::Raft(args) = cmd;
    let opts = SimOptions {
        nodes: args.nodes as usize,
        faults: args.faults.clone(),
        fault_phase_us: args.seconds * 1_000_000,
        #[cfg(feature = "planted-bugs")]
        planted_bug: match args.planted_bug {
            Some(Planted::Raft(b)) => Some(b),
            _ => None,
        },
        #[cfg(feature = "planted-bugs")]
        replica_bug: match args.planted_bug {
            Some(Planted::Replica(b)) => Some(b),
            _ => None,
        },
        #[cfg(feature = "planted-bugs")]
        kv_bug: match args.planted_bug {
            Some(Planted::Kv(b)) => Some(b),
            _ => None,
        },
        #[cfg(feature = "planted-bugs")]
        workload_bug: match args.planted_bug {
            Some(Planted::Workload(b)) => Some(b),
            _ => None,
        },
        ..SimOptions::default()
    };
    if let Some(seed) = args.replay {
        return replay(seed, &opts, args.trace);
    }
    let seeds = args.seeds.clone().unwrap_or(0..100);
    sweep(seeds, &opts, args.threads)
}

fn replay(seed: u64, opts: &SimOptions, trace: bool) -> ExitCode {
    let outcome = run_seed(seed, opts, trace);
    if trace {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        for line in &outcome.trace {
            // A reader that stopped early (`| head`) is not an error worth a panic.
            if writeln!(out, "{line}").is_err() {
                return ExitCode::SUCCESS;
            }
        }
    }
    let s = outcome.stats;
    println!(
        "seed={seed} nodes={} faults={} sim_seconds={:.3} events={} messages={} crashes={} ops={} watch_events={} watches_compacted={} leases_expired={} transfers_started={} transfers_done={} changes_asked={} changes_refused={} changes_applied={} {}",
        opts.nodes,
        opts.faults,
        outcome.sim_us as f64 / 1e6,
        s.events,
        s.messages_sent,
        s.crashes,
        outcome.ops,
        s.watch_events,
        s.watches_compacted,
        s.leases_expired,
        s.transfers_started,
        s.transfers_done,
        s.changes_asked,
        s.changes_refused,
        s.changes_applied,
        lock_figures(&s)
    );
    match &outcome.violation {
        Some(v) => {
            println!("violation: {v}");
            ExitCode::from(1)
        }
        None => {
            println!("ok: no violation");
            ExitCode::SUCCESS
        }
    }
}

/// A run's lock figures, `key=value` separated by spaces.
fn lock_figures(s: &sim::Stats) -> String {
    format!(
        "lock_acquired={} lock_fenced={} lock_fenced_refused={} lock_unfenced={} lock_unfenced_non_owner={} lock_max_handover_ms={:.1} lock_max_handover_net_ms={:.1}",
        s.lock_acquired,
        s.lock_fenced,
        s.lock_fenced_refused,
        s.lock_unfenced,
        s.lock_unfenced_non_owner,
        s.lock_max_handover_us as f64 / 1e3,
        s.lock_max_handover_net_us as f64 / 1e3
    )
}

struct Summary {
    violations: Vec<(u64, String)>,
    sim_us: u64,
    unknown: u64,
    /// The lock figures summed over the seeds (the handover: the longest).
    locks: sim::Stats,
    /// Seeds with an unfenced lock write by a non-owner.
    seeds_unfenced_non_owner: u64,
}

fn sweep(seeds: Range<u64>, opts: &SimOptions, threads: Option<usize>) -> ExitCode {
    let total = seeds.end - seeds.start;
    let threads = threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:40} {pos}/{len} seeds {msg} [{elapsed_precise}<{eta_precise}]",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let next = AtomicU64::new(seeds.start);
    let summary = Mutex::new(Summary {
        violations: Vec::new(),
        sim_us: 0,
        unknown: 0,
        locks: sim::Stats::default(),
        seeds_unfenced_non_owner: 0,
    });
    let started = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| loop {
                let seed = next.fetch_add(1, Ordering::Relaxed);
                if seed >= seeds.end {
                    break;
                }
                let outcome = run_seed(seed, opts, false);
                record(&summary, &outcome, &bar);
            });
        }
    });
    bar.finish_and_clear();
    let wall = started.elapsed().as_secs_f64();
    let mut s = summary.into_inner().unwrap_or_else(|e| e.into_inner());
    s.violations.sort();
    let sim_s = s.sim_us as f64 / 1e6;
    println!(
        "locks: {} (unfenced writes by a non-owner in {} seed(s): expected under pauses; fenced ones are checked never to be)",
        lock_figures(&s.locks),
        s.seeds_unfenced_non_owner
    );
    println!(
        "transfers: {} started, {} moved leadership to their target (the others met a target down, paused or cut off, or a leader change first)",
        s.locks.transfers_started, s.locks.transfers_done
    );
    println!(
        "membership changes: {} asked, {} refused (one in progress, or invalid by then), {} applied",
        s.locks.changes_asked, s.locks.changes_refused, s.locks.changes_applied
    );
    println!(
        "seeds={total} violations={} sim_seconds={sim_s:.0} wall_seconds={wall:.1} speedup={:.0}",
        s.violations.len(),
        sim_s / wall.max(1e-9)
    );
    if s.unknown > 0 {
        println!(
            "note: linearizability search hit its budget on {} seed(s) (undecided, not counted)",
            s.unknown
        );
    }
    let Some((seed, what)) = s.violations.first() else {
        return ExitCode::SUCCESS;
    };
    println!("first failing seed: {seed}: {what}");
    let outcome = run_seed(*seed, opts, true);
    let tail = outcome.trace.len().saturating_sub(40);
    println!("last events of seed {seed}:");
    for line in &outcome.trace[tail..] {
        println!("  {line}");
    }
    println!(
        "replay: synod sim raft --replay {seed} --nodes {} --faults {} --trace",
        opts.nodes, opts.faults
    );
    ExitCode::from(1)
}

fn record(summary: &Mutex<Summary>, outcome: &SeedOutcome, bar: &ProgressBar) {
    let mut s = summary.lock().unwrap_or_else(|e| e.into_inner());
    s.sim_us += outcome.sim_us;
    let (l, o) = (&mut s.locks, &outcome.stats);
    l.lock_acquired += o.lock_acquired;
    l.lock_fenced += o.lock_fenced;
    l.lock_fenced_refused += o.lock_fenced_refused;
    l.lock_unfenced += o.lock_unfenced;
    l.lock_unfenced_non_owner += o.lock_unfenced_non_owner;
    l.lock_max_handover_us = l.lock_max_handover_us.max(o.lock_max_handover_us);
    l.lock_max_handover_net_us = l.lock_max_handover_net_us.max(o.lock_max_handover_net_us);
    l.transfers_started += o.transfers_started;
    l.transfers_done += o.transfers_done;
    l.changes_asked += o.changes_asked;
    l.changes_refused += o.changes_refused;
    l.changes_applied += o.changes_applied;
    s.seeds_unfenced_non_owner += u64::from(o.lock_unfenced_non_owner > 0);
    if outcome.linearizability_unknown {
        s.unknown += 1;
    }
    if let Some(v) = &outcome.violation {
        s.violations.push((outcome.seed, v.to_string()));
        bar.set_message(format!("{} violation(s)", s.violations.len()));
    }
    bar.inc(1);
}
