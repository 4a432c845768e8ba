//! OM(m), the oral-messages algorithm, in its round-by-round form: in round 1 the
//! commander sends its order; in round r each lieutenant relays every order it got in
//! round r - 1 along a *path* of relayers it is not on; after m + 1 rounds it resolves
//! the tree of paths bottom-up by majority (ties and missing orders become RETREAT).

use super::{Order, Strategy};
use crate::sim::{Event, Faults, Pid, Sim, Trace};
use seedrng::Rng;
use std::collections::BTreeMap;

/// An order relayed along `path` (the commander first, then each relayer).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OralMsg {
    /// Who passed the order on, in order.
    pub path: Vec<Pid>,
    /// The order as the last relayer stated it.
    pub order: Order,
}

/// A lieutenant's sans-IO core for OM(m).
#[derive(Clone, Debug)]
pub struct OmLieutenant {
    me: Pid,
    n: usize,
    m: usize,
    received: BTreeMap<Vec<Pid>, Order>,
}

impl OmLieutenant {
    /// Lieutenant `me` of `n` generals (commander 0) running OM(`m`).
    pub fn new(me: Pid, n: usize, m: usize) -> OmLieutenant {
        assert!(me != 0 && me < n);
        OmLieutenant {
            me,
            n,
            m,
            received: BTreeMap::new(),
        }
    }

    /// Records an order received along a path.
    pub fn on_msg(&mut self, msg: OralMsg) {
        let fresh = !msg.path.contains(&self.me) && msg.path.len() <= self.m + 1;
        if fresh {
            self.received.entry(msg.path).or_insert(msg.order);
        }
    }

    /// The honest relays for `round` (2..=m+1): every order received along a path of
    /// length round - 1, to every lieutenant not on the path.
    pub fn relays(&self, round: usize) -> Vec<(Pid, OralMsg)> {
        let mut out = Vec::new();
        for (path, order) in self.received.iter().filter(|(p, _)| p.len() == round - 1) {
            let mut next = path.clone();
            next.push(self.me);
            for to in (1..self.n).filter(|j| !next.contains(j)) {
                let msg = OralMsg {
                    path: next.clone(),
                    order: *order,
                };
                out.push((to, msg));
            }
        }
        out
    }

    /// The decision: the resolved value of the commander's order.
    pub fn decide(&self) -> Order {
        self.resolve(&[0])
    }

    fn resolve(&self, path: &[Pid]) -> Order {
        let direct = self.received.get(path).copied().unwrap_or(Order::Retreat);
        if path.len() == self.m + 1 {
            return direct;
        }
        let mut votes = vec![direct];
        for j in (1..self.n).filter(|j| *j != self.me && !path.contains(j)) {
            let mut sub = path.to_vec();
            sub.push(j);
            votes.push(self.resolve(&sub));
        }
        Order::majority(&votes)
    }
}

/// One OM execution's result: each lieutenant's decision (`None` for traitors) and the
/// message count.
#[derive(Clone, Debug)]
pub struct OmOutcome {
    /// Decisions indexed by pid; index 0 (the commander) is `None`.
    pub decisions: Vec<Option<Order>>,
    /// Messages sent.
    pub messages: u64,
}

/// Runs OM with `n` generals for `rounds` = m + 1 rounds (a planted bug passes fewer)
/// on the synchronous network; traitors follow `strategy`.
pub fn execute(
    n: usize,
    m: usize,
    rounds: usize,
    order: Order,
    strategy: &mut Strategy,
    trace: &mut Trace,
) -> OmOutcome {
    let mut sim: Sim<OralMsg> = Sim::new(Rng::new(0), Faults::reliable(1), trace.is_on());
    let mut lts: Vec<OmLieutenant> = (1..n).map(|i| OmLieutenant::new(i, n, m)).collect();
    for to in 1..n {
        let stated = strategy.state(0, to, &[0], order);
        sim.send(
            0,
            to,
            OralMsg {
                path: vec![0],
                order: stated,
            },
        );
    }
    for round in 1..=rounds {
        while let Some(Event::Deliver { to, msg, .. }) = sim.step(round as u64) {
            lts[to - 1].on_msg(msg);
        }
        if round == rounds {
            break;
        }
        for lt in &lts {
            for (to, mut msg) in lt.relays(round + 1) {
                msg.order = strategy.state(lt.me, to, &msg.path, msg.order);
                sim.send(lt.me, to, msg);
            }
        }
    }
    let decisions: Vec<Option<Order>> = std::iter::once(None)
        .chain(
            lts.iter()
                .map(|lt| (!strategy.is_traitor(lt.me)).then(|| lt.decide())),
        )
        .collect();
    sim.note(|| format!("OM({m}) n={n} rounds={rounds} order={order:?} decisions={decisions:?}"));
    trace.append(&sim.take_trace());
    OmOutcome {
        decisions,
        messages: sim.stats().sent,
    }
}
