//! The record when storage fails or the process dies: the real binary on the sim board.
//! A full disk (a file-size limit, RLIMIT_FSIZE, which tears writes as a full disk
//! does), storage that hangs (a FIFO whose reader never reads, as a hung NFS mount or SD
//! card), a crash (SIGKILL), and a results path that is not a results log. What an
//! operator relies on: no partial line ever, every lost line counted, SIGTERM always
//! ends, and every part numbered once on this device across restarts.

mod common;

use common::{read_jsonl, set, SimRun};
use serde_json::Value;
use std::collections::HashSet;
use std::os::unix::net::UnixDatagram;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

/// Every line of the file is a whole results line, the last one included.
fn whole_results_lines(path: &Path) -> Vec<Value> {
    let bytes = std::fs::read(path).unwrap();
    assert!(
        bytes.is_empty() || bytes.ends_with(b"\n"),
        "the file ends in a fragment"
    );
    let lines = read_jsonl(path);
    for l in &lines {
        assert!(
            l["verdict"].is_string() && l["device_seq"].is_u64() && l["run_id"].is_string(),
            "not a whole results line: {l}"
        );
    }
    lines
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_full_disk_leaves_whole_lines_only_and_every_lost_line_is_counted() {
    let sim = SimRun::new(|t| {
        set(t, "camera.parts_per_second", 20.0.into());
        set(t, "camera.defect_ratio", 0.0.into());
        set(t, "record.flush_lines", 5.into());
        set(t, "status.fault_line.kind", "simulated".into());
    });
    let fault_log = sim.dir.path().join("fault-edges.jsonl");
    sim.edit(|t| set(t, "status.fault_line.edge_log", fault_log.display().to_string().into()));
    let results = sim.results_path();
    // Room for about 40 of the 120 lines; each write past the limit is torn by the kernel
    // (a part written, the rest refused with EFBIG), as on a disk that fills up.
    const LIMIT: u64 = 16 * 1024;
    let mut cmd = sim.command(&["--max-parts", "120"]);
    // SAFETY: between fork and exec, only async-signal-safe calls (setrlimit, signal).
    unsafe {
        cmd.pre_exec(|| {
            let lim = libc::rlimit {
                rlim_cur: LIMIT,
                rlim_max: libc::RLIM_INFINITY,
            };
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            if libc::setrlimit(libc::RLIMIT_FSIZE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = cmd.output().unwrap();
    let (stdout, stderr) = text(&out);
    assert_eq!(
        out.status.code(),
        Some(1),
        "record errors fail the run:\n{stdout}\n{stderr}"
    );
    let lines = whole_results_lines(&results);
    let size = std::fs::metadata(&results).unwrap().len();
    assert!(
        size <= LIMIT && lines.len() >= 20,
        "{} lines, {size} bytes",
        lines.len()
    );
    // Every part got its verdict; those not written are counted, in the summary and at exit.
    assert!(stdout.contains("parts      120"), "{stdout}");
    let errors = common::reported(&stdout, "record_errors ") as usize;
    assert_eq!(lines.len() + errors, 120, "written + not written = parts:\n{stdout}");
    assert!(
        stderr.contains(&format!("{errors} results could not be written")),
        "{stderr}"
    );
    // The log says so at once, then throttled (1, 2, 4, ...), not once per line.
    let logged = stderr
        .lines()
        .filter(|l| l.contains("results line not written"))
        .count();
    assert!((1..=8).contains(&logged), "{logged} error lines:\n{stderr}");
    eprintln!(
        "full disk: {} lines written ({size} bytes), {errors} counted as record_errors, {logged} log lines",
        lines.len()
    );

    // The fault output told the PLC while storage refused lines, and ended de-energised.
    let fault = common::edges_of(&fault_log);
    assert!(
        fault.first().is_some_and(|e| e.1) && fault.last().is_some_and(|e| !e.1),
        "fault output raised while lines were refused: {fault:?}"
    );

    // Once there is room again, the next run first writes an `interrupted` line for each
    // part left without one (from the journal), then its own, whole, right after them.
    let out = sim.run(&["--max-parts", "5"]);
    assert!(
        text(&out)
            .0
            .contains(&format!("left {errors} part(s) without a results line")),
        "{}",
        text(&out).0
    );
    let after = whole_results_lines(&results);
    assert_eq!(after.len(), lines.len() + errors + 5);
    let late = &after[lines.len()..lines.len() + errors];
    assert!(late
        .iter()
        .all(|l| l["reason"] == "interrupted" && l["run_id"] == lines[0]["run_id"]));
    let mut ids: Vec<u64> = lines.iter().chain(late).map(|l| l["id"].as_u64().unwrap()).collect();
    ids.sort_unstable();
    assert_eq!(
        ids,
        (0..120).collect::<Vec<u64>>(),
        "every part of the full-disk run has its line now"
    );
    let seqs: Vec<u64> = after.iter().map(|l| l["device_seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "device_seq only grows: {seqs:?}");
}

/// One datagram's KEY=value lines.
fn fields(buf: &[u8]) -> Vec<(String, String)> {
    String::from_utf8_lossy(buf)
        .lines()
        .filter_map(|l| l.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
        .collect()
}

#[test]
fn storage_that_hangs_withholds_the_watchdog_and_sigterm_still_ends_the_run() {
    let sim = SimRun::new(|t| {
        set(t, "camera.parts_per_second", 20.0.into());
        set(t, "record.stall_ms", 500.into());
    });
    // The results "file" is a FIFO that nobody reads: once its buffer is full every write
    // blocks, as on a hung NFS mount. The test holds it open (with the buffer at its
    // smallest, one page), so that linesight fills it within a few parts.
    let fifo = sim.dir.path().join("hung.jsonl");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo and open with a NUL-terminated path; fcntl on the fd we opened.
    let fd = unsafe {
        assert_eq!(libc::mkfifo(c.as_ptr(), 0o600), 0);
        let fd = libc::open(c.as_ptr(), libc::O_RDWR | libc::O_NONBLOCK);
        assert!(fd >= 0);
        assert!(libc::fcntl(fd, libc::F_SETPIPE_SZ, 4096) >= 4096);
        fd
    };
    let sock_path = sim.dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let mut child = sim
        .command(&["--results", fifo.to_str().unwrap()])
        .env("NOTIFY_SOCKET", &sock_path)
        .env("WATCHDOG_USEC", "1000000")
        .env_remove("WATCHDOG_PID")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for what linesight tells systemd: fed while it records, then the stall.
    let (mut pings, mut stalled_at) = (0, None);
    let mut after_stall = Vec::new();
    let mut buf = [0u8; 4096];
    let start = Instant::now();
    while after_stall.len() < 3 {
        assert!(start.elapsed() < common::HUNG, "no stall reported");
        if let Some(status) = child.try_wait().unwrap() {
            panic!("linesight exited ({status}) before the stall was reported");
        }
        let Ok(n) = sock.recv(&mut buf) else { continue };
        let msg = fields(&buf[..n]);
        let status = msg.iter().find(|(k, _)| k == "STATUS").map(|(_, v)| v.clone());
        let ping = msg.iter().any(|(k, v)| k == "WATCHDOG" && v == "1");
        if stalled_at.is_none() {
            pings += ping as usize;
            if status
                .as_deref()
                .is_some_and(|s| s.starts_with("stalled: a results write blocked"))
            {
                stalled_at = Some(Instant::now());
                assert!(!ping, "no ping with the stall: {msg:?}");
            }
        } else {
            after_stall.push((ping, status));
        }
    }
    assert!(pings >= 1, "the watchdog was fed while recording worked");
    assert!(
        after_stall
            .iter()
            .all(|(ping, s)| !ping && s.as_deref().is_some_and(|s| s.starts_with("stalled"))),
        "while the write is blocked, no WATCHDOG=1: {after_stall:?}"
    );
    // SIGTERM: the line drains, the blocked writer is abandoned, the process ends.
    let t0 = Instant::now();
    // SAFETY: kill with the pid of a child that has not been waited for.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    while child.try_wait().unwrap().is_none() {
        if t0.elapsed() > common::HUNG {
            child.kill().unwrap();
            panic!("SIGTERM did not end a run blocked on storage");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let took = t0.elapsed();
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = text(&out);
    assert_eq!(
        out.status.code(),
        Some(1),
        "record errors fail the run:\n{stdout}\n{stderr}"
    );
    assert!(stderr.contains("abandoned"), "{stderr}");
    let errors = common::reported(&stdout, "record_errors ");
    assert!(errors >= 1.0, "{stdout}");
    eprintln!(
        "hung storage: stall reported, SIGTERM to exit {:.2} s, record_errors {errors}",
        took.as_secs_f64()
    );
    // SAFETY: closing the fd opened above.
    unsafe { libc::close(fd) };
}

#[test]
fn every_part_is_numbered_once_on_the_device_across_restarts_and_crashes() {
    let sim = SimRun::new(|t| {
        set(t, "camera.defect_ratio", 0.0.into());
        set(t, "record.save", "all".into());
        set(t, "record.save_dir", "saved".into());
    });
    sim.run(&["--max-parts", "4"]);
    sim.run(&["--max-parts", "4"]);
    // A crash mid-run: SIGKILL once three of its verdicts are in the log.
    let mut child = sim
        .command(&[])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    sim.wait_for_results(&mut child, "3 verdicts of the third run", |r| r.len() >= 11);
    child.kill().unwrap();
    child.wait().unwrap();
    // The seq file lost as well: the numbering continues from the results log.
    sim.run(&["--max-parts", "2"]);
    std::fs::remove_file(sim.dir.path().join("linesight.seq")).unwrap();
    sim.run(&["--max-parts", "2"]);

    let lines = whole_results_lines(&sim.results_path());
    let mut runs: Vec<&str> = Vec::new();
    for l in &lines {
        let run = l["run_id"].as_str().unwrap();
        if runs.last() != Some(&run) {
            runs.push(run);
        }
    }
    assert_eq!(runs.len(), 5, "five runs, each its own run_id: {runs:?}");
    assert_eq!(runs.iter().collect::<HashSet<_>>().len(), 5, "{runs:?}");
    let seqs: Vec<u64> = lines.iter().map(|l| l["device_seq"].as_u64().unwrap()).collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "never repeated, always growing: {seqs:?}"
    );
    assert_eq!(seqs[..8], [0, 1, 2, 3, 4, 5, 6, 7], "a clean stop leaves no gap");
    // Each run's ids start at 0 again; the device sequence does not.
    let first_of_run = |r: &str| lines.iter().find(|l| l["run_id"] == r).unwrap();
    assert!(runs.iter().all(|r| first_of_run(r)["id"] == 0));

    // Every saved image is named by its part's device_seq and run: none overwritten.
    let saved: HashSet<String> = std::fs::read_dir(sim.dir.path().join("saved"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let inspected: Vec<&Value> = lines.iter().filter(|l| l["score"].is_number()).collect();
    // (A part rejected for lack of time on a loaded machine has no image to save.)
    assert!(!inspected.is_empty(), "some parts inspected, so saved");
    for l in inspected {
        let name = format!(
            "{:010}_{}_{:08}_{}.png",
            l["device_seq"].as_u64().unwrap(),
            l["run_id"].as_str().unwrap(),
            l["id"].as_u64().unwrap(),
            l["reason"].as_str().unwrap()
        );
        assert!(saved.contains(&name), "no {name} among {} saved images", saved.len());
    }
}

#[test]
fn after_a_crash_the_next_start_gives_every_part_left_undone_one_interrupted_line() {
    let sim = SimRun::new(|t| {
        set(t, "camera.parts_per_second", 20.0.into());
        set(t, "camera.defect_ratio", 0.5.into());
        // rejects wait 3 s for the ejector: the crash comes before many of their pulses
        set(t, "reject.delay_ms", 3000.into());
        set(t, "decision.deadline_ms", 1000.into());
    });
    let journal = sim.dir.path().join("linesight.journal");
    let mut child = sim
        .command(&[])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    sim.wait_for_results(&mut child, "10 verdicts and a reject", |r| {
        r.len() >= 10 && r.iter().any(|l| l["verdict"] == "reject")
    });
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(journal.is_file(), "the killed run left its journal");
    let killed = whole_results_lines(&sim.results_path());
    let killed_run = killed[0]["run_id"].as_str().unwrap().to_string();

    let out = sim.run(&["--max-parts", "3"]);
    let (stdout, stderr) = text(&out);
    let lines = whole_results_lines(&sim.results_path());
    let interrupted: Vec<&Value> = lines[killed.len()..]
        .iter()
        .take_while(|l| l["reason"] == "interrupted")
        .collect();
    let after = &lines[killed.len() + interrupted.len()..];
    assert!(
        after.len() == 3
            && after
                .iter()
                .all(|l| l["run_id"] != killed_run.as_str() && l["reason"] != "interrupted"),
        "the interrupted lines come first, then the new run's own: {after:?}"
    );
    assert!(interrupted.iter().all(|l| l["run_id"] == killed_run.as_str()
        && l["verdict"] == "reject"
        && l["score"].is_null()
        && l["detail"].as_str().unwrap().contains("take it off the line")));
    let ids = |ls: &[&Value]| ls.iter().map(|l| l["id"].as_u64().unwrap()).collect::<Vec<_>>();
    let recorded: Vec<&Value> = killed.iter().collect();
    let recorded_ids: HashSet<u64> = ids(&recorded).into_iter().collect();
    let (unpulsed, unrecorded): (Vec<&Value>, Vec<&Value>) = interrupted
        .iter()
        .partition(|l| l["detail"].as_str().unwrap().contains("pulse"));
    // a reject recorded without its pulse: its line is there, a reject, and the notice follows
    assert!(
        !unpulsed.is_empty(),
        "rejects 3 s from the ejector at the crash: {interrupted:?}"
    );
    for l in &unpulsed {
        let id = l["id"].as_u64().unwrap();
        let line = killed.iter().find(|k| k["id"] == id).unwrap();
        assert_eq!(line["verdict"], "reject", "{line}");
    }
    // a part with no line gets exactly one, and then every captured part has one
    let mut all: Vec<u64> = recorded_ids.iter().copied().chain(ids(&unrecorded)).collect();
    let n = all.len();
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), n, "a part recorded and reported unrecorded: {unrecorded:?}");
    assert_eq!(all, (0..n as u64).collect::<Vec<_>>(), "a captured part without a line");
    // told at the start and in the summary; a clean end leaves no journal behind
    let notice = format!(
        "last run {killed_run} left {} part(s) without a results line and {} reject(s) without their pulse",
        unrecorded.len(),
        unpulsed.len()
    );
    assert!(
        stderr.contains(&notice) && stdout.contains(&notice),
        "{stdout}\n{stderr}"
    );
    assert!(!journal.exists(), "a clean end removes the journal");
    let again = sim.run(&["--max-parts", "1"]);
    assert!(!text(&again).0.contains("without a results line"));
}

#[test]
fn a_results_path_that_is_not_a_results_log_is_refused_not_cut() {
    let sim = SimRun::new(|_| {});
    let other = sim.dir.path().join("line3.csv");
    let csv = "part,score\nflange-1,0.31\nflange-2,0.";
    std::fs::write(&other, csv).unwrap();
    let out = sim
        .command(&["--max-parts", "2", "--results", other.to_str().unwrap()])
        .output()
        .unwrap();
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(stderr.contains("not a linesight results file"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&other).unwrap(), csv, "left as it was");
}

#[test]
fn check_writes_a_probe_in_every_output_location_and_names_the_unwritable_one() {
    let sim = SimRun::new(|t| set(t, "record.save", "rejects".into()));
    // A folder that cannot be made (its parent is a file), even for root.
    let blocker = sim.dir.path().join("not-a-folder");
    std::fs::write(&blocker, "").unwrap();
    let metrics = sim.dir.path().join("metrics/linesight.prom");
    sim.edit(|t| {
        set(
            t,
            "record.save_dir",
            blocker.join("images").display().to_string().into(),
        );
        set(t, "record.metrics_file", metrics.display().to_string().into());
    });
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_linesight"))
        .args(["check", "--config"])
        .arg(&sim.config)
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(!out.status.success(), "{stdout}\n{stderr}");
    let line = |key: &str| {
        stdout
            .lines()
            .find(|l| l.starts_with(&format!("{key}: ")))
            .unwrap_or_else(|| panic!("no {key} line:\n{stdout}"))
            .to_string()
    };
    assert!(line("record.save_dir").contains("PROBLEM") && line("record.save_dir").contains("not-a-folder"));
    for key in [
        "results",
        "record.metrics_file",
        "record.seq_file",
        "reject.output.edge_log",
    ] {
        assert!(line(key).contains("writable ("), "{}", line(key));
    }
    // The probes are gone; the metrics folder is there for the run.
    assert!(metrics.parent().unwrap().read_dir().unwrap().next().is_none());
    let left: Vec<_> = std::fs::read_dir(sim.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().starts_with(".linesight-check"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn saved_images_beyond_keep_mb_are_removed_oldest_first_and_counted() {
    let sim = SimRun::new(|t| {
        set(t, "record.save", "all".into());
        set(t, "record.save_dir", "saved".into());
        set(t, "record.keep_mb", 2.into());
        // Time enough on a loaded machine for the parts to be inspected, so saved.
        set(t, "reject.delay_ms", 3000.into());
        set(t, "decision.deadline_ms", 2900.into());
    });
    // Images of earlier runs, 1 MiB each, and a file that is not linesight's.
    let saved = sim.dir.path().join("saved");
    std::fs::create_dir_all(&saved).unwrap();
    let old: Vec<String> = (0..4)
        .map(|s| format!("{s:010}_oldrun_{s:08}_below_threshold.png"))
        .collect();
    for name in &old {
        std::fs::write(saved.join(name), vec![0u8; 1 << 20]).unwrap();
    }
    std::fs::write(saved.join("calibration-target.png"), vec![0u8; 3 << 20]).unwrap();
    // The device numbered those: this run continues after them.
    std::fs::write(sim.dir.path().join("linesight.seq"), "100\n").unwrap();
    let out = sim.run(&["--max-parts", "3"]);
    let (stdout, _) = text(&out);
    let left: HashSet<String> = std::fs::read_dir(&saved)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    // The sweep with the first new image: under 2 MiB of saved images, the oldest gone.
    assert!(
        !left.contains(&old[0]) && !left.contains(&old[1]) && !left.contains(&old[2]),
        "{left:?}"
    );
    assert!(left.contains(&old[3]), "the youngest old image fits: {left:?}");
    assert!(
        left.contains("calibration-target.png"),
        "only linesight's images are removed"
    );
    assert_eq!(common::reported(&stdout, "images removed "), 3.0, "{stdout}");
    let new = left
        .iter()
        .filter(|n| !n.contains("oldrun") && n.ends_with(".png") && n.len() > 20)
        .count();
    assert!(new >= 1, "the run's own images are kept: {left:?}");
}

#[test]
fn a_results_log_past_rotate_mb_is_rotated_and_old_logs_leave_within_keep_mb() {
    let sim = SimRun::new(|t| {
        set(t, "record.rotate_mb", 1.into());
        set(t, "record.keep_mb", 3.into());
    });
    // The device numbered parts up to 100 before: rotated logs 1 and 2 are older.
    std::fs::write(sim.dir.path().join("linesight.seq"), "100\n").unwrap();
    // One run's real lines, repeated past 1 MiB: the log a week of parts leaves.
    let first = sim.run(&["--max-parts", "2"]);
    assert!(first.status.success(), "{}", text(&first).1);
    let results = sim.results_path();
    let line = std::fs::read_to_string(&results)
        .unwrap()
        .lines()
        .last()
        .unwrap()
        .to_owned()
        + "\n";
    let live = line.repeat((1 << 20) / line.len() + 1);
    std::fs::write(&results, &live).unwrap();
    // Older rotated logs: 1 MiB each, numbered before this device's parts.
    let dir = results.parent().unwrap();
    let old: Vec<_> = (1..=2).map(|s| dir.join(format!("results.{s:010}.jsonl"))).collect();
    for p in &old {
        std::fs::write(p, vec![b'{'; 1 << 20]).unwrap();
    }
    std::fs::write(dir.join("results.backup.jsonl"), b"not linesight's\n").unwrap();

    let out = sim.run(&["--max-parts", "3"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    // The full log was closed after the first new line, under that line's device_seq.
    let now = whole_results_lines(&results);
    assert_eq!(now.len(), 2, "the two lines after the rotation: {now:?}");
    let rotated_seq = now[0]["device_seq"].as_u64().unwrap() - 1;
    let rotated = dir.join(format!("results.{rotated_seq:010}.jsonl"));
    let closed = whole_results_lines(&rotated);
    assert_eq!(closed.last().unwrap()["device_seq"], rotated_seq);
    assert_eq!(closed.len(), live.lines().count() + 1);
    assert!(stderr.contains("reached record.rotate_mb"), "{stderr}");
    // Within 3 MiB: the oldest rotated log went, the next fits beside the new one.
    assert!(!old[0].exists() && old[1].exists(), "{stderr}");
    assert!(
        dir.join("results.backup.jsonl").exists(),
        "only linesight's names are removed"
    );
    assert_eq!(common::reported(&stdout, "results logs removed "), 1.0, "{stdout}");
}

#[test]
fn sigterm_during_a_long_warm_up_ends_the_start_cleanly_before_any_output() {
    use std::io::{BufRead, BufReader, Read};
    // 1000 warm-up runs of tens of ms each: the warm-up takes far longer than the test.
    let sim = SimRun::new(|t| set(t, "runtime.warmup_runs", 1000.into()));
    let mut child = sim.command(&[]).stderr(Stdio::piped()).spawn().unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    while !seen.contains("warming up the model") {
        assert!(err.read_line(&mut seen).unwrap() > 0, "linesight ended: {seen}");
    }
    // SAFETY: kill with the pid of a child that has not been waited for.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    err.read_to_string(&mut seen).unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}: {seen}");
    let runs: u32 = seen
        .split("warm-up, after ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no stop during warm-up reported: {seen}"));
    assert!(runs < 1000, "the warm-up ran to its end: {seen}");
    // Nothing was inspected or asserted.
    assert!(!sim.results_path().exists() || whole_results_lines(&sim.results_path()).is_empty());
    assert!(!seen.contains("camera "), "the line was opened: {seen}");
}
