//! The configuration file: pure data (serde) plus validation that lists every problem.
//!
//! Phase one of two: nothing here opens a device or a library. `Runtime` (in
//! pipeline.rs) builds the live objects from a validated `Config`.
//!
//! The doc comment on each field is the user's documentation of that key.
//! Relative paths are resolved against the folder that holds the config file.

use serde::Deserialize;
use std::fmt;
use std::path::{Path, PathBuf};

/// The whole `linesight.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where frames come from.
    pub camera: CameraConfig,
    /// Which model inspects the parts.
    pub model: ModelConfig,
    /// ONNX Runtime settings.
    #[serde(default)]
    pub runtime: RuntimeConfig,
    /// How a score becomes a verdict, and by when.
    #[serde(default)]
    pub decision: DecisionConfig,
    /// The reject output that fires the ejector.
    pub reject: RejectConfig,
    /// Where verdicts are recorded.
    #[serde(default)]
    pub record: RecordConfig,
    /// Deliberate faults, for commissioning drills and tests of the fail-safe path.
    /// Leave out in production.
    #[serde(default)]
    pub faults: FaultsConfig,
    /// The folder of the config file; relative paths are resolved against it.
    #[serde(skip)]
    pub base_dir: PathBuf,
}

/// `[camera]`: the frame source, chosen by `kind`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum CameraConfig {
    /// A simulated production line: seeded images of a machined flange, some with defects.
    Synthetic {
        /// Image width in pixels.
        #[serde(default = "default_synth_size")]
        width: u32,
        /// Image height in pixels.
        #[serde(default = "default_synth_size")]
        height: u32,
        /// Line speed: parts that pass the camera per second.
        #[serde(default = "default_parts_per_second")]
        parts_per_second: f64,
        /// Share of parts that carry a defect, 0 to 1.
        #[serde(default = "default_defect_ratio")]
        defect_ratio: f64,
        /// Defect kinds drawn from (scratch, dent, crack, stain, missing_hole, chip); empty means all.
        #[serde(default)]
        defect_kinds: Vec<String>,
        /// Seed of the line: the same seed gives the same parts.
        #[serde(default)]
        seed: u64,
    },
    /// Image files replayed as a line. Ground truth comes from `good/` and `defect/` sub-folders when present.
    Folder {
        /// The folder of images (PNG, JPEG, BMP; grey or colour; any size), searched recursively.
        path: PathBuf,
        /// Replay rate in parts per second.
        #[serde(default = "default_parts_per_second")]
        parts_per_second: f64,
        /// Start again from the first image after the last one.
        #[serde(default, rename = "loop")]
        looped: bool,
    },
}

/// `[model]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// Folder holding `model.onnx` and its manifest `model.toml`.
    pub dir: PathBuf,
}

/// `[runtime]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeConfig {
    /// Path of the ONNX Runtime shared library (`libonnxruntime.so.1.x`). Unset: `ORT_DYLIB_PATH`,
    /// then the library fetched at build time, then one beside the executable.
    pub onnxruntime_library: Option<PathBuf>,
    /// Threads ONNX Runtime may use inside one inference; 0 lets it choose (all cores).
    /// Leave a core free for the camera and the reject timing on small boards.
    #[serde(default)]
    pub intra_threads: usize,
    /// Execution providers to try, in order: `"tensorrt"`, `"cuda"`, `"cpu"`. The first one
    /// that registers serves the model; the others are fallbacks.
    #[serde(default = "default_providers")]
    pub providers: Vec<ProviderKind>,
    /// `true`: if the first provider cannot be registered, linesight does not start and says
    /// why (a missing `libnvinfer.so.10`, say). `false`: it falls back to the next one with a WARN.
    #[serde(default)]
    pub require_accelerator: bool,
    /// Inferences run before the pipeline reports ready and the reject output is armed
    /// (a TensorRT engine build, cuDNN algorithm search and lazy allocations happen here).
    #[serde(default = "default_warmup_runs")]
    pub warmup_runs: u32,
    /// `[runtime.tensorrt]`: options of the TensorRT provider.
    #[serde(default)]
    pub tensorrt: TensorRtConfig,
    /// `[runtime.cuda]`: options of the CUDA provider.
    #[serde(default)]
    pub cuda: CudaConfig,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            onnxruntime_library: None,
            intra_threads: 0,
            providers: default_providers(),
            require_accelerator: false,
            warmup_runs: default_warmup_runs(),
            tensorrt: TensorRtConfig::default(),
            cuda: CudaConfig::default(),
        }
    }
}

