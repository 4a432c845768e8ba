//! When a replica cuts a snapshot: a pure rule, tested on its own.

/// Snapshots smaller than this follow the entry count alone.
const GROWTH_FLOOR: u64 = 64 << 20;

/// The most command bytes a snapshot waits for beyond the entry count.
const GROWTH_CAP: u64 = 128 << 20;

/// How often a replica cuts a snapshot, and how much log it keeps behind one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SnapshotPolicy {
    /// Applied entries between two snapshots (etcd's `--snapshot-count`).
    pub every_entries: u64,
    /// Spread members' snapshot points by up to a tenth of `every_entries`, by node id,
    /// so that members do not all cut theirs at once.
    pub spread: bool,
    /// Entries kept behind a snapshot so that followers a little behind catch up by log.
    pub keep_entries: u64,
}

impl SnapshotPolicy {
    /// etcd's rule: a snapshot every `every_entries`, spread by node id, keeping a
    /// quarter of that (at most 5,000) behind it.
    pub fn spread(every_entries: u64) -> SnapshotPolicy {
        let every_entries = every_entries.max(1);
        SnapshotPolicy {
            every_entries,
            spread: true,
            keep_entries: (every_entries / 4).min(5000),
        }
    }

    /// A snapshot exactly every `every_entries`, nothing kept behind it.
    pub fn exact(every_entries: u64) -> SnapshotPolicy {
        SnapshotPolicy {
            every_entries: every_entries.max(1),
            spread: false,
            keep_entries: 0,
        }
    }

    /// Entries between snapshots on node `node`.
    pub fn stride(&self, node: u64) -> u64 {
        if !self.spread {
            return self.every_entries;
        }
        self.every_entries + node % (self.every_entries / 10).max(1)
    }

    /// Whether `log_bytes` of commands applied since the last snapshot, of `last_len`
    /// bytes, pay for writing the next. A snapshot rewrites the whole store, history
    /// included, so with a fixed entry count its cost per entry grows with the store.
    /// Once snapshots pass 64 MiB, the next also waits until the log holds half as many
    /// bytes as the last snapshot had (at most 128 MiB), which keeps the bytes written
    /// per entry bounded, as Redis's `auto-aof-rewrite-percentage` does; the cap bounds
    /// the memory the log holds meanwhile.
    pub fn log_grew_enough(log_bytes: u64, last_len: u64) -> bool {
        last_len < GROWTH_FLOOR || log_bytes >= (last_len / 2).min(GROWTH_CAP)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshots_wait_for_log_growth_only_once_they_are_large() {
        const MIB: u64 = 1 << 20;
        let grew = SnapshotPolicy::log_grew_enough;
        // Small snapshots: the entry count alone decides.
        assert!(grew(0, 0));
        assert!(grew(0, GROWTH_FLOOR - 1));
        // Large ones: half their size in new log bytes...
        assert!(!grew(50 * MIB - 1, 100 * MIB));
        assert!(grew(50 * MIB, 100 * MIB));
        // ...but never more than the cap.
        assert!(!grew(GROWTH_CAP - 1, 4096 * MIB));
        assert!(grew(GROWTH_CAP, 4096 * MIB));
    }

    #[test]
    fn strides_spread_by_node_and_keep_a_quarter() {
        let p = SnapshotPolicy::spread(10_000);
        assert_eq!(p.keep_entries, 2500);
        assert_eq!(p.stride(0), 10_000);
        assert_eq!(p.stride(1_003), 10_003);
        assert!((0..5000).all(|n| (10_000..11_000).contains(&p.stride(n))));
        assert_eq!(SnapshotPolicy::spread(1_000_000).keep_entries, 5000);
        let e = SnapshotPolicy::exact(64);
        assert_eq!((e.stride(77), e.keep_entries), (64, 0));
    }
}
