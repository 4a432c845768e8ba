//! The Chandy–Lamport snapshot, the asynchronous alternative: the initiator records
//! its state and sends a *marker* on every channel; a process records its state on its
//! first marker and then records, per incoming channel, the messages that arrive
//! before that channel's marker. Over FIFO channels the result is a consistent cut,
//! and the recorded channel contents are exactly the messages in transit across it.

use super::cut::{lost, orphans, Cut, Ev, Histories};
use crate::report::Violation;
use crate::sim::{Event, Faults, Pid, Sim, Trace};
use seedrng::Rng;

/// Messages of a bank that moves money between accounts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Msg {
    /// Move `amount` to the receiver; `id` names the message.
    Transfer(u32, u64),
    /// The snapshot marker.
    Marker,
}

const N: usize = 3;
const START_BALANCE: u64 = 100;

/// The recorded snapshot and the run's histories.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// Recorded balances.
    pub balances: Vec<u64>,
    /// Recorded channel contents: (from, to, id, amount).
    pub channels: Vec<(Pid, Pid, u32, u64)>,
    /// Every process's history.
    pub histories: Histories,
    /// Where each process recorded its state.
    pub cut: Cut,
}

#[derive(Default)]
struct Proc {
    balance: u64,
    recorded: Option<u64>,
    open: Vec<bool>,
}

/// Runs the bank with a snapshot started by P1 at a random tick; `fifo` = false is the
/// planted bug (markers may overtake transfers).
pub fn execute(seed: u64, fifo: bool, trace: &mut Trace) -> Snapshot {
    let rng = Rng::new(seed);
    let mut act = rng.fork(2);
    let mut faults = Faults::lossy(0, (1, 8));
    faults.fifo = fifo;
    let mut sim: Sim<Msg> = Sim::new(rng.fork(1), faults, trace.is_on());
    let mut procs: Vec<Proc> = (0..N)
        .map(|_| Proc {
            balance: START_BALANCE,
            ..Proc::default()
        })
        .collect();
    let mut h: Histories = vec![Vec::new(); N];
    let mut cut: Cut = vec![0; N];
    let mut channels = Vec::new();
    let mut next_id = 1;
    for p in 0..N {
        sim.set_timer(p, 1 + act.range(0, 3), 0);
    }
    sim.set_timer(0, 10 + act.range(0, 30), 1);
    while let Some(event) = sim.step(200) {
        match event {
            Event::Timer { node: p, tag: 0 } => {
                let q = (p + 1 + act.range(0, N as u64 - 1) as usize) % N;
                let amount = act.range(1, 20).min(procs[p].balance);
                procs[p].balance -= amount;
                h[p].push(Ev::Send(next_id, q));
                sim.send(p, q, Msg::Transfer(next_id, amount));
                next_id += 1;
                sim.set_timer(p, 1 + act.range(0, 4), 0);
            }
            Event::Timer { node: p, .. } => record(&mut sim, &mut procs, &h, &mut cut, p, None),
            Event::Deliver {
                from,
                to,
                msg: Msg::Transfer(id, amount),
            } => {
                procs[to].balance += amount;
                h[to].push(Ev::Recv(id, from));
                if procs[to].open.get(from).copied().unwrap_or(false) {
                    channels.push((from, to, id, amount));
                }
            }
            Event::Deliver {
                from,
                to,
                msg: Msg::Marker,
            } => {
                if procs[to].recorded.is_none() {
                    record(&mut sim, &mut procs, &h, &mut cut, to, Some(from));
                } else {
                    procs[to].open[from] = false;
                }
            }
        }
    }
    let balances: Vec<u64> = procs.iter().map(|p| p.recorded.unwrap_or(0)).collect();
    sim.note(|| format!("snapshot balances={balances:?} channels={channels:?}"));
    trace.append(&sim.take_trace());
    Snapshot {
        balances,
        channels,
        histories: h,
        cut,
    }
}

fn record(
    sim: &mut Sim<Msg>,
    procs: &mut [Proc],
    h: &Histories,
    cut: &mut Cut,
    p: Pid,
    first_from: Option<Pid>,
) {
    procs[p].recorded = Some(procs[p].balance);
    procs[p].open = (0..N).map(|q| q != p && Some(q) != first_from).collect();
    cut[p] = h[p].len();
    sim.note(|| format!("P{} records balance {}", p + 1, procs[p].balance));
    for q in (0..N).filter(|q| *q != p) {
        sim.send(p, q, Msg::Marker);
    }
}

/// The snapshot checker: a consistent cut (no orphans), channel states equal to the
/// messages in transit across it, and the bank's money conserved.
pub fn check_snapshot(s: &Snapshot) -> Option<Violation> {
    if let Some((id, p, q)) = orphans(&s.histories, &s.cut).first() {
        return Some(Violation::new(
            "consistent cut",
            format!(
                "transfer m{id} P{} -> P{} is recorded as received but not as sent",
                p + 1,
                q + 1
            ),
        ));
    }
    let mut in_transit: Vec<u32> = lost(&s.histories, &s.cut)
        .iter()
        .map(|(id, _, _)| *id)
        .collect();
    in_transit.sort_unstable();
    let mut recorded: Vec<u32> = s.channels.iter().map(|c| c.2).collect();
    recorded.sort_unstable();
    if recorded != in_transit {
        return Some(Violation::new(
            "channel states",
            format!("recorded {recorded:?}, in transit across the cut {in_transit:?}"),
        ));
    }
    let total: u64 = s.balances.iter().sum::<u64>() + s.channels.iter().map(|c| c.3).sum::<u64>();
    (total != START_BALANCE * N as u64).then(|| {
        Violation::new(
            "conservation",
            format!(
                "snapshot holds {total}, the bank holds {}",
                START_BALANCE * N as u64
            ),
        )
    })
}
