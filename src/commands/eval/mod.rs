//! `linesight eval`: how well a model separates good from defective parts, on the
//! user's own images, through the same preprocessing and runtime as the line.

mod compare;
mod report;

use crate::config::{Config, ProviderKind, RuntimeConfig};
pub use crate::dataset::{load_set, Sample};
use crate::model::{Detector, Manifest};
use crate::stats::Percentiles;
use crate::{clock, preprocess, runtime};
use anyhow::Context;
use std::path::PathBuf;
use std::process::ExitCode;

pub use compare::{compare, Comparison};
pub use report::write_report;

/// Evaluate a model on labelled images: AUROC, operating points, per-kind table, plots.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    model: super::ModelArgs,
    /// Defective images: a folder (kind = sub-folder or file-name prefix) or a .txt list.
    #[arg(long)]
    defect: PathBuf,
    /// Defect masks (<image stem>.png); default: a masks/ folder beside the defect folder.
    #[arg(long)]
    masks: Option<PathBuf>,
    /// Folder for report.md, report.json, scores.csv (every image's score), roc.svg,
    /// scores.svg and worst.png.
    #[arg(long)]
    out: PathBuf,
    /// Threshold to report at (default: the manifest's).
    #[arg(long)]
    threshold: Option<f32>,
    /// Take [runtime] (library, providers and their options) from this config file.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Score on two execution providers (e.g. `cpu,cuda` or `cuda,tensorrt`) and report
    /// the score drift, AUROC on each and verdicts that change, instead of the usual report.
    #[arg(long, value_name = "A,B")]
    compare_providers: Option<String>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let Args {
        model,
        defect,
        masks,
        out,
        threshold,
        config,
        compare_providers,
    } = args;
    let (model, good, onnxruntime_library) = (model.model, model.good, model.onnxruntime_library);
    // [runtime] from the config, its relative paths relative to the config's folder; without
    // one the defaults, which name no path.
    let (runtime_config, base_dir) = match &config {
        Some(path) => {
            let c = Config::load(path)?;
            (c.runtime, c.base_dir)
        }
        None => (RuntimeConfig::default(), PathBuf::new()),
    };
    let library = onnxruntime_library.as_deref();
    let mut samples = load_set(&good, false, None).context("--good")?;
    samples.extend(load_set(&defect, true, masks.as_deref()).context("--defect")?);
    if let Some(pair) = compare_providers {
        let kinds: Vec<_> = pair.split(',').map(|s| ProviderKind::parse(s.trim())).collect();
        let [Some(a), Some(b)] = kinds[..] else {
            anyhow::bail!(
                "--compare-providers: expected two of tensorrt, cuda, cpu separated by a comma, found \"{pair}\""
            );
        };
        let cmp = compare(&model, &runtime_config, library, &base_dir, (a, b), samples, threshold)?;
        std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
        std::fs::write(out.join("compare.md"), cmp.markdown())?;
        std::fs::write(out.join("compare.json"), serde_json::to_string_pretty(&cmp)?)?;
        print!("{}", cmp.markdown());
        println!("\nwritten to {}", out.join("compare.md").display());
        return Ok(ExitCode::SUCCESS);
    }
    let mut detector = runtime::open_model(Manifest::load(&model)?, &runtime_config, library, &base_dir)?;
    let threshold = threshold.unwrap_or(detector.manifest.calibration.threshold);
    let name = detector.manifest.name.clone();
    let scored = score_all(&mut detector, samples, true, true)?;
    let resize = detector.manifest.input.resize;
    print!(
        "{}",
        write_report(&scored, &name, &model, threshold, resize, &out)?.summary_markdown()
    );
    println!("\nreport written to {}", out.display());
    Ok(ExitCode::SUCCESS)
}

/// A model's result on one sample.
pub struct Scored {
    pub sample: Sample,
    pub score: f32,
    /// Anomaly map at model resolution, row-major.
    pub map: Option<Vec<f32>>,
    /// Preprocess + inference, ms.
    pub latency_ms: f64,
    /// The image's width and height.
    pub size: (u32, u32),
}

/// Preprocess + inference per image, ms, as `bench` computes its figures; None for no images.
fn latency(scored: &[Scored]) -> Option<Percentiles> {
    Percentiles::of(scored.iter().map(|s| s.latency_ms))
}

/// Scores every sample, keeping anomaly maps when `keep_maps`.
pub fn score_all(
    detector: &mut Detector,
    samples: Vec<Sample>,
    keep_maps: bool,
    progress: bool,
) -> anyhow::Result<Vec<Scored>> {
    let spec = detector.manifest.input.clone();
    // The frames the line would inspect, at the default decision.max_frame_scale.
    let limit = spec
        .frames(crate::config::DecisionConfig::default().max_frame_scale)
        .limit;
    let n = samples.len();
    let progress = progress && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let mut out = Vec::with_capacity(n);
    let mut preprocessor = preprocess::Preprocessor::default();
    for (i, sample) in samples.into_iter().enumerate() {
        let pixels = crate::files::read_capped(&sample.path, limit.max_file_bytes())
            .map_err(|e| e.to_string())
            .and_then(|bytes| crate::frame::decode_image(&bytes, &limit))
            .map_err(anyhow::Error::msg)
            .with_context(|| format!("cannot decode {}", sample.path.display()))?;
        let t0 = clock::now_ns();
        let size = (pixels.width, pixels.height);
        preprocessor
            .to_tensor(&pixels, &spec, detector.input_mut())
            .with_context(|| sample.path.display().to_string())?;
        let inspection = detector
            .run(keep_maps)
            .with_context(|| sample.path.display().to_string())?;
        let latency_ms = clock::ns_to_ms(clock::now_ns() - t0);
        if progress && (i + 1) % 50 == 0 {
            eprint!("\rscored {}/{n}", i + 1);
        }
        out.push(Scored {
            sample,
            score: inspection.score,
            map: inspection.anomaly_map,
            latency_ms,
            size,
        });
    }
    if progress && n >= 50 {
        eprintln!("\rscored {n}/{n}");
    }
    Ok(out)
}
