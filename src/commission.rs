//! Commissioning tools: what a field engineer runs before the line starts.
//!
//! - `probe_io` (for `linesight check`): open the camera, the trigger input and the
//!   outputs once, and say what was found: formats, resolution, chip and line names.
//! - `collect`: save frames from the configured camera, as inspection sees them, for training.
//! - `pulse`: fire the reject output, to check the wiring and the ejector's timing.

use crate::actuate::{self, Window};
use crate::camera;
use crate::clock;
use crate::config::{CameraConfig, Config, OutputConfig, TriggerConfig};
use crate::model::{Channels, Manifest};
use anyhow::Context;
use serde::Serialize;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// The model's colour, read from its manifest (no ONNX Runtime needed); grey if unreadable.
pub fn model_channels(config: &Config) -> Channels {
    Manifest::load(&config.resolve(&config.model.dir))
        .map(|m| m.input.channels)
        .unwrap_or(Channels::Gray)
}

/// Opens camera, trigger input and outputs once each; one line per item for `check`.
pub fn probe_io(config: &Config) -> Vec<(&'static str, anyhow::Result<String>)> {
    let mut out = Vec::new();
    if let CameraConfig::V4l2(c) = &config.camera {
        out.push((
            "camera device",
            camera::v4l2::probe(&config.resolve(&c.device)).map(|i| i.render()),
        ));
    }
    let wait = Duration::from_millis(config.status.camera_stall_ms.max(2000));
    out.push((
        "camera",
        camera::open_device(config, model_channels(config), wait).and_then(|mut s| {
            // One frame proves that the camera delivers, not only that it opens.
            let f = s.next_frame()?.context("the camera ended before its first frame")?;
            let what = match &f.image {
                Ok(px) => format!("first frame {}x{} {:?}", px.width, px.height, px.format),
                Err(e) => format!("first frame unusable: {}", e.detail),
            };
            Ok(format!("{} — {what}", s.describe()))
        }),
    ));
    out.push((
        "trigger",
        match &config.trigger {
            TriggerConfig::FreeRun => Ok("free run: every frame is a part".to_string()),
            TriggerConfig::Gpio(t) => crate::gpio::describe_line(&t.chip, &t.line, "trigger").and_then(|d| {
                let (rx, desc) = crate::trigger::gpio::spawn(t)?;
                drop(rx);
                Ok(format!("{d}; requested for edges: {desc}"))
            }),
        },
    ));
    out.push((
        "reject output",
        describe_output(config, &config.reject.output, "reject.output"),
    ));
    if let Some(o) = &config.status.fault_line {
        out.push(("fault output", describe_output(config, o, "status.fault_line")));
    }
    out
}

fn describe_output(config: &Config, o: &OutputConfig, key: &str) -> anyhow::Result<String> {
    let line = match o {
        OutputConfig::Gpio { chip, line, .. } => Some(crate::gpio::describe_line(chip, line, key)?),
        OutputConfig::Simulated { .. } => None,
    };
    let opened = actuate::open_output(config, o, "linesight-check", key)?;
    Ok(match line {
        Some(l) => format!("{} — {l}", opened.describe()),
        None => opened.describe(),
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
    let mut source = camera::open(config, model_channels(config))?;
    eprintln!("linesight: collecting {count} frames from {}", source.describe());
    let mut report = CollectReport { saved: 0, skipped: 0 };
    while report.saved < count && !stop.load(Ordering::Relaxed) {
        let Some(frame) = source.next_frame()? else { break };
        let px = match &frame.image {
            Ok(px) => px,
            Err(e) => {
                report.skipped += 1;
                eprintln!(
                    "linesight: WARN part {} has no image ({}): {}",
                    frame.id,
                    e.reason.as_str(),
                    e.detail
                );
                continue;
            }
        };
        let name = format!("{:06}.png", report.saved);
        let color = match px.format {
            camera::PixelFormat::Gray8 => image::ExtendedColorType::L8,
            camera::PixelFormat::Rgb8 => image::ExtendedColorType::Rgb8,
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

/// What `pulse` did.
pub struct PulseReport {
    pub pulses: u64,
    pub worst_lateness_ms: f64,
    pub errors: u64,
}

/// Fires the reject output `count` times for `reject.pulse_ms` each, through the same
/// scheduler as inspection. With a trigger, each pulse starts `reject.delay_ms` after a
/// trigger edge (the ejector should hit the part that passed the sensor); in free run,
/// every `interval` from now.
pub fn pulse(config: &Config, count: u64, interval: Duration, stop: &AtomicBool) -> anyhow::Result<PulseReport> {
    let line = actuate::open(config)?;
    let (tx, rx) = crossbeam_channel::unbounded::<Window>();
    eprintln!(
        "linesight: pulsing {} {count} time(s), {} ms each",
        line.describe(),
        config.reject.pulse_ms
    );
    let scheduler = std::thread::spawn(move || actuate::run_scheduler(line, rx));
    let (delay_ns, pulse_ns) = (
        clock::ms_to_ns(config.reject.delay_ms),
        clock::ms_to_ns(config.reject.pulse_ms),
    );
    let result = (|| -> anyhow::Result<()> {
        match &config.trigger {
            TriggerConfig::Gpio(t) => {
                let (edges, desc) = crate::trigger::gpio::spawn(t)?;
                eprintln!(
                    "linesight: waiting for {count} part(s) at {desc}; pulse {} ms after each",
                    config.reject.delay_ms
                );
                let mut seen = 0;
                while seen < count && !stop.load(Ordering::Relaxed) {
                    match edges.recv_timeout(Duration::from_millis(200)) {
                        Ok(crate::trigger::TriggerEvent::Edge(t_ns)) => {
                            seen += 1;
                            let start_ns = t_ns + delay_ns;
                            println!("part {seen}: edge at {t_ns} ns, pulse at {start_ns} ns");
                            let _ = tx.send(Window {
                                start_ns,
                                end_ns: start_ns + pulse_ns,
                            });
                        }
                        Ok(crate::trigger::TriggerEvent::Failed(e)) => anyhow::bail!("trigger: {e}"),
                        Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
                        Err(_) => anyhow::bail!("trigger: the input thread stopped"),
                    }
                }
            }
            TriggerConfig::FreeRun => {
                let t0 = clock::now_ns() + 100_000_000;
                for i in 0..count {
                    let start_ns = t0 + i * interval.as_nanos() as u64;
                    let _ = tx.send(Window {
                        start_ns,
                        end_ns: start_ns + pulse_ns,
                    });
                }
            }
        }
        Ok(())
    })();
    drop(tx);
    let stats = scheduler.join().expect("pulse scheduler panicked");
    result?;
    Ok(PulseReport {
        pulses: stats.pulses,
        worst_lateness_ms: stats.worst_lateness_ms,
        errors: stats.errors,
    })
}
