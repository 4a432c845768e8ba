//! `synod bench --compare-etcd`: the same cases against a Synod cluster and an etcd 3.4
//! reference cluster of the same size on this machine, alternating which goes first, and
//! one table of both figures and their ratio. `mem-N` cases measure every member's
//! resident memory before and after loading N keys (see `bench_mem`).

use crate::cluster::{check_free, start_synod, EtcdRef, ETCD_CLIENT_PORT, ETCD_PEER_PORT};
use crate::cmd::{install_stop_handlers, runtime, LoadArgs};
use crate::coord;
use crate::load::{self, Live, Spec, Workload, STOP};
use crate::mem::{self, MemResult, MemSpec};
use crate::report::{median, Measure, Progress, Summary};
use clap::ValueEnum;
use serde_json::json;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The goal's cases: puts at growing concurrency, then reads of a preloaded key space.
pub const DEFAULT_CASES: [&str; 6] = [
    "put-1x1",
    "put-16x1",
    "put-64x8",
    "put-256x16",
    "get-64x8",
    "sget-64x8",
];

/// One line of a table.
#[derive(Clone, Debug)]
pub struct Case {
    pub name: String,
    pub kind: Kind,
}

/// What a case measures.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Throughput and latency of `workload` from `clients` over `conns` connections.
    Load {
        workload: Workload,
        clients: usize,
        conns: usize,
    },
    /// Resident memory of every member before and after loading `keys` keys.
    Mem { keys: u64 },
}

/// `WORKLOAD-CLIENTS[xCONNS]`, e.g. `put-64x8` (one connection when CONNS is left out),
/// or `mem-KEYS`, e.g. `mem-1000000`.
pub fn parse_case(s: &str) -> Result<Case, String> {
    if let Some(keys) = mem::parse_mem_case(s) {
        return Ok(Case {
            name: s.trim().to_string(),
            kind: Kind::Mem { keys: keys? },
        });
    }
    let bad = || {
        format!("case '{s}' is not WORKLOAD-CLIENTSxCONNS (e.g. put-64x8) or mem-KEYS (e.g. mem-1000000)")
    };
    let (w, n) = s.trim().rsplit_once('-').ok_or_else(bad)?;
    let workload = Workload::from_str(w, true).map_err(|_| bad())?;
    let (c, k) = n.split_once('x').unwrap_or((n, "1"));
    let clients: usize = c.parse().map_err(|_| bad())?;
    let conns: usize = k.parse().map_err(|_| bad())?;
    if clients == 0 || conns == 0 {
        return Err(bad());
    }
    Ok(Case {
        name: s.trim().to_string(),
        kind: Kind::Load {
            workload,
            clients,
            conns,
        },
    })
}

/// A cluster under measurement.
struct System {
    name: &'static str,
    endpoints: Vec<String>,
    /// Each member's Prometheus metrics URL, in the order of `endpoints`.
    metrics: Vec<String>,
    /// Whether the key space was written once (before the first read case).
    preloaded: bool,
}

/// Every run of one case on both systems.
struct Row {
    case: Case,
    /// Synod's runs, then etcd's (load cases).
    runs: [Vec<Summary>; 2],
    /// Synod's result, then etcd's (memory cases).
    mem: [Vec<MemResult>; 2],
}

/// The median of one figure over a system's runs.
fn med(runs: &[Summary], f: impl Fn(&Summary) -> f64) -> f64 {
    median(runs.iter().map(f).collect())
}

pub fn run(args: &LoadArgs) -> Result<(), String> {
    install_stop_handlers();
    let names: Vec<String> = if args.cases.is_empty() {
        DEFAULT_CASES.iter().map(|s| s.to_string()).collect()
    } else {
        args.cases.clone()
    };
    let cases = names
        .iter()
        .map(|s| parse_case(s))
        .collect::<Result<Vec<_>, _>>()?;
    let template = Spec {
        clients: 1,
        conns: 1,
        rate: None,
        ..args.spec()
    };
    for c in &cases {
        match c.kind {
            Kind::Load { clients, conns, .. } => load::check_spec(&Spec {
                clients,
                conns,
                ..template.clone()
            })?,
            Kind::Mem { keys } => mem::check_mem_keys(keys, template.key_size)?,
        }
    }
    if args.nodes == 0 || args.repeat == 0 {
        return Err("--nodes and --repeat must be at least 1".into());
    }
    let n = args.nodes as u16;
    check_free((0..3 * n).map(|i| args.synod_base_port + i), "Synod")?;
    check_free(
        (0..n).flat_map(|i| [ETCD_CLIENT_PORT + i, ETCD_PEER_PORT + i]),
        "etcd",
    )?;
    let work = args.work_dir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("synod-bench-compare-{}", std::process::id()))
    });
    let rows = with_clusters(args, &work, &cases, &template)?;
    print_rows(args, &template, &rows);
    if args.work_dir.is_none() {
        let _ = std::fs::remove_dir_all(&work);
    }
    Ok(())
}

