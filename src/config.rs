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
    /// What makes a part: every frame (`free_run`), or a part-present sensor on a GPIO input.
    #[serde(default)]
    pub trigger: TriggerConfig,
    /// linesight's own health: the fault output, and how a lost camera is detected and reopened.
    #[serde(default)]
    pub status: StatusConfig,
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
    /// A V4L2 capture device (USB, CSI with a V4L2 driver), streamed through mmap buffers.
    V4l2(V4l2Camera),
    /// A GStreamer pipeline ending in an appsink: Jetson CSI, RTSP, GigE Vision (aravissrc),
    /// files. Needs a linesight built with the `gstreamer` feature.
    Gstreamer(GstreamerCamera),
}

/// `[camera] kind = "v4l2"`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct V4l2Camera {
    /// The capture device: `/dev/video0`, or better a stable link such as `/dev/v4l/by-id/...`.
    pub device: PathBuf,
    /// Pixel format to ask for: "GREY", "YUYV" or "MJPG". Unset: the first of these (in that
    /// order) that the device offers. `linesight check` lists what the device has.
    pub pixel_format: Option<String>,
    /// Frame width in pixels. Unset: the device's current width.
    pub width: Option<u32>,
    /// Frame height in pixels. Unset: the device's current height.
    pub height: Option<u32>,
    /// Frame rate to ask for. Unset: the device's current rate.
    pub fps: Option<f64>,
    /// Manual exposure time in microseconds; turns auto exposure off. Unset: as the device has it.
    pub exposure_us: Option<u32>,
    /// Gain in the device's own units (`linesight check` shows the range). Unset: as the device has it.
    pub gain: Option<i32>,
    /// Kernel buffers to stream through, 2 to 32: room for frames while linesight is busy.
    #[serde(default = "default_v4l2_buffers")]
    pub buffers: u32,
    /// Further controls by name, as `linesight check` lists them (v4l2-ctl's names: lower
    /// case, `_` between words), e.g. `{ brightness = 128, power_line_frequency = 1 }`.
    #[serde(default)]
    pub controls: std::collections::BTreeMap<String, i32>,
}

/// `[camera] kind = "gstreamer"`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GstreamerCamera {
    /// A gst-launch-1.0 pipeline description whose last element is an `appsink`, e.g.
    /// `"v4l2src device=/dev/video0 ! videoconvert ! appsink"`. Put `videoconvert` before the
    /// appsink unless the source already gives GRAY8 or RGB: linesight sets the appsink's caps
    /// to the model's colour (GRAY8 or RGB) unless the pipeline sets them.
    pub pipeline: String,
    /// Appsink `sync`: false (default) hands each frame over as soon as it arrives; true
    /// releases frames at their timestamps (replaying files at their frame rate).
    #[serde(default)]
    pub sync: bool,
    /// Appsink `max-buffers`: frames held for linesight at most (default 1: only the newest).
    #[serde(default = "default_gst_max_buffers")]
    pub max_buffers: u32,
    /// Appsink `drop`: when full, drop the oldest frame (true, default) instead of blocking
    /// the pipeline (false: no frame is lost, for replaying files).
    #[serde(default = "default_true")]
    pub drop: bool,
    /// What the end of the stream means: "reconnect" (default: a live camera that ends has
    /// failed; the pipeline is rebuilt with backoff) or "stop" (files: the run ends).
    #[serde(default)]
    pub end_of_stream: EndOfStream,
}

/// `camera.end_of_stream`
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndOfStream {
    #[default]
    Reconnect,
    Stop,
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
#[derive(Debug, Clone, Deserialize)]
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
    /// Unplug the camera after this many frames (once): its parts become `camera_lost`
    /// rejects and the fault output is asserted until it is back (a drill of the fault wiring).
    pub camera_loss_at_part: Option<u64>,
    /// How long the drilled camera stays unplugged (reopen tries fail meanwhile).
    #[serde(default = "default_camera_loss_ms")]
    pub camera_loss_ms: u64,
}

/// `[trigger]`, chosen by `kind`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum TriggerConfig {
    /// No sensor: every frame the camera delivers is a part.
    #[default]
    FreeRun,
    /// A part-present sensor on a GPIO input: each edge is a part, stamped by the kernel,
    /// and the camera frame captured inside its window is that part's image. A part with no
    /// frame in its window is rejected (`missing_frame`, or `camera_lost` while the camera is down).
    Gpio(GpioTrigger),
}

