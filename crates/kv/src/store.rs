//! The multi-version store: per key, its history of versions and tombstones.

use crate::events::Event;
use crate::lease::Lease;
use crate::snapshot::{SnapshotWriter, MAGIC};
use crate::types::KeyValue;
use std::collections::BTreeMap;
use std::ops::Bound;

/// One version of a key; `value == None` is a deletion (tombstone).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Version {
    pub(crate) rev: i64,
    pub(crate) create: i64,
    pub(crate) version: i64,
    pub(crate) value: Option<Vec<u8>>,
    pub(crate) lease: i64,
}

/// The replicated key-value state.
// Invariant: each history is sorted by `rev`; compact_revision <= revision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Store {
    pub(crate) keys: BTreeMap<Key, Vec<Version>>,
    pub(crate) revision: i64,
    pub(crate) compact_revision: i64,
    /// Granted leases by id, with the keys attached to each.
    pub(crate) leases: BTreeMap<i64, Lease>,
    pub(crate) applied_index: u64,
    /// Approximate bytes held (see [`version_cost`]), kept up to date on every change.
    pub(crate) bytes: u64,
    /// While a snapshot is being written piecewise, the history below
    /// `compact_revision` stays (until [`Store::release_history`]).
    /// How many readers hold the history back (piecewise snapshots).
    pub(crate) history_held: u32,
    /// History below `compact_revision` may remain ([`Store::compact_step`] drops it).
    pub(crate) compaction_pending: bool,
    /// The key the next [`Store::compact_step`] resumes after.
    pub(crate) compact_cursor: Option<Key>,
    /// The events of the writes applied while recording ([`Store::set_record_events`]);
    /// `None` when not recording. Not replicated: not in snapshots or digests.
    pub(crate) events: Option<Vec<Event>>,
    /// A deliberately planted bug (not replicated: a restored store has none).
    #[cfg(feature = "planted-bugs")]
    pub(crate) bug: Option<crate::KvBug>,
}

/// A key as the store holds it. Keys of up to 16 bytes live inside the map's node, so
/// a lookup compares bytes it already has in cache instead of following a pointer per
/// key it passes (Rust's B-tree searches each node linearly). Longer keys spill to the
/// heap as a `Vec<u8>` would.
pub(crate) type Key = smallvec::SmallVec<[u8; 16]>;

/// What one version of `key` costs in [`Store::approx_bytes`].
pub(crate) fn version_cost(key: &[u8], v: &Version) -> u64 {
    (key.len() + v.value.as_ref().map_or(0, |x| x.len()) + 40) as u64
}

impl Default for Store {
    fn default() -> Store {
        Store {
            keys: BTreeMap::new(),
            revision: 1,
            compact_revision: 0,
            leases: BTreeMap::new(),
            applied_index: 0,
            bytes: 0,
            history_held: 0,
            compaction_pending: false,
            compact_cursor: None,
            events: None,
            #[cfg(feature = "planted-bugs")]
            bug: None,
        }
    }
}

/// The key bounds etcd's `key`/`range_end` pair denotes.
pub(crate) fn bounds<'a>(key: &'a [u8], end: &'a [u8]) -> (Bound<&'a [u8]>, Bound<&'a [u8]>) {
    if end.is_empty() {
        return (Bound::Included(key), Bound::Included(key));
    }
    if end == [0] {
        return (Bound::Included(key), Bound::Unbounded);
    }
    if end <= key {
        // An empty range; BTreeMap::range panics on inverted bounds.
        return (Bound::Included(key), Bound::Excluded(key));
    }
    (Bound::Included(key), Bound::Excluded(end))
}

/// The part of `hist` a compaction at `compact` keeps: from the latest version at or
/// below it (unless that is a tombstone) onwards.
pub(crate) fn retained(hist: &[Version], compact: i64) -> &[Version] {
    let from = hist.iter().rposition(|v| v.rev <= compact).unwrap_or(0);
    let hist = &hist[from..];
    match hist.first() {
        Some(v) if v.rev <= compact && v.value.is_none() => &hist[1..],
        _ => hist,
    }
}

/// The key's state at `rev`, if it exists then.
pub(crate) fn at(key: &[u8], hist: &[Version], rev: i64) -> Option<KeyValue> {
    key_value(key, live_at(hist, rev)?)
}

/// The version of a key's history that is current at `rev`, unless it is a deletion.
pub(crate) fn live_at(hist: &[Version], rev: i64) -> Option<&Version> {
    hist.iter()
        .rev()
        .find(|v| v.rev <= rev)
        .filter(|v| v.value.is_some())
}

/// `v` of `key` as a KeyValue (`None` for a deletion).
pub(crate) fn key_value(key: &[u8], v: &Version) -> Option<KeyValue> {
    Some(KeyValue {
        key: key.to_vec(),
        create_revision: v.create,
        mod_revision: v.rev,
        version: v.version,
        value: v.value.clone()?,
        lease: v.lease,
    })
}

