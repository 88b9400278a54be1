//! Where verdicts go: the results log and the run's statistics.

mod metrics;
mod overlay;
mod results;
mod summary;

pub use metrics::{Metrics, MetricsFile, OPENMETRICS_CONTENT_TYPE, TEXT_CONTENT_TYPE};
pub use overlay::{overlay, Snapshot};
pub use results::{PartRecord, ResultsLog, StageLatency};
pub use summary::{RunStats, Summary};
