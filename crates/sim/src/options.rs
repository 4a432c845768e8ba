//! Simulation settings: which fault classes are enabled, timing, workload size.

use std::fmt;

/// A fault class of the command-line `--faults` list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum FaultKind {
    /// Message loss: per-link drops, send and receive omission.
    Drop,
    /// Message delay spikes and the reordering they cause.
    Delay,
    /// Message duplication.
    Duplicate,
    /// Partitions: symmetric, one-way, leader isolated, bridge; flapping.
    Partition,
    /// Crash (losing unsynced writes) and restart; at most one permanent stop.
    Crash,
    /// Pause a node (timing failure) and resume it.
    Pause,
    /// Slow disk, and power loss that tears unsynced writes.
    Disk,
    /// The leader hands leadership to another node (which may be down or cut off).
    Transfer,
    /// Membership changes: add a learner or a voter, promote, remove (the leader
    /// too), replace; two spare nodes join the run to be added.
    Membership,
}

impl FaultKind {
    /// Every fault class, in command-line order.
    pub const ALL: [FaultKind; 9] = [
        FaultKind::Drop,
        FaultKind::Delay,
        FaultKind::Duplicate,
        FaultKind::Partition,
        FaultKind::Crash,
        FaultKind::Pause,
        FaultKind::Disk,
        FaultKind::Transfer,
        FaultKind::Membership,
    ];

    /// The command-line name.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Drop => "drop",
            FaultKind::Delay => "delay",
            FaultKind::Duplicate => "duplicate",
            FaultKind::Partition => "partition",
            FaultKind::Crash => "crash",
            FaultKind::Pause => "pause",
            FaultKind::Disk => "disk",
            FaultKind::Transfer => "transfer",
            FaultKind::Membership => "membership",
        }
    }
}

/// A set of fault classes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FaultSet(Vec<FaultKind>);

/// A `--faults` list that could not be parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownFault(pub String);

impl fmt::Display for UnknownFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = FaultKind::ALL.iter().map(|k| k.name()).collect();
        write!(
            f,
            "unknown fault class '{}' (expected 'all' or a comma-separated list of {})",
            self.0,
            names.join(",")
        )
    }
}

impl std::error::Error for UnknownFault {}

impl FaultSet {
    /// Every fault class.
    pub fn all() -> FaultSet {
        FaultSet(FaultKind::ALL.to_vec())
    }

    /// No faults.
    pub fn none() -> FaultSet {
        FaultSet(Vec::new())
    }

    /// Parses `all`, `none` or a comma-separated list such as `drop,crash`.
    pub fn parse(s: &str) -> Result<FaultSet, UnknownFault> {
        let s = s.trim();
        if s == "all" {
            return Ok(FaultSet::all());
        }
        if s == "none" || s.is_empty() {
            return Ok(FaultSet::none());
        }
        let mut kinds = Vec::new();
        for part in s.split(',') {
            let part = part.trim();
            let kind = FaultKind::ALL
                .iter()
                .find(|k| k.name() == part)
                .ok_or_else(|| UnknownFault(part.to_string()))?;
            if !kinds.contains(kind) {
                kinds.push(*kind);
            }
        }
        kinds.sort();
        Ok(FaultSet(kinds))
    }

    /// Whether `kind` is enabled.
    pub fn has(&self, kind: FaultKind) -> bool {
        self.0.contains(&kind)
    }

    /// The enabled classes.
    pub fn kinds(&self) -> &[FaultKind] {
        &self.0
    }
}

impl fmt::Display for FaultSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.0.iter().map(|k| k.name()).collect();
        write!(
            f,
            "{}",
            if names.is_empty() {
                "none".to_string()
            } else {
                names.join(",")
            }
        )
    }
}

