//! Where verdicts go: the results log, saved images, the metrics file, the run's
//! statistics, and the writer thread that keeps storage off the record thread.

mod flush;
mod journal;
mod metrics;
mod overlay;
mod results;
mod retention;
mod seq;
mod summary;
mod writer;

pub use flush::FlushPolicy;
pub use journal::{read as read_journal, Event as JournalEvent, Journal, JournalTx, Leftover};
pub use metrics::{Metrics, MetricsFile, OPENMETRICS_CONTENT_TYPE, TEXT_CONTENT_TYPE};
pub use overlay::{image_name, overlay, Snapshot};
pub use results::{plan_tail, results_line, NotResults, PartRecord, Repair, ResultsLog, StageLatency, TailPlan};
pub use retention::{rotated_name, Keep, Removed};
pub use seq::{SeqBlock, SeqFile, BLOCK as SEQ_BLOCK};
pub use summary::{RunStats, Summary};
pub use writer::{Health, ImageDone, ImageJob, PartJob, StorageFault, ToSinks, Writer, WriterEnd, WriterSettings};
