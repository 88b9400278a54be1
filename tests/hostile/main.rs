//! Hostile input (issue 21): configs, manifests and images made at test time, each
//! refused with a message that says what was expected, what was found and where. A
//! generous kill timeout catches a hang; nothing here asserts on how long anything takes.

mod images;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Longer than any of these takes on a loaded machine: only a hang reaches it.
const HANG: Duration = Duration::from_secs(60);

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// What a finished linesight said.
pub struct Said {
    pub success: bool,
    /// stdout and stderr together.
    pub text: String,
    /// The process's peak resident memory, MiB.
    pub peak_rss_mib: f64,
}

/// Runs linesight with `args`, killing it (and failing the test) if it runs past `HANG`,
/// and failing it if it aborted on a signal (an allocation failure, say).
// The child is reaped by wait4 (for its peak memory), which clippy cannot see.
#[allow(clippy::zombie_processes)]
pub fn linesight(args: &[&str]) -> Said {
    let mut child = Command::new(env!("CARGO_BIN_EXE_linesight"))
        .args(args)
        .env("LINESIGHT_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pipe = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = r.read_to_string(&mut s);
            s
        })
    };
    let out = pipe(Box::new(child.stdout.take().unwrap()));
    let err = pipe(Box::new(child.stderr.take().unwrap()));
    let started = Instant::now();
    use std::os::unix::process::ExitStatusExt;
    let (status, peak_rss_mib) = loop {
        // wait4, not try_wait: the child's own peak memory comes with its exit.
        let (mut raw, mut usage) = (0, unsafe { std::mem::zeroed::<libc::rusage>() });
        // SAFETY: wait4 on our own child's pid, with pointers to locals.
        let pid = unsafe { libc::wait4(child.id() as i32, &mut raw, libc::WNOHANG, &mut usage) };
        assert!(pid >= 0, "wait4: {}", std::io::Error::last_os_error());
        if pid > 0 {
            break (std::process::ExitStatus::from_raw(raw), usage.ru_maxrss as f64 / 1024.0);
        }
        if started.elapsed() > HANG {
            let _ = child.kill();
            let _ = child.wait();
            panic!("linesight {args:?} hung: killed after {HANG:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let text = out.join().unwrap() + &err.join().unwrap();
    assert!(
        status.signal().is_none(),
        "linesight {args:?} died on a signal ({status}):\n{text}"
    );
    Said {
        success: status.success(),
        text,
        peak_rss_mib,
    }
}

/// `linesight check` on `path`.
pub fn check(path: &Path) -> Said {
    linesight(&["check", "--config", path.to_str().unwrap()])
}

/// A config for the shipped model with a synthetic camera and a simulated output, the
/// results in `dir`; `model_dir` replaces the shipped model's folder when given.
pub fn base_config(dir: &Path, model_dir: Option<&Path>) -> String {
    let model = model_dir.map_or(repo().join("models/sim-flange"), Path::to_path_buf);
    format!(
        "[camera]\nkind = \"synthetic\"\n\n[model]\ndir = {:?}\n\n[runtime]\nintra_threads = 1\n\n[decision]\n\n\
         [reject]\ndelay_ms = 300\n\n[reject.output]\nkind = \"simulated\"\n\n[record]\nresults = {:?}\nprogress_s = 0.0\n",
        model.display().to_string(),
        dir.join("results.jsonl").display().to_string()
    )
}

/// `base` with `line` added at the end of `[section]`.
pub fn with(base: &str, section: &str, line: &str) -> String {
    let header = format!("[{section}]\n");
    let at = base.find(&header).unwrap_or_else(|| panic!("no [{section}]")) + header.len();
    let end = base[at..].find("\n[").map_or(base.len(), |i| at + i);
    format!("{}{line}\n{}", &base[..end], &base[end..])
}

pub fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: mkfifo reads the NUL-terminated path we own.
    assert_eq!(
        unsafe { libc::mkfifo(c.as_ptr(), 0o600) },
        0,
        "mkfifo {}",
        path.display()
    );
}

/// Each config case: `check` fails (or, for a warning, passes the config) and says each of
/// its expected lines.
#[test]
fn hostile_configs_are_refused_with_their_key() {
    let dir = tempfile::tempdir().unwrap();
    let base = base_config(dir.path(), None);
    // (name, config, the config itself is valid, check passes, what check says)
    let cases: Vec<(&str, String, bool, bool, Vec<&str>)> = vec![
        (
            "queue_depth",
            with(&base, "decision", "queue_depth = 100000000000"),
            false,
            false,
            vec!["decision.queue_depth: expected 1 to 64 frames, found 100000000000"],
        ),
        (
            "intra_threads",
            with(&base, "runtime", "intra_threads = 100000").replace("intra_threads = 1\n", ""),
            false,
            false,
            vec!["runtime.intra_threads: expected 0 to 256 threads, found 100000"],
        ),
        (
            "warmup_runs",
            with(&base, "runtime", "warmup_runs = 4000000000"),
            false,
            false,
            vec!["runtime.warmup_runs: expected 0 to 1000 runs, found 4000000000"],
        ),
        (
            "warmup_runs float",
            with(&base, "runtime", "warmup_runs = 4e9"),
            false,
            false,
            vec!["runtime.warmup_runs: invalid type: floating point `4000000000", "expected u32 (line 9, column 15"],
        ),
        (
            "pulse_ms wraps",
            with(&base, "reject", "pulse_ms = 18446744073710"),
            false,
            false,
            vec!["reject.pulse_ms: expected 1 to 5000 ms, found 18446744073710"],
        ),
        (
            "pulse_ms float",
            with(&base, "reject", "pulse_ms = 1e12"),
            false,
            false,
            vec!["reject.pulse_ms: invalid type: floating point", "expected u64 (line 14, column 12: `pulse_ms = 1e12`)"],
        ),
        (
            "parts_per_second",
            with(&base, "camera", "parts_per_second = 1e-12"),
            false,
            false,
            vec!["camera.parts_per_second: expected 0.01 to 1000 parts per second, found 0.000000000001"],
        ),
        (
            "type error in a tagged section",
            with(&base, "camera", "width = \"256\""),
            false,
            false,
            vec!["camera.width: invalid type: string \"256\", expected u32 (line 3, column 1: `width = \"256\"`)"],
        ),
        (
            "type error in an output",
            with(&base, "reject.output", "edge_log = 5"),
            false,
            false,
            vec!["reject.output.edge_log: invalid type: integer `5`", "(line 17, column 1: `edge_log = 5`)"],
        ),
        (
            "frames larger than the model takes",
            with(&base, "camera", "width = 8192\nheight = 8192"),
            true,
            false,
            vec![
                "frames: PROBLEM: camera.width, camera.height: every frame would be rejected as broken_frame: 8192x8192 px, larger than the largest frame inspected, 2048x2048 px (decision.max_frame_scale = 16 times the model's 128x128 input)",
            ],
        ),
        (
            "threshold far above the calibration",
            with(&base, "decision", "threshold = 1e30"),
            true,
            true,
            vec![
                "threshold: WARN decision.threshold = 1000000000000000000000000000000 is above the highest good score of the calibration (10.375362) plus 3 standard deviations",
                "it rejects none of the 1000 good calibration parts (false-reject rate 0 on the calibration data); recall at most 0.9138",
            ],
        ),
        (
            "negative threshold",
            with(&base, "decision", "threshold = -5.0"),
            true,
            true,
            vec![
                "threshold: WARN decision.threshold = -5 is below the mean good score of the calibration (4.262093): it rejects 100.0% of the 1000 good calibration parts (false-reject rate 1.000 on the calibration data)",
            ],
        ),
    ];
    let mut failures = Vec::new();
    for (name, text, config_ok, check_ok, expects) in cases {
        let path = dir.path().join("linesight.toml");
        std::fs::write(&path, &text).unwrap();
        let said = check(&path);
        let config_line = said.text.contains("config ") && said.text.contains(": ok");
        if config_line != config_ok {
            failures.push(format!(
                "{name}: the config was {}accepted\n{}",
                if config_ok { "not " } else { "" },
                said.text
            ));
        }
        if said.success != check_ok {
            failures.push(format!(
                "{name}: check {}\n{}",
                if check_ok { "failed" } else { "passed" },
                said.text
            ));
        }
        for e in expects {
            if !said.text.contains(e) {
                failures.push(format!("{name}: lacks {e:?}; it said:\n{}", said.text));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// A config that is not a regular file, or too large, is refused before it is read.
#[test]
fn a_device_a_fifo_or_a_huge_file_as_config_is_refused_unread() {
    let dir = tempfile::tempdir().unwrap();
    let said = linesight(&["check", "--config", "/dev/zero"]);
    assert!(!said.success);
    assert!(
        said.text
            .contains("cannot read config /dev/zero: not a regular file (it is a character device)"),
        "{}",
        said.text
    );
    let fifo = dir.path().join("linesight.toml");
    mkfifo(&fifo);
    let said = check(&fifo);
    assert!(!said.success);
    assert!(said.text.contains("not a regular file (it is a FIFO)"), "{}", said.text);
    // `run` refuses it the same way (it used to wait for a writer).
    let said = linesight(&["run", "--config", fifo.to_str().unwrap(), "--max-parts", "1"]);
    assert!(!said.success);
    assert!(said.text.contains("not a regular file (it is a FIFO)"), "{}", said.text);

    let big = dir.path().join("big.toml");
    let mut text = base_config(dir.path(), None);
    text += &"# padding\n".repeat(120_000);
    std::fs::write(&big, text).unwrap();
    let said = check(&big);
    assert!(!said.success);
    assert!(
        said.text
            .contains("bytes, more than the 1048576 bytes read at most here"),
        "{}",
        said.text
    );
}

/// The shipped manifest with `edit` applied, its model file named by absolute path, in a
/// folder of its own under `dir`.
fn manifest(dir: &Path, name: &str, edit: impl FnOnce(String) -> String) -> PathBuf {
    let text = std::fs::read_to_string(repo().join("models/sim-flange/model.toml")).unwrap();
    let onnx = repo().join("models/sim-flange/model.onnx");
    let text = text.replace(
        "onnx = \"model.onnx\"",
        &format!("onnx = {:?}", onnx.display().to_string()),
    );
    let model = dir.join(name);
    std::fs::create_dir_all(&model).unwrap();
    std::fs::write(model.join("model.toml"), edit(text)).unwrap();
    model
}

/// (name, the edit, the manifest itself is valid, what check says)
type ManifestCase = (&'static str, Box<dyn FnOnce(String) -> String>, bool, Vec<&'static str>);

#[test]
fn hostile_manifests_are_refused_with_their_key() {
    let dir = tempfile::tempdir().unwrap();
    let swap = |from: &'static str, to: &'static str| {
        move |t: String| {
            assert!(t.contains(from), "{from}");
            t.replacen(from, to, 1)
        }
    };
    let cases: Vec<ManifestCase> = vec![
        (
            "format_version",
            Box::new(swap("format_version = 1", "format_version = 999")),
            false,
            vec!["format_version: this linesight reads manifest format 1, found 999"],
        ),
        (
            "std zero",
            Box::new(swap("std = [0.5]", "std = [0.0]")),
            false,
            vec!["input.std[0]: expected a finite value more than 0 and at most the value range's width (1), found 0"],
        ),
        (
            "std negative",
            Box::new(swap("std = [0.5]", "std = [-0.5]")),
            false,
            vec!["input.std[0]: expected a finite value more than 0", "found -0.5"],
        ),
        (
            "mean NaN",
            Box::new(swap("mean = [0.5]", "mean = [nan]")),
            false,
            vec!["input.mean[0]: expected a finite value inside input.value_range [0, 1], found NaN"],
        ),
        (
            "mean infinite",
            Box::new(swap("mean = [0.5]", "mean = [inf]")),
            false,
            vec!["input.mean[0]: expected a finite value inside input.value_range [0, 1], found inf"],
        ),
        (
            "inverted range",
            Box::new(swap("value_range = [0.0, 1.0]", "value_range = [1.0, 0.0]")),
            false,
            vec!["input.value_range: expected [low, high] with finite low < high, found [1, 0]"],
        ),
        (
            "huge input",
            Box::new(swap("shape = [1, 1, 128, 128]", "shape = [1, 1, 1000000, 1000000]")),
            false,
            vec!["input.shape: H and W must be 1 to 8192, found 1000000x1000000"],
        ),
        (
            "type error",
            Box::new(swap("shape = [1, 1, 128, 128]", "shape = [1, 1, \"128\", 128]")),
            false,
            vec!["input.shape[2]: invalid type: string \"128\", expected usize (line 9, column 16"],
        ),
        (
            "onnx is /dev/zero",
            Box::new(|t: String| {
                let i = t.find("onnx = ").unwrap();
                let end = i + t[i..].find('\n').unwrap();
                format!("{}onnx = \"/dev/zero\"{}", &t[..i], &t[end..])
            }),
            false,
            vec!["cannot read model /dev/zero: not a regular file (it is a character device)"],
        ),
        (
            "calibrated threshold far too high",
            Box::new(swap("threshold = 6.7577536", "threshold = 1e30")),
            true,
            vec!["threshold: WARN calibration.threshold = 1000000000000000000000000000000 is above the highest good score"],
        ),
        (
            "calibration NaN",
            Box::new(swap("std = 1.0353264", "std = nan")),
            false,
            vec!["calibration.std: expected a finite score, found NaN"],
        ),
    ];
    let mut failures = Vec::new();
    for (i, (name, edit, manifest_ok, expects)) in cases.into_iter().enumerate() {
        let model = manifest(dir.path(), &format!("m{i}"), edit);
        let path = dir.path().join("linesight.toml");
        std::fs::write(&path, base_config(dir.path(), Some(&model))).unwrap();
        let said = check(&path);
        if !manifest_ok && said.success {
            failures.push(format!("{name}: check passed\n{}", said.text));
        }
        if manifest_ok && said.text.contains("model manifest") {
            failures.push(format!("{name}: the manifest was refused\n{}", said.text));
        }
        for e in expects {
            if !said.text.contains(e) {
                failures.push(format!("{name}: lacks {e:?}; it said:\n{}", said.text));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