/// Everything that shapes one simulated run besides the seed.
#[derive(Clone, Debug)]
pub struct SimOptions {
    /// Cluster size.
    pub nodes: usize,
    /// Enabled fault classes.
    pub faults: FaultSet,
    /// Length of the fault phase, in simulated microseconds.
    pub fault_phase_us: u64,
    /// Bound for the liveness phase: after healing, progress must happen within it.
    pub liveness_bound_us: u64,
    /// Concurrent workload clients.
    pub clients: usize,
    /// Keys the workload touches.
    pub keys: u8,
    /// Lease holders in the workload (at most 9).
    pub lease_holders: usize,
    /// Watchers in the workload.
    pub watchers: usize,
    /// Lock clients in the workload (etcd's lock recipe, one lock).
    pub lock_clients: usize,
    /// Mean client think time between operations.
    pub think_us: u64,
    /// A client gives up on an attempt after this long and retries elsewhere.
    pub client_timeout_us: u64,
    /// One Raft tick.
    pub tick_us: u64,
    /// Raft election timeout, in ticks.
    pub election_timeout_ticks: u64,
    /// Raft heartbeat interval, in ticks.
    pub heartbeat_interval_ticks: u64,
    /// Take a snapshot once this many entries are applied past the last one.
    pub snapshot_every: u64,
    /// Revisions of history the leader keeps (etcd's revision-mode auto-compaction):
    /// once the store is twice this far past its compaction point, the leader submits a
    /// Compact to this many revisions back. 0 turns it off.
    pub auto_compact_retain: u64,
    /// Snapshot chunk size (small values exercise chunking).
    pub snapshot_chunk_bytes: usize,
    /// Most entries in one AppendEntries.
    pub max_append_entries: usize,
    /// Most unacknowledged AppendEntries per follower.
    pub max_inflight_appends: usize,
    /// Draw batching, pipelining and snapshot knobs from the seed (swarm testing), so
    /// that a sweep covers small batches (which expose Figure 8), no pipelining, tiny
    /// snapshot chunks and frequent compaction.
    pub swarm: bool,
    /// WAL segment size when nodes run the real write-ahead log (`disk` faults).
    pub wal_segment_bytes: u64,
    /// Raft pre-vote.
    pub pre_vote: bool,
    /// Raft check-quorum and leader lease.
    pub check_quorum: bool,
    /// Range of the pause between two fault injections, microseconds.
    pub fault_interval_us: (u64, u64),
    /// Deliberate protocol bug to plant.
    #[cfg(feature = "planted-bugs")]
    pub planted_bug: Option<raft::PlantedBug>,
    /// A deliberately planted bug of the replica layer (checker self-tests only).
    #[cfg(feature = "planted-bugs")]
    pub replica_bug: Option<replica::ReplicaBug>,
    /// A deliberately planted bug of the lease clock or the watch history.
    #[cfg(feature = "planted-bugs")]
    pub kv_bug: Option<kv::KvBug>,
    /// A deliberately planted bug of the simulated clients.
    #[cfg(feature = "planted-bugs")]
    pub workload_bug: Option<WorkloadBug>,
}

/// A deliberately planted bug of the workload's clients, for checker self-tests.
#[cfg(feature = "planted-bugs")]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WorkloadBug {
    /// A lock client's fenced write forgets its compare of the key's create revision.
    LockUnfenced,
}

#[cfg(feature = "planted-bugs")]
impl WorkloadBug {
    /// The bug with command-line name `name`.
    pub fn from_name(name: &str) -> Option<WorkloadBug> {
        match name {
            "lock-unfenced" => Some(WorkloadBug::LockUnfenced),
            _ => None,
        }
    }

    /// Every planted workload bug's command-line name.
    pub const NAMES: [&'static str; 1] = ["lock-unfenced"];
}

impl SimOptions {
    /// These options with the swarm knobs drawn from `seed` (unchanged if `swarm` is off).
    pub fn for_seed(&self, seed: u64) -> SimOptions {
        let mut o = self.clone();
        if !o.swarm {
            return o;
        }
        let mut rng = seedrng::Rng::new(seed ^ 0x5357_4152_4d00_0000);
        let pick = |rng: &mut seedrng::Rng, xs: &[u64]| rng.pick(xs).copied().unwrap_or(xs[0]);
        o.max_append_entries = pick(&mut rng, &[1, 2, 3, 8, 64]) as usize;
        o.max_inflight_appends = pick(&mut rng, &[1, 2, 8]) as usize;
        o.snapshot_every = pick(&mut rng, &[16, 64, 256]);
        o.snapshot_chunk_bytes = pick(&mut rng, &[16, 128, 4096]) as usize;
        o.wal_segment_bytes = pick(&mut rng, &[1 << 10, 16 << 10, 64 << 20]);
        o.pre_vote = rng.chance(3, 4);
        o.check_quorum = rng.chance(3, 4);
        o.fault_interval_us = *rng
            .pick(&[(100_000, 1_500_000), (20_000, 400_000)])
            .unwrap_or(&o.fault_interval_us);
        o
    }
}

impl Default for SimOptions {
    fn default() -> SimOptions {
        SimOptions {
            nodes: 5,
            faults: FaultSet::all(),
            fault_phase_us: 30_000_000,
            liveness_bound_us: 10_000_000,
            clients: 3,
            keys: 3,
            lease_holders: 3,
            watchers: 3,
            lock_clients: 3,
            think_us: 40_000,
            client_timeout_us: 400_000,
            tick_us: 10_000,
            election_timeout_ticks: 15,
            heartbeat_interval_ticks: 4,
            snapshot_every: 64,
            auto_compact_retain: 32,
            snapshot_chunk_bytes: 128,
            max_append_entries: 64,
            max_inflight_appends: 8,
            swarm: true,
            wal_segment_bytes: 16 << 10,
            pre_vote: true,
            check_quorum: true,
            fault_interval_us: (100_000, 1_500_000),
            #[cfg(feature = "planted-bugs")]
            planted_bug: None,
            #[cfg(feature = "planted-bugs")]
            replica_bug: None,
            #[cfg(feature = "planted-bugs")]
            kv_bug: None,
            #[cfg(feature = "planted-bugs")]
            workload_bug: None,
        }
    }
}
