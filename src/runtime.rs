//! Phase two of two: the live objects a validated config names (ripgrep's hiargs).
//! The one place a detector is opened, for `run`, `check`, `bench`, `eval` and
//! `calibrate` alike, so that all of them resolve paths and report fallbacks the same.

use crate::actuate::{self, OutputLine};
use crate::clock;
use crate::config::{CameraConfig, Config, RuntimeConfig};
use crate::frame::{FrameLimit, FrameSpec};
use crate::judge::Threshold;
use crate::model::{Detector, Manifest};
use crate::record::{Journal, Leftover, ResultsLog, SeqBlock, SeqFile, SEQ_BLOCK};
use crate::sinks::{self, LineInfo, Sinks};
use crate::source::{self, CameraCell, CameraListener, Source};
use anyhow::Context;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// The live objects built from a validated config (phase two of two).
pub struct Runtime {
    pub config: Config,
    pub source: Box<dyn Source>,
    pub detector: Detector,
    pub reject: Box<dyn OutputLine>,
    pub results: ResultsLog,
    /// The device's part numbering, continued from the last run, and where it is reserved.
    pub seqs: SeqBlock,
    pub seq_file: SeqFile,
    /// This run's journal of parts in flight (`record.journal_file`).
    pub journal: Journal,
    /// What the last run left undone, if it was killed: already written as `interrupted` lines.
    pub interrupted: Option<Leftover>,
    pub threshold: Threshold,
    /// The plant's side (MQTT, web page), off the frame path.
    pub sinks: Sinks,
    pub info: LineInfo,
    /// The camera up or down, written by its listener, read into every line state.
    pub camera: Arc<CameraCell>,
    /// `status.fault_line`, which the record thread asserts too while storage fails.
    pub fault: FaultLine,
}

impl Runtime {
    /// Opens everything the config names: model and library, camera, output, results log.
    /// A `stop` (SIGTERM) during the warm-up ends it after the inference in progress and
    /// the start with [`StoppedAtStart`], before any output is requested.
    pub fn open(config: Config, results_override: Option<&Path>, stop: &AtomicBool) -> anyhow::Result<Runtime> {
        // A journal left behind means the last run was killed: every output to its safe
        // level before anything else (warm-up can take seconds).
        let journal_path = config.resolve(&config.record.journal_file);
        let leftover = crate::record::read_journal(&journal_path).unwrap_or_else(|e| {
            log::error!("{e:#}; parts the last run left undone cannot be reported");
            None
        });
        if leftover.is_some() {
            release_outputs(&config);
        }
        let mut detector = open_detector(&config)?;
        // Warm before the output is requested: its deasserted level may be the energised one.
        warm_up(&mut detector, config.runtime.warmup_runs, stop)?;
        let threshold = Threshold(
            config
                .decision
                .threshold
                .unwrap_or(detector.manifest.calibration.threshold),
        );
        let camera = Arc::new(CameraCell::default());
        let frames = detector.manifest.input.frames(config.decision.max_frame_scale);
        if let Err(e) = camera_fits(&config, &frames.limit) {
            anyhow::bail!("{e}");
        }
        if let Some(w) = detector.manifest.threshold_warning(threshold.0, threshold_key(&config)) {
            log::warn!("{}", w.trim_start_matches("WARN "));
        }
        let fault = FaultLine::default();
        let source = open_source(&config, frames, &camera, &fault)?;
        let results_path = match results_override {
            Some(p) => p.to_path_buf(),
            None => config.resolve(&config.record.results),
        };
        let mut results = ResultsLog::open(&results_path)?;
        let seq_file = SeqFile::new(config.resolve(&config.record.seq_file));
        let mut seqs = open_sequence(&seq_file, results.last_device_seq);
        let interrupted = leftover.filter(|l| !l.is_empty());
        if let Some(left) = &interrupted {
            log::warn!("{}", left.render());
            write_interrupted(left, threshold.0, &mut results, &mut seqs, &seq_file);
        }
        // The output is opened last, deasserted, once everything else is ready.
        let reject = actuate::open_reject(&config)?;
        let info = LineInfo::new(
            &config,
            &detector.manifest,
            &detector.serving.detail,
            threshold.0,
            reject.describe(),
        );
        let sinks = sinks::open(&config, &info)?;
        let journal = Journal::start(&journal_path, &info.run_id)?;
        Ok(Runtime {
            config,
            source,
            detector,
            reject,
            results,
            seqs,
            seq_file,
            journal,
            interrupted,
            threshold,
            sinks,
            info,
            camera,
            fault,
        })
    }
}

