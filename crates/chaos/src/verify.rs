//! The checks run on a finished history: linearizability (per key, indeterminate
//! operations allowed), acknowledged writes lost, revisions going backwards.

use super::workload::OpRecord;
use check::{Budget, KvInput, KvModel, KvOutput, Operation, Verdict};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// The history the checker sees: definite failures dropped, timeouts indeterminate.
pub fn history(ops: &[OpRecord]) -> Vec<Operation<KvModel>> {
    ops.iter()
        .filter(|o| !o.definite_failure)
        .map(|o| Operation {
            client: o.client,
            input: o.input.clone(),
            call: o.call_us,
            ret: o.ret_us,
            output: o.output.clone(),
        })
        .collect()
}

/// Linearizability of the whole history.
pub fn linearizability(ops: &[OpRecord]) -> (&'static str, String) {
    let h = history(ops);
    match check::check(&KvModel, &h, Budget::default()) {
        Verdict::Linearizable => ("yes", String::new()),
        Verdict::Unknown { reason } => ("unknown", reason),
        Verdict::NotLinearizable(v) => {
            let mut text = format!(
                "key {:?}: after linearizing {} operations the register holds {:?}; none of these can go next:\n",
                v.key,
                v.linearized.len(),
                v.state
            );
            let named: std::collections::BTreeSet<usize> =
                v.stuck.iter().chain(v.deadline.iter()).copied().collect();
            for i in &named {
                if let Some(op) = v.operation(*i) {
                    let _ = writeln!(
                        text,
                        "  op#{i} client {} {:?} -> {:?} [{}µs .. {}]",
                        op.client,
                        op.input,
                        op.output,
                        op.call,
                        op.ret.map_or("?".to_string(), |r| format!("{r}µs"))
                    );
                }
            }
            ("no", text)
        }
    }
}

/// The value an acknowledged write left, if it wrote one.
fn written(o: &OpRecord) -> Option<u64> {
    match (&o.input, &o.output) {
        (KvInput::Put { value, .. }, Some(_)) => Some(*value),
        (KvInput::Cas { new, .. }, Some(KvOutput::Cas { ok: true })) => Some(*new),
        _ => None,
    }
}

fn writer_of<'a>(ops: &'a [OpRecord], key: &str, value: u64) -> Option<&'a OpRecord> {
    ops.iter().find(|o| {
        o.input.key() == key
            && match &o.input {
                KvInput::Put { value: v, .. } | KvInput::Cas { new: v, .. } => *v == value,
                KvInput::Get { .. } | KvInput::Delete { .. } => false,
            }
    })
}

/// Acknowledged writes the final state lost: a write `a` is lost when the final value of
/// its key was written by an operation that completed before `a` was even invoked (so
/// `a` must come later), or when the key reads as absent.
pub fn lost_acked(ops: &[OpRecord], finals: &BTreeMap<String, Option<u64>>) -> Vec<String> {
    let mut lost = Vec::new();
    for (key, fin) in finals {
        let acked = ops
            .iter()
            .filter(|o| o.input.key() == key && written(o).is_some());
        let bound = match fin {
            None => Some(u64::MAX),
            // An indeterminate writer may have taken effect at any time: it bounds nothing.
            Some(v) => writer_of(ops, key, *v).map(|w| w.ret_us.unwrap_or(u64::MAX)),
        };
        let Some(bound) = bound else {
            lost.push(format!("{key}: final value {fin:?} was never written"));
            continue;
        };
        for a in acked {
            if fin.is_none() || bound < a.call_us {
                lost.push(format!(
                    "{key}: {:?} acknowledged at {}µs, but the final value is {fin:?}",
                    a.input,
                    a.ret_us.unwrap_or(0)
                ));
            }
        }
    }
    lost
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(input: KvInput, call: u64, ret: Option<u64>, output: Option<KvOutput>) -> OpRecord {
        OpRecord {
            client: 1,
            member: 0,
            input,
            call_us: call,
            ret_us: ret,
            output,
            error: None,
            definite_failure: false,
            revision: 0,
        }
    }

    fn put(v: u64, call: u64, ret: u64) -> OpRecord {
        op(
            KvInput::Put {
                key: "k".into(),
                value: v,
            },
            call,
            Some(ret),
            Some(KvOutput::Put),
        )
    }

    #[test]
    fn a_write_overtaken_by_an_older_value_is_lost() {
        let ops = vec![put(1, 0, 10), put(2, 20, 30)];
        let fin = BTreeMap::from([("k".to_string(), Some(1))]);
        assert_eq!(
            lost_acked(&ops, &fin).len(),
            1,
            "value 2 was acknowledged after 1 finished"
        );
        let fin = BTreeMap::from([("k".to_string(), Some(2))]);
        assert!(lost_acked(&ops, &fin).is_empty());
        let fin = BTreeMap::from([("k".to_string(), None)]);
        assert_eq!(lost_acked(&ops, &fin).len(), 2);
        // A write whose fate was unknown may have landed after everything else.
        let mut late = put(3, 5, 6);
        late.ret_us = None;
        late.output = None;
        let ops = vec![put(1, 0, 10), put(2, 20, 30), late];
        let fin = BTreeMap::from([("k".to_string(), Some(3))]);
        assert!(lost_acked(&ops, &fin).is_empty());
        // Concurrent writes may land in either order.
        let ops = vec![put(1, 0, 30), put(2, 10, 20)];
        let fin = BTreeMap::from([("k".to_string(), Some(1))]);
        assert!(lost_acked(&ops, &fin).is_empty());
    }

    #[test]
    fn a_stale_read_is_not_linearizable() {
        let get = |v, call, ret| {
            op(
                KvInput::Get { key: "k".into() },
                call,
                Some(ret),
                Some(KvOutput::Get(v)),
            )
        };
        let ok = vec![put(1, 0, 10), get(Some(1), 20, 30)];
        assert_eq!(linearizability(&ok).0, "yes");
        let stale = vec![put(1, 0, 10), put(2, 20, 30), get(Some(1), 40, 50)];
        let (verdict, why) = linearizability(&stale);
        assert_eq!(verdict, "no");
        assert!(why.contains("Get"), "{why}");
    }
}
