//! `linesight collect`: save frames from the configured camera, as inspection sees them,
//! for training.

use super::check::model_frames;
use crate::config::Config;
use crate::frame::PixelFormat;
use crate::runtime;
use anyhow::Context;
use serde::Serialize;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};

/// Save N frames from the configured camera (and trigger), as inspection sees them, for training.
#[derive(clap::Args)]
pub struct Args {
    #[arg(long, short)]
    config: PathBuf,
    /// Frames to save.
    #[arg(long)]
    count: usize,
    /// Folder for the PNG files and frames.jsonl (capture times).
    #[arg(long)]
    out: PathBuf,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let config = Config::load(&args.config)?;
    let stop = super::stop_on_signals()?;
    let r = collect(&config, args.count, &args.out, &stop)?;
    println!(
        "saved {} frame(s) to {} ({} part(s) without an image skipped)",
        r.saved,
        args.out.display(),
        r.skipped
    );
    Ok(if r.saved == args.count {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// One line of `frames.jsonl` beside the collected images.
#[derive(Serialize)]
struct Collected<'a> {
    file: String,
    id: u64,
    capture_ns: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    frame_ns: Option<u64>,
    width: u32,
    height: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    origin: Option<&'a str>,
}

/// What `collect` did.
pub struct CollectReport {
    pub saved: usize,
    /// Parts that had no image (missing frame, camera lost).
    pub skipped: usize,
}

/// Saves `count` frames from the configured camera and trigger into `out` as PNG, with
/// `frames.jsonl` (capture times, sizes). The frames are what inspection gets: the same
/// source chain, the model's colour, the camera's full frame (the model's resize is not
/// applied: training does its own).
pub fn collect(config: &Config, count: usize, out: &Path, stop: &AtomicBool) -> anyhow::Result<CollectReport> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let index_path = out.join("frames.jsonl");
    let mut index = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&index_path)
        .with_context(|| format!("cannot open {}", index_path.display()))?;
    let mut source = runtime::open_source(config, model_frames(config), &Default::default(), &Default::default())?;
    log::info!("collecting {count} frames from {}", source.describe());
    let mut report = CollectReport { saved: 0, skipped: 0 };
    while report.saved < count && !stop.load(Ordering::Relaxed) {
        let Some(frame) = source.next_frame()? else { break };
        let px = match &frame.image {
            Ok(px) => px,
            Err(e) => {
                report.skipped += 1;
                log::warn!("part {} has no image ({}): {}", frame.id, e.reason.as_str(), e.detail);
                continue;
            }
        };
        let name = format!("{:06}.png", report.saved);
        let color = match px.format {
            PixelFormat::Gray8 => image::ExtendedColorType::L8,
            PixelFormat::Rgb8 => image::ExtendedColorType::Rgb8,
        };
        image::save_buffer(out.join(&name), &px.data, px.width, px.height, color)
            .with_context(|| format!("cannot write {}", out.join(&name).display()))?;
        let line = serde_json::to_string(&Collected {
            file: name,
            id: frame.id,
            capture_ns: frame.capture_ns,
            frame_ns: frame.frame_ns,
            width: px.width,
            height: px.height,
            origin: frame.origin.as_deref(),
        })? + "\n";
        index.write_all(line.as_bytes())?;
        report.saved += 1;
    }
    if let Some(h) = source.health() {
        eprint!("{}", h.render());
    }
    Ok(report)
}