/// Drives the reject and fault outputs to their released level (de-energised) and lets
/// them go; they are requested again, deasserted, once the line is ready.
fn release_outputs(config: &Config) {
    let lines = [
        (Some(&config.reject.output), "linesight-reject", "reject.output"),
        (
            config.status.fault_line.as_ref(),
            "linesight-fault",
            "status.fault_line",
        ),
    ];
    for (output, consumer, key) in lines {
        let Some(output) = output else { continue };
        if let Err(e) = actuate::open_output(config, output, consumer, key).and_then(|mut l| l.release()) {
            log::error!("{key}: cannot drive it to its safe level after the last run's crash: {e:#}");
        }
    }
}

/// The `interrupted` lines for what the last run left undone, before any new part's.
fn write_interrupted(
    left: &Leftover,
    threshold: f32,
    results: &mut ResultsLog,
    seqs: &mut SeqBlock,
    seq_file: &SeqFile,
) {
    for mut record in left.records(threshold, clock::unix_ms()) {
        let (device_seq, reserve) = seqs.take();
        record.device_seq = device_seq;
        if let Some(n) = reserve {
            if let Err(e) = seq_file.write(n) {
                log::error!(
                    "record.seq_file {}: cannot reserve up to {n}: {e}",
                    seq_file.path().display()
                );
            }
        }
        if let Err(e) = results.append_line(&record.line()) {
            log::error!(
                "results {}: interrupted part {} not written: {e}",
                results.path().display(),
                record.id
            );
        }
    }
    if let Err(e) = results.sync() {
        log::error!("results {}: {e}", results.path().display());
    }
}

/// The device sequence, continued after the seq file's reservation and the results log's
/// last line; its first reservation is written before any number is used. A seq file that
/// cannot be read or written is an error in the log, not a reason to leave the line
/// uninspected: the numbering then continues from the results log alone.
fn open_sequence(seq_file: &SeqFile, last_logged: Option<u64>) -> SeqBlock {
    let stored = seq_file.read().unwrap_or_else(|e| {
        log::error!("{e:#}");
        None
    });
    let (seqs, reserved) = SeqBlock::start(stored, last_logged, SEQ_BLOCK);
    if let Err(e) = seq_file.write(reserved) {
        log::error!(
            "record.seq_file {}: cannot reserve device_seq up to {reserved}: {e}; numbers may repeat after a restart",
            seq_file.path().display()
        );
    }
    seqs
}

/// Opens the configured camera and trigger with the fault output following the camera:
/// the one wiring for `run` and `collect`. `camera` hears every loss and recovery too,
/// for the plant's side.
pub fn open_source(
    config: &Config,
    frames: FrameSpec,
    camera: &Arc<CameraCell>,
    fault: &FaultLine,
) -> anyhow::Result<Box<dyn Source>> {
    let (camera, fault) = (Arc::clone(camera), fault.clone());
    source::open(config, frames, || {
        Ok(Box::new(FaultOutput::open(config, fault, camera)?))
    })
}

/// Where the line's threshold comes from: the config, or the manifest's calibration.
pub fn threshold_key(config: &Config) -> &'static str {
    if config.decision.threshold.is_some() {
        "decision.threshold"
    } else {
        "calibration.threshold"
    }
}

