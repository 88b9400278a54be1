//! Calibration: from scores of good parts (and optionally defects) to a threshold.
//!
//! Thresholds are set from the user's own good parts, never from test-set statistics.

use crate::commands::eval;
use crate::config::RuntimeConfig;
use crate::model::{Manifest, MANIFEST_FILE};
use crate::runtime;
use crate::stats::{self, quantile};
use anyhow::Context;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Set the model's threshold from good parts (optionally defects) and write it into
/// model.toml (its [calibration] table is rewritten).
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    model: super::ModelArgs,
    /// Defective images: with them the F1-optimal threshold is chosen instead.
    #[arg(long)]
    defect: Option<PathBuf>,
    /// Good-only method: quantile of good scores (1 - the false-reject rate you accept).
    #[arg(long, default_value_t = 0.995)]
    quantile: f64,
    /// Good-only method: threshold = q + margin * (q - median).
    #[arg(long, default_value_t = 0.1)]
    margin: f64,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let (quantile, margin) = (args.quantile, args.margin);
    let super::ModelArgs {
        model,
        good,
        onnxruntime_library,
    } = args.model;
    anyhow::ensure!(
        (0.5..1.0).contains(&quantile),
        "--quantile must be from 0.5 to below 1, found {quantile}"
    );
    anyhow::ensure!(margin >= 0.0, "--margin must be 0 or more, found {margin}");
    let method = match args.defect {
        Some(_) => Method::F1Optimal,
        None => Method::GoodQuantile { quantile, margin },
    };
    let c = calibrate(
        &model,
        &good,
        args.defect.as_deref(),
        method,
        onnxruntime_library.as_deref(),
    )?;
    let (stats, t) = (&c.stats, c.threshold);
    println!(
        "{} good scores: p50 {:.4}, p95 {:.4}, p99 {:.4}, max {:.4}",
        stats.n, stats.p50, stats.p95, stats.p99, stats.max
    );
    let (rejected, old) = (c.good_rejected, c.previous_threshold);
    println!(
        "threshold {t:.4} by {} (was {old:.4}); {rejected} of {} good images would be rejected",
        method.name(),
        stats.n
    );
    println!("written to {}", model.join("model.toml").display());
    Ok(ExitCode::SUCCESS)
}

/// Score statistics of good parts.
#[derive(Debug, Clone, Serialize)]
pub struct GoodStats {
    pub n: usize,
    pub mean: f64,
    pub std: f64,
    pub min: f64,
    pub max: f64,
    pub p50: f64,
    pub p90: f64,
    pub p95: f64,
    pub p99: f64,
    pub p995: f64,
}

/// How a threshold was chosen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Method {
    /// threshold = q + margin · (q − p50), q the `quantile` of good scores. Needs good parts only.
    GoodQuantile { quantile: f64, margin: f64 },
    /// The threshold with the best F1 on good and defective parts.
    F1Optimal,
}

impl Method {
    pub fn name(self) -> &'static str {
        match self {
            Method::GoodQuantile { .. } => "good_quantile",
            Method::F1Optimal => "f1_optimal",
        }
    }
}

pub fn good_stats(scores: &[f32]) -> GoodStats {
    let s = stats::sorted(scores.iter().map(|v| *v as f64));
    let n = s.len();
    let mean = s.iter().sum::<f64>() / n as f64;
    let std = (s.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n as f64).sqrt();
    GoodStats {
        n,
        mean,
        std,
        min: s[0],
        max: s[n - 1],
        p50: quantile(&s, 0.5),
        p90: quantile(&s, 0.9),
        p95: quantile(&s, 0.95),
        p99: quantile(&s, 0.99),
        p995: quantile(&s, 0.995),
    }
}

/// The threshold by `method`; `defects` are needed for `F1Optimal` only.
pub fn threshold(good: &[f32], defects: &[f32], method: Method) -> f64 {
    match method {
        Method::GoodQuantile { quantile: q, margin } => {
            let s = stats::sorted(good.iter().map(|v| *v as f64));
            let qv = quantile(&s, q);
            qv + margin * (qv - quantile(&s, 0.5))
        }
        Method::F1Optimal => {
            let pairs: Vec<(f32, bool)> = good
                .iter()
                .map(|s| (*s, false))
                .chain(defects.iter().map(|s| (*s, true)))
                .collect();
            stats::best_f1(&pairs).threshold as f64
        }
    }
}

/// What `calibrate` did.
pub struct Calibrated {
    pub stats: GoodStats,
    pub threshold: f64,
    pub previous_threshold: f32,
    /// Good images the new threshold rejects (as the line judges them).
    pub good_rejected: usize,
}

