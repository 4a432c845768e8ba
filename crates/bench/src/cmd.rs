//! `synod bench`: the client load generator for any etcd v3 endpoint (flags, no
//! subcommand; `--compare-etcd` measures Synod next to etcd 3.4), and `synod bench wal`:
//! group-commit throughput and latency of the write-ahead log on a real file, next to the
//! machine's raw fsync rate measured in the same run.

use crate::h2::GrpcClient;
use crate::load::{self, Spec, Workload, STOP};
use crate::report::{Measure, Progress, Summary};
use crate::wal::{self, Live, WalConfig, WalResult};
use clap::{Args, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Total time spent measuring the raw fsync rate: half before the WAL run, half after.
const RAW_TOTAL: Duration = Duration::from_secs(1);
const RAW_BLOCK: usize = 4096;

/// `synod bench [FLAGS]` or `synod bench wal [FLAGS]`.
#[derive(Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct BenchArgs {
    #[command(subcommand)]
    command: Option<BenchCommand>,
    #[command(flatten)]
    load: LoadArgs,
}

/// Where the load goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Target {
    /// Connections round-robin over every endpoint, the leader's first.
    All,
    /// Every connection to the leader.
    Leader,
}

/// The load generator's flags.
#[derive(Args, Debug)]
pub struct LoadArgs {
    /// Client endpoints, comma-separated (host:port or http://host:port).
    #[arg(long, value_delimiter = ',', required_unless_present = "compare_etcd")]
    pub endpoints: Vec<String>,
    /// What every request does.
    #[arg(long, value_enum, default_value_t = Workload::Put)]
    pub workload: Workload,
    /// Concurrent clients (closed loop), or the cap on requests in flight with --rate.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub clients: u64,
    /// gRPC connections the clients share (round-robin), spread over the endpoints.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub conns: u64,
    /// How long each run lasts (e.g. 10s, 500ms, 2m).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Open loop: start this many requests per second in total, on a fixed schedule;
    /// latency counts from the scheduled start (no coordinated omission).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub rate: Option<u64>,
    /// Bytes per key (keys are zero-padded decimal indices).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=65_536))]
    pub key_size: u64,
    /// Bytes per value.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u64).range(0..=(1 << 20)))]
    pub value_size: u64,
    /// Distinct keys; each request picks one uniformly.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub key_space: u64,
    /// Share of linearizable gets in the mixed workload (the rest are puts).
    #[arg(long, default_value_t = 0.5)]
    pub read_ratio: f64,
    /// Where the connections go.
    #[arg(long, value_enum, default_value_t = Target::All)]
    pub target: Target,
    /// Write every key of the key space once before measuring.
    #[arg(long)]
    pub preload: bool,
    /// Per-request timeout (a request over it counts as an error).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// The gRPC client requests go through: `h2` writes unary calls straight onto HTTP/2
    /// connections (cleartext only); `tonic` uses tonic's Channel.
    #[arg(long, value_enum, default_value_t = GrpcClient::H2)]
    pub grpc_client: GrpcClient,
    /// Time allowed to connect to an endpoint and hear its status.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub connect_timeout: Duration,
    /// Print one JSON object on stdout instead of text.
    #[arg(long)]
    pub json: bool,
    /// Seed of key choices and values (default: from the clock; printed with the results).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Client runtime worker threads (default: one per core).
    #[arg(long, hide = true)]
    pub threads: Option<usize>,
    /// Start a Synod cluster and an etcd 3.4 cluster of --nodes members each, run every
    /// case against both, alternating, and print one table.
    #[arg(
        long,
        help_heading = "Compare with etcd",
        conflicts_with_all = ["endpoints", "workload", "clients", "conns", "rate", "target", "preload"]
    )]
    pub compare_etcd: bool,
    /// Members per cluster.
    #[arg(
        long,
        default_value_t = 3,
        help_heading = "Compare with etcd",
        requires = "compare_etcd"
    )]
    pub nodes: usize,
    /// Runs per case and system; the table shows medians.
    #[arg(
        long,
        default_value_t = 1,
        help_heading = "Compare with etcd",
        requires = "compare_etcd"
    )]
    pub repeat: usize,
    /// Cases, comma-separated, each WORKLOAD-CLIENTSxCONNS [default: put-1x1, put-16x1,
    /// put-64x8, put-256x16, get-64x8, sget-64x8], or mem-KEYS (e.g. mem-1000000, mem-200k):
    /// every member's RSS before and after loading KEYS distinct keys, as MiB per million
    /// keys (best run alone, on fresh clusters).
    #[arg(
        long,
        value_delimiter = ',',
        help_heading = "Compare with etcd",
        requires = "compare_etcd"
    )]
    pub cases: Vec<String>,
    /// Memory cases: concurrent clients loading the keys (over up to 8 connections).
    #[arg(
        long,
        default_value_t = 32,
        help_heading = "Compare with etcd",
        requires = "compare_etcd",
        value_parser = clap::value_parser!(u64).range(1..=4096)
    )]
    pub mem_clients: u64,
    /// Memory cases: Puts per Txn request (etcd's --max-txn-ops default is 128; fewer when
    /// they would exceed 1 MiB); 1 sends plain Put requests.
    #[arg(
        long,
        default_value_t = 128,
        help_heading = "Compare with etcd",
        requires = "compare_etcd",
        value_parser = clap::value_parser!(u64).range(1..=128)
    )]
    pub mem_txn_ops: u64,
    /// Before the first load case, an uncounted put-16x1 run of this long against each
    /// system (0s: none), so that neither is measured while it finishes starting up
    /// (first election, connections, preallocating its first WAL segment).
    #[arg(
        long,
        default_value = "3s",
        value_parser = parse_duration,
        help_heading = "Compare with etcd",
        requires = "compare_etcd"
    )]
    pub warmup: Duration,
    /// First port of the Synod cluster (see `synod dev --base-port`).
    #[arg(long, default_value_t = 24_379, help_heading = "Compare with etcd")]
    pub synod_base_port: u16,
    /// The script that starts and stops the etcd reference cluster.
    #[arg(
        long,
        default_value = "/work/shared/scripts/etcd-reference-cluster",
        help_heading = "Compare with etcd"
    )]
    pub etcd_script: PathBuf,
    /// Where both clusters keep their data and logs (default: a new temporary directory,
    /// removed after a successful run).
    #[arg(long, help_heading = "Compare with etcd")]
    pub work_dir: Option<PathBuf>,
}

