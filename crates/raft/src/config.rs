//! Node configuration and its validation.

use crate::types::NodeId;
use std::fmt;

/// A deliberately wrong protocol variant, used only to prove that checkers catch bugs.
#[cfg(feature = "planted-bugs")]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlantedBug {
    /// Commit an entry from a previous term by counting replicas (Raft §5.4.2, Figure 8).
    Figure8Commit,
    /// Send a vote before the vote is durable.
    UnpersistedVote,
    /// On an AppendEntries conflict keep the follower's entries instead of truncating.
    NoConflictTruncate,
    /// Leadership transfer trusts the target: TimeoutNow goes before it caught up, and a
    /// transfer vote is granted without the log check.
    TransferUnchecked,
    /// A leader starts a membership change before the previous one is committed (and
    /// before it committed an entry of its term): the single-server-change hazard.
    OverlappingConfigChange,
}

#[cfg(feature = "planted-bugs")]
impl PlantedBug {
    /// Parses the command-line name (`figure8-commit`, `unpersisted-vote`,
    /// `no-conflict-truncate`, `transfer-unchecked`, `overlapping-config-change`).
    pub fn from_name(name: &str) -> Option<PlantedBug> {
        match name {
            "figure8-commit" => Some(PlantedBug::Figure8Commit),
            "unpersisted-vote" => Some(PlantedBug::UnpersistedVote),
            "no-conflict-truncate" => Some(PlantedBug::NoConflictTruncate),
            "transfer-unchecked" => Some(PlantedBug::TransferUnchecked),
            "overlapping-config-change" => Some(PlantedBug::OverlappingConfigChange),
            _ => None,
        }
    }

    /// Every planted bug's command-line name.
    pub const NAMES: [&'static str; 5] = [
        "figure8-commit",
        "unpersisted-vote",
        "no-conflict-truncate",
        "transfer-unchecked",
        "overlapping-config-change",
    ];
}

/// Everything a node needs to know at start.
#[derive(Clone, Debug)]
pub struct Config {
    /// This node.
    pub id: NodeId,
    /// The voting members a brand-new cluster starts with, including `id`; the log and
    /// the snapshot override it once they hold a membership change. Empty for a
    /// member that joins a running cluster: it learns its group from the leader, and
    /// never campaigns before.
    pub voters: Vec<NodeId>,
    /// The drivers' bytes about founding voters (names, URLs), put in the founding
    /// membership so that every later membership, and every member that joins, has
    /// them. Every founding member must give the same.
    pub contexts: Vec<(NodeId, crate::types::Payload)>,
    /// Minimum election timeout; the actual one is drawn from `[t, 2t)` at each reset.
    pub election_timeout_ticks: u64,
    /// How often a leader sends heartbeats.
    pub heartbeat_interval_ticks: u64,
    /// Probe electability before raising the term (Raft thesis §9.6).
    pub pre_vote: bool,
    /// A leader that has not heard from a quorum within an election timeout steps down,
    /// and followers that heard from a leader recently ignore vote requests (leader lease).
    pub check_quorum: bool,
    /// Bound on un-acknowledged AppendEntries per follower while pipelining.
    pub max_inflight_appends: usize,
    /// Bound on entries in one AppendEntries.
    pub max_append_entries: usize,
    /// Soft bound on bytes of entries in one AppendEntries (at least one entry is sent).
    pub max_append_bytes: usize,
    /// Size of one InstallSnapshot chunk.
    pub snapshot_chunk_bytes: usize,
    /// Seed of every random choice the node makes.
    pub seed: u64,
    /// A deliberate bug to plant (checker self-tests only).
    #[cfg(feature = "planted-bugs")]
    pub planted_bug: Option<PlantedBug>,
}

impl Config {
    /// A configuration with sensible defaults for the given member set.
    pub fn new(id: NodeId, voters: Vec<NodeId>) -> Config {
        Config {
            id,
            voters,
            contexts: Vec::new(),
            election_timeout_ticks: 10,
            heartbeat_interval_ticks: 2,
            pre_vote: true,
            check_quorum: true,
            max_inflight_appends: 64,
            max_append_entries: 1024,
            max_append_bytes: 1 << 20,
            snapshot_chunk_bytes: 64 << 10,
            seed: id.0,
            #[cfg(feature = "planted-bugs")]
            planted_bug: None,
        }
    }

    /// The founding membership: the voters, with their contexts.
    pub(crate) fn founding(&self) -> engine::Membership {
        let mut m = engine::Membership::of_voters(self.voters.iter().copied());
        for (id, context) in &self.contexts {
            let context = context.clone();
            let update = engine::ConfChange::Update { id: *id, context };
            m = m.apply(&update).unwrap_or(m);
        }
        m
    }

    /// Checks the configuration; every node constructor calls this.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.id == NodeId(0) {
            return Err(ConfigError::ZeroNodeId);
        }
        let mut sorted = self.voters.clone();
        sorted.sort();
        if let Some(w) = sorted.windows(2).find(|w| w[0] == w[1]) {
            return Err(ConfigError::DuplicateVoter(w[0]));
        }
        if sorted.first() == Some(&NodeId(0)) {
            return Err(ConfigError::ZeroNodeId);
        }
        if !self.voters.is_empty() && !self.voters.contains(&self.id) {
            return Err(ConfigError::SelfNotVoter(self.id));
        }
        if self.heartbeat_interval_ticks == 0 {
            return Err(ConfigError::ZeroHeartbeat);
        }
        if self.election_timeout_ticks <= self.heartbeat_interval_ticks {
            return Err(ConfigError::ElectionTimeoutNotAboveHeartbeat {
                election_timeout_ticks: self.election_timeout_ticks,
                heartbeat_interval_ticks: self.heartbeat_interval_ticks,
            });
        }
        if self.max_inflight_appends == 0
            || self.max_append_entries == 0
            || self.snapshot_chunk_bytes == 0
        {
            return Err(ConfigError::ZeroLimit);
        }
        Ok(())
    }
}

/// Why a configuration was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigError {
    /// Node id 0 is reserved for "none".
    ZeroNodeId,
    /// A voter appears twice.
    DuplicateVoter(NodeId),
    /// The node is not among the voters.
    SelfNotVoter(NodeId),
    /// Heartbeat interval of zero ticks.
    ZeroHeartbeat,
    /// Election timeout must exceed the heartbeat interval.
    ElectionTimeoutNotAboveHeartbeat {
        /// Configured election timeout.
        election_timeout_ticks: u64,
        /// Configured heartbeat interval.
        heartbeat_interval_ticks: u64,
    },
    /// A batching or chunking limit of zero.
    ZeroLimit,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::ZeroNodeId => write!(f, "node id 0 is reserved"),
            ConfigError::DuplicateVoter(id) => write!(f, "voter {id} is listed twice"),
            ConfigError::SelfNotVoter(id) => write!(f, "node {id} is not among the voters"),
            ConfigError::ZeroHeartbeat => write!(f, "heartbeat interval must be at least 1 tick"),
            ConfigError::ElectionTimeoutNotAboveHeartbeat {
                election_timeout_ticks,
                heartbeat_interval_ticks,
            } => write!(
                f,
                "election timeout ({election_timeout_ticks} ticks) must be above the heartbeat interval ({heartbeat_interval_ticks} ticks)"
            ),
            ConfigError::ZeroLimit => write!(f, "inflight, batch and chunk limits must be positive"),
        }
    }
}

impl std::error::Error for ConfigError {}
