//! Shared by the end-to-end tests: run the real binary on the sim board's config,
//! with its output paths moved into a temporary folder.

#![allow(dead_code)]

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

const MS: u64 = 1_000_000;

/// How long a test waits for something linesight is bound to do before it calls the run
/// hung. Generous on purpose: a loaded machine makes linesight slow, and slow is not wrong.
pub const HUNG: Duration = Duration::from_secs(120);

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub struct SimRun {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
}

impl SimRun {
    /// board/sim/linesight.toml with model, results and edge log made absolute, then `edit`ed.
    pub fn new(edit: impl FnOnce(&mut toml::Table)) -> SimRun {
        let dir = tempfile::tempdir().unwrap();
        let text = std::fs::read_to_string(repo().join("board/sim/linesight.toml")).unwrap();
        let mut t: toml::Table = toml::from_str(&text).unwrap();
        set(
            &mut t,
            "model.dir",
            repo().join("models/sim-flange").display().to_string().into(),
        );
        set(
            &mut t,
            "reject.output.edge_log",
            dir.path().join("edges.jsonl").display().to_string().into(),
        );
        set(
            &mut t,
            "record.results",
            dir.path().join("results.jsonl").display().to_string().into(),
        );
        set(&mut t, "record.progress_s", 0.0.into());
        edit(&mut t);
        let config = dir.path().join("linesight.toml");
        std::fs::write(&config, toml::to_string(&t).unwrap()).unwrap();
        SimRun { dir, config }
    }

    /// Edits the written config again (for values that name files in `self.dir`).
    pub fn edit(&self, f: impl FnOnce(&mut toml::Table)) {
        let mut t: toml::Table = toml::from_str(&std::fs::read_to_string(&self.config).unwrap()).unwrap();
        f(&mut t);
        std::fs::write(&self.config, toml::to_string(&t).unwrap()).unwrap();
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_linesight"));
        c.arg("run").arg("--config").arg(&self.config).args(args);
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        let out = self.command(args).output().unwrap();
        assert!(
            out.status.success(),
            "linesight run failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    pub fn results(&self) -> Vec<Value> {
        read_jsonl(&self.results_path())
    }

    pub fn results_path(&self) -> PathBuf {
        self.dir.path().join("results.jsonl")
    }

    /// Waits until the verdicts recorded so far by the running `child` satisfy `done`:
    /// synchronisation on what the run did, not on a guess of how long it takes.
    pub fn wait_for_results(&self, child: &mut Child, what: &str, done: impl Fn(&[Value]) -> bool) {
        wait_while_running(child, what, || done(&complete_lines(&self.results_path())));
    }

    pub fn edges(&self) -> Vec<(u64, bool)> {
        read_jsonl(&self.dir.path().join("edges.jsonl"))
            .iter()
            .map(|e| (e["t_ns"].as_u64().unwrap(), e["level"].as_bool().unwrap()))
            .collect()
    }
}

/// Sets a dotted key, creating tables on the way.
pub fn set(t: &mut toml::Table, key: &str, v: toml::Value) {
    let mut parts: Vec<&str> = key.split('.').collect();
    let last = parts.pop().unwrap();
    let mut cur = t;
    for p in parts {
        cur = cur
            .entry(p)
            .or_insert_with(|| toml::Value::Table(Default::default()))
            .as_table_mut()
            .unwrap();
    }
    cur.insert(last.to_string(), v);
}

pub fn read_jsonl(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
        .collect()
}

/// The complete lines of a JSON-lines file that is still being appended to (none if it
/// does not exist yet): a line being written is left for the next look.
pub fn complete_lines(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let complete = &text[..text.rfind('\n').map_or(0, |i| i + 1)];
    complete
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
        .collect()
}

/// Polls `done` until it holds; fails only a run that is hung ([`HUNG`]).
pub fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < HUNG, "gave up after {HUNG:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// [`wait_until`] for something the running linesight `child` is to do; fails at once if
/// it exits first.
pub fn wait_while_running(child: &mut Child, what: &str, mut done: impl FnMut() -> bool) {
    wait_until(what, || {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("linesight exited ({status}) before {what}");
        }
        done()
    });
}