/// An ONNX Runtime execution provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    Tensorrt,
    Cuda,
    Cpu,
}

impl ProviderKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Tensorrt => "tensorrt",
            ProviderKind::Cuda => "cuda",
            ProviderKind::Cpu => "cpu",
        }
    }
    pub fn parse(s: &str) -> Option<ProviderKind> {
        match s {
            "tensorrt" => Some(ProviderKind::Tensorrt),
            "cuda" => Some(ProviderKind::Cuda),
            "cpu" => Some(ProviderKind::Cpu),
            _ => None,
        }
    }
}

/// `[runtime.tensorrt]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TensorRtConfig {
    /// GPU index.
    #[serde(default)]
    pub device_id: i32,
    /// Build FP16 engines (faster on Jetson; check the drift with `linesight eval --compare-providers`).
    #[serde(default)]
    pub fp16: bool,
    /// Where built engines are kept, in a sub-folder per model sha256, TensorRT version, GPU and
    /// precision, so a new model or a new JetPack never loads a stale engine. Unset:
    /// `$CACHE_DIRECTORY/trt` (systemd's CacheDirectory=), else `~/.cache/linesight/trt`.
    pub engine_cache_dir: Option<PathBuf>,
    /// Keep TensorRT's timing cache beside the engines (speeds up rebuilds after a model change).
    #[serde(default = "yes")]
    pub timing_cache: bool,
    /// Builder workspace limit in MiB; 0 leaves TensorRT's default.
    #[serde(default)]
    pub workspace_mb: u64,
    /// Builder optimisation level 0 to 5 (TensorRT's default is 3; higher builds longer).
    #[serde(default = "default_trt_opt_level")]
    pub builder_optimization_level: u8,
}

impl Default for TensorRtConfig {
    fn default() -> Self {
        TensorRtConfig {
            device_id: 0,
            fp16: false,
            engine_cache_dir: None,
            timing_cache: true,
            workspace_mb: 0,
            builder_optimization_level: default_trt_opt_level(),
        }
    }
}

/// `[runtime.cuda]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CudaConfig {
    /// GPU index.
    #[serde(default)]
    pub device_id: i32,
    /// cuDNN convolution algorithm search: `"exhaustive"` (best kernels, slower first run),
    /// `"heuristic"` or `"default"`.
    #[serde(default)]
    pub cudnn_conv_algo_search: ConvSearch,
    /// Capture the graph once and replay it (shapes here are static). Needs the model's inputs
    /// and outputs at fixed device addresses, which linesight's I/O binding provides.
    #[serde(default)]
    pub cuda_graph: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConvSearch {
    #[default]
    Exhaustive,
    Heuristic,
    Default,
}

/// `[decision]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecisionConfig {
    /// Score above which a part is rejected. Unset: the threshold calibrated in the model manifest.
    pub threshold: Option<f32>,
    /// A part with no verdict this long after its capture is rejected (fail-safe).
    /// Must be shorter than `reject.delay_ms`, so that the pulse can still be scheduled.
    #[serde(default = "default_deadline_ms")]
    pub deadline_ms: u64,
    /// Frames waiting for inference at most; a part arriving to a full queue is rejected as overload.
    #[serde(default = "default_queue_depth")]
    pub queue_depth: usize,
}

impl Default for DecisionConfig {
    fn default() -> Self {
        DecisionConfig {
            threshold: None,
            deadline_ms: default_deadline_ms(),
            queue_depth: default_queue_depth(),
        }
    }
}

/// `[reject]`: when and how the ejector is fired.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RejectConfig {
    /// Time from a part's capture to its arrival at the ejector: the pulse starts then.
    pub delay_ms: u64,
    /// How long the reject output stays asserted for one part. Pulses that overlap merge.
    #[serde(default = "default_pulse_ms")]
    pub pulse_ms: u64,
    /// The output that drives the ejector.
    pub output: OutputConfig,
}

