//! `[record]`: where verdicts are recorded.

use super::{range, Problems};
use serde::Deserialize;
use std::path::PathBuf;

/// `[record]`
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RecordConfig {
    /// Results log: one JSON line per part, appended (default `results.jsonl`). `--results` overrides it.
    pub results: PathBuf,
    /// Seconds between progress lines on the terminal (default 1, at most 86400); 0 turns them off.
    pub progress_s: f64,
    /// Which parts get their image saved with the anomaly map laid over: "none" (default),
    /// "rejects" (parts rejected on their score) or "all" inspected parts.
    pub save: SaveImages,
    /// Folder for saved images, `<device_seq>_<run_id>_<id>_<reason>.png` (default `images`):
    /// names sort oldest first and never repeat across runs.
    pub save_dir: PathBuf,
    /// Prometheus text file (for node_exporter's textfile collector, e.g.
    /// `/var/lib/node_exporter/textfile_collector/linesight.prom`): parts, rejects by reason,
    /// stage latencies and `linesight_info{model, provider}`; rewritten about once a second.
    /// Unset: none.
    pub metrics_file: Option<PathBuf>,
    /// Results lines are made durable (fdatasync) once this many are written since the
    /// last flush (default 50), or `flush_ms` after the first of them, whichever comes first.
    /// 1 flushes every line (at most 1000000). What a power cut can lose: the README's storage section.
    pub flush_lines: u64,
    /// The longest a written results line waits for its fdatasync, ms (default 1000; 1 to 3600000).
    pub flush_ms: u64,
    /// A results or image write blocked this long (ms, default 2000; 100 to 600000) is stalled: reported
    /// in the log and the systemd STATUS, and at shutdown abandoned, so that SIGTERM ends
    /// within about this time even on storage that hangs.
    pub stall_ms: u64,
    /// Results lines (and their images) that may wait for storage that is slow or hung
    /// (default 1000; 1 to 1048576); beyond it a part's line is dropped and counted in `record_errors`.
    pub backlog_parts: u64,
    /// Where the device's part sequence (`device_seq`) is reserved, so that it never
    /// repeats across restarts (default `linesight.seq`, beside the config file; on a
    /// board, somewhere writable such as `/var/lib/linesight/linesight.seq`).
    pub seq_file: PathBuf,
    /// The run's journal of parts in flight (default `linesight.journal`, beside the config
    /// file; on a board, beside `seq_file`). After a run killed without warning, the next
    /// start writes one `interrupted` results line for each part it left without a line or
    /// without its reject pulse; a clean end removes the file.
    pub journal_file: PathBuf,
    /// The results log is rotated once it holds this many MiB (default 64; 1 to 1048576):
    /// closed as `results.<device_seq of its last line>.jsonl` beside it, and a new one begun.
    pub rotate_mb: u64,
    /// Disk budget, MiB, for saved images in `save_dir` and rotated results logs together
    /// (1 to 2^30): beyond it the oldest are removed (counted in the log and the summary).
    /// The live results log is never removed, and only linesight's own names are. Unset: no limit.
    pub keep_mb: Option<u64>,
    /// Saved images and rotated results logs older than this many days (1 to 36500) are
    /// removed. Unset: no limit.
    pub keep_days: Option<u64>,
}

impl Default for RecordConfig {
    fn default() -> Self {
        RecordConfig {
            results: PathBuf::from("results.jsonl"),
            progress_s: 1.0,
            save: SaveImages::None,
            save_dir: PathBuf::from("images"),
            metrics_file: None,
            flush_lines: 50,
            flush_ms: 1000,
            stall_ms: 2000,
            backlog_parts: 1000,
            seq_file: PathBuf::from("linesight.seq"),
            journal_file: PathBuf::from("linesight.journal"),
            rotate_mb: 64,
            keep_mb: None,
            keep_days: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_number_is_bounded_and_named() {
        let r = RecordConfig {
            progress_s: f64::INFINITY,
            flush_lines: 0,
            flush_ms: u64::MAX,
            stall_ms: 0,
            backlog_parts: 1 << 40,
            rotate_mb: 0,
            keep_mb: Some(0),
            keep_days: Some(1_000_000),
            ..RecordConfig::default()
        };
        let found = Problems::of(|p| r.validate(p));
        for key in [
            "progress_s",
            "flush_lines",
            "flush_ms",
            "stall_ms",
            "backlog_parts",
            "rotate_mb",
            "keep_mb",
            "keep_days",
        ] {
            assert!(
                found.iter().any(|f| f.starts_with(&format!("record.{key}: expected"))),
                "{key}: {found:?}"
            );
        }
        assert_eq!(found.len(), 8, "{found:?}");
        assert!(Problems::of(|p| RecordConfig::default().validate(p)).is_empty());
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
        if !(self.progress_s >= 0.0 && self.progress_s <= 86_400.0) {
            p.bad(
                "record.progress_s",
                format!("expected 0 to 86400 s, found {}", self.progress_s),
            );
        }
        range(p, "record.flush_lines", self.flush_lines, 1, 1_000_000, "lines");
        range(p, "record.flush_ms", self.flush_ms, 1, 3_600_000, "ms");
        range(p, "record.stall_ms", self.stall_ms, 100, 600_000, "ms");
        range(p, "record.backlog_parts", self.backlog_parts, 1, 1 << 20, "parts");
        range(p, "record.rotate_mb", self.rotate_mb, 1, 1 << 20, "MiB");
        if let Some(mb) = self.keep_mb {
            range(p, "record.keep_mb", mb, 1, 1 << 30, "MiB");
        }
        if let Some(days) = self.keep_days {
            range(p, "record.keep_days", days, 1, 36_500, "days");
        }
    }
}
