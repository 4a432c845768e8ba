//! A fast in-memory model of Raft's disk with crash semantics, used when the `disk`
//! fault class is off. With `disk` on, nodes run the real write-ahead log
//! (`raft_storage::DiskStorage`) on the fault-injecting `storage::SimDisk`.

use raft::{
    Entry, EntryWrite, HardState, PersistRequest, Recovered, Snapshot, SnapshotMeta, SnapshotWrite,
};
use seedrng::Rng;

use raft_storage::RaftStorage;
use storage::{SnapshotChunk, StorageError};

/// One buffered write, kept separately so a crash can keep a prefix and tear the rest.
#[derive(Clone, Debug)]
enum PendingOp {
    Snapshot(Snapshot),
    Entries(EntryWrite),
    HardState(HardState),
}

/// What survives on the modelled disk.
#[derive(Clone, Debug, Default)]
struct DurableImage {
    hard_state: HardState,
    snapshot: Option<Snapshot>,
    /// The snapshot before `snapshot` (kept for transfers under way, as on disk).
    previous: Option<Snapshot>,
    entries: Vec<Entry>,
}

impl DurableImage {
    fn apply(&mut self, op: PendingOp) {
        match op {
            PendingOp::Snapshot(s) => {
                self.entries.retain(|e| e.index > s.meta.index);
                self.previous = self.snapshot.replace(s);
            }
            PendingOp::Entries(w) => {
                self.entries.retain(|e| e.index < w.from);
                let next = self.entries.last().map(|e| e.index.next());
                let snap_next = self
                    .snapshot
                    .as_ref()
                    .map_or(raft::LogIndex(1), |s| s.meta.index.next());
                let expect = next.unwrap_or(snap_next);
                // Writes below the snapshot point are dropped; a gap means corruption in a
                // real log and cannot happen with prefix semantics.
                self.entries
                    .extend(w.entries.into_iter().filter(|e| e.index >= expect));
            }
            PendingOp::HardState(h) => self.hard_state = h,
        }
    }
}

/// How a crash treats writes that were never synced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrashMode {
    /// Every unsynced write is lost.
    LoseUnsynced,
    /// A random prefix of unsynced writes survives; the last surviving one may be torn.
    TearUnsynced,
}

/// An in-memory disk: a durable image plus the writes not yet synced.
#[derive(Clone, Debug, Default)]
pub struct MemStorage {
    durable: DurableImage,
    pending: Vec<PendingOp>,
}

impl MemStorage {
    /// An empty disk.
    pub fn new() -> MemStorage {
        MemStorage::default()
    }

    /// Power loss: drops or tears unsynced writes as `mode` says, using `rng`.
    pub fn crash(&mut self, mode: CrashMode, rng: &mut Rng) {
        let pending = std::mem::take(&mut self.pending);
        if mode == CrashMode::LoseUnsynced || pending.is_empty() {
            return;
        }
        let keep = rng.range(0, pending.len() as u64 + 1) as usize;
        for (i, op) in pending.into_iter().enumerate().take(keep) {
            let op = match op {
                PendingOp::Entries(mut w) if i + 1 == keep && rng.chance(1, 2) => {
                    let cut = rng.range(0, w.entries.len() as u64 + 1) as usize;
                    w.entries.truncate(cut);
                    PendingOp::Entries(w)
                }
                other => other,
            };
            self.durable.apply(op);
        }
    }

    /// The durable hard state (what a restart would see).
    pub fn durable_hard_state(&self) -> HardState {
        self.durable.hard_state
    }
}

impl RaftStorage for MemStorage {
    fn write(&mut self, request: &PersistRequest) -> Result<(), StorageError> {
        if let Some(h) = request.hard_state {
            self.pending.push(PendingOp::HardState(h));
        }
        match &request.snapshot {
            Some(SnapshotWrite::Store(s)) => self.pending.push(PendingOp::Snapshot(s.clone())),
            Some(SnapshotWrite::Saved(meta)) => {
                return Err(StorageError::Io(format!(
                    "the model disk holds snapshots by value only, not saved {meta:?}"
                )))
            }
            None => {}
        }
        if let Some(w) = &request.entries {
            self.pending.push(PendingOp::Entries(w.clone()));
        }
        Ok(())
    }

