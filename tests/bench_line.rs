//! `linesight bench --line` on the sim line: a held rate is reported with its trial, one that
//! cannot be held makes the command fail, and a trial touches nothing the config names
//! (results log, reject edge log). Its figures are never asserted: a test does not time.

mod common;

use common::{set, SimRun};
use serde_json::Value;
use std::process::Command;

/// The sim line with a deadline no loaded CI machine misses at a few parts a second.
fn sim() -> SimRun {
    SimRun::new(|t| {
        set(t, "decision.deadline_ms", 2000.into());
        set(t, "reject.delay_ms", 2500.into());
    })
}

fn bench(sim: &SimRun, args: &[&str]) -> (std::process::Output, Value) {
    let json = sim.dir.path().join("bench.json");
    let out = Command::new(env!("CARGO_BIN_EXE_linesight"))
        .args(["bench", "--runs", "10", "--line", "--config"])
        .arg(&sim.config)
        .arg("--json")
        .arg(&json)
        .args(args)
        .output()
        .unwrap();
    let report = serde_json::from_str(&std::fs::read_to_string(&json).unwrap_or_else(|e| {
        panic!(
            "no JSON ({e}):\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }))
    .unwrap();
    (out, report)
}

#[test]
fn a_rate_the_line_holds_is_reported_and_nothing_the_config_names_is_touched() {
    let sim = sim();
    let (out, report) = bench(&sim, &["--rate", "4", "--parts", "12"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = &report["line"];
    assert_eq!(line["rate_parts_per_s"], 4.0, "{line}");
    assert!(report["bare_fps"].as_f64().unwrap() > 0.0 && line["bare_fps"] == report["bare_fps"]);
    let trials = line["trials"].as_array().unwrap();
    assert_eq!(trials.len(), 1, "{line}");
    assert_eq!(
        (trials[0]["kind"].as_str(), trials[0]["parts"].as_u64()),
        (Some("confirm"), Some(12))
    );
    assert_eq!(trials[0]["fail_safe"], 0);
    assert!(line["p99_total_ms"].as_f64().unwrap() > 0.0, "{line}");
    assert!(stdout.contains("line rate              4.0 parts/s held"), "{stdout}");
    // Results and the reject output's edges went to the trial's own folder, since removed.
    assert!(!sim.results_path().exists(), "the configured results log was written");
    assert!(
        !sim.dir.path().join("edges.jsonl").exists(),
        "the configured reject output was driven"
    );
}

#[test]
fn a_rate_the_line_cannot_hold_fails_with_its_fail_safe_rejects() {
    let sim = sim();
    sim.edit(|t| set(t, "decision.queue_depth", 1.into()));
    let (out, report) = bench(&sim, &["--rate", "1000", "--parts", "40"]);
    assert!(!out.status.success(), "1000 parts/s cannot be held");
    let line = &report["line"];
    assert!(line["rate_parts_per_s"].is_null(), "{line}");
    let trial = &line["trials"][0];
    assert_eq!(trial["held"], false);
    assert!(
        trial["fail_safe_by_reason"]["overload"].as_u64().unwrap() > 0,
        "{trial}"
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("none held"));
}
