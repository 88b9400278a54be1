//! The evaluation report: report.json, report.md, ROC and score plots, and a grid
//! of the worst misses and false rejects with their anomaly maps.

use super::{latency, Scored};
use crate::judge;
use crate::model::Resize;
use crate::stats::{self, Point};
use anyhow::Context;
use image::{imageops, Rgb, RgbImage};
use plotters::prelude::*;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::Path;

#[derive(Debug, Serialize)]
pub struct Report {
    pub model: String,
    pub model_dir: String,
    pub good: usize,
    pub defect: usize,
    pub image_auroc: Option<f64>,
    pub pixel_auroc: Option<f64>,
    pub average_precision: Option<f64>,
    /// The manifest's (or given) threshold.
    pub threshold: f32,
    pub at_threshold: Point,
    pub best_f1: Point,
    pub at_recall_95: Option<Point>,
    pub at_recall_99: Option<Point>,
    pub per_kind: BTreeMap<String, KindRow>,
    /// Preprocess + inference per image, ms: p50, p99.
    pub latency_ms: [f64; 2],
    pub worst_misses: Vec<String>,
    pub worst_false_rejects: Vec<String>,
}

impl Report {
    /// The level the worst-cases grid paints full red, and its name: the best-F1 threshold
    /// when both classes are there. A threshold calibrated on goods alone sits far above most
    /// scores (magnetic tile: 8.8 against a best F1 at 1.7) and would leave every tile grey.
    pub fn grid_threshold(&self) -> (&'static str, f32) {
        if self.good > 0 && self.defect > 0 {
            ("the best-F1 threshold", self.best_f1.threshold)
        } else {
            ("the threshold", self.threshold)
        }
    }
}

#[derive(Debug, Serialize)]
pub struct KindRow {
    pub n: usize,
    /// AUROC of this kind against all good images.
    pub auroc: Option<f64>,
    pub recall_at_threshold: f64,
}

const GRID_EACH: usize = 8;

pub fn write_report(
    scored: &[Scored],
    model_name: &str,
    model_dir: &Path,
    threshold: f32,
    resize: Resize,
    out: &Path,
) -> anyhow::Result<Report> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let pairs: Vec<(f32, bool)> = scored.iter().map(|s| (s.score, s.sample.defect)).collect();
    let goods: Vec<(f32, bool)> = pairs.iter().copied().filter(|p| !p.1).collect();
    let mut kinds: BTreeMap<String, Vec<(f32, bool)>> = BTreeMap::new();
    for s in scored.iter().filter(|s| s.sample.defect) {
        kinds
            .entry(s.sample.kind.clone().unwrap_or_else(|| "unknown".into()))
            .or_default()
            .push((s.score, true));
    }
    let per_kind = kinds
        .into_iter()
        .map(|(k, defects)| {
            let n = defects.len();
            let recall = defects.iter().filter(|d| stats::rejects(threshold, d.0)).count() as f64 / n as f64;
            let all: Vec<_> = goods.iter().chain(&defects).copied().collect();
            (
                k,
                KindRow {
                    n,
                    auroc: stats::auroc(&all),
                    recall_at_threshold: recall,
                },
            )
        })
        .collect();
    let latency_ms = latency(scored).map_or([0.0; 2], |p| [p.p50, p.p99]);

    // Ranked as the line judges: a score that is not a number is caught, never a miss.
    let rank = |s: &Scored| judge::rank_score(s.score);
    let mut misses: Vec<&Scored> = scored.iter().filter(|s| s.sample.defect).collect();
    misses.sort_by(|a, b| rank(a).total_cmp(&rank(b)));
    misses.truncate(GRID_EACH);
    let mut false_rejects: Vec<&Scored> = scored.iter().filter(|s| !s.sample.defect).collect();
    false_rejects.sort_by(|a, b| rank(b).total_cmp(&rank(a)));
    false_rejects.truncate(GRID_EACH);

    let report = Report {
        model: model_name.to_string(),
        model_dir: model_dir.display().to_string(),
        good: goods.len(),
        defect: pairs.len() - goods.len(),
        image_auroc: stats::auroc(&pairs),
        pixel_auroc: pixel_auroc(scored, resize),
        average_precision: stats::average_precision(&pairs),
        threshold,
        at_threshold: stats::at_threshold(&pairs, threshold),
        best_f1: stats::best_f1(&pairs),
        at_recall_95: stats::false_rejects_at_recall(&pairs, 0.95),
        at_recall_99: stats::false_rejects_at_recall(&pairs, 0.99),
        per_kind,
        latency_ms,
        worst_misses: misses.iter().map(|s| s.sample.path.display().to_string()).collect(),
        worst_false_rejects: false_rejects
            .iter()
            .map(|s| s.sample.path.display().to_string())
            .collect(),
    };
    std::fs::write(out.join("report.json"), serde_json::to_string_pretty(&report)?)?;
    write_scores(scored, threshold, &out.join("scores.csv"))?;
    std::fs::write(out.join("report.md"), markdown(&report))?;
    roc_plot(&pairs, &out.join("roc.svg"))?;
    histogram_plot(&pairs, threshold, &out.join("scores.svg"))?;
    worst_grid(
        &misses,
        &false_rejects,
        report.grid_threshold().1,
        resize,
        &out.join("worst.png"),
    )?;
    Ok(report)
}

