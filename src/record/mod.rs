//! Where verdicts go: the results log and the run's statistics.

mod metrics;
mod overlay;
mod results;
mod stats;

pub use metrics::MetricsFile;
pub use overlay::{overlay, Snapshot};
pub use results::{PartRecord, ResultsLog, StageLatency};
pub use stats::{RunStats, Summary};
