//! The results log: one JSON line per part. A line is in the file whole or not at all:
//! a write that fails part-way (a full disk, a file-size limit) is cut back to the last
//! whole line at once, so that the next line never lands glued to a fragment. What a
//! crash or a power cut leaves at the end (a fragment, a line of zeros) is cut off at the
//! next start, and a file that is not a linesight results log is refused, not cut.
//!
//! Durability is the writer's business (`record::writer`, `FlushPolicy`): this file only
//! writes and syncs when told.

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
    /// The run: new at every start (as in the MQTT messages and the web API).
    pub run_id: String,
    /// The device's part number: one more for every part, never repeated across restarts
    /// (reserved ahead in `record.seq_file`). Set by the record thread.
    pub device_seq: u64,
    /// The part's number in this run, from 0.
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

impl PartRecord {
    /// The record as its results line, newline included.
    pub fn line(&self) -> Vec<u8> {
        let mut line = serde_json::to_vec(self).expect("a part record serialises");
        line.push(b'\n');
        line
    }
}

/// What the start-up repair cut from the end of the file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Repair {
    /// Bytes cut in all.
    pub cut_bytes: u64,
    /// Whole lines among them that were not results lines (zeros or garbage after a power cut).
    pub cut_lines: u64,
}

pub struct ResultsLog {
    path: PathBuf,
    file: File,
    /// The file's length up to its last whole line: where a failed write is cut back to.
    good_len: u64,
    /// A write failed and its bytes could not yet be cut back: cut before the next one.
    dirty: bool,
    /// What was cut from a torn end at open.
    pub repaired: Repair,
    /// The `device_seq` of the last line already in the file, if it has one.
    pub last_device_seq: Option<u64>,
}

/// How much of the file's head and tail the open reads to judge it.
const WINDOW: u64 = 64 * 1024;

impl ResultsLog {
    /// Opens for appending, creating the file and its folder; refuses a file that is not a
    /// results log; cuts a torn end back to its last whole results line.
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
        let (good_len, repaired, last_device_seq) =
            repair(&mut file).with_context(|| format!("results: {}", path.display()))?;
        Ok(ResultsLog {
            path: path.to_path_buf(),
            file,
            good_len,
            dirty: false,
            repaired,
            last_device_seq,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one whole line (ending in `\n`), or nothing: a failed write is cut back.
    /// The length to cut back to is the file's own before the write, so that a file
    /// emptied meanwhile (logrotate's `copytruncate`) is never grown back with zeros.
    pub fn append_line(&mut self, line: &[u8]) -> std::io::Result<()> {
        debug_assert!(line.ends_with(b"\n"));
        if self.dirty {
            self.cut_back()?;
        }
        self.good_len = self.file.metadata()?.len();
        match self.file.write_all(line) {
            Ok(()) => {
                self.good_len += line.len() as u64;
                Ok(())
            }
            Err(e) => {
                self.dirty = true;
                // On a full disk or at a size limit shrinking still works; if it does not,
                // the next append tries again before it writes.
                let _ = self.cut_back();
                Err(e)
            }
        }
    }

    fn cut_back(&mut self) -> std::io::Result<()> {
        let len = self.file.metadata()?.len();
        if len > self.good_len {
            self.file.set_len(self.good_len)?;
        }
        self.dirty = false;
        Ok(())
    }

    /// Bytes in the log, up to its last whole line.
    pub fn bytes(&self) -> u64 {
        self.good_len
    }

    /// Renames the log to `to` and goes on in a new, empty one at its path. If the new
    /// one cannot be made, the rename is undone and the log goes on as it was.
    pub fn rotate(&mut self, to: &Path) -> std::io::Result<()> {
        if to.exists() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                format!("{} already exists", to.display()),
            ));
        }
        std::fs::rename(&self.path, to)?;
        let new = OpenOptions::new()
            .read(true)
            .append(true)
            .create_new(true)
            .open(&self.path);
        match new {
            Ok(file) => {
                self.file = file;
                self.good_len = 0;
                self.dirty = false;
                Ok(())
            }
            Err(e) => {
                std::fs::rename(to, &self.path)?;
                Err(e)
            }
        }
    }

    /// fdatasync: the lines written so far survive a power cut.
    pub fn sync(&mut self) -> std::io::Result<()> {
        self.file.sync_data()
    }
}

/// The file is not a results log: refused rather than cut.
#[derive(Debug, thiserror::Error)]
#[error("not a linesight results file ({0}); nothing was changed. Point record.results or --results at a results log or a new file")]
pub struct NotResults(String);

