//! Failure detection by probes (notes 000 and 003): a fixed timeout against the
//! φ-accrual detector, under probe-reply jitter and loss.
//!
//! Glossary: the *monitor* *probes* the monitored process every period; each *reply*
//! that arrives is evidence it is alive. A *fixed-timeout* detector *suspects* when no
//! reply came for T ticks. The *φ-accrual* detector keeps a window of reply
//! inter-arrival times and computes φ = -log10 P(a reply this late | alive) under a
//! normal fit; it suspects when φ exceeds a threshold, so it adapts to the jitter it
//! sees. *Completeness*: a crashed process is eventually suspected for good.
//! *Accuracy*: a live process is never suspected — impossible to guarantee without
//! bounds on delay (a fail-noisy system), which the counter-examples show.

use crate::report::{Expect, Figure, Report, Violation};
use crate::sim::{Event, Faults, Sim, Trace};
use crate::sweep::sweep;
use seedrng::Rng;
use std::collections::VecDeque;

/// The scenario's name.
pub const NAME: &str = "failure-detectors";
const SUMMARY: &str = "Probing with a fixed timeout against φ-accrual under jitter and loss: both complete, neither accurate; detection time against false-suspicion rate, one curve each.";
const PROBE_TICKS: u64 = 10;
const REGIME_TICKS: u64 = 1_000;
const WINDOW: usize = 60;

/// A detector's sans-IO core: feed it reply arrivals, ask it at any tick.
#[derive(Clone, Debug)]
pub enum Detector {
    /// Suspect after `timeout` ticks without a reply.
    Fixed {
        /// The timeout in ticks.
        timeout: u64,
        /// Tick of the last reply.
        last: u64,
        /// Planted bug: the detector also resets its clock when it sends a probe.
        reset_on_probe: bool,
    },
    /// Suspect when φ exceeds `threshold`.
    Phi {
        /// The φ threshold.
        threshold: f64,
        /// Tick of the last reply.
        last: u64,
        /// Recent inter-arrival times.
        intervals: VecDeque<f64>,
    },
}

impl Detector {
    /// A fixed-timeout detector.
    pub fn fixed(timeout: u64) -> Detector {
        Detector::Fixed {
            timeout,
            last: 0,
            reset_on_probe: false,
        }
    }

    /// A φ-accrual detector, primed with one period.
    pub fn phi(threshold: f64) -> Detector {
        Detector::Phi {
            threshold,
            last: 0,
            intervals: VecDeque::from([PROBE_TICKS as f64]),
        }
    }

    /// A reply arrived at `now`.
    pub fn on_reply(&mut self, now: u64) {
        match self {
            Detector::Fixed { last, .. } => *last = now,
            Detector::Phi {
                last, intervals, ..
            } => {
                if *last > 0 {
                    intervals.push_back((now - *last) as f64);
                    if intervals.len() > WINDOW {
                        intervals.pop_front();
                    }
                }
                *last = now;
            }
        }
    }

    /// A probe went out at `now`.
    pub fn on_probe(&mut self, now: u64) {
        if let Detector::Fixed {
            last,
            reset_on_probe: true,
            ..
        } = self
        {
            *last = now;
        }
    }

    /// Whether the detector suspects the process at `now`.
    pub fn suspects(&self, now: u64) -> bool {
        match self {
            Detector::Fixed { timeout, last, .. } => now.saturating_sub(*last) > *timeout,
            Detector::Phi {
                threshold,
                last,
                intervals,
            } => phi(intervals, now.saturating_sub(*last) as f64) > *threshold,
        }
    }
}

