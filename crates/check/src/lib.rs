//! Linearizability checking for histories of client operations.
//!
//! A *history* is a list of [`Operation`]s, each with an invocation time
//! (`call`) and, if the client saw it finish, a completion time (`ret`) and an
//! output. The history is *linearizable* with respect to a sequential
//! specification (a [`Model`]) if every operation can be given a single
//! instant between its call and its return such that executing the operations
//! one at a time, in the order of those instants, on the model produces
//! exactly the recorded outputs.
//!
//! [`check`] decides this with the Wing–Gong search as refined by Lowe (the
//! approach used by Porcupine and Knossos):
//!
//! * The history is split by [`Model::key`] into independent sub-histories
//!   (P-compositionality); each is checked on its own, in key order.
//! * Within a sub-history, call and return events are sorted by time into an
//!   entry list. The search repeatedly linearizes a pending operation whose
//!   call precedes the first return still in the list, and backtracks (with
//!   an undo stack) when it reaches a return whose operation could not be
//!   placed. Pairs of (set of linearized operations, model state) already seen
//!   are memoised so that no configuration is explored twice.
//! * **Time ties**: intervals are *closed*. An operation returning at `t` and
//!   another invoked at `t` are treated as concurrent (calls sort before
//!   returns at equal times), so either order is allowed.
//! * **Indeterminate operations** (`ret == None`, `output == None`, e.g. a
//!   timed-out request) may have taken effect at any instant after their call,
//!   or never. They have no return event, so the search is never forced to
//!   place them; it succeeds as soon as every completed operation is placed.
//!   Indeterminate operations that cannot change the state (see
//!   [`Model::is_read_only`]) are dropped before the search. To keep the
//!   search tractable, completed operations are tried before indeterminate
//!   ones, a configuration is skipped if one with the same completed set and
//!   state but *fewer* indeterminate operations used was already explored,
//!   and symmetric choices among indeterminate operations are skipped (see
//!   [`Model::same_input`]). Many indistinguishable indeterminate writes can
//!   still make a failing search expensive; the [`Budget`] bounds it.
//! * An operation with a return time but no output is treated as having taken
//!   effect (before `ret`) with an unknown output ([`Model::step_unknown`]).
//!
//! The checker is deterministic (no clocks, no randomness, no hash-order
//! dependence in its results) and never panics on odd input: a history with
//! `ret < call` yields [`Verdict::Unknown`], and a search exceeding the
//! [`Budget`] yields [`Verdict::Unknown`] too.
//!
//! # Example
//!
//! ```
//! use check::{check, Budget, KvInput, KvModel, KvOutput, Recorder, Verdict};
//!
//! let mut rec = Recorder::<KvModel>::new();
//! let w = rec.invoke(1, KvInput::Put { key: "x".into(), value: 7 }, 0);
//! let r = rec.invoke(2, KvInput::Get { key: "x".into() }, 5);
//! rec.complete(w, KvOutput::Put, 10); // the read overlaps the write...
//! rec.complete(r, KvOutput::Get(Some(7)), 12); // ...so it may see it.
//! assert!(check(&KvModel, &rec.history(), Budget::default()).is_linearizable());
//!
//! // A read that starts after the write finished must not see the old value.
//! let r2 = rec.invoke(2, KvInput::Get { key: "x".into() }, 20);
//! rec.complete(r2, KvOutput::Get(None), 25);
//! match check(&KvModel, &rec.into_history(), Budget::default()) {
//!     Verdict::NotLinearizable(v) => {
//!         assert_eq!(v.key, "x");
//!         println!("{v}");
//!     }
//!     other => panic!("expected a violation, got {other:?}"),
//! }
//! ```
#![deny(missing_docs)]

mod entries;
mod kv;
mod recorder;
mod search;
mod violation;

use std::collections::BTreeMap;
use std::fmt;

pub use kv::{KvInput, KvModel, KvOutput};
pub use recorder::{OpId, Recorder};
pub use violation::Violation;

/// A sequential specification. Implementations must be deterministic.
///
/// The state is the state of *one partition* (one key): [`Model::init`] is
/// the initial state of every partition.
pub trait Model {
    /// State of one partition.
    type State: Clone + Eq + std::hash::Hash + std::fmt::Debug;
    /// An operation's input (request).
    type Input: Clone + std::fmt::Debug;
    /// An operation's output (response).
    type Output: Clone + std::fmt::Debug + PartialEq;
    /// Partition key (P-compositionality).
    type Key: Clone + Ord + std::fmt::Debug;

    /// Initial state of each partition.
    fn init(&self) -> Self::State;

    /// Applies `input` to `state`; returns the new state if `output` is a
    /// legal result, `None` if not.
    fn step(
        &self,
        state: &Self::State,
        input: &Self::Input,
        output: &Self::Output,
    ) -> Option<Self::State>;

    /// Applies an operation whose output is unknown (indeterminate); returns
    /// every possible next state (for a write: the written state; reads:
    /// unchanged).
    fn step_unknown(&self, state: &Self::State, input: &Self::Input) -> Vec<Self::State>;

    /// The partition an input belongs to.
    fn key(&self, input: &Self::Input) -> Self::Key;

    /// Whether `input` can never change the state (a pure read). Operations
    /// with unknown output and a read-only input are dropped before the
    /// search. The default, `false`, is always safe.
    fn is_read_only(&self, input: &Self::Input) -> bool {
        let _ = input;
        false
    }

