//! The run's counters as a Prometheus text file, for node_exporter's textfile collector
//! (the usual way to get an edge daemon's figures into Prometheus without a server in
//! the daemon). Written to a temporary file and renamed, so a scrape never sees half.

use super::Summary;
use std::fmt::Write;
use std::path::{Path, PathBuf};

pub struct MetricsFile {
    path: PathBuf,
    model: String,
    provider: String,
}

impl MetricsFile {
    pub fn new(path: PathBuf, model: &str, provider: &str) -> MetricsFile {
        MetricsFile {
            path,
            model: model.to_string(),
            provider: provider.to_string(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn write(&self, s: &Summary) -> std::io::Result<()> {
        let text = render(s, &self.model, &self.provider);
        let tmp = self.path.with_extension("prom.tmp");
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, &self.path)
    }
}

/// Label values escaped as the exposition format wants.
fn esc(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn render(s: &Summary, model: &str, provider: &str) -> String {
    let mut o = String::new();
    // The provider's kind (cpu, cuda, tensorrt) is the first word of its description.
    let kind = provider.split_whitespace().next().unwrap_or("unknown");
    let _ = writeln!(
        o,
        "# HELP linesight_info The model and the execution provider serving it."
    );
    let _ = writeln!(o, "# TYPE linesight_info gauge");
    let _ = writeln!(
        o,
        "linesight_info{{model=\"{}\",provider=\"{}\",provider_detail=\"{}\"}} 1",
        esc(model),
        esc(kind),
        esc(provider)
    );
    let _ = writeln!(o, "# HELP linesight_parts_total Parts that got a verdict.");
    let _ = writeln!(o, "# TYPE linesight_parts_total counter");
    let _ = writeln!(o, "linesight_parts_total {}", s.parts);
    let _ = writeln!(o, "# HELP linesight_rejects_total Rejected parts, by reason.");
    let _ = writeln!(o, "# TYPE linesight_rejects_total counter");
    for (reason, n) in &s.rejects_by_reason {
        let _ = writeln!(o, "linesight_rejects_total{{reason=\"{}\"}} {n}", esc(reason));
    }
    let _ = writeln!(
        o,
        "# HELP linesight_stage_latency_ms Latency per stage since the start, ms."
    );
    let _ = writeln!(o, "# TYPE linesight_stage_latency_ms gauge");
    for (stage, p) in &s.latency_ms {
        for (q, v) in [("0.5", p.p50), ("0.99", p.p99), ("1", p.max)] {
            let _ = writeln!(
                o,
                "linesight_stage_latency_ms{{stage=\"{}\",quantile=\"{q}\"}} {v}",
                esc(stage)
            );
        }
    }
    o
}