/// One row per image, in the order scored: what a user sorts, filters, or joins with
/// another model's scores (to set a threshold for a false-reject budget, or to see which
/// parts two models disagree on).
fn write_scores(scored: &[Scored], threshold: f32, path: &Path) -> anyhow::Result<()> {
    #[derive(Serialize)]
    struct Row<'a> {
        path: String,
        class: &'static str,
        kind: &'a str,
        score: f32,
        rejected: bool,
    }
    let mut w = csv::Writer::from_path(path).with_context(|| format!("cannot write {}", path.display()))?;
    for s in scored {
        w.serialize(Row {
            path: s.sample.path.display().to_string(),
            class: if s.sample.defect { "defect" } else { "good" },
            kind: s.sample.kind.as_deref().unwrap_or(""),
            score: s.score,
            // The line's own rule: a score at the threshold passes, one that is not a number rejects.
            rejected: stats::rejects(threshold, s.score),
        })?;
    }
    w.flush()?;
    Ok(())
}

/// Pixel AUROC over images with masks and all good images (whose pixels are all normal),
/// over the map pixels that show the image (not letterbox padding).
fn pixel_auroc(scored: &[Scored], resize: Resize) -> Option<f64> {
    let with_maps: Vec<&Scored> = scored
        .iter()
        .filter(|s| s.map.is_some() && (!s.sample.defect || s.sample.mask.is_some()))
        .collect();
    if !with_maps.iter().any(|s| s.sample.defect) {
        return None;
    }
    let side = (with_maps[0].map.as_ref()?.len() as f64).sqrt() as u32;
    // Every 4th pixel keeps memory bounded on large sets; the estimate barely moves.
    let mut pixels = Vec::new();
    for s in with_maps {
        let map = s.map.as_ref()?;
        let (x0, y0, nw, nh) = crate::preprocess::placement(resize, s.size, (side, side));
        let mask = match &s.sample.mask {
            Some(m) => {
                let m = image::open(m).ok()?.to_luma8();
                Some(imageops::resize(&m, nw, nh, imageops::FilterType::Nearest))
            }
            None => None,
        };
        for (i, v) in map.iter().enumerate().step_by(4) {
            let (x, y) = (i as u32 % side, i as u32 / side);
            if x < x0 || y < y0 || x >= x0 + nw || y >= y0 + nh {
                continue;
            }
            let defect = mask.as_ref().is_some_and(|m| m.get_pixel(x - x0, y - y0)[0] > 127);
            pixels.push((*v, defect));
        }
    }
    stats::auroc(&pixels)
}

