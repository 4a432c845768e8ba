//! The sorted list of call/return events the search walks.

use crate::{Model, Operation};

/// An operation of one partition, as the search sees it.
pub(crate) struct LocalOp<'h, M: Model> {
    /// Index into the caller's history slice.
    pub index: usize,
    pub input: &'h M::Input,
    pub output: Option<&'h M::Output>,
    /// May be left out entirely (indeterminate: no return, no output).
    pub optional: bool,
    /// Bit position among the required (resp. optional) operations.
    pub slot: usize,
    /// Node of the call event.
    pub call_node: usize,
    /// Node of the return event (`None` for optional operations).
    pub ret_node: Option<usize>,
    /// For an optional operation: the latest earlier-called optional one
    /// with an interchangeable input ([`Model::same_input`]). Placing this
    /// operation while its twin is unplaced is symmetric to placing the
    /// twin, so the search skips it.
    pub twin: Option<usize>,
}

/// Two doubly linked lists of events with O(1) removal and LIFO
/// reinsertion ("dancing links"): the *required* chain holds the calls and
/// returns of operations that must be linearized, the *optional* chain the
/// calls of indeterminate ones (which never return).
///
/// Event nodes are numbered `1..=m` in time order, so comparing node numbers
/// compares event times. Sort key: (time is infinite, time, is a return,
/// operation); calls sort before returns at equal times, i.e. intervals are
/// closed and operations touching at one instant are concurrent.
pub(crate) struct EntryList {
    next: Vec<usize>,
    prev: Vec<usize>,
    /// Local operation of each event node.
    pub op: Vec<usize>,
    pub is_call: Vec<bool>,
    /// Sentinels.
    pub req_head: usize,
    pub req_tail: usize,
    pub opt_head: usize,
    pub opt_tail: usize,
}

impl EntryList {
    pub fn next(&self, node: usize) -> usize {
        self.next[node]
    }

    /// Whether `node` is a call event (not a return, not a sentinel).
    pub fn is_call_event(&self, node: usize) -> bool {
        self.is_call.get(node).copied().unwrap_or(false)
    }

    fn remove(&mut self, node: usize) {
        let (p, n) = (self.prev[node], self.next[node]);
        self.next[p] = n;
        self.prev[n] = p;
    }

    fn restore(&mut self, node: usize) {
        let (p, n) = (self.prev[node], self.next[node]);
        self.next[p] = node;
        self.prev[n] = node;
    }

    /// Removes an operation's events (when it is linearized).
    pub fn lift<M: Model>(&mut self, op: &LocalOp<'_, M>) {
        self.remove(op.call_node);
        if let Some(r) = op.ret_node {
            self.remove(r);
        }
    }

    /// Undoes the matching [`EntryList::lift`] (must be done in LIFO order).
    pub fn unlift<M: Model>(&mut self, op: &LocalOp<'_, M>) {
        if let Some(r) = op.ret_node {
            self.restore(r);
        }
        self.restore(op.call_node);
    }

    /// The first node of the required chain that is not a call: the return
    /// every candidate must precede, or `req_tail`.
    pub fn first_return(&self) -> usize {
        let mut node = self.next[self.req_head];
        while self.is_call_event(node) {
            node = self.next[node];
        }
        node
    }
}

/// Builds the local operations of `history[i]`, `i` in `indexes`, and their
/// entry list.
pub(crate) fn build<'h, M: Model>(
    model: &M,
    history: &'h [Operation<M>],
    indexes: &[usize],
) -> (Vec<LocalOp<'h, M>>, EntryList) {
    let mut events: Vec<(bool, u64, bool, usize)> = Vec::with_capacity(indexes.len() * 2);
    let mut ops = Vec::with_capacity(indexes.len());
    let (mut n_req, mut n_opt) = (0, 0);
    for (local, &index) in indexes.iter().enumerate() {
        let h = &history[index];
        let optional = h.ret.is_none() && h.output.is_none();
        events.push((false, h.call, false, local));
        let slot = if optional {
            n_opt += 1;
            n_opt - 1
        } else {
            // A return without a time (but with an output) is at infinity.
            events.push((h.ret.is_none(), h.ret.unwrap_or(0), true, local));
            n_req += 1;
            n_req - 1
        };
        ops.push(LocalOp {
            index,
            input: &h.input,
            output: h.output.as_ref(),
            optional,
            slot,
            call_node: 0,
            ret_node: None,
            twin: None,
        });
    }
    events.sort_unstable();
    let m = events.len();
    let n = m + 4;
    let mut list = EntryList {
        next: vec![0; n],
        prev: vec![0; n],
        op: vec![usize::MAX; n],
        is_call: vec![false; n],
        req_head: 0,
        opt_head: m + 1,
        req_tail: m + 2,
        opt_tail: m + 3,
    };
    let (mut req_last, mut opt_last) = (list.req_head, list.opt_head);
    for (pos, &(_, _, is_ret, local)) in events.iter().enumerate() {
        let node = pos + 1;
        list.op[node] = local;
        list.is_call[node] = !is_ret;
        let last = if ops[local].optional {
            &mut opt_last
        } else {
            &mut req_last
        };
        list.next[*last] = node;
        list.prev[node] = *last;
        *last = node;
        if is_ret {
            ops[local].ret_node = Some(node);
        } else {
            ops[local].call_node = node;
        }
    }
    link_twins(model, &mut ops, &list);
    list.next[req_last] = list.req_tail;
    list.prev[list.req_tail] = req_last;
    list.next[opt_last] = list.opt_tail;
    list.prev[list.opt_tail] = opt_last;
    (ops, list)
}

/// Sets [`LocalOp::twin`] for the optional operations, in call order.
fn link_twins<M: Model>(model: &M, ops: &mut [LocalOp<'_, M>], list: &EntryList) {
    // Latest member of each class of interchangeable inputs seen so far.
    let mut latest: Vec<usize> = Vec::new();
    let mut node = list.next[list.opt_head];
    while list.is_call_event(node) {
        let op = list.op[node];
        match latest
            .iter_mut()
            .find(|l| model.same_input(ops[**l].input, ops[op].input))
        {
            Some(l) => {
                ops[op].twin = Some(*l);
                *l = op;
            }
            None => latest.push(op),
        }
        node = list.next[node];
    }
}
