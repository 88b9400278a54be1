//! `linesight eval --compare-providers A,B`: the same images scored on two execution
//! providers (CPU FP32 against CUDA, or TensorRT FP16), so precision drift is seen
//! before it moves a verdict on the line.

use super::{latency, score_all, Sample, Scored};
use crate::config::{ProviderKind, RuntimeConfig};
use crate::model::{Detector, Manifest};
use crate::runtime;
use crate::stats;
use serde::Serialize;
use std::fmt::Write;
use std::path::Path;
use std::sync::atomic::AtomicBool;

#[derive(Debug, Serialize)]
pub struct Comparison {
    pub a: String,
    pub b: String,
    pub images: usize,
    pub threshold: f32,
    pub max_abs_score_diff: f64,
    /// The largest difference as a share of the threshold.
    pub max_diff_of_threshold: f64,
    pub mean_abs_score_diff: f64,
    pub image_auroc_a: Option<f64>,
    pub image_auroc_b: Option<f64>,
    /// Images whose verdict at the threshold differs: (path, score on A, score on B).
    pub verdict_changes: Vec<(String, f32, f32)>,
    pub latency_p50_ms_a: f64,
    pub latency_p50_ms_b: f64,
}

/// Scores `samples` on providers `a` and `b`; `runtime_config`, `library` and `base_dir`
/// as `runtime::open_model` takes them.
pub fn compare(
    dir: &Path,
    runtime_config: &RuntimeConfig,
    library: Option<&Path>,
    base_dir: &Path,
    (a, b): (ProviderKind, ProviderKind),
    samples: Vec<Sample>,
    threshold: Option<f32>,
) -> anyhow::Result<Comparison> {
    // Exactly one provider each: a comparison that silently fell back to the CPU would
    // compare the CPU with itself.
    let open_on = |kind: ProviderKind| -> anyhow::Result<Detector> {
        let mut only = runtime_config.clone();
        only.providers = vec![kind];
        only.require_accelerator = kind != ProviderKind::Cpu;
        runtime::open_model(Manifest::load(dir)?, &only, library, base_dir)
    };
    let mut da = open_on(a)?;
    let threshold = threshold.unwrap_or(da.manifest.calibration.threshold);
    da.warm_up(runtime_config.warmup_runs, &AtomicBool::new(false))?;
    let sa = score_all(&mut da, samples.clone(), false, true)?;
    let a_name = da.serving.detail.clone();
    drop(da);
    let mut db = open_on(b)?;
    db.warm_up(runtime_config.warmup_runs, &AtomicBool::new(false))?;
    let sb = score_all(&mut db, samples, false, true)?;
    let diffs: Vec<f64> = sa
        .iter()
        .zip(&sb)
        .map(|(x, y)| (x.score as f64 - y.score as f64).abs())
        .collect();
    let max = diffs.iter().copied().fold(0.0, f64::max);
    let auroc = |s: &[Scored]| stats::auroc(&s.iter().map(|x| (x.score, x.sample.defect)).collect::<Vec<_>>());
    let p50 = |s: &[Scored]| latency(s).map_or(0.0, |p| p.p50);
    Ok(Comparison {
        a: a_name,
        b: db.serving.detail.clone(),
        images: diffs.len(),
        threshold,
        max_abs_score_diff: max,
        max_diff_of_threshold: max / (threshold.abs() as f64).max(f64::EPSILON),
        mean_abs_score_diff: diffs.iter().sum::<f64>() / diffs.len().max(1) as f64,
        image_auroc_a: auroc(&sa),
        image_auroc_b: auroc(&sb),
        verdict_changes: verdict_changes(&sa, &sb, threshold),
        latency_p50_ms_a: p50(&sa),
        latency_p50_ms_b: p50(&sb),
    })
}

/// The images the line would judge differently on A and on B: (path, score on A, on B).
fn verdict_changes(sa: &[Scored], sb: &[Scored], threshold: f32) -> Vec<(String, f32, f32)> {
    sa.iter()
        .zip(sb)
        .filter(|(x, y)| stats::rejects(threshold, x.score) != stats::rejects(threshold, y.score))
        .map(|(x, y)| (x.sample.path.display().to_string(), x.score, y.score))
        .collect()
}

impl Comparison {
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let f = |v: Option<f64>| v.map_or("n/a".into(), |v| format!("{v:.4}"));
        let _ = writeln!(s, "# Provider comparison: {} images\n", self.images);
        let _ = writeln!(s, "| | A | B |\n| --- | --- | --- |");
        let _ = writeln!(s, "| provider | {} | {} |", self.a, self.b);
        let _ = writeln!(
            s,
            "| image AUROC | {} | {} |",
            f(self.image_auroc_a),
            f(self.image_auroc_b)
        );
        let _ = writeln!(
            s,
            "| latency p50 (preprocess + inference) | {:.2} ms | {:.2} ms |\n",
            self.latency_p50_ms_a, self.latency_p50_ms_b
        );
        let _ = writeln!(
            s,
            "Largest score difference {:.3e} ({:.3e} of the threshold {}), mean {:.3e}.",
            self.max_abs_score_diff, self.max_diff_of_threshold, self.threshold, self.mean_abs_score_diff
        );
        let _ = writeln!(
            s,
            "Verdicts that change at the threshold: {}.",
            self.verdict_changes.len()
        );
        for (p, x, y) in self.verdict_changes.iter().take(20) {
            let _ = writeln!(s, "- {p}: {x} on A, {y} on B");
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scored(scores: &[f32]) -> Vec<Scored> {
        scores
            .iter()
            .enumerate()
            .map(|(i, &score)| Scored {
                sample: Sample {
                    path: format!("{i}.png").into(),
                    defect: false,
                    kind: None,
                    mask: None,
                },
                score,
                map: None,
                latency_ms: 1.0,
                size: (8, 8),
            })
            .collect()
    }

    #[test]
    fn a_score_that_is_not_a_number_on_one_provider_changes_the_verdict() {
        let a = scored(&[0.1, f32::NAN, 0.5, 0.7, f32::NAN]);
        let b = scored(&[0.2, 0.1, 0.6, 0.8, f32::INFINITY]);
        let changed: Vec<String> = verdict_changes(&a, &b, 0.5).into_iter().map(|c| c.0).collect();
        assert_eq!(changed, ["1.png", "2.png"]);
    }
}
