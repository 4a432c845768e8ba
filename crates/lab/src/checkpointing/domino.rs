//! Independent checkpointing: the notes' P1/P2/P3 domino example, random histories
//! that roll back to the start, and the rollback livelock.

use super::cut::{recovery_line, Ev, Histories};
use crate::report::Violation;
use crate::sim::{Event, Faults, Pid, Sim, Trace};
use seedrng::Rng;

/// The notes' (000) example, rebuilt from its narrative: P1 fails → P1 to R13; P2
/// fails → P2 to R22, orphan m → P1 to R12; P3 fails → P3 to R32 → P2 to R21 → P1 to
/// R11, P3 to R31. Message ids: 1 = m3 (P2→P1), 2 = m4 (P2→P3), 3 = m2 (P3→P2),
/// 4 = m (P2→P1).
pub fn notes_example() -> Histories {
    use Ev::{Ckpt, Recv, Send};
    vec![
        vec![Ckpt(1), Recv(1, 1), Ckpt(2), Recv(4, 1), Ckpt(3)],
        vec![
            Ckpt(1),
            Send(1, 0),
            Send(2, 2),
            Recv(3, 2),
            Ckpt(2),
            Send(4, 0),
        ],
        vec![Ckpt(1), Recv(2, 1), Ckpt(2), Send(3, 1)],
    ]
}

/// The domino checker: no process may be rolled back to its initial state (R_i1)
/// when it has taken later checkpoints.
pub fn check_no_domino(h: &Histories, restore: &[u32]) -> Option<Violation> {
    let all_initial = restore
        .iter()
        .enumerate()
        .all(|(p, r)| *r == 1 && h[p].iter().filter(|e| matches!(e, Ev::Ckpt(_))).count() > 1);
    all_initial.then(|| {
        Violation::new(
            "bounded rollback",
            "every process rolls back to its initial checkpoint: the domino effect".to_string(),
        )
    })
}

/// A random run of `n` processes that send to random peers and checkpoint
/// independently; returns the histories (received messages in delivery order).
pub fn random_histories(seed: u64, n: usize, ticks: u64, trace: &mut Trace) -> Histories {
    let rng = Rng::new(seed);
    let mut act = rng.fork(2);
    let mut sim: Sim<u32> = Sim::new(rng.fork(1), Faults::lossy(0, (1, 6)), trace.is_on());
    let mut h: Histories = (0..n).map(|_| vec![Ev::Ckpt(1)]).collect();
    let mut next_ckpt = vec![2u32; n];
    let mut next_id = 1;
    for p in 0..n {
        sim.set_timer(p, 1 + act.range(0, 3), 0);
    }
    while let Some(event) = sim.step(ticks) {
        match event {
            Event::Timer { node: p, .. } => {
                if act.chance(1, 4) {
                    h[p].push(Ev::Ckpt(next_ckpt[p]));
                    sim.note(|| format!("P{} checkpoint R{}{}", p + 1, p + 1, next_ckpt[p]));
                    next_ckpt[p] += 1;
                } else {
                    let q = (p + 1 + act.range(0, n as u64 - 1) as usize) % n;
                    h[p].push(Ev::Send(next_id, q));
                    sim.send(p, q, next_id);
                    next_id += 1;
                }
                sim.set_timer(p, 1 + act.range(0, 4), 0);
            }
            Event::Deliver { from, to, msg } => h[to].push(Ev::Recv(msg, from)),
        }
    }
    trace.append(&sim.take_trace());
    h
}

/// One random domino trial: the last process fails at the end of the run.
pub fn domino_trial(seed: u64, trace: &mut Trace) -> Option<Violation> {
    let h = random_histories(seed, 3, 40, trace);
    let (_, restore, steps) = recovery_line(&h, &[2]);
    trace.header(|| format!("rollback: {}", steps.join("; ")));
    check_no_domino(&h, &restore)
}

/// Livelock messages: application messages carry the sender's incarnation (or the
/// rollback epoch, when coordinated); a notice says the sender rolled back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LiveMsg {
    /// An application message from incarnation `0`.
    App(u32),
    /// The sender rolled back and now runs incarnation `0`.
    Notice(u32),
}