/// Sends SIGTERM to a running linesight, as systemd or Ctrl-C would, and returns what it
/// printed once it has drained; it must exit cleanly.
pub fn terminate(child: Child) -> Output {
    // SAFETY: kill with the pid of a child that has not been waited for.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "linesight did not exit cleanly on SIGTERM ({}): {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Parts inspected after a camera outage that is over (none while there was none).
pub fn inspected_after_outage(results: &[Value]) -> usize {
    match results.iter().rposition(|r| r["reason"] == "camera_lost") {
        Some(last) => results[last + 1..].iter().filter(|r| r["score"].is_number()).count(),
        None => 0,
    }
}

/// Output edges (t_ns, level) from a simulated output's edge log.
pub fn edges_of(path: &Path) -> Vec<(u64, bool)> {
    read_jsonl(path)
        .iter()
        .map(|e| (e["t_ns"].as_u64().unwrap(), e["level"].as_bool().unwrap()))
        .collect()
}

/// CLOCK_MONOTONIC now, in ns: the clock linesight stamps parts and edges with.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Replaces the `[camera]` table of a run's config.
pub fn set_camera(sim: &SimRun, camera: toml::Table) {
    sim.edit(|t| set(t, "camera", toml::Value::Table(camera)));
}

/// Parts that are not fail-safe rejects of the camera were inspected; a deadline miss or
/// an overload on a loaded test machine is allowed for a few.
pub fn assert_mostly_inspected<'a>(results: impl Iterator<Item = &'a Value>) {
    let (mut n, mut inspected) = (0, 0);
    for r in results {
        n += 1;
        if r["score"].is_number() {
            inspected += 1;
        } else {
            assert!(
                r["reason"] == "deadline_missed" || r["reason"] == "overload",
                "not inspected and not for lack of time: {r}"
            );
        }
    }
    assert!(inspected * 10 >= n * 9, "only {inspected} of {n} parts inspected");
}

/// The number linesight prints right after `label` in `text`
/// (`reported("… worst edge lateness 0.12 ms", "worst edge lateness ")` is 0.12).
pub fn reported(text: &str, label: &str) -> f64 {
    text.split(label)
        .nth(1)
        .and_then(|rest| rest.split([' ', ';', ',', ')']).next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no number after {label:?} in:\n{text}"))
}

/// The worst reject-edge lateness linesight reports ("worst edge lateness 0.12 ms"), in ns,
/// plus 0.1 ms for the printed rounding. Timing checks allow what the run itself owns up
/// to, up to `cap_ms`: on a loaded machine an edge can wake a few ms late, and linesight
/// must then say so.
pub fn reported_lateness_ns(output: &Output, cap_ms: f64) -> u64 {
    let text = String::from_utf8_lossy(&output.stdout);
    let ms = reported(&text, "worst edge lateness ");
    assert!(ms <= cap_ms, "edges up to {ms} ms late, more than {cap_ms} ms:\n{text}");
    ((ms + 0.1) * 1e6).ceil() as u64
}

/// The longest a frame took from capture to linesight, as the summary reports it
/// ("capture to linesight p50 …, max 1.23 ms"), in ns, plus 1 ms for the printed rounding
/// and the few steps between taking a frame in and what it sets off. It includes how late
/// the camera thread woke for a frame in this run, so it is also the allowance for what
/// that thread does on time.
pub fn reported_delivery_max_ns(output: &Output) -> u64 {
    let text = String::from_utf8_lossy(&output.stdout);
    let line = text
        .lines()
        .find(|l| l.contains("capture to linesight"))
        .unwrap_or_else(|| panic!("no \"capture to linesight\" in the summary:\n{text}"));
    ((reported(line, ", max ") + 1.0) * 1e6).ceil() as u64
}

/// Checks a single camera outage against what linesight reported of it: the summary's
/// "down X s in all" is the time the fault output was high (`rise`..`fall`), to the
/// printed 10 ms.
pub fn assert_outage_reported(output: &Output, rise: u64, fall: u64) {
    let text = String::from_utf8_lossy(&output.stdout);
    let down_ns = (reported(&text, "; down ") * 1e9) as u64;
    assert!(
        down_ns.abs_diff(fall - rise) <= 6 * MS,
        "the summary says down {} ms, the fault output was high {} ms:\n{text}",
        down_ns / MS,
        (fall - rise) / MS
    );
}

/// The `camera_lost` parts of a free-running camera's one outage, checked against the
/// run's own record: they are made one per camera pitch from the last frame before the
/// loss until the camera is back (the fault output falls at `fall`, with the first frame
/// back), so that the ejector takes whatever passes meanwhile. The pitch is the camera's
/// recent rate, so it is judged by the gaps of the frames before the loss; how far the
/// last one may fall short of the return is judged by the camera thread's lateness that
/// linesight reports.
pub fn assert_stand_ins_fill_the_outage<'a>(results: &'a [Value], fall: u64, output: &Output) -> Vec<&'a Value> {
    let capture = |r: &Value| r["capture_ns"].as_u64().unwrap();
    let first = results
        .iter()
        .position(|r| r["reason"] == "camera_lost")
        .expect("parts during the outage are camera_lost");
    let n = results[first..]
        .iter()
        .take_while(|r| r["reason"] == "camera_lost")
        .count();
    let lost: Vec<&Value> = results[first..first + n].iter().collect();
    assert_eq!(
        results.iter().filter(|r| r["reason"] == "camera_lost").count(),
        n,
        "one outage, one run of camera_lost parts"
    );
    assert!(first >= 3, "the camera showed its pitch before it was lost");

    // Slots at the pitch, not arrival times: all the same distance apart, starting one
    // pitch after the last frame.
    let slots: Vec<u64> = results[first - 1..first + n].iter().map(capture).collect();
    let pitch = slots[1] - slots[0];
    assert!(
        slots.windows(2).all(|w| w[1] - w[0] == pitch),
        "camera_lost parts one pitch apart: {slots:?}"
    );
    let before: Vec<u64> = results[..first]
        .windows(2)
        .map(|w| capture(&w[1]) - capture(&w[0]))
        .collect();
    let (lo, hi) = (*before.iter().min().unwrap(), *before.iter().max().unwrap());
    assert!(
        (lo..=hi).contains(&pitch),
        "the camera_lost pitch {} µs is the camera's (its frames came {} to {} µs apart)",
        pitch / 1000,
        lo / 1000,
        hi / 1000
    );

    // Until the camera is back: none after it, and none missing before it. The slot after
    // the last one was not due before the first frame back was taken in, or came due only
    // while the camera thread was waking late. That lateness is what linesight reports as
    // capture to linesight (doubled: waking for a slot is not waking for a frame).
    let last = *slots.last().unwrap();
    assert!(last < fall, "no camera_lost part once the camera is back");
    let short = fall - last;
    let allowed = pitch + 2 * reported_delivery_max_ns(output);
    eprintln!(
        "outage: {n} camera_lost parts {:.3} ms apart, the last {:.3} ms before the camera was back (allowed {:.3} ms)",
        pitch as f64 / 1e6,
        short as f64 / 1e6,
        allowed as f64 / 1e6
    );
    assert!(
        short <= allowed,
        "the camera_lost parts stop {} ms before the camera is back; allowed {} ms (one pitch and twice the reported lateness)",
        short / MS,
        allowed / MS
    );
    lost
}

