//! TMR across a chain of stages with a voter in front of every replica (the notes'
//! A1–A3 → V1–V3 → B1–B3 → … figure): a failing voter corrupts only the replica behind
//! it, and the next stage's voters out-vote that replica. Computed step by step; the
//! stages are a pipeline inside one machine, so no network is involved.

use crate::report::Violation;
use crate::sim::Trace;
use crate::tmr::{compute, vote};
use seedrng::Rng;

/// Which elements of the chain value-fail: (stage, replica index, is_voter).
pub type FaultyElements = Vec<(usize, usize, bool)>;

/// Runs `steps` inputs through `stages` triplicated stages; faulty elements return a
/// wrong value half of the time. Returns (input, final voted output) per step.
pub fn execute(
    seed: u64,
    stages: usize,
    faulty: &FaultyElements,
    steps: u64,
    trace: &mut Trace,
) -> Vec<(u64, Option<u64>)> {
    let mut rng = Rng::new(seed);
    let mut out = Vec::new();
    let bad = |rng: &mut Rng, stage: usize, i: usize, voter: bool, v: u64| {
        let fails = faulty.contains(&(stage, i, voter)) && rng.chance(1, 2);
        if fails {
            v ^ rng.range(1, 1 << 16)
        } else {
            v
        }
    };
    for step in 1..=steps {
        let x = rng.range(0, 1_000_000);
        // Stage 0's replicas all read the input; each later replica reads its own voter.
        let mut outputs: Vec<u64> = (0..3)
            .map(|i| bad(&mut rng, 0, i, false, compute(x)))
            .collect();
        for stage in 1..stages {
            let voted: Vec<u64> = (0..3)
                .map(|i| bad(&mut rng, stage, i, true, vote(&outputs).unwrap_or(0)))
                .collect();
            outputs = (0..3)
                .map(|i| bad(&mut rng, stage, i, false, compute(voted[i])))
                .collect();
        }
        let result = vote(&outputs);
        trace.header(|| {
            format!("step {step}: input {x}, last stage {outputs:?}, client votes {result:?}")
        });
        out.push((x, result));
    }
    out
}

/// The stage function applied `stages` times: what a fault-free chain outputs.
pub fn golden(x: u64, stages: usize) -> u64 {
    (1..stages).fold(compute(x), |v, _| compute(v))
}

/// The chain's checker: every step's final vote is the fault-free result.
pub fn check_chain(results: &[(u64, Option<u64>)], stages: usize) -> Option<Violation> {
    let (i, (x, r)) = results
        .iter()
        .enumerate()
        .find(|(_, (x, r))| *r != Some(golden(*x, stages)))?;
    Some(Violation::new(
        "chain output correct",
        format!(
            "step {}: voted {r:?}, fault-free chain gives {}",
            i + 1,
            golden(*x, stages)
        ),
    ))
}

/// One fault per stage, a replica or a voter, drawn from `seed`.
pub fn one_per_stage(seed: u64, stages: usize) -> FaultyElements {
    let mut rng = Rng::new(seed ^ 0xC4A1);
    (0..stages)
        .map(|s| (s, rng.range(0, 3) as usize, s > 0 && rng.chance(1, 2)))
        .collect()
}

/// Two faulty voters in the same stage.
pub fn two_voters_in_one_stage(seed: u64, stages: usize) -> FaultyElements {
    let mut rng = Rng::new(seed ^ 0x2F2);
    let stage = rng.range(1, stages as u64) as usize;
    let spared = rng.range(0, 3) as usize;
    (0..3)
        .filter(|i| *i != spared)
        .map(|i| (stage, i, true))
        .collect()
}
