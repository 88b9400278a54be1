//! The results log: one JSON line per part, appended with one write per line, so
//! that a crash leaves at most the line being written unfinished. The next start
//! cuts that torn line off before appending.

use crate::frame::{Reason, Verdict};
use anyhow::Context;
use serde::Serialize;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Per-stage latency of one part, in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct StageLatency {
    /// Capture → the inference worker picked the frame up.
    pub queue_ms: Option<f64>,
    pub preprocess_ms: Option<f64>,
    pub inference_ms: Option<f64>,
    /// Capture → verdict.
    pub total_ms: f64,
}

/// One line of the results log.
#[derive(Debug, Clone, Serialize)]
pub struct PartRecord {
    pub id: u64,
    /// The part's time, CLOCK_MONOTONIC ns: the frame's capture time, or the trigger's edge.
    pub capture_ns: u64,
    /// With a trigger: the matched frame's capture time, CLOCK_MONOTONIC ns.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frame_ns: Option<u64>,
    /// Wall-clock time of the verdict (Unix ms), for matching with plant logs.
    pub unix_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    /// The anomaly score; null when the part could not be inspected.
    pub score: Option<f32>,
    pub threshold: f32,
    pub verdict: Verdict,
    pub reason: Reason,
    /// What went wrong, for fail-safe rejects.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The ejector window [start, end) in CLOCK_MONOTONIC ns, for rejects.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eject_ns: Option<[u64; 2]>,
    pub latency: StageLatency,
    /// "good" or "defect", when the source knows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub truth: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub defect_kind: Option<String>,
}

pub struct ResultsLog {
    path: PathBuf,
    file: File,
    /// Bytes cut from a torn last line at open, if any.
    pub repaired_bytes: u64,
}

impl ResultsLog {
    /// Opens for appending, creating the file and its folder, and repairs a torn last line.
    pub fn open(path: &Path) -> anyhow::Result<ResultsLog> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("results: cannot create folder {}", dir.display()))?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .with_context(|| format!("results: cannot open {} for appending", path.display()))?;
        let repaired_bytes = repair(&mut file).with_context(|| format!("results: cannot repair {}", path.display()))?;
        Ok(ResultsLog {
            path: path.to_path_buf(),
            file,
            repaired_bytes,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn append(&mut self, record: &PartRecord) -> anyhow::Result<()> {
        let mut line = serde_json::to_vec(record)?;
        line.push(b'\n');
        self.file
            .write_all(&line)
            .with_context(|| format!("results: cannot append to {}", self.path.display()))
    }

    pub fn sync(&mut self) -> anyhow::Result<()> {
        self.file
            .sync_data()
            .with_context(|| format!("results: cannot flush {}", self.path.display()))
    }
}

/// Truncates the file after its last newline. Returns the bytes removed.
fn repair(file: &mut File) -> std::io::Result<u64> {
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(0);
    }
    // Scan back from the end in blocks for the last '\n'.
    let mut end = len;
    let mut buf = vec![0u8; 64 * 1024];
    while end > 0 {
        let start = end.saturating_sub(buf.len() as u64);
        let chunk = &mut buf[..(end - start) as usize];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(chunk)?;
        if let Some(i) = chunk.iter().rposition(|b| *b == b'\n') {
            let keep = start + i as u64 + 1;
            file.set_len(keep)?;
            return Ok(len - keep);
        }
        end = start;
    }
    file.set_len(0)?;
    Ok(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_torn_last_line_is_cut_before_appending() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/results.jsonl");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, "{\"id\":0}\n{\"id\":1}\n{\"id\":2,\"sco").unwrap();
        let log = ResultsLog::open(&path).unwrap();
        assert_eq!(log.repaired_bytes, 12);
        drop(log);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\"id\":0}\n{\"id\":1}\n");
    }

    #[test]
    fn a_clean_file_is_left_alone_and_appended_to() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.jsonl");
        std::fs::write(&path, "{\"id\":0}\n").unwrap();
        let mut log = ResultsLog::open(&path).unwrap();
        assert_eq!(log.repaired_bytes, 0);
        let rec = PartRecord {
            id: 1,
            capture_ns: 5,
            frame_ns: None,
            unix_ms: 0,
            origin: None,
            score: Some(0.25),
            threshold: 0.5,
            verdict: Verdict::Pass,
            reason: Reason::BelowThreshold,
            detail: None,
            eject_ns: None,
            latency: StageLatency::default(),
            truth: Some("good"),
            defect_kind: None,
        };
        log.append(&rec).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let last: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
        assert_eq!(last["verdict"], "pass");
        assert_eq!(last["reason"], "below_threshold");
        assert_eq!(last["truth"], "good");
        assert_eq!(text.lines().count(), 2);
    }
}
