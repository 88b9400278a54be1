//! `model.toml`: the contract between the training side and linesight.

use crate::frame::PixelFormat;
use anyhow::{bail, Context};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

pub const MANIFEST_FILE: &str = "model.toml";

#[derive(Debug, Clone, Deserialize)]
pub struct Manifest {
    pub name: String,
    pub format_version: u32,
    /// The ONNX file, relative to the manifest's folder.
    pub onnx: PathBuf,
    /// sha256 of the ONNX file, checked at load.
    pub sha256: String,
    pub input: InputSpec,
    pub outputs: OutputNames,
    pub calibration: Calibration,
    #[serde(default)]
    pub provenance: toml::Table,
    #[serde(default)]
    pub evaluation: toml::Table,
    /// The folder the manifest was read from.
    #[serde(skip)]
    pub dir: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
pub struct InputSpec {
    pub name: String,
    /// N, C, H, W.
    pub shape: [usize; 4],
    /// `"gray"` or `"rgb"`.
    pub channels: PixelFormat,
    pub resize: Resize,
    /// Pixel values are scaled from 0..255 into this range before mean/std.
    pub value_range: [f32; 2],
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Resize {
    /// Scale each axis to the model's size, ignoring the aspect ratio.
    Stretch,
    /// Keep the aspect ratio: the longer side fills the input, centred, the rest padded
    /// with pixel value 0.
    Letterbox,
    /// As letterbox, but an image smaller than the input keeps its own size: every part
    /// is seen at the pixel scale the model was trained at (textures, crack widths).
    Fit,
}

#[derive(Debug, Clone, Deserialize)]
pub struct OutputNames {
    pub score: String,
    pub anomaly_map: Option<String>,
}

/// Statistics of scores on held-back good images, and the threshold chosen from them.
#[derive(Debug, Clone, Deserialize)]
pub struct Calibration {
    pub n: usize,
    pub mean: f32,
    pub std: f32,
    pub max: f32,
    pub p99: f32,
    pub threshold: f32,
    pub method: String,
}

impl InputSpec {
    pub fn height(&self) -> usize {
        self.shape[2]
    }
    pub fn width(&self) -> usize {
        self.shape[3]
    }
    pub fn channel_count(&self) -> usize {
        self.shape[1]
    }
}

impl Manifest {
    /// Reads `dir/model.toml` and checks it against itself (shapes, channels, mean/std).
    pub fn load(dir: &Path) -> anyhow::Result<Manifest> {
        let path = dir.join(MANIFEST_FILE);
        let text =
            std::fs::read_to_string(&path).with_context(|| format!("cannot read model manifest {}", path.display()))?;
        let mut m: Manifest =
            toml::from_str(&text).with_context(|| format!("model manifest {} is malformed", path.display()))?;
        m.dir = dir.to_path_buf();
        let problems = m.problems();
        if !problems.is_empty() {
            bail!(
                "model manifest {} is inconsistent: {}",
                path.display(),
                problems.join("; ")
            );
        }
        Ok(m)
    }

    pub fn onnx_path(&self) -> PathBuf {
        self.dir.join(&self.onnx)
    }

    fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        let i = &self.input;
        let want_c = i.channels.channels();
        if i.shape[0] != 1 {
            out.push(format!("input.shape: batch must be 1, found {}", i.shape[0]));
        }
        if i.shape[1] != want_c {
            out.push(format!(
                "input.shape: {} channels need C = {want_c}, found {}",
                i.channels.as_str(),
                i.shape[1]
            ));
        }
        if i.height() == 0 || i.width() == 0 {
            out.push("input.shape: H and W must be positive".into());
        }
        if i.mean.len() != want_c || i.std.len() != want_c {
            out.push(format!(
                "input.mean and input.std need {want_c} value(s) each, found {} and {}",
                i.mean.len(),
                i.std.len()
            ));
        }
        if i.std.iter().any(|s| *s == 0.0 || !s.is_finite()) {
            out.push("input.std: every value must be finite and non-zero".into());
        }
        if !self.calibration.threshold.is_finite() {
            out.push("calibration.threshold must be a finite number".into());
        }
        out
    }

    /// Checks that model.onnx is the file the manifest was written for.
    pub fn verify_onnx(&self) -> anyhow::Result<Vec<u8>> {
        let path = self.onnx_path();
        let bytes = std::fs::read(&path).with_context(|| format!("cannot read model {}", path.display()))?;
        let found = hex(&Sha256::digest(&bytes));
        if !found.eq_ignore_ascii_case(&self.sha256) {
            bail!(
                "model {} does not match its manifest: sha256 is {found}, model.toml says {}. \
                 Re-export the model or restore the file that belongs to this manifest",
                path.display(),
                self.sha256
            );
        }
        Ok(bytes)
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