fn fmt_opt(v: Option<f64>) -> String {
    v.map_or("n/a".into(), |v| format!("{v:.4}"))
}

fn markdown(r: &Report) -> String {
    let mut s = r.summary_markdown();
    s += &plots_markdown(r);
    s
}

impl Report {
    /// The figures and the per-kind table: what `eval` prints, and report.md's first part.
    pub fn summary_markdown(&self) -> String {
        let r = self;
        let mut s = String::new();
        let _ = writeln!(s, "# Evaluation of {} ({})\n", r.model, r.model_dir);
        let _ = writeln!(s, "{} good and {} defective images.\n", r.good, r.defect);
        let _ = writeln!(s, "| metric | value |\n| --- | --- |");
        let _ = writeln!(s, "| image AUROC | {} |", fmt_opt(r.image_auroc));
        let _ = writeln!(s, "| pixel AUROC | {} |", fmt_opt(r.pixel_auroc));
        let _ = writeln!(s, "| average precision | {} |", fmt_opt(r.average_precision));
        let p = |p: &Point| {
            format!(
                "threshold {:.5}: recall {:.4}, false-reject rate {:.4}, precision {:.4}, F1 {:.4}",
                p.threshold, p.recall, p.false_reject_rate, p.precision, p.f1
            )
        };
        let _ = writeln!(s, "| at the manifest threshold | {} |", p(&r.at_threshold));
        let _ = writeln!(s, "| best F1 | {} |", p(&r.best_f1));
        if let Some(x) = &r.at_recall_95 {
            let _ = writeln!(s, "| at 95% recall | {} |", p(x));
        }
        if let Some(x) = &r.at_recall_99 {
            let _ = writeln!(s, "| at 99% recall | {} |", p(x));
        }
        let _ = writeln!(
            s,
            "| latency (preprocess + inference) | p50 {:.2} ms, p99 {:.2} ms |",
            r.latency_ms[0], r.latency_ms[1]
        );
        let _ = writeln!(
            s,
            "\n## Per defect kind\n\n| kind | n | AUROC vs good | recall at threshold |\n| --- | --- | --- | --- |"
        );
        for (k, row) in &r.per_kind {
            let _ = writeln!(
                s,
                "| {k} | {} | {} | {:.4} |",
                row.n,
                fmt_opt(row.auroc),
                row.recall_at_threshold
            );
        }
        s
    }
}

/// report.md's second part: the plots and the worst cases.
fn plots_markdown(r: &Report) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "\n## Plots\n\n![ROC](roc.svg)\n\n![scores](scores.svg)\n");
    let _ = writeln!(
        s,
        "Every image's score: `scores.csv` (path, class, kind, score, rejected at the threshold).\n"
    );
    let (grid_name, grid_level) = r.grid_threshold();
    let _ = writeln!(
        s,
        "## Worst cases\n\n`worst.png`: top row the {} defective images scored lowest (misses first), \
         bottom row the {} good images scored highest; red is the anomaly map, from none at half {grid_name} ({grid_level:.5}) to full red at it.\n",
        r.worst_misses.len(),
        r.worst_false_rejects.len(),
    );
    for (i, f) in r.worst_misses.iter().enumerate() {
        let _ = writeln!(s, "- miss {}: {f}", i + 1);
    }
    for (i, f) in r.worst_false_rejects.iter().enumerate() {
        let _ = writeln!(s, "- false reject {}: {f}", i + 1);
    }
    s
}

fn plot_err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow::anyhow!("plotting failed: {e:?}")
}

