//! Figures from a finished run (availability, failover, recovery) and the report
//! directory: history, verdict, fault timeline, plots and a summary page.

use super::faults::FaultEvent;
use super::plot::{self, Chart, Series, Window};
use super::workload::OpRecord;
use check::KvInput;
use std::fmt::Write as _;
use std::path::Path;

/// Availability: the fraction of 500 ms slots in `[0, end_s)` in which at least one
/// write was acknowledged.
pub fn availability(ops: &[OpRecord], end_s: f64) -> f64 {
    let slots = ((end_s / 0.5).ceil() as usize).max(1);
    let mut ok = vec![false; slots];
    for o in ops.iter().filter(|o| o.is_write() && o.ok()) {
        let s = (o.ret_us.unwrap_or(0) as f64 / 500_000.0) as usize;
        if s < slots {
            ok[s] = true;
        }
    }
    ok.iter().filter(|b| **b).count() as f64 / slots as f64
}

/// Milliseconds from `at_s` to the first acknowledged write invoked after it.
pub fn first_write_after(ops: &[OpRecord], at_s: f64) -> Option<f64> {
    let at = (at_s * 1e6) as u64;
    ops.iter()
        .filter(|o| o.is_write() && o.ok() && o.call_us >= at)
        .map(|o| o.ret_us.unwrap_or(0))
        .min()
        .map(|r| (r - at) as f64 / 1000.0)
}

fn op_json(o: &OpRecord) -> String {
    let mut v = match &o.input {
        KvInput::Get { key } => serde_json::json!({"op": "get", "key": key}),
        KvInput::Delete { key } => serde_json::json!({"op": "delete", "key": key}),
        KvInput::Put { key, value } => serde_json::json!({"op": "put", "key": key, "value": value}),
        KvInput::Cas { key, expected, new } => {
            serde_json::json!({"op": "cas", "key": key, "expected": expected, "new": new})
        }
    };
    let fields = [
        ("client", serde_json::json!(o.client)),
        ("member", serde_json::json!(o.member)),
        ("call_us", serde_json::json!(o.call_us)),
        ("ret_us", serde_json::json!(o.ret_us)),
        (
            "output",
            serde_json::json!(o
                .output
                .as_ref()
                .map_or(String::new(), |x| format!("{x:?}"))),
        ),
        (
            "error",
            serde_json::json!(o.error.clone().unwrap_or_default()),
        ),
        ("definite_failure", serde_json::json!(o.definite_failure)),
        ("revision", serde_json::json!(o.revision)),
    ];
    if let Some(obj) = v.as_object_mut() {
        obj.extend(fields.into_iter().map(|(k, x)| (k.to_string(), x)));
    }
    v.to_string()
}

/// Per-second series: acknowledged reads/s and writes/s, and p50/p99 latency (ms).
fn series(ops: &[OpRecord], end_s: f64) -> (Vec<Series>, Vec<Series>) {
    let secs = end_s.ceil().max(1.0) as usize;
    let mut reads = vec![0.0; secs];
    let mut writes = vec![0.0; secs];
    let mut lat: Vec<Vec<f64>> = vec![Vec::new(); secs];
    for o in ops.iter().filter(|o| o.ok()) {
        let r = o.ret_us.unwrap_or(0);
        let s = (r / 1_000_000) as usize;
        if s >= secs {
            continue;
        }
        if o.is_write() {
            writes[s] += 1.0
        } else {
            reads[s] += 1.0
        }
        lat[s].push((r - o.call_us) as f64 / 1000.0);
    }
    let pts = |v: &[f64]| {
        v.iter()
            .enumerate()
            .map(|(i, y)| (i as f64 + 0.5, *y))
            .collect()
    };
    let mut pct = |q: f64| -> Vec<(f64, f64)> {
        lat.iter_mut()
            .enumerate()
            .filter(|(_, v)| !v.is_empty())
            .map(|(i, v)| {
                v.sort_by(|a, b| a.total_cmp(b));
                let idx = ((v.len() - 1) as f64 * q).round() as usize;
                (i as f64 + 0.5, v[idx])
            })
            .collect()
    };
    let throughput = vec![
        Series {
            name: "writes/s".into(),
            points: pts(&writes),
        },
        Series {
            name: "reads/s".into(),
            points: pts(&reads),
        },
    ];
    let latency = vec![
        Series {
            name: "p50 ms".into(),
            points: pct(0.5),
        },
        Series {
            name: "p99 ms".into(),
            points: pct(0.99),
        },
    ];
    (throughput, latency)
}

/// Everything the report holds.
pub struct Report<'a> {
    pub ops: &'a [OpRecord],
    pub faults: &'a [FaultEvent],
    pub end_s: f64,
    pub verdict: &'a str,
    pub summary: &'a str,
    /// More files: (name, contents) — the coordination clients' records.
    pub extra: &'a [(&'a str, String)],
}

/// Writes the report directory.
pub fn write(dir: &Path, r: &Report<'_>) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut h = String::new();
    for o in r.ops {
        h.push_str(&op_json(o));
        h.push('\n');
    }
    std::fs::write(dir.join("history.jsonl"), h)?;
    let mut t = String::from("# start_s end_s kind leader_hit detail\n");
    for f in r.faults {
        let _ = writeln!(
            t,
            "{:.2} {:.2} {} {} {}",
            f.start_s, f.end_s, f.kind, f.hit_leader, f.detail
        );
    }
    std::fs::write(dir.join("faults.txt"), t)?;
    std::fs::write(dir.join("verdict.txt"), r.verdict)?;
    std::fs::write(dir.join("summary.txt"), r.summary)?;
    for (name, text) in r.extra {
        std::fs::write(dir.join(name), text)?;
    }
    let windows: Vec<Window> = r
        .faults
        .iter()
        .map(|f| Window {
            start_s: f.start_s,
            end_s: f.end_s,
            label: f.kind.to_string(),
        })
        .collect();
    let (tp, lat) = series(r.ops, r.end_s);
    let chart = |title, y, s: &[Series], log_y| {
        plot::render(&Chart {
            title,
            x_label: "seconds",
            y_label: y,
            series: s,
            windows: &windows,
            log_y,
        })
    };
    std::fs::write(
        dir.join("throughput.svg"),
        chart("Acknowledged operations per second", "ops/s", &tp, false),
    )?;
    std::fs::write(
        dir.join("latency.svg"),
        chart("Latency of acknowledged operations", "ms", &lat, true),
    )?;
    let links: String = r
        .extra
        .iter()
        .map(|(name, _)| format!(", <a href={name}>{name}</a>"))
        .collect();
    let html = format!(
        "<!doctype html><meta charset=utf-8><title>synod chaos report</title><h1>synod chaos</h1><pre>{}</pre><img src=throughput.svg><img src=latency.svg><h2>Faults</h2><pre>{}</pre><h2>Verdict</h2><pre>{}</pre><p>History: <a href=history.jsonl>history.jsonl</a>{links}</p>",
        esc(r.summary),
        esc(&std::fs::read_to_string(dir.join("faults.txt"))?),
        esc(r.verdict)
    );
    std::fs::write(dir.join("index.html"), html)
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
