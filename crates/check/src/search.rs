//! The Wing–Gong/Lowe search over one partition's sub-history.
//!
//! Configurations are (required operations linearized, optional operations
//! linearized, model state). Required candidates are tried before optional
//! (indeterminate) ones, and the memo uses *subsumption*: a configuration is
//! skipped if one with the same required set and state, but a subset of the
//! optional operations used, was already explored — having more
//! indeterminate operations still available can only allow more.

use std::collections::HashMap;

use crate::entries::{build, EntryList, LocalOp};
use crate::{Model, Operation};

/// Result of checking one partition.
pub(crate) enum Outcome<S> {
    Linearizable,
    Violation(Failure<S>),
    OutOfBudget,
}

/// The deepest point the search reached in a failing partition.
pub(crate) struct Failure<S> {
    /// Longest linearizable prefix found, as history indexes, in order.
    pub prefix: Vec<usize>,
    /// Model state after `prefix`.
    pub state: S,
    /// Pending completed operations (history indexes) none of which could be
    /// placed next, in call order.
    pub stuck: Vec<usize>,
    /// The operation whose return forced the backtrack (history index).
    pub deadline: Option<usize>,
}

/// Where the search is looking for the next operation to linearize.
#[derive(Clone, Copy)]
enum Cursor {
    /// Walking the required chain.
    Required(usize),
    /// Walking the optional chain; only calls before `limit` are candidates.
    Optional { node: usize, limit: usize },
}

/// One linearized operation on the undo stack.
struct Frame<S> {
    op: usize,
    prev_state: S,
    /// All candidate next states; `next_alt` is the first not yet tried.
    alternatives: Vec<S>,
    next_alt: usize,
}

/// Memo: (required bits, state) -> minimal optional-bit sets explored.
type Memo<S> = HashMap<(Vec<u64>, S), Vec<Vec<u64>>>;

struct Search<'a, 'h, M: Model> {
    model: &'a M,
    ops: Vec<LocalOp<'h, M>>,
    list: EntryList,
    state: M::State,
    req_bits: Vec<u64>,
    opt_bits: Vec<u64>,
    memo: Memo<M::State>,
    stack: Vec<Frame<M::State>>,
    required_left: usize,
    steps: u64,
    max_steps: u64,
    best: Option<Failure<M::State>>,
    /// Required operations linearized at `best`.
    best_depth: Option<usize>,
    total_required: usize,
}

/// Checks the sub-history made of `history[i]` for `i` in `indexes`.
pub(crate) fn check_partition<M: Model>(
    model: &M,
    history: &[Operation<M>],
    indexes: &[usize],
    max_steps: u64,
) -> Outcome<M::State> {
    let (ops, list) = build(model, history, indexes);
    let required_left = ops.iter().filter(|o| !o.optional).count();
    let optional = ops.len() - required_left;
    let mut search = Search {
        model,
        ops,
        list,
        state: model.init(),
        req_bits: vec![0; required_left.div_ceil(64)],
        opt_bits: vec![0; optional.div_ceil(64)],
        memo: HashMap::new(),
        stack: Vec::new(),
        required_left,
        steps: 0,
        max_steps,
        best: None,
        best_depth: None,
        total_required: required_left,
    };
    search.run()
}

impl<M: Model> Search<'_, '_, M> {
    fn run(&mut self) -> Outcome<M::State> {
        let mut cur = Cursor::Required(self.list.next(self.list.req_head));
        loop {
            if self.required_left == 0 {
                return Outcome::Linearizable;
            }
            self.steps += 1;
            if self.steps > self.max_steps {
                return Outcome::OutOfBudget;
            }
            cur = match cur {
                Cursor::Required(node) if self.list.is_call_event(node) => {
                    self.attempt(node, Cursor::Required(self.list.next(node)))
                }
                Cursor::Required(limit) => Cursor::Optional {
                    node: self.list.next(self.list.opt_head),
                    limit,
                },
                Cursor::Optional { node, limit } if node < limit => {
                    let next = self.list.next(node);
                    self.attempt(node, Cursor::Optional { node: next, limit })
                }
                Cursor::Optional { limit, .. } => {
                    self.note_dead_end(limit);
                    match self.backtrack() {
                        Some(next) => next,
                        None => {
                            return match self.best.take() {
                                Some(f) => Outcome::Violation(f),
                                None => Outcome::OutOfBudget, // unreachable
                            };
                        }
                    }
                }
            };
        }
    }

    /// Tries to linearize the operation of call `node`; returns where to
    /// continue: from the start if it was placed, else `otherwise`.
    fn attempt(&mut self, node: usize, otherwise: Cursor) -> Cursor {
        let op = self.list.op[node];
        if self.ops[op].optional && self.redundant_optional(op) {
            return otherwise;
        }
        let alternatives = self.transitions(op);
        if self.try_advance(op, alternatives, 0) {
            self.restart()
        } else {
            otherwise
        }
    }

    fn restart(&self) -> Cursor {
        Cursor::Required(self.list.next(self.list.req_head))
    }

