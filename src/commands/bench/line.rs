//! `linesight bench --line`: the highest rate the whole line holds, the number a line
//! engineer sizes a station with.
//!
//! The line is run as `linesight run` runs it (camera, inspection, judge, actuator, record
//! threads, the configured model, providers and threads) at a paced rate, and a rate is
//! *held* when every part of the trial was judged on its score: no fail-safe reject
//! (deadline missed, overload, inference error, ...). A search over rates (pure:
//! [`Search`]) brackets the highest held rate with short trials, then confirms it with a
//! long one. Nothing leaves the process: the reject output is simulated, the plant's side
//! (MQTT, web page, Modbus, OPC UA) and the fault output are off, and results go to a
//! temporary folder.

use crate::config::{CameraConfig, Config, FaultsConfig, OutputConfig, SyntheticCamera, TriggerConfig};
use crate::pipeline;
use crate::runtime::Runtime;
use crate::stats::Percentiles;
use anyhow::Context;
use serde::Serialize;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// The first rate tried, as a share of bare inference throughput: issue 18's goal.
const FIRST_SHARE: f64 = 0.95;
/// After rates that failed before any held, the next is a share of the last: small steps
/// first (most lines hold 80-95% of bare), larger ones after (then always the last).
const STEPS_DOWN: [f64; 3] = [0.9, 0.8, 0.6];
/// The search ends when the held and the failed rate are within this ratio.
const RESOLUTION: f64 = 1.03;
/// A long trial that failed is tried again this much slower.
const CONFIRM_STEP_DOWN: f64 = 0.97;
/// Below this share of bare throughput the search gives up: the line holds no useful rate.
const LOWEST_SHARE: f64 = 0.05;

/// One rate to run, short (to bracket) or long (to confirm).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Trial {
    Search(f64),
    Confirm(f64),
}

impl Trial {
    pub fn rate(self) -> f64 {
        match self {
            Trial::Search(r) | Trial::Confirm(r) => r,
        }
    }
}

/// The search over rates, fed the trials' outcomes; pure, so that it is tested without a line.
#[derive(Debug, Clone)]
pub struct Search {
    /// Bare inference throughput: the line cannot go faster in steady state.
    ceiling: f64,
    /// Highest rate a short trial held, lowest one that failed.
    held: Option<f64>,
    failed: Option<f64>,
    /// Short trials that failed.
    misses: usize,
    /// The last long trial that failed.
    confirm_failed: Option<f64>,
    answer: Option<f64>,
}

impl Search {
    pub fn new(bare_fps: f64) -> Search {
        Search {
            ceiling: bare_fps,
            held: None,
            failed: None,
            misses: 0,
            confirm_failed: None,
            answer: None,
        }
    }

    /// The next trial, or None when the search is over ([`Search::answer`] says how).
    pub fn next(&self) -> Option<Trial> {
        if self.answer.is_some() {
            return None;
        }
        let lowest = self.ceiling * LOWEST_SHARE;
        let at_least = |r: f64| (r >= lowest).then_some(r);
        if let Some(c) = self.confirm_failed {
            return at_least(c * CONFIRM_STEP_DOWN).map(Trial::Confirm);
        }
        match self.held {
            // Down in large steps, the last one to the lowest rate worth sizing with.
            None => match self.failed {
                None => Some(Trial::Search(self.ceiling * FIRST_SHARE)),
                Some(f) if f > lowest => {
                    let step = STEPS_DOWN[(self.misses.max(1) - 1).min(STEPS_DOWN.len() - 1)];
                    Some(Trial::Search((f * step).max(lowest)))
                }
                Some(_) => None,
            },
            Some(held) => {
                let above = self.failed.unwrap_or(self.ceiling);
                Some(if above / held > RESOLUTION {
                    Trial::Search((held * above).sqrt())
                } else {
                    Trial::Confirm(held)
                })
            }
        }
    }

    pub fn record(&mut self, trial: Trial, held: bool) {
        match (trial, held) {
            (Trial::Search(r), true) => self.held = Some(self.held.map_or(r, |h| h.max(r))),
            (Trial::Search(r), false) => {
                self.misses += 1;
                self.failed = Some(self.failed.map_or(r, |f| f.min(r)));
            }
            (Trial::Confirm(r), true) => self.answer = Some(r),
            (Trial::Confirm(r), false) => self.confirm_failed = Some(r),
        }
    }

    /// The highest rate a long trial held; None if none did (or the search is not over).
    pub fn answer(&self) -> Option<f64> {
        self.answer
    }
}

