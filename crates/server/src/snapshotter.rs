//! Snapshots written off the Raft thread. The driver marks the store's history as held
//! and starts a [`kv::SnapshotWriter`]; a background thread serializes the store a few
//! thousand keys at a time under the read lock (applies go on between pieces), writes
//! the snapshot file durably and reports back through the driver's input queue. The
//! driver then hands the snapshot to the Raft core, which compacts the log once enough
//! entries follow it for slightly lagging followers to catch up by log.

use crate::driver::Input;
use crate::state::Shared;
use kv::SnapshotWriter;
use raft::{Payload, Snapshot, SnapshotMeta};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use storage::FileBackend;

/// Keys serialized per hold of the store's read lock.
const KEYS_PER_PIECE: usize = 2048;

/// What became of a background snapshot.
#[derive(Debug)]
pub enum SnapOutcome {
    /// The file is durable.
    Written(SnapshotMeta, Payload),
    /// The store was replaced (a leader's snapshot was installed) before it finished.
    Aborted,
    /// Writing or syncing the file failed: the member must stop.
    Failed(String),
}

/// The driver's view of the background snapshot.
#[derive(Debug, Default)]
pub enum SnapState {
    /// None in progress.
    #[default]
    Idle,
    /// Being written.
    Writing {
        /// Set before replacing the store: the thread then gives up.
        abort: Arc<AtomicBool>,
    },
    /// Durable, waiting for the log to move far enough past it to compact.
    Ready(SnapshotMeta, Payload),
}

/// Starts writing a snapshot named `meta` of the store as it is now. The caller holds
/// nothing; this takes the store's write lock briefly to hold its history.
pub fn start(
    shared: &Arc<Shared>,
    meta: SnapshotMeta,
    dir: PathBuf,
    report: Sender<Input>,
) -> Result<SnapState, String> {
    let writer = {
        let mut store = shared.store.write().unwrap();
        store.hold_history();
        SnapshotWriter::begin(&store)
    };
    let abort = Arc::new(AtomicBool::new(false));
    let job = Job {
        shared: shared.clone(),
        abort: abort.clone(),
        writer,
        meta,
        dir,
    };
    std::thread::Builder::new()
        .name("snapshot".into())
        .spawn(move || {
            let outcome = job.run();
            let _ = report.send(Input::Snapshot(outcome));
        })
        .map_err(|e| format!("cannot start the snapshot thread: {e}"))?;
    Ok(SnapState::Writing { abort })
}

struct Job {
    shared: Arc<Shared>,
    abort: Arc<AtomicBool>,
    writer: SnapshotWriter,
    meta: SnapshotMeta,
    dir: PathBuf,
}

impl Job {
    fn run(mut self) -> SnapOutcome {
        loop {
            let store = self.shared.store.read().unwrap();
            // The driver sets `abort` before it takes the write lock to replace the
            // store, so under the read lock an unset flag means the same store.
            if self.abort.load(Ordering::Acquire) {
                return SnapOutcome::Aborted;
            }
            if self.writer.step(&store, KEYS_PER_PIECE) {
                break;
            }
        }
        let snapshot = Snapshot {
            meta: self.meta,
            data: self.writer.finish().into(),
        };
        let saved = FileBackend::open(&self.dir)
            .map_err(|e| e.to_string())
            .and_then(|mut b| {
                storage::save_snapshot_file(&mut b, &snapshot).map_err(|e| e.to_string())
            });
        match saved {
            Ok(()) => SnapOutcome::Written(snapshot.meta, snapshot.data),
            Err(e) => SnapOutcome::Failed(e),
        }
    }
}
