//! Running statistics of a run: the progress line and the closing summary.

use super::PartRecord;
use crate::frame::{Reason, Verdict};
use crate::stats::{auroc, Buckets, Histogram, Percentiles};
use std::collections::BTreeMap;
use std::fmt::Write;

/// Bucket bounds of the stage latencies in Prometheus (`linesight_stage_latency_seconds`),
/// in seconds: from sub-millisecond (the queue, preprocessing) to 10 s (a stalled
/// inference); above that, +Inf.
/// Labelled scores kept for the closing image AUROC (8 bytes each: 8 MB at most, so that
/// a long run's memory stays flat).
pub const AUROC_PARTS: usize = 1_000_000;

pub const LATENCY_BUCKETS_S: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

pub struct RunStats {
    pub parts: u64,
    pub rejects: u64,
    pub by_reason: BTreeMap<Reason, u64>,
    /// Latency per stage: a run may never end, so streamed (`stats::Histogram`).
    stages: [(&'static str, Histogram); 4],
    /// (truth is defect, verdict is reject) → count, for parts with known truth.
    confusion: BTreeMap<(bool, bool), u64>,
    /// (score, truth is defect) of inspected parts with known truth, for the AUROC.
    /// Only labelled sources (synthetic, labelled folders) fill it.
    scored: Vec<(f32, bool)>,
    started_ns: u64,
    last_capture_ns: u64,
    /// The writer's figures, copied in by the record thread.
    pub record_errors: u64,
    pub record_backlog: u64,
    pub images_removed: u64,
    pub logs_removed: u64,
}

/// The numbers a user checks at the end of a run.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Summary {
    pub parts: u64,
    pub rejects: u64,
    pub rejects_by_reason: BTreeMap<String, u64>,
    /// Stage → its latencies, ms.
    pub latency_ms: BTreeMap<String, Percentiles>,
    /// Stage → its latencies in `LATENCY_BUCKETS_S`, for Prometheus (not in JSON).
    #[serde(skip)]
    pub latency_buckets: BTreeMap<String, Buckets>,
    pub parts_per_second: f64,
    /// Share of defective parts rejected (parts with known truth only).
    pub recall: Option<f64>,
    /// Share of good parts rejected (parts with known truth only).
    pub false_reject_rate: Option<f64>,
    pub good: u64,
    pub defect: u64,
    /// Image AUROC of the scores against the truth (inspected parts with known truth).
    pub image_auroc: Option<f64>,
    /// The execution provider that served the model.
    pub provider: String,
    /// Results lines not written (a write failed, the backlog was full, or a blocked
    /// write was abandoned at shutdown).
    pub record_errors: u64,
    /// Parts waiting for the record's storage now.
    pub record_backlog: u64,
    /// Saved images removed by retention (`record.keep_mb`, `record.keep_days`).
    pub images_removed: u64,
    /// Rotated results logs removed by retention.
    pub logs_removed: u64,
}

impl RunStats {
    pub fn new(started_ns: u64) -> Self {
        RunStats {
            parts: 0,
            rejects: 0,
            by_reason: BTreeMap::new(),
            stages: [
                ("queue", Histogram::new()),
                ("preprocess", Histogram::new()),
                ("inference", Histogram::new()),
                ("total", Histogram::new()),
            ],
            confusion: BTreeMap::new(),
            scored: Vec::new(),
            started_ns,
            last_capture_ns: started_ns,
            record_errors: 0,
            record_backlog: 0,
            images_removed: 0,
            logs_removed: 0,
        }
    }

    pub fn add(&mut self, r: &PartRecord) {
        self.parts += 1;
        let rejected = r.verdict == Verdict::Reject;
        self.rejects += rejected as u64;
        *self.by_reason.entry(r.reason).or_default() += 1;
        let l = &r.latency;
        for ((_, h), v) in self
            .stages
            .iter_mut()
            .zip([l.queue_ms, l.preprocess_ms, l.inference_ms, Some(l.total_ms)])
        {
            if let Some(ms) = v {
                h.record_ms(ms);
            }
        }
        if let Some(t) = r.truth {
            *self.confusion.entry((t == "defect", rejected)).or_default() += 1;
            if let (Some(score), true) = (r.score, self.scored.len() < AUROC_PARTS) {
                self.scored.push((score, t == "defect"));
            }
        }
        self.last_capture_ns = self.last_capture_ns.max(r.capture_ns);
    }