/// `Err` when the camera is set up for frames that `limit` refuses: every part would be a
/// broken frame. Cameras whose size is not in the config (folders, the device's own
/// size) are checked frame by frame.
pub fn camera_fits(config: &Config, limit: &FrameLimit) -> Result<(), String> {
    let size = match &config.camera {
        CameraConfig::Synthetic(c) => Some((c.width, c.height)),
        CameraConfig::V4l2(c) => c.width.zip(c.height),
        _ => None,
    };
    match size {
        Some((w, h)) => limit.check(w, h).map_err(|why| {
            format!("camera.width, camera.height: every frame would be rejected as broken_frame: {why}")
        }),
        None => Ok(()),
    }
}

/// The `[status] fault_line`, shared by its two causes: asserted while the camera is
/// down (the supervisor's reports) or storage is failing (the record thread). Without a
/// configured line, faults are only logged and counted. Requested once the camera has
/// opened; left de-energised when the source is dropped.
#[derive(Clone, Default)]
pub struct FaultLine(Arc<Mutex<FaultState>>);

#[derive(Default)]
struct FaultState {
    line: Option<Box<dyn OutputLine>>,
    camera_down: bool,
    storage_failing: bool,
    asserted: bool,
}

impl FaultLine {
    /// Storage is failing (`true`) or works again.
    pub fn storage(&self, failing: bool) {
        self.update(|s| s.storage_failing = failing);
    }

    fn update(&self, change: impl FnOnce(&mut FaultState)) {
        let mut s = self.0.lock().unwrap_or_else(|e| e.into_inner());
        change(&mut s);
        let want = s.camera_down || s.storage_failing;
        if want != s.asserted {
            s.asserted = want;
            // A failed write is logged, never fatal (the parts are rejected anyway).
            if let Some(line) = &mut s.line {
                if let Err(e) = line.set(want) {
                    log::error!("fault output {}: {e:#}", line.describe());
                }
            }
        }
    }
}

/// The camera supervisor's end of the fault line; the same reports go to the camera cell
/// that the plant's side reads.
struct FaultOutput {
    fault: FaultLine,
    camera: Arc<CameraCell>,
}

impl FaultOutput {
    /// Opens the configured fault line, deasserted; the camera has just opened.
    fn open(config: &Config, fault: FaultLine, camera: Arc<CameraCell>) -> anyhow::Result<FaultOutput> {
        if let Some(o) = &config.status.fault_line {
            let line = actuate::open_output(config, o, "linesight-fault", "status.fault_line")?;
            fault.update(|s| {
                s.line = Some(line);
                s.asserted = false;
            });
        }
        camera.opened(clock::unix_ms());
        Ok(FaultOutput { fault, camera })
    }
}

impl CameraListener for FaultOutput {
    fn camera_down(&mut self, cause: &str) {
        self.fault.update(|s| s.camera_down = true);
        self.camera.down(cause, clock::unix_ms());
    }

    fn camera_up(&mut self) {
        self.fault.update(|s| s.camera_down = false);
        self.camera.up(clock::unix_ms());
    }

    fn down_action(&self) -> Option<&str> {
        let configured = self.fault.0.lock().unwrap_or_else(|e| e.into_inner()).line.is_some();
        configured.then_some("fault output asserted")
    }
}

impl Drop for FaultOutput {
    /// The fault output ends as a stopped board leaves it: de-energised.
    fn drop(&mut self) {
        let mut s = self.fault.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(mut line) = s.line.take() {
            if let Err(e) = line.release() {
                log::error!("fault output {}: {e:#}", line.describe());
            }
        }
    }
}

/// Reads the manifest of the config's model and opens the session its `[runtime]` asks for.
pub fn open_detector(config: &Config) -> anyhow::Result<Detector> {
    let manifest = Manifest::load(&config.resolve(&config.model.dir)).context("model.dir")?;
    open_model(manifest, &config.runtime, None, &config.base_dir)
}

