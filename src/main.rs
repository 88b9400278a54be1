//! linesight: line-side visual inspection. CLI only: parse, load config, hand over,
//! print the error chain.

use linesight::{camera, check, commission, config, eval, model, pipeline, score};

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

#[derive(Parser)]
#[command(
    name = "linesight",
    version,
    about = "Line-side visual inspection: scores every part with a GAN anomaly model and fires the reject output for faulty ones"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Inspect the line described by the config until Ctrl-C (or --max-parts).
    Run {
        /// The config file (see board/sim/linesight.toml).
        #[arg(long, short)]
        config: PathBuf,
        /// Stop after this many parts.
        #[arg(long)]
        max_parts: Option<u64>,
        /// Write results here instead of record.results.
        #[arg(long)]
        results: Option<PathBuf>,
    },
    /// Validate the config, the model and the ONNX Runtime library; list every problem.
    Check {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Save N frames from the configured camera (and trigger), as inspection sees them, for training.
    Collect {
        #[arg(long, short)]
        config: PathBuf,
        /// Frames to save.
        #[arg(long)]
        count: usize,
        /// Folder for the PNG files and frames.jsonl (capture times).
        #[arg(long)]
        out: PathBuf,
    },
    /// Fire the reject output to check wiring and ejector timing: with a GPIO trigger, one
    /// pulse reject.delay_ms after each part; in free run, one pulse every --interval-ms.
    Pulse {
        #[arg(long, short)]
        config: PathBuf,
        /// Pulses to fire.
        #[arg(long, default_value_t = 1)]
        count: u64,
        /// Free run: time between pulse starts.
        #[arg(long, default_value_t = 1000)]
        interval_ms: u64,
    },
    /// Evaluate a model on labelled images: AUROC, operating points, per-kind table, plots.
    Eval {
        /// Model folder (model.onnx + model.toml).
        #[arg(long)]
        model: PathBuf,
        /// Good images: a folder, or a .txt list of paths relative to the list's parent folder.
        #[arg(long)]
        good: PathBuf,
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
        /// ONNX Runtime library (default: as for `run`).
        #[arg(long)]
        onnxruntime_library: Option<PathBuf>,
        /// Take [runtime] (library, providers and their options) from this config file.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Score on two execution providers (e.g. `cpu,cuda` or `cuda,tensorrt`) and report
        /// the score drift, AUROC on each and verdicts that change, instead of the usual report.
        #[arg(long, value_name = "A,B")]
        compare_providers: Option<String>,
    },
    /// Measure preprocess and inference latency, throughput and memory with the configured
    /// model, providers and camera (the scripts under bench/ drive it).
    Bench {
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
    },
    /// Set the model's threshold from good parts (optionally defects) and write it into model.toml.
    Calibrate {
        /// Model folder (model.onnx + model.toml); its [calibration] table is rewritten.
        #[arg(long)]
        model: PathBuf,
        /// Good images from the line: a folder or a .txt list.
        #[arg(long)]
        good: PathBuf,
        /// Defective images: with them the F1-optimal threshold is chosen instead.
        #[arg(long)]
        defect: Option<PathBuf>,
        /// Good-only method: quantile of good scores (1 - the false-reject rate you accept).
        #[arg(long, default_value_t = 0.995)]
        quantile: f64,
        /// Good-only method: threshold = q + margin * (q - median).
        #[arg(long, default_value_t = 0.1)]
        margin: f64,
        /// ONNX Runtime library (default: as for `run`).
        #[arg(long)]
        onnxruntime_library: Option<PathBuf>,
    },
    /// Write a labelled synthetic data set (good/, defect/, masks/) for training and evaluation.
    Synth {
        /// Output folder.
        #[arg(long)]
        out: PathBuf,
        /// Number of parts.
        #[arg(long, default_value_t = 1000)]
        count: usize,
        /// Seed: the same seed gives the same parts.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Share of defective parts, 0 to 1.
        #[arg(long, default_value_t = 0.1)]
        defect_ratio: f64,
        /// Image width and height in pixels.
        #[arg(long, default_value_t = 256)]
        size: u32,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match dispatch(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("linesight: error: {e}");
            for cause in e.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::FAILURE
        }
    }
}

