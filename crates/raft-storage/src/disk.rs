//! `DiskStorage`: Raft's durable state on any `Backend` — the engine-neutral WAL for
//! entries and hard state, snapshot files for snapshots.

use crate::records::{self, Replayed, KIND_ENTRY, KIND_HARD_STATE, KIND_TRUNCATE};
use crate::{id_of, meta_of, RaftStorage};
use raft::{HardState, LogIndex, PersistRequest, Recovered, Snapshot, SnapshotMeta, SnapshotWrite};
use storage::{snapfile, Backend, SnapshotChunk, StorageError, StorageOptions, Wal};

/// Durable Raft storage over a backend. After any error it stays failed: the node must
/// stop, and a failed sync is never retried.
#[derive(Debug)]
pub struct DiskStorage<B: Backend> {
    backend: B,
    opts: StorageOptions,
    wal: Wal,
    compact_after_sync: Option<LogIndex>,
    /// The newest hard state written, and the one as of the last successful sync.
    hard_state: HardState,
    durable_hard_state: HardState,
    /// The highest index the log holds (after everything written).
    last_index: LogIndex,
    failed: Option<StorageError>,
}

/// Writes snapshot `meta` durably without touching anything else in the directory: for
/// a snapshot written off the Raft thread, then handed to the core with
/// `RaftNode::compact_saved` (its persist request carries `SnapshotWrite::Saved`).
/// On real files, [`storage::SnapshotStream`] writes the same file from chunks (the
/// server's path).
pub fn save_snapshot_file<B: Backend>(
    b: &mut B,
    meta: SnapshotMeta,
    data: &[u8],
) -> Result<(), StorageError> {
    snapfile::save_durable(b, id_of(meta), data)
}

impl<B: Backend> DiskStorage<B> {
    /// Opens (recovering) the storage in `backend`; returns it and what it holds.
    pub fn open(
        mut backend: B,
        opts: StorageOptions,
    ) -> Result<(DiskStorage<B>, Recovered), StorageError> {
        let (wal, recovered, last_index) = load(&mut backend, opts)?;
        let s = DiskStorage {
            backend,
            opts,
            wal,
            compact_after_sync: None,
            hard_state: recovered.hard_state,
            durable_hard_state: recovered.hard_state,
            last_index,
            failed: None,
        };
        Ok((s, recovered))
    }

    /// The size of a WAL segment to prepare off the commit path now, if one is due
    /// (the current segment is half full and none is prepared or being prepared). The
    /// caller runs [`storage::prepare_segment`] on a backend of the same directory (a
    /// background thread, say) and then reports with [`DiskStorage::segment_prepared`];
    /// until then the storage never touches the prepared file.
    pub fn segment_to_prepare(&mut self) -> Option<u64> {
        if self.failed.is_some() {
            return None;
        }
        self.wal.segment_to_prepare()
    }

    /// The preparation asked for by [`DiskStorage::segment_to_prepare`] ended; `ok`
    /// when `prepare_segment` succeeded. After a failure the next rotation zero-fills
    /// inline, as without preparation.
    pub fn segment_prepared(&mut self, ok: bool) {
        self.wal.segment_prepared(ok);
    }

