//! Piecewise snapshots: the store serialized a few thousand keys at a time, so whoever
//! owns it can keep applying writes between pieces. The result is the store exactly as
//! it was when the writer began (later versions are skipped; the store holds back
//! compaction meanwhile).

use crate::store::{Key, Store};
use std::ops::Bound;

/// Serializes a [`Store`] as of [`SnapshotWriter::begin`] in pieces.
///
/// Between `begin` and the last `step` the store must hold its history
/// ([`Store::hold_history`]) and must not be replaced; writes may be applied freely.
#[derive(Debug)]
pub struct SnapshotWriter {
    out: Vec<u8>,
    revision: i64,
    applied_index: u64,
    count_at: usize,
    keys: u64,
    cursor: Option<Key>,
    done: bool,
}

impl SnapshotWriter {
    /// Starts a snapshot of `store` as it is now.
    pub fn begin(store: &Store) -> SnapshotWriter {
        // Every compaction so far is done, so each history is exactly what to write
        // (up to the revision as of now).
        debug_assert!(
            !store.compaction_deferred,
            "begin with a deferred compaction"
        );
        let mut out = Vec::with_capacity(capacity_for(store));
        out.extend_from_slice(b"SYNKV001");
        for n in [store.revision, store.compact_revision] {
            out.extend_from_slice(&n.to_le_bytes());
        }
        out.extend_from_slice(&store.applied_index.to_le_bytes());
        out.extend_from_slice(&(store.leases.len() as u64).to_le_bytes());
        for l in &store.leases {
            out.extend_from_slice(&l.to_le_bytes());
        }
        let count_at = out.len();
        out.extend_from_slice(&0u64.to_le_bytes());
        SnapshotWriter {
            out,
            revision: store.revision,
            applied_index: store.applied_index,
            count_at,
            keys: 0,
            cursor: None,
            done: false,
        }
    }

    /// The log index the snapshot covers.
    pub fn applied_index(&self) -> u64 {
        self.applied_index
    }

    /// Serializes up to `max_keys` more keys; true once every key is written.
    pub fn step(&mut self, store: &Store, max_keys: usize) -> bool {
        if self.done {
            return true;
        }
        let cursor = self.cursor.take();
        let from = match &cursor {
            Some(k) => Bound::Excluded(k.as_slice()),
            None => Bound::Unbounded,
        };
        let mut last = None;
        let rest = store.keys.range::<[u8], _>((from, Bound::Unbounded));
        for (k, hist) in rest.take(max_keys) {
            last = Some(k);
            let n = hist.iter().take_while(|v| v.rev <= self.revision).count();
            if n == 0 {
                continue;
            }
            self.keys += 1;
            put_bytes(&mut self.out, k);
            self.out.extend_from_slice(&(n as u64).to_le_bytes());
            for v in &hist[..n] {
                for x in [v.rev, v.create, v.version, v.lease] {
                    self.out.extend_from_slice(&x.to_le_bytes());
                }
                match &v.value {
                    Some(val) => {
                        self.out.push(1);
                        put_bytes(&mut self.out, val);
                    }
                    None => self.out.push(0),
                }
            }
        }
        match last {
            Some(k) => self.cursor = Some(k.clone()),
            None => self.done = true,
        }
        self.done
    }

    /// The finished snapshot ([`Store::restore`] reads it back).
    pub fn finish(mut self) -> Vec<u8> {
        let at = self.count_at;
        self.out[at..at + 8].copy_from_slice(&self.keys.to_le_bytes());
        let crc = crc32c::crc32c(&self.out);
        self.out.extend_from_slice(&crc.to_le_bytes());
        self.out
    }
}

/// An upper bound on a snapshot's size, reserved up front so that a large snapshot is
/// never copied to grow (untouched capacity is never resident). A key with n versions
/// serializes to at most 16 + n bytes more than `approx_bytes` counts for it (key
/// framing once, a presence byte per version; the key itself is counted n times there),
/// and every version counts at least 40.
fn capacity_for(store: &Store) -> usize {
    let approx = store.approx_bytes() as usize;
    approx + approx / 40 * 17 + 8 * store.leases.len() + 64
}

pub(crate) fn put_bytes(w: &mut Vec<u8>, b: &[u8]) {
    w.extend_from_slice(&(b.len() as u64).to_le_bytes());
    w.extend_from_slice(b);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DeleteRangeRequest, PutRequest};

    #[test]
    fn reserved_capacity_holds_the_whole_snapshot() {
        // Worst cases for the bound: empty values, many versions, tombstones, leases.
        let mut s = Store::new();
        for id in 1..=5 {
            s.grant_lease(id);
        }
        for round in 0..4u8 {
            for k in 0..50u8 {
                let key = vec![k];
                let value = if round == 1 {
                    Vec::new()
                } else {
                    vec![round; k as usize]
                };
                s.put(&PutRequest {
                    key: key.clone(),
                    value,
                    ..Default::default()
                })
                .unwrap();
                if (k + round) % 3 == 0 {
                    let d = DeleteRangeRequest {
                        key,
                        ..Default::default()
                    };
                    s.delete_range(&d).unwrap();
                }
            }
            let snap = s.snapshot();
            assert!(
                snap.len() <= capacity_for(&s),
                "{} > {}",
                snap.len(),
                capacity_for(&s)
            );
        }
    }
}
