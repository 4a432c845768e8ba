//! The memory case of `synod bench --compare-etcd` (`mem-N`): every member's resident
//! set size (`process_resident_memory_bytes` on its metrics endpoint) before and after
//! loading N distinct keys, scaled to MiB per million keys.
//!
//! The load: `--mem-clients` concurrent clients over up to 8 connections (round-robin
//! over the members, the leader's first), each sending Txn requests of `--mem-txn-ops`
//! Puts (default 128, etcd's `--max-txn-ops` default; 1 sends plain Put requests) of
//! distinct keys `m` + a zero-padded index, `--key-size` bytes in all, with
//! `--value-size`-byte values. After the load, every member is sampled every 500 ms
//! until none moved by more than 1 % over the last 2 s (at most 30 s), and the last
//! sample is the "after" figure.

use crate::load::{self, Live, STOP};
use crate::report::{median, Measure, Progress};
use etcdpb::etcdserverpb::{self as pb, kv_client::KvClient, request_op};
use serde_json::json;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tonic::transport::Channel;

/// The metric both systems report their resident set size in.
pub const RSS_METRIC: &str = "process_resident_memory_bytes";
/// Every key of a memory case starts with this (so it never collides with the
/// digits-only keys of the load cases).
pub const KEY_PREFIX: &str = "m";
/// Connections a memory case's clients share, at most.
const MAX_CONNS: usize = 8;
/// Time between RSS samples while waiting for the members to settle.
const SAMPLE_EVERY: Duration = Duration::from_millis(500);
/// The window over which RSS must stay within [`SETTLE_TOLERANCE`].
const SETTLE_WINDOW: Duration = Duration::from_secs(2);
/// Largest change (a fraction of the window's maximum) that still counts as settled.
const SETTLE_TOLERANCE: f64 = 0.01;
/// Longest wait for the members to settle after the load.
const SETTLE_CAP: Duration = Duration::from_secs(30);
/// A request slower than this is counted as a stall.
const STALL: Duration = Duration::from_secs(1);
/// Retries of one request (leader changes, stalls over the request timeout).
const MAX_RETRIES: u32 = 10;

/// `mem-N`: the number of keys, or `None` when `s` is not a memory case. N may end in
/// `k` (thousands) or `m`/`M` (millions), e.g. `mem-200k`, `mem-1M`.
pub fn parse_mem_case(s: &str) -> Option<Result<u64, String>> {
    let n = s.trim().strip_prefix("mem-")?;
    let bad = || format!("case '{s}' is not mem-KEYS (e.g. mem-1000000, mem-200k, mem-1M)");
    let (digits, scale) = match n.as_bytes().last() {
        Some(b'k' | b'K') => (&n[..n.len() - 1], 1_000),
        Some(b'm' | b'M') => (&n[..n.len() - 1], 1_000_000),
        _ => (n, 1),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Some(Err(bad()));
    }
    Some(
        digits
            .parse::<u64>()
            .ok()
            .and_then(|v| v.checked_mul(scale))
            .filter(|&v| v > 0)
            .ok_or_else(bad),
    )
}

/// Key `i` of a memory case: the prefix and the zero-padded index, `size` bytes.
pub fn mem_key(size: usize, i: u64) -> Vec<u8> {
    let w = size.saturating_sub(KEY_PREFIX.len());
    format!("{KEY_PREFIX}{i:0w$}").into_bytes()
}

/// Checks that `keys` distinct memory-case keys fit in `key_size` bytes.
pub fn check_mem_keys(keys: u64, key_size: usize) -> Result<(), String> {
    let need = KEY_PREFIX.len() + keys.saturating_sub(1).to_string().len();
    if key_size < need {
        return Err(format!(
            "--key-size {key_size} cannot hold mem-{keys} keys ('{KEY_PREFIX}' and the index: \
             needs {need} bytes)"
        ));
    }
    Ok(())
}

/// `bytes` of resident memory for `keys` keys, as MiB per million keys.
pub fn mib_per_million(bytes: f64, keys: u64) -> f64 {
    bytes / f64::from(1u32 << 20) * 1e6 / keys.max(1) as f64
}

