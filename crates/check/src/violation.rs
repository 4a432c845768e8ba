//! Description of a linearizability violation.

use std::collections::BTreeMap;
use std::fmt;

use crate::search::Failure;
use crate::{Model, Operation};

/// How many operations of the linearizable prefix [`Violation`]'s `Display`
/// shows (the last ones, closest to the failure).
const PREFIX_SHOWN: usize = 8;

/// Why a partition (one key's sub-history) is not linearizable.
///
/// The search explores all orders; this reports its *deepest* dead end (the
/// one with the most completed operations linearized): the longest
/// linearizable prefix it found and the pending operations none of
/// which could be placed next. All operations are identified by their index
/// in the history slice given to [`crate::check`].
pub struct Violation<M: Model> {
    /// The partition key whose sub-history is not linearizable.
    pub key: M::Key,
    /// Longest linearizable prefix found, in linearization order.
    pub linearized: Vec<usize>,
    /// Model state after `linearized`.
    pub state: M::State,
    /// Operations with a known outcome that were pending (called, not yet
    /// linearized) at that point, none of which could be linearized next, in
    /// call order. (Pending indeterminate operations are not listed.)
    pub stuck: Vec<usize>,
    /// The completed operation whose return forced the search to give up at
    /// that point (it had to be linearized before anything returning later).
    pub deadline: Option<usize>,
    /// Copies of every operation referenced above, by history index.
    pub operations: BTreeMap<usize, Operation<M>>,
}

impl<M: Model> Violation<M> {
    pub(crate) fn new(key: M::Key, f: Failure<M::State>, history: &[Operation<M>]) -> Self {
        let mut operations = BTreeMap::new();
        for &i in f.prefix.iter().chain(&f.stuck).chain(&f.deadline) {
            if let Some(op) = history.get(i) {
                operations.insert(i, op.clone());
            }
        }
        Violation {
            key,
            linearized: f.prefix,
            state: f.state,
            stuck: f.stuck,
            deadline: f.deadline,
            operations,
        }
    }

    /// The operation with history index `index`, if referenced here.
    pub fn operation(&self, index: usize) -> Option<&Operation<M>> {
        self.operations.get(&index)
    }

    fn write_op(&self, f: &mut fmt::Formatter<'_>, index: usize) -> fmt::Result {
        match self.operations.get(&index) {
            Some(op) => writeln!(f, "    #{index} {op}"),
            None => writeln!(f, "    #{index} (unknown)"),
        }
    }
}

impl<M: Model> Clone for Violation<M> {
    fn clone(&self) -> Self {
        Violation {
            key: self.key.clone(),
            linearized: self.linearized.clone(),
            state: self.state.clone(),
            stuck: self.stuck.clone(),
            deadline: self.deadline,
            operations: self.operations.clone(),
        }
    }
}

impl<M: Model> fmt::Debug for Violation<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Violation")
            .field("key", &self.key)
            .field("linearized", &self.linearized)
            .field("state", &self.state)
            .field("stuck", &self.stuck)
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}

impl<M: Model> fmt::Display for Violation<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "history of key {:?} is not linearizable", self.key)?;
        let n = self.linearized.len();
        let skipped = n.saturating_sub(PREFIX_SHOWN);
        write!(f, "  longest linearizable prefix: {n} operation(s)")?;
        if skipped > 0 {
            write!(f, " (first {skipped} not shown)")?;
        }
        writeln!(f, ", ending in state {:?}", self.state)?;
        for &i in &self.linearized[skipped..] {
            self.write_op(f, i)?;
        }
        writeln!(
            f,
            "  none of these pending operations can be linearized next:"
        )?;
        for &i in &self.stuck {
            self.write_op(f, i)?;
        }
        if let Some(d) = self.deadline {
            writeln!(
                f,
                "  but this one must be linearized before anything later:"
            )?;
            self.write_op(f, d)?;
        }
        Ok(())
    }
}
