//! `[camera] kind = "gstreamer"` end to end (cargo test --features gstreamer): a live
//! videotestsrc, synthetic part images replayed through multifilesrc, and a network
//! camera (a gst-launch-1.0 MJPEG-over-TCP server) that dies mid-run and comes back.
//! Needs GStreamer with the base and good plugins and gst-launch-1.0 (see .ci/run).
#![cfg(feature = "gstreamer")]

mod common;

use common::{edges_of, monotonic_ns, set, set_camera, SimRun};
use linesight::frame::DefectKind;
use linesight::source::{PartGenerator, PartSpec};
use std::process::{Child, Command, Stdio};

const MS: u64 = 1_000_000;

/// The sim board's config with room for a loaded test machine (deadline 250 ms).
fn roomy_sim() -> SimRun {
    SimRun::new(|t| {
        set(t, "decision.deadline_ms", 250.into());
        set(t, "reject.delay_ms", 400.into());
    })
}

fn camera(pipeline: &str, extra: &str) -> toml::Table {
    toml::from_str(&format!("kind = \"gstreamer\"\npipeline = {pipeline:?}\n{extra}")).unwrap()
}

fn median(mut v: Vec<u64>) -> u64 {
    v.sort_unstable();
    v[v.len() / 2]
}

#[test]
fn a_live_videotestsrc_is_inspected_with_its_buffer_times_as_capture_times() {
    let sim = roomy_sim();
    set_camera(
        &sim,
        camera(
            "videotestsrc is-live=true pattern=ball ! video/x-raw,width=320,height=240,framerate=10/1 ! videoconvert ! appsink",
            "",
        ),
    );
    let started = monotonic_ns();
    let out = sim.run(&["--max-parts", "40"]);
    let results = sim.results();
    assert_eq!(results.len(), 40);
    let captures: Vec<u64> = results.iter().map(|r| r["capture_ns"].as_u64().unwrap()).collect();
    assert!(
        captures[0] > started,
        "capture times are on this machine's CLOCK_MONOTONIC"
    );
    let gaps: Vec<u64> = captures.windows(2).map(|w| w[1] - w[0]).collect();
    // Buffer timestamps of a 10 fps source: 100 ms apart, not the jitter of arrival. These
    // are stream times (frame count over frame rate), which a loaded machine does not
    // stretch: it delays arrival, and at most shifts a frame's time by a preemption between
    // the two clock reads that carry it over, which the median leaves out.
    let m = median(gaps.clone());
    assert!((99 * MS..=101 * MS).contains(&m), "median frame gap {} µs", m / 1000);
    assert!(gaps.iter().all(|g| *g > 80 * MS), "no frame twice: {gaps:?}");
    common::assert_mostly_inspected(results.iter());
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(
        summary.contains("camera     40 frames; capture to linesight p50"),
        "{summary}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("format=(string)GRAY8, width=(int)320"),
        "negotiated grey for a grey model: {stderr}"
    );
}

/// Synthetic parts as numbered PNG files; returns the truth of each (true = defect).
fn write_parts(dir: &std::path::Path, n: u64) -> Vec<bool> {
    std::fs::create_dir_all(dir).unwrap();
    let parts = PartGenerator::new(PartSpec {
        width: 256,
        height: 256,
        defect_ratio: 0.5,
        // Kinds the shipped model never misses, so that verdicts are a fair check.
        defect_kinds: [DefectKind::Crack, DefectKind::Chip, DefectKind::MissingHole]
            .map(|k| k.as_str().to_string())
            .to_vec(),
        seed: 21,
        ..PartSpec::default()
    });
    (0..n)
        .map(|i| {
            let p = parts.part(i);
            p.image.save(dir.join(format!("{i:05}.png"))).unwrap();
            p.defect.is_some()
        })
        .collect()
}

#[test]
fn synthetic_parts_through_multifilesrc_get_the_verdicts_and_scores_of_the_files() {
    let sim = roomy_sim();
    let dir = sim.dir.path().join("parts");
    let truth = write_parts(&dir, 16);
    assert!(truth.iter().filter(|d| **d).count() >= 4, "the set needs defects");
    let pipeline = format!(
        "multifilesrc location={}/%05d.png stop-index=15 caps=image/png,framerate=10/1 ! pngdec ! videoconvert ! appsink",
        dir.display()
    );
    // Files: paced at their timestamps, no frame dropped, the end of the files ends the run.
    set_camera(
        &sim,
        camera(&pipeline, "sync = true\ndrop = false\nend_of_stream = \"stop\""),
    );
    let out = sim.run(&[]);
    let gst = sim.results();
    assert_eq!(gst.len(), 16, "one part per file, then the run ends");
    let gaps: Vec<u64> = gst
        .windows(2)
        .map(|w| w[1]["capture_ns"].as_u64().unwrap() - w[0]["capture_ns"].as_u64().unwrap())
        .collect();
    assert!((95 * MS..=105 * MS).contains(&median(gaps)), "replayed at 10 frames/s");
    common::assert_mostly_inspected(gst.iter());
    let mut false_rejects = 0;
    for (r, defect) in gst.iter().zip(&truth) {
        if *defect {
            assert_eq!(r["verdict"], "reject", "defective part rejected: {r}");
            assert!(r["score"].is_null() || r["reason"] == "above_threshold", "{r}");
        } else if r["reason"] == "above_threshold" {
            false_rejects += 1;
        }
    }
    assert!(false_rejects <= 1, "{false_rejects} good parts rejected on their score");

    // The same files through the folder source: GStreamer's decode and conversion give
    // the model the same pixels, so the scores agree.
    let folder = roomy_sim();
    set_camera(
        &folder,
        toml::from_str(&format!(
            "kind = \"folder\"\npath = {:?}\nparts_per_second = 20.0",
            dir.display().to_string()
        ))
        .unwrap(),
    );
    folder.run(&[]);
    let mut compared = 0;
    for (g, f) in gst.iter().zip(folder.results()) {
        if let (Some(a), Some(b)) = (g["score"].as_f64(), f["score"].as_f64()) {
            assert!((a - b).abs() < 1e-4, "part {}: GStreamer {a}, file {b}", g["id"]);
            compared += 1;
        }
    }
    assert!(compared >= 12, "only {compared} parts scored in both runs");
    assert!(String::from_utf8_lossy(&out.stdout).contains("parts      16"));
}

