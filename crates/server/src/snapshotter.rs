//! Snapshots that do not stall the Raft thread. The driver marks the store's history as
//! held and serializes it a slice at a time between rounds (a couple of milliseconds
//! each, so replication and applies go on; writes applied meanwhile are skipped by
//! revision). Every megabyte serialized goes to a low-priority background thread,
//! which writes it to the snapshot file and hands the buffer back for the next one, so
//! a snapshot never sits whole in memory. Once every key is read, the history is
//! released; the thread writes the head (the key count, known only then), makes the
//! file durable and reports back through the driver's input queue. The driver then
//! hands the snapshot to the Raft core, which compacts the log once enough entries
//! follow it for slightly lagging followers to catch up by log.
//!
//! The store is never read by another thread while the snapshot is cut: an earlier
//! version serialized it from a background thread under the store's read lock, and
//! under `etcdctl check perf --load=l` the driver then waited up to 1.3 s for the lock
//! and for CPU.

use crate::driver::Input;
use crate::inbox::InboxSender;
use crate::raft_engine::SnapshotMeta;
use crate::state::Shared;
use kv::{SnapshotEnd, SnapshotWriter};
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, Instant};
use storage::{FileBackend, SnapshotStream};

/// Keys serialized between two checks of the slice's time budget.
const KEYS_PER_STEP: usize = 256;

/// Serialized bytes handed to the writing thread at a time.
const CHUNK: usize = 1 << 20;

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
    /// The driver is reading the store into `writer`, a slice per round, and passing
    /// the bytes to the writing thread.
    Serializing {
        /// The snapshot so far.
        writer: SnapshotWriter,
        /// The way to the writing thread (which knows the snapshot's name).
        sink: Sink,
    },
    /// The background thread is finishing the file.
    Writing,
    /// Durable (this many bytes), waiting for the log to move far enough past it to
    /// compact.
    Ready(SnapshotMeta, u64),
}

/// What the driver sends the writing thread.
enum Part {
    Chunk(Vec<u8>),
    End(SnapshotEnd),
}

/// The driver's end of the writing thread: chunks go one way, emptied buffers come
/// back. Dropping it without [`finish`] abandons the snapshot (its file is removed).
#[derive(Debug)]
pub struct Sink {
    parts: mpsc::Sender<Part>,
    spare: mpsc::Receiver<Vec<u8>>,
}

impl std::fmt::Debug for Part {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Part::Chunk(c) => write!(f, "Chunk({} bytes)", c.len()),
            Part::End(e) => write!(f, "End({} bytes)", e.tail.len()),
        }
    }
}

/// Where a snapshot goes: its name, the directory, and the engine's bytes that end it.
pub struct Target {
    /// The snapshot's name.
    pub meta: SnapshotMeta,
    /// The member's snapshot directory.
    pub dir: PathBuf,
    /// What the engine keeps after the store's bytes (`Engine::snapshot_trailer`).
    pub trailer: Vec<u8>,
}

/// Starts a snapshot of the store as it is now, and its writing thread (whose outcome
/// arrives as an input).
pub fn begin(shared: &Shared, target: Target, report: InboxSender) -> Result<SnapState, String> {
    let meta = target.meta;
    let mut store = shared.store.write();
    let writer = SnapshotWriter::begin(&store);
    let (parts, parts_rx) = mpsc::channel();
    let (spare_tx, spare) = mpsc::channel();
    let head_len = writer.head_len();
    let commit = shared.metrics.backend_commit_seconds.clone();
    std::thread::Builder::new()
        .name("snapshot".into())
        .spawn(move || {
            lower_priority();
            let started = Instant::now();
            let written = write_parts(&target, head_len, &parts_rx, &spare_tx, &commit);
            let Some(outcome) = written else {
                return;
            };
            if let SnapOutcome::Written(_, len) = &outcome {
                tracing::info!(
                    event = "snapshot_taken",
                    index = meta.index.0,
                    bytes = len,
                    ms = started.elapsed().as_millis() as u64,
                    "snapshot written"
                );
            }
            let _ = report.send(Input::Snapshot(outcome));
        })
        .map_err(|e| format!("cannot start the snapshot thread: {e}"))?;
    store.hold_history();
    Ok(SnapState::Serializing {
        writer,
        sink: Sink { parts, spare },
    })
}

/// The writing thread's work: `None` when the driver abandoned the snapshot. The commit
/// (the tail and head written, the file synced) is timed into `commit`.
fn write_parts(
    target: &Target,
    head_len: usize,
    parts: &mpsc::Receiver<Part>,
    spare: &mpsc::Sender<Vec<u8>>,
    commit: &prometheus::Histogram,
) -> Option<SnapOutcome> {
    // An error is kept until the end so that the driver's chunks are still taken.
    // (Opening the backend creates the directory if it is missing.)
    let (dir, meta) = (&target.dir, target.meta);
    let mut stream = FileBackend::open(dir)
        .and_then(|_| SnapshotStream::create(dir, raft_storage::id_of(meta), head_len))
        .map_err(|e| e.to_string());
    loop {
        let part = match parts.recv() {
            Ok(p) => p,
            Err(_) => {
                if let Ok(s) = stream {
                    s.abandon();
                }
                return None;
            }
        };
        match part {
            Part::Chunk(c) => {
                if let Ok(s) = &mut stream {
                    if let Err(e) = s.append(&c) {
                        stream = Err(e.to_string());
                    }
                }
                let _ = spare.send(c);
            }
            Part::End(end) => {
                let committing = Instant::now();
                let written = stream.and_then(|mut s| {
                    s.append(&end.tail).map_err(|e| e.to_string())?;
                    s.append(&target.trailer).map_err(|e| e.to_string())?;
                    s.finish(&end.head).map_err(|e| e.to_string())
                });
                if written.is_ok() {
                    commit.observe(committing.elapsed().as_secs_f64());
                }
                return Some(match written {
                    Ok(len) => SnapOutcome::Written(meta, len),
                    Err(e) => SnapOutcome::Failed(e),
                });
            }
        }
    }
}

/// Serializes for about `budget`, passing each megabyte to the writing thread; true
/// once every key is read (the caller then releases the history and calls
/// [`finish`]).
pub fn step(writer: &mut SnapshotWriter, sink: &Sink, shared: &Shared, budget: Duration) -> bool {
    let store = shared.store.read();
    let start = Instant::now();
    loop {
        let done = writer.step(&store, KEYS_PER_STEP);
        if writer.pending() >= CHUNK {
            let spare = (sink.spare.try_recv()).unwrap_or_else(|_| Vec::with_capacity(CHUNK * 2));
            if let Some(chunk) = writer.take_pending(CHUNK, spare) {
                // A send fails only if the thread is gone; its outcome then says why.
                let _ = sink.parts.send(Part::Chunk(chunk));
            }
        }
        if done {
            return true;
        }
        if start.elapsed() >= budget {
            return false;
        }
    }
}

/// Hands the rest of the snapshot to the writing thread, which makes the file durable.
pub fn finish(writer: SnapshotWriter, sink: Sink) {
    let _ = sink.parts.send(Part::End(writer.finish_streamed()));
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
                    tracing::warn!(event = "segment_prepare_failed", error = %e, "preparing the next WAL segment failed");
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