/// φ for `elapsed` ticks since the last reply, with the logistic approximation of the
/// normal CDF used by the φ-accrual paper's implementations.
pub fn phi(intervals: &VecDeque<f64>, elapsed: f64) -> f64 {
    let n = intervals.len().max(1) as f64;
    let mean = intervals.iter().sum::<f64>() / n;
    let var = intervals.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
    let sd = var.sqrt().max(2.0);
    let y = (elapsed - mean) / sd;
    let e = (-y * (1.5976 + 0.070566 * y * y)).exp();
    if elapsed > mean {
        -(e / (1.0 + e)).log10()
    } else {
        -(1.0 - 1.0 / (1.0 + e)).log10()
    }
}

/// Messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Msg {
    /// Are you alive?
    Probe(u64),
    /// Yes.
    Reply(u64),
}

/// What one run measured.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    /// When the process crashed.
    pub crash_tick: u64,
    /// Ticks at which a live process became suspected.
    pub false_suspicions: Vec<u64>,
    /// Ticks from the crash to the final suspicion, if the detector ended suspecting.
    pub detection_ticks: Option<u64>,
}

/// Jitter of a reply: calm and stormy regimes alternate every [`REGIME_TICKS`].
fn jitter(rng: &mut Rng, now: u64) -> u64 {
    let stormy = (now / REGIME_TICKS) % 2 == 1;
    let (spike_per_mille, mean) = if stormy { (300, 25.0) } else { (20, 8.0) };
    if !rng.chance(spike_per_mille, 1000) {
        return 0;
    }
    (-mean * (1.0 - rng.unit()).ln()) as u64
}

/// Monitor 0 probes process 1, which crashes in `[5000, 7000)`; loss 1%.
pub fn execute(seed: u64, mut detector: Detector, trace: &mut Trace) -> Outcome {
    let rng = Rng::new(seed);
    let mut jitter_rng = rng.fork(2);
    let crash_tick = 5_000 + rng.fork(3).range(0, 2_000);
    let mut sim: Sim<Msg> = Sim::new(rng.fork(1), Faults::lossy(10, (1, 3)), trace.is_on());
    let mut out = Outcome {
        crash_tick,
        ..Outcome::default()
    };
    sim.set_timer(0, 1, 0);
    sim.set_timer(0, 1, 1);
    sim.set_timer(2, crash_tick, 0);
    let mut seq = 0;
    let mut suspected = false;
    let mut last_suspicion = 0;
    while let Some(event) = sim.step(crash_tick + 600) {
        let now = sim.now();
        match event {
            Event::Timer { node: 2, .. } => sim.crash(1),
            Event::Timer { node: 0, tag: 0 } => {
                seq += 1;
                sim.send(0, 1, Msg::Probe(seq));
                detector.on_probe(now);
                sim.set_timer(0, PROBE_TICKS, 0);
            }
            Event::Timer { node: 0, .. } => {
                let s = detector.suspects(now);
                if s && !suspected {
                    last_suspicion = now;
                    if now < crash_tick {
                        out.false_suspicions.push(now);
                    }
                    sim.note(|| "SUSPECT".to_string());
                } else if !s && suspected {
                    sim.note(|| "TRUST".to_string());
                }
                suspected = s;
                sim.set_timer(0, 1, 1);
            }
            Event::Timer { node: 1, tag } => sim.send(1, 0, Msg::Reply(tag)),
            Event::Deliver {
                msg: Msg::Probe(s), ..
            } => {
                let j = jitter(&mut jitter_rng, now);
                sim.set_timer(1, j, s);
            }
            Event::Deliver {
                msg: Msg::Reply(_), ..
            } => detector.on_reply(now),
            Event::Timer { .. } => {}
        }
    }
    out.detection_ticks = suspected.then(|| last_suspicion.saturating_sub(crash_tick));
    let (f, d) = (out.false_suspicions.len(), out.detection_ticks);
    sim.note(|| {
        format!("crash at {crash_tick}, false suspicions {f}, detection after {d:?} ticks")
    });
    trace.append(&sim.take_trace());
    out
}

