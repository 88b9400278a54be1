//! `linesight check`: everything that can be checked before a line starts, each
//! problem listed with where it is, instead of stopping at the first.

use crate::actuate;
use crate::config::{CameraConfig, Config, OutputConfig, SaveImages, TriggerConfig};
use crate::frame::{FrameLimit, FrameSpec, PixelFormat};
use crate::model::Manifest;
use crate::{runtime, source};
use anyhow::Context;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

/// Validate the config, the model and the ONNX Runtime library; open the camera, the
/// trigger and the outputs once; list every problem.
#[derive(clap::Args)]
pub struct Args {
    #[arg(long, short)]
    config: PathBuf,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let path = args.config.as_path();
    let config = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("linesight: error: {e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    println!("config {}: ok", path.display());
    let mut failed = 0;
    let mut report = |what: &str, r: anyhow::Result<String>| match r {
        Ok(s) => println!("{what}: {s}"),
        Err(e) => {
            failed += 1;
            println!("{what}: PROBLEM: {e:#}");
        }
    };
    let mut detector = None;
    report(
        "model",
        runtime::open_detector(&config).map(|d| {
            let m = &d.manifest;
            let line = format!(
                "{} ok (sha256 verified, input {:?} {}, threshold {} by {})",
                m.onnx_path().display(),
                m.input.shape,
                m.input.channels.as_str(),
                config.decision.threshold.unwrap_or(m.calibration.threshold),
                if config.decision.threshold.is_some() {
                    "decision.threshold".to_string()
                } else {
                    m.calibration.method.clone()
                }
            );
            detector = Some(d);
            line
        }),
    );
    // The threshold against the calibration, and the frames the camera gives against the
    // model's input; the manifest's own problems are on the model's line.
    if let Ok(m) = Manifest::load(&config.resolve(&config.model.dir)) {
        let c = &m.calibration;
        let t = config.decision.threshold.unwrap_or(c.threshold);
        let key = runtime::threshold_key(&config);
        let line = m.threshold_warning(t, key).unwrap_or_else(|| {
            let rejected = c
                .good_rejected(t)
                .map_or(String::new(), |r| format!("; false-reject rate {r:.3} on the calibration's good parts"));
            format!(
                "{key} = {t}, inside the calibration's plausible range {} (mean good score) to {} (highest + 3 std){rejected}",
                c.mean,
                c.max + 3.0 * c.std
            )
        });
        report("threshold", Ok(line));
        let l = m.input.frames(config.decision.max_frame_scale).limit;
        report(
            "frames",
            runtime::camera_fits(&config, &l)
                .map(|()| {
                    format!(
                        "{}x{} to {}x{} px inspected (decision.max_frame_scale = {}); others are broken_frame",
                        l.min.0, l.min.1, l.max.0, l.max.1, config.decision.max_frame_scale
                    )
                })
                .map_err(anyhow::Error::msg),
        );
    }
    if let Some(lib) = crate::model::library::loaded() {
        report(
            "onnxruntime",
            Ok(format!("{} (from {})", lib.path.display(), lib.origin)),
        );
    }
    if let Some(d) = &detector {
        let skipped: Vec<String> = d
            .serving
            .skipped
            .iter()
            .map(|(k, r)| format!("{} not used: {r}", k.as_str()))
            .collect();
        let tail = if skipped.is_empty() {
            String::new()
        } else {
            format!(" (WARN {})", skipped.join("; "))
        };
        println!("execution provider: {}{tail}", d.serving.detail);
    }
    // The plant side (off unless configured): what each sink found, and its warnings.
    let sinks = crate::sinks::check(&config);
    let storage = probe_storage(&config, None);
    for (what, result) in probe_io(&config).into_iter().chain(storage).chain(sinks) {
        report(what, result);
    }
    if failed > 0 {
        println!("{failed} problem(s) found");
        Ok(ExitCode::FAILURE)
    } else {
        println!("all checks passed");
        Ok(ExitCode::SUCCESS)
    }
}

/// What the model takes from the camera (colour and frame sizes), read from its manifest
/// (no ONNX Runtime needed); grey frames up to `decision.max_frame_scale` times 1024 px
/// if unreadable (the model's line says why).
pub fn model_frames(config: &Config) -> FrameSpec {
    let scale = config.decision.max_frame_scale;
    Manifest::load(&config.resolve(&config.model.dir))
        .map(|m| m.input.frames(scale))
        .unwrap_or(FrameSpec {
            channels: PixelFormat::Gray8,
            limit: FrameLimit::for_input((1024, 1024), scale),
        })
}

/// Opens camera, trigger input and outputs once each; one line per item for `check`.
pub fn probe_io(config: &Config) -> Vec<(&'static str, anyhow::Result<String>)> {
    let mut out = Vec::new();
    if let CameraConfig::V4l2(c) = &config.camera {
        out.push((
            "camera device",
            source::v4l2::probe(&config.resolve(&c.device)).map(|i| i.render()),
        ));
    }
    let wait = Duration::from_millis(config.status.camera_stall_ms.max(2000));
    out.push((
        "camera",
        source::open_device(config, model_frames(config), wait).and_then(|mut s| {
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
                let (rx, desc) = crate::source::trigger::sensor::spawn(t)?;
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

/// Every place linesight writes to, each with a probe file written, synced and removed:
/// one line per place for `check`, so that an unwritable folder is found before the line
/// runs. `results` stands for `--results`, where given.
pub fn probe_storage(config: &Config, results: Option<&Path>) -> Vec<(&'static str, anyhow::Result<String>)> {
    let r = &config.record;
    let mut places: Vec<(&'static str, PathBuf, bool)> = vec![(
        "results",
        results.map_or_else(|| config.resolve(&r.results), Path::to_path_buf),
        false,
    )];
    if r.save != SaveImages::None {
        places.push(("record.save_dir", config.resolve(&r.save_dir), true));
    }
    if let Some(m) = &r.metrics_file {
        places.push(("record.metrics_file", config.resolve(m), false));
    }
    places.push(("record.seq_file", config.resolve(&r.seq_file), false));
    places.push(("record.journal_file", config.resolve(&r.journal_file), false));
    for (key, o) in [
        ("reject.output.edge_log", Some(&config.reject.output)),
        ("status.fault_line.edge_log", config.status.fault_line.as_ref()),
    ] {
        if let Some(OutputConfig::Simulated { edge_log: Some(log) }) = o {
            places.push((key, config.resolve(log), false));
        }
    }
    places
        .into_iter()
        .map(|(key, path, is_dir)| {
            let dir = if is_dir {
                path.clone()
            } else {
                path.parent()
                    .filter(|d| !d.as_os_str().is_empty())
                    .unwrap_or(Path::new("."))
                    .to_path_buf()
            };
            (
                key,
                probe_dir(&dir).map(|free| format!("{} writable ({free})", path.display())),
            )
        })
        .collect()
}

/// Creates `dir` if need be, then writes, syncs and removes a probe file in it; says how
/// much room is left.
fn probe_dir(dir: &Path) -> anyhow::Result<String> {
    use std::io::Write;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create the folder {}", dir.display()))?;
    let probe = dir.join(format!(".linesight-check-{}", std::process::id()));
    let written = (|| {
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).open(&probe)?;
        f.write_all(&[b'\n'; 4096])?;
        f.sync_data()
    })();
    let removed = std::fs::remove_file(&probe);
    written.with_context(|| format!("cannot write a probe file in {}", dir.display()))?;
    removed.with_context(|| format!("cannot remove the probe file {}", probe.display()))?;
    Ok(free_space(dir).map_or_else(
        || "free space unknown".into(),
        |b| format!("{:.0} MiB free", b as f64 / (1u64 << 20) as f64),
    ))
}

/// Bytes free for an unprivileged writer on the file system of `dir`.
fn free_space(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs fills the struct we own from a NUL-terminated path.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    (unsafe { libc::statvfs(c.as_ptr(), &mut st) } == 0).then(|| st.f_bavail as u64 * st.f_frsize as u64)
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