/// What one trial measured.
#[derive(Debug, Clone, Serialize)]
pub struct TrialResult {
    pub rate_parts_per_s: f64,
    /// `search` (short, to bracket) or `confirm` (long).
    pub kind: &'static str,
    pub parts: u64,
    /// Parts rejected without being judged on their score, by reason.
    pub fail_safe: u64,
    pub fail_safe_by_reason: std::collections::BTreeMap<String, u64>,
    pub held: bool,
    /// Capture → verdict, ms.
    pub total_ms: Option<Percentiles>,
    /// Inference inside the line, ms.
    pub inference_ms: Option<Percentiles>,
    pub queue_ms: Option<Percentiles>,
    /// Parts per second the line actually decided.
    pub achieved_parts_per_s: f64,
}

/// `bench --line`'s figures.
#[derive(Debug, Clone, Serialize)]
pub struct LineReport {
    /// The highest rate held over a long trial (None: no rate was held).
    pub rate_parts_per_s: Option<f64>,
    /// ONNX Runtime's run on one prepared input, back to back.
    pub bare_fps: f64,
    pub bare_inference_p99_ms: f64,
    /// rate / bare_fps.
    pub ratio: Option<f64>,
    /// At the held rate: capture → verdict p50 and p99, and inference p99 inside the line.
    pub p50_total_ms: Option<f64>,
    pub p99_total_ms: Option<f64>,
    pub inference_p99_ms: Option<f64>,
    pub trials: Vec<TrialResult>,
}

/// How `--line` runs: parts per long trial, and a fixed rate instead of the search.
pub struct LineArgs {
    pub parts: u64,
    pub rate: Option<f64>,
}

/// Short trials bracket the rate with a quarter of the parts (at least 200).
fn search_parts(parts: u64) -> u64 {
    (parts / 4).max(200).min(parts)
}

/// Runs the search (or one long trial at `args.rate`) and reports.
pub fn measure(config: &Config, bare_fps: f64, bare_p99_ms: f64, args: &LineArgs) -> anyhow::Result<LineReport> {
    if own_pace(config) && args.rate.is_some() {
        anyhow::bail!(
            "--rate: a V4L2 or GStreamer camera sets its own rate; --rate paces only the synthetic and folder cameras"
        );
    }
    let dir = TrialDir::new()?;
    let mut trials = Vec::new();
    let mut run = |trial: Trial| -> anyhow::Result<bool> {
        let parts = match trial {
            Trial::Search(_) => search_parts(args.parts),
            Trial::Confirm(_) => args.parts,
        };
        let t = run_trial(config, trial, parts, &dir.0)?;
        eprintln!(
            "bench --line: {:7.1} parts/s for {:5} parts: {}",
            t.rate_parts_per_s,
            t.parts,
            if t.held {
                "held".to_string()
            } else {
                format!("{} fail-safe rejects {:?}", t.fail_safe, t.fail_safe_by_reason)
            }
        );
        let held = t.held;
        trials.push(t);
        Ok(held)
    };
    let held = match args.rate {
        Some(rate) => run(Trial::Confirm(rate))?,
        // A real camera sets the pace: one long trial at its rate, held or not.
        None if own_pace(config) => run(Trial::Confirm(0.0))?,
        None => {
            let mut search = Search::new(bare_fps);
            while let Some(trial) = search.next() {
                let held = run(trial)?;
                search.record(trial, held);
            }
            search.answer().is_some()
        }
    };
    // The long trial that held: the last one run.
    let at = trials.last().filter(|_| held);
    Ok(LineReport {
        rate_parts_per_s: at.map(|t| t.rate_parts_per_s),
        bare_fps,
        bare_inference_p99_ms: bare_p99_ms,
        ratio: at.map(|t| t.rate_parts_per_s / bare_fps),
        p50_total_ms: at.and_then(|t| t.total_ms.map(|p| p.p50)),
        p99_total_ms: at.and_then(|t| t.total_ms.map(|p| p.p99)),
        inference_p99_ms: at.and_then(|t| t.inference_ms.map(|p| p.p99)),
        trials,
    })
}

/// A V4L2 or GStreamer camera delivers frames at its own rate.
fn own_pace(config: &Config) -> bool {
    matches!(config.camera, CameraConfig::V4l2(_) | CameraConfig::Gstreamer(_))
}

/// The trials' results, images and journal: a folder of this process's own, removed at the end.
struct TrialDir(std::path::PathBuf);

impl TrialDir {
    fn new() -> anyhow::Result<TrialDir> {
        let dir = std::env::temp_dir().join(format!("linesight-bench-line-{}", std::process::id()));
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("bench --line: cannot make {} for the trials' results", dir.display()))?;
        Ok(TrialDir(dir))
    }
}