/// Every member's RSS in bytes, in the order of `metrics_urls` (each a `/metrics` URL).
pub async fn read_rss(metrics_urls: &[String]) -> Result<Vec<u64>, String> {
    let urls = metrics_urls.to_vec();
    tokio::task::spawn_blocking(move || {
        urls.iter()
            .map(|url| {
                let (code, body) = harness::http::get_url(url, Duration::from_secs(5))?;
                if code != 200 {
                    return Err(format!("GET {url}: HTTP status {code}"));
                }
                let v = harness::http::metric_value(&body, RSS_METRIC)
                    .ok_or_else(|| format!("GET {url}: no {RSS_METRIC} sample"))?;
                Ok(v as u64)
            })
            .collect()
    })
    .await
    .map_err(|e| format!("reading RSS: {e}"))?
}

/// Whether no member's RSS moved by more than `tol` (a fraction of its largest value)
/// across `window`, a run of samples (one vector per sample, one entry per member).
pub fn settled(window: &[Vec<u64>], tol: f64) -> bool {
    let Some(first) = window.first() else {
        return false;
    };
    window.len() >= 2
        && (0..first.len()).all(|m| {
            let xs = window.iter().map(|s| s[m]);
            let (lo, hi) = (xs.clone().min().unwrap_or(0), xs.max().unwrap_or(0));
            (hi - lo) as f64 <= tol * hi as f64
        })
}

/// How a memory case loads and what it reports.
#[derive(Clone, Debug)]
pub struct MemSpec {
    pub keys: u64,
    pub key_size: usize,
    pub value_size: usize,
    /// Puts per Txn (1: plain Put requests).
    pub txn_ops: usize,
    pub clients: usize,
    pub seed: u64,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
}

/// What one memory case measured on one system.
#[derive(Clone, Debug, Default)]
pub struct MemResult {
    pub keys: u64,
    /// Client endpoints, one per member, in the order of the RSS vectors.
    pub members: Vec<String>,
    pub before: Vec<u64>,
    /// The highest RSS seen per member during the load (sampled every 500 ms).
    pub peak: Vec<u64>,
    pub after: Vec<u64>,
    pub load_s: f64,
    /// Requests retried after an error (each may have written its keys twice).
    pub retries: u64,
    /// Requests that took over a second.
    pub stalls: u64,
    pub max_request_ms: f64,
    /// Whether RSS settled within the cap; how long the wait was.
    pub settled: bool,
    pub settle_s: f64,
    pub term_changes: u64,
    /// Keys under the prefix each member counts (serializable), after the measurement.
    pub counted: Vec<Option<u64>>,
    /// Why the load failed, if it did (RSS is still read afterwards).
    pub error: Option<String>,
    /// Error message -> count, for the retried ones.
    pub retry_kinds: Vec<(String, u64)>,
}

fn mib(b: f64) -> f64 {
    b / f64::from(1u32 << 20)
}

impl MemResult {
    pub fn after_max(&self) -> u64 {
        self.after.iter().copied().max().unwrap_or(0)
    }

    pub fn after_median(&self) -> f64 {
        median(self.after.iter().map(|&b| b as f64).collect())
    }

    pub fn before_max(&self) -> u64 {
        self.before.iter().copied().max().unwrap_or(0)
    }

    pub fn peak_max(&self) -> u64 {
        self.peak.iter().copied().max().unwrap_or(0)
    }

    /// Each member's growth over its own baseline (negative if it shrank).
    pub fn deltas(&self) -> Vec<i64> {
        self.after
            .iter()
            .zip(&self.before)
            .map(|(&a, &b)| a as i64 - b as i64)
            .collect()
    }

    pub fn delta_max(&self) -> i64 {
        self.deltas().into_iter().max().unwrap_or(0)
    }

    /// The headline figure: the largest member's RSS after the load, per million keys.
    pub fn mib_per_m(&self) -> f64 {
        mib_per_million(self.after_max() as f64, self.keys)
    }

