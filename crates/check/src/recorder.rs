//! A simple history builder.

use crate::{Model, Operation};

/// Handle to an operation recorded by [`Recorder::invoke`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OpId(pub usize);

/// Builds a history: [`Recorder::invoke`] when a client sends a request,
/// [`Recorder::complete`] when it gets the response. Operations never
/// completed stay indeterminate.
pub struct Recorder<M: Model> {
    ops: Vec<Operation<M>>,
}

impl<M: Model> Default for Recorder<M> {
    fn default() -> Self {
        Self::new()
    }
}

impl<M: Model> Recorder<M> {
    /// An empty recorder.
    pub fn new() -> Self {
        Recorder { ops: Vec::new() }
    }

    /// Records the invocation of `input` by `client` at `time`.
    pub fn invoke(&mut self, client: u64, input: M::Input, time: u64) -> OpId {
        self.ops.push(Operation {
            client,
            input,
            call: time,
            ret: None,
            output: None,
        });
        OpId(self.ops.len() - 1)
    }

    /// Records that operation `id` completed with `output` at `time`.
    /// Returns `false` (and records nothing) if `id` is unknown or already
    /// completed.
    pub fn complete(&mut self, id: OpId, output: M::Output, time: u64) -> bool {
        match self.ops.get_mut(id.0) {
            Some(op) if op.ret.is_none() && op.output.is_none() => {
                op.ret = Some(time);
                op.output = Some(output);
                true
            }
            _ => false,
        }
    }

    /// Number of operations recorded.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Whether nothing has been recorded.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// The history so far (pending operations appear indeterminate).
    pub fn history(&self) -> &[Operation<M>] {
        &self.ops
    }

    /// The finished history; never-completed operations stay indeterminate.
    pub fn into_history(self) -> Vec<Operation<M>> {
        self.ops
    }
}