/// `[reject.output]`, chosen by `kind`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum OutputConfig {
    /// A GPIO line through the kernel's character device.
    Gpio {
        /// The GPIO chip: a path (`/dev/gpiochip0`) or a chip label (`tegra234-gpio`).
        /// Labels are stable across boots; chip numbers are not.
        chip: String,
        /// The line: an offset on the chip (`5`) or a line name (`"PAC.06"`).
        line: LineRef,
        /// The ejector fires on a low level (the reject is asserted by driving the line low).
        #[serde(default)]
        active_low: bool,
    },
    /// No hardware: every edge is kept with its time, and written to `edge_log` if set.
    Simulated {
        /// File for the edge log, one JSON line per edge (`{"t_ns":..,"level":..}`).
        edge_log: Option<PathBuf>,
    },
}

/// A GPIO line, by offset or by name.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum LineRef {
    Offset(u32),
    Name(String),
}

impl fmt::Display for LineRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LineRef::Offset(o) => write!(f, "offset {o}"),
            LineRef::Name(n) => write!(f, "\"{n}\""),
        }
    }
}

/// `[record]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordConfig {
    /// Results log: one JSON line per part, appended. `--results` overrides it.
    #[serde(default = "default_results")]
    pub results: PathBuf,
    /// Seconds between progress lines on the terminal; 0 turns them off.
    #[serde(default = "default_progress_s")]
    pub progress_s: f64,
    /// Which parts get their image saved with the anomaly map laid over: "none",
    /// "rejects" (parts rejected on their score) or "all" inspected parts.
    #[serde(default)]
    pub save: SaveImages,
    /// Folder for saved images, `<id>_<reason>.png`.
    #[serde(default = "default_save_dir")]
    pub save_dir: PathBuf,
    /// Prometheus text file (for node_exporter's textfile collector, e.g.
    /// `/var/lib/node_exporter/textfile_collector/linesight.prom`): parts, rejects by reason,
    /// stage latencies and `linesight_info{model, provider}`; rewritten about once a second.
    /// Unset: none.
    #[serde(default)]
    pub metrics_file: Option<PathBuf>,
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

impl Default for RecordConfig {
    fn default() -> Self {
        RecordConfig {
            results: default_results(),
            progress_s: default_progress_s(),
            metrics_file: None,
            save: SaveImages::None,
            save_dir: default_save_dir(),
        }
    }
}

/// `[faults]`: each `*_every = N` injects that fault into every N-th part (0 = never).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultsConfig {
    /// Deliver a corrupted frame (its pixel buffer cut short).
    #[serde(default)]
    pub broken_frame_every: u64,
    /// Make the inference call fail.
    #[serde(default)]
    pub inference_error_every: u64,
    /// Stall the inference by `slow_inference_ms` (a deadline miss when it exceeds `decision.deadline_ms`).
    #[serde(default)]
    pub slow_inference_every: u64,
    /// Length of an injected stall.
    #[serde(default = "default_slow_inference_ms")]
    pub slow_inference_ms: u64,
}

fn default_providers() -> Vec<ProviderKind> {
    vec![ProviderKind::Cpu]
}
fn default_warmup_runs() -> u32 {
    3
}
fn default_trt_opt_level() -> u8 {
    3
}
fn yes() -> bool {
    true
}
fn default_synth_size() -> u32 {
    256
}
fn default_parts_per_second() -> f64 {
    10.0
}
fn default_defect_ratio() -> f64 {
    0.1
}
fn default_deadline_ms() -> u64 {
    200
}
fn default_queue_depth() -> usize {
    4
}
fn default_pulse_ms() -> u64 {
    50
}
fn default_results() -> PathBuf {
    PathBuf::from("results.jsonl")
}
fn default_save_dir() -> PathBuf {
    PathBuf::from("images")
}
fn default_progress_s() -> f64 {
    1.0
}
fn default_slow_inference_ms() -> u64 {
    1000
}

/// One problem in a config, with the key it is about.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub key: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// Why a config could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config {path} is not valid TOML for linesight: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config {path} has {} problem(s):\n{}", problems.len(), list(problems))]
    Invalid { path: PathBuf, problems: Vec<Problem> },
}