impl Store {
    /// A fresh store at revision 1.
    pub fn new() -> Store {
        Store::default()
    }

    /// The current revision.
    pub fn revision(&self) -> i64 {
        self.revision
    }

    /// The compaction point (0: never compacted).
    pub fn compact_revision(&self) -> i64 {
        self.compact_revision
    }

    /// The last log index applied.
    pub fn applied_index(&self) -> u64 {
        self.applied_index
    }

    /// Keys with any history held, live or deleted (memory use; compaction shrinks it).
    pub fn stored_keys(&self) -> usize {
        self.keys.len()
    }

    /// How many keys in the range are live at `rev` (nothing is copied).
    pub(crate) fn count_live(&self, key: &[u8], end: &[u8], rev: i64) -> usize {
        self.keys
            .range::<[u8], _>(bounds(key, end))
            .filter(|(_, h)| {
                h.iter()
                    .rev()
                    .find(|v| v.rev <= rev)
                    .is_some_and(|v| v.value.is_some())
            })
            .count()
    }

    /// The first `n` live keys of the range at `rev`, in key order.
    pub(crate) fn live_first(&self, key: &[u8], end: &[u8], rev: i64, n: usize) -> Vec<KeyValue> {
        self.keys
            .range::<[u8], _>(bounds(key, end))
            .filter_map(|(k, h)| at(k, h, rev))
            .take(n)
            .collect()
    }

    /// Live keys in the range at `rev`.
    pub(crate) fn live(&self, key: &[u8], end: &[u8], rev: i64) -> Vec<KeyValue> {
        self.keys
            .range::<[u8], _>(bounds(key, end))
            .filter_map(|(k, h)| at(k, h, rev))
            .collect()
    }

    /// Compacts to `rev`: reads below it fail from now on; the history it makes
    /// unreachable goes in [`Store::compact_step`]s.
    pub(crate) fn compact_to(&mut self, rev: i64) {
        self.compact_revision = rev;
        self.compaction_pending = true;
        self.compact_cursor = None;
    }

    /// Whether a compaction has history left to drop ([`Store::compact_step`]).
    pub fn compaction_pending(&self) -> bool {
        self.compaction_pending
    }

    /// Drops the history below the compact revision from up to `max_keys` more keys, so
    /// that a large compaction can be spread between other work; true once no history
    /// below it is left. Does nothing while history is held. Reads, hashes and
    /// snapshots are the same before and after each step.
    pub fn compact_step(&mut self, max_keys: usize) -> bool {
        if !self.compaction_pending {
            return true;
        }
        if self.history_held > 0 {
            return false;
        }
        let rev = self.compact_revision;
        let from = match &self.compact_cursor {
            Some(k) => Bound::Excluded(k.as_slice()),
            None => Bound::Unbounded,
        };
        let (mut seen, mut last, mut emptied) = (0, None, Vec::new());
        let bytes = &mut self.bytes;
        for (k, hist) in self.keys.range_mut::<[u8], _>((from, Bound::Unbounded)) {
            if seen == max_keys {
                break;
            }
            seen += 1;
            let drop = hist.len() - retained(hist, rev).len();
            for v in hist.drain(..drop) {
                *bytes -= version_cost(k, &v);
            }
            if hist.is_empty() {
                emptied.push(k.clone());
            }
            last = Some(k);
        }
        let done = seen < max_keys;
        self.compact_cursor = if done { None } else { last.cloned() };
        for k in emptied {
            self.keys.remove(&k);
        }
        self.compaction_pending = !done;
        done
    }

    /// Keeps every version until [`Store::release_history`] (a [`SnapshotWriter`] reads
    /// the store in pieces and needs the history as of its start). Holds nest: a
    /// member's own snapshot and a backup may read at once.
    pub fn hold_history(&mut self) {
        self.history_held += 1;
    }

    /// Ends one [`Store::hold_history`]; once none is left, a pending compaction goes
    /// on in [`Store::compact_step`]s.
    pub fn release_history(&mut self) {
        self.history_held = self.history_held.saturating_sub(1);
    }

    /// Approximate bytes held by keys, values and per-version bookkeeping: Status's db
    /// size and what `--quota-backend-bytes` limits. O(1).
    pub fn approx_bytes(&self) -> u64 {
        self.bytes
    }

    /// Recomputes [`Store::approx_bytes`] from scratch (after a restore).
    pub(crate) fn recount(&mut self) {
        self.bytes = self
            .keys
            .iter()
            .flat_map(|(k, hist)| hist.iter().map(move |v| version_cost(k, v)))
            .sum();
    }