impl Drop for TrialDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The config of one trial: the line as configured, paced at `rate`, with nothing that
/// reaches outside the process.
pub fn trial_config(config: &Config, rate: f64, dir: &Path) -> Config {
    let mut c = config.clone();
    match &mut c.camera {
        CameraConfig::Synthetic(SyntheticCamera { parts_per_second, .. }) => *parts_per_second = rate,
        CameraConfig::Folder {
            parts_per_second,
            looped,
            ..
        } => {
            *parts_per_second = rate;
            *looped = true;
        }
        CameraConfig::V4l2(_) | CameraConfig::Gstreamer(_) => {}
    }
    // A bench never fires the ejector, asserts the fault lamp or tells the plant.
    c.reject.output = OutputConfig::Simulated { edge_log: None };
    c.status.fault_line = None;
    if matches!(c.camera, CameraConfig::Synthetic(_) | CameraConfig::Folder { .. }) {
        c.trigger = TriggerConfig::FreeRun;
    }
    (c.mqtt, c.http, c.modbus, c.opcua) = (None, None, None, None);
    c.faults = FaultsConfig::default();
    let r = &mut c.record;
    r.results = dir.join("results.jsonl");
    r.seq_file = dir.join("linesight.seq");
    r.journal_file = dir.join("linesight.journal");
    r.save_dir = dir.join("images");
    r.metrics_file = None;
    r.progress_s = 0.0;
    c
}

fn run_trial(config: &Config, trial: Trial, parts: u64, dir: &Path) -> anyhow::Result<TrialResult> {
    let c = trial_config(config, trial.rate(), dir);
    // Each trial starts with an empty results log; a line's numbering is not what is measured.
    for f in [&c.record.results, &c.record.seq_file, &c.record.journal_file] {
        let _ = std::fs::remove_file(f);
    }
    let _ = std::fs::remove_dir_all(&c.record.save_dir);
    let stop = Arc::new(AtomicBool::new(false));
    // The trials' start-up lines would repeat for every rate: warnings and errors only.
    let level = log::max_level();
    log::set_max_level(log::LevelFilter::Warn.min(level));
    let report = Runtime::open(c, None, &stop).and_then(|rt| pipeline::run(rt, Some(parts), stop));
    log::set_max_level(level);
    let s = report.context("bench --line: the line stopped")?.summary;
    let fail_safe_by_reason: std::collections::BTreeMap<String, u64> = s
        .rejects_by_reason
        .iter()
        .filter(|(reason, _)| reason.as_str() != "above_threshold")
        .map(|(r, n)| (r.clone(), *n))
        .collect();
    let fail_safe = fail_safe_by_reason.values().sum();
    Ok(TrialResult {
        // 0: the camera's own pace, as it came.
        rate_parts_per_s: if trial.rate() > 0.0 {
            trial.rate()
        } else {
            s.parts_per_second
        },
        kind: match trial {
            Trial::Search(_) => "search",
            Trial::Confirm(_) => "confirm",
        },
        parts: s.parts,
        fail_safe,
        fail_safe_by_reason,
        held: fail_safe == 0 && s.parts == parts,
        total_ms: s.latency_ms.get("total").cloned(),
        inference_ms: s.latency_ms.get("inference").cloned(),
        queue_ms: s.latency_ms.get("queue").cloned(),
        achieved_parts_per_s: s.parts_per_second,
    })
}

