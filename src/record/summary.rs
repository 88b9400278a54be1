//! Running statistics of a run: the progress line and the closing summary.

use super::PartRecord;
use crate::frame::{Reason, Verdict};
use crate::stats::auroc;
use hdrhistogram::Histogram;
use std::collections::BTreeMap;
use std::fmt::Write;

/// Latencies are kept in microseconds, up to 60 s, 3 significant digits.
fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("static bounds are valid")
}

pub struct RunStats {
    pub parts: u64,
    pub rejects: u64,
    pub by_reason: BTreeMap<Reason, u64>,
    stages: [(&'static str, Histogram<u64>); 4],
    /// (truth is defect, verdict is reject) → count, for parts with known truth.
    confusion: BTreeMap<(bool, bool), u64>,
    /// (score, truth is defect) of inspected parts with known truth, for the AUROC.
    /// Only labelled sources (synthetic, labelled folders) fill it.
    scored: Vec<(f32, bool)>,
    started_ns: u64,
    last_capture_ns: u64,
}

/// The numbers a user checks at the end of a run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Summary {
    pub parts: u64,
    pub rejects: u64,
    pub rejects_by_reason: BTreeMap<String, u64>,
    /// Stage → (p50 ms, p99 ms, max ms).
    pub latency_ms: BTreeMap<String, [f64; 3]>,
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
}

impl RunStats {
    pub fn new(started_ns: u64) -> Self {
        RunStats {
            parts: 0,
            rejects: 0,
            by_reason: BTreeMap::new(),
            stages: [
                ("queue", histogram()),
                ("preprocess", histogram()),
                ("inference", histogram()),
                ("total", histogram()),
            ],
            confusion: BTreeMap::new(),
            scored: Vec::new(),
            started_ns,
            last_capture_ns: started_ns,
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
                h.saturating_record((ms * 1000.0).max(1.0) as u64);
            }
        }
        if let Some(t) = r.truth {
            *self.confusion.entry((t == "defect", rejected)).or_default() += 1;
            if let Some(score) = r.score {
                self.scored.push((score, t == "defect"));
            }
        }
        self.last_capture_ns = self.last_capture_ns.max(r.capture_ns);
    }

    fn count(&self, defect: bool, rejected: bool) -> u64 {
        self.confusion.get(&(defect, rejected)).copied().unwrap_or(0)
    }

    pub fn summary(&self) -> Summary {
        let pct = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
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
                .filter(|(_, h)| !h.is_empty())
                .map(|(name, h)| (name.to_string(), [pct(h, 0.5), pct(h, 0.99), h.max() as f64 / 1000.0]))
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
            image_auroc: auroc(&self.scored),
            provider: String::new(),
        }
    }

    /// One short line for the terminal while the line runs.
    pub fn progress_line(&self, parts_per_second: f64) -> String {
        let total = &self.stages[3].1;
        let inf = &self.stages[2].1;
        format!(
            "parts {:>7} | {:5.1}/s | rejects {:>5} ({:.1}%) | inference p50 {:.1} ms | total p50 {:.1} ms p99 {:.1} ms",
            self.parts,
            parts_per_second,
            self.rejects,
            100.0 * self.rejects as f64 / self.parts.max(1) as f64,
            inf.value_at_quantile(0.5) as f64 / 1000.0,
            total.value_at_quantile(0.5) as f64 / 1000.0,
            total.value_at_quantile(0.99) as f64 / 1000.0,
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
        for (stage, [p50, p99, max]) in &self.latency_ms {
            let _ = writeln!(s, "  {stage:<10} {p50:>7.2}   {p99:>7.2}   {max:>7.2}");
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
        s
    }
}