    /// Whether two inputs are interchangeable: the same effect and the same
    /// legal outputs from every state (typically `a == b`). Used only to
    /// avoid exploring symmetric choices among indeterminate operations;
    /// the default, `false`, is always correct but can be much slower on
    /// histories with many identical indeterminate writes.
    fn same_input(&self, a: &Self::Input, b: &Self::Input) -> bool {
        let _ = (a, b);
        false
    }
}

/// One client operation in a history.
pub struct Operation<M: Model> {
    /// Client (process) that issued the operation; informational only.
    pub client: u64,
    /// The request.
    pub input: M::Input,
    /// Invocation time (any monotone unit, e.g. virtual µs).
    pub call: u64,
    /// Completion time; `None` = indeterminate (timed out / unknown).
    pub ret: Option<u64>,
    /// The response; `None` exactly when indeterminate.
    pub output: Option<M::Output>,
}

impl<M: Model> Operation<M> {
    /// Whether the operation's fate is unknown (no return, no output).
    pub fn is_indeterminate(&self) -> bool {
        self.ret.is_none() && self.output.is_none()
    }
}

impl<M: Model> Clone for Operation<M> {
    fn clone(&self) -> Self {
        Operation {
            client: self.client,
            input: self.input.clone(),
            call: self.call,
            ret: self.ret,
            output: self.output.clone(),
        }
    }
}

impl<M: Model> fmt::Debug for Operation<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Operation")
            .field("client", &self.client)
            .field("input", &self.input)
            .field("call", &self.call)
            .field("ret", &self.ret)
            .field("output", &self.output)
            .finish()
    }
}

impl<M: Model> fmt::Display for Operation<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "client {}: {:?} -> ", self.client, self.input)?;
        match &self.output {
            Some(out) => write!(f, "{out:?}")?,
            None => write!(f, "?")?,
        }
        write!(f, " [call {}, ret ", self.call)?;
        match self.ret {
            Some(ret) => write!(f, "{ret}]"),
            None => write!(f, "never]"),
        }
    }
}

/// Limits on the search effort.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    /// Maximum number of search steps *per key partition*; a partition whose
    /// search exceeds it is reported as [`Verdict::Unknown`] (unless another
    /// partition is found to be non-linearizable).
    pub max_steps: u64,
}

impl Default for Budget {
    /// Ten million steps per partition (a few seconds at most).
    fn default() -> Self {
        Budget {
            max_steps: 10_000_000,
        }
    }
}

/// The result of [`check`].
pub enum Verdict<M: Model> {
    /// Every partition has a valid linearization.
    Linearizable,
    /// Some partition (the first failing one in key order) has none.
    NotLinearizable(Violation<M>),
    /// The checker could not decide (invalid input or budget exhausted).
    Unknown {
        /// Human-readable explanation.
        reason: String,
    },
}

impl<M: Model> Verdict<M> {
    /// `true` for [`Verdict::Linearizable`].
    pub fn is_linearizable(&self) -> bool {
        matches!(self, Verdict::Linearizable)
    }

    /// The violation, if the verdict is [`Verdict::NotLinearizable`].
    pub fn violation(&self) -> Option<&Violation<M>> {
        match self {
            Verdict::NotLinearizable(v) => Some(v),
            _ => None,
        }
    }
}

impl<M: Model> fmt::Debug for Verdict<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Linearizable => write!(f, "Linearizable"),
            Verdict::NotLinearizable(v) => f.debug_tuple("NotLinearizable").field(v).finish(),
            Verdict::Unknown { reason } => {
                f.debug_struct("Unknown").field("reason", reason).finish()
            }
        }
    }
}

/// Checks `history` for linearizability against `model`.
///
/// Partitions are checked independently in key order. The first partition
/// found non-linearizable is reported; otherwise, if some partition exceeded
/// the budget, the verdict is [`Verdict::Unknown`].
pub fn check<M: Model>(model: &M, history: &[Operation<M>], budget: Budget) -> Verdict<M> {
    if let Some((i, op)) = history
        .iter()
        .enumerate()
        .find(|(_, op)| op.ret.is_some_and(|r| r < op.call))
    {
        return Verdict::Unknown {
            reason: format!("operation #{i} returns before it is called: {op}"),
        };
    }
    let mut partitions: BTreeMap<M::Key, Vec<usize>> = BTreeMap::new();
    for (i, op) in history.iter().enumerate() {
        if op.output.is_none() && model.is_read_only(&op.input) {
            continue; // cannot affect anything, can always be placed
        }
        partitions.entry(model.key(&op.input)).or_default().push(i);
    }
    let mut unknown: Option<String> = None;
    for (key, indexes) in partitions {
        match search::check_partition(model, history, &indexes, budget.max_steps) {
            search::Outcome::Linearizable => {}
            search::Outcome::Violation(failure) => {
                return Verdict::NotLinearizable(Violation::new(key, failure, history));
            }
            search::Outcome::OutOfBudget => {
                unknown.get_or_insert_with(|| {
                    format!(
                        "search budget of {} steps exhausted on key {key:?} ({} operations)",
                        budget.max_steps,
                        indexes.len()
                    )
                });
            }
        }
    }
    match unknown {
        Some(reason) => Verdict::Unknown { reason },
        None => Verdict::Linearizable,
    }
}