/// One line at a time within a test binary: each is timed, and they share two cores.
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// A Python that imports `module` (a plant-side client: pymodbus, asyncua):
/// `$LINESIGHT_PLANT_PYTHON`, else `target/plant-venv/bin/python` (what .ci/run makes), else
/// `python3`. Without one, a line saying how to get it (`pip_spec`) and None; under CI
/// (`CI` set) a failure instead: the real-client tests must run there.
pub fn plant_python(module: &str, pip_spec: &str) -> Option<PathBuf> {
    let candidates = std::env::var_os("LINESIGHT_PLANT_PYTHON")
        .map(PathBuf::from)
        .into_iter()
        .chain([repo().join("target/plant-venv/bin/python"), "python3".into()]);
    for py in candidates {
        let ok = Command::new(&py)
            .args(["-c", &format!("import {module}")])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return Some(py);
        }
    }
    let msg = format!(
        "test skipped: no Python with {module}; make one: python3 -m venv target/plant-venv && \
         target/plant-venv/bin/pip install \"{pip_spec}\" (or set LINESIGHT_PLANT_PYTHON)"
    );
    if std::env::var_os("CI").is_some() {
        panic!("{msg} (CI is set: the real-client tests must run)");
    }
    eprintln!("{msg}");
    None
}

/// linesight running (`sim.command(args)`), its stderr collected as it comes, and the word
/// after `marker` in its log (`"opcua server on "` → the endpoint it took). Kills it and fails,
/// with the log, if no such line comes.
pub fn spawn_announcing(
    sim: &SimRun,
    args: &[&str],
    marker: &'static str,
) -> (Child, String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    use std::sync::{mpsc, Arc, Mutex};
    let mut child = sim
        .command(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = mpsc::channel();
    let (pipe, lines) = (child.stderr.take().unwrap(), Arc::clone(&stderr));
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            if let Some(rest) = line.split(marker).nth(1) {
                let _ = tx.send(rest.split(' ').next().unwrap_or_default().to_string());
            }
            lines.lock().unwrap().push(line);
        }
    });
    match rx.recv_timeout(HUNG) {
        Ok(word) => (child, word, stderr),
        Err(_) => {
            let _ = child.kill();
            panic!("no \"{marker}...\" line:\n{}", stderr.lock().unwrap().join("\n"));
        }
    }
}