fn roc_plot(pairs: &[(f32, bool)], path: &Path) -> anyhow::Result<()> {
    let root = SVGBackend::new(path, (520, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("ROC (AUROC {})", fmt_opt(stats::auroc(pairs))),
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(44)
        .build_cartesian_2d(0f64..1f64, 0f64..1f64)
        .map_err(plot_err)?;
    chart
        .configure_mesh()
        .x_desc("false-reject rate")
        .y_desc("recall")
        .draw()
        .map_err(plot_err)?;
    let mut pts: Vec<(f64, f64)> = stats::curve(pairs)
        .iter()
        .map(|p| (p.false_reject_rate, p.recall))
        .collect();
    pts.push((1.0, 1.0));
    chart
        .draw_series(LineSeries::new(pts, BLUE.stroke_width(2)))
        .map_err(plot_err)?;
    chart
        .draw_series(LineSeries::new([(0.0, 0.0), (1.0, 1.0)], BLACK.mix(0.3)))
        .map_err(plot_err)?;
    root.present().map_err(plot_err)
}

fn histogram_plot(pairs: &[(f32, bool)], threshold: f32, path: &Path) -> anyhow::Result<()> {
    const BINS: usize = 40;
    // A score that is not a finite number has no place on the axis (scores.csv lists it).
    let finite: Vec<(f32, bool)> = pairs.iter().copied().filter(|p| p.0.is_finite()).collect();
    let pairs = &finite[..];
    let lo = pairs.iter().map(|p| p.0).fold(f32::INFINITY, f32::min).min(threshold);
    let hi = pairs
        .iter()
        .map(|p| p.0)
        .fold(f32::NEG_INFINITY, f32::max)
        .max(threshold);
    let width = ((hi - lo) / BINS as f32).max(f32::EPSILON);
    let bin = |v: f32| (((v - lo) / width) as usize).min(BINS - 1);
    let mut counts = [[0usize; BINS]; 2];
    for (v, d) in pairs {
        counts[*d as usize][bin(*v)] += 1;
    }
    // Share of each class, so that rare defects are as visible as good parts.
    let totals = [
        pairs.iter().filter(|p| !p.1).count().max(1),
        pairs.iter().filter(|p| p.1).count().max(1),
    ];
    let ymax = (0..2)
        .flat_map(|c| counts[c].iter().map(move |n| *n as f64 / totals[c] as f64))
        .fold(0.0, f64::max);
    let root = SVGBackend::new(path, (640, 400)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "scores: good (green), defect (red), threshold (black)",
            ("sans-serif", 16),
        )
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(50)
        .build_cartesian_2d(lo as f64..(hi + width) as f64, 0f64..ymax * 1.05)
        .map_err(plot_err)?;
    chart
        .configure_mesh()
        .x_desc("score")
        .y_desc("share of class")
        .draw()
        .map_err(plot_err)?;
    for (c, colour) in [(0, GREEN.mix(0.5)), (1, RED.mix(0.5))] {
        chart
            .draw_series(counts[c].iter().enumerate().map(|(i, n)| {
                let x0 = (lo + i as f32 * width) as f64;
                Rectangle::new(
                    [(x0, 0.0), (x0 + width as f64, *n as f64 / totals[c] as f64)],
                    colour.filled(),
                )
            }))
            .map_err(plot_err)?;
    }
    chart
        .draw_series(LineSeries::new(
            [(threshold as f64, 0.0), (threshold as f64, ymax * 1.05)],
            BLACK.stroke_width(2),
        ))
        .map_err(plot_err)?;
    root.present().map_err(plot_err)
}

/// Two rows of tiles: the worst misses, then the worst false rejects, each image
/// with its anomaly map laid over in red (full red at `threshold`).
fn worst_grid(
    misses: &[&Scored],
    false_rejects: &[&Scored],
    threshold: f32,
    resize: Resize,
    path: &Path,
) -> anyhow::Result<()> {
    const TILE: u32 = 160;
    let cols = misses.len().max(false_rejects.len()).max(1) as u32;
    let mut grid = RgbImage::from_pixel(cols * (TILE + 4), 2 * (TILE + 4), Rgb([255, 255, 255]));
    for (row, set) in [misses, false_rejects].iter().enumerate() {
        for (col, s) in set.iter().enumerate() {
            let img = image::open(&s.sample.path)?.to_luma8();
            let full = crate::record::overlay(&img, s.map.as_deref(), threshold, resize);
            let tile = imageops::resize(&full, TILE, TILE, imageops::FilterType::Triangle);
            imageops::replace(
                &mut grid,
                &tile,
                col as i64 * (TILE as i64 + 4),
                row as i64 * (TILE as i64 + 4),
            );
        }
    }
    grid.save(path)
        .with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::bench;
    use crate::dataset::Sample;

    /// (score, is defect, latency ms) as scored images, each a small gray PNG in `dir`.
    fn scored(dir: &Path, parts: &[(f32, bool, f64)]) -> Vec<Scored> {
        parts
            .iter()
            .enumerate()
            .map(|(i, &(score, defect, latency_ms))| {
                let path = dir.join(format!("{i}.png"));
                image::GrayImage::from_pixel(8, 8, image::Luma([100]))
                    .save(&path)
                    .unwrap();
                Scored {
                    sample: Sample {
                        path,
                        defect,
                        kind: defect.then(|| "scratch".to_string()),
                        mask: None,
                    },
                    score,
                    map: None,
                    latency_ms,
                    size: (8, 8),
                }
            })
            .collect()
    }

    #[test]
    fn eval_judges_a_score_that_is_not_a_number_as_a_reject() {
        let dir = tempfile::tempdir().unwrap();
        let parts = [
            (0.1, false, 1.0),
            (f32::NAN, false, 1.0),
            (0.2, false, 1.0),
            (0.9, true, 1.0),
            // A NaN with its sign bit set, which a plain total_cmp sorts below every number.
            (-f32::NAN, true, 1.0),
            (0.3, true, 1.0),
        ];
        let s = scored(dir.path(), &parts);
        let out = dir.path().join("report");
        let r = write_report(&s, "m", dir.path(), 0.5, Resize::Stretch, &out).unwrap();
        // The NaN defect is caught and the NaN good part is a false reject, as on the line.
        assert_eq!(
            (r.at_threshold.recall, r.at_threshold.false_reject_rate),
            (2.0 / 3.0, 1.0 / 3.0)
        );
        assert_eq!(r.per_kind["scratch"].recall_at_threshold, 2.0 / 3.0);
        // The NaN defect ranks as the most anomalous: the last of the worst misses.
        assert!(r.worst_misses[2].ends_with("4.png"), "{:?}", r.worst_misses);
        let mut rows = csv::Reader::from_path(out.join("scores.csv")).unwrap();
        let rejected: Vec<bool> = rows
            .deserialize::<(String, String, String, f32, bool)>()
            .map(|row| row.unwrap().4)
            .collect();
        assert_eq!(rejected, [false, true, false, true, true, false]);
    }

    #[test]
    fn bench_and_eval_report_the_same_p50_and_p99() {
        let dir = tempfile::tempdir().unwrap();
        // An even count, where nearest rank and `v[n/2]` would each pick another value.
        let latencies = [4.0, 1.0, 3.0, 2.0, 10.0, 6.0];
        let parts: Vec<(f32, bool, f64)> = latencies.iter().map(|&ms| (0.1, false, ms)).collect();
        let s = scored(dir.path(), &parts);
        let out = dir.path().join("report");
        let eval = write_report(&s, "m", dir.path(), 0.5, Resize::Stretch, &out)
            .unwrap()
            .latency_ms;
        let bench = bench::percentiles(latencies.to_vec());
        assert_eq!(eval, [bench.p50, bench.p99]);
        assert_eq!(bench.p50, 3.5);
        // `--compare-providers` reports the same p50, and a run's streamed summary agrees
        // within its microsecond resolution.
        assert_eq!(latency(&s).unwrap(), bench);
        let mut run = crate::stats::Histogram::new();
        latencies.iter().for_each(|ms| run.record_ms(*ms));
        let streamed = run.percentiles_ms().unwrap();
        for (a, b) in [
            (streamed.p50, bench.p50),
            (streamed.p99, bench.p99),
            (streamed.max, bench.max),
        ] {
            assert!((a - b).abs() <= 0.0005 + b / 2048.0, "streamed {a}, samples {b}");
        }
    }
}