/// Judges the file and cuts its torn end. Returns the length kept, what was cut and the
/// last line's `device_seq`.
fn repair(file: &mut File) -> anyhow::Result<(u64, Repair, Option<u64>)> {
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok((0, Repair::default(), None));
    }
    let head = read_at(file, 0, len.min(WINDOW))?;
    match head.iter().position(|b| *b == b'\n') {
        Some(i) if results_line(&head[..i]).is_none() => {
            return Err(NotResults(format!(
                "its first line is not a results line: {:?}",
                preview(&head[..i])
            ))
            .into())
        }
        None if len > WINDOW || !head.starts_with(b"{\"") => {
            return Err(NotResults("it holds no line of JSON".into()).into())
        }
        _ => {}
    }
    let start = len.saturating_sub(WINDOW);
    let tail = read_at(file, start, len - start)?;
    let plan = plan_tail(&tail, start == 0);
    let Some(keep) = plan.keep else {
        return Err(NotResults(format!(
            "its last {} KiB hold no whole results line; it was not cut",
            WINDOW / 1024
        ))
        .into());
    };
    let keep = start + keep as u64;
    if keep < len {
        file.set_len(keep)?;
    }
    let repaired = Repair {
        cut_bytes: len - keep,
        cut_lines: plan.cut_lines,
    };
    Ok((keep, repaired, plan.last_device_seq))
}

fn read_at(file: &mut File, at: u64, n: u64) -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0u8; n as usize];
    file.seek(SeekFrom::Start(at))?;
    file.read_exact(&mut buf)?;
    Ok(buf)
}

fn preview(line: &[u8]) -> String {
    String::from_utf8_lossy(&line[..line.len().min(60)]).into_owned()
}

/// What to keep of a results file's tail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TailPlan {
    /// Bytes of the tail to keep (up to and with the last whole results line's newline);
    /// `None` when the tail holds no whole results line to cut back to.
    pub keep: Option<usize>,
    /// Whole lines after it that are not results lines.
    pub cut_lines: u64,
    /// The `device_seq` of the line kept last.
    pub last_device_seq: Option<u64>,
}

/// Where a results file's end is to be cut: after its last whole, valid results line.
/// `tail` is the file's end; `from_start` says it is the whole file (its first line is
/// whole; otherwise the first line of `tail` may be a piece and is never trusted).
pub fn plan_tail(tail: &[u8], from_start: bool) -> TailPlan {
    // The fragment after the last newline is a torn line.
    let mut end = tail.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    let mut cut_lines = 0;
    while end > 0 {
        let body = &tail[..end - 1];
        let line_start = body.iter().rposition(|b| *b == b'\n').map(|i| i + 1);
        if line_start.is_none() && !from_start {
            break; // the window's first line may be a piece of a longer one
        }
        let line_start = line_start.unwrap_or(0);
        if let Some(seq) = results_line(&body[line_start..]) {
            return TailPlan {
                keep: Some(end),
                cut_lines,
                last_device_seq: seq,
            };
        }
        cut_lines += 1;
        end = line_start;
    }
    TailPlan {
        keep: (end == 0 && from_start).then_some(0),
        cut_lines,
        last_device_seq: None,
    }
}

