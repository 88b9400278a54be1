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
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// A flag set by Ctrl-C or SIGTERM.
pub fn stop_on_signals() -> anyhow::Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop)).context("cannot install the signal handler")?;
    }
    Ok(stop)
}
