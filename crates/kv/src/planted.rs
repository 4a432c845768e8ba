//! Deliberately planted bugs of the lease clock and the watch history, for the
//! simulator's checker self-tests. Only in builds with the `planted-bugs` feature, and
//! only where a driver plants one at run time ([`crate::Lessor::plant`],
//! [`crate::Store::plant`]).

/// A planted bug of the kv crate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KvBug {
    /// A member that does not lead keeps lease deadlines on its own clock (from the
    /// grant, never renewed: keep-alives are ordered by the leader) and proposes the
    /// revoke of a lease whose deadline passed.
    FollowerLeaseExpiry,
    /// A watch from a compacted revision silently starts at the oldest kept one
    /// instead of being refused as compacted.
    WatchSkipCompacted,
    /// A new leader ignores the checkpointed remaining TTLs and restarts every lease's
    /// whole TTL.
    LeaseNoCheckpoint,
}

impl KvBug {
    /// The bug with command-line name `name`.
    pub fn from_name(name: &str) -> Option<KvBug> {
        match name {
            "follower-lease-expiry" => Some(KvBug::FollowerLeaseExpiry),
            "watch-skip-compacted" => Some(KvBug::WatchSkipCompacted),
            "lease-no-checkpoint" => Some(KvBug::LeaseNoCheckpoint),
            _ => None,
        }
    }

    /// Every planted bug's command-line name.
    pub const NAMES: [&'static str; 3] = [
        "follower-lease-expiry",
        "watch-skip-compacted",
        "lease-no-checkpoint",
    ];
}