/// Completeness: the crashed process ends up suspected for good.
pub fn check_completeness(o: &Outcome) -> Option<Violation> {
    o.detection_ticks.is_none().then(|| {
        Violation::new(
            "completeness",
            format!("crashed at {} but trusted at the end", o.crash_tick),
        )
    })
}

/// Accuracy: a live process is never suspected.
pub fn check_accuracy(o: &Outcome) -> Option<Violation> {
    let t = o.false_suspicions.first()?;
    Some(Violation::new(
        "accuracy",
        format!(
            "live process suspected at tick {t} ({} times before its crash)",
            o.false_suspicions.len()
        ),
    ))
}

/// The scenario.
pub fn run(seed: u64, trace_on: bool) -> Report {
    let mut report = Report::new(NAME, SUMMARY, seed);
    let mut trace = Trace::new(trace_on);
    let mut quiet = Trace::new(false);
    type Case = (
        &'static str,
        Expect,
        u64,
        fn() -> Detector,
        fn(&Outcome) -> Option<Violation>,
    );
    let cases: [Case; 5] = [
        (
            "completeness: fixed 40-tick timeout suspects the crashed process for good",
            Expect::Holds,
            50,
            || Detector::fixed(40),
            check_completeness,
        ),
        (
            "completeness: φ-accrual (φ > 8) suspects the crashed process for good",
            Expect::Holds,
            50,
            || Detector::phi(8.0),
            check_completeness,
        ),
        (
            "accuracy broken by jitter: a fixed 15-tick timeout suspects a live process",
            Expect::Breaks,
            50,
            || Detector::fixed(15),
            check_accuracy,
        ),
        (
            "accuracy broken by jitter: φ-accrual (φ > 1) suspects a live process",
            Expect::Breaks,
            50,
            || Detector::phi(1.0),
            check_accuracy,
        ),
        (
            "planted bug: a detector that restarts its clock on every probe never suspects",
            Expect::Breaks,
            50,
            || Detector::Fixed {
                timeout: 40,
                last: 0,
                reset_on_probe: true,
            },
            check_completeness,
        ),
    ];
    for (claim, expect, count, make, check) in cases {
        let v = sweep(claim, expect, seed, count, |s| {
            check(&execute(s, make(), &mut quiet))
        });
        trace.header(|| format!("== {claim}: seed {}", v.seed));
        execute(v.seed, make(), &mut trace);
        report.verdicts.push(v);
    }
    report.figures.push(tradeoff_figure(seed));
    report.trace = trace.into_text();
    report
}

fn point(seed: u64, make: &dyn Fn() -> Detector) -> (f64, f64) {
    let runs = 4;
    let (mut det, mut fs, mut alive) = (0.0, 0.0, 0.0);
    for i in 0..runs {
        let o = execute(seed + i, make(), &mut Trace::new(false));
        det += o.detection_ticks.unwrap_or(600) as f64;
        fs += o.false_suspicions.len() as f64;
        alive += o.crash_tick as f64;
    }
    (det / runs as f64, (fs / alive * 1000.0).max(1e-3))
}

fn tradeoff_figure(seed: u64) -> Figure {
    let mut fig = Figure::new(
        "detection-vs-false-suspicion",
        "Probing under alternating calm and stormy jitter",
        "mean detection time after the crash (ticks)",
        "false suspicions per 1,000 ticks (0 drawn at 0.001)",
    );
    fig.log_y = true;
    let fixed: Vec<(f64, f64)> = [12u64, 15, 20, 25, 30, 40, 55, 75, 100, 140]
        .iter()
        .map(|t| point(seed, &|| Detector::fixed(*t)))
        .collect();
    let phis: Vec<(f64, f64)> = [0.5, 1.0, 2.0, 4.0, 8.0, 12.0, 16.0, 24.0, 32.0, 48.0]
        .iter()
        .map(|t| point(seed, &|| Detector::phi(*t)))
        .collect();
    fig.with_series("fixed timeout", fixed)
        .with_series("φ-accrual", phis)
}
