//! Randomized tests: generated linearizable histories, mutations of them,
//! a brute-force cross-check on small arbitrary histories, and performance.

mod common;

use std::time::Instant;

use check::{check, Budget, KvInput, KvModel, KvOutput, Operation, Verdict};
use common::*;

const NEVER_WRITTEN: u64 = 1_000_000;

/// Index of a completed read in `h`, chosen with `rng`, if any.
fn pick_read(h: &[Op], rng: &mut SplitMix64) -> Option<usize> {
    let reads: Vec<usize> = (0..h.len())
        .filter(|&i| matches!(h[i].input, KvInput::Get { .. }) && h[i].output.is_some())
        .collect();
    (!reads.is_empty()).then(|| reads[rng.below(reads.len() as u64) as usize])
}

#[test]
fn generated_histories_accepted_and_mutations_rejected() {
    let mut mutated = 0;
    for seed in 0..300u64 {
        let mut rng = SplitMix64(seed ^ 0xABCD);
        let cfg = GenConfig {
            ops: 20 + rng.below(150) as usize,
            keys: 1 + rng.below(3) as usize,
            clients: 1 + rng.below(6) as usize,
            indeterminate_pct: rng.below(12),
            unique_values: seed % 2 == 0,
        };
        let mut h = generate(seed, cfg);
        match check(&KvModel, &h, Budget::default()) {
            Verdict::Linearizable => {}
            other => panic!("seed {seed} {cfg:?}: generated history rejected: {other:?}"),
        }
        let Some(r) = pick_read(&h, &mut rng) else {
            continue;
        };
        h[r].output = Some(KvOutput::Get(Some(NEVER_WRITTEN)));
        let key = h[r].input.key().to_owned();
        let v = assert_bad(&h, &key);
        assert!(v.stuck.contains(&r), "seed {seed}: {v}");
        mutated += 1;
    }
    assert!(mutated > 250);
}

/// A small arbitrary (often non-linearizable) history.
fn arbitrary_history(rng: &mut SplitMix64) -> Vec<Op> {
    let n = 1 + rng.below(7) as usize;
    (0..n)
        .map(|i| {
            let key = if rng.chance(70) { "a" } else { "b" };
            let v = 1 + rng.below(3);
            let maybe = |rng: &mut SplitMix64| (rng.below(4) > 0).then(|| 1 + rng.below(3));
            let (input, output) = match rng.below(3) {
                0 => (get(key), KvOutput::Get(maybe(rng))),
                1 => (put(key, v), KvOutput::Put),
                _ => (
                    cas(key, maybe(rng), v),
                    KvOutput::Cas { ok: rng.chance(50) },
                ),
            };
            let call = rng.below(12);
            let ret = call + rng.below(6);
            let mut op = Operation {
                client: i as u64,
                input,
                call,
                ret: Some(ret),
                output: Some(output),
            };
            match rng.below(100) {
                0..=14 => (op.ret, op.output) = (None, None),
                15..=17 => op.output = None,
                18..=19 => op.ret = None,
                _ => {}
            }
            op
        })
        .collect()
}

#[test]
fn agrees_with_brute_force() {
    let mut rng = SplitMix64(7);
    let (mut yes, mut no) = (0, 0);
    for round in 0..4000 {
        let h = arbitrary_history(&mut rng);
        let expected = brute_force(&h);
        let got = check(&KvModel, &h, Budget::default());
        match (&got, expected) {
            (Verdict::Linearizable, true) => yes += 1,
            (Verdict::NotLinearizable(_), false) => no += 1,
            _ => panic!("round {round}: brute force says {expected}, checker {got:?}\n{h:#?}"),
        }
    }
    // Make sure both outcomes were exercised substantially.
    assert!(yes > 400 && no > 400, "yes {yes} no {no}");
}

#[test]
fn agrees_with_brute_force_on_generated_prefixes() {
    // Small generated histories (linearizable) with one random output flipped.
    for seed in 0..1500u64 {
        let mut rng = SplitMix64(seed);
        let cfg = GenConfig {
            ops: 7,
            keys: 1,
            clients: 4,
            indeterminate_pct: 10,
            unique_values: false,
        };
        let mut h = generate(seed, cfg);
        let i = rng.below(h.len() as u64) as usize;
        if h[i].output.is_some() {
            h[i].output = Some(match h[i].output.take() {
                Some(KvOutput::Get(_)) => {
                    KvOutput::Get((rng.below(3) > 0).then(|| 1 + rng.below(5)))
                }
                Some(KvOutput::Cas { ok }) => KvOutput::Cas { ok: !ok },
                other => other.unwrap_or(KvOutput::Put),
            });
        }
        let got = check(&KvModel, &h, Budget::default()).is_linearizable();
        assert_eq!(got, brute_force(&h), "seed {seed}: {h:#?}");
    }
}

fn perf_history() -> Vec<Op> {
    let cfg = GenConfig {
        ops: 5000,
        keys: 5,
        clients: 5,
        indeterminate_pct: 3,
        unique_values: true,
    };
    generate(42, cfg)
}

#[test]
fn performance_5000_ops_accepted() {
    let h = perf_history();
    assert_eq!(h.len(), 5000);
    let start = Instant::now();
    let verdict = check(&KvModel, &h, Budget::default());
    eprintln!(
        "5000 ops, 5 keys, 5 clients: {verdict:?} in {:?}",
        start.elapsed()
    );
    assert!(verdict.is_linearizable(), "{verdict:?}");
}

#[test]
fn performance_5000_ops_rejected() {
    let mut h = perf_history();
    // Corrupt a read late in the history: the search must exhaust the
    // configurations before it.
    let r = (0..h.len())
        .rev()
        .find(|&i| matches!(h[i].input, KvInput::Get { .. }) && h[i].output.is_some())
        .expect("a read");
    h[r].output = Some(KvOutput::Get(Some(NEVER_WRITTEN)));
    let start = Instant::now();
    let verdict = check(&KvModel, &h, Budget::default());
    eprintln!("5000 ops, corrupted read #{r}: in {:?}", start.elapsed());
    let v = verdict.violation().expect("rejected");
    assert_eq!(v.key, h[r].input.key());
    assert!(v.stuck.contains(&r));
}

#[test]
fn small_budget_gives_unknown() {
    let h = perf_history();
    match check(&KvModel, &h, Budget { max_steps: 100 }) {
        Verdict::Unknown { reason } => assert!(reason.contains("budget"), "{reason}"),
        other => panic!("expected Unknown, got {other:?}"),
    }
}
