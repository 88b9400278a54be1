//! `model.toml`: the contract between the training side and linesight.

use crate::files;
use crate::frame::{FrameLimit, FrameSpec, PixelFormat};
use anyhow::{anyhow, bail, Context};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

pub const MANIFEST_FILE: &str = "model.toml";

/// The manifest format this linesight reads (`format_version`).
pub const FORMAT_VERSION: u32 = 1;

/// Largest input height or width a manifest may ask for, pixels.
pub const MAX_INPUT_SIDE: usize = 8192;

#[derive(Debug, Clone, Deserialize)]
pub struct Manifest {
    pub name: String,
    /// The manifest's format: 1 (`FORMAT_VERSION`), the only one this linesight reads.
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
    /// N, C, H, W: N = 1, C = 1 (gray) or 3 (rgb), H and W 1 to 8192.
    pub shape: [usize; 4],
    /// `"gray"` or `"rgb"`.
    pub channels: PixelFormat,
    pub resize: Resize,
    /// Pixel values are scaled from 0..255 into this range before mean/std: finite, low < high.
    pub value_range: [f32; 2],
    /// Per channel, subtracted after scaling: finite, inside `value_range`.
    pub mean: Vec<f32>,
    /// Per channel, divided by after the mean: finite, more than 0, at most the range's width.
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
/// All finite; `n` at least 1, `std` at least 0, the quantiles in order up to `max`.
#[derive(Debug, Clone, Deserialize)]
pub struct Calibration {
    pub n: usize,
    pub mean: f32,
    pub std: f32,
    pub max: f32,
    pub p99: f32,
    pub threshold: f32,
    pub method: String,
    /// The quantiles `linesight calibrate` writes besides p99 (older manifests lack them).
    pub min: Option<f32>,
    pub p50: Option<f32>,
    pub p90: Option<f32>,
    pub p95: Option<f32>,
    pub p995: Option<f32>,
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

    /// What this input takes from a camera, with frames up to `max_frame_scale` times its
    /// size (`decision.max_frame_scale`).
    pub fn frames(&self, max_frame_scale: u32) -> FrameSpec {
        let side = |v: usize| v.min(MAX_INPUT_SIDE) as u32;
        FrameSpec {
            channels: self.channels,
            limit: FrameLimit::for_input((side(self.width()), side(self.height())), max_frame_scale),
        }
    }
}

impl Manifest {
    /// Reads `dir/model.toml` (a regular file, at most `files::MANIFEST_MAX_BYTES`) and checks
    /// it against itself: format, shapes, channels, normalisation and calibration, every
    /// problem with its key.
    pub fn load(dir: &Path) -> anyhow::Result<Manifest> {
        let path = dir.join(MANIFEST_FILE);
        let text = files::read_text_capped(&path, files::MANIFEST_MAX_BYTES)
            .with_context(|| format!("cannot read model manifest {}", path.display()))?;
        let mut m: Manifest = toml::from_str(&text).map_err(|e| {
            anyhow!(
                "model manifest {} is malformed: {}",
                path.display(),
                crate::config::parse_message(&e, &text)
            )
        })?;
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
        if self.format_version != FORMAT_VERSION {
            out.push(format!(
                "format_version: this linesight reads manifest format {FORMAT_VERSION}, found {}",
                self.format_version
            ));
        }
        if self.onnx.as_os_str().is_empty() {
            out.push("onnx: must name the model file".into());
        }
        if !(self.sha256.len() == 64 && self.sha256.bytes().all(|b| b.is_ascii_hexdigit())) {
            out.push(format!("sha256: expected 64 hex digits, found {:?}", self.sha256));
        }
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
        if !(1..=MAX_INPUT_SIDE).contains(&i.height()) || !(1..=MAX_INPUT_SIDE).contains(&i.width()) {
            out.push(format!(
                "input.shape: H and W must be 1 to {MAX_INPUT_SIDE}, found {}x{}",
                i.height(),
                i.width()
            ));
        }
        let [lo, hi] = i.value_range;
        let range_ok = lo.is_finite() && hi.is_finite() && lo < hi;
        if !range_ok {
            out.push(format!(
                "input.value_range: expected [low, high] with finite low < high, found [{lo}, {hi}]"
            ));
        }
        if i.mean.len() != want_c || i.std.len() != want_c {
            out.push(format!(
                "input.mean and input.std need {want_c} value(s) each, found {} and {}",
                i.mean.len(),
                i.std.len()
            ));
        }
        for (c, m) in i.mean.iter().enumerate() {
            if !m.is_finite() || (range_ok && !(lo..=hi).contains(m)) {
                out.push(format!(
                    "input.mean[{c}]: expected a finite value inside input.value_range [{lo}, {hi}], found {m}"
                ));
            }
        }
        for (c, s) in i.std.iter().enumerate() {
            let widest = if range_ok { hi - lo } else { f32::INFINITY };
            if !(s.is_finite() && *s > 0.0 && *s <= widest) {
                out.push(format!(
                    "input.std[{c}]: expected a finite value more than 0 and at most the value range's width ({widest}), found {s}"
                ));
            }
        }
        out.extend(self.calibration.problems());
        out
    }

