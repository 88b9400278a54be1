//! One file per subcommand: each holds its arguments (clap), does the work and prints
//! what the user reads. main.rs only parses and hands over.

pub mod bench;
pub mod calibrate;
pub mod check;
pub mod collect;
pub mod eval;
pub mod pulse;
pub mod run;
pub mod synth;

use anyhow::Context;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// The model a tool scores images with, the good images, and the ONNX Runtime that
/// runs it (eval, calibrate).
#[derive(clap::Args)]
pub struct ModelArgs {
    /// Model folder (model.onnx + model.toml).
    #[arg(long)]
    pub model: PathBuf,
    /// Good images (from the line, for calibrate): a folder, or a .txt list of paths
    /// relative to the list's parent folder.
    #[arg(long)]
    pub good: PathBuf,
    /// ONNX Runtime library (default: as for `run`).
    #[arg(long)]
    pub onnxruntime_library: Option<PathBuf>,
}

/// A flag set by Ctrl-C or SIGTERM.
pub fn stop_on_signals() -> anyhow::Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop)).context("cannot install the signal handler")?;
    }
    Ok(stop)
}
