//! A key-value store of independent registers, partitioned per key.

use crate::Model;

/// A request to the key-value store.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum KvInput {
    /// Read the value of `key`.
    Get {
        /// The key read.
        key: String,
    },
    /// Overwrite `key` with `value`.
    Put {
        /// The key written.
        key: String,
        /// The value written.
        value: u64,
    },
    /// Set `key` to `new` iff its current value equals `expected`
    /// (`None` = absent).
    Cas {
        /// The key updated.
        key: String,
        /// The value required for success (`None` = absent).
        expected: Option<u64>,
        /// The value written on success.
        new: u64,
    },
    /// Remove `key`.
    Delete {
        /// The key removed.
        key: String,
    },
}

impl KvInput {
    /// The key this request addresses.
    pub fn key(&self) -> &str {
        match self {
            KvInput::Get { key }
            | KvInput::Put { key, .. }
            | KvInput::Cas { key, .. }
            | KvInput::Delete { key } => key,
        }
    }
}

/// A response from the key-value store.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum KvOutput {
    /// The value read (`None` = absent).
    Get(Option<u64>),
    /// The write was applied.
    Put,
    /// Whether the compare-and-set succeeded.
    Cas {
        /// `true` iff the value was swapped.
        ok: bool,
    },
    /// Whether the delete removed a value.
    Delete {
        /// `true` iff the key held a value.
        deleted: bool,
    },
}

/// Model of a map of independent registers: each key is its own partition,
/// with state `Option<u64>` (`None` = absent). A CAS succeeds iff the current
/// value equals `expected`. A response of the wrong kind is never legal.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KvModel;

impl Model for KvModel {
    type State = Option<u64>;
    type Input = KvInput;
    type Output = KvOutput;
    type Key = String;

    fn init(&self) -> Option<u64> {
        None
    }

    fn step(&self, state: &Option<u64>, input: &KvInput, output: &KvOutput) -> Option<Option<u64>> {
        match (input, output) {
            (KvInput::Get { .. }, KvOutput::Get(v)) => (v == state).then_some(*state),
            (KvInput::Put { value, .. }, KvOutput::Put) => Some(Some(*value)),
            (KvInput::Cas { expected, new, .. }, KvOutput::Cas { ok }) => {
                match (*ok, state == expected) {
                    (true, true) => Some(Some(*new)),
                    (false, false) => Some(*state),
                    _ => None,
                }
            }
            (KvInput::Delete { .. }, KvOutput::Delete { deleted }) => {
                (*deleted == state.is_some()).then_some(None)
            }
            _ => None,
        }
    }

    fn step_unknown(&self, state: &Option<u64>, input: &KvInput) -> Vec<Option<u64>> {
        match input {
            KvInput::Get { .. } => vec![*state],
            KvInput::Put { value, .. } => vec![Some(*value)],
            KvInput::Cas { expected, new, .. } if state == expected => vec![Some(*new)],
            KvInput::Cas { .. } => vec![*state],
            KvInput::Delete { .. } => vec![None],
        }
    }

    fn key(&self, input: &KvInput) -> String {
        input.key().to_owned()
    }

    fn is_read_only(&self, input: &KvInput) -> bool {
        matches!(input, KvInput::Get { .. })
    }

    fn same_input(&self, a: &KvInput, b: &KvInput) -> bool {
        a == b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(k: &str) -> KvInput {
        KvInput::Get { key: k.into() }
    }

    #[test]
    fn step_semantics() {
        let m = KvModel;
        assert_eq!(m.step(&None, &get("a"), &KvOutput::Get(None)), Some(None));
        assert_eq!(m.step(&Some(1), &get("a"), &KvOutput::Get(None)), None);
        let put = KvInput::Put {
            key: "a".into(),
            value: 3,
        };
        assert_eq!(m.step(&None, &put, &KvOutput::Put), Some(Some(3)));
        assert_eq!(m.step(&None, &put, &KvOutput::Get(None)), None);
        let cas = KvInput::Cas {
            key: "a".into(),
            expected: Some(3),
            new: 4,
        };
        assert_eq!(
            m.step(&Some(3), &cas, &KvOutput::Cas { ok: true }),
            Some(Some(4))
        );
        assert_eq!(m.step(&Some(3), &cas, &KvOutput::Cas { ok: false }), None);
        assert_eq!(
            m.step(&None, &cas, &KvOutput::Cas { ok: false }),
            Some(None)
        );
        assert_eq!(m.step(&None, &cas, &KvOutput::Cas { ok: true }), None);
        assert_eq!(m.step_unknown(&Some(3), &cas), vec![Some(4)]);
        assert_eq!(m.step_unknown(&Some(2), &cas), vec![Some(2)]);
        assert_eq!(m.key(&cas), "a");
        assert!(m.is_read_only(&get("b")) && !m.is_read_only(&put));
        let del = KvInput::Delete { key: "a".into() };
        let deleted = |d| KvOutput::Delete { deleted: d };
        assert_eq!(m.step(&Some(3), &del, &deleted(true)), Some(None));
        assert_eq!(m.step(&Some(3), &del, &deleted(false)), None);
        assert_eq!(m.step(&None, &del, &deleted(false)), Some(None));
        assert_eq!(m.step(&None, &del, &deleted(true)), None);
        assert_eq!(m.step_unknown(&Some(3), &del), vec![None]);
    }
}