    /// The run's closing figures: [`RunStats::summary`] and the image AUROC (over the
    /// first `AUROC_PARTS` labelled parts).
    pub fn final_summary(&self) -> Summary {
        Summary {
            image_auroc: auroc(&self.scored),
            ..self.summary()
        }
    }

    fn count(&self, defect: bool, rejected: bool) -> u64 {
        self.confusion.get(&(defect, rejected)).copied().unwrap_or(0)
    }

    /// The figures now, for the metrics file, the sinks and progress: everything but the
    /// image AUROC, whose sort over every labelled part is for the end of the run.
    pub fn summary(&self) -> Summary {
        let defect = self.count(true, true) + self.count(true, false);
        let good = self.count(false, true) + self.count(false, false);
        let secs = (self.last_capture_ns.saturating_sub(self.started_ns)) as f64 / 1e9;
        Summary {
            parts: self.parts,
            rejects: self.rejects,
            rejects_by_reason: self
                .by_reason
                .iter()
                .filter(|(r, _)| r.verdict() == Verdict::Reject)
                .map(|(r, n)| (r.as_str().to_string(), *n))
                .collect(),
            latency_ms: self
                .stages
                .iter()
                .filter_map(|(name, h)| Some((name.to_string(), h.percentiles_ms()?)))
                .collect(),
            latency_buckets: self
                .stages
                .iter()
                .filter(|(_, h)| !h.is_empty())
                .map(|(name, h)| (name.to_string(), h.buckets_s(&LATENCY_BUCKETS_S)))
                .collect(),
            parts_per_second: if secs > 0.0 {
                self.parts.saturating_sub(1) as f64 / secs
            } else {
                0.0
            },
            recall: (defect > 0).then(|| self.count(true, true) as f64 / defect as f64),
            false_reject_rate: (good > 0).then(|| self.count(false, true) as f64 / good as f64),
            good,
            defect,
            image_auroc: None,
            provider: String::new(),
            record_errors: self.record_errors,
            record_backlog: self.record_backlog,
            images_removed: self.images_removed,
            logs_removed: self.logs_removed,
        }
    }