impl LoadArgs {
    /// The run these flags describe.
    pub fn spec(&self) -> Spec {
        Spec {
            workload: self.workload,
            clients: self.clients as usize,
            conns: self.conns as usize,
            duration: self.duration,
            rate: self.rate,
            key_size: self.key_size as usize,
            value_size: self.value_size as usize,
            key_space: self.key_space,
            read_ratio: self.read_ratio,
            client: self.grpc_client,
            seed: self.seed.unwrap_or_else(|| {
                let t = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default();
                t.as_nanos() as u64 ^ u64::from(std::process::id())
            }),
        }
    }
}

/// `10s`, `500ms`, `2m`, `1h` or plain seconds (fractions allowed).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let v: f64 = num
        .parse()
        .map_err(|_| format!("'{s}' is not a duration (e.g. 10s, 500ms, 2m)"))?;
    let secs = match unit {
        "" | "s" => v,
        "ms" => v / 1000.0,
        "m" => v * 60.0,
        "h" => v * 3600.0,
        _ => return Err(format!("unknown unit '{unit}' in '{s}' (ms, s, m or h)")),
    };
    if !(secs > 0.0 && secs < 1e7) {
        return Err(format!("'{s}' is out of range"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// SIGINT and SIGTERM end the current run early instead of killing the process, so
/// results are still printed and clusters still stopped.
pub fn install_stop_handlers() {
    harness::signals::stop_on(&STOP);
}

/// A runtime for the clients.
pub fn runtime(threads: Option<usize>) -> Result<tokio::runtime::Runtime, String> {
    let mut b = tokio::runtime::Builder::new_multi_thread();
    b.enable_all();
    if let Some(t) = threads {
        b.worker_threads(t.max(1));
    }
    b.build().map_err(|e| format!("tokio runtime: {e}"))
}

/// `synod bench` against the given endpoints.
fn load(args: &LoadArgs) -> Result<(), String> {
    let spec = args.spec();
    load::check_spec(&spec)?;
    install_stop_handlers();
    let rt = runtime(args.threads)?;
    let summary = rt.block_on(async {
        let ct = args.connect_timeout;
        let probe = load::probe(&args.endpoints, ct).await?;
        let targets = match args.target {
            Target::All => probe.ordered.clone(),
            Target::Leader => vec![probe
                .leader
                .clone()
                .ok_or("no endpoint reports itself as the leader")?],
        };
        if crate::coord::is_coordination(spec.workload) {
            let live = Arc::new(load::Live::default());
            let label = spec.workload.name().into();
            let bar = Progress::start(label, Measure::Time(spec.duration), live.clone());
            let outcome = crate::coord::run(&spec, &targets, ct, args.timeout, live).await;
            bar.finish();
            let term_changes = load::term_now(&args.endpoints, ct)
                .await
                .saturating_sub(probe.term);
            let spec = load::Spec {
                client: crate::coord::client_used(&spec),
                ..spec
            };
            return Ok(Summary::new(
                &spec,
                &targets,
                &probe,
                term_changes,
                &outcome?,
            ));
        }
        let conns = load::connect_kv(&targets, &spec, ct, args.timeout).await?;
        if args.preload {
            let live = Arc::new(load::Live::default());
            let bar = Progress::start("preload".into(), Measure::Ops(spec.key_space), live.clone());
            let done = load::preload(&spec, &conns, live).await;
            bar.finish();
            done?;
        }
        let live = Arc::new(load::Live::default());
        let bar = Progress::start(
            spec.workload.name().into(),
            Measure::Time(spec.duration),
            live.clone(),
        );
        let outcome = load::run(&spec, &conns, live).await;
        bar.finish();
        let term = load::term_now(&args.endpoints, ct).await;
        let term_changes = term.saturating_sub(probe.term);
        Ok::<_, String>(Summary::new(
            &spec,
            &targets,
            &probe,
            term_changes,
            &outcome,
        ))
    })?;
    if args.json {
        println!("{}", summary.to_json());
    } else {
        summary.print_text();
    }
    if summary.ops == 0 {
        return Err(format!("no request succeeded ({} errors)", summary.errors));
    }
    Ok(())
}

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Group-commit throughput and latency of the write-ahead log.
    Wal(WalArgs),
    /// An etcd v3 endpoint that stores nothing and answers at once: the ceiling a load
    /// generator (`synod bench`, `etcdctl check perf`) reaches on this machine.
    NullServer(NullArgs),
}

#[derive(Args)]
pub struct NullArgs {
    /// Addresses to answer on, comma-separated (default: etcd's local three-member
    /// client ports, as `synod dev` uses).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "127.0.0.1:2379,127.0.0.1:22379,127.0.0.1:32379"
    )]
    listen: Vec<std::net::SocketAddr>,
    /// Runtime worker threads.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=256))]
    threads: u64,
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

pub fn run(args: BenchArgs) -> ExitCode {
    let (what, result) = match args.command {
        Some(BenchCommand::Wal(wal_args)) => ("synod bench wal", wal(&wal_args)),
        Some(BenchCommand::NullServer(n)) => (
            "synod bench null-server",
            crate::null::serve(&n.listen, n.threads as usize),
        ),
        None if args.load.compare_etcd => (
            "synod bench --compare-etcd",
            crate::compare::run(&args.load),
        ),
        None => ("synod bench", load(&args.load)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{what}: {e}");
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
        let job = scope.spawn(|| wal::run(dir, cfg, &live));
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
