//! Phase two of two: the live objects a validated config names (ripgrep's hiargs).
//! The one place a detector is opened, for `run`, `check`, `bench`, `eval` and
//! `calibrate` alike, so that all of them resolve paths and report fallbacks the same.

use crate::actuate::{self, OutputLine};
use crate::clock;
use crate::config::Config;
use crate::frame::PixelFormat;
use crate::judge::Threshold;
use crate::model::{Detector, Manifest};
use crate::record::ResultsLog;
use crate::source::{self, CameraListener, Source};
use anyhow::Context;
use std::path::Path;

/// The live objects built from a validated config (phase two of two).
pub struct Runtime {
    pub config: Config,
    pub source: Box<dyn Source>,
    pub detector: Detector,
    pub reject: Box<dyn OutputLine>,
    pub results: ResultsLog,
    pub threshold: Threshold,
}

impl Runtime {
    /// Opens everything the config names: model and library, camera, output, results log.
    pub fn open(config: Config, results_override: Option<&Path>) -> anyhow::Result<Runtime> {
        let mut detector = open_detector(&config)?;
        // Warm before the output is requested: its deasserted level may be the energised one.
        warm_up(&mut detector, config.runtime.warmup_runs)?;
        let threshold = Threshold(
            config
                .decision
                .threshold
                .unwrap_or(detector.manifest.calibration.threshold),
        );
        let source = open_source(&config, detector.manifest.input.channels)?;
        let results_path = match results_override {
            Some(p) => p.to_path_buf(),
            None => config.resolve(&config.record.results),
        };
        let results = ResultsLog::open(&results_path)?;
        // The output is opened last, deasserted, once everything else is ready.
        let reject = actuate::open_reject(&config)?;
        Ok(Runtime {
            config,
            source,
            detector,
            reject,
            results,
            threshold,
        })
    }
}

/// Opens the configured camera and trigger with the fault output following the camera:
/// the one wiring for `run` and `collect`. The fault output is requested once the camera
/// has opened, and left de-energised when the source is dropped.
pub fn open_source(config: &Config, channels: PixelFormat) -> anyhow::Result<Box<dyn Source>> {
    source::open(config, channels, || Ok(Box::new(FaultOutput::open(config)?)))
}

/// The `[status] fault_line`, driven from the camera supervisor's reports: asserted while
/// the camera is down. Without a configured line, losses are only logged and counted.
struct FaultOutput {
    line: Option<Box<dyn OutputLine>>,
}

impl FaultOutput {
    /// Opens the configured fault line, deasserted.
    fn open(config: &Config) -> anyhow::Result<FaultOutput> {
        let line = match &config.status.fault_line {
            Some(o) => Some(actuate::open_output(config, o, "linesight-fault", "status.fault_line")?),
            None => None,
        };
        Ok(FaultOutput { line })
    }

    /// Sets the line; a failed write is logged, never fatal (the parts are rejected anyway).
    fn set(&mut self, asserted: bool) {
        if let Some(line) = &mut self.line {
            if let Err(e) = line.set(asserted) {
                eprintln!("linesight: ERROR fault output {}: {e:#}", line.describe());
            }
        }
    }
}

impl CameraListener for FaultOutput {
    fn camera_down(&mut self, _cause: &str) {
        self.set(true);
    }

    fn camera_up(&mut self) {
        self.set(false);
    }

    fn down_action(&self) -> Option<&str> {
        self.line.as_ref().map(|_| "fault output asserted")
    }
}

impl Drop for FaultOutput {
    /// The fault output ends as a stopped board leaves it: de-energised.
    fn drop(&mut self) {
        if let Some(line) = &mut self.line {
            if let Err(e) = line.release() {
                eprintln!("linesight: ERROR fault output {}: {e:#}", line.describe());
            }
        }
    }
}

/// Reads the manifest and opens the session the config asks for. Every provider given
/// up on the way is a WARN with its reason: a fallback is never silent.
pub fn open_detector(config: &Config) -> anyhow::Result<Detector> {
    let dir = config.resolve(&config.model.dir);
    let manifest = Manifest::load(&dir).context("model.dir")?;
    let lib = config.runtime.onnxruntime_library.as_ref().map(|p| config.resolve(p));
    let mut runtime = config.runtime.clone();
    runtime.tensorrt.engine_cache_dir = runtime.tensorrt.engine_cache_dir.map(|p| config.resolve(&p));
    let detector = Detector::open(manifest, &runtime, lib.as_deref())?;
    for (kind, reason) in &detector.serving.skipped {
        eprintln!(
            "linesight: WARN execution provider \"{}\" not used: {reason}; falling back (runtime.require_accelerator = false)",
            kind.as_str()
        );
    }
    Ok(detector)
}

/// Inferences before arming, so that no part pays for an engine build or lazy initialisation.
fn warm_up(detector: &mut Detector, runs: u32) -> anyhow::Result<()> {
    let t = clock::now_ns();
    let worst = detector.warm_up(runs)?;
    eprintln!(
        "linesight: model warm on {} ({} runs in {:.1} ms, slowest {worst:.1} ms)",
        detector.serving.detail,
        runs.max(1),
        clock::ns_to_ms(clock::now_ns() - t)
    );
    Ok(())
}
