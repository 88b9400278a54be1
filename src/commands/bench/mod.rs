//! `linesight bench`: how fast and how big inspection is on this machine, with the
//! configured model, execution providers and camera; with `--line`, the highest rate the
//! whole line holds (line.rs). Speed and memory targets are checked here (and by the
//! scripts under bench/), never by timed unit tests.

pub mod line;

use crate::config::{CameraConfig, Config, ProviderKind, SyntheticCamera};
use crate::frame::Pixels;
use crate::preprocess;
use crate::runtime;
use crate::source;
use crate::stats::Percentiles;
use anyhow::Context;
use serde::Serialize;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

/// Measure preprocess and inference latency, throughput and memory with the configured
/// model, providers and camera (the scripts under bench/ drive it).
#[derive(clap::Args)]
pub struct Args {
    #[arg(long, short)]
    config: PathBuf,
    /// Timed frames.
    #[arg(long, default_value_t = 1000)]
    runs: usize,
    /// Execution providers to use instead of runtime.providers, e.g. `cuda,cpu`.
    #[arg(long, value_delimiter = ',')]
    providers: Vec<String>,
    /// Also write the figures as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Also find the highest rate the whole line holds (every stage, paced, no fail-safe
    /// reject): the figure to size a station with. Synthetic and folder cameras are paced
    /// by the search; a V4L2 or GStreamer camera is run at its own rate.
    #[arg(long)]
    line: bool,
    /// With --line: parts in the confirming trial (the search's trials run a quarter of it).
    #[arg(long, default_value_t = 2000, requires = "line")]
    parts: u64,
    /// With --line: hold this rate (parts/s) for --parts parts instead of searching.
    #[arg(long, requires = "line")]
    rate: Option<f64>,
    /// Idle this long before each bare run: inference as a paced line sees it, its core
    /// idle between frames (docs/performance.md).
    #[arg(long, default_value_t = 0)]
    idle_ms: u64,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut c = Config::load(&args.config)?;
    if !args.providers.is_empty() {
        c.runtime.providers = args
            .providers
            .iter()
            .map(|p| {
                ProviderKind::parse(p).ok_or_else(|| {
                    anyhow::anyhow!("--providers: unknown provider \"{p}\"; expected tensorrt, cuda or cpu")
                })
            })
            .collect::<anyhow::Result<_>>()?;
    }
    if let Some(rate) = args.rate {
        anyhow::ensure!(
            rate.is_finite() && rate > 0.0,
            "--rate: expected parts per second above 0, found {rate}"
        );
    }
    anyhow::ensure!(args.parts > 0, "--parts: expected at least 1 part, found 0");
    let line_config = args.line.then(|| c.clone());
    let mut report = bench(c, args.runs, args.idle_ms)?;
    print!("{report}");
    if let Some(config) = line_config {
        let how = line::LineArgs {
            parts: args.parts,
            rate: args.rate,
        };
        let line = line::measure(&config, report.bare_fps, report.bare_inference_ms.p99, &how)?;
        print!("{line}");
        report.line = Some(line);
    }
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    // A line that holds no rate (or not the --rate asked for) is a finding a script acts on.
    if report.line.as_ref().is_some_and(|l| l.rate_parts_per_s.is_none()) {
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// Frames from the configured camera, cycled through the timed loop.
const FRAMES: usize = 32;

#[derive(Debug, Serialize)]
pub struct BenchReport {
    pub model: String,
    pub provider: String,
    pub runs: usize,
    pub warm_up_ms: f64,
    /// Preprocess (decode → tensor) per frame, ms.
    pub preprocess_ms: Percentiles,
    /// Inference at batch 1, ms.
    pub inference_ms: Percentiles,
    /// Inference with the anomaly map copied back, ms.
    pub inference_with_map_ms: Percentiles,
    /// Frames per second through preprocess + inference, back to back.
    pub throughput_fps: f64,
    /// ONNX Runtime's run on one prepared input, back to back ("bare" inference; with
    /// `--idle-ms`, that long idle before each run), ms.
    pub bare_inference_ms: Percentiles,
    pub idle_ms: u64,
    /// Runs per second of that loop: what no line can exceed.
    pub bare_fps: f64,
    /// Peak resident memory of the process, MiB (VmHWM).
    pub peak_rss_mib: Option<f64>,
    /// `--line`: the whole line's highest held rate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<line::LineReport>,
}

/// p50, p99 and max of the timed runs, ms (`stats`' one definition, as `eval` reports them).
pub(crate) fn percentiles(runs_ms: Vec<f64>) -> Percentiles {
    Percentiles::of(runs_ms).expect("at least one run")
}

/// Runs the benchmark: `runs` timed frames (plus the configured warm-up).
pub fn bench(mut config: Config, runs: usize, idle_ms: u64) -> anyhow::Result<BenchReport> {
    // Frames as fast as the source makes them: the line's pace is not what is measured.
    match &mut config.camera {
        CameraConfig::Synthetic(SyntheticCamera { parts_per_second, .. })
        | CameraConfig::Folder { parts_per_second, .. } => *parts_per_second = 1e6,
        // A real camera gives frames at its own rate; they are collected first.
        CameraConfig::V4l2(_) | CameraConfig::Gstreamer(_) => {}
    }
    let mut detector = runtime::open_detector(&config)?;
    let t = Instant::now();
    detector.warm_up(config.runtime.warmup_runs, &AtomicBool::new(false))?;
    let warm_up_ms = t.elapsed().as_secs_f64() * 1e3;
    // The device alone (no trigger, no supervision): only its frames are wanted.
    let wait = std::time::Duration::from_secs(5);
    let mut source = source::open_device(
        &config,
        detector.manifest.input.frames(config.decision.max_frame_scale),
        wait,
    )?;
    let mut frames: Vec<Pixels> = Vec::with_capacity(FRAMES);
    while frames.len() < FRAMES {
        match source.next_frame().context("camera")? {
            Some(f) => frames.extend(f.image.ok()),
            None => break,
        }
    }
    anyhow::ensure!(!frames.is_empty(), "the camera gave no usable frame to benchmark with");
    let spec = detector.manifest.input.clone();
    let runs = runs.max(1);
    let (mut pre, mut inf, mut inf_map) = (Vec::with_capacity(runs), Vec::with_capacity(runs), Vec::new());
    let mut preprocessor = preprocess::Preprocessor::default();
    let start = Instant::now();
    for i in 0..runs {
        let t0 = Instant::now();
        preprocessor.to_tensor(&frames[i % frames.len()], &spec, detector.input_mut())?;
        let t1 = Instant::now();
        detector.run(false)?;
        pre.push((t1 - t0).as_secs_f64() * 1e3);
        inf.push(t1.elapsed().as_secs_f64() * 1e3);
    }
    let throughput_fps = runs as f64 / start.elapsed().as_secs_f64();
    // Bare: the last frame's input, run again and again.
    let mut bare = Vec::with_capacity(runs);
    let start = Instant::now();
    let mut idle_s = 0.0;
    for _ in 0..runs {
        if idle_ms > 0 {
            let t = Instant::now();
            std::thread::sleep(std::time::Duration::from_millis(idle_ms));
            idle_s += t.elapsed().as_secs_f64();
        }
        let t = Instant::now();
        detector.run(false)?;
        bare.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let bare_fps = runs as f64 / (start.elapsed().as_secs_f64() - idle_s);
    if detector.manifest.outputs.anomaly_map.is_some() {
        for _ in 0..runs.min(200) {
            let t = Instant::now();
            detector.run(true)?;
            inf_map.push(t.elapsed().as_secs_f64() * 1e3);
        }
    } else {
        inf_map = inf.clone();
    }
    Ok(BenchReport {
        model: detector.manifest.name.clone(),
        provider: detector.serving.detail.clone(),
        runs,
        warm_up_ms,
        preprocess_ms: percentiles(pre),
        inference_ms: percentiles(inf),
        inference_with_map_ms: percentiles(inf_map),
        throughput_fps,
        bare_inference_ms: percentiles(bare),
        idle_ms,
        bare_fps,
        peak_rss_mib: peak_rss_mib(),
        line: None,
    })
}

fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

impl std::fmt::Display for BenchReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let p = |p: &Percentiles| format!("p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms", p.p50, p.p99, p.max);
        writeln!(
            f,
            "model {} on {}, {} runs at batch 1",
            self.model, self.provider, self.runs
        )?;
        writeln!(f, "  warm-up                {:.1} ms", self.warm_up_ms)?;
        writeln!(f, "  preprocess             {}", p(&self.preprocess_ms))?;
        writeln!(f, "  inference              {}", p(&self.inference_ms))?;
        writeln!(f, "  inference + map copy   {}", p(&self.inference_with_map_ms))?;
        writeln!(
            f,
            "  throughput             {:.1} frames/s (preprocess + inference, back to back)",
            self.throughput_fps
        )?;
        let how = match self.idle_ms {
            0 => "back to back".to_string(),
            ms => format!("{ms} ms idle before each"),
        };
        writeln!(
            f,
            "  bare inference         {}; {:.1} frames/s (one prepared input, {how})",
            p(&self.bare_inference_ms),
            self.bare_fps
        )?;
        match self.peak_rss_mib {
            Some(m) => writeln!(f, "  peak memory            {m:.1} MiB resident"),
            None => writeln!(f, "  peak memory            unknown"),
        }
    }
}
