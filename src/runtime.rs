//! Phase two of two: the live objects a validated config names (ripgrep's hiargs).
//! The one place a detector is opened, for `run`, `check`, `bench`, `eval` and
//! `calibrate` alike, so that all of them resolve paths and report fallbacks the same.

use crate::actuate::{self, OutputLine};
use crate::clock;
use crate::config::Config;
use crate::judge::Threshold;
use crate::model::{Detector, Manifest};
use crate::record::ResultsLog;
use crate::source::{self, Source};
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
        let source = source::open(&config, detector.manifest.input.channels)?;
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