/// `Some(device_seq)` if `line` is a results line: a JSON object with a `verdict` and a
/// `capture_ns` (lines written before `device_seq` existed have none).
pub fn results_line(line: &[u8]) -> Option<Option<u64>> {
    let v: serde_json::Value = serde_json::from_slice(line).ok()?;
    let o = v.as_object()?;
    (o.get("verdict")?.is_string() && o.get("capture_ns")?.is_u64())
        .then(|| o.get("device_seq").and_then(|s| s.as_u64()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "{\"device_seq\":7,\"id\":0,\"capture_ns\":1,\"verdict\":\"pass\"}\n";
    const B: &str = "{\"device_seq\":8,\"id\":1,\"capture_ns\":2,\"verdict\":\"reject\"}\n";

    fn record() -> PartRecord {
        PartRecord {
            run_id: "r1".into(),
            device_seq: 9,
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
        }
    }

    #[test]
    fn the_tail_is_cut_after_the_last_whole_results_line() {
        let plan = |s: &str, whole| plan_tail(s.as_bytes(), whole);
        let ab = format!("{A}{B}");
        assert_eq!(
            plan(&ab, true),
            TailPlan {
                keep: Some(ab.len()),
                cut_lines: 0,
                last_device_seq: Some(8)
            }
        );
        // a torn last line
        let torn = format!("{A}{B}{{\"device_seq\":9,\"id\":2,\"sco");
        assert_eq!(plan(&torn, true).keep, Some(ab.len()));
        // a power cut: the file's size grew, its last block is zeros
        let zeros = format!("{A}{B}\0\0\0\0\0\0\n\0\0\0");
        let p = plan(&zeros, true);
        assert_eq!((p.keep, p.cut_lines, p.last_device_seq), (Some(ab.len()), 1, Some(8)));
        // a fragment glued to a whole line (what an old linesight left after a full disk)
        let glued = format!("{A}{{\"device_seq\":8,\"id\":1,\"cap{B}");
        assert_eq!(plan(&glued, true).keep, Some(A.len()));
        // nothing whole: all of a whole file goes, a window of a longer one is not judged
        assert_eq!(plan("{\"id\":0,\"sc", true).keep, Some(0));
        assert_eq!(
            plan(&B[10..], false).keep,
            None,
            "the window's first line may be a piece"
        );
        assert_eq!(
            plan(&format!("{}{A}", &B[10..]), false).keep,
            Some(B.len() - 10 + A.len())
        );
        // lines from before device_seq are results lines too
        let old = "{\"id\":0,\"capture_ns\":1,\"verdict\":\"pass\"}\n";
        assert_eq!(plan(old, true).last_device_seq, None);
        assert_eq!(plan(old, true).keep, Some(old.len()));
    }

    #[test]
    fn a_torn_end_is_cut_before_appending() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/results.jsonl");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, format!("{A}{B}{{\"id\":2,\"sco")).unwrap();
        let log = ResultsLog::open(&path).unwrap();
        assert_eq!(log.repaired.cut_bytes, 12);
        assert_eq!(log.last_device_seq, Some(8));
        drop(log);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), format!("{A}{B}"));
    }

    #[test]
    fn a_file_that_is_not_a_results_log_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        for text in [
            "name,score\nflange-1,0.3\nflange-2,0.",
            "{\"not\":\"results\"}\n{\"id\":1,\"verd",
            "just some text without a newline",
        ] {
            let path = dir.path().join("other.txt");
            std::fs::write(&path, text).unwrap();
            let err = ResultsLog::open(&path).err().expect("refused");
            assert!(format!("{err:#}").contains("not a linesight results file"), "{err:#}");
            assert_eq!(std::fs::read_to_string(&path).unwrap(), text, "not cut");
        }
    }

    #[test]
    fn a_clean_file_is_left_alone_and_appended_to() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.jsonl");
        std::fs::write(&path, A).unwrap();
        let mut log = ResultsLog::open(&path).unwrap();
        assert_eq!(log.repaired, Repair::default());
        log.append_line(&record().line()).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let last: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
        assert_eq!(last["verdict"], "pass");
        assert_eq!(last["reason"], "below_threshold");
        assert_eq!(
            (last["run_id"].as_str(), last["device_seq"].as_u64()),
            (Some("r1"), Some(9))
        );
        assert_eq!(text.lines().count(), 2);
        assert_eq!(results_line(text.lines().last().unwrap().as_bytes()), Some(Some(9)));
    }

    /// A write that fails part-way leaves no fragment: the file size limit (RLIMIT_FSIZE)
    /// makes the kernel write part of a line and refuse the rest, as a full disk does.
    /// The limited appends run in a child process (this test binary again, this test only),
    /// so that the limit binds nothing else of the test run.
    #[test]
    fn a_write_torn_by_a_size_limit_leaves_only_whole_lines() {
        const CHILD: &str = "LINESIGHT_TEST_FSIZE_CHILD";
        let line = record().line();
        if let Some(path) = std::env::var_os(CHILD) {
            // SAFETY: plain syscalls with valid arguments, in the child's only test.
            unsafe {
                libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
                let lim = libc::rlimit {
                    rlim_cur: (2 * line.len() + line.len() / 2) as u64,
                    rlim_max: libc::RLIM_INFINITY,
                };
                assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &lim), 0);
            }
            let mut log = ResultsLog::open(Path::new(&path)).unwrap();
            let ok: Vec<bool> = (0..4).map(|_| log.append_line(&line).is_ok()).collect();
            assert_eq!(ok, [true, true, false, false]);
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.jsonl");
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "record::results::tests::a_write_torn_by_a_size_limit_leaves_only_whole_lines",
            ])
            .env(CHILD, &path)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
        let text = std::fs::read(&path).unwrap();
        assert_eq!(text.len(), 2 * line.len(), "two whole lines, no fragment of the third");
        assert!(text.ends_with(b"\n"));
    }
}
