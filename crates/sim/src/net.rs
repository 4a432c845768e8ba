//! The network model: per-link delivery with loss, delay, duplication and partitions.

use raft::NodeId;
use seedrng::Rng;
use std::collections::BTreeSet;

/// Current network conditions. Random choices come from the caller's generator.
#[derive(Clone, Debug)]
pub struct Network {
    /// Directed links that deliver nothing.
    blocked: BTreeSet<(NodeId, NodeId)>,
    /// Probability (per mille) that any message is lost.
    pub drop_per_mille: u64,
    /// Nodes that lose outgoing messages (send omission), with their rate per mille.
    pub send_omission: Vec<(NodeId, u64)>,
    /// Nodes that lose incoming messages (receive omission), with their rate per mille.
    pub receive_omission: Vec<(NodeId, u64)>,
    /// Probability (per mille) that a delivered message is delivered twice.
    pub duplicate_per_mille: u64,
    /// Normal one-way latency range, microseconds.
    pub latency_us: (u64, u64),
    /// Extra latency range added to a fraction of messages (delay spikes, reordering).
    pub spike_us: (u64, u64),
    /// Fraction (per mille) of messages that get a spike.
    pub spike_per_mille: u64,
}

impl Default for Network {
    fn default() -> Network {
        Network {
            blocked: BTreeSet::new(),
            drop_per_mille: 0,
            send_omission: Vec::new(),
            receive_omission: Vec::new(),
            duplicate_per_mille: 0,
            latency_us: (100, 600),
            spike_us: (0, 0),
            spike_per_mille: 0,
        }
    }
}

impl Network {
    /// Delivery delays for one message from `from` to `to`: empty when it is lost,
    /// two entries when it is duplicated.
    pub fn route(&self, rng: &mut Rng, from: NodeId, to: NodeId) -> Vec<u64> {
        if self.blocked.contains(&(from, to)) {
            return Vec::new();
        }
        let lost = rng.chance(self.drop_per_mille, 1000)
            || self
                .send_omission
                .iter()
                .any(|(n, r)| *n == from && rng.chance(*r, 1000))
            || self
                .receive_omission
                .iter()
                .any(|(n, r)| *n == to && rng.chance(*r, 1000));
        if lost {
            return Vec::new();
        }
        let mut out = vec![self.delay(rng)];
        if rng.chance(self.duplicate_per_mille, 1000) {
            out.push(self.delay(rng));
        }
        out
    }

    fn delay(&self, rng: &mut Rng) -> u64 {
        let mut d = rng.range(self.latency_us.0, self.latency_us.1 + 1);
        if rng.chance(self.spike_per_mille, 1000) {
            d += rng.range(self.spike_us.0, self.spike_us.1 + 1);
        }
        d
    }

    /// Whether `from` can currently reach `to` at all.
    pub fn connected(&self, from: NodeId, to: NodeId) -> bool {
        !self.blocked.contains(&(from, to))
    }

    /// Cuts the directed link `from -> to`.
    pub fn block(&mut self, from: NodeId, to: NodeId) {
        if from != to {
            self.blocked.insert((from, to));
        }
    }

    /// Cuts both directions between every member of `a` and every member of `b`.
    pub fn split(&mut self, a: &[NodeId], b: &[NodeId]) {
        for x in a {
            for y in b {
                self.block(*x, *y);
                self.block(*y, *x);
            }
        }
    }

    /// Cuts `node` off from everyone in `all`.
    pub fn isolate(&mut self, node: NodeId, all: &[NodeId]) {
        self.split(&[node], all);
    }

    /// Restores `node`'s links in both directions.
    pub fn reconnect(&mut self, node: NodeId) {
        self.blocked.retain(|(a, b)| *a != node && *b != node);
    }

    /// Restores every link.
    pub fn heal_partitions(&mut self) {
        self.blocked.clear();
    }

    /// Back to a reliable network with normal latency.
    pub fn heal_all(&mut self) {
        let latency = self.latency_us;
        *self = Network {
            latency_us: latency,
            ..Network::default()
        };
    }

    /// Copies `other`'s blocked links into this network (keeps partitions across a reset
    /// of loss, delay and duplication).
    pub fn restore_partitions_from(&mut self, other: &Network) {
        self.blocked = other.blocked.clone();
    }

    /// Number of blocked directed links (for traces).
    pub fn blocked_links(&self) -> usize {
        self.blocked.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_block_only_named_links() {
        let ids: Vec<NodeId> = (1..=5).map(NodeId).collect();
        let mut net = Network::default();
        net.split(&ids[..2], &ids[2..]);
        let mut rng = Rng::new(1);
        assert!(net.route(&mut rng, ids[0], ids[3]).is_empty());
        assert!(net.route(&mut rng, ids[3], ids[0]).is_empty());
        assert_eq!(net.route(&mut rng, ids[0], ids[1]).len(), 1);
        net.heal_partitions();
        assert_eq!(net.route(&mut rng, ids[0], ids[3]).len(), 1);
    }

    #[test]
    fn one_way_block_and_loss_rates() {
        let (a, b) = (NodeId(1), NodeId(2));
        let mut net = Network::default();
        net.block(a, b);
        let mut rng = Rng::new(2);
        assert!(net.route(&mut rng, a, b).is_empty());
        assert_eq!(net.route(&mut rng, b, a).len(), 1);
        net.heal_all();
        net.drop_per_mille = 1000;
        assert!(net.route(&mut rng, b, a).is_empty());
        net.drop_per_mille = 0;
        net.duplicate_per_mille = 1000;
        assert_eq!(net.route(&mut rng, b, a).len(), 2);
    }
}