/// Starts both clusters, measures every case, stops both clusters.
fn with_clusters(
    args: &LoadArgs,
    work: &std::path::Path,
    cases: &[Case],
    template: &Spec,
) -> Result<Vec<Row>, String> {
    eprintln!("starting {} Synod members", args.nodes);
    let synod = start_synod(args.nodes, args.synod_base_port, &work.join("synod"))
        .map_err(|e| format!("{e}\n(data and logs kept in {})", work.display()))?;
    let synod_eps: Vec<String> = synod.endpoints().split(',').map(str::to_string).collect();
    let synod_metrics: Vec<String> = synod
        .admin_urls()
        .iter()
        .map(|a| format!("{a}/metrics"))
        .collect();
    eprintln!(
        "starting {} etcd members ({})",
        args.nodes,
        args.etcd_script.display()
    );
    let (_etcd, etcd_eps) = EtcdRef::start(&args.etcd_script, args.nodes, &work.join("etcd"))
        .map_err(|e| format!("{e}\n(data and logs kept in {})", work.display()))?;
    eprintln!(
        "synod: {}  etcd: {}",
        synod_eps.join(","),
        etcd_eps.join(",")
    );
    let mut systems = [
        System {
            name: "synod",
            endpoints: synod_eps,
            metrics: synod_metrics,
            preloaded: false,
        },
        System {
            name: "etcd",
            // etcd serves /metrics on its client port.
            metrics: etcd_eps
                .iter()
                .map(|e| format!("http://{e}/metrics"))
                .collect(),
            endpoints: etcd_eps,
            preloaded: false,
        },
    ];
    let rt = runtime(args.threads)?;
    rt.block_on(measure_all(args, cases, template, &mut systems))
        .map_err(|e| format!("{e}\n(data and logs kept in {})", work.display()))
}

async fn measure_all(
    args: &LoadArgs,
    cases: &[Case],
    template: &Spec,
    systems: &mut [System; 2],
) -> Result<Vec<Row>, String> {
    let mut rows = Vec::new();
    let mut pair = 0usize;
    let mut warmed = args.warmup.is_zero();
    for case in cases {
        let mut row = Row {
            case: case.clone(),
            runs: [Vec::new(), Vec::new()],
            mem: [Vec::new(), Vec::new()],
        };
        if let Kind::Mem { keys } = case.kind {
            if args.repeat > 1 {
                eprintln!(
                    "{}: loaded once per system (--repeat does not apply: a second load would \
                     overwrite the same keys)",
                    case.name
                );
            }
            let first = pair % 2;
            pair += 1;
            for j in [first, 1 - first] {
                let sys = &systems[j];
                if STOP.load(Ordering::SeqCst) {
                    return Err("interrupted".into());
                }
                let spec = mem_spec(args, template, keys);
                let r = mem::measure(sys.name, &sys.endpoints, &sys.metrics, &spec)
                    .await
                    .map_err(|e| format!("{} {}: {e}", case.name, sys.name))?;
                eprintln!("{} {}: {}", case.name, sys.name, r.line());
                row.mem[j].push(r);
            }
            rows.push(row);
            continue;
        }
        if !warmed {
            warmed = true;
            for sys in systems.iter_mut() {
                warm_up(args, template, sys).await?;
            }
        }
        for r in 0..args.repeat {
            // Alternate which system goes first, so drifting noise hits both alike.
            let first = pair % 2;
            pair += 1;
            for j in [first, 1 - first] {
                settle().await;
                let s = measure(args, case, template, &mut systems[j]).await?;
                eprintln!(
                    "{} {} run {}/{}: {:.0} ops/s p50={:.3} ms p99={:.3} ms errors={} term_changes={}",
                    case.name,
                    systems[j].name,
                    r + 1,
                    args.repeat,
                    s.ops_per_s,
                    s.p50_ms,
                    s.p99_ms,
                    s.errors,
                    s.term_changes
                );
                row.runs[j].push(s);
            }
        }
        rows.push(row);
    }
    Ok(rows)
}