    /// Removes every snapshot file older than `index` (which must be durable): what
    /// a defragmentation keeps is the newest snapshot and the log after it.
    pub fn remove_snapshots_before(&mut self, index: LogIndex) -> Result<(), StorageError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let r = snapfile::remove_before(&mut self.backend, index.0);
        self.guard(r)
    }

    /// The backend (the simulator crashes and corrupts it through this).
    pub fn backend_mut(&mut self) -> &mut B {
        &mut self.backend
    }

    /// The hard state as of the last successful sync.
    pub fn durable_hard_state(&self) -> HardState {
        self.durable_hard_state
    }

    /// Number of WAL segment files.
    pub fn segment_count(&self) -> usize {
        self.wal.segment_count()
    }

    fn guard<T>(&mut self, r: Result<T, StorageError>) -> Result<T, StorageError> {
        if let Err(e) = &r {
            self.failed = Some(e.clone());
        }
        r
    }

    fn write_inner(&mut self, req: &PersistRequest) -> Result<(), StorageError> {
        if let Some(h) = req.hard_state {
            self.wal
                .push_anchor(KIND_HARD_STATE, &records::hard_state_payload(h));
            self.hard_state = h;
        }
        if let Some(write) = &req.snapshot {
            let meta = write.meta();
            // A snapshot that replaces the log: the replaced suffix is cut durably
            // *before* the snapshot is durable, so no crash can recover the new snapshot
            // followed by stale entries of another history.
            if let Some(w) = req.entries.as_ref().filter(|w| w.from <= meta.index.next()) {
                self.truncate(w.from);
            }
            // The hard state must be durable before the snapshot (Raft's term order).
            self.wal.sync(&mut self.backend)?;
            match write {
                SnapshotWrite::Store(s) => {
                    snapfile::save(&mut self.backend, id_of(s.meta), &s.data)?
                }
                SnapshotWrite::Saved(meta) => {
                    // Saved by the driver (`save_snapshot_file` or `SnapshotStream`): never compact the log
                    // on the word of a file that is not there.
                    if !snapfile::exists(&mut self.backend, id_of(*meta))? {
                        return Err(StorageError::Io(format!(
                            "snapshot {meta:?} was reported saved but has no file"
                        )));
                    }
                    snapfile::remove_older(&mut self.backend, meta.index.0)?;
                }
            }
            self.compact_after_sync = Some(meta.index);
        }
        if let Some(w) = &req.entries {
            if w.entries.is_empty() {
                self.truncate(w.from);
            }
            for e in &w.entries {
                self.last_index = e.index;
                self.wal
                    .push(KIND_ENTRY, e.index.0, |o| records::entry_payload(e, o));
            }
        }
        Ok(())
    }

    /// Buffers a truncation of everything from `from` on.
    fn truncate(&mut self, from: LogIndex) {
        self.last_index = self.last_index.min(from.prev());
        self.wal.push(KIND_TRUNCATE, self.last_index.0, |o| {
            o.extend_from_slice(&from.0.to_le_bytes())
        });
    }

    fn sync_inner(&mut self) -> Result<(), StorageError> {
        self.wal.sync(&mut self.backend)?;
        if let Some(index) = self.compact_after_sync.take() {
            self.wal.compact(&mut self.backend, index.0)?;
        }
        Ok(())
    }
}

/// Reads the newest snapshot and replays the log after it.
fn load<B: Backend>(
    b: &mut B,
    opts: StorageOptions,
) -> Result<(Wal, Recovered, LogIndex), StorageError> {
    let snapshot = snapfile::load_latest(b)?.map(|s| Snapshot {
        meta: meta_of(s.id),
        data: s.data.into(),
    });
    let mut replayed = Replayed {
        snapshot_index: snapshot.as_ref().map(|s| s.meta.index).unwrap_or_default(),
        ..Replayed::default()
    };
    let mut wal = Wal::open(b, crate::ENGINE, opts, &mut |kind, payload| {
        replayed.apply(kind, payload)
    })?;
    let last_index = replayed.last_index();
    let anchor = records::hard_state_payload(replayed.hard_state).to_vec();
    wal.resume(last_index.0, Some((KIND_HARD_STATE, anchor)));
    let recovered = Recovered {
        hard_state: replayed.hard_state,
        snapshot,
        entries: replayed.entries,
    };
    Ok((wal, recovered, last_index))
}

impl<B: Backend> RaftStorage for DiskStorage<B> {
    fn write(&mut self, request: &PersistRequest) -> Result<(), StorageError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let r = self.write_inner(request);
        self.guard(r)
    }

    fn sync(&mut self) -> Result<(), StorageError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let r = self.sync_inner();
        if r.is_ok() {
            self.durable_hard_state = self.hard_state;
        }
        self.guard(r)
    }

    fn read_snapshot_chunk(
        &mut self,
        meta: SnapshotMeta,
        offset: u64,
        max: usize,
    ) -> Result<Option<SnapshotChunk>, StorageError> {
        snapfile::read_chunk(&mut self.backend, id_of(meta), offset, max)
    }

    fn recover(&mut self) -> Result<Recovered, StorageError> {
        let (wal, recovered, last_index) = load(&mut self.backend, self.opts)?;
        self.wal = wal;
        self.compact_after_sync = None;
        self.hard_state = recovered.hard_state;
        self.durable_hard_state = recovered.hard_state;
        self.last_index = last_index;
        self.failed = None;
        Ok(recovered)
    }
}
