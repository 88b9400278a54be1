//! Execution-provider fallback against the CPU-only ONNX Runtime that CI has: the
//! accelerators the config asks for cannot register, and what happens next is the
//! user's choice (`runtime.require_accelerator`), never silent.

mod common;

use common::{set, SimRun};

fn accelerators_first(require: bool) -> SimRun {
    SimRun::new(|t| {
        set(
            t,
            "runtime.providers",
            toml::Value::Array(vec!["tensorrt".into(), "cuda".into(), "cpu".into()]),
        );
        set(t, "runtime.require_accelerator", require.into());
        set(t, "runtime.tensorrt.engine_cache_dir", "trt-cache".into());
    })
}

#[test]
fn without_require_accelerator_it_runs_on_the_cpu_and_warns_why() {
    let sim = accelerators_first(false);
    let out = sim.run(&["--max-parts", "6"]);
    let err = String::from_utf8_lossy(&out.stderr);
    let out_s = String::from_utf8_lossy(&out.stdout);
    // Each provider given up is named with its reason.
    assert!(
        err.contains("WARN execution provider \"tensorrt\" not used: libnvinfer.so.10"),
        "{err}"
    );
    assert!(err.contains("WARN execution provider \"cuda\" not used:"), "{err}");
    assert!(err.contains("execution provider cpu"), "{err}");
    // The summary says what served, and every part still got a verdict.
    assert!(out_s.contains("provider   cpu"), "{out_s}");
    assert_eq!(sim.results().len(), 6);
    // No engine cache is made for an engine that was never built.
    assert!(!sim.dir.path().join("trt-cache").exists());
}

#[test]
fn with_require_accelerator_it_refuses_to_start_and_says_why() {
    let sim = accelerators_first(true);
    let out = sim.command(&["--max-parts", "6"]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "runtime.providers[0] = \"tensorrt\" cannot be used: libnvinfer.so.10: cannot open shared object file"
        ),
        "{err}"
    );
    assert!(err.contains("require_accelerator = true"), "{err}");
    // Nothing was inspected and the reject output was never armed.
    assert!(!err.contains("armed"), "{err}");
    assert!(!sim.dir.path().join("results.jsonl").exists() || sim.results().is_empty());

    // `linesight check` reports the same reason.
    let check = std::process::Command::new(env!("CARGO_BIN_EXE_linesight"))
        .args(["check", "--config"])
        .arg(&sim.config)
        .output()
        .unwrap();
    assert!(!check.status.success());
    let said = String::from_utf8_lossy(&check.stdout);
    assert!(
        said.contains("model: PROBLEM: runtime.providers[0] = \"tensorrt\""),
        "{said}"
    );
}

#[test]
fn check_names_the_serving_provider() {
    let sim = accelerators_first(false);
    let check = std::process::Command::new(env!("CARGO_BIN_EXE_linesight"))
        .args(["check", "--config"])
        .arg(&sim.config)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&check.stdout);
    assert!(check.status.success(), "{said}");
    assert!(
        said.contains("execution provider: cpu (WARN tensorrt not used: libnvinfer.so.10"),
        "{said}"
    );
}

#[test]
fn the_serving_provider_is_a_metric_label() {
    let sim = SimRun::new(|t| {
        set(t, "record.metrics_file", "linesight.prom".into());
    });
    sim.run(&["--max-parts", "5"]);
    let prom = std::fs::read_to_string(sim.dir.path().join("linesight.prom")).unwrap();
    assert!(
        prom.contains("linesight_info{model=\"sim-flange\",provider=\"cpu\",provider_detail=\"cpu\"} 1"),
        "{prom}"
    );
    assert!(prom.contains("linesight_parts_total 5\n"), "{prom}");
    let rejects: u64 = sim.results().iter().filter(|r| r["verdict"] == "reject").count() as u64;
    let counted: u64 = prom
        .lines()
        .filter(|l| l.starts_with("linesight_rejects_total{"))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(counted, rejects, "{prom}");
    assert!(
        prom.contains("linesight_stage_latency_seconds_count{stage=\"total\"} 5\n"),
        "{prom}"
    );
}
