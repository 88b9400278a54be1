//! `[record]`: where verdicts are recorded.

use super::Problems;
use serde::Deserialize;
use std::path::PathBuf;

/// `[record]`
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RecordConfig {
    /// Results log: one JSON line per part, appended (default `results.jsonl`). `--results` overrides it.
    pub results: PathBuf,
    /// Seconds between progress lines on the terminal (default 1); 0 turns them off.
    pub progress_s: f64,
    /// Which parts get their image saved with the anomaly map laid over: "none" (default),
    /// "rejects" (parts rejected on their score) or "all" inspected parts.
    pub save: SaveImages,
    /// Folder for saved images, `<id>_<reason>.png` (default `images`).
    pub save_dir: PathBuf,
    /// Prometheus text file (for node_exporter's textfile collector, e.g.
    /// `/var/lib/node_exporter/textfile_collector/linesight.prom`): parts, rejects by reason,
    /// stage latencies and `linesight_info{model, provider}`; rewritten about once a second.
    /// Unset: none.
    pub metrics_file: Option<PathBuf>,
}

impl Default for RecordConfig {
    fn default() -> Self {
        RecordConfig {
            results: PathBuf::from("results.jsonl"),
            progress_s: 1.0,
            save: SaveImages::None,
            save_dir: PathBuf::from("images"),
            metrics_file: None,
        }
    }
}

/// `record.save`
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SaveImages {
    #[default]
    None,
    Rejects,
    All,
}

impl RecordConfig {
    pub(super) fn validate(&self, p: &mut Problems) {
        if self.results.as_os_str().is_empty() {
            p.bad("record.results", "must name a file");
        }
        if !(self.progress_s >= 0.0 && self.progress_s.is_finite()) {
            p.bad(
                "record.progress_s",
                format!("expected seconds >= 0, found {}", self.progress_s),
            );
        }
    }
}
