//! `synod bench wal`: group-commit throughput and latency of the write-ahead log on a
//! real file, next to the machine's raw fsync rate measured in the same run.

use crate::bench_wal::{self, Live, WalConfig, WalResult};
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Total time spent measuring the raw fsync rate: half before the WAL run, half after.
const RAW_TOTAL: Duration = Duration::from_secs(1);
const RAW_BLOCK: usize = 4096;

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Group-commit throughput and latency of the write-ahead log.
    Wal(WalArgs),
}

#[derive(Args)]
pub struct WalArgs {
    /// Concurrent closed-loop appenders.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=4096))]
    appenders: u64,
    /// Payload bytes per entry.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..=(16 << 20)))]
    entry_size: u64,
    /// Seconds of appending.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=3600))]
    seconds: u64,
    /// Directory to create the temporary bench directory in (default: the system temp dir).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Microseconds a waiter spins before blocking (0: block at once).
    #[arg(long, default_value_t = 0, hide = true)]
    spin_us: u64,
    /// Do not zero-fill WAL segments up front (appends then grow the file).
    #[arg(long)]
    no_preallocate: bool,
}

/// A directory removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn create(parent: &Path) -> std::io::Result<TempDir> {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let name = format!("synod-bench-wal-{}-{nanos:09}", std::process::id());
        let path = parent.join(name);
        std::fs::create_dir(&path)?;
        Ok(TempDir(path))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Raw fsync measurements: one O_DSYNC 4 KiB write per sample.
#[derive(Default)]
struct Raw {
    elapsed: Duration,
    latencies_ns: Vec<u64>,
}

pub fn run(cmd: BenchCommand) -> ExitCode {
    let BenchCommand::Wal(args) = cmd;
    match wal(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("synod bench wal: {e}");
            ExitCode::from(1)
        }
    }
}

fn wal(args: &WalArgs) -> Result<(), String> {
    let parent = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    let tmp = TempDir::create(&parent)
        .map_err(|e| format!("create temp dir in {}: {e}", parent.display()))?;
    let cfg = WalConfig {
        appenders: args.appenders as usize,
        entry_size: args.entry_size as usize,
        duration: Duration::from_secs(args.seconds),
        spin: Duration::from_micros(args.spin_us),
        preallocate: !args.no_preallocate,
    };
    let total = cfg.duration + RAW_TOTAL;
    let bar = progress_bar(total);
    let raw_path = tmp.0.join("raw-fsync");
    let mut raw = Raw::default();
    raw_fsync(
        &raw_path,
        RAW_TOTAL / 2,
        &bar,
        "raw fsync (before)",
        &mut raw,
    )?;
    let result = wal_phase(&tmp.0.join("wal"), &cfg, &bar)?;
    raw_fsync(
        &raw_path,
        RAW_TOTAL / 2,
        &bar,
        "raw fsync (after)",
        &mut raw,
    )?;
    bar.finish_and_clear();
    drop(tmp);
    report(args.appenders, &result, &mut raw);
    Ok(())
}

fn progress_bar(total: Duration) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(
        Some(total.as_millis() as u64),
        indicatif::ProgressDrawTarget::stderr(),
    );
    bar.set_style(
        ProgressStyle::with_template("{spinner} {bar:30} {elapsed_precise} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// Runs the WAL pipeline on a helper thread while this one keeps the bar current.
fn wal_phase(dir: &Path, cfg: &WalConfig, bar: &ProgressBar) -> Result<WalResult, String> {
    let live = Live::default();
    let base = bar.position();
    std::thread::scope(|scope| {
        let job = scope.spawn(|| bench_wal::run(dir, cfg, &live));
        let started = Instant::now();
        while !job.is_finished() {
            std::thread::sleep(Duration::from_millis(100));
            let done = started.elapsed().min(cfg.duration);
            bar.set_position(base + done.as_millis() as u64);
            bar.set_message(format!(
                "wal: {} entries, {} fsyncs",
                live.entries.load(Ordering::Relaxed),
                live.syncs.load(Ordering::Relaxed)
            ));
        }
        job.join()
            .map_err(|_| "the bench thread panicked".to_string())?
    })
}

/// Overwrites one 4 KiB block of a file opened with O_DSYNC, for `duration`.
fn raw_fsync(
    path: &Path,
    duration: Duration,
    bar: &ProgressBar,
    what: &str,
    raw: &mut Raw,
) -> Result<(), String> {
    let file: File = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .custom_flags(libc::O_DSYNC)
        .open(path)
        .map_err(|e| format!("open {}: {e}", path.display()))?;
    bar.set_message(what.to_string());
    let block = vec![0x5au8; RAW_BLOCK];
    let base = bar.position();
    let started = Instant::now();
    loop {
        let t0 = Instant::now();
        file.write_all_at(&block, 0)
            .map_err(|e| format!("write {}: {e}", path.display()))?;
        raw.latencies_ns.push(t0.elapsed().as_nanos() as u64);
        let elapsed = started.elapsed();
        bar.set_position(base + elapsed.as_millis() as u64);
        if elapsed >= duration {
            raw.elapsed += elapsed;
            return Ok(());
        }
    }
}

/// The value at quantile `q` of sorted samples, in milliseconds.
fn quantile_ms(sorted_ns: &[u64], q: f64) -> f64 {
    if sorted_ns.is_empty() {
        return 0.0;
    }
    let rank = (q * sorted_ns.len() as f64).ceil() as usize;
    sorted_ns[rank.clamp(1, sorted_ns.len()) - 1] as f64 / 1e6
}

fn per_second(n: u64, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64().max(1e-9)
}

fn report(appenders: u64, r: &WalResult, raw: &mut Raw) {
    let mut lat = r.latencies_ns.clone();
    lat.sort_unstable();
    let mut sync = r.sync_ns.clone();
    sync.sort_unstable();
    raw.latencies_ns.sort_unstable();
    let raw_lat = &raw.latencies_ns;
    let entries_per_s = per_second(r.entries, r.elapsed);
    let fsyncs_per_s = per_second(r.syncs, r.elapsed);
    let raw_per_s = per_second(raw_lat.len() as u64, raw.elapsed);
    let p99 = quantile_ms(&lat, 0.99);
    let raw_p99 = quantile_ms(raw_lat, 0.99);
    println!(
        "append latency ms: p50={:.3} p99={p99:.3} p99.9={:.3} max={:.3} ({} appends)",
        quantile_ms(&lat, 0.5),
        quantile_ms(&lat, 0.999),
        quantile_ms(&lat, 1.0),
        lat.len()
    );
    println!(
        "writer write+fdatasync ms: p50={:.3} p99={:.3} max={:.3} ({} batches)",
        quantile_ms(&sync, 0.5),
        quantile_ms(&sync, 0.99),
        quantile_ms(&sync, 1.0),
        sync.len()
    );
    println!(
        "raw fsync latency ms: p50={:.3} p99={raw_p99:.3} max={:.3} ({} O_DSYNC 4 KiB writes)",
        quantile_ms(raw_lat, 0.5),
        quantile_ms(raw_lat, 1.0),
        raw_lat.len()
    );
    println!(
        "entries per fsync: mean={:.1} max={}; p99 append / raw fsync p99 = {:.2}x",
        r.entries as f64 / r.syncs.max(1) as f64,
        r.max_batch,
        p99 / raw_p99.max(1e-9)
    );
    println!(
        "appenders={appenders} entries_per_s={entries_per_s:.0} fsyncs_per_s={fsyncs_per_s:.0} \
         raw_fsyncs_per_s={raw_per_s:.0} p99_append_ms={p99:.3}"
    );
}
