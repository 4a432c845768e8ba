//! Seed sweeps: run a checked scenario over consecutive seeds and turn the first
//! violation (or its absence) into a [`Verdict`].

use crate::report::{Expect, Report, Verdict, Violation};
use crate::sim::Trace;

/// One claim or counter-example of a scenario: what it says, what the notes expect,
/// how many seeds to sweep, and the run that checks one seed (tracing into the trace
/// it is given).
pub type Case = (
    &'static str,
    Expect,
    u64,
    fn(u64, &mut Trace) -> Option<Violation>,
);

/// Sweeps every case from `seed`, replays into `trace` the seed each one settled on
/// (the counter-example, or the last seed of a claim), and records the verdicts.
pub fn run_cases(report: &mut Report, trace: &mut Trace, seed: u64, cases: &[Case]) {
    let mut quiet = Trace::new(false);
    for &(claim, expect, count, f) in cases {
        let v = sweep(claim, expect, seed, count, |s| f(s, &mut quiet));
        trace.header(|| format!("== {claim}: seed {}", v.seed));
        f(v.seed, trace);
        report.verdicts.push(v);
    }
}

/// Runs `check` on seeds `from`, `from + 1`, … for at most `count` seeds and stops at
/// the first violation. For [`Expect::Holds`] the sweep is the evidence for the claim;
/// for [`Expect::Breaks`] it is the search for the counter-example, whose seed the
/// verdict records.
pub fn sweep(
    claim: &str,
    expect: Expect,
    from: u64,
    count: u64,
    mut check: impl FnMut(u64) -> Option<Violation>,
) -> Verdict {
    for i in 0..count {
        let seed = from.wrapping_add(i);
        if let Some(v) = check(seed) {
            return Verdict::new(claim, expect, seed, i + 1, Some(v));
        }
    }
    Verdict::new(claim, expect, from, count, None)
}

/// The fraction of `count` seeds from `from` on which `hit` is true.
pub fn fraction(from: u64, count: u64, mut hit: impl FnMut(u64) -> bool) -> f64 {
    let hits = (0..count).filter(|i| hit(from.wrapping_add(*i))).count();
    hits as f64 / count.max(1) as f64
}
