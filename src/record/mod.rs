//! Where verdicts go: the results log and the run's statistics.

mod results;
mod stats;

pub use results::{PartRecord, ResultsLog, StageLatency};
pub use stats::{RunStats, Summary};
