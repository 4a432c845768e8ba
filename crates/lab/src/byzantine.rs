//! placeholder
use crate::report::Report;
/// The scenario's name.
pub const NAME: &str = "byzantine-generals";
/// placeholder
pub fn run(seed: u64, _trace: bool) -> Report {
    Report::new(NAME, "", seed)
}