    /// One short line for the terminal while the line runs.
    pub fn progress_line(&self, parts_per_second: f64) -> String {
        let total = &self.stages[3].1;
        let inf = &self.stages[2].1;
        // Before the first part there is nothing to show but zeros.
        let ms = |h: &Histogram, q| h.quantile_ms(q).unwrap_or(0.0);
        format!(
            "parts {:>7} | {:5.1}/s | rejects {:>5} ({:.1}%) | inference p50 {:.1} ms | total p50 {:.1} ms p99 {:.1} ms",
            self.parts,
            parts_per_second,
            self.rejects,
            100.0 * self.rejects as f64 / self.parts.max(1) as f64,
            ms(inf, 0.5),
            ms(total, 0.5),
            ms(total, 0.99),
        )
    }
}

impl Summary {
    pub fn render(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "parts      {}  ({:.1} parts/s)", self.parts, self.parts_per_second);
        if !self.provider.is_empty() {
            let _ = writeln!(s, "provider   {}", self.provider);
        }
        let _ = writeln!(
            s,
            "rejects    {}  ({:.2}%)",
            self.rejects,
            100.0 * self.rejects as f64 / self.parts.max(1) as f64
        );
        for (reason, n) in &self.rejects_by_reason {
            let _ = writeln!(s, "  {reason:<16} {n}");
        }
        let _ = writeln!(s, "latency    p50 ms    p99 ms    max ms");
        for (stage, p) in &self.latency_ms {
            let _ = writeln!(s, "  {stage:<10} {:>7.2}   {:>7.2}   {:>7.2}", p.p50, p.p99, p.max);
        }
        if let Some(r) = self.recall {
            let _ = writeln!(s, "recall     {:.4}  ({} defective parts)", r, self.defect);
        }
        if let Some(a) = self.image_auroc {
            let _ = writeln!(s, "image AUROC {a:.4}");
        }
        if let Some(f) = self.false_reject_rate {
            let _ = writeln!(s, "false rejects {:.4}  ({} good parts)", f, self.good);
        }
        if self.record_errors > 0 || self.record_backlog > 0 {
            let _ = writeln!(
                s,
                "record_errors {}  (results lines not written; {} waiting for storage)",
                self.record_errors, self.record_backlog
            );
        }
        if self.images_removed > 0 {
            let _ = writeln!(
                s,
                "images removed {}  (oldest first: record.keep_mb / keep_days)",
                self.images_removed
            );
        }
        if self.logs_removed > 0 {
            let _ = writeln!(
                s,
                "results logs removed {}  (rotated logs, oldest first: record.keep_mb / keep_days)",
                self.logs_removed
            );
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::StageLatency;

    fn part(id: u64, total_ms: f64) -> PartRecord {
        PartRecord {
            run_id: "r".into(),
            device_seq: id,
            id,
            capture_ns: id * 1_000_000,
            frame_ns: None,
            unix_ms: 0,
            origin: None,
            score: Some(0.1),
            threshold: 0.5,
            verdict: Verdict::Pass,
            reason: Reason::BelowThreshold,
            detail: None,
            eject_ns: None,
            latency: StageLatency {
                queue_ms: None,
                preprocess_ms: Some(0.5),
                inference_ms: Some(total_ms / 2.0),
                total_ms,
            },
            truth: None,
            defect_kind: None,
        }
    }

    #[test]
    fn the_image_auroc_is_for_the_closing_summary_only() {
        let mut stats = RunStats::new(0);
        for id in 0..4u64 {
            let mut p = part(id, 1.0);
            p.truth = Some(if id % 2 == 0 { "good" } else { "defect" });
            p.score = Some(id as f32);
            stats.add(&p);
        }
        assert_eq!(stats.summary().image_auroc, None);
        assert_eq!(stats.final_summary().image_auroc, Some(0.75));
        assert_eq!(stats.final_summary().parts, 4);
    }

    #[test]
    fn the_summary_and_the_progress_line_use_the_one_quantile() {
        let mut stats = RunStats::new(0);
        for (id, ms) in [2.0, 1.2, 1.6, 0.8].into_iter().enumerate() {
            stats.add(&part(id as u64, ms));
        }
        let s = stats.summary();
        // As `stats::quantile` on the samples (hdrhistogram's own value_at_quantile would say
        // 1.2 for the median), exact to the microsecond below 2.048 ms.
        let total = s.latency_ms["total"];
        let near = |a: f64, b: f64| (a - b).abs() < 1e-9;
        assert!(
            near(total.p50, 1.4) && near(total.p99, 1.988) && total.max == 2.0,
            "{total:?}"
        );
        assert!(
            !s.latency_ms.contains_key("queue") && !s.latency_buckets.contains_key("queue"),
            "a stage with no values is left out"
        );
        let b = &s.latency_buckets["total"];
        assert_eq!((b.count, b.per_bucket.len()), (4, LATENCY_BUCKETS_S.len() + 1));
        assert!((b.sum_s - 0.0056).abs() < 1e-12, "{b:?}");
        let in_bucket = |le: f64| b.per_bucket.iter().find(|(bound, _)| *bound == le).unwrap().1;
        assert_eq!(
            (in_bucket(0.001), in_bucket(0.0025)),
            (1, 3),
            "0.8 ms; 1.2, 1.6 and 2.0 ms"
        );
        let line = stats.progress_line(1.0);
        assert!(
            line.contains("inference p50 0.7 ms | total p50 1.4 ms p99 2.0 ms"),
            "{line}"
        );
    }
}
