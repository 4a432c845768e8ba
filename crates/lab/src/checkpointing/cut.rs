//! Histories, cuts and the two checks every recovered global state gets: orphan
//! messages (received but, in the cut, never sent) and lost messages (sent but, in the
//! cut, never received).

use crate::report::Violation;
use crate::sim::Pid;

/// One event in a process's local history.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ev {
    /// A local checkpoint, numbered per process from 1 (1 is the initial state).
    Ckpt(u32),
    /// Message `id` sent to a process.
    Send(u32, Pid),
    /// Message `id` received from a process.
    Recv(u32, Pid),
}

/// Every process's history, in local order.
pub type Histories = Vec<Vec<Ev>>;

/// A global state: for each process, how many of its events the state keeps.
pub type Cut = Vec<usize>;

fn position(h: &Histories, p: Pid, want: impl Fn(&Ev) -> bool) -> Option<usize> {
    h[p].iter().position(want)
}

/// Messages received inside the cut whose sending is outside it: (id, sender, receiver).
pub fn orphans(h: &Histories, cut: &Cut) -> Vec<(u32, Pid, Pid)> {
    let mut out = Vec::new();
    for (q, events) in h.iter().enumerate() {
        for ev in &events[..cut[q]] {
            if let Ev::Recv(id, p) = ev {
                let sent = position(h, *p, |e| *e == Ev::Send(*id, q));
                if sent.is_none_or(|i| i >= cut[*p]) {
                    out.push((*id, *p, q));
                }
            }
        }
    }
    out
}

/// Messages sent inside the cut and not received inside it: (id, sender, receiver).
pub fn lost(h: &Histories, cut: &Cut) -> Vec<(u32, Pid, Pid)> {
    let mut out = Vec::new();
    for (p, events) in h.iter().enumerate() {
        for ev in &events[..cut[p]] {
            if let Ev::Send(id, q) = ev {
                let got = position(h, *q, |e| *e == Ev::Recv(*id, p));
                if got.is_none_or(|i| i >= cut[*q]) {
                    out.push((*id, p, *q));
                }
            }
        }
    }
    out
}

/// Messages whose receipt the rollback undid while their sending survives: recorded
/// as sent, never to be received again (the notes' *lost* messages).
pub fn lost_by_rollback(h: &Histories, cut: &Cut) -> Vec<(u32, Pid, Pid)> {
    lost(h, cut)
        .into_iter()
        .filter(|(id, p, q)| position(h, *q, |e| *e == Ev::Recv(*id, *p)).is_some())
        .collect()
}

/// The orphan checker: a recovered global state must contain no orphan message.
pub fn check_no_orphans(h: &Histories, cut: &Cut) -> Option<Violation> {
    let (id, p, q) = *orphans(h, cut).first()?;
    Some(Violation::new(
        "no orphan messages",
        format!(
            "message m{id} from P{} is received by P{} in the recovered state but never sent",
            p + 1,
            q + 1
        ),
    ))
}

/// The checkpoint number just before event index `upto` of process `p` (the restore
/// point of a rollback that must undo event `upto`), and its cut position.
pub fn last_ckpt_before(h: &Histories, p: Pid, upto: usize) -> (u32, usize) {
    h[p][..upto]
        .iter()
        .enumerate()
        .rev()
        .find_map(|(i, e)| match e {
            Ev::Ckpt(n) => Some((*n, i + 1)),
            _ => None,
        })
        .unwrap_or((0, 0))
}

/// The recovery line after `failed` processes lose their volatile state: each rolls back
/// to its last checkpoint, then any process holding an orphan rolls back to its last
/// checkpoint before the orphan's receipt, until none is left. Returns the cut and the
/// restore point (checkpoint number) of every process, with the rollback steps.
pub fn recovery_line(h: &Histories, failed: &[Pid]) -> (Cut, Vec<u32>, Vec<String>) {
    let mut cut: Cut = h.iter().map(Vec::len).collect();
    let mut restore: Vec<u32> = vec![u32::MAX; h.len()];
    let mut steps = Vec::new();
    for p in failed {
        let (n, at) = last_ckpt_before(h, *p, h[*p].len());
        cut[*p] = at;
        restore[*p] = n;
        steps.push(format!(
            "P{} fails -> P{} rolls back to R{}{}",
            p + 1,
            p + 1,
            p + 1,
            n
        ));
    }
    while let Some((id, p, q)) = orphans(h, &cut).first().copied() {
        let recv_at = position(h, q, |e| *e == Ev::Recv(id, p)).expect("orphan was received");
        let (n, at) = last_ckpt_before(h, q, recv_at);
        cut[q] = at;
        restore[q] = n;
        steps.push(format!(
            "orphan m{id} (P{} -> P{}) -> P{} rolls back to R{}{}",
            p + 1,
            q + 1,
            q + 1,
            q + 1,
            n
        ));
    }
    (cut, restore, steps)
}