    /// The largest member's growth over its baseline, per million keys.
    pub fn delta_mib_per_m(&self) -> f64 {
        mib_per_million(self.delta_max() as f64, self.keys)
    }

    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "keys": self.keys,
            "members": self.members,
            "rss_before_bytes": self.before,
            "rss_peak_bytes": self.peak,
            "rss_after_bytes": self.after,
            "rss_after_max_bytes": self.after_max(),
            "rss_after_median_bytes": self.after_median(),
            "rss_delta_bytes": self.deltas(),
            "rss_delta_max_bytes": self.delta_max(),
            "mib_per_million_keys": self.mib_per_m(),
            "delta_mib_per_million_keys": self.delta_mib_per_m(),
            "load_s": self.load_s,
            "keys_per_s": self.keys as f64 / self.load_s.max(1e-9),
            "retries": self.retries,
            "retry_kinds": self.retry_kinds.iter().map(|(k, n)| json!({"error": k, "count": n})).collect::<Vec<_>>(),
            "stalls_over_1s": self.stalls,
            "max_request_ms": self.max_request_ms,
            "settled": self.settled,
            "settle_s": self.settle_s,
            "term_changes": self.term_changes,
            "counted_keys": self.counted,
            "error": self.error,
        })
    }

    /// One line for stderr while the run goes on.
    pub fn line(&self) -> String {
        let mibs = |v: &[u64]| {
            v.iter()
                .map(|&b| format!("{:.1}", mib(b as f64)))
                .collect::<Vec<_>>()
                .join("/")
        };
        let counted: Vec<String> = self
            .counted
            .iter()
            .map(|c| c.map_or("?".into(), |n| n.to_string()))
            .collect();
        format!(
            "RSS MiB before {} peak {} after {} ({}settled after {:.1} s); {:.1} MiB per 1M keys \
             (delta {:.1}); load {:.1} s, {} retries, {} requests over 1 s (max {:.0} ms), \
             term changes {}, keys counted {}{}",
            mibs(&self.before),
            mibs(&self.peak),
            mibs(&self.after),
            if self.settled { "" } else { "NOT " },
            self.settle_s,
            self.mib_per_m(),
            self.delta_mib_per_m(),
            self.load_s,
            self.retries,
            self.stalls,
            self.max_request_ms,
            self.term_changes,
            counted.join("/"),
            self.error
                .as_ref()
                .map_or(String::new(), |e| format!("; LOAD FAILED: {e}"))
        )
    }
}

/// What the load's clients share.
struct Shared {
    spec: MemSpec,
    value: Vec<u8>,
    next_batch: AtomicU64,
    batches: u64,
    live: Arc<Live>,
    retries: AtomicU64,
    stalls: AtomicU64,
    max_us: AtomicU64,
    retry_kinds: Mutex<Vec<(String, u64)>>,
}

impl Shared {
    fn note_retry(&self, s: &tonic::Status) {
        self.retries.fetch_add(1, Ordering::Relaxed);
        let msg = format!("{:?}: {}", s.code(), s.message());
        let mut kinds = self.retry_kinds.lock().unwrap();
        if let Some((_, n)) = kinds.iter_mut().find(|(k, _)| *k == msg) {
            *n += 1;
        } else if kinds.len() < 16 {
            kinds.push((msg, 1));
        }
    }

    fn put(&self, i: u64) -> pb::PutRequest {
        pb::PutRequest {
            key: mem_key(self.spec.key_size, i),
            value: self.value.clone(),
            ..Default::default()
        }
    }
}

