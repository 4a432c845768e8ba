//! Figures of a load run: the summary, its JSON and text forms, and the progress bar.

use crate::load::{Live, Outcome, Probe, Spec};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What one run measured, in the units it is reported in.
#[derive(Clone, Debug)]
pub struct Summary {
    pub workload: &'static str,
    pub clients: usize,
    pub conns: usize,
    /// The gRPC client the requests went through (`h2` or `tonic`).
    pub grpc_client: &'static str,
    /// In connection order (the leader's first).
    pub endpoints: Vec<String>,
    pub leader: Option<String>,
    pub rate: Option<u64>,
    pub seed: u64,
    pub elapsed_s: f64,
    pub ops: u64,
    pub errors: u64,
    pub cas_failed: u64,
    /// How far the highest Raft term moved during the run (elections).
    pub term_changes: u64,
    pub ops_per_s: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
    pub error_kinds: BTreeMap<String, u64>,
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

impl Summary {
    /// The figures of `o`, a run of `spec` against `endpoints` (in connection order).
    pub fn new(
        spec: &Spec,
        endpoints: &[String],
        probe: &Probe,
        term_changes: u64,
        o: &Outcome,
    ) -> Self {
        let h = &o.hist;
        let some = !h.is_empty();
        let q = |q: f64| {
            if some {
                ms(h.value_at_quantile(q))
            } else {
                0.0
            }
        };
        Summary {
            workload: spec.workload.name(),
            clients: spec.clients,
            conns: spec.conns,
            grpc_client: spec.client.name(),
            endpoints: endpoints.to_vec(),
            leader: probe.leader.clone(),
            rate: spec.rate,
            seed: spec.seed,
            elapsed_s: o.elapsed.as_secs_f64(),
            ops: o.ops,
            errors: o.errors,
            cas_failed: o.cas_failed,
            term_changes,
            ops_per_s: o.ops as f64 / o.elapsed.as_secs_f64().max(1e-9),
            p50_ms: q(0.5),
            p90_ms: q(0.9),
            p99_ms: q(0.99),
            p999_ms: q(0.999),
            max_ms: if some { ms(h.max()) } else { 0.0 },
            mean_ms: if some { h.mean() / 1000.0 } else { 0.0 },
            error_kinds: o.error_kinds.clone(),
        }
    }

    /// One JSON object.
    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "workload": self.workload,
            "clients": self.clients,
            "conns": self.conns,
            "grpc_client": self.grpc_client,
            "endpoints": self.endpoints,
            "leader": self.leader,
            "rate": self.rate,
            "seed": self.seed,
            "elapsed_s": self.elapsed_s,
            "ops": self.ops,
            "errors": self.errors,
            "cas_failed": self.cas_failed,
            "term_changes": self.term_changes,
            "ops_per_s": self.ops_per_s,
            "p50_ms": self.p50_ms,
            "p90_ms": self.p90_ms,
            "p99_ms": self.p99_ms,
            "p999_ms": self.p999_ms,
            "max_ms": self.max_ms,
            "mean_ms": self.mean_ms,
            "error_kinds": self.error_kinds,
        })
    }

    /// The human-readable report; the last line is `key=value` pairs.
    pub fn print_text(&self) {
        let rate = self
            .rate
            .map_or("closed loop".to_string(), |r| format!("open loop at {r}/s"));
        println!(
            "{}: {} clients over {} {} connections to {} ({}), {rate}, {:.2} s, seed {}",
            self.workload,
            self.clients,
            self.conns,
            self.grpc_client,
            self.endpoints.join(","),
            self.leader
                .as_ref()
                .map_or("no leader seen".to_string(), |l| format!("leader {l}")),
            self.elapsed_s,
            self.seed
        );
        println!(
            "latency ms: p50={:.3} p90={:.3} p99={:.3} p99.9={:.3} max={:.3} mean={:.3}",
            self.p50_ms, self.p90_ms, self.p99_ms, self.p999_ms, self.max_ms, self.mean_ms
        );
        if self.workload == "txn" {
            println!("compare-and-set: {} compares failed", self.cas_failed);
        }
        if self.term_changes > 0 {
            println!(
                "the Raft term moved by {} during the run",
                self.term_changes
            );
        }
        for (msg, n) in &self.error_kinds {
            println!("error x{n}: {msg}");
        }
        println!(
            "ops={} ops_per_s={:.0} errors={} p50_ms={:.3} p99_ms={:.3} p999_ms={:.3} max_ms={:.3}",
            self.ops,
            self.ops_per_s,
            self.errors,
            self.p50_ms,
            self.p99_ms,
            self.p999_ms,
            self.max_ms
        );
    }
}

/// A bar on stderr (hidden when stderr is not a terminal) kept current by a task.
pub struct Progress {
    bar: ProgressBar,
    task: tokio::task::JoinHandle<()>,
}

/// What the bar's position counts.
pub enum Measure {
    /// Milliseconds of a run of this length.
    Time(Duration),
    /// Operations out of this many.
    Ops(u64),
}

impl Progress {
    /// Starts a bar labelled `label` (call inside the runtime).
    pub fn start(label: String, measure: Measure, live: Arc<Live>) -> Progress {
        let len = match measure {
            Measure::Time(d) => d.as_millis() as u64,
            Measure::Ops(n) => n,
        };
        let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("{spinner} {bar:30} {elapsed_precise} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        let b = bar.clone();
        let started = Instant::now();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(200));
            loop {
                tick.tick().await;
                let ops = live.ops.load(Ordering::Relaxed);
                b.set_position(match measure {
                    Measure::Time(d) => started.elapsed().min(d).as_millis() as u64,
                    Measure::Ops(_) => ops,
                });
                let errors = live.errors.load(Ordering::Relaxed);
                b.set_message(format!("{label}: {ops} ops, {errors} errors"));
            }
        });
        Progress { bar, task }
    }

    /// Removes the bar.
    pub fn finish(self) {
        self.task.abort();
        self.bar.finish_and_clear();
    }
}

/// The median of `xs` (the mean of the middle two for an even count); 0 when empty.
pub fn median(mut xs: Vec<f64>) -> f64 {
    if xs.is_empty() {
        return 0.0;
    }
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::median;

    #[test]
    fn median_of_odd_even_and_empty() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(vec![]), 0.0);
    }
}