/// `[trigger] kind = "gpio"`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GpioTrigger {
    /// The GPIO chip: a path (`/dev/gpiochip0`) or a label (`tegra234-gpio`, `9030000.pl061`).
    pub chip: String,
    /// The input line: an offset (`3`) or a line name (`"PAC.00"`).
    pub line: LineRef,
    /// Which physical edge marks a part: "rising" (default) or "falling".
    #[serde(default)]
    pub edge: TriggerEdge,
    /// Line bias: "pull_up", "pull_down" or "disabled". Unset: as the board has it.
    pub bias: Option<LineBias>,
    /// Edges this soon after an accepted edge are contact bounce and ignored (microseconds).
    /// The part keeps the kernel timestamp of its first edge.
    #[serde(default = "default_debounce_us")]
    pub debounce_us: u64,
    /// Earliest frame capture time that belongs to a part, in ms after its edge.
    #[serde(default)]
    pub window_start_ms: u64,
    /// Latest frame capture time that belongs to a part, in ms after its edge; the part waits
    /// this long for its frame. Must be shorter than `decision.deadline_ms`.
    #[serde(default = "default_window_end_ms")]
    pub window_end_ms: u64,
}

/// `trigger.edge`
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TriggerEdge {
    #[default]
    Rising,
    Falling,
}

/// `trigger.bias`
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LineBias {
    PullUp,
    PullDown,
    Disabled,
}

/// `[status]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusConfig {
    /// Output asserted while the camera is lost (for a stack light or the line PLC), same keys
    /// as `[reject.output]`. Unset: losses are only logged and counted.
    pub fault_line: Option<OutputConfig>,
    /// A camera (v4l2, gstreamer) that delivers no frame for this long is lost (0: never, for
    /// cameras that are idle between parts). Keep it well below `reject.delay_ms` in free run, so that the
    /// parts of an outage can still be ejected.
    #[serde(default = "default_camera_stall_ms")]
    pub camera_stall_ms: u64,
    /// Wait before the first try to reopen a lost camera; doubles after each failed try.
    #[serde(default = "default_camera_retry_ms")]
    pub camera_retry_ms: u64,
    /// Longest wait between tries to reopen a lost camera.
    #[serde(default = "default_camera_retry_max_ms")]
    pub camera_retry_max_ms: u64,
}

impl Default for StatusConfig {
    fn default() -> Self {
        StatusConfig {
            fault_line: None,
            camera_stall_ms: default_camera_stall_ms(),
            camera_retry_ms: default_camera_retry_ms(),
            camera_retry_max_ms: default_camera_retry_max_ms(),
        }
    }
}

fn default_v4l2_buffers() -> u32 {
    4
}
fn default_gst_max_buffers() -> u32 {
    1
}
fn default_true() -> bool {
    true
}
fn default_debounce_us() -> u64 {
    2000
}
fn default_window_end_ms() -> u64 {
    50
}
fn default_camera_stall_ms() -> u64 {
    2000
}
fn default_camera_retry_ms() -> u64 {
    100
}
fn default_camera_retry_max_ms() -> u64 {
    5000
}

