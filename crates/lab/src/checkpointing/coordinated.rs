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
    let mut blocked = [false; N];
    let mut taken = 0usize;
    let mut permanent = 1u32;
    let mut round = 1u32;
    let mut next_id = 1;
    let fail_at = 40 + act.range(0, 200);
    for p in 0..N {
        sim.set_timer(p, 1 + act.range(0, 3), 0);
    }
    sim.set_timer(0, ROUND_TICKS, 1);
    while let Some(event) = sim.step(fail_at) {
        match event {
            Event::Timer { node: p, tag: 0 } => {
                if !blocked[p] || no_blocking {
                    let q = (p + 1 + act.range(0, N as u64 - 1) as usize) % N;
                    h[p].push(Ev::Send(next_id, q));
                    sim.send(p, q, Msg::App(next_id));
                    next_id += 1;
                }
                sim.set_timer(p, 1 + act.range(0, 4), 0);
            }
            Event::Timer { .. } => {
                round += 1;
                taken = 0;
                h[0].push(Ev::Ckpt(round));
                blocked[0] = true;
                for q in 1..N {
                    sim.send(0, q, Msg::Take(round));
                }
            }
            Event::Deliver {
                from,
                to,
                msg: Msg::App(id),
            } => h[to].push(Ev::Recv(id, from)),
            Event::Deliver {
                to,
                msg: Msg::Take(n),
                ..
            } => {
                h[to].push(Ev::Ckpt(n));
                blocked[to] = true;
                sim.send(to, 0, Msg::Taken(n));
            }
            Event::Deliver {
                msg: Msg::Taken(n), ..
            } => {
                taken += 1;
                if taken == N - 1 {
                    permanent = n;
                    blocked[0] = false;
                    sim.note(|| format!("global checkpoint {n} is permanent"));
                    for q in 1..N {
                        sim.send(0, q, Msg::Permanent(n));
                    }
                    sim.set_timer(0, ROUND_TICKS, 1);
                }
            }
            Event::Deliver {
                to,
                msg: Msg::Permanent(_),
                ..
            } => blocked[to] = false,
        }
    }
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