    fn sync(&mut self) -> Result<(), StorageError> {
        for op in std::mem::take(&mut self.pending) {
            self.durable.apply(op);
        }
        Ok(())
    }

    fn read_snapshot_chunk(
        &mut self,
        meta: SnapshotMeta,
        offset: u64,
        max: usize,
    ) -> Result<Option<SnapshotChunk>, StorageError> {
        // The two newest snapshots written, synced or not.
        let mut held: Vec<&Snapshot> = self
            .pending
            .iter()
            .filter_map(|op| match op {
                PendingOp::Snapshot(s) => Some(s),
                _ => None,
            })
            .chain(self.durable.snapshot.iter())
            .chain(self.durable.previous.iter())
            .collect();
        held.sort_by_key(|s| std::cmp::Reverse(s.meta.index));
        held.dedup_by_key(|s| s.meta.index);
        let Some(s) = held.into_iter().take(2).find(|s| s.meta == meta) else {
            return Ok(None);
        };
        let start = (offset as usize).min(s.data.len());
        let end = start.saturating_add(max).min(s.data.len());
        Ok(Some(SnapshotChunk {
            data: s.data[start..end].to_vec(),
            checksum: crc32c::crc32c(&s.data),
        }))
    }

    fn recover(&mut self) -> Result<Recovered, StorageError> {
        self.pending.clear();
        Ok(Recovered {
            hard_state: self.durable.hard_state,
            snapshot: self.durable.snapshot.clone(),
            entries: self.durable.entries.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft::{EntryKind, IoId, LogIndex, SnapshotMeta, Term};

    fn entries(from: u64, to: u64, term: u64) -> Vec<Entry> {
        (from..=to)
            .map(|i| Entry {
                term: Term(term),
                index: LogIndex(i),
                kind: EntryKind::Noop,
            })
            .collect()
    }

    fn write(from: u64, es: Vec<Entry>, hs: Option<HardState>) -> PersistRequest {
        PersistRequest {
            io: IoId(1),
            snapshot: None,
            entries: Some(EntryWrite {
                from: LogIndex(from),
                entries: es,
            }),
            hard_state: hs,
        }
    }

    #[test]
    fn synced_writes_survive_unsynced_are_lost() {
        let mut s = MemStorage::new();
        let hs = HardState {
            term: Term(2),
            vote: None,
            commit: LogIndex(0),
        };
        s.write(&write(1, entries(1, 3, 1), Some(hs))).unwrap();
        s.sync().unwrap();
        s.write(&write(4, entries(4, 5, 2), None)).unwrap();
        s.crash(CrashMode::LoseUnsynced, &mut Rng::new(1));
        let r = s.recover().unwrap();
        assert_eq!(r.entries.len(), 3);
        assert_eq!(r.hard_state, hs);
    }

    #[test]
    fn truncation_and_snapshot_compaction() {
        let mut s = MemStorage::new();
        s.write(&write(1, entries(1, 5, 1), None)).unwrap();
        s.write(&write(3, entries(3, 4, 2), None)).unwrap();
        let snap = Snapshot {
            meta: SnapshotMeta {
                index: LogIndex(2),
                term: Term(1),
            },
            data: vec![1].into(),
        };
        s.write(&PersistRequest {
            io: IoId(2),
            snapshot: Some(SnapshotWrite::Store(snap)),
            entries: None,
            hard_state: None,
        })
        .unwrap();
        s.sync().unwrap();
        let r = s.recover().unwrap();
        let got: Vec<(u64, u64)> = r.entries.iter().map(|e| (e.index.0, e.term.0)).collect();
        assert_eq!(got, vec![(3, 2), (4, 2)]);
        assert_eq!(r.snapshot.unwrap().meta.index, LogIndex(2));
    }

    #[test]
    fn torn_crash_keeps_a_prefix_only() {
        for seed in 0..50 {
            let mut s = MemStorage::new();
            s.write(&write(1, entries(1, 4, 1), None)).unwrap();
            s.write(&write(5, entries(5, 8, 1), None)).unwrap();
            s.crash(CrashMode::TearUnsynced, &mut Rng::new(seed));
            let r = s.recover().unwrap();
            // Whatever survives is contiguous from index 1.
            for (i, e) in r.entries.iter().enumerate() {
                assert_eq!(e.index, LogIndex(i as u64 + 1));
            }
        }
    }
}
