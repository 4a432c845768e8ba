//! Piecewise snapshots: the store serialized a few thousand keys at a time, so whoever
//! owns it can keep applying writes between pieces. The result is the store exactly as
//! it was when the writer began (later versions are skipped; the store holds back
//! compaction meanwhile).

use crate::store::{retained, Key, Store};
use std::ops::Bound;

/// The format's first bytes, its version in the last three: version 2 added each
/// lease's TTL and checkpointed remaining TTL. [`Store::restore`] refuses any other.
pub(crate) const MAGIC: &[u8; 8] = b"SYNKV002";

/// Serializes a [`Store`] as of [`SnapshotWriter::begin`] in pieces.
///
/// Between `begin` and the last `step` the store must hold its history
/// ([`Store::hold_history`]) and must not be replaced; writes may be applied freely.
///
/// The bytes can be taken as they are produced ([`SnapshotWriter::take_pending`]), so
/// that a large snapshot never sits whole in memory. The first `head_len` bytes hold
/// the key count, known only at the end: whoever streams the chunks overwrites them
/// with [`SnapshotEnd::head`].
#[derive(Debug)]
pub struct SnapshotWriter {
    out: Vec<u8>,
    revision: i64,
    /// The compact revision as of `begin`: history below it is left out.
    compact: i64,
    applied_index: u64,
    /// The head as begun (the key count, its last 8 bytes, still zero).
    head: Vec<u8>,
    keys: u64,
    cursor: Option<Key>,
    done: bool,
    /// Bytes taken so far (the first `head_len` of them are the placeholder head).
    taken: u64,
    /// CRC32C of the taken bytes after the head.
    taken_crc: u32,
}

/// How a streamed snapshot ends.
#[derive(Debug)]
pub struct SnapshotEnd {
    /// The snapshot's first bytes, to write over the placeholder that began the stream.
    pub head: Vec<u8>,
    /// The bytes after the last chunk taken, through the closing checksum.
    pub tail: Vec<u8>,
}

impl SnapshotWriter {
    /// Starts a snapshot of `store` as it is now.
    pub fn begin(store: &Store) -> SnapshotWriter {
        let mut out = Vec::new();
        out.extend_from_slice(MAGIC);
        for n in [store.revision, store.compact_revision] {
            out.extend_from_slice(&n.to_le_bytes());
        }
        out.extend_from_slice(&store.applied_index.to_le_bytes());
        out.extend_from_slice(&(store.leases.len() as u64).to_le_bytes());
        // Attachments are not written: restore rebuilds them from each key's lease.
        for (id, l) in &store.leases {
            for n in [*id, l.ttl, l.remaining_ttl] {
                out.extend_from_slice(&n.to_le_bytes());
            }
        }
        // The key count comes last in the head.
        out.extend_from_slice(&0u64.to_le_bytes());
        SnapshotWriter {
            head: out.clone(),
            out,
            revision: store.revision,
            compact: store.compact_revision,
            applied_index: store.applied_index,
            keys: 0,
            cursor: None,
            done: false,
            taken: 0,
            taken_crc: 0,
        }
    }

    /// Reserves room for the whole snapshot of `store` (for [`SnapshotWriter::finish`]).
    pub(crate) fn reserve_whole(&mut self, store: &Store) {
        self.out.reserve(capacity_for(store));
    }

    /// Length of the head that [`SnapshotEnd::head`] replaces.
    pub fn head_len(&self) -> usize {
        self.head.len()
    }

    /// Bytes serialized but not yet taken.
    pub fn pending(&self) -> usize {
        self.out.len()
    }