/// An uncounted put-16x1 run of `--warmup` against `sys`.
async fn warm_up(args: &LoadArgs, template: &Spec, sys: &mut System) -> Result<(), String> {
    let case = Case {
        name: "warm-up".into(),
        kind: Kind::Load {
            workload: Workload::Put,
            clients: 16,
            conns: 1,
        },
    };
    let spec = Spec {
        duration: args.warmup,
        ..template.clone()
    };
    let s = measure(args, &case, &spec, sys).await?;
    eprintln!(
        "warm-up {}: put-16x1 for {:?}, {:.0} ops/s, errors={} (not counted)",
        sys.name, args.warmup, s.ops_per_s, s.errors
    );
    Ok(())
}

/// The machine's busy share (0–1) below which a run may start.
const QUIET: f64 = 0.25;
/// The longest a run waits for the machine to be quiet.
const SETTLE_MAX: Duration = Duration::from_secs(20);

/// Busy and total jiffies of every CPU together, from `/proc/stat`.
fn cpu_jiffies() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let v: Vec<u64> = line
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = v.iter().sum();
    // idle and iowait are the 4th and 5th fields.
    let idle = v.get(3)? + v.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

/// Waits (up to [`SETTLE_MAX`]) until the machine is quiet, so that one system's run
/// does not pay for the work the other is still doing after its own run ended (etcd
/// keeps draining lagging watchers for seconds after a fan-out run's clients left).
async fn settle() {
    let start = Instant::now();
    let mut last = cpu_jiffies();
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = cpu_jiffies();
        let busy = match (last, now) {
            (Some((b0, t0)), Some((b1, t1))) if t1 > t0 => (b1 - b0) as f64 / (t1 - t0) as f64,
            _ => return,
        };
        if busy < QUIET {
            break;
        }
        if start.elapsed() >= SETTLE_MAX {
            eprintln!(
                "the machine stayed busy ({:.0} %); running anyway",
                busy * 100.0
            );
            return;
        }
        last = now;
    }
    if start.elapsed() > Duration::from_secs(1) {
        eprintln!(
            "waited {:.1} s for the machine to be quiet",
            start.elapsed().as_secs_f64()
        );
    }
}

/// One run of `case` on `sys` (preloading the key space before its first read case).
async fn measure(
    args: &LoadArgs,
    case: &Case,
    template: &Spec,
    sys: &mut System,
) -> Result<Summary, String> {
    if STOP.load(Ordering::SeqCst) {
        return Err("interrupted".into());
    }
    let Kind::Load {
        workload,
        clients,
        conns,
    } = case.kind
    else {
        return Err(format!("{}: not a load case", case.name));
    };
    let spec = Spec {
        workload,
        clients,
        conns,
        ..template.clone()
    };
    let ct = args.connect_timeout;
    let probe = load::probe(&sys.endpoints, ct).await?;
    let eps = &probe.ordered;
    if coord::is_coordination(workload) {
        let live = Arc::new(Live::default());
        let label = format!("{} {}", case.name, sys.name);
        let bar = Progress::start(label, Measure::Time(spec.duration), live.clone());
        let outcome = coord::run(&spec, eps, ct, args.timeout, live).await;
        bar.finish();
        let outcome = outcome.map_err(|e| format!("{} {}: {e}", case.name, sys.name))?;
        let term_changes = load::term_now(eps, ct).await.saturating_sub(probe.term);
        let spec = Spec {
            client: coord::client_used(&spec),
            ..spec
        };
        return Ok(Summary::new(&spec, eps, &probe, term_changes, &outcome));
    }
    let conns = load::connect_kv(eps, &spec, ct, args.timeout).await?;
    let reads = matches!(workload, Workload::Get | Workload::Sget | Workload::Mixed);
    if reads && !sys.preloaded {
        let live = Arc::new(Live::default());
        let label = format!("{}: preload {} keys", sys.name, spec.key_space);
        let bar = Progress::start(label, Measure::Ops(spec.key_space), live.clone());
        let done = load::preload(&spec, &conns, live).await;
        bar.finish();
        done.map_err(|e| format!("{}: {e}", sys.name))?;
        sys.preloaded = true;
    }
    let live = Arc::new(Live::default());
    let label = format!("{} {}", case.name, sys.name);
    let bar = Progress::start(label, Measure::Time(spec.duration), live.clone());
    let outcome = load::run(&spec, &conns, live).await;
    bar.finish();
    if STOP.load(Ordering::SeqCst) {
        return Err("interrupted".into());
    }
    let term_changes = load::term_now(eps, ct).await.saturating_sub(probe.term);
    Ok(Summary::new(&spec, eps, &probe, term_changes, &outcome))
}