impl std::fmt::Display for LineReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = |p: &Option<Percentiles>| {
            p.as_ref()
                .map_or("-".into(), |p| format!("{:.2} / {:.2}", p.p50, p.p99))
        };
        writeln!(f, "line (every stage, paced; held = no fail-safe reject)")?;
        writeln!(
            f,
            "  {:>10} {:>7} {:>9} {:>17} {:>17} {:>17}",
            "parts/s", "parts", "fail-safe", "total p50/p99 ms", "inference p50/p99", "queue p50/p99"
        )?;
        for t in &self.trials {
            writeln!(
                f,
                "  {:>10.1} {:>7} {:>9} {:>17} {:>17} {:>17}",
                t.rate_parts_per_s,
                t.parts,
                t.fail_safe,
                ms(&t.total_ms),
                ms(&t.inference_ms),
                ms(&t.queue_ms)
            )?;
        }
        match (self.rate_parts_per_s, self.ratio) {
            (Some(rate), Some(ratio)) => {
                writeln!(
                    f,
                    "  line rate              {rate:.1} parts/s held, {:.2} of bare inference throughput ({:.1} frames/s)",
                    ratio, self.bare_fps
                )?;
                if let (Some(p99), Some(inf)) = (self.p99_total_ms, self.inference_p99_ms) {
                    writeln!(
                        f,
                        "  capture → verdict p99  {p99:.2} ms = {:.2} × inference p99 in the line ({inf:.2} ms), {:.2} × bare inference p99 ({:.2} ms)",
                        p99 / inf,
                        p99 / self.bare_inference_p99_ms,
                        self.bare_inference_p99_ms
                    )?;
                }
                Ok(())
            }
            _ => writeln!(
                f,
                "  line rate              none held (bare inference {:.1} frames/s): see the fail-safe reasons above",
                self.bare_fps
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs a search against a line that holds short trials up to `holds` and long ones up
    /// to `holds_long`; the trials it asked for.
    fn search(bare: f64, holds: f64, holds_long: f64) -> (Option<f64>, Vec<Trial>) {
        let mut s = Search::new(bare);
        let mut trials = Vec::new();
        while let Some(t) = s.next() {
            let held = match t {
                Trial::Search(r) => r <= holds,
                Trial::Confirm(r) => r <= holds_long,
            };
            s.record(t, held);
            trials.push(t);
            assert!(trials.len() < 40, "the search does not end: {trials:?}");
        }
        (s.answer(), trials)
    }

    #[test]
    fn a_line_that_holds_the_goal_is_tried_there_first_and_confirmed_near_bare() {
        let (answer, trials) = search(100.0, 99.0, 99.0);
        assert_eq!(trials[0], Trial::Search(95.0));
        let a = answer.unwrap();
        assert!((95.0..=99.0).contains(&a), "{a} {trials:?}");
        assert!(matches!(trials.last(), Some(Trial::Confirm(_))));
    }

    #[test]
    fn the_answer_is_within_the_resolution_below_what_the_line_holds() {
        for holds in [7.3, 31.0, 60.0, 88.8] {
            let (answer, trials) = search(100.0, holds, holds);
            let a = answer.unwrap();
            assert!(
                a <= holds && a * RESOLUTION >= holds * 0.999,
                "holds {holds}: answered {a} after {trials:?}"
            );
            // Short trials bracket, one long one confirms.
            assert_eq!(
                trials.iter().filter(|t| matches!(t, Trial::Confirm(_))).count(),
                1,
                "{trials:?}"
            );
            assert!(trials.len() <= 14, "{} trials: {trials:?}", trials.len());
        }
    }

    #[test]
    fn a_line_near_its_bare_throughput_is_found_in_few_trials() {
        // As measured on the 2-core machine: 0.88 and 0.93 of bare.
        for holds in [88.0, 93.0] {
            let (answer, trials) = search(100.0, holds, holds);
            assert!(answer.unwrap() * RESOLUTION >= holds, "{holds}: {trials:?}");
            assert!(trials.len() <= 6, "{holds}: {} trials: {trials:?}", trials.len());
        }
    }

    #[test]
    fn a_long_trial_that_fails_steps_down_until_one_holds() {
        let (answer, trials) = search(100.0, 60.0, 55.0);
        let a = answer.unwrap();
        assert!((55.0 * CONFIRM_STEP_DOWN..=55.0).contains(&a), "{a} {trials:?}");
        assert!(trials.iter().filter(|t| matches!(t, Trial::Confirm(_))).count() >= 2);
    }

    #[test]
    fn a_line_that_holds_nothing_gives_up_without_an_answer() {
        let (answer, trials) = search(100.0, 0.0, 0.0);
        assert_eq!(answer, None);
        assert!(trials.iter().all(|t| t.rate() >= 100.0 * LOWEST_SHARE), "{trials:?}");
    }

    #[test]
    fn a_trial_touches_nothing_outside_the_process() {
        let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/board/sim/linesight.toml")).unwrap();
        let mut c = Config::parse(&text, Path::new("linesight.toml"), ".".into()).unwrap();
        c.reject.output = OutputConfig::Gpio {
            chip: "gpiochip0".into(),
            line: crate::config::LineRef::Offset(5),
            active_low: false,
        };
        c.faults.inference_error_every = 3;
        let dir = Path::new("/tmp/bench-trial");
        let t = trial_config(&c, 42.0, dir);
        assert_eq!(t.reject.output, OutputConfig::Simulated { edge_log: None });
        assert!(t.mqtt.is_none() && t.http.is_none() && t.modbus.is_none() && t.opcua.is_none());
        assert!(t.status.fault_line.is_none());
        assert_eq!(t.faults, FaultsConfig::default());
        assert!(t.record.results.starts_with(dir) && t.record.journal_file.starts_with(dir));
        assert!(t.record.seq_file.starts_with(dir) && t.record.metrics_file.is_none());
        match t.camera {
            CameraConfig::Synthetic(s) => assert_eq!(s.parts_per_second, 42.0),
            other => panic!("{other:?}"),
        }
    }
}