impl Default for FaultsConfig {
    fn default() -> Self {
        FaultsConfig {
            broken_frame_every: 0,
            inference_error_every: 0,
            slow_inference_every: 0,
            slow_inference_ms: default_slow_inference_ms(),
            camera_loss_at_part: None,
            camera_loss_ms: default_camera_loss_ms(),
        }
    }
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
fn default_camera_loss_ms() -> u64 {
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
                    if crate::frame::DefectKind::parse(k).is_none() {
                        bad(
                            &format!("camera.defect_kinds[{i}]"),
                            format!(
                                "unknown defect kind \"{k}\"; expected one of {}",
                                crate::frame::DefectKind::ALL.map(|k| k.as_str()).join(", ")
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
            CameraConfig::V4l2(c) => {
                for (key, problem) in v4l2_problems(c) {
                    bad(key, problem);
                }
            }
            CameraConfig::Gstreamer(c) => {
                for (key, problem) in gstreamer_problems(c) {
                    bad(key, problem);
                }
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
        out.extend(self.trigger_and_status_problems());
        out
    }

    /// `[trigger]` and `[status]`, with the keys they share with other sections.
    fn trigger_and_status_problems(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        let mut bad = |key: &str, message: String| {
            out.push(Problem {
                key: key.to_string(),
                message,
            })
        };
        if let TriggerConfig::Gpio(t) = &self.trigger {
            gpio_line_problems(&mut bad, "trigger", &t.chip, &t.line);
            if t.window_start_ms >= t.window_end_ms {
                bad(
                    "trigger.window_end_ms",
                    format!(
                        "must be later than trigger.window_start_ms ({} ms); found {} ms",
                        t.window_start_ms, t.window_end_ms
                    ),
                );
            } else if t.window_end_ms >= self.decision.deadline_ms {
                bad(
                    "trigger.window_end_ms",
                    format!(
                        "must be shorter than decision.deadline_ms ({} ms): a part waits this long for its frame before inspection; found {} ms",
                        self.decision.deadline_ms, t.window_end_ms
                    ),
                );
            }
            if t.debounce_us > 1_000_000 {
                bad(
                    "trigger.debounce_us",
                    format!("expected at most 1000000 µs (1 s), found {}", t.debounce_us),
                );
            }
        }
        if let Some(OutputConfig::Gpio { chip, line, .. }) = &self.status.fault_line {
            gpio_line_problems(&mut bad, "status.fault_line", chip, line);
        }
        let s = &self.status;
        if s.camera_retry_ms == 0 {
            bad("status.camera_retry_ms", "must be at least 1 ms".into());
        }
        if s.camera_retry_max_ms < s.camera_retry_ms {
            bad(
                "status.camera_retry_max_ms",
                format!(
                    "must be at least status.camera_retry_ms ({} ms); found {} ms",
                    s.camera_retry_ms, s.camera_retry_max_ms
                ),
            );
        }
        out
    }
}

fn gpio_line_problems(bad: &mut impl FnMut(&str, String), section: &str, chip: &str, line: &LineRef) {
    if chip.is_empty() {
        bad(
            &format!("{section}.chip"),
            "must name a GPIO chip: a path like /dev/gpiochip0 or a label like tegra234-gpio".into(),
        );
    }
    if *line == LineRef::Name(String::new()) {
        bad(
            &format!("{section}.line"),
            "must be a line offset (5) or a line name (\"PAC.06\")".into(),
        );
    }
}

fn v4l2_problems(c: &V4l2Camera) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    if c.device.as_os_str().is_empty() {
        out.push(("camera.device", "must name a capture device such as /dev/video0".into()));
    }
    if let Some(f) = &c.pixel_format {
        if crate::source::v4l2::FourCc::parse(f).is_none() {
            out.push((
                "camera.pixel_format",
                format!("expected one of \"GREY\", \"YUYV\", \"MJPG\", found \"{f}\""),
            ));
        }
    }
    for (key, v) in [("camera.width", c.width), ("camera.height", c.height)] {
        if let Some(v) = v.filter(|v| !(16..=16384).contains(v)) {
            out.push((key, format!("expected 16 to 16384 pixels, found {v}")));
        }
    }
    if c.width.is_some() != c.height.is_some() {
        out.push(("camera.width", "set camera.width and camera.height together".into()));
    }
    if let Some(fps) = c.fps.filter(|f| !(*f > 0.0 && *f <= 1000.0)) {
        out.push((
            "camera.fps",
            format!("expected more than 0 and at most 1000, found {fps}"),
        ));
    }
    if !(2..=32).contains(&c.buffers) {
        out.push((
            "camera.buffers",
            format!("expected 2 to 32 buffers, found {}", c.buffers),
        ));
    }
    out
}

fn gstreamer_problems(c: &GstreamerCamera) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    let last = c.pipeline.rsplit('!').next().unwrap_or_default().trim();
    if c.pipeline.trim().is_empty() {
        out.push((
            "camera.pipeline",
            "must be a GStreamer pipeline ending in an appsink".into(),
        ));
    } else if !last.starts_with("appsink") {
        out.push((
            "camera.pipeline",
            format!("must end in an appsink (`... ! videoconvert ! appsink`); it ends in `{last}`"),
        ));
    }
    if c.max_buffers == 0 {
        out.push(("camera.max_buffers", "must be at least 1 frame".into()));
    }
    out
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