/// An MJPEG-over-TCP camera: what an IP camera looks like to GStreamer.
fn camera_server(port: u16) -> Child {
    Command::new("gst-launch-1.0")
        .args(["-q", "videotestsrc", "is-live=true", "pattern=smpte", "!"])
        .args(["video/x-raw,width=256,height=256,framerate=10/1", "!", "jpegenc", "!"])
        .args(["multipartmux", "!", "tcpserversink", "host=127.0.0.1"])
        .arg(format!("port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("gst-launch-1.0 (gstreamer1.0-tools) is needed for this test")
}

fn wait_for_port(port: u16) {
    common::wait_until(&format!("the camera server to listen on port {port}"), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
}

#[test]
fn a_network_camera_that_dies_is_fail_safe_and_reconnects_without_a_restart() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = camera_server(port);
    wait_for_port(port);
    let sim = SimRun::new(|t| {
        set(t, "decision.deadline_ms", 250.into());
        set(t, "reject.delay_ms", 400.into());
        set(t, "status.camera_stall_ms", 1000.into());
        set(t, "status.camera_retry_ms", 100.into());
        set(t, "status.camera_retry_max_ms", 400.into());
        set(t, "status.fault_line.kind", "simulated".into());
    });
    let fault_log = sim.dir.path().join("fault.jsonl");
    sim.edit(|t| {
        set(t, "status.fault_line.edge_log", fault_log.display().to_string().into());
        set(
            t,
            "camera",
            toml::Value::Table(camera(
                &format!("tcpclientsrc host=127.0.0.1 port={port} ! multipartdemux ! jpegdec ! videoconvert ! appsink"),
                "",
            )),
        );
    });

    let mut child = sim
        .command(&[])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    sim.wait_for_results(&mut child, "20 parts", |r| r.len() >= 20);
    // The camera dies: its process is killed, the connection drops. It stays dead until
    // linesight has been without it for a second (the fault output up, camera_lost parts
    // a second past that): long enough for reopen tries (after 100, 300, 700 ms) to fail.
    server.kill().unwrap();
    let killed = monotonic_ns();
    server.wait().unwrap();
    let mut fault_up = None;
    common::wait_while_running(&mut child, "the fault output to rise", || {
        fault_up = common::complete_lines(&fault_log)
            .first()
            .map(|e| e["t_ns"].as_u64().unwrap());
        fault_up.is_some()
    });
    let a_second_on = fault_up.unwrap() + 1000 * MS;
    sim.wait_for_results(&mut child, "a second of camera_lost parts", |r| {
        r.iter()
            .any(|r| r["reason"] == "camera_lost" && r["capture_ns"].as_u64().unwrap() >= a_second_on)
    });
    let mut server = camera_server(port);
    let restarted = monotonic_ns();
    wait_for_port(port);
    // Back: inspection goes on without a restart.
    sim.wait_for_results(&mut child, "10 parts inspected after the outage", |r| {
        common::inspected_after_outage(r) >= 10
    });
    let out = common::terminate(child);
    server.kill().unwrap();
    let _ = server.wait();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);

    let edges = edges_of(&fault_log);
    assert_eq!(
        edges.iter().map(|e| e.1).collect::<Vec<_>>(),
        [true, false],
        "{edges:?}"
    );
    let (rise, fall) = (edges[0].0, edges[1].0);
    let results = sim.results();
    let lost = common::assert_stand_ins_fill_the_outage(&results, fall, &out);
    for r in &lost {
        assert_eq!(r["verdict"], "reject");
        assert!(r["score"].is_null());
    }
    common::assert_mostly_inspected(results.iter().filter(|r| r["reason"] != "camera_lost"));
    let last = lost.last().unwrap()["id"].as_u64().unwrap();
    let after = results.iter().filter(|r| r["id"].as_u64().unwrap() > last).count();
    assert!(
        after >= 10,
        "inspection went on after the camera came back ({after} parts)"
    );

    // Raised once the camera died: at once if GStreamer reports the closed connection,
    // else when no frame came for camera_stall_ms (1 s) after the last one, give or take
    // the camera thread's lateness that linesight reports.
    let last_frame = results[lost[0]["id"].as_u64().unwrap() as usize - 1]["capture_ns"]
        .as_u64()
        .unwrap();
    let stall_by = last_frame + 1000 * MS + 2 * common::reported_delivery_max_ns(&out);
    assert!(
        rise >= killed && rise <= stall_by,
        "fault raised {} ms after the kill",
        (rise - killed) / MS
    );
    // Dropped only once the camera is back, with its first frame.
    assert!(fall > restarted, "fault dropped only once the camera is back");
    common::assert_outage_reported(&out, rise, fall);
    let recovery_ms = (fall - restarted) / MS;
    eprintln!(
        "camera loss: fault raised {} ms after the kill; recovered {} ms after the restart; {} parts camera_lost",
        (rise - killed) / MS,
        recovery_ms,
        lost.len()
    );
    assert!(stdout.contains("camera lost 1 time(s), recovered 1;"), "{stdout}");
    assert!(
        stderr.contains("camera lost:") && stderr.contains("camera recovered after"),
        "{stderr}"
    );
}