fn list(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| format!("  - {p}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn runtime_problems(r: &RuntimeConfig, bad: &mut impl FnMut(&str, String)) {
    let p = &r.providers;
    if p.is_empty() {
        bad(
            "runtime.providers",
            "lists no provider; expected some of \"tensorrt\", \"cuda\", \"cpu\" in order".into(),
        );
    }
    for (i, k) in p.iter().enumerate() {
        if p[..i].contains(k) {
            bad(
                &format!("runtime.providers[{i}]"),
                format!("\"{}\" is listed twice", k.as_str()),
            );
        }
    }
    if let Some(i) = p.iter().position(|k| *k == ProviderKind::Cpu) {
        if i + 1 < p.len() {
            bad(
                &format!("runtime.providers[{}]", i + 1),
                "comes after \"cpu\", which always registers, so it would never be tried".into(),
            );
        }
    }
    if r.require_accelerator && p.first().is_some_and(|k| *k == ProviderKind::Cpu) {
        bad(
            "runtime.require_accelerator",
            "is true but the first provider is \"cpu\"; list \"tensorrt\" or \"cuda\" first".into(),
        );
    }
    if r.tensorrt.builder_optimization_level > 5 {
        bad(
            "runtime.tensorrt.builder_optimization_level",
            format!("expected 0 to 5, found {}", r.tensorrt.builder_optimization_level),
        );
    }
    if r.tensorrt.device_id < 0 || r.cuda.device_id < 0 {
        bad("runtime.*.device_id", "expected a GPU index of 0 or more".into());
    }
}

impl Config {
    /// Reads, parses and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("")).to_path_buf();
        Config::parse(&text, path, base)
    }

    /// Parses and validates config text; `path` only names it in messages.
    pub fn parse(text: &str, path: &Path, base_dir: PathBuf) -> Result<Config, ConfigError> {
        let mut config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: parse_message(&e, text),
        })?;
        config.base_dir = base_dir;
        let problems = config.problems();
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::Invalid {
                path: path.to_path_buf(),
                problems,
            })
        }
    }

    /// A path from the config, resolved against the config file's folder.
    pub fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base_dir.join(p)
        }
    }

    /// Every cross-field problem at once, each with its key path. No I/O.
    pub fn problems(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        let mut bad = |key: &str, message: String| {
            out.push(Problem {
                key: key.to_string(),
                message,
            })
        };
        match &self.camera {
            CameraConfig::Synthetic {
                width,
                height,
                parts_per_second,
                defect_ratio,
                defect_kinds,
                ..
            } => {
                for (key, v) in [("camera.width", width), ("camera.height", height)] {
                    if !(16..=8192).contains(v) {
                        bad(key, format!("expected 16 to 8192 pixels, found {v}"));
                    }
                }
                check_rate(&mut bad, *parts_per_second);
                if !(0.0..=1.0).contains(defect_ratio) {
                    bad(
                        "camera.defect_ratio",
                        format!("expected a share from 0 to 1, found {defect_ratio}"),
                    );
                }
                for (i, k) in defect_kinds.iter().enumerate() {
                    if crate::camera::DefectKind::parse(k).is_none() {
                        bad(
                            &format!("camera.defect_kinds[{i}]"),
                            format!(
                                "unknown defect kind \"{k}\"; expected one of {}",
                                crate::camera::DefectKind::ALL.map(|k| k.as_str()).join(", ")
                            ),
                        );
                    }
                }
            }
            CameraConfig::Folder {
                path, parts_per_second, ..
            } => {
                if path.as_os_str().is_empty() {
                    bad("camera.path", "must name a folder of images".into());
                }
                check_rate(&mut bad, *parts_per_second);
            }
        }
        if self.model.dir.as_os_str().is_empty() {
            bad(
                "model.dir",
                "must name the folder holding model.onnx and model.toml".into(),
            );
        }
        runtime_problems(&self.runtime, &mut bad);
        if let Some(t) = self.decision.threshold {
            if !t.is_finite() {
                bad("decision.threshold", format!("expected a finite score, found {t}"));
            }
        }
        if self.decision.deadline_ms == 0 {
            bad(
                "decision.deadline_ms",
                "must be at least 1 ms: a part needs time to be inspected".into(),
            );
        } else if self.decision.deadline_ms >= self.reject.delay_ms {
            bad(
                "decision.deadline_ms",
                format!(
                    "must be shorter than reject.delay_ms ({} ms), or a late verdict could not reach the ejector in time; found {} ms",
                    self.reject.delay_ms, self.decision.deadline_ms
                ),
            );
        }
        if self.decision.queue_depth == 0 {
            bad("decision.queue_depth", "must be at least 1 frame".into());
        }
        if self.reject.pulse_ms == 0 {
            bad(
                "reject.pulse_ms",
                "must be at least 1 ms, or the ejector never fires".into(),
            );
        }
        if self.reject.delay_ms > 60_000 {
            bad(
                "reject.delay_ms",
                format!(
                    "expected at most 60000 ms from camera to ejector, found {}",
                    self.reject.delay_ms
                ),
            );
        }
        if let OutputConfig::Gpio { chip, line, .. } = &self.reject.output {
            if chip.is_empty() {
                bad(
                    "reject.output.chip",
                    "must name a GPIO chip: a path like /dev/gpiochip0 or a label like tegra234-gpio".into(),
                );
            }
            if *line == LineRef::Name(String::new()) {
                bad(
                    "reject.output.line",
                    "must be a line offset (5) or a line name (\"PAC.06\")".into(),
                );
            }
        }
        if self.record.results.as_os_str().is_empty() {
            bad("record.results", "must name a file".into());
        }
        if !(self.record.progress_s >= 0.0 && self.record.progress_s.is_finite()) {
            bad(
                "record.progress_s",
                format!("expected seconds >= 0, found {}", self.record.progress_s),
            );
        }
        if self.faults.slow_inference_every > 0 && self.faults.slow_inference_ms == 0 {
            bad(
                "faults.slow_inference_ms",
                "must be at least 1 ms when faults.slow_inference_every is set".into(),
            );
        }
        out
    }
}