/// The rollback livelock of notes 000 on two processes with checkpoints R11 and R21.
/// P1 has received m from P2 and its own n1 is in transit when P2 fails. With
/// independent rollback, each process that learns the other rolled back past a message
/// it accepted rolls back too, re-executes and re-sends — and the other accepts that
/// pre-rollback message after its own rollback, so the rounds repeat (both keep
/// computing and sending every 3 ticks). With the
/// coordinated (2PC-based) rollback both roll back once to the same line and discard
/// messages of the older epoch. Returns how many rollbacks happened (at most `bound`).
pub fn livelock_rollbacks(seed: u64, coordinated: bool, bound: u32, trace: &mut Trace) -> u32 {
    let mut sim: Sim<LiveMsg> = Sim::new(Rng::new(seed), Faults::lossy(0, (1, 6)), trace.is_on());
    let mut inc = [0u32; 2];
    let mut accepted: [Vec<u32>; 2] = [vec![0], Vec::new()];
    let mut rollbacks = 0;
    sim.send(0, 1, LiveMsg::App(0));
    sim.note(|| "P2 fails; n1 from P1 is in transit".to_string());
    if coordinated {
        // Phase 1 ("r", replies true) and phase 2 are elided: both roll back to the
        // same recovery line at once, and re-execute in epoch 1.
        for p in 0..2 {
            inc[p] = 1;
            accepted[p].clear();
            rollbacks += 1;
            sim.send(p, 1 - p, LiveMsg::App(1));
        }
        sim.note(|| "coordinated rollback: P1 -> R11, P2 -> R21, epoch 1".to_string());
    } else {
        roll_back(&mut sim, 1, &mut inc, &mut accepted, &mut rollbacks);
    }
    for p in 0..2 {
        sim.set_timer(p, 3, 0);
    }
    while let Some(event) = sim.step(2_000) {
        if rollbacks >= bound {
            break;
        }
        let (from, to, msg) = match event {
            Event::Timer { node, .. } => {
                // The computation goes on: every 3 ticks each process sends again.
                sim.send(node, 1 - node, LiveMsg::App(inc[node]));
                sim.set_timer(node, 3, 0);
                continue;
            }
            Event::Deliver { from, to, msg } => (from, to, msg),
        };
        match msg {
            LiveMsg::App(i) if coordinated && i < inc[to] => {
                sim.note(|| format!("P{} discards a message of the old epoch", to + 1));
            }
            LiveMsg::App(i) => accepted[to].push(i),
            LiveMsg::Notice(i) => {
                let orphaned = accepted[to].iter().any(|a| *a < i);
                if orphaned {
                    sim.note(|| {
                        format!(
                            "P{} holds an orphan of P{}'s undone incarnation",
                            to + 1,
                            from + 1
                        )
                    });
                    roll_back(&mut sim, to, &mut inc, &mut accepted, &mut rollbacks);
                }
            }
        }
    }
    trace.append(&sim.take_trace());
    rollbacks
}

fn roll_back(
    sim: &mut Sim<LiveMsg>,
    p: Pid,
    inc: &mut [u32; 2],
    accepted: &mut [Vec<u32>; 2],
    rollbacks: &mut u32,
) {
    inc[p] += 1;
    accepted[p].clear();
    *rollbacks += 1;
    sim.note(|| {
        format!(
            "P{} rolls back to R{}1 (incarnation {})",
            p + 1,
            p + 1,
            inc[p]
        )
    });
    sim.send(p, 1 - p, LiveMsg::Notice(inc[p]));
    // Re-execution re-sends the message it sent before (m or n1).
    sim.send(p, 1 - p, LiveMsg::App(inc[p]));
}

/// The livelock checker: recovery must end within `bound` rollbacks.
pub fn check_rollback_terminates(rollbacks: u32, bound: u32) -> Option<Violation> {
    (rollbacks >= bound).then(|| {
        Violation::new(
            "recovery terminates",
            format!("{rollbacks} rollbacks and still going (bound {bound})"),
        )
    })
}