    /// The bytes serialized since the last take, once there are at least `min` of
    /// them (and the whole head); serialization goes on into `spare`, cleared.
    pub fn take_pending(&mut self, min: usize, mut spare: Vec<u8>) -> Option<Vec<u8>> {
        let skip = if self.taken == 0 { self.head_len() } else { 0 };
        if self.out.len() < min.max(skip) {
            return None;
        }
        spare.clear();
        let chunk = std::mem::replace(&mut self.out, spare);
        self.taken_crc = crc32c::crc32c_append(self.taken_crc, &chunk[skip..]);
        self.taken += chunk.len() as u64;
        Some(chunk)
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
            // What the compaction as of the start keeps, whether or not it is dropped yet.
            let hist = retained(hist, self.compact);
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

    /// The finished snapshot ([`Store::restore`] reads it back); only when nothing
    /// was taken.
    pub fn finish(self) -> Vec<u8> {
        assert_eq!(
            self.taken, 0,
            "finish after take_pending: use finish_streamed"
        );
        let head_len = self.head_len();
        let end = self.finish_streamed();
        let mut whole = end.tail;
        whole[..head_len].copy_from_slice(&end.head);
        whole
    }

    /// The head with its key count and the rest of the snapshot after the chunks
    /// taken; the closing checksum covers the final head.
    pub fn finish_streamed(self) -> SnapshotEnd {
        let head_len = self.head_len();
        let skip = if self.taken == 0 { head_len } else { 0 };
        let mut head = self.head;
        let mut tail = self.out;
        let rest_crc = crc32c::crc32c_append(self.taken_crc, &tail[skip..]);
        let rest_len = (self.taken + tail.len() as u64) as usize - head_len;
        head[head_len - 8..].copy_from_slice(&self.keys.to_le_bytes());
        let crc = crc32c::crc32c_combine(crc32c::crc32c(&head), rest_crc, rest_len);
        tail.extend_from_slice(&crc.to_le_bytes());
        SnapshotEnd { head, tail }
    }
}

/// An upper bound on a snapshot's size, reserved up front so that a large snapshot is
/// never copied to grow (untouched capacity is never resident). A key with n versions
/// serializes to at most 16 + n bytes more than `approx_bytes` counts for it (key
/// framing once, a presence byte per version; the key itself is counted n times there),
/// and every version counts at least 40.
fn capacity_for(store: &Store) -> usize {
    let approx = store.approx_bytes() as usize;
    approx + approx / 40 * 17 + 24 * store.leases.len() + 64
}

pub(crate) fn put_bytes(w: &mut Vec<u8>, b: &[u8]) {
    w.extend_from_slice(&(b.len() as u64).to_le_bytes());
    w.extend_from_slice(b);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DeleteRangeRequest, PutRequest};

    /// Streams `s` taking chunks of at least `min` bytes after every `per_step` keys;
    /// returns the assembled bytes with the head written over its placeholder.
    fn streamed(s: &Store, min: usize, per_step: usize) -> (Vec<u8>, usize) {
        let mut w = SnapshotWriter::begin(s);
        let head_len = w.head_len();
        let (mut bytes, mut chunks) = (Vec::new(), 0);
        loop {
            let done = w.step(s, per_step);
            if let Some(c) = w.take_pending(min, Vec::new()) {
                bytes.extend_from_slice(&c);
                chunks += 1;
            }
            if done {
                break;
            }
        }
        let end = w.finish_streamed();
        bytes.extend_from_slice(&end.tail);
        bytes[..head_len].copy_from_slice(&end.head);
        (bytes, chunks)
    }

    #[test]
    fn a_streamed_snapshot_is_byte_for_byte_the_whole_one() {
        let mut s = Store::new();
        for id in 1..=3 {
            s.lease_grant(id, 10 * id).unwrap();
        }
        for k in 0..200u32 {
            let r = PutRequest {
                key: k.to_be_bytes().to_vec(),
                value: vec![k as u8; (k % 50) as usize],
                ..Default::default()
            };
            s.put(&r).unwrap();
        }
        let whole = s.snapshot();
        // Chunks smaller than the head, of a few keys, of one key, and none at all.
        for (min, per_step) in [(1, 1), (10, 7), (100, 3), (1000, 50), (usize::MAX, 10)] {
            let (bytes, chunks) = streamed(&s, min, per_step);
            assert_eq!(
                bytes, whole,
                "chunks of at least {min} every {per_step} keys"
            );
            assert_eq!(chunks > 0, min < whole.len() / 2, "{min}: {chunks} chunks");
            assert_eq!(Store::restore(&bytes).unwrap(), s);
        }
        // A placeholder head left in place is caught by the checksum.
        let mut w = SnapshotWriter::begin(&s);
        while !w.step(&s, 10) {}
        let chunk = w.take_pending(1, Vec::new()).unwrap();
        let mut bytes = chunk;
        bytes.extend_from_slice(&w.finish_streamed().tail);
        assert!(Store::restore(&bytes).is_err());
    }

    #[test]
    fn reserved_capacity_holds_the_whole_snapshot() {
        // Worst cases for the bound: empty values, many versions, tombstones, leases.
        let mut s = Store::new();
        for id in 1..=5 {
            s.lease_grant(id, 60).unwrap();
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
