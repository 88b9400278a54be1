//! `linesight eval`: how well a model separates good from defective parts, on the
//! user's own images, through the same preprocessing and runtime as the line.

mod compare;
pub mod metrics;
mod report;

use crate::camera::{is_image, kind_from_name, list_images, Pixels};
use crate::config::RuntimeConfig;
use crate::model::{Detector, Manifest};
use crate::{clock, preprocess};
use anyhow::{bail, Context};
use std::path::{Path, PathBuf};

pub use compare::{compare, Comparison};
pub use report::write_report;

/// One image of an evaluation set.
#[derive(Debug, Clone)]
pub struct Sample {
    pub path: PathBuf,
    pub defect: bool,
    /// The defect kind: sub-folder below the defect folder, or the file-name prefix.
    pub kind: Option<String>,
    pub mask: Option<PathBuf>,
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

/// Images from a folder (recursively) or a `.txt` list of paths, one a line,
/// relative to the folder above the list's folder (the data set's root).
pub fn load_set(arg: &Path, defect: bool, masks: Option<&Path>) -> anyhow::Result<Vec<Sample>> {
    let (files, root) = if arg.is_dir() {
        (list_images(arg)?, arg.to_path_buf())
    } else if arg.extension().is_some_and(|e| e == "txt") {
        let text = std::fs::read_to_string(arg).with_context(|| format!("cannot read list {}", arg.display()))?;
        // The root as the user wrote it, so that reports name images the way the user
        // does (a list named without its folder needs the absolute form).
        let root = match arg
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .and_then(Path::parent)
        {
            Some(r) => r.to_path_buf(),
            None => arg
                .canonicalize()?
                .parent()
                .and_then(Path::parent)
                .map(Path::to_path_buf)
                .unwrap_or_default(),
        };
        let mut files = Vec::new();
        for (i, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty() && !l.starts_with('#'))
        {
            let p = root.join(line.trim());
            if !p.is_file() {
                bail!(
                    "{}:{}: {} does not exist (paths are relative to {})",
                    arg.display(),
                    i + 1,
                    p.display(),
                    root.display()
                );
            }
            files.push(p);
        }
        (files, root.join(if defect { "defect" } else { "good" }))
    } else {
        bail!("{} is neither a folder nor a .txt list of images", arg.display());
    };
    if files.is_empty() {
        bail!("no images in {}", arg.display());
    }
    // Masks beside the images: --masks, or a `masks/` folder next to the defect folder.
    let masks = masks
        .map(Path::to_path_buf)
        .or_else(|| Some(root.parent()?.join("masks")).filter(|m| m.is_dir()));
    Ok(files
        .into_iter()
        .filter(|f| is_image(f))
        .map(|path| {
            let stem = path
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or_default()
                .to_string();
            let kind = if !defect {
                None
            } else {
                match path
                    .parent()
                    .filter(|p| *p != root)
                    .and_then(|p| p.file_name())
                    .and_then(|n| n.to_str())
                {
                    Some(dir) if dir != "defect" => Some(dir.to_string()),
                    _ => kind_from_name(&stem),
                }
            };
            let mask = if defect {
                masks
                    .as_ref()
                    .map(|m| m.join(format!("{stem}.png")))
                    .filter(|m| m.is_file())
            } else {
                None
            };
            Sample {
                path,
                defect,
                kind,
                mask,
            }
        })
        .collect())
}

/// Scores every sample, keeping anomaly maps when `keep_maps`.
pub fn score_all(
    detector: &mut Detector,
    samples: Vec<Sample>,
    keep_maps: bool,
    progress: bool,
) -> anyhow::Result<Vec<Scored>> {
    let spec = detector.manifest.input.clone();
    let n = samples.len();
    let progress = progress && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let mut out = Vec::with_capacity(n);
    for (i, sample) in samples.into_iter().enumerate() {
        let img = image::open(&sample.path).with_context(|| format!("cannot decode {}", sample.path.display()))?;
        let t0 = clock::now_ns();
        let size = (img.width(), img.height());
        preprocess::to_tensor(&Pixels::from_dynamic(img), &spec, detector.input_mut())
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

/// Opens a model folder for offline work (eval, calibrate), with the library found as `run` finds it.
pub fn open_model(dir: &Path, library: Option<&Path>) -> anyhow::Result<Detector> {
    let manifest = Manifest::load(dir)?;
    Detector::open(manifest, &RuntimeConfig::default(), library)
}
