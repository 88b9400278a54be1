//! Camera loss and recovery on the sim line, through the commissioning drill
//! `[faults] camera_loss_at_part`: the camera errors after N frames and cannot be
//! reopened for a while. (tests/gstreamer.rs loses a real GStreamer network camera.)
//! The parts of the outage are fail-safe rejects, the fault output is high exactly
//! while the camera is down, and the line recovers without a restart.

mod common;

use common::{edges_of, set, SimRun};
use std::process::Stdio;

const MS: u64 = 1_000_000;

#[test]
fn a_lost_camera_rejects_its_parts_raises_the_fault_output_and_recovers() {
    let sim = SimRun::new(|t| {
        set(t, "camera.parts_per_second", 10.0.into());
        // Room for a loaded test machine: the deadline is not what this test is about.
        set(t, "decision.deadline_ms", 250.into());
        set(t, "reject.delay_ms", 400.into());
        set(t, "camera.defect_ratio", 0.0.into());
        set(t, "faults.camera_loss_at_part", 15.into());
        set(t, "faults.camera_loss_ms", 1000.into());
        set(t, "status.camera_retry_ms", 50.into());
        set(t, "status.camera_retry_max_ms", 200.into());
        set(t, "status.fault_line.kind", "simulated".into());
    });
    let fault_log = sim.dir.path().join("fault.jsonl");
    sim.edit(|t| set(t, "status.fault_line.edge_log", fault_log.display().to_string().into()));

    // Run until the line is well back, however long the outage took, then stop it.
    let mut child = sim
        .command(&[])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    sim.wait_for_results(&mut child, "10 parts inspected after the outage", |r| {
        common::inspected_after_outage(r) >= 10
    });
    let out = common::terminate(child);
    let results = sim.results();
    let ids: Vec<u64> = results.iter().map(|r| r["id"].as_u64().unwrap()).collect();
    assert_eq!(
        ids,
        (0..ids.len() as u64).collect::<Vec<_>>(),
        "every part once, in order"
    );

    // The fault output: high once, from the loss to the first frame after it.
    let edges = edges_of(&fault_log);
    assert_eq!(
        edges.iter().map(|e| e.1).collect::<Vec<_>>(),
        [true, false],
        "{edges:?}"
    );
    let (rise, fall) = (edges[0].0, edges[1].0);

    let lost = common::assert_stand_ins_fill_the_outage(&results, fall, &out);
    let first_lost = lost[0]["id"].as_u64().unwrap();
    let last_lost = lost.last().unwrap()["id"].as_u64().unwrap();
    assert_eq!(first_lost, 15, "the camera is lost after 15 frames");
    for r in &lost {
        assert_eq!(r["verdict"], "reject");
        assert!(r["score"].is_null());
        assert!(r["detail"].as_str().unwrap().contains("unplugged"), "{r}");
    }
    // Before and after the outage, parts are inspected (a loaded machine may miss a deadline).
    common::assert_mostly_inspected(results.iter().filter(|r| r["reason"] != "camera_lost"));

    // Raised at the loss: the drill unplugs the camera right after frame 14, so before the
    // next frame was due, give or take the camera thread's reported lateness.
    let capture = |id: u64| results[id as usize]["capture_ns"].as_u64().unwrap();
    let late_camera = common::reported_delivery_max_ns(&out);
    let pitch = capture(15) - capture(14);
    assert!(
        rise > capture(14) && rise <= capture(14) + pitch + late_camera,
        "fault raised {} ms after the last frame",
        (rise - capture(14)) / MS
    );
    // Dropped with the first frame back, as soon as linesight took it in.
    let back = capture(last_lost + 1);
    assert!(
        fall >= back && fall <= back + late_camera,
        "fault dropped with the first frame back ({} ms after it)",
        (fall as i64 - back as i64) / MS as i64
    );
    // The drill keeps the camera unplugged for camera_loss_ms: it cannot be back sooner.
    assert!(
        back - capture(14) >= 1000 * MS,
        "the camera was back {} ms after the loss",
        (back - capture(14)) / MS
    );
    common::assert_outage_reported(&out, rise, fall);

    // Every camera_lost part got its reject pulse (its edges as late as the run reports, at most).
    let late = common::reported_lateness_ns(&out, 10.0);
    let reject_edges = sim.edges();
    for r in &lost {
        let start = r["eject_ns"][0].as_u64().unwrap();
        let high = reject_edges
            .chunks(2)
            .any(|p| p[0].1 && p[0].0 <= start + late && p[1].0 >= start + 40 * MS);
        let nearest = reject_edges.chunks(2).min_by_key(|p| p[0].0.abs_diff(start)).map(|p| {
            format!(
                "{:.3}..{:.3} ms",
                (p[0].0 as f64 - start as f64) / 1e6,
                (p[1].0 as f64 - start as f64) / 1e6
            )
        });
        assert!(
            high,
            "part {} has its pulse; nearest pulse relative to its window start: {nearest:?}",
            r["id"]
        );
    }
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(summary.contains("camera lost 1 time(s), recovered 1;"), "{summary}");
    assert!(
        summary.contains(&format!("{} part(s) rejected as camera_lost", lost.len())),
        "{summary}"
    );
    assert!(summary.contains("camera_lost"), "{summary}");
}
