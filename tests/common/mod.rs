//! Shared by the end-to-end tests: run the real binary on the sim board's config,
//! with its output paths moved into a temporary folder.

#![allow(dead_code)]

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub struct SimRun {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
}

impl SimRun {
    /// board/sim/linesight.toml with model, results and edge log made absolute, then `edit`ed.
    pub fn new(edit: impl FnOnce(&mut toml::Table)) -> SimRun {
        let dir = tempfile::tempdir().unwrap();
        let text = std::fs::read_to_string(repo().join("board/sim/linesight.toml")).unwrap();
        let mut t: toml::Table = toml::from_str(&text).unwrap();
        set(
            &mut t,
            "model.dir",
            repo().join("models/sim-flange").display().to_string().into(),
        );
        set(
            &mut t,
            "reject.output.edge_log",
            dir.path().join("edges.jsonl").display().to_string().into(),
        );
        set(
            &mut t,
            "record.results",
            dir.path().join("results.jsonl").display().to_string().into(),
        );
        set(&mut t, "record.progress_s", 0.0.into());
        edit(&mut t);
        let config = dir.path().join("linesight.toml");
        std::fs::write(&config, toml::to_string(&t).unwrap()).unwrap();
        SimRun { dir, config }
    }

    /// Edits the written config again (for values that name files in `self.dir`).
    pub fn edit(&self, f: impl FnOnce(&mut toml::Table)) {
        let mut t: toml::Table = toml::from_str(&std::fs::read_to_string(&self.config).unwrap()).unwrap();
        f(&mut t);
        std::fs::write(&self.config, toml::to_string(&t).unwrap()).unwrap();
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_linesight"));
        c.arg("run").arg("--config").arg(&self.config).args(args);
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        let out = self.command(args).output().unwrap();
        assert!(
            out.status.success(),
            "linesight run failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    pub fn results(&self) -> Vec<Value> {
        read_jsonl(&self.dir.path().join("results.jsonl"))
    }

    pub fn edges(&self) -> Vec<(u64, bool)> {
        read_jsonl(&self.dir.path().join("edges.jsonl"))
            .iter()
            .map(|e| (e["t_ns"].as_u64().unwrap(), e["level"].as_bool().unwrap()))
            .collect()
    }
}

/// Sets a dotted key, creating tables on the way.
pub fn set(t: &mut toml::Table, key: &str, v: toml::Value) {
    let mut parts: Vec<&str> = key.split('.').collect();
    let last = parts.pop().unwrap();
    let mut cur = t;
    for p in parts {
        cur = cur
            .entry(p)
            .or_insert_with(|| toml::Value::Table(Default::default()))
            .as_table_mut()
            .unwrap();
    }
    cur.insert(last.to_string(), v);
}

pub fn read_jsonl(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
        .collect()
}

/// Output edges (t_ns, level) from a simulated output's edge log.
pub fn edges_of(path: &Path) -> Vec<(u64, bool)> {
    read_jsonl(path)
        .iter()
        .map(|e| (e["t_ns"].as_u64().unwrap(), e["level"].as_bool().unwrap()))
        .collect()
}

/// CLOCK_MONOTONIC now, in ns: the clock linesight stamps parts and edges with.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Replaces the `[camera]` table of a run's config.
pub fn set_camera(sim: &SimRun, camera: toml::Table) {
    sim.edit(|t| set(t, "camera", toml::Value::Table(camera)));
}

/// Parts that are not fail-safe rejects of the camera were inspected; a deadline miss or
/// an overload on a loaded test machine is allowed for a few.
pub fn assert_mostly_inspected<'a>(results: impl Iterator<Item = &'a Value>) {
    let (mut n, mut inspected) = (0, 0);
    for r in results {
        n += 1;
        if r["score"].is_number() {
            inspected += 1;
        } else {
            assert!(
                r["reason"] == "deadline_missed" || r["reason"] == "overload",
                "not inspected and not for lack of time: {r}"
            );
        }
    }
    assert!(inspected * 10 >= n * 9, "only {inspected} of {n} parts inspected");
}

/// The worst reject-edge lateness linesight reports ("worst edge lateness 0.12 ms"), in ns,
/// plus 0.1 ms for the printed rounding. Timing checks allow what the run itself owns up
/// to, up to `cap_ms`: on a loaded machine an edge can wake a few ms late, and linesight
/// must then say so.
pub fn reported_lateness_ns(output: &Output, cap_ms: f64) -> u64 {
    let text = String::from_utf8_lossy(&output.stdout);
    let ms: f64 = text
        .split("worst edge lateness ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no \"worst edge lateness\" in the output:\n{text}"));
    assert!(ms <= cap_ms, "edges up to {ms} ms late, more than {cap_ms} ms:\n{text}");
    ((ms + 0.1) * 1e6).ceil() as u64
}
