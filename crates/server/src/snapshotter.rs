//! Snapshots that do not stall the Raft thread. The driver marks the store's history as
//! held and serializes it a slice at a time between rounds (a couple of milliseconds
//! each, so replication and applies go on; writes applied meanwhile are skipped by
//! revision). Once every key is read, the history is released and a low-priority
//! background thread seals the snapshot, writes the file durably and reports back
//! through the driver's input queue. The driver then hands the snapshot to the Raft
//! core, which compacts the log once enough entries follow it for slightly lagging
//! followers to catch up by log.
//!
//! The store is never read by another thread while the snapshot is cut: an earlier
//! version serialized it from a background thread under the store's read lock, and
//! under `etcdctl check perf --load=l` the driver then waited up to 1.3 s for the lock
//! and for CPU.

use crate::driver::Input;
use crate::inbox::InboxSender;
use crate::state::Shared;
use kv::SnapshotWriter;
use raft::SnapshotMeta;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use storage::FileBackend;

/// Keys serialized between two checks of the slice's time budget.
const KEYS_PER_STEP: usize = 256;

/// What became of a background snapshot.
#[derive(Debug)]
pub enum SnapOutcome {
    /// The file is durable; the snapshot has this many bytes.
    Written(SnapshotMeta, u64),
    /// Writing or syncing the file failed: the member must stop.
    Failed(String),
}

/// Where the snapshot in progress is.
#[derive(Debug, Default)]
pub enum SnapState {
    /// None in progress.
    #[default]
    Idle,
    /// The driver is reading the store into `writer`, a slice per round.
    Serializing {
        /// The snapshot so far.
        writer: SnapshotWriter,
        /// Its name.
        meta: SnapshotMeta,
    },
    /// The background thread is writing the file.
    Writing,
    /// Durable (this many bytes), waiting for the log to move far enough past it to
    /// compact.
    Ready(SnapshotMeta, u64),
}

/// Starts a snapshot named `meta` of the store as it is now.
pub fn begin(shared: &Shared, meta: SnapshotMeta) -> SnapState {
    let mut store = shared.store.write();
    store.hold_history();
    SnapState::Serializing {
        writer: SnapshotWriter::begin(&store),
        meta,
    }
}

/// Serializes for about `budget`; true once every key is read (the caller then
/// releases the history and calls [`write_file`]).
pub fn step(writer: &mut SnapshotWriter, shared: &Shared, budget: Duration) -> bool {
    let store = shared.store.read();
    let start = Instant::now();
    loop {
        if writer.step(&store, KEYS_PER_STEP) {
            return true;
        }
        if start.elapsed() >= budget {
            return false;
        }
    }
}

/// Seals the snapshot and writes its file on a background thread of the lowest
/// priority (it holds no lock the driver needs); the outcome arrives as an input.
pub fn write_file(
    writer: SnapshotWriter,
    meta: SnapshotMeta,
    dir: PathBuf,
    report: InboxSender,
) -> Result<(), String> {
    std::thread::Builder::new()
        .name("snapshot".into())
        .spawn(move || {
            lower_priority();
            let started = Instant::now();
            // Written from the writer's own buffer and then dropped: the bytes are never
            // copied, and nothing but the file keeps them.
            let data = writer.finish();
            let saved = FileBackend::open(&dir)
                .map_err(|e| e.to_string())
                .and_then(|mut b| {
                    storage::save_snapshot_file(&mut b, meta, &data).map_err(|e| e.to_string())
                });
            let outcome = match saved {
                Ok(()) => {
                    eprintln!(
                        "info: snapshot at index {} written ({} MiB in {} ms)",
                        meta.index,
                        data.len() >> 20,
                        started.elapsed().as_millis()
                    );
                    SnapOutcome::Written(meta, data.len() as u64)
                }
                Err(e) => SnapOutcome::Failed(e),
            };
            let _ = report.send(Input::Snapshot(outcome));
        })
        .map(|_| ())
        .map_err(|e| format!("cannot start the snapshot thread: {e}"))
}

/// Prepares the next WAL segment (`storage::prepare_segment`) on a background thread of
/// the lowest priority; the outcome arrives as an input. A failure is only reported:
/// the rotation then zero-fills inline, where a real disk problem stops the member.
pub fn prepare_segment(dir: PathBuf, bytes: u64, report: InboxSender) {
    let spawned = std::thread::Builder::new()
        .name("wal-prepare".into())
        .spawn({
            let report = report.clone();
            move || {
                lower_priority();
                let res = FileBackend::open(&dir)
                    .map_err(|e| e.to_string())
                    .and_then(|mut b| {
                        storage::prepare_segment(&mut b, bytes).map_err(|e| e.to_string())
                    });
                if let Err(e) = &res {
                    eprintln!("warn: preparing the next WAL segment failed: {e}");
                }
                let _ = report.send(Input::SegmentPrepared(res.is_ok()));
            }
        });
    if spawned.is_err() {
        let _ = report.send(Input::SegmentPrepared(false));
    }
}

/// Nice 19 for the calling thread (Linux applies nice values per thread).
fn lower_priority() {
    // SAFETY: gettid and setpriority take no pointers; failure only leaves the
    // thread at normal priority.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, 19);
    }
}
