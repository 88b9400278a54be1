//! The run's figures as Prometheus metrics: one registry (`prometheus-client`), filled from
//! the run's [`Summary`], serving both the text file for node_exporter's textfile collector
//! (`record.metrics_file`, the usual way to get an edge daemon's figures into Prometheus
//! without a server in the daemon) and the web sink's `/metrics`.
//!
//! The registry encodes OpenMetrics text, which Prometheus scrapes as it is
//! ([`Metrics::render_openmetrics`]), and the classic text format (0.0.4) that
//! node_exporter's textfile collector and `promtool check metrics` read
//! ([`Metrics::render`]). Names follow Prometheus's naming rules, which `promtool check
//! metrics` checks: base units (seconds), `_total` on counters.

use super::Summary;
use crate::stats::Buckets;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The content type of [`Metrics::render`].
pub const TEXT_CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;
/// The content type of [`Metrics::render_openmetrics`].
pub const OPENMETRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The registry, with one collector that encodes the run's latest figures in a fixed
/// order (reasons and stages sorted), so that two renderings of the same figures read alike.
pub struct Metrics {
    registry: Registry,
    figures: Arc<LineFigures>,
}

#[derive(Debug)]
struct LineFigures {
    model: String,
    provider: String,
    latest: Mutex<Figures>,
}

#[derive(Debug, Clone, Default)]
struct Figures {
    parts: u64,
    rejects_by_reason: BTreeMap<String, u64>,
    latency: BTreeMap<String, Buckets>,
    threshold: f64,
    record_errors: u64,
    record_backlog: u64,
}

/// An f32 as the f64 it prints as (6.7577534, not 6.757753372192383).
fn as_printed(v: f32) -> f64 {
    format!("{v}").parse().unwrap_or(f64::NAN)
}

impl Collector for LineFigures {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let f = self.latest.lock().unwrap_or_else(|e| e.into_inner()).clone();
        // The provider's kind (cpu, cuda, tensorrt) is the first word of its description.
        let kind = self.provider.split_whitespace().next().unwrap_or("unknown");
        let mut info = encoder.encode_descriptor(
            "linesight_info",
            "The model and the execution provider serving it.",
            None,
            MetricType::Gauge,
        )?;
        let labels = [
            ("model", self.model.as_str()),
            ("provider", kind),
            ("provider_detail", self.provider.as_str()),
        ];
        ConstGauge::new(1i64).encode(info.encode_family(&labels)?)?;
        let parts = ConstCounter::new(f.parts);
        parts.encode(encoder.encode_descriptor(
            "linesight_parts",
            "Parts that got a verdict.",
            None,
            parts.metric_type(),
        )?)?;
        let mut rejects = encoder.encode_descriptor(
            "linesight_rejects",
            "Rejected parts, by reason.",
            None,
            MetricType::Counter,
        )?;
        for (reason, n) in &f.rejects_by_reason {
            ConstCounter::new(*n).encode(rejects.encode_family(&[("reason", reason.as_str())])?)?;
        }
        // A histogram rather than quantiles: buckets add up across lines and over time
        // windows in PromQL (histogram_quantile), quantiles do not.
        let mut latency = encoder.encode_descriptor(
            "linesight_stage_latency",
            "Latency per stage since the start (total: capture to verdict).",
            Some(&Unit::Seconds),
            MetricType::Histogram,
        )?;
        for (stage, b) in &f.latency {
            latency
                .encode_family(&[("stage", stage.as_str())])?
                .encode_histogram::<NoLabelSet>(b.sum_s, b.count, &b.per_bucket, None)?;
        }
        ConstGauge::new(f.threshold).encode(encoder.encode_descriptor(
            "linesight_threshold",
            "Score above which a part is rejected, as the judge uses it now.",
            None,
            MetricType::Gauge,
        )?)?;
        let errors = ConstCounter::new(f.record_errors);
        errors.encode(encoder.encode_descriptor(
            "linesight_record_errors",
            "Results lines not written: a write failed, the backlog was full, or a blocked write was abandoned.",
            None,
            errors.metric_type(),
        )?)?;
        ConstGauge::new(f.record_backlog as i64).encode(encoder.encode_descriptor(
            "linesight_record_backlog",
            "Parts waiting for the record's storage.",
            None,
            MetricType::Gauge,
        )?)?;
        Ok(())
    }
}

impl Metrics {
    /// The metrics of a run of `model` served by `provider` (as `Serving::detail` says it),
    /// starting with `threshold`.
    pub fn new(model: &str, provider: &str, threshold: f32) -> Metrics {
        let figures = Arc::new(LineFigures {
            model: model.to_string(),
            provider: provider.to_string(),
            latest: Mutex::new(Figures {
                threshold: as_printed(threshold),
                ..Figures::default()
            }),
        });
        let mut registry = Registry::default();
        registry.register_collector(Box::new(Arc::clone(&figures)));
        Metrics { registry, figures }
    }

    /// Sets every figure from the run's summary; `threshold` is the one the judge uses now
    /// (the last part's), if known (else the gauge keeps its value).
    pub fn update(&self, s: &Summary, threshold: Option<f32>) {
        let mut f = self.figures.latest.lock().unwrap_or_else(|e| e.into_inner());
        f.parts = s.parts;
        f.rejects_by_reason.clone_from(&s.rejects_by_reason);
        f.latency.clone_from(&s.latency_buckets);
        (f.record_errors, f.record_backlog) = (s.record_errors, s.record_backlog);
        if let Some(t) = threshold {
            f.threshold = as_printed(t);
        }
    }

    /// OpenMetrics text, as the registry encodes it (ends with `# EOF`).
    pub fn render_openmetrics(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }

    /// The classic Prometheus text format (0.0.4): a counter's `# HELP` and `# TYPE` name
    /// its `_total` sample, no `# UNIT`, no `# EOF`.
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

/// `record.metrics_file`: rewritten about once a second, through a temporary file and a
/// rename, so a scrape never sees half.
pub struct MetricsFile {
    path: PathBuf,
    metrics: Metrics,
}

impl MetricsFile {
    pub fn new(path: PathBuf, model: &str, provider: &str, threshold: f32) -> MetricsFile {
        MetricsFile {
            path,
            metrics: Metrics::new(model, provider, threshold),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes the summary's figures; `threshold` as for [`Metrics::update`].
    pub fn write(&self, s: &Summary, threshold: Option<f32>) -> std::io::Result<()> {
        self.metrics.update(s, threshold);
        let tmp = self.path.with_extension("prom.tmp");
        std::fs::write(&tmp, self.metrics.render())?;
        std::fs::rename(&tmp, &self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::summary::LATENCY_BUCKETS_S;
    use std::collections::BTreeMap;

    /// A stage's buckets with these latencies, ms.
    fn latencies(ms: &[f64]) -> Buckets {
        let mut h = crate::stats::Histogram::new();
        ms.iter().for_each(|v| h.record_ms(*v));
        h.buckets_s(&LATENCY_BUCKETS_S)
    }

    fn summary() -> Summary {
        Summary {
            parts: 12,
            rejects: 3,
            rejects_by_reason: BTreeMap::from([("above_threshold".into(), 2), ("deadline_missed".into(), 1)]),
            latency_buckets: BTreeMap::from([("inference".into(), latencies(&[36.0, 42.78, 46.66]))]),
            parts_per_second: 10.0,
            record_errors: 4,
            record_backlog: 2,
            ..Default::default()
        }
    }

    #[test]
    fn the_names_labels_and_types() {
        let m = Metrics::new("sim-flange", "cuda (device 0)", 6.0);
        m.update(&summary(), Some(6.75));
        let text = m.render();
        for want in [
            "# HELP linesight_info The model and the execution provider serving it.\n# TYPE linesight_info gauge\n",
            "linesight_info{model=\"sim-flange\",provider=\"cuda\",provider_detail=\"cuda (device 0)\"} 1\n",
            "# HELP linesight_parts_total Parts that got a verdict.\n# TYPE linesight_parts_total counter\nlinesight_parts_total 12\n",
            "# TYPE linesight_rejects_total counter\n",
            "linesight_rejects_total{reason=\"above_threshold\"} 2\n",
            "linesight_rejects_total{reason=\"deadline_missed\"} 1\n",
            "# TYPE linesight_stage_latency_seconds histogram\n",
            "linesight_stage_latency_seconds_sum{stage=\"inference\"} 0.12544\n",
            "linesight_stage_latency_seconds_count{stage=\"inference\"} 3\n",
            // cumulative: nothing up to 25 ms, all three up to 50 ms and above
            "linesight_stage_latency_seconds_bucket{stage=\"inference\",le=\"0.025\"} 0\n",
            "linesight_stage_latency_seconds_bucket{stage=\"inference\",le=\"0.05\"} 3\n",
            "linesight_stage_latency_seconds_bucket{stage=\"inference\",le=\"10\"} 3\n",
            "linesight_stage_latency_seconds_bucket{stage=\"inference\",le=\"+Inf\"} 3\n",
            "# TYPE linesight_threshold gauge\nlinesight_threshold 6.75\n",
            "# TYPE linesight_record_errors_total counter\nlinesight_record_errors_total 4\n",
            "# TYPE linesight_record_backlog gauge\nlinesight_record_backlog 2\n",
        ] {
            assert!(text.contains(want), "no {want:?} in\n{text}");
        }
        assert!(!text.contains("# EOF") && !text.contains("# UNIT"), "{text}");
        assert!(!text.contains("_ms"), "no unit but the base unit: {text}");
        let om = m.render_openmetrics();
        assert!(om.contains("# TYPE linesight_parts counter\nlinesight_parts_total 12\n") && om.ends_with("# EOF\n"));
        assert!(om.contains("# UNIT linesight_stage_latency_seconds seconds\n"), "{om}");
    }

    #[test]
    fn label_values_are_escaped() {
        let text = Metrics::new("a\"b\\c", "cpu", 1.0).render();
        assert!(text.contains(r#"model="a\"b\\c""#), "{text}");
    }

    #[test]
    fn families_and_their_samples_come_in_a_fixed_order() {
        let m = Metrics::new("m", "cpu", 1.0);
        let mut s = summary();
        s.latency_buckets.insert("total".into(), latencies(&[1.0, 2.0, 3.0]));
        s.latency_buckets.insert("queue".into(), latencies(&[0.1, 0.2, 0.3]));
        m.update(&s, None);
        let text = m.render();
        let names: Vec<&str> = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| l.split(' ').next().unwrap())
            .collect();
        assert_eq!(
            names[..4],
            [
                "linesight_info{model=\"m\",provider=\"cpu\",provider_detail=\"cpu\"}",
                "linesight_parts_total",
                "linesight_rejects_total{reason=\"above_threshold\"}",
                "linesight_rejects_total{reason=\"deadline_missed\"}"
            ]
        );
        let stages: Vec<&str> = names
            .iter()
            .filter_map(|n| n.strip_prefix("linesight_stage_latency_seconds_count{stage=\""))
            .map(|n| n.split('"').next().unwrap())
            .collect();
        assert_eq!(stages, ["inference", "queue", "total"]);
        assert_eq!(text, m.render(), "the same figures render the same text");
    }
}
