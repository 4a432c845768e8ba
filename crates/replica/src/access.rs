//! The replica's snapshot policy verbs and read-only accessors.

use crate::policy::SnapshotPolicy;
use crate::replica::Replica;
use engine::{Engine, Index, SnapshotRefused, StateMachine, Status};

impl<E: Engine, M: StateMachine, C> Replica<E, M, C> {
    /// The index a snapshot should be cut at now, if one is due: the policy's entry
    /// count has been applied since the last one and the log grew enough.
    pub fn snapshot_due(&self) -> Option<Index> {
        let stride = self.opts.snapshot.stride(self.engine.status().id.0);
        let due = self.applied.0 >= self.snapshot_index.0.saturating_add(stride)
            && SnapshotPolicy::log_grew_enough(self.log_bytes, self.last_snapshot_len);
        due.then_some(self.applied)
    }

    /// The driver began cutting a snapshot at `index` itself (in the background): the
    /// next one counts from here.
    pub fn snapshot_begun(&mut self, index: Index) {
        self.snapshot_index = index;
        self.log_bytes = 0;
    }

    /// Whether a snapshot cut at `index` may now replace the log behind it: the policy
    /// keeps some entries behind a snapshot for followers a little behind.
    pub fn compact_ready(&self, index: Index) -> bool {
        self.applied.0 >= index.0.saturating_add(self.opts.snapshot.keep_entries)
    }

    /// Cuts a snapshot now, if one is due, by serializing the state machine in place
    /// (the simulator's way; the server streams its snapshots to files and reports them
    /// with [`Replica::snapshot_saved`]). True when one was handed to the engine.
    pub fn maybe_snapshot(&mut self) -> Result<bool, SnapshotRefused> {
        let Some(index) = self.snapshot_due() else {
            return Ok(false);
        };
        let data = self.machine.snapshot();
        self.snapshot_begun(index);
        self.last_snapshot_len = data.len() as u64;
        self.engine.snapshot_taken(index, data.into())?;
        Ok(true)
    }

    /// A snapshot of `len` bytes at `index` that the driver made durable itself: the
    /// engine may drop what it covers.
    pub fn snapshot_saved(&mut self, index: Index, len: u64) -> Result<(), SnapshotRefused> {
        self.last_snapshot_len = len;
        self.engine.snapshot_saved(index, len)
    }

    /// Forgets the clients `keep` rejects (their callers stopped waiting), wherever
    /// they wait.
    pub fn retain_clients(&mut self, mut keep: impl FnMut(&C) -> bool) {
        self.proposed.retain(|_, (_, c)| keep(c));
        self.forwarded.retain(|_, c| keep(c));
        self.reads.retain(|_, c| keep(c));
        self.ready_reads.retain(|_, c| keep(c));
    }

    /// Every client still waiting, removed (the node is stopping).
    pub fn drain_clients(&mut self) -> Vec<C> {
        let proposed = std::mem::take(&mut self.proposed)
            .into_values()
            .map(|(_, c)| c);
        let forwarded = std::mem::take(&mut self.forwarded).into_values();
        let reads = std::mem::take(&mut self.reads).into_values();
        let ready = std::mem::take(&mut self.ready_reads).into_values();
        proposed
            .chain(forwarded)
            .chain(reads)
            .chain(ready)
            .collect()
    }

    /// The engine's summary.
    pub fn status(&self) -> Status {
        self.engine.status()
    }

    /// The engine (read-only: every input goes through the replica).
    pub fn engine(&self) -> &E {
        &self.engine
    }

    /// The state machine.
    pub fn machine(&self) -> &M {
        &self.machine
    }

    /// The state machine, for work outside the replicated order that leaves its
    /// replicated state alone (physical compaction in slices, snapshot cutting).
    pub fn machine_mut(&mut self) -> &mut M {
        &mut self.machine
    }

    /// The last index applied to the state machine.
    pub fn applied(&self) -> Index {
        self.applied
    }

    /// The last snapshot point (cut, begun or installed).
    pub fn snapshot_index(&self) -> Index {
        self.snapshot_index
    }

    /// Snapshots installed from elsewhere so far.
    pub fn snapshots_installed(&self) -> u64 {
        self.snapshots_installed
    }

    /// Commands refused before they entered the order (validation failed).
    pub fn commands_refused(&self) -> u64 {
        self.commands_refused
    }

    /// Client requests still waiting for an answer.
    pub fn in_flight(&self) -> usize {
        self.proposed.len() + self.forwarded.len() + self.reads.len() + self.ready_reads.len()
    }
}

impl<E: Engine, M: StateMachine, C> std::fmt::Debug for Replica<E, M, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replica")
            .field("engine", &E::NAME)
            .field("status", &self.engine.status())
            .field("applied", &self.applied)
            .field("in_flight", &self.in_flight())
            .finish()
    }
}
