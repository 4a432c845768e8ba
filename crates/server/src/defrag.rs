//! Defragment, for real: the member cuts a snapshot at its applied index now (not when
//! the policy would), compacts its log through it at once (keeping no entries behind),
//! and deletes every older snapshot file. What is left on disk is what the store and
//! the log need: the newest snapshot, and the WAL after it (whose covered segments go
//! at the next sync). `Status.dbSize` is the bytes on disk, so it shows.

use crate::driver::Driver;
use engine::{Fatal, Index};
use tokio::sync::oneshot;
use tonic::Status;

/// A defragmentation's client.
pub type DefragReply = oneshot::Sender<Result<(), Status>>;

/// Defragmentations asked for and not yet done.
#[derive(Default)]
pub(crate) struct Defrag {
    waiting: Vec<DefragReply>,
    /// The snapshot that will satisfy them, once begun.
    at: Option<Index>,
    /// Done: answered at the end of the round, once the compaction is synced.
    done: bool,
}

impl Driver {
    /// A client asked for a defragmentation.
    pub(crate) fn on_defrag(&mut self, reply: DefragReply) {
        self.defrag.waiting.push(reply);
    }

    /// The index to cut a snapshot at for waiting defragmentations, if one is due.
    pub(crate) fn defrag_due(&mut self) -> Option<Index> {
        if self.defrag.waiting.is_empty() || self.defrag.at.is_some() || self.defrag.done {
            return None;
        }
        let applied = self.replica.applied();
        if applied <= self.replica.snapshot_index() {
            // Nothing applied since the last snapshot: only old files to drop.
            self.defrag.done = true;
            return None;
        }
        self.defrag.at = Some(applied);
        Some(applied)
    }

    /// Whether a written snapshot at `index` should replace the log at once: while a
    /// defragmentation waits, any does (one older than it asked for goes first, and
    /// the next is cut at the applied index).
    pub(crate) fn defrag_wants(&self, index: Index) -> bool {
        !self.defrag.waiting.is_empty() && self.defrag.at.is_none_or(|at| index >= at)
    }

    /// The snapshot at `index` replaced the log: the defragmentation is done once that
    /// is durable.
    pub(crate) fn defrag_compacted(&mut self, index: Index) {
        if self.defrag.at.is_some_and(|at| index >= at) {
            self.defrag.at = None;
            self.defrag.done = true;
        }
    }

    /// End of a round: drops older snapshot files and answers finished
    /// defragmentations.
    pub(crate) fn finish_defrag(&mut self) -> Result<(), Fatal> {
        if !self.defrag.done {
            return Ok(());
        }
        self.defrag.done = false;
        let newest = self.replica.snapshot_index();
        self.remove_snapshots_before(newest)?;
        for w in self.defrag.waiting.drain(..) {
            let _ = w.send(Ok(()));
        }
        Ok(())
    }
}