/// Sends batch `b` (keys `b*txn_ops ..`), retrying what a leader change or a stall can
/// cause.
async fn send_batch(kv: &mut KvClient<Channel>, sh: &Shared, b: u64) -> Result<(), String> {
    use tonic::Code;
    let ops = sh.spec.txn_ops as u64;
    let (lo, hi) = (b * ops, ((b + 1) * ops).min(sh.spec.keys));
    let mut attempt = 0;
    loop {
        let t0 = Instant::now();
        let res = if ops == 1 {
            kv.put(sh.put(lo)).await.map(drop)
        } else {
            let success = (lo..hi)
                .map(|i| pb::RequestOp {
                    request: Some(request_op::Request::RequestPut(sh.put(i))),
                })
                .collect();
            let txn = pb::TxnRequest {
                success,
                ..Default::default()
            };
            kv.txn(txn).await.map(drop)
        };
        let took = t0.elapsed();
        sh.max_us
            .fetch_max(took.as_micros() as u64, Ordering::Relaxed);
        if took > STALL {
            sh.stalls.fetch_add(1, Ordering::Relaxed);
        }
        match res {
            Ok(()) => {
                sh.live.ops.fetch_add(hi - lo, Ordering::Relaxed);
                return Ok(());
            }
            Err(s)
                if matches!(
                    s.code(),
                    Code::Unavailable | Code::Cancelled | Code::DeadlineExceeded
                ) && attempt < MAX_RETRIES =>
            {
                attempt += 1;
                sh.note_retry(&s);
                sh.live.errors.fetch_add(1, Ordering::Relaxed);
                eprintln!(
                    "mem load: keys {lo}..{hi} failed after {:.0} ms ({:?}: {}); retrying",
                    took.as_secs_f64() * 1e3,
                    s.code(),
                    s.message()
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(s) => {
                return Err(format!(
                    "keys {lo}..{hi}: {:?}: {} (after {attempt} retries)",
                    s.code(),
                    s.message()
                ))
            }
        }
    }
}

/// Loads the keys over `channels`; `Err` with the first request that failed for good.
async fn load(sh: Arc<Shared>, channels: &[Channel]) -> Result<(), String> {
    let tasks: Vec<_> = (0..sh.spec.clients)
        .map(|c| {
            let mut kv = KvClient::new(channels[c % channels.len()].clone());
            let sh = sh.clone();
            tokio::spawn(async move {
                loop {
                    if STOP.load(Ordering::Relaxed) {
                        return Err("interrupted".to_string());
                    }
                    let b = sh.next_batch.fetch_add(1, Ordering::Relaxed);
                    if b >= sh.batches {
                        return Ok(());
                    }
                    if let Err(e) = send_batch(&mut kv, &sh, b).await {
                        // Stop the other clients too.
                        sh.next_batch.store(sh.batches, Ordering::Relaxed);
                        return Err(e);
                    }
                }
            })
        })
        .collect();
    let mut first_err = None;
    for t in tasks {
        let r = t
            .await
            .map_err(|e| format!("load task: {e}"))
            .and_then(|r| r);
        if let (Err(e), None) = (r, &first_err) {
            first_err = Some(e);
        }
    }
    first_err.map_or(Ok(()), Err)
}

/// Samples every member until the RSS settles (or the cap); the last sample and
/// whether it settled.
async fn settle(metrics_urls: &[String]) -> Result<(Vec<u64>, bool, Duration), String> {
    let started = Instant::now();
    let per_window = (SETTLE_WINDOW.as_millis() / SAMPLE_EVERY.as_millis()) as usize + 1;
    let mut samples: Vec<Vec<u64>> = Vec::new();
    loop {
        samples.push(read_rss(metrics_urls).await?);
        let window = &samples[samples.len().saturating_sub(per_window)..];
        let ok = window.len() == per_window && settled(window, SETTLE_TOLERANCE);
        if ok || started.elapsed() >= SETTLE_CAP || STOP.load(Ordering::SeqCst) {
            let last = samples.pop().unwrap_or_default();
            return Ok((last, ok, started.elapsed()));
        }
        tokio::time::sleep(SAMPLE_EVERY).await;
    }
}

/// Keys under the prefix on one member, served by that member.
async fn count_keys(ep: &str, spec: &MemSpec) -> Option<u64> {
    let ch = load::dial(ep, spec.connect_timeout, Duration::from_secs(60))
        .await
        .ok()?;
    let mut kv = KvClient::new(ch);
    let mut end = KEY_PREFIX.as_bytes().to_vec();
    *end.last_mut()? += 1;
    let req = pb::RangeRequest {
        key: KEY_PREFIX.as_bytes().to_vec(),
        range_end: end,
        count_only: true,
        serializable: true,
        ..Default::default()
    };
    let resp = kv.range(req).await.ok()?.into_inner();
    Some(resp.count as u64)
}

/// One memory case on one system: `endpoints` and `metrics_urls` name the members in
/// the same order.
pub async fn measure(
    name: &str,
    endpoints: &[String],
    metrics_urls: &[String],
    spec: &MemSpec,
) -> Result<MemResult, String> {
    let probe = load::probe(endpoints, spec.connect_timeout).await?;
    let conns = spec.clients.min(MAX_CONNS);
    let channels = load::connect_all(
        &probe.ordered,
        conns,
        spec.connect_timeout,
        spec.request_timeout,
    )
    .await?;
    let before = read_rss(metrics_urls).await?;
    let mut value = vec![0u8; spec.value_size];
    let mut rng = seedrng::Rng::new(spec.seed);
    value
        .iter_mut()
        .for_each(|b| *b = b'a' + rng.range(0, 26) as u8);
    let live = Arc::new(Live::default());
    let sh = Arc::new(Shared {
        batches: spec.keys.div_ceil(spec.txn_ops as u64),
        spec: spec.clone(),
        value,
        next_batch: AtomicU64::new(0),
        live: live.clone(),
        retries: AtomicU64::new(0),
        stalls: AtomicU64::new(0),
        max_us: AtomicU64::new(0),
        retry_kinds: Mutex::new(Vec::new()),
    });
    let label = format!("{name}: load {} keys", spec.keys);
    let bar = Progress::start(label, Measure::Ops(spec.keys), live);
    // Sample RSS during the load, for the peak.
    let peak = Arc::new(Mutex::new(before.clone()));
    let sampler = {
        let (peak, urls) = (peak.clone(), metrics_urls.to_vec());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(SAMPLE_EVERY).await;
                if let Ok(v) = read_rss(&urls).await {
                    let mut p = peak.lock().unwrap();
                    p.iter_mut().zip(v).for_each(|(p, x)| *p = (*p).max(x));
                }
            }
        })
    };
    let t0 = Instant::now();
    let loaded = load(sh.clone(), &channels).await;
    let load_s = t0.elapsed().as_secs_f64();
    sampler.abort();
    bar.finish();
    drop(channels);
    if STOP.load(Ordering::SeqCst) {
        return Err("interrupted".into());
    }
    let (after, ok, waited) = settle(metrics_urls).await?;
    let mut peak = peak.lock().unwrap().clone();
    peak.iter_mut()
        .zip(&after)
        .for_each(|(p, &a)| *p = (*p).max(a));
    let term_changes = load::term_now(endpoints, spec.connect_timeout)
        .await
        .saturating_sub(probe.term);
    let mut counted = Vec::new();
    for ep in endpoints {
        counted.push(count_keys(ep, spec).await);
    }
    let retry_kinds = sh.retry_kinds.lock().unwrap().clone();
    Ok(MemResult {
        keys: spec.keys,
        members: endpoints.to_vec(),
        before,
        peak,
        after,
        load_s,
        retries: sh.retries.load(Ordering::Relaxed),
        stalls: sh.stalls.load(Ordering::Relaxed),
        max_request_ms: sh.max_us.load(Ordering::Relaxed) as f64 / 1e3,
        settled: ok,
        settle_s: waited.as_secs_f64(),
        term_changes,
        counted,
        error: loaded.err(),
        retry_kinds,
    })
}