    /// CRC32C over every version at or below `rev` (etcd's HashKV): equal on members
    /// with the same history.
    pub fn hash(&self, rev: i64) -> u32 {
        let mut crc = 0u32;
        for (k, hist) in &self.keys {
            let hist = retained(hist, self.compact_revision);
            for v in hist.iter().filter(|v| v.rev <= rev) {
                crc = crc32c::crc32c_append(crc, &(k.len() as u64).to_le_bytes());
                crc = crc32c::crc32c_append(crc, k);
                crc = crc32c::crc32c_append(crc, &v.rev.to_le_bytes());
                match &v.value {
                    Some(val) => crc = crc32c::crc32c_append(crc, val),
                    None => crc = crc32c::crc32c_append(crc, b"\xfftombstone"),
                }
            }
        }
        crc
    }

    /// Whole-state serialization for Raft snapshots (see [`SnapshotWriter`] for the
    /// piecewise form).
    pub fn snapshot(&self) -> Vec<u8> {
        let mut w = SnapshotWriter::begin(self);
        w.reserve_whole(self);
        while !w.step(self, usize::MAX) {}
        w.finish()
    }

    /// Inverse of [`Store::snapshot`]; refuses anything malformed, and a snapshot of
    /// another format version. Lease attachments are rebuilt from the keys; the event
    /// log ([`Store::set_record_events`]) starts off.
    pub fn restore(b: &[u8]) -> Result<Store, SnapshotError> {
        let (body, crc) = b.split_at(b.len().checked_sub(4).ok_or(SnapshotError)?);
        // Version 1 (before leases) is read when it holds no lease, which it never
        // could: nothing granted one. Any other version is refused like damage.
        let v1 = body.starts_with(MAGIC_V1);
        if crc32c::crc32c(body).to_le_bytes() != crc || !(v1 || body.starts_with(MAGIC)) {
            return Err(SnapshotError);
        }
        let mut r = Reader {
            b: body,
            at: MAGIC.len(),
        };
        let mut s = Store {
            revision: r.i64()?,
            compact_revision: r.i64()?,
            applied_index: r.u64()?,
            ..Store::default()
        };
        match v1 {
            true if r.u64()? != 0 => return Err(SnapshotError),
            true => {}
            false => read_leases(&mut r, &mut s.leases)?,
        }
        for _ in 0..r.u64()? {
            let k = r.bytes()?;
            let n = r.u64()?;
            let mut hist = Vec::new();
            for _ in 0..n {
                let (rev, create, version, lease) = (r.i64()?, r.i64()?, r.i64()?, r.i64()?);
                let value = match r.u8()? {
                    1 => Some(r.bytes()?),
                    0 => None,
                    _ => return Err(SnapshotError),
                };
                hist.push(Version {
                    rev,
                    create,
                    version,
                    value,
                    lease,
                });
            }
            s.keys.insert(Key::from_vec(k), hist);
        }
        if r.at != body.len() || s.compact_revision > s.revision || !s.rebuild_attachments() {
            return Err(SnapshotError);
        }
        s.recount();
        Ok(s)
    }
}

/// The snapshot format before leases: `MAGIC_V1 | revision | compact revision |
/// applied index | lease id count (always 0) | keys`, as version 2 without the leases.
const MAGIC_V1: &[u8; 8] = b"SYNKV001";

/// A snapshot that failed validation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SnapshotError;

impl std::fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("malformed key-value snapshot")
    }
}

impl std::error::Error for SnapshotError {}

/// The leases of a snapshot: a count, then `id, ttl, remaining_ttl` each, by id.
fn read_leases(r: &mut Reader<'_>, leases: &mut BTreeMap<i64, Lease>) -> Result<(), SnapshotError> {
    for _ in 0..r.u64()? {
        let (id, ttl, remaining_ttl) = (r.i64()?, r.i64()?, r.i64()?);
        // Ids are written in ascending order, each once, and none is 0.
        if id == 0 || leases.last_key_value().is_some_and(|(&last, _)| last >= id) {
            return Err(SnapshotError);
        }
        let lease = Lease {
            ttl,
            remaining_ttl,
            ..Lease::default()
        };
        leases.insert(id, lease);
    }
    Ok(())
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], SnapshotError> {
        let end = self.at.checked_add(n).ok_or(SnapshotError)?;
        let s = self.b.get(self.at..end).ok_or(SnapshotError)?;
        self.at = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, SnapshotError> {
        Ok(self.take(1)?[0])
    }
    fn u64(&mut self) -> Result<u64, SnapshotError> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().map_err(|_| SnapshotError)?,
        ))
    }
    fn i64(&mut self) -> Result<i64, SnapshotError> {
        Ok(self.u64()? as i64)
    }
    fn bytes(&mut self) -> Result<Vec<u8>, SnapshotError> {
        let n = usize::try_from(self.u64()?).map_err(|_| SnapshotError)?;
        Ok(self.take(n)?.to_vec())
    }
}
