//! Shared helpers for the integration tests: history builders, a seeded
//! generator of linearizable histories, and a brute-force reference checker.
#![allow(dead_code)]

use std::collections::BTreeMap;

use check::{check, Budget, KvInput, KvModel, KvOutput, Model, Operation, Verdict, Violation};

pub type Op = Operation<KvModel>;

pub fn get(k: &str) -> KvInput {
    KvInput::Get { key: k.into() }
}

pub fn put(k: &str, value: u64) -> KvInput {
    KvInput::Put {
        key: k.into(),
        value,
    }
}

pub fn cas(k: &str, expected: Option<u64>, new: u64) -> KvInput {
    KvInput::Cas {
        key: k.into(),
        expected,
        new,
    }
}

/// A completed operation.
pub fn done(client: u64, input: KvInput, call: u64, ret: u64, output: KvOutput) -> Op {
    Operation {
        client,
        input,
        call,
        ret: Some(ret),
        output: Some(output),
    }
}

/// An indeterminate operation (no return, no output).
pub fn lost(client: u64, input: KvInput, call: u64) -> Op {
    Operation {
        client,
        input,
        call,
        ret: None,
        output: None,
    }
}

pub fn read(v: Option<u64>) -> KvOutput {
    KvOutput::Get(v)
}

pub const OK: KvOutput = KvOutput::Cas { ok: true };
pub const FAIL: KvOutput = KvOutput::Cas { ok: false };

/// Asserts `history` is accepted.
pub fn assert_ok(history: &[Op]) {
    match check(&KvModel, history, Budget::default()) {
        Verdict::Linearizable => {}
        other => panic!("expected Linearizable, got {other:?}\nhistory: {history:#?}"),
    }
}

/// Asserts `history` is rejected on `key`; returns the violation.
pub fn assert_bad(history: &[Op], key: &str) -> Violation<KvModel> {
    match check(&KvModel, history, Budget::default()) {
        Verdict::NotLinearizable(v) => {
            assert_eq!(v.key, key, "wrong key in {v}");
            v
        }
        other => panic!("expected NotLinearizable on {key:?}, got {other:?}"),
    }
}

/// SplitMix64: a tiny deterministic generator.
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform-ish in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// Shape of a generated history.
#[derive(Clone, Copy, Debug)]
pub struct GenConfig {
    pub ops: usize,
    pub keys: usize,
    pub clients: usize,
    /// Percentage of decisions that abandon a pending operation.
    pub indeterminate_pct: u64,
    /// Every write uses a fresh value (as a chaos lab would) instead of one
    /// of 1..=5 (which makes indeterminate writes indistinguishable).
    pub unique_values: bool,
}

pub fn random_input(rng: &mut SplitMix64, keys: usize, unique: Option<u64>) -> KvInput {
    let key = format!("k{}", rng.below(keys as u64));
    let (value, expected) = match unique {
        // Expect one of the last few values written (to any key).
        Some(n) => (
            n + 10,
            (rng.below(6) > 0).then(|| n + 10 - 1 - rng.below(4)),
        ),
        None => (
            1 + rng.below(5),
            (rng.below(6) > 0).then(|| 1 + rng.below(5)),
        ),
    };
    match rng.below(11) {
        0..=3 => get(&key),
        4..=6 => put(&key, value),
        7 => KvInput::Delete { key },
        _ => cas(&key, expected, value),
    }
}

/// Applies `input` atomically to a real store and returns the response.
fn apply(store: &mut BTreeMap<String, u64>, input: &KvInput) -> KvOutput {
    match input {
        KvInput::Get { key } => KvOutput::Get(store.get(key).copied()),
        KvInput::Put { key, value } => {
            store.insert(key.clone(), *value);
            KvOutput::Put
        }
        KvInput::Cas { key, expected, new } => {
            let ok = store.get(key).copied() == *expected;
            if ok {
                store.insert(key.clone(), *new);
            }
            KvOutput::Cas { ok }
        }
        KvInput::Delete { key } => KvOutput::Delete {
            deleted: store.remove(key).is_some(),
        },
    }
}

/// A pending request of a simulated client.
struct Pending {
    op: usize,
    output: Option<KvOutput>,
}

/// Simulates clients of a real (atomic) store with random interleavings;
/// the resulting history is linearizable by construction. Abandoned
/// requests become indeterminate and may still take effect later.
pub fn generate(seed: u64, cfg: GenConfig) -> Vec<Op> {
    let mut rng = SplitMix64(seed);
    let mut store = BTreeMap::new();
    let mut history: Vec<Op> = Vec::with_capacity(cfg.ops);
    let mut clients: Vec<Option<Pending>> = (0..cfg.clients).map(|_| None).collect();
    let mut zombies: Vec<usize> = Vec::new();
    let mut time = 0u64;
    while history.len() < cfg.ops || clients.iter().any(Option::is_some) {
        time += rng.below(3);
        if !zombies.is_empty() && rng.chance(5) {
            let z = zombies.swap_remove(rng.below(zombies.len() as u64) as usize);
            apply(&mut store, &history[z].input);
        }
        let c = rng.below(cfg.clients as u64) as usize;
        match clients[c].take() {
            None if history.len() < cfg.ops => {
                let unique = cfg.unique_values.then_some(history.len() as u64);
                let input = random_input(&mut rng, cfg.keys, unique);
                history.push(lost(c as u64, input, time));
                clients[c] = Some(Pending {
                    op: history.len() - 1,
                    output: None,
                });
            }
            None => {}
            Some(p) if rng.chance(cfg.indeterminate_pct) => {
                // Abandoned before taking effect: it may still do so later.
                zombies.extend((p.output.is_none() && rng.chance(50)).then_some(p.op));
            }
            Some(Pending { op, output: None }) => {
                let out = apply(&mut store, &history[op].input);
                clients[c] = Some(Pending {
                    op,
                    output: Some(out),
                });
            }
            Some(Pending {
                op,
                output: Some(out),
            }) => {
                history[op].ret = Some(time);
                history[op].output = Some(out);
            }
        }
    }
    history
}

/// Reference checker: tries every order (and every subset of the
/// indeterminate operations) per key, without memoisation.
pub fn brute_force(history: &[Op]) -> bool {
    let mut parts: BTreeMap<String, Vec<&Op>> = BTreeMap::new();
    for op in history {
        parts.entry(op.input.key().to_owned()).or_default().push(op);
    }
    parts
        .values()
        .all(|ops| brute_dfs(ops, &mut vec![false; ops.len()], None))
}

fn brute_dfs(ops: &[&Op], placed: &mut Vec<bool>, state: Option<u64>) -> bool {
    let required_left = ops
        .iter()
        .zip(placed.iter())
        .any(|(o, &p)| !p && !o.is_indeterminate());
    if !required_left {
        return true;
    }
    for x in 0..ops.len() {
        if placed[x] {
            continue;
        }
        let blocked = (0..ops.len())
            .any(|y| y != x && !placed[y] && ops[y].ret.is_some_and(|r| r < ops[x].call));
        if blocked {
            continue;
        }
        let nexts = match &ops[x].output {
            Some(out) => KvModel
                .step(&state, &ops[x].input, out)
                .into_iter()
                .collect(),
            None => KvModel.step_unknown(&state, &ops[x].input),
        };
        for next in nexts {
            placed[x] = true;
            let ok = brute_dfs(ops, placed, next);
            placed[x] = false;
            if ok {
                return true;
            }
        }
    }
    false
}
