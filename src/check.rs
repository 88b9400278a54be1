//! `linesight check`: everything that can be checked before a line starts, each
//! problem listed with where it is, instead of stopping at the first.

use crate::config::Config;
use crate::pipeline;
use std::path::Path;
use std::process::ExitCode;

pub fn check(path: &Path) -> ExitCode {
    let config = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("linesight: error: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("config {}: ok", path.display());
    let mut failed = 0;
    let mut report = |what: &str, r: anyhow::Result<String>| match r {
        Ok(s) => println!("{what}: {s}"),
        Err(e) => {
            failed += 1;
            println!("{what}: PROBLEM: {e:#}");
        }
    };
    let mut detector = None;
    report(
        "model",
        pipeline::open_detector(&config).map(|d| {
            let m = &d.manifest;
            let line = format!(
                "{} ok (sha256 verified, input {:?} {:?}, threshold {} by {})",
                m.onnx_path().display(),
                m.input.shape,
                m.input.channels,
                config.decision.threshold.unwrap_or(m.calibration.threshold),
                if config.decision.threshold.is_some() {
                    "decision.threshold".to_string()
                } else {
                    m.calibration.method.clone()
                }
            );
            detector = Some(d);
            line
        }),
    );
    if let Some(lib) = crate::model::library::loaded() {
        report(
            "onnxruntime",
            Ok(format!("{} (from {})", lib.path.display(), lib.origin)),
        );
    }
    if let Some(d) = &detector {
        let skipped: Vec<String> = d
            .serving
            .skipped
            .iter()
            .map(|(k, r)| format!("{} not used: {r}", k.as_str()))
            .collect();
        let tail = if skipped.is_empty() {
            String::new()
        } else {
            format!(" (WARN {})", skipped.join("; "))
        };
        println!("execution provider: {}{tail}", d.serving.detail);
    }
    for (what, result) in crate::commission::probe_io(&config) {
        report(what, result);
    }
    if failed > 0 {
        println!("{failed} problem(s) found");
        ExitCode::FAILURE
    } else {
        println!("all checks passed");
        ExitCode::SUCCESS
    }
}
