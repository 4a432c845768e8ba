//! Checkpointing and rollback recovery (notes 000): independent checkpoints and the
//! domino effect, lost messages, the rollback livelock, synchronous coordinated
//! checkpointing, the Chandy–Lamport snapshot, and the cost of the checkpoint interval.
//!
//! Glossary: a *checkpoint* R_ij is process i's j-th saved state (R_i1 the initial one);
//! a *global state* or *cut* picks one point per process; a message received inside the
//! cut but sent outside it is an *orphan* (the cut is then inconsistent); one sent
//! inside and received outside is *lost* unless logged or recorded as in transit. The
//! *recovery line* is the latest consistent cut of checkpoints after a failure; with
//! independent checkpoints finding it can cascade back to the start (the *domino
//! effect*). *Tentative* and *permanent* checkpoints are the two phases of the
//! synchronous algorithm; a *marker* delimits channel recording in Chandy–Lamport.

pub mod coordinated;
pub mod cut;
pub mod domino;
pub mod snapshot;

use crate::report::{Expect, Figure, Report, Verdict, Violation};
use crate::sim::Trace;
use crate::sweep::sweep;
use cut::{check_no_orphans, lost_by_rollback, recovery_line};
use seedrng::Rng;

/// The scenario's name.
pub const NAME: &str = "checkpointing";
const SUMMARY: &str = "Independent checkpoints roll back to the start (domino effect), lose messages and can livelock; synchronous coordinated checkpointing and the Chandy–Lamport snapshot give orphan-free recovery lines; checkpoint overhead against recovery cost as the interval varies.";
const LIVELOCK_BOUND: u32 = 50;

/// Lost messages after a rollback: messages recorded as sent whose receipt the rollback
/// undid (in-transit messages at the end of the run do not count).
pub fn check_no_lost(h: &cut::Histories, c: &cut::Cut) -> Option<Violation> {
    let (id, p, q) = *lost_by_rollback(h, c).first()?;
    Some(Violation::new(
        "no lost messages",
        format!(
            "m{id} from P{} to P{} is sent in the recovered state, its receipt undone",
            p + 1,
            q + 1
        ),
    ))
}

fn notes_example_verdicts(report: &mut Report, trace: &mut Trace) {
    let h = domino::notes_example();
    for failed in 0..3 {
        let (_, _, steps) = recovery_line(&h, &[failed]);
        report
            .notes
            .push(format!("notes' example: {}", steps.join("; ")));
        trace.header(|| {
            format!(
                "notes' example, P{} fails: {}",
                failed + 1,
                steps.join("; ")
            )
        });
    }
    let (c, restore, _) = recovery_line(&h, &[2]);
    report.verdicts.push(Verdict::new(
        "notes' P1/P2/P3 example: P3's failure cascades every process back to its initial checkpoint",
        Expect::Breaks,
        0,
        1,
        domino::check_no_domino(&h, &restore),
    ));
    let (c2, _, _) = recovery_line(&h, &[1]);
    report.verdicts.push(Verdict::new(
        "the recovery line of every failure in the example has no orphans",
        Expect::Holds,
        0,
        3,
        check_no_orphans(&h, &c).or_else(|| check_no_orphans(&h, &c2)),
    ));
}

