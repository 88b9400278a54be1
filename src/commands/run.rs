//! `linesight run`: inspect the line until Ctrl-C/SIGTERM (or N parts), then print the summary.

use crate::config::Config;
use crate::runtime::{Runtime, StoppedAtStart};
use crate::{model, pipeline};
use std::path::PathBuf;
use std::process::ExitCode;

/// Inspect the line described by the config until Ctrl-C (or --max-parts).
#[derive(clap::Args)]
pub struct Args {
    /// The config file (see board/sim/linesight.toml).
    #[arg(long, short)]
    config: PathBuf,
    /// Stop after this many parts.
    #[arg(long)]
    max_parts: Option<u64>,
    /// Write results here instead of record.results.
    #[arg(long)]
    results: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let config = Config::load(&args.config)?;
    let stop = super::stop_on_signals()?;
    let rt = match Runtime::open(config, args.results.as_deref(), &stop) {
        Err(e) if e.is::<StoppedAtStart>() => {
            log::info!("{e}");
            return Ok(ExitCode::SUCCESS);
        }
        r => r?,
    };
    let m = &rt.detector.manifest;
    log::info!(
        "model {} ({}), threshold {} ({})",
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
        log::info!(
            "ONNX Runtime {} ({}), execution provider {}",
            lib.path.display(),
            lib.origin,
            rt.detector.serving.detail
        );
    }
    log::info!("camera {}", rt.source.describe());
    log::info!("results {}", rt.results.path().display());
    let repaired = rt.results.repaired;
    if repaired.cut_bytes > 0 {
        log::warn!(
            "results file ended in a torn line (a crash?): cut {} bytes before appending{}",
            repaired.cut_bytes,
            match repaired.cut_lines {
                0 => String::new(),
                n => format!(", {n} whole line(s) among them that were not results lines (zeros after a power cut?)"),
            }
        );
    }
    let report = pipeline::run(rt, args.max_parts, stop)?;
    print!("{}", report.render());
    if report.record_errors > 0 || report.pulses.errors > 0 {
        eprintln!(
            "{}linesight: error: {} results could not be written, {} output edges failed",
            crate::logging::prefix(log::Level::Error),
            report.record_errors,
            report.pulses.errors
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