/// Scores the images, sets the threshold by `method` and writes it into the model's
/// manifest. `defect` is needed by `Method::F1Optimal` only.
pub fn calibrate(
    model: &Path,
    good: &Path,
    defect: Option<&Path>,
    method: Method,
    library: Option<&Path>,
) -> anyhow::Result<Calibrated> {
    // No config: the default [runtime], with the library given or found as `run` finds it.
    let mut detector = runtime::open_model(
        Manifest::load(model)?,
        &RuntimeConfig::default(),
        library,
        Path::new(""),
    )?;
    let mut scores = |set| -> anyhow::Result<Vec<f32>> {
        Ok(eval::score_all(&mut detector, set, false, true)?
            .iter()
            .map(|s| s.score)
            .collect())
    };
    let good_scores = scores(eval::load_set(good, false, None).context("--good")?)?;
    anyhow::ensure!(
        good_scores.len() >= 20,
        "--good: need at least 20 good images, found {}",
        good_scores.len()
    );
    let (defect_scores, data) = match (method, defect) {
        (Method::F1Optimal, Some(d)) => (
            scores(eval::load_set(d, true, None).context("--defect")?)?,
            format!("good: {}; defect: {}", good.display(), d.display()),
        ),
        (Method::F1Optimal, None) => anyhow::bail!("the F1-optimal threshold needs defective images (--defect)"),
        (Method::GoodQuantile { .. }, _) => (Vec::new(), format!("good: {}", good.display())),
    };
    let stats = good_stats(&good_scores);
    let t = threshold(&good_scores, &defect_scores, method);
    let previous_threshold = detector.manifest.calibration.threshold;
    write_calibration(model, &stats, t, method, &data)?;
    Ok(Calibrated {
        stats,
        threshold: t,
        previous_threshold,
        good_rejected: good_rejected(&good_scores, t),
    })
}

/// How many of the good scores the line rejects at `threshold` (a NaN score among them).
fn good_rejected(good: &[f32], threshold: f64) -> usize {
    // The line reads the threshold as an f32.
    good.iter().filter(|s| stats::rejects(threshold as f32, **s)).count()
}

/// Rewrites the `[calibration]` table of `dir/model.toml`, keeping everything else
/// (comments included) as it was.
fn write_calibration(dir: &Path, stats: &GoodStats, threshold: f64, method: Method, data: &str) -> anyhow::Result<()> {
    use toml_edit::{value, DocumentMut, Item, Table};
    let path = dir.join(MANIFEST_FILE);
    let text = crate::files::read_text_capped(&path, crate::files::MANIFEST_MAX_BYTES)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let mut doc: DocumentMut = text
        .parse()
        .with_context(|| format!("{} is malformed", path.display()))?;
    let mut t = Table::new();
    t.decor_mut().set_prefix("\n# set by `linesight calibrate`\n");
    t["n"] = value(stats.n as i64);
    for (k, v) in [
        ("mean", stats.mean),
        ("std", stats.std),
        ("min", stats.min),
        ("max", stats.max),
        ("p50", stats.p50),
        ("p90", stats.p90),
        ("p95", stats.p95),
        ("p99", stats.p99),
        ("p995", stats.p995),
        ("threshold", threshold),
    ] {
        t[k] = value((v * 1e7).round() / 1e7);
    }
    t["method"] = value(method.name());
    if let Method::GoodQuantile { quantile, margin } = method {
        t["quantile"] = value(quantile);
        t["margin"] = value(margin);
    }
    t["data"] = value(data);
    doc["calibration"] = Item::Table(t);
    std::fs::write(&path, doc.to_string()).with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_stats_use_the_one_quantile() {
        let good: Vec<f32> = [4.0, 1.0, 3.0, 2.0].into();
        let s = good_stats(&good);
        assert_eq!((s.n, s.min, s.max, s.p50), (4, 1.0, 4.0, 2.5));
        assert!((s.p90 - 3.7).abs() < 1e-12);
    }

    #[test]
    fn a_good_image_scored_nan_counts_as_rejected() {
        let good = [0.1, 0.2, f32::NAN, 0.3, f32::INFINITY];
        assert_eq!(good_rejected(&good, 0.25), 3);
        // At the threshold passes, as on the line.
        assert_eq!(good_rejected(&good, 0.3), 2);
    }

    #[test]
    fn good_quantile_threshold_adds_its_margin() {
        let good: Vec<f32> = (0..=100).map(|i| i as f32).collect();
        // q(0.99) = 99, p50 = 50: 99 + 0.1 * 49.
        let t = threshold(
            &good,
            &[],
            Method::GoodQuantile {
                quantile: 0.99,
                margin: 0.1,
            },
        );
        assert!((t - 103.9).abs() < 1e-9);
    }

    #[test]
    fn f1_optimal_threshold_separates_clean_classes() {
        let t = threshold(&[0.1, 0.2, 0.3], &[0.8, 0.9], Method::F1Optimal);
        assert!(t > 0.3 && t < 0.8, "{t}");
    }
}