    /// Checks that model.onnx is the file the manifest was written for.
    pub fn verify_onnx(&self) -> anyhow::Result<Vec<u8>> {
        let path = self.onnx_path();
        let bytes = files::read_capped(&path, files::ONNX_MAX_BYTES)
            .with_context(|| format!("cannot read model {}", path.display()))?;
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

impl Calibration {
    /// The quantiles known, as (share of good parts at or below, score), in order.
    fn quantiles(&self) -> Vec<(f64, f32)> {
        [
            (0.0, self.min),
            (0.5, self.p50),
            (0.9, self.p90),
            (0.95, self.p95),
            (0.99, Some(self.p99)),
            (0.995, self.p995),
            (1.0, Some(self.max)),
        ]
        .into_iter()
        .filter_map(|(q, v)| v.map(|v| (q, v)))
        .collect()
    }

    fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.n == 0 {
            out.push("calibration.n: expected at least 1 good part, found 0".into());
        }
        let named = [
            ("mean", Some(self.mean)),
            ("std", Some(self.std)),
            ("min", self.min),
            ("p50", self.p50),
            ("p90", self.p90),
            ("p95", self.p95),
            ("p99", Some(self.p99)),
            ("p995", self.p995),
            ("max", Some(self.max)),
            ("threshold", Some(self.threshold)),
        ];
        for (key, v) in named {
            if let Some(v) = v.filter(|v| !v.is_finite()) {
                out.push(format!("calibration.{key}: expected a finite score, found {v}"));
            }
        }
        if self.std < 0.0 {
            out.push(format!("calibration.std: expected 0 or more, found {}", self.std));
        }
        let names = ["min", "p50", "p90", "p95", "p99", "p995", "max"];
        let q = self.quantiles();
        for pair in q.windows(2) {
            let [(qa, a), (qb, b)] = [pair[0], pair[1]];
            if a > b {
                let name = |q: f64| {
                    names[[0.0, 0.5, 0.9, 0.95, 0.99, 0.995, 1.0]
                        .iter()
                        .position(|x| *x == q)
                        .unwrap()]
                };
                out.push(format!(
                    "calibration.{}: expected at most calibration.{} ({b}), found {a}",
                    name(qa),
                    name(qb)
                ));
            }
        }
        if self.mean > self.max || self.min.is_some_and(|m| self.mean < m) {
            out.push(format!(
                "calibration.mean: expected between the lowest and the highest good score, found {}",
                self.mean
            ));
        }
        out
    }

    /// Share of the calibration's good parts that score above `t` (rejected), interpolated
    /// between the known quantiles; `None` below the lowest known one, when only a bound is
    /// known (at least 1 minus its share).
    pub fn good_rejected(&self, t: f32) -> Option<f64> {
        let q = self.quantiles();
        let (q0, v0) = q[0];
        if t < v0 {
            return (q0 == 0.0).then_some(1.0);
        }
        for pair in q.windows(2) {
            let [(qa, a), (qb, b)] = [pair[0], pair[1]];
            if t < b {
                let at = if b > a {
                    qa + (qb - qa) * ((t - a) / (b - a)) as f64
                } else {
                    qb
                };
                return Some(1.0 - at);
            }
        }
        Some(0.0)
    }
}

impl Manifest {
    /// A warning when `threshold` (from `key`) lies outside what the calibration makes
    /// plausible: below the good parts' mean score, or above their highest plus 3 standard
    /// deviations. It says what the threshold implies on the calibration data.
    pub fn threshold_warning(&self, threshold: f32, key: &str) -> Option<String> {
        let c = &self.calibration;
        let high = c.max + 3.0 * c.std;
        let recall_at_calibrated = self
            .evaluation
            .get("recall_at_threshold")
            .and_then(|v| v.as_float().or(v.as_integer().map(|i| i as f64)));
        if threshold > high {
            let recall = match recall_at_calibrated {
                Some(r) if threshold >= c.threshold => format!(
                    "recall at most {r:.4}, the evaluation's at the calibrated threshold {} (a higher threshold catches no more defects)",
                    c.threshold
                ),
                _ => "recall unknown (the calibration holds good parts only), and only defects scoring above it are caught".to_string(),
            };
            return Some(format!(
                "WARN {key} = {threshold} is above the highest good score of the calibration ({}) plus 3 standard deviations ({}), {high}: \
                 it rejects none of the {} good calibration parts (false-reject rate 0 on the calibration data); {recall}",
                c.max, c.std, c.n
            ));
        }
        if threshold < c.mean {
            let rejected = match c.good_rejected(threshold) {
                Some(share) => format!(
                    "it rejects {:.1}% of the {} good calibration parts (false-reject rate {share:.3} on the calibration data)",
                    share * 100.0,
                    c.n
                ),
                None => format!(
                    "it rejects more than half of the {} good calibration parts (false-reject rate above 0.5 on the calibration data)",
                    c.n
                ),
            };
            return Some(format!(
                "WARN {key} = {threshold} is below the mean good score of the calibration ({}): {rejected}; recall is 1 only because nearly everything is rejected",
                c.mean
            ));
        }
        None
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shipped() -> Manifest {
        toml::from_str(include_str!("../../models/sim-flange/model.toml")).unwrap()
    }

    #[test]
    fn the_shipped_manifest_is_consistent() {
        assert_eq!(shipped().problems(), Vec::<String>::new());
    }

    #[test]
    fn hostile_numbers_in_a_manifest_are_each_named() {
        let mut m = shipped();
        m.format_version = 999;
        m.input.shape = [1, 1, 100_000, 128];
        m.input.value_range = [1.0, 0.0];
        m.input.mean = vec![f32::NAN];
        m.input.std = vec![-0.5];
        m.calibration.threshold = f32::INFINITY;
        m.calibration.p99 = 20.0;
        assert_eq!(
            m.problems(),
            [
                "format_version: this linesight reads manifest format 1, found 999",
                "input.shape: H and W must be 1 to 8192, found 100000x128",
                "input.value_range: expected [low, high] with finite low < high, found [1, 0]",
                "input.mean[0]: expected a finite value inside input.value_range [1, 0], found NaN",
                "input.std[0]: expected a finite value more than 0 and at most the value range's width (inf), found -0.5",
                "calibration.threshold: expected a finite score, found inf",
                "calibration.p99: expected at most calibration.p995 (8.507367), found 20",
            ]
        );
        let mut m = shipped();
        m.input.mean = vec![-0.5];
        m.input.std = vec![0.0];
        assert_eq!(
            m.problems(),
            [
                "input.mean[0]: expected a finite value inside input.value_range [0, 1], found -0.5",
                "input.std[0]: expected a finite value more than 0 and at most the value range's width (1), found 0",
            ]
        );
    }

    #[test]
    fn a_threshold_outside_the_calibration_is_warned_about_with_what_it_implies() {
        let m = shipped();
        assert_eq!(
            m.threshold_warning(m.calibration.threshold, "calibration.threshold"),
            None
        );
        let high = m.threshold_warning(1e30, "decision.threshold").unwrap();
        assert!(high.starts_with("WARN decision.threshold = 1000000000000000000000000000000 is above the highest good score of the calibration (10.375362) plus 3 standard deviations"), "{high}");
        assert!(
            high.contains(
                "rejects none of the 1000 good calibration parts (false-reject rate 0 on the calibration data)"
            ),
            "{high}"
        );
        assert!(high.contains("recall at most 0.9138"), "{high}");
        let low = m.threshold_warning(-1.0, "decision.threshold").unwrap();
        assert!(
            low.contains("below the mean good score of the calibration (4.262093)"),
            "{low}"
        );
        assert!(
            low.contains("rejects 100.0% of the 1000 good calibration parts (false-reject rate 1.000"),
            "{low}"
        );
        // Between the quantiles: p50 = 4.0676 of the shipped model, so 4.0676 rejects half.
        let c = &m.calibration;
        assert!((c.good_rejected(c.p50.unwrap()).unwrap() - 0.5).abs() < 1e-9);
        assert!((c.good_rejected(c.p99).unwrap() - 0.01).abs() < 1e-9);
        assert_eq!(c.good_rejected(c.max + 1.0), Some(0.0));
        let old = Calibration {
            min: None,
            p50: None,
            ..c.clone()
        };
        assert_eq!(
            old.good_rejected(0.0),
            None,
            "below p99 with no lower quantile: only a bound"
        );
    }

    #[test]
    fn the_frame_limit_follows_the_input() {
        let f = shipped().input.frames(16);
        assert_eq!(f.channels, PixelFormat::Gray8);
        assert_eq!((f.limit.min, f.limit.max), ((8, 8), (2048, 2048)));
    }
}
