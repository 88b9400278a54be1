//! One ONNX Runtime session running the exported GAN. The graph computes the score
//! and the anomaly map itself; this side never re-implements the network.

use super::{library, Manifest};
use crate::config::RuntimeConfig;
use anyhow::{anyhow, bail, Context};
use ort::session::{builder::GraphOptimizationLevel, Session};
use ort::value::TensorRef;
use std::fmt::Display;
use std::path::Path;

/// What the model says about one part.
#[derive(Debug, Clone)]
pub struct Inspection {
    /// Higher is more anomalous.
    pub score: f32,
    /// Per-pixel anomaly map at model resolution (row-major H×W), when asked for and available.
    pub anomaly_map: Option<Vec<f32>>,
}

pub struct Detector {
    session: Session,
    pub manifest: Manifest,
}

fn ort_err<T, E: Display>(r: Result<T, E>, what: &str) -> anyhow::Result<T> {
    r.map_err(|e| anyhow!("{what}: {e}"))
}

impl Detector {
    /// Loads the library (once per process), checks the model file against its
    /// manifest, and builds the session.
    pub fn open(manifest: Manifest, runtime: &RuntimeConfig, library_path: Option<&Path>) -> anyhow::Result<Detector> {
        let onnx = manifest.verify_onnx()?;
        let lib = library::load(library_path)?;
        let what = format!("cannot build a session for {}", manifest.onnx_path().display());
        let mut builder = ort_err(Session::builder(&lib.env), &what)?;
        builder = ort_err(builder.with_optimization_level(GraphOptimizationLevel::All), &what)?;
        if runtime.intra_threads > 0 {
            builder = ort_err(builder.with_intra_threads(runtime.intra_threads), &what)?;
        }
        let session = ort_err(builder.commit_from_memory(&onnx), &what)?;
        let detector = Detector { session, manifest };
        detector.check_signature().with_context(|| {
            format!(
                "model {} does not match its manifest",
                detector.manifest.onnx_path().display()
            )
        })?;
        Ok(detector)
    }

    /// The graph's input and outputs must be the ones the manifest names.
    fn check_signature(&self) -> anyhow::Result<()> {
        let m = &self.manifest;
        let input = self
            .session
            .inputs()
            .iter()
            .find(|i| i.name() == m.input.name)
            .ok_or_else(|| anyhow!("the graph has no input named \"{}\" (input.name)", m.input.name))?;
        if let Some(shape) = input.dtype().tensor_shape() {
            let want: Vec<i64> = m.input.shape.iter().map(|d| *d as i64).collect();
            let found: Vec<i64> = shape.iter().copied().collect();
            let fits = found.len() == 4 && found.iter().zip(&want).all(|(f, w)| *f < 0 || f == w);
            if !fits {
                bail!(
                    "input \"{}\" has shape {found:?}, manifest input.shape says {want:?}",
                    m.input.name
                );
            }
        }
        let outputs: Vec<&str> = self.session.outputs().iter().map(|o| o.name()).collect();
        for (key, name) in [
            ("outputs.score", Some(&m.outputs.score)),
            ("outputs.anomaly_map", m.outputs.anomaly_map.as_ref()),
        ] {
            if let Some(name) = name {
                if !outputs.contains(&name.as_str()) {
                    bail!("the graph has no output named \"{name}\" ({key}); it has {outputs:?}");
                }
            }
        }
        Ok(())
    }

    /// Runs the model on one preprocessed input tensor (NCHW, as the manifest says).
    /// The input is borrowed, not copied. The anomaly map is copied out only when wanted.
    pub fn infer(&mut self, input: &[f32], want_map: bool) -> anyhow::Result<Inspection> {
        let m = &self.manifest;
        let shape = m.input.shape.map(|d| d as i64);
        let tensor = TensorRef::from_array_view((shape, input)).map_err(|e| anyhow!("input tensor rejected: {e}"))?;
        let outputs = self
            .session
            .run(ort::inputs![m.input.name.as_str() => tensor])
            .map_err(|e| anyhow!("inference failed: {e}"))?;
        let (_, score) = outputs[m.outputs.score.as_str()]
            .try_extract_tensor::<f32>()
            .map_err(|e| anyhow!("output \"{}\" is not a float tensor: {e}", m.outputs.score))?;
        let score = *score
            .first()
            .ok_or_else(|| anyhow!("output \"{}\" is empty", m.outputs.score))?;
        if !score.is_finite() {
            bail!("the model returned a non-finite score ({score})");
        }
        let anomaly_map = match (&m.outputs.anomaly_map, want_map) {
            (Some(name), true) => {
                let (_, map) = outputs[name.as_str()]
                    .try_extract_tensor::<f32>()
                    .map_err(|e| anyhow!("output \"{name}\" is not a float tensor: {e}"))?;
                Some(map.to_vec())
            }
            _ => None,
        };
        Ok(Inspection { score, anomaly_map })
    }
}
