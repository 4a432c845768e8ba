//! Synchronous coordinated checkpointing (notes 000, based on 2PC): the coordinator
//! takes a tentative checkpoint and asks everyone to do the same; a process that took
//! one sends no application message until the coordinator makes them permanent. The
//! most recent permanent checkpoints then form a consistent recovery line.

use super::cut::{Cut, Ev, Histories};
use crate::sim::{Event, Faults, Sim, Trace};
use seedrng::Rng;

/// Messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Msg {
    /// An application message with its id.
    App(u32),
    /// Phase 1: take tentative checkpoint `n`.
    Take(u32),
    /// The reply: tentative checkpoint taken.
    Taken(u32),
    /// Phase 2: make checkpoint `n` permanent.
    Permanent(u32),
}

/// What a run leaves for the checkers.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// The histories up to the failure.
    pub histories: Histories,
    /// The recovery line: every process at global checkpoint `line`.
    pub cut: Cut,
    /// The global checkpoint number recovered to.
    pub line: u32,
}

const N: usize = 3;
const ROUND_TICKS: u64 = 30;

/// The checkpointing protocol's state: who is blocked, and the coordinator's round.
struct Protocol {
    blocked: [bool; N],
    taken: usize,
    permanent: u32,
    round: u32,
}

impl Protocol {
    /// The coordinator takes tentative checkpoint `round` and asks the others.
    fn start_round(&mut self, sim: &mut Sim<Msg>, h: &mut Histories) {
        self.round += 1;
        self.taken = 0;
        h[0].push(Ev::Ckpt(self.round));
        self.blocked[0] = true;
        for q in 1..N {
            sim.send(0, q, Msg::Take(self.round));
        }
    }

    /// A participant took its tentative checkpoint: take ours, block, answer.
    fn on_take(&mut self, sim: &mut Sim<Msg>, h: &mut Histories, me: usize, n: u32) {
        h[me].push(Ev::Ckpt(n));
        self.blocked[me] = true;
        sim.send(me, 0, Msg::Taken(n));
    }

    /// A participant took tentative checkpoint `n`; with all of them in, the
    /// coordinator makes the round permanent.
    fn on_taken(&mut self, sim: &mut Sim<Msg>, n: u32) {
        self.taken += 1;
        if self.taken < N - 1 {
            return;
        }
        self.permanent = n;
        self.blocked[0] = false;
        sim.note(|| format!("global checkpoint {n} is permanent"));
        for q in 1..N {
            sim.send(0, q, Msg::Permanent(n));
        }
        sim.set_timer(0, ROUND_TICKS, 1);
    }
}

/// Runs `n = 3` processes with random traffic and a checkpoint round every 30 ticks;
/// a failure at a random tick rolls everyone back to the last permanent global
/// checkpoint. `no_blocking` is a planted bug: processes keep sending after their
/// tentative checkpoint.
pub fn execute(seed: u64, no_blocking: bool, trace: &mut Trace) -> Outcome {
    let rng = Rng::new(seed);
    let mut act = rng.fork(2);
    let mut faults = Faults::lossy(0, (1, 6));
    faults.fifo = true;
    let mut sim: Sim<Msg> = Sim::new(rng.fork(1), faults, trace.is_on());
    let mut h: Histories = vec![vec![Ev::Ckpt(1)]; N];
    let mut proto = Protocol {
        blocked: [false; N],
        taken: 0,
        permanent: 1,
        round: 1,
    };
    let mut next_id = 1;
    let fail_at = 40 + act.range(0, 200);
    for p in 0..N {
        sim.set_timer(p, 1 + act.range(0, 3), 0);
    }
    sim.set_timer(0, ROUND_TICKS, 1);
    while let Some(event) = sim.step(fail_at) {
        match event {
            Event::Timer { node: p, tag: 0 } => {
                if !proto.blocked[p] || no_blocking {
                    let q = (p + 1 + act.range(0, N as u64 - 1) as usize) % N;
                    h[p].push(Ev::Send(next_id, q));
                    sim.send(p, q, Msg::App(next_id));
                    next_id += 1;
                }
                sim.set_timer(p, 1 + act.range(0, 4), 0);
            }
            Event::Timer { .. } => proto.start_round(&mut sim, &mut h),
            Event::Deliver { from, to, msg } => match msg {
                Msg::App(id) => h[to].push(Ev::Recv(id, from)),
                Msg::Take(n) => proto.on_take(&mut sim, &mut h, to, n),
                Msg::Taken(n) => proto.on_taken(&mut sim, n),
                Msg::Permanent(_) => proto.blocked[to] = false,
            },
        }
    }
    let permanent = proto.permanent;
    let cut: Cut = h
        .iter()
        .map(|events| {
            events
                .iter()
                .position(|e| *e == Ev::Ckpt(permanent))
                .map_or(0, |i| i + 1)
        })
        .collect();
    sim.note(|| format!("failure at {fail_at}: everyone rolls back to global checkpoint {permanent}, cut {cut:?}"));
    trace.append(&sim.take_trace());
    Outcome {
        histories: h,
        cut,
        line: permanent,
    }
}
