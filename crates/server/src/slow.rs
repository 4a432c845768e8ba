//! Where a slow round of the Raft thread went: every client write waits for the round
//! that persists it and the round that applies it, so one round longer than
//! [`SLOW_ROUND`] is a latency outlier somebody will ask about. The driver times the
//! phases of each round; a slow one is logged with its breakdown (like etcd's "apply
//! request took too long" warnings, but naming the phase).

use std::fmt;
use std::time::{Duration, Instant};

/// Rounds longer than this are logged.
pub const SLOW_ROUND: Duration = Duration::from_millis(100);

/// The phases a round's time is split into (in the order they are printed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Stepping inputs (peer messages, proposals, reads) through the core.
    Step,
    /// Writing persist requests to the WAL (before the sync).
    Write,
    /// The WAL's fdatasync.
    Sync,
    /// Applying committed entries (and installing snapshots) to the store.
    Apply,
    /// Handing a written snapshot to the core, which compacts the log.
    Compact,
    /// One slice of serializing a snapshot.
    Serialize,
    /// One slice of dropping history after a Compact.
    StoreCompact,
}

/// Each phase's name, indexed by `Phase as usize`.
const NAMES: [&str; 7] = [
    "step",
    "WAL write",
    "fdatasync",
    "apply",
    "compaction",
    "snapshot slice",
    "store compaction",
];

/// Time spent per phase in the current round.
#[derive(Debug)]
pub struct RoundTimes {
    start: Instant,
    spent: [Duration; NAMES.len()],
    applied: u64,
}

impl Default for RoundTimes {
    fn default() -> RoundTimes {
        RoundTimes {
            start: Instant::now(),
            spent: [Duration::ZERO; NAMES.len()],
            applied: 0,
        }
    }
}

impl RoundTimes {
    /// Starts a new round.
    pub fn begin(&mut self) {
        *self = RoundTimes::default();
    }

    /// Adds `spent` to `phase`.
    pub fn add(&mut self, phase: Phase, spent: Duration) {
        self.spent[phase as usize] += spent;
    }

    /// Counts applied entries.
    pub fn applied(&mut self, entries: u64) {
        self.applied += entries;
    }

    /// The breakdown, if the round took longer than `limit`.
    pub fn slow(&self, limit: Duration) -> Option<SlowRound<'_>> {
        let total = self.start.elapsed();
        (total > limit).then_some(SlowRound { t: self, total })
    }
}

/// A round over the limit, printable.
pub struct SlowRound<'a> {
    t: &'a RoundTimes,
    total: Duration,
}

impl SlowRound<'_> {
    /// The round's length, ms.
    pub fn total_ms(&self) -> u64 {
        self.total.as_millis() as u64
    }

    /// The phase that took longest (`other` when no measured phase reached 1 ms).
    pub fn phase(&self) -> &'static str {
        NAMES
            .iter()
            .zip(self.t.spent)
            .filter(|(_, d)| *d >= Duration::from_millis(1))
            .max_by_key(|(_, d)| *d)
            .map_or("other", |(name, _)| name)
    }

    /// Entries applied in the round.
    pub fn applied(&self) -> u64 {
        self.t.applied
    }
}

impl fmt::Display for SlowRound<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a Raft round took {} ms:", self.total.as_millis())?;
        let mut accounted = Duration::ZERO;
        for (name, d) in NAMES.iter().zip(self.t.spent) {
            accounted += d;
            if d >= Duration::from_millis(1) {
                write!(f, " {name} {} ms,", d.as_millis())?;
            }
        }
        let other = self.total.saturating_sub(accounted);
        write!(
            f,
            " other {} ms; {} entries applied",
            other.as_millis(),
            self.t.applied
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_round_under_the_limit_is_not_reported_and_one_over_it_names_its_phases() {
        let mut t = RoundTimes::default();
        assert!(t.slow(Duration::from_secs(3600)).is_none());
        // Backdate the phases instead of sleeping: an `Instant` in the past.
        let Some(past) = Instant::now().checked_sub(Duration::from_millis(5)) else {
            return; // the clock started less than 5 ms ago: nothing to backdate to
        };
        t.start = past;
        t.add(Phase::Sync, past.elapsed());
        t.applied(1);
        let line = t
            .slow(Duration::ZERO)
            .expect("over a zero limit")
            .to_string();
        assert!(line.starts_with("a Raft round took "), "{line}");
        assert!(line.contains(" fdatasync "), "{line}");
        assert!(!line.contains(" apply "), "{line}");
        assert!(line.ends_with("; 1 entries applied"), "{line}");
        let slow = t.slow(Duration::ZERO).unwrap();
        assert_eq!(slow.phase(), "fdatasync");
        assert_eq!(slow.applied(), 1);
    }
}
