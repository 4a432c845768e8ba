//! SM(m), the signed-messages algorithm: the commander signs its order; a lieutenant
//! that receives a validly signed order it has not seen adds it to its set V and, if
//! fewer than m + 1 generals have signed, countersigns and relays it to every
//! lieutenant that has not signed. After m + 1 rounds it decides choice(V): the single
//! order in V, or RETREAT when V is empty or holds both.
//!
//! Signatures are modelled by a keyed hash whose keys only the [`Keys`] oracle holds:
//! a traitor can sign as itself but cannot produce another general's signature, so an
//! altered order fails [`Keys::verify`] and is discarded.

use super::{Order, Strategy};
use crate::sim::{Event, Faults, Pid, Sim, Trace};
use seedrng::Rng;
use std::collections::BTreeSet;

/// The signing oracle: one secret per general.
#[derive(Clone, Debug)]
pub struct Keys {
    secrets: Vec<u64>,
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Keys {
    /// Fresh secrets for `n` generals.
    pub fn new(rng: &mut Rng, n: usize) -> Keys {
        Keys {
            secrets: (0..n).map(|_| rng.next_u64()).collect(),
        }
    }

    /// `signer`'s signature over `order` countersigning `previous`.
    pub fn sign(&self, signer: Pid, order: Order, previous: u64) -> u64 {
        mix(self.secrets[signer] ^ mix(previous ^ order as u64))
    }

    /// Whether every signature in the chain is genuine for `order`.
    pub fn verify(&self, msg: &SignedMsg) -> bool {
        let mut previous = 0;
        for (signer, sig) in &msg.chain {
            if *signer >= self.secrets.len() || self.sign(*signer, msg.order, previous) != *sig {
                return false;
            }
            previous = *sig;
        }
        msg.chain.first().is_some_and(|(s, _)| *s == 0)
    }
}

/// A signed order with its chain of (signer, signature), the commander first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedMsg {
    /// The order.
    pub order: Order,
    /// The signatures, in signing order.
    pub chain: Vec<(Pid, u64)>,
}

impl SignedMsg {
    fn last_sig(&self) -> u64 {
        self.chain.last().map_or(0, |(_, s)| *s)
    }

    fn signed_by(&self, pid: Pid) -> bool {
        self.chain.iter().any(|(s, _)| *s == pid)
    }
}

/// A lieutenant's sans-IO core for SM(m).
#[derive(Clone, Debug)]
pub struct SmLieutenant {
    me: Pid,
    n: usize,
    m: usize,
    seen: BTreeSet<Order>,
    rejected: u64,
}

impl SmLieutenant {
    /// Lieutenant `me` of `n` generals running SM(`m`).
    pub fn new(me: Pid, n: usize, m: usize) -> SmLieutenant {
        SmLieutenant {
            me,
            n,
            m,
            seen: BTreeSet::new(),
            rejected: 0,
        }
    }

    /// Handles a signed order; returns the countersigned relays to send.
    pub fn on_msg(&mut self, keys: &Keys, msg: SignedMsg) -> Vec<(Pid, SignedMsg)> {
        if !keys.verify(&msg) {
            self.rejected += 1;
            return Vec::new();
        }
        if !self.seen.insert(msg.order) || msg.chain.len() > self.m {
            return Vec::new();
        }
        let mut relay = msg.clone();
        relay
            .chain
            .push((self.me, keys.sign(self.me, msg.order, msg.last_sig())));
        (1..self.n)
            .filter(|j| *j != self.me && !relay.signed_by(*j))
            .map(|j| (j, relay.clone()))
            .collect()
    }

    /// choice(V).
    pub fn decide(&self) -> Order {
        match (self.seen.len(), self.seen.iter().next()) {
            (1, Some(o)) => *o,
            _ => Order::Retreat,
        }
    }
}

/// Runs SM(m) with `n` generals on the synchronous network; traitors follow `strategy`
/// (a traitor may change the order it relays — the forgery is then rejected — or
/// stay silent). Returns each loyal lieutenant's decision and the message count.
pub fn execute(
    n: usize,
    m: usize,
    order: Order,
    strategy: &mut Strategy,
    trace: &mut Trace,
) -> (Vec<Option<Order>>, u64) {
    let keys = Keys::new(&mut Rng::new(0x5157), n);
    let mut sim: Sim<SignedMsg> = Sim::new(Rng::new(0), Faults::reliable(1), trace.is_on());
    let mut lts: Vec<SmLieutenant> = (0..n).map(|i| SmLieutenant::new(i, n, m)).collect();
    for to in 1..n {
        let stated = strategy.state(0, to, &[0], order);
        if strategy.is_traitor(0) && strategy.silent(0, to) {
            continue;
        }
        let msg = SignedMsg {
            order: stated,
            chain: vec![(0, keys.sign(0, stated, 0))],
        };
        sim.send(0, to, msg);
    }
    while let Some(Event::Deliver { to, msg, .. }) = sim.step((m + 1) as u64) {
        for (dest, mut relay) in lts[to].on_msg(&keys, msg) {
            if strategy.is_traitor(to) {
                if strategy.silent(to, dest) {
                    continue;
                }
                let path: Vec<Pid> = relay.chain.iter().map(|(s, _)| *s).collect();
                relay.order = strategy.state(to, dest, &path, relay.order);
            }
            sim.send(to, dest, relay);
        }
    }
    let decisions: Vec<Option<Order>> = (0..n)
        .map(|p| (p != 0 && !strategy.is_traitor(p)).then(|| lts[p].decide()))
        .collect();
    let rejected: u64 = lts.iter().map(|l| l.rejected).sum();
    sim.note(|| {
        format!(
            "SM({m}) n={n} order={order:?} decisions={decisions:?} forgeries_rejected={rejected}"
        )
    });
    trace.append(&sim.take_trace());
    (decisions, sim.stats().sent)
}