    /// Possible next states if `op` is linearized now.
    fn transitions(&self, op: usize) -> Vec<M::State> {
        let o = &self.ops[op];
        if let Some(output) = o.output {
            return self
                .model
                .step(&self.state, o.input, output)
                .into_iter()
                .collect();
        }
        let mut out: Vec<M::State> = Vec::new();
        for s in self.model.step_unknown(&self.state, o.input) {
            // An optional operation that changes nothing is pointless to place.
            if (o.optional && s == self.state) || out.contains(&s) {
                continue;
            }
            out.push(s);
        }
        out
    }

    /// Whether placing optional `op` now is covered by another choice:
    /// * its earlier-called twin is still unplaced (symmetric choice), or
    /// * the last operation placed was optional and `op`'s effect does not
    ///   depend on it: placing `op` instead of it (a sibling choice) reaches
    ///   the same state with fewer indeterminate operations used.
    fn redundant_optional(&self, op: usize) -> bool {
        let o = &self.ops[op];
        if o.twin.is_some_and(|t| !self.is_linearized(t)) {
            return true;
        }
        match self.stack.last() {
            Some(top) if self.ops[top.op].optional => {
                self.model.step_unknown(&top.prev_state, o.input)
                    == self.model.step_unknown(&self.state, o.input)
            }
            _ => false,
        }
    }

    fn is_linearized(&self, op: usize) -> bool {
        let o = &self.ops[op];
        let bits = if o.optional {
            &self.opt_bits
        } else {
            &self.req_bits
        };
        bits[o.slot / 64] & (1 << (o.slot % 64)) != 0
    }

    fn bits_of(&mut self, op: usize) -> (&mut Vec<u64>, usize) {
        let o = &self.ops[op];
        let bits = if o.optional {
            &mut self.opt_bits
        } else {
            &mut self.req_bits
        };
        (bits, o.slot)
    }

    /// Linearizes `op` into the first of `alternatives[start..]` whose
    /// configuration is new. Returns whether it did.
    fn try_advance(&mut self, op: usize, alternatives: Vec<M::State>, start: usize) -> bool {
        let (bits, slot) = self.bits_of(op);
        bits[slot / 64] |= 1 << (slot % 64);
        for (i, next) in alternatives.iter().enumerate().skip(start) {
            if self.visit(next) {
                let prev_state = std::mem::replace(&mut self.state, next.clone());
                self.stack.push(Frame {
                    op,
                    prev_state,
                    alternatives,
                    next_alt: i + 1,
                });
                let o = &self.ops[op];
                self.list.lift(o);
                self.required_left -= usize::from(!o.optional);
                return true;
            }
        }
        let (bits, slot) = self.bits_of(op);
        bits[slot / 64] &= !(1 << (slot % 64));
        false
    }

    /// Records the configuration (current bits, `state`); returns `false` if
    /// it is subsumed by one already explored.
    fn visit(&mut self, state: &M::State) -> bool {
        let seen = self
            .memo
            .entry((self.req_bits.clone(), state.clone()))
            .or_default();
        if seen.iter().any(|u| is_subset(u, &self.opt_bits)) {
            return false;
        }
        seen.retain(|u| !is_subset(&self.opt_bits, u));
        seen.push(self.opt_bits.clone());
        true
    }

    /// Undoes the most recent linearization and tries its remaining
    /// alternatives. Returns where to continue, `None` if nothing is left.
    fn backtrack(&mut self) -> Option<Cursor> {
        let frame = self.stack.pop()?;
        self.state = frame.prev_state;
        let o = &self.ops[frame.op];
        self.list.unlift(o);
        self.required_left += usize::from(!o.optional);
        let (optional, call_node) = (o.optional, o.call_node);
        let (bits, slot) = self.bits_of(frame.op);
        bits[slot / 64] &= !(1 << (slot % 64));
        if self.try_advance(frame.op, frame.alternatives, frame.next_alt) {
            return Some(self.restart());
        }
        let node = self.list.next(call_node);
        Some(if optional {
            let limit = self.list.first_return();
            Cursor::Optional { node, limit }
        } else {
            Cursor::Required(node)
        })
    }

    /// Records the current configuration if it is the deepest dead end so
    /// far; `limit` is the return event that could not be passed.
    fn note_dead_end(&mut self, limit: usize) {
        let depth = self.total_required - self.required_left;
        if self.best_depth.is_some_and(|b| b >= depth) {
            return;
        }
        self.best_depth = Some(depth);
        let prefix = self.stack.iter().map(|f| self.ops[f.op].index).collect();
        let mut stuck = Vec::new();
        let mut node = self.list.next(self.list.req_head);
        while self.list.is_call_event(node) {
            stuck.push(self.ops[self.list.op[node]].index);
            node = self.list.next(node);
        }
        let deadline = (limit != self.list.req_tail).then(|| self.ops[self.list.op[limit]].index);
        self.best = Some(Failure {
            prefix,
            state: self.state.clone(),
            stuck,
            deadline,
        });
    }
}

/// `a ⊆ b` for bitsets of equal length.
fn is_subset(a: &[u64], b: &[u64]) -> bool {
    a.iter().zip(b).all(|(x, y)| x & !y == 0)
}
