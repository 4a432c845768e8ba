//! Replicated lease state: which leases exist, their granted TTL, the remaining TTL
//! of their last checkpoint, and the keys attached to each. Time is not here: the
//! leader's [`crate::Lessor`] decides when a lease expires and proposes its revoke.

use crate::store::{Key, Store};
use crate::types::KvError;
use std::collections::{BTreeMap, BTreeSet};

/// The largest lease TTL etcd accepts, in seconds.
pub const MAX_LEASE_TTL: i64 = 9_000_000_000;

/// One lease as the store holds it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Lease {
    /// The granted TTL, in seconds.
    pub(crate) ttl: i64,
    /// The remaining TTL of the last checkpoint, in seconds (0: none since the grant or
    /// the last renew).
    pub(crate) remaining_ttl: i64,
    /// The keys whose current version carries this lease.
    pub(crate) keys: BTreeSet<Key>,
}

/// A lease as [`Store::lease`] reports it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LeaseInfo {
    /// The lease id.
    pub id: i64,
    /// The granted TTL, in seconds.
    pub ttl: i64,
    /// The remaining TTL recorded by the last checkpoint, in seconds (0: none).
    pub remaining_ttl: i64,
    /// The attached keys, in key order.
    pub keys: Vec<Vec<u8>>,
}

/// Moves `key` from lease `from` to lease `to` (0: none); a lease that does not exist
/// is skipped.
pub(crate) fn reattach(leases: &mut BTreeMap<i64, Lease>, key: &Key, from: i64, to: i64) {
    if from == to {
        return;
    }
    if let Some(l) = leases.get_mut(&from) {
        l.keys.remove(key);
    }
    if let Some(l) = leases.get_mut(&to) {
        l.keys.insert(key.clone());
    }
}

/// SplitMix64's finalizer: a well-mixed 64-bit function of `x`.
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// `id` or the first id above it (wrapping within 63 bits, skipping 0) not granted.
fn first_free(leases: &BTreeMap<i64, Lease>, mut id: i64) -> i64 {
    while id == 0 || leases.contains_key(&id) {
        id = id.wrapping_add(1) & i64::MAX;
    }
    id
}

impl Store {
    /// An id for a lease granted with id 0 at log index `index`: a hash of the index
    /// masked to 63 bits, moved up to the first free positive id. Every replica applies
    /// the same grant at the same index over the same leases, so all pick the same id.
    fn pick_lease_id(&self, index: u64) -> i64 {
        first_free(&self.leases, (mix(index) & i64::MAX as u64) as i64)
    }

    /// Grants lease `id` (0: the store picks a free positive id from the log index
    /// being applied) with `ttl` seconds, taken as given (the server raises it to the
    /// minimum TTL before proposing). Returns the lease id. No new revision.
    pub fn lease_grant(&mut self, id: i64, ttl: i64) -> Result<i64, KvError> {
        if ttl > MAX_LEASE_TTL {
            return Err(KvError::LeaseTtlTooLarge);
        }
        let id = match id {
            0 => self.pick_lease_id(self.applied_index),
            id if self.leases.contains_key(&id) => return Err(KvError::LeaseExists),
            id => id,
        };
        let lease = Lease {
            ttl,
            ..Lease::default()
        };
        self.leases.insert(id, lease);
        Ok(id)
    }

    /// A keep-alive that went through the log: the lease's checkpointed remaining TTL
    /// is cleared (a new leader gives it the whole TTL again). Returns the granted TTL.
    pub fn lease_renew(&mut self, id: i64) -> Result<i64, KvError> {
        let lease = self.leases.get_mut(&id).ok_or(KvError::LeaseNotFound)?;
        lease.remaining_ttl = 0;
        Ok(lease.ttl)
    }

    /// Records the leader's remaining TTLs, `(id, seconds)`; ids that are not granted
    /// are skipped and a negative remaining TTL counts as 0 (none).
    pub fn lease_checkpoint(&mut self, checkpoints: &[(i64, i64)]) {
        for &(id, remaining) in checkpoints {
            if let Some(lease) = self.leases.get_mut(&id) {
                lease.remaining_ttl = remaining.max(0);
            }
        }
    }

    /// Lease `id`, if granted.
    pub fn lease(&self, id: i64) -> Option<LeaseInfo> {
        let l = self.leases.get(&id)?;
        Some(LeaseInfo {
            id,
            ttl: l.ttl,
            remaining_ttl: l.remaining_ttl,
            keys: l.keys.iter().map(|k| k.to_vec()).collect(),
        })
    }

    /// Every granted lease id, in ascending order.
    pub fn lease_ids(&self) -> Vec<i64> {
        self.leases.keys().copied().collect()
    }

    /// Whether lease `id` is granted.
    pub fn has_lease(&self, id: i64) -> bool {
        self.leases.contains_key(&id)
    }

    /// The attachments as each key's current version says: every live key with a
    /// lease, grouped by lease. False if a key names a lease that is not granted.
    pub(crate) fn rebuild_attachments(&mut self) -> bool {
        for lease in self.leases.values_mut() {
            lease.keys.clear();
        }
        for (k, hist) in &self.keys {
            let Some(v) = hist.last().filter(|v| v.value.is_some() && v.lease != 0) else {
                continue;
            };
            match self.leases.get_mut(&v.lease) {
                Some(l) => l.keys.insert(k.clone()),
                None => return false,
            };
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picked_ids_are_positive_free_and_a_function_of_the_index() {
        let mut a = Store::new();
        let b = Store::new();
        for index in [0, 1, 2, 7, u64::MAX] {
            let id = a.pick_lease_id(index);
            assert!(id > 0);
            assert_eq!(id, b.pick_lease_id(index));
            a.leases.insert(id, Lease::default());
            let next = a.pick_lease_id(index);
            assert!(next > 0 && next != id, "{next} after {id}");
        }
        // The bump goes up past granted ids, wraps within 63 bits and skips 0.
        let mut leases = BTreeMap::new();
        for id in [5, 6, i64::MAX, 1] {
            leases.insert(id, Lease::default());
        }
        assert_eq!(first_free(&leases, 5), 7);
        assert_eq!(first_free(&leases, 4), 4);
        assert_eq!(first_free(&leases, i64::MAX), 2);
        assert_eq!(first_free(&BTreeMap::new(), 0), 1);
    }
}
