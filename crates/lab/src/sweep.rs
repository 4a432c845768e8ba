//! Seed sweeps: run a checked scenario over consecutive seeds and turn the first
//! violation (or its absence) into a [`Verdict`].

use crate::report::{Expect, Verdict, Violation};

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
