//! The lab: the lecture notes' classic fault-tolerance algorithms, each run as a small
//! sans-IO protocol core on one seeded discrete-event core ([`sim`]), checked by a
//! checker per claimed property, and measured.
//!
//! Every scenario shows its claim holding and its counter-example breaking it at fixed
//! seeds; with `trace` on, the headline runs print an event log that replays
//! byte-identically from the same seed.
//!
//! ```
//! let report = lab::run("two-generals", 1, false).unwrap();
//! assert!(report.all_as_expected());
//! assert!(lab::list().contains(&"tmr"));
//! ```
//!
//! Glossary shared by the scenarios: a *claim* is a property the notes assert in a
//! setting (agreement, validity, termination, a bound); a *counter-example* is a seeded
//! run where the checker finds the property violated, as the notes predict; a
//! *planted bug* is a deliberately wrong protocol variant a checker must catch.
#![deny(missing_docs)]

pub mod byzantine;
pub mod checkpointing;
pub mod detectors;
pub mod flooding;
pub mod multicast;
pub mod paxos;
pub mod report;
pub mod sim;
mod svg;
pub mod sweep;
pub mod three_pc;
pub mod tmr;
pub mod tmr_chain;
pub mod two_generals;
pub mod two_pc;

pub use report::{Expect, Figure, Report, Series, Verdict, Violation};

use std::fmt;
use std::path::Path;

/// The seed `run_all` uses, and a sensible default for the command line.
pub const DEFAULT_SEED: u64 = 1;

/// Errors the lab's API can return.
#[derive(Debug)]
pub enum LabError {
    /// No scenario has this name; the list is in [`list`].
    UnknownScenario(String),
    /// Writing the report directory failed.
    Io(std::io::Error),
}

impl fmt::Display for LabError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LabError::UnknownScenario(name) => {
                write!(f, "unknown scenario {name:?}; known: {}", list().join(", "))
            }
            LabError::Io(e) => write!(f, "writing the lab report: {e}"),
        }
    }
}

impl std::error::Error for LabError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            LabError::Io(e) => Some(e),
            LabError::UnknownScenario(_) => None,
        }
    }
}

impl From<std::io::Error> for LabError {
    fn from(e: std::io::Error) -> LabError {
        LabError::Io(e)
    }
}

struct Scenario {
    name: &'static str,
    run: fn(u64, bool) -> Report,
}

const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: two_generals::NAME,
        run: two_generals::run,
    },
    Scenario {
        name: flooding::NAME,
        run: flooding::run,
    },
    Scenario {
        name: byzantine::NAME,
        run: byzantine::run,
    },
    Scenario {
        name: paxos::NAME,
        run: paxos::run,
    },
    Scenario {
        name: two_pc::NAME,
        run: two_pc::run,
    },
    Scenario {
        name: three_pc::NAME,
        run: three_pc::run,
    },
    Scenario {
        name: multicast::NAME,
        run: multicast::run,
    },
    Scenario {
        name: tmr::NAME,
        run: tmr::run,
    },
    Scenario {
        name: checkpointing::NAME,
        run: checkpointing::run,
    },
    Scenario {
        name: detectors::NAME,
        run: detectors::run,
    },
];

/// The scenario names, in the order `lab all` runs them.
pub fn list() -> Vec<&'static str> {
    SCENARIOS.iter().map(|s| s.name).collect()
}

/// Runs one scenario from `seed`; with `trace`, the report carries the event trace.
pub fn run(name: &str, seed: u64, trace: bool) -> Result<Report, LabError> {
    let scenario = SCENARIOS
        .iter()
        .find(|s| s.name == name)
        .ok_or_else(|| LabError::UnknownScenario(name.to_string()))?;
    Ok((scenario.run)(seed, trace))
}

/// Runs every scenario at [`DEFAULT_SEED`] with traces on and writes the report
/// directory with [`write_report`].
pub fn run_all(dir: &Path) -> Result<Vec<Report>, LabError> {
    let reports: Vec<Report> = SCENARIOS
        .iter()
        .map(|s| (s.run)(DEFAULT_SEED, true))
        .collect();
    write_report(dir, &reports)?;
    Ok(reports)
}

/// Writes `dir/index.html` (every verdict and plot inline) and, per report,
/// `NAME.txt` (the text report), `NAME.trace.txt` (when traced), and
/// `NAME-FIGURE.svg` / `NAME-FIGURE.csv` for each figure. Creates `dir` if needed.
pub fn write_report(dir: &Path, reports: &[Report]) -> Result<(), LabError> {
    std::fs::create_dir_all(dir)?;
    for report in reports {
        let name = report.scenario;
        std::fs::write(dir.join(format!("{name}.txt")), report.render_text())?;
        if let Some(trace) = &report.trace {
            std::fs::write(dir.join(format!("{name}.trace.txt")), trace)?;
        }
        for fig in &report.figures {
            std::fs::write(dir.join(format!("{name}-{}.svg", fig.id)), fig.to_svg())?;
            std::fs::write(dir.join(format!("{name}-{}.csv", fig.id)), fig.to_csv())?;
        }
    }
    std::fs::write(dir.join("index.html"), report::index_html(reports))?;
    Ok(())
}
