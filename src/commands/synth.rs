//! `linesight synth`: a labelled synthetic data set from the simulated line's part generator.

use crate::source::{save_dataset, PartSpec};
use anyhow::Context;
use std::path::PathBuf;
use std::process::ExitCode;

/// Write a labelled synthetic data set (good/, defect/, masks/) for training and evaluation.
#[derive(clap::Args)]
pub struct Args {
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
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let Args {
        out,
        count,
        seed,
        defect_ratio,
        size,
    } = args;
    anyhow::ensure!(
        (0.0..=1.0).contains(&defect_ratio),
        "--defect-ratio must be from 0 to 1, found {defect_ratio}"
    );
    anyhow::ensure!(
        (16..=8192).contains(&size),
        "--size must be 16 to 8192 pixels, found {size}"
    );
    let spec = PartSpec {
        width: size,
        height: size,
        defect_ratio,
        seed,
        ..Default::default()
    };
    let s = save_dataset(&out, count, spec).with_context(|| format!("cannot write data set to {}", out.display()))?;
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