/// Requests of a memory case carry at most this many bytes of keys and values (etcd's
/// and Synod's default --max-request-bytes is 1.5 MiB).
const MEM_REQUEST_BUDGET: usize = 1 << 20;

/// How the memory cases load: `--mem-txn-ops` Puts per Txn, fewer if they would not fit
/// in [`MEM_REQUEST_BUDGET`].
fn mem_spec(args: &LoadArgs, template: &Spec, keys: u64) -> MemSpec {
    let per_put = template.key_size + template.value_size + 16;
    let fit = (MEM_REQUEST_BUDGET / per_put).max(1);
    MemSpec {
        keys,
        key_size: template.key_size,
        value_size: template.value_size,
        txn_ops: (args.mem_txn_ops as usize).min(fit),
        clients: args.mem_clients as usize,
        seed: template.seed,
        connect_timeout: args.connect_timeout,
        request_timeout: args.timeout,
    }
}

/// `12345.6` as `12,346`.
fn thousands(x: f64) -> String {
    let digits = format!("{:.0}", x.max(0.0));
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

fn print_rows(args: &LoadArgs, spec: &Spec, rows: &[Row]) {
    if args.json {
        let cases: Vec<_> = rows.iter().map(|r| row_json(args, spec, r)).collect();
        let doc = json!({
            "nodes": args.nodes,
            "duration_s": spec.duration.as_secs_f64(),
            "repeat": args.repeat,
            "key_size": spec.key_size,
            "value_size": spec.value_size,
            "key_space": spec.key_space,
            "cases": cases,
        });
        println!("{doc}");
        return;
    }
    let load: Vec<&Row> = rows
        .iter()
        .filter(|r| matches!(r.case.kind, Kind::Load { .. }))
        .collect();
    let mem: Vec<&Row> = rows
        .iter()
        .filter(|r| matches!(r.case.kind, Kind::Mem { .. }))
        .collect();
    if !load.is_empty() {
        print_load_rows(args, spec, &load);
    }
    if !mem.is_empty() {
        if !load.is_empty() {
            println!();
        }
        let m = mem_spec(args, spec, 1);
        println!(
            "{} members each on loopback; memory cases: {}-byte keys ('{}' and a zero-padded \
             index), {}-byte values, written once each by {} clients over {} connections in \
             {}; each system loaded once, alternating which goes first",
            args.nodes,
            spec.key_size,
            mem::KEY_PREFIX,
            spec.value_size,
            m.clients,
            m.clients.min(8),
            if m.txn_ops == 1 {
                "plain Put requests".to_string()
            } else {
                format!("Txn requests of up to {} Puts", m.txn_ops)
            }
        );
        mem::print_header();
        for row in mem {
            if let ([s], [e]) = (&row.mem[0][..], &row.mem[1][..]) {
                mem::print_row(&row.case.name, s, e);
            }
        }
    }
}

fn print_load_rows(args: &LoadArgs, spec: &Spec, rows: &[&Row]) {
    println!(
        "{} members each on loopback; {}-byte keys over {} keys, {}-byte values; {:.1} s \
         per run; median of {} run(s) per system, alternating which goes first; the same \
         {} gRPC client for both",
        args.nodes,
        spec.key_size,
        spec.key_space,
        spec.value_size,
        spec.duration.as_secs_f64(),
        args.repeat,
        spec.client.name()
    );
    println!();
    println!(
        "| case | synod ops/s | etcd ops/s | synod/etcd | synod p50 / p99 ms \
         | etcd p50 / p99 ms | errors synod / etcd | term changes synod / etcd |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for row in rows {
        let [s, e] = &row.runs;
        let (so, eo) = (med(s, |x| x.ops_per_s), med(e, |x| x.ops_per_s));
        let errors = |r: &[Summary]| r.iter().map(|x| x.errors).sum::<u64>();
        let terms = |r: &[Summary]| r.iter().map(|x| x.term_changes).sum::<u64>();
        println!(
            "| {} | {} | {} | {:.2} | {:.2} / {:.2} | {:.2} / {:.2} | {} / {} | {} / {} |",
            row.case.name,
            thousands(so),
            thousands(eo),
            so / eo.max(1e-9),
            med(s, |x| x.p50_ms),
            med(s, |x| x.p99_ms),
            med(e, |x| x.p50_ms),
            med(e, |x| x.p99_ms),
            errors(s),
            errors(e),
            terms(s),
            terms(e)
        );
    }
}

fn row_json(args: &LoadArgs, spec: &Spec, row: &Row) -> serde_json::Value {
    let (workload, clients, conns) = match row.case.kind {
        Kind::Load {
            workload,
            clients,
            conns,
        } => (workload, clients, conns),
        Kind::Mem { keys } => {
            let m = mem_spec(args, spec, keys);
            let one = |r: &[MemResult]| r.first().map(MemResult::to_json);
            let fig = |r: &[MemResult], f: fn(&MemResult) -> f64| r.first().map(f).unwrap_or(0.0);
            let [s, e] = &row.mem;
            return json!({
                "case": row.case.name,
                "kind": "mem",
                "keys": keys,
                "txn_ops": m.txn_ops,
                "clients": m.clients,
                "conns": m.clients.min(8),
                "unit": "MiB of RSS per million keys (largest member after the load); lower is better",
                "synod": one(s),
                "etcd": one(e),
                "ratio": fig(s, MemResult::mib_per_m) / fig(e, MemResult::mib_per_m).max(1e-9),
                "delta_ratio": fig(s, MemResult::delta_mib_per_m)
                    / fig(e, MemResult::delta_mib_per_m).max(1e-9),
            });
        }
    };
    let side = |runs: &[Summary]| {
        json!({
            "ops_per_s": med(runs, |x| x.ops_per_s),
            "p50_ms": med(runs, |x| x.p50_ms),
            "p99_ms": med(runs, |x| x.p99_ms),
            "p999_ms": med(runs, |x| x.p999_ms),
            "errors": runs.iter().map(|x| x.errors).sum::<u64>(),
            "term_changes": runs.iter().map(|x| x.term_changes).sum::<u64>(),
            "runs": runs.iter().map(Summary::to_json).collect::<Vec<_>>(),
        })
    };
    let [s, e] = &row.runs;
    json!({
        "case": row.case.name,
        "kind": "load",
        "workload": workload.name(),
        "clients": clients,
        "conns": conns,
        "synod": side(s),
        "etcd": side(e),
        "ratio": med(s, |x| x.ops_per_s) / med(e, |x| x.ops_per_s).max(1e-9),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cases_parse() {
        let load = |workload, clients, conns| Kind::Load {
            workload,
            clients,
            conns,
        };
        assert_eq!(
            parse_case("put-64x8").unwrap().kind,
            load(Workload::Put, 64, 8)
        );
        assert_eq!(
            parse_case("sget-16").unwrap().kind,
            load(Workload::Sget, 16, 1)
        );
        assert_eq!(
            parse_case("mem-1000000").unwrap().kind,
            Kind::Mem { keys: 1_000_000 }
        );
        assert_eq!(
            parse_case("mem-200k").unwrap().kind,
            Kind::Mem { keys: 200_000 }
        );
        assert!(parse_case("mem-0").is_err());
        assert!(parse_case("mem-abc").is_err());
        assert!(parse_case("put").is_err());
        assert!(parse_case("scan-4x1").is_err());
        assert!(parse_case("put-0x1").is_err());
        for c in DEFAULT_CASES {
            parse_case(c).unwrap();
        }
    }

    #[test]
    fn thousands_groups_digits() {
        assert_eq!(thousands(0.4), "0");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(12_345.6), "12,346");
        assert_eq!(thousands(1_234_567.0), "1,234,567");
    }
}