fn check_rate(bad: &mut impl FnMut(&str, String), pps: f64) {
    if !(pps > 0.0 && pps <= 1000.0) {
        bad(
            "camera.parts_per_second",
            format!("expected more than 0 and at most 1000 parts per second, found {pps}"),
        );
    }
}

/// toml's message on one line, with the offending source line:
/// "TOML parse error at line L, column C: what (at `key = value`)".
fn parse_message(e: &toml::de::Error, source: &str) -> String {
    let text = e.to_string();
    let mut lines = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.contains('|'));
    let head = lines.next().unwrap_or_default().to_string();
    let rest: Vec<_> = lines.collect();
    let mut msg = if rest.is_empty() {
        head
    } else {
        format!("{head}: {}", rest.join(" "))
    };
    if let Some(span) = e.span() {
        let start = source[..span.start].rfind('\n').map_or(0, |i| i + 1);
        let end = source[span.start..].find('\n').map_or(source.len(), |i| span.start + i);
        msg += &format!(" (at `{}`)", source[start..end].trim());
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
        [camera]
        kind = "synthetic"
        [model]
        dir = "m"
        [reject]
        delay_ms = 300
        [reject.output]
        kind = "simulated"
    "#;

    #[test]
    fn minimal_config_takes_line_side_defaults() {
        let c = Config::parse(MINIMAL, Path::new("t.toml"), PathBuf::from("/etc/ls")).unwrap();
        assert_eq!(c.decision.deadline_ms, 200);
        assert_eq!(c.reject.pulse_ms, 50);
        assert_eq!(c.resolve(Path::new("r.jsonl")), PathBuf::from("/etc/ls/r.jsonl"));
        assert_eq!(c.resolve(Path::new("/abs")), PathBuf::from("/abs"));
    }

    #[test]
    fn every_problem_is_listed_at_once() {
        let text = MINIMAL
            .replace("delay_ms = 300", "delay_ms = 100\npulse_ms = 0")
            .replace("kind = \"synthetic\"", "kind = \"synthetic\"\ndefect_ratio = 2.0");
        let err = Config::parse(&text, Path::new("t.toml"), PathBuf::new()).unwrap_err();
        let ConfigError::Invalid { problems, .. } = err else {
            panic!("expected Invalid, got {err}")
        };
        let keys: Vec<_> = problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, ["camera.defect_ratio", "decision.deadline_ms", "reject.pulse_ms"]);
    }
}