/// Opens the session for a model as `runtime` asks: the one way every command opens one.
/// Relative paths in `runtime` (the library, the TensorRT engine cache) are relative to
/// `base_dir`, the folder of the config they came from (empty: the working directory).
/// `library`, from a command line, wins over `runtime.onnxruntime_library`. Every provider
/// given up on the way is a WARN with its reason: a fallback is never silent.
pub fn open_model(
    manifest: Manifest,
    runtime: &RuntimeConfig,
    library: Option<&Path>,
    base_dir: &Path,
) -> anyhow::Result<Detector> {
    let (runtime, library) = resolved(runtime, library, base_dir);
    let detector = Detector::open(manifest, &runtime, library.as_deref())?;
    for (kind, reason) in &detector.serving.skipped {
        log::warn!(
            "execution provider \"{}\" not used: {reason}; falling back (runtime.require_accelerator = false)",
            kind.as_str()
        );
    }
    Ok(detector)
}

/// `runtime` with its paths relative to `base_dir`, and the library to load. Joined as
/// `Config::resolve` joins: an absolute path stays as it is.
fn resolved(runtime: &RuntimeConfig, library: Option<&Path>, base_dir: &Path) -> (RuntimeConfig, Option<PathBuf>) {
    let mut runtime = runtime.clone();
    runtime.tensorrt.engine_cache_dir = runtime.tensorrt.engine_cache_dir.map(|p| base_dir.join(p));
    let library = match library {
        Some(p) => Some(p.to_path_buf()),
        None => runtime.onnxruntime_library.as_ref().map(|p| base_dir.join(p)),
    };
    (runtime, library)
}

/// Inferences before arming, so that no part pays for an engine build or lazy initialisation.
fn warm_up(detector: &mut Detector, runs: u32, stop: &AtomicBool) -> anyhow::Result<()> {
    log::info!("warming up the model: {} run(s) (runtime.warmup_runs)", runs.max(1));
    let t = clock::now_ns();
    let (done, worst) = detector.warm_up(runs, stop)?;
    if stop.load(Ordering::Relaxed) {
        return Err(StoppedAtStart { warm_runs: done }.into());
    }
    log::info!(
        "model warm on {} ({done} runs in {:.1} ms, slowest {worst:.1} ms)",
        detector.serving.detail,
        clock::ns_to_ms(clock::now_ns() - t)
    );
    Ok(())
}

/// A stop signal came while the runtime was being opened: nothing was inspected, no
/// output requested, and the last run's journal (if any) is left for the next start.
#[derive(Debug, thiserror::Error)]
#[error(
    "stopped by a signal during start-up (warm-up, after {warm_runs} run(s)): no part inspected, no output requested"
)]
pub struct StoppedAtStart {
    pub warm_runs: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_paths_are_relative_to_the_config_and_the_command_line_library_wins() {
        let runtime = |cache: &str| {
            let mut rt = RuntimeConfig {
                onnxruntime_library: Some("lib/libonnxruntime.so".into()),
                ..Default::default()
            };
            rt.tensorrt.engine_cache_dir = Some(cache.into());
            rt
        };
        // (engine cache, command-line library, config folder) → (cache, library) used
        for ((cache, cli, base), (want_cache, want_lib)) in [
            (
                ("trt-cache", None, "/etc/linesight"),
                ("/etc/linesight/trt-cache", "/etc/linesight/lib/libonnxruntime.so"),
            ),
            // A library named on the command line is taken as it is.
            (
                ("trt-cache", Some("here.so"), "/etc/linesight"),
                ("/etc/linesight/trt-cache", "here.so"),
            ),
            // Absolute paths stay; no config folder (eval without --config) leaves them as given.
            (
                ("/var/cache/trt", None, ""),
                ("/var/cache/trt", "lib/libonnxruntime.so"),
            ),
        ] {
            let (r, lib) = resolved(&runtime(cache), cli.map(Path::new), Path::new(base));
            assert_eq!(r.tensorrt.engine_cache_dir.as_deref(), Some(Path::new(want_cache)));
            assert_eq!(lib.as_deref(), Some(Path::new(want_lib)));
        }
    }
}