/// A flag set by Ctrl-C or SIGTERM.
fn stop_on_signals() -> anyhow::Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop)).context("cannot install the signal handler")?;
    }
    Ok(stop)
}

fn dispatch(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Run {
            config,
            max_parts,
            results,
        } => {
            let config = config::Config::load(&config)?;
            let stop = Arc::new(AtomicBool::new(false));
            for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
                signal_hook::flag::register(sig, Arc::clone(&stop)).context("cannot install the signal handler")?;
            }
            let rt = pipeline::Runtime::open(config, results.as_deref())?;
            let m = &rt.detector.manifest;
            eprintln!(
                "linesight: model {} ({}), threshold {} ({})",
                m.name,
                m.dir.display(),
                rt.threshold.0,
                if rt.config.decision.threshold.is_some() {
                    "decision.threshold"
                } else {
                    "model manifest"
                }
            );
            if let Some(lib) = model::library::loaded() {
                eprintln!(
                    "linesight: ONNX Runtime {} ({}), execution provider {}",
                    lib.path.display(),
                    lib.origin,
                    rt.detector.serving.detail
                );
            }
            eprintln!("linesight: camera {}", rt.source.describe());
            eprintln!("linesight: results {}", rt.results.path().display());
            if rt.results.repaired_bytes > 0 {
                eprintln!(
                    "linesight: WARN results file ended in a torn line (a crash?): cut {} bytes before appending",
                    rt.results.repaired_bytes
                );
            }
            let report = pipeline::run(rt, max_parts, stop)?;
            print!("{}", report.summary.render());
            let p = &report.pulses;
            println!(
                "reject pulses {} for {} rejected parts (merged where windows overlap); worst edge lateness {:.2} ms",
                p.pulses, p.windows, p.worst_lateness_ms
            );
            if let Some(camera) = &report.camera {
                print!("{}", camera.render());
            }
            if report.late_outcomes > 0 {
                println!(
                    "late outcomes {} (parts already rejected at their deadline), {} of them not inspected (deadline passed while queued)",
                    report.late_outcomes, report.skipped_late
                );
            }
            if report.record_errors > 0 || p.errors > 0 {
                eprintln!(
                    "linesight: error: {} results could not be written, {} output edges failed",
                    report.record_errors, p.errors
                );
                return Ok(ExitCode::FAILURE);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Check { config } => Ok(check::check(&config)),
        Command::Collect { config, count, out } => {
            let config = config::Config::load(&config)?;
            let stop = stop_on_signals()?;
            let r = commission::collect(&config, count, &out, &stop)?;
            println!(
                "saved {} frame(s) to {} ({} part(s) without an image skipped)",
                r.saved,
                out.display(),
                r.skipped
            );
            Ok(if r.saved == count {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Pulse {
            config,
            count,
            interval_ms,
        } => {
            let config = config::Config::load(&config)?;
            let stop = stop_on_signals()?;
            let r = commission::pulse(&config, count, std::time::Duration::from_millis(interval_ms), &stop)?;
            println!(
                "{} pulse(s) of {} ms fired; worst edge lateness {:.2} ms; {} output error(s)",
                r.pulses, config.reject.pulse_ms, r.worst_lateness_ms, r.errors
            );
            Ok(if r.errors == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Eval {
            model,
            good,
            defect,
            masks,
            out,
            threshold,
            onnxruntime_library,
            config,
            compare_providers,
        } => {
            let (runtime, library) = match &config {
                Some(path) => {
                    let c = config::Config::load(path)?;
                    let lib = c.runtime.onnxruntime_library.as_ref().map(|p| c.resolve(p));
                    (c.runtime.clone(), lib)
                }
                None => (config::RuntimeConfig::default(), None),
            };
            let library = onnxruntime_library.or(library);
            let mut samples = eval::load_set(&good, false, None).context("--good")?;
            samples.extend(eval::load_set(&defect, true, masks.as_deref()).context("--defect")?);
            if let Some(pair) = compare_providers {
                let kinds: Vec<_> = pair.split(',').map(|s| config::ProviderKind::parse(s.trim())).collect();
                let [Some(a), Some(b)] = kinds[..] else {
                    anyhow::bail!("--compare-providers: expected two of tensorrt, cuda, cpu separated by a comma, found \"{pair}\"");
                };
                let cmp = eval::compare(&model, &runtime, library.as_deref(), (a, b), samples, threshold)?;
                std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
                std::fs::write(out.join("compare.md"), cmp.markdown())?;
                std::fs::write(out.join("compare.json"), serde_json::to_string_pretty(&cmp)?)?;
                print!("{}", cmp.markdown());
                println!("\nwritten to {}", out.join("compare.md").display());
                return Ok(ExitCode::SUCCESS);
            }
            let mut detector = model::Detector::open(model::Manifest::load(&model)?, &runtime, library.as_deref())?;
            let threshold = threshold.unwrap_or(detector.manifest.calibration.threshold);
            let name = detector.manifest.name.clone();
            let scored = eval::score_all(&mut detector, samples, true, true)?;
            let resize = detector.manifest.input.resize;
            eval::write_report(&scored, &name, &model, threshold, resize, &out)?;
            print!(
                "{}",
                std::fs::read_to_string(out.join("report.md"))?
                    .split("\n## Plots")
                    .next()
                    .unwrap_or_default()
            );
            println!("\nreport written to {}", out.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Calibrate {
            model,
            good,
            defect,
            quantile,
            margin,
            onnxruntime_library,
        } => {
            anyhow::ensure!(
                (0.5..1.0).contains(&quantile),
                "--quantile must be from 0.5 to below 1, found {quantile}"
            );
            anyhow::ensure!(margin >= 0.0, "--margin must be 0 or more, found {margin}");
            let method = match defect {
                Some(_) => score::Method::F1Optimal,
                None => score::Method::GoodQuantile { quantile, margin },
            };
            let c = score::calibrate(&model, &good, defect.as_deref(), method, onnxruntime_library.as_deref())?;
            let (stats, t) = (&c.stats, c.threshold);
            println!(
                "{} good scores: p50 {:.4}, p95 {:.4}, p99 {:.4}, max {:.4}",
                stats.n, stats.p50, stats.p95, stats.p99, stats.max
            );
            let (rejected, old) = (c.good_rejected, c.previous_threshold);
            println!(
                "threshold {t:.4} by {} (was {old:.4}); {rejected} of {} good images would be rejected",
                method.name(),
                stats.n
            );
            println!("written to {}", model.join("model.toml").display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench {
            config,
            runs,
            providers,
            json,
        } => {
            let mut c = config::Config::load(&config)?;
            if !providers.is_empty() {
                c.runtime.providers = providers
                    .iter()
                    .map(|p| {
                        config::ProviderKind::parse(p).ok_or_else(|| {
                            anyhow::anyhow!("--providers: unknown provider \"{p}\"; expected tensorrt, cuda or cpu")
                        })
                    })
                    .collect::<anyhow::Result<_>>()?;
            }
            let report = linesight::bench::bench(c, runs)?;
            print!("{report}");
            if let Some(path) = json {
                std::fs::write(&path, serde_json::to_string_pretty(&report)?)
                    .with_context(|| format!("cannot write {}", path.display()))?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Synth {
            out,
            count,
            seed,
            defect_ratio,
            size,
        } => {
            anyhow::ensure!(
                (0.0..=1.0).contains(&defect_ratio),
                "--defect-ratio must be from 0 to 1, found {defect_ratio}"
            );
            anyhow::ensure!(
                (16..=8192).contains(&size),
                "--size must be 16 to 8192 pixels, found {size}"
            );
            let spec = camera::PartSpec {
                width: size,
                height: size,
                defect_ratio,
                seed,
                ..Default::default()
            };
            let s = camera::save_dataset(&out, count, spec)
                .with_context(|| format!("cannot write data set to {}", out.display()))?;
            println!(
                "wrote {} good and {} defective parts to {}",
                s.good,
                s.defect,
                out.display()
            );
            for (kind, n) in s.per_kind {
                println!("  {:<14} {n}", kind.as_str());
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
