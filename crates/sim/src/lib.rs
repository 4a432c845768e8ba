//! A deterministic simulator for Synod's protocol cores.
//!
//! One seed drives everything: network latency, loss, duplication and partitions;
//! crashes, restarts and pauses; disk latency and torn unsynced writes; client
//! workload timing. Time is virtual (microseconds) and the simulator is
//! single-threaded, so the same seed replays the same run event for event.
//!
//! After every event, incremental checkers verify Raft's safety properties:
//! election safety, log matching, leader completeness, state-machine safety, and that
//! commit and apply indexes never move backwards (durable commit included, across
//! restarts). A run ends with a liveness phase (faults stop, everything heals; the
//! cluster must converge within a bound) and a linearizability check of the client
//! history with the `check` crate.
//!
//! ```
//! use sim::{run_seed, FaultSet, SimOptions};
//!
//! let opts = SimOptions { nodes: 3, fault_phase_us: 2_000_000, faults: FaultSet::parse("drop,crash").unwrap(), ..SimOptions::default() };
//! let outcome = run_seed(7, &opts, false);
//! assert!(outcome.violation.is_none(), "{:?}", outcome.violation);
//! // Replays are exact.
//! let again = run_seed(7, &opts, false);
//! assert_eq!(outcome.stats, again.stats);
//! ```
#![deny(missing_docs)]

mod client;
mod control;
mod hash;
mod host;
mod invariants;
pub mod kv;
mod lease_check;
mod lease_client;
mod lock_check;
mod lock_client;
mod membership;
mod nemesis;
pub mod net;
mod options;
mod raft_engine;
mod run;
mod watch;
mod watch_check;
mod world;

pub use invariants::Violation;
#[cfg(feature = "planted-bugs")]
pub use options::WorkloadBug;
pub use options::{FaultKind, FaultSet, SimOptions, UnknownFault};
pub use raft_engine::Status;
pub use run::{run_seed, SeedOutcome};
pub use world::{Simulation, Stats};