/// The scenario.
pub fn run(seed: u64, trace_on: bool) -> Report {
    let mut report = Report::new(NAME, SUMMARY, seed);
    let mut trace = Trace::new(trace_on);
    let mut quiet = Trace::new(false);
    notes_example_verdicts(&mut report, &mut trace);
    type Case = (
        &'static str,
        Expect,
        u64,
        fn(u64, &mut Trace) -> Option<Violation>,
    );
    let cases: [Case; 8] = [
        ("independent checkpoints, random traffic: one failure rolls everyone back to the start", Expect::Breaks, 2_000, domino::domino_trial),
        ("independent checkpoints: the recovered state loses a message sent before the failure", Expect::Breaks, 200, |s, t| {
            let h = domino::random_histories(s, 3, 40, t);
            let (c, _, _) = recovery_line(&h, &[1]);
            check_no_lost(&h, &c)
        }),
        ("independent rollback with pre-rollback messages in transit: the rollback livelock", Expect::Breaks, 200, |s, t| {
            domino::check_rollback_terminates(domino::livelock_rollbacks(s, false, LIVELOCK_BOUND, t), LIVELOCK_BOUND)
        }),
        ("coordinated (2PC-based) rollback discards old-epoch messages and ends", Expect::Holds, 200, |s, t| {
            domino::check_rollback_terminates(domino::livelock_rollbacks(s, true, LIVELOCK_BOUND, t), 3)
        }),
        ("synchronous coordinated checkpointing: every recovered global state is orphan-free", Expect::Holds, 300, |s, t| {
            let o = coordinated::execute(s, false, t);
            check_no_orphans(&o.histories, &o.cut)
        }),
        ("planted bug: sending between tentative and permanent checkpoints makes an orphan", Expect::Breaks, 2_000, |s, t| {
            let o = coordinated::execute(s, true, t);
            check_no_orphans(&o.histories, &o.cut)
        }),
        ("Chandy–Lamport over FIFO channels: consistent cut, exact channel states, money conserved", Expect::Holds, 300, |s, t| {
            snapshot::check_snapshot(&snapshot::execute(s, true, t))
        }),
        ("Chandy–Lamport over non-FIFO channels: a marker overtakes a transfer, the snapshot is wrong", Expect::Breaks, 2_000, |s, t| {
            snapshot::check_snapshot(&snapshot::execute(s, false, t))
        }),
    ];
    for (claim, expect, count, f) in cases {
        let v = sweep(claim, expect, seed, count, |s| f(s, &mut quiet));
        trace.header(|| format!("== {claim}: seed {}", v.seed));
        f(v.seed, &mut trace);
        report.verdicts.push(v);
    }
    report.figures.push(interval_figure(seed));
    report.notes.push("Young's approximation of the best interval: sqrt(2 x checkpoint cost x MTBF) = sqrt(2 x 20 x 2000) ~ 283 ticks".into());
    report.trace = trace.into_text();
    report
}

const WORK_TICKS: f64 = 10_000.0;
const CKPT_COST: f64 = 20.0;
const RESTART_COST: f64 = 10.0;
const MTBF: f64 = 2_000.0;

/// (checkpoint overhead, recovery cost, total) as fractions of the useful work, for one
/// job with checkpoints every `interval` ticks of work and exponential failures.
fn job_costs(rng: &mut Rng, interval: f64) -> (f64, f64, f64) {
    let next_failure = |rng: &mut Rng| -MTBF * (1.0 - rng.unit()).ln();
    let (mut progress, mut time, mut ckpts, mut wasted) = (0.0, 0.0, 0.0, 0.0);
    let mut until_failure = next_failure(rng);
    while progress < WORK_TICKS {
        let work = interval.min(WORK_TICKS - progress);
        let last = progress + work >= WORK_TICKS;
        let need = work + if last { 0.0 } else { CKPT_COST };
        if until_failure >= need {
            time += need;
            until_failure -= need;
            progress += work;
            ckpts += f64::from(u8::from(!last));
        } else {
            time += until_failure + RESTART_COST;
            wasted += until_failure + RESTART_COST;
            until_failure = next_failure(rng);
        }
    }
    (
        ckpts * CKPT_COST / WORK_TICKS,
        wasted / WORK_TICKS,
        time / WORK_TICKS - 1.0,
    )
}

fn interval_figure(seed: u64) -> Figure {
    let mut rng = Rng::new(seed ^ 0x1A7);
    let mut fig = Figure::new(
        "cost-vs-interval",
        "Checkpoint overhead against recovery cost (cost 20, MTBF 2000 ticks)",
        "checkpoint interval (ticks of work)",
        "extra time / useful work",
    );
    fig.log_x = true;
    let (mut over, mut rec, mut total) = (Vec::new(), Vec::new(), Vec::new());
    for interval in [
        25.0, 50.0, 100.0, 200.0, 283.0, 400.0, 800.0, 1600.0, 3200.0,
    ] {
        let runs = 200;
        let (mut a, mut b, mut c) = (0.0, 0.0, 0.0);
        for _ in 0..runs {
            let (x, y, z) = job_costs(&mut rng, interval);
            (a, b, c) = (a + x, b + y, c + z);
        }
        over.push((interval, a / f64::from(runs)));
        rec.push((interval, b / f64::from(runs)));
        total.push((interval, c / f64::from(runs)));
    }
    fig.with_series("checkpoint overhead", over)
        .with_series("recovery cost", rec)
        .with_series("total", total)
}