/// The memory table's header (figures in MiB; lower is better).
pub fn print_header() {
    println!(
        "Memory: process_resident_memory_bytes of every member. \"MiB per 1M keys\" is the \
         largest member's RSS after the load scaled to one million keys (\"delta\": its growth \
         over the baseline before the load, scaled the same way). LOWER IS BETTER: a \
         synod/etcd ratio under 1 means Synod uses less."
    );
    println!();
    println!(
        "| case | synod MiB per 1M keys | etcd MiB per 1M keys | synod/etcd (lower is better) \
         | delta MiB per 1M keys synod / etcd | delta synod/etcd | RSS after MiB max / median synod \
         | RSS after MiB max / median etcd | RSS before MiB max synod / etcd \
         | RSS peak MiB max synod / etcd | load s synod / etcd | retries synod / etcd |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
}

/// One row of the memory table; `s` and `e` are Synod's and etcd's results.
pub fn print_row(case: &str, s: &MemResult, e: &MemResult) {
    let m = |b: f64| mib(b);
    let flag = |r: &MemResult| {
        let mut f = String::new();
        if r.error.is_some() {
            f.push_str(" (load failed)");
        }
        if !r.settled {
            f.push_str(" (not settled)");
        }
        f
    };
    println!(
        "| {case} | {:.1}{} | {:.1}{} | {:.2} | {:.1} / {:.1} | {:.2} | {:.1} / {:.1} | {:.1} / {:.1} \
         | {:.1} / {:.1} | {:.1} / {:.1} | {:.1} / {:.1} | {} / {} |",
        s.mib_per_m(),
        flag(s),
        e.mib_per_m(),
        flag(e),
        s.mib_per_m() / e.mib_per_m().max(1e-9),
        s.delta_mib_per_m(),
        e.delta_mib_per_m(),
        s.delta_mib_per_m() / e.delta_mib_per_m().max(1e-9),
        m(s.after_max() as f64),
        m(s.after_median()),
        m(e.after_max() as f64),
        m(e.after_median()),
        m(s.before_max() as f64),
        m(e.before_max() as f64),
        m(s.peak_max() as f64),
        m(e.peak_max() as f64),
        s.load_s,
        e.load_s,
        s.retries,
        e.retries
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mem_cases_parse() {
        assert_eq!(parse_mem_case("mem-1000000"), Some(Ok(1_000_000)));
        assert_eq!(parse_mem_case("mem-200k"), Some(Ok(200_000)));
        assert_eq!(parse_mem_case("mem-1M"), Some(Ok(1_000_000)));
        assert_eq!(parse_mem_case(" mem-5 "), Some(Ok(5)));
        assert!(parse_mem_case("put-64x8").is_none());
        assert!(parse_mem_case("memory-5").is_none());
        for bad in ["mem-", "mem-0", "mem-x", "mem-1.5M", "mem--3", "mem-k"] {
            assert!(matches!(parse_mem_case(bad), Some(Err(_))), "{bad}");
        }
        assert!(matches!(
            parse_mem_case("mem-99999999999999999999"),
            Some(Err(_))
        ));
    }

    #[test]
    fn mem_keys_are_distinct_and_sized() {
        assert_eq!(mem_key(8, 42), b"m0000042".to_vec());
        assert_eq!(mem_key(8, 9_999_999), b"m9999999".to_vec());
        assert!(check_mem_keys(10_000_000, 8).is_ok());
        assert!(check_mem_keys(10_000_001, 8).is_err());
        assert!(check_mem_keys(10, 2).is_ok());
        assert!(check_mem_keys(11, 2).is_err());
        assert!(check_mem_keys(1, 1).is_err());
    }

    #[test]
    fn scaling_to_a_million_keys() {
        let mib = f64::from(1u32 << 20);
        assert_eq!(mib_per_million(100.0 * mib, 1_000_000), 100.0);
        assert_eq!(mib_per_million(50.0 * mib, 200_000), 250.0);
        assert_eq!(mib_per_million(-10.0 * mib, 2_000_000), -5.0);
    }

    #[test]
    fn result_figures() {
        let mib = 1u64 << 20;
        let r = MemResult {
            keys: 500_000,
            before: vec![10 * mib, 12 * mib, 11 * mib],
            after: vec![100 * mib, 130 * mib, 90 * mib],
            ..Default::default()
        };
        assert_eq!(r.after_max(), 130 * mib);
        assert_eq!(r.after_median(), (100 * mib) as f64);
        assert_eq!(r.delta_max(), (118 * mib) as i64);
        assert_eq!(r.mib_per_m(), 260.0);
        assert_eq!(r.delta_mib_per_m(), 236.0);
        let shrunk = MemResult {
            keys: 1_000_000,
            before: vec![20 * mib],
            after: vec![15 * mib],
            ..Default::default()
        };
        assert_eq!(shrunk.deltas(), vec![-5 * mib as i64]);
        assert_eq!(shrunk.delta_mib_per_m(), -5.0);
    }

    #[test]
    fn settling() {
        let w = |xs: &[[u64; 2]]| xs.iter().map(|s| s.to_vec()).collect::<Vec<_>>();
        assert!(settled(&w(&[[1000, 500], [1005, 500], [1009, 499]]), 0.01));
        assert!(!settled(&w(&[[1000, 500], [1005, 500], [1020, 499]]), 0.01));
        assert!(!settled(&w(&[[1000, 500], [1000, 490]]), 0.01));
        assert!(!settled(&w(&[[1000, 500]]), 0.01));
        assert!(!settled(&[], 0.01));
    }
}
