//! Commissioning tools on the sim board: `collect` saves what inspection sees,
//! `pulse` fires the reject output at the configured width and spacing, `check`
//! opens the camera and says what it delivers.

mod common;

use common::{monotonic_ns, read_jsonl, SimRun};
use std::process::Command;

const MS: u64 = 1_000_000;

fn linesight(args: &[&str], config: &std::path::Path) -> std::process::Output {
    let out = Command::new(env!("CARGO_BIN_EXE_linesight"))
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "linesight {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn collect_saves_the_frames_inspection_would_get() {
    let sim = SimRun::new(|_| {});
    let dir = sim.dir.path().join("collected");
    let started = monotonic_ns();
    let out = linesight(
        &["collect", "--count", "5", "--out", dir.to_str().unwrap()],
        &sim.config,
    );
    let ended = monotonic_ns();
    assert!(String::from_utf8_lossy(&out.stdout).contains("saved 5 frame(s)"));
    let index = read_jsonl(&dir.join("frames.jsonl"));
    assert_eq!(index.len(), 5);
    // The camera's full 256x256 frame, in the model's grey.
    for f in &index {
        let img = image::open(dir.join(f["file"].as_str().unwrap())).unwrap();
        assert_eq!((img.width(), img.height()), (256, 256));
        assert_eq!(img.color(), image::ColorType::L8, "grey, as the model takes it");
    }
    // The line's parts one after another, with their capture times on CLOCK_MONOTONIC,
    // taken during the command.
    let ids: Vec<u64> = index.iter().map(|f| f["id"].as_u64().unwrap()).collect();
    assert_eq!(ids, [0, 1, 2, 3, 4], "consecutive parts of the line");
    let captures: Vec<u64> = index.iter().map(|f| f["capture_ns"].as_u64().unwrap()).collect();
    assert!(
        captures.windows(2).all(|w| w[0] < w[1]) && captures[0] > started && captures[4] < ended,
        "capture times within the command, in order: {captures:?}"
    );
    // At the line's pace (10 parts/s), never faster. The line keeps a schedule of one part
    // per 100 ms, so a late frame only shortens the gap after it: four gaps span at least
    // three pitches (the first part's own lateness may shift the schedule by up to one).
    // A loaded machine can only make parts later.
    let span = captures[4] - captures[0];
    assert!(span >= 300 * MS, "5 parts in {} ms: faster than the line", span / MS);
    // The same seed gives the same parts: the first saved frame is the line's first part.
    let first = image::open(dir.join("000000.png")).unwrap().to_luma8();
    let part = linesight::source::PartGenerator::new(linesight::source::PartSpec {
        width: 256,
        height: 256,
        defect_ratio: 0.1,
        seed: 7,
        ..Default::default()
    })
    .part(0);
    assert!(
        first == part.image,
        "collected frame 0 is part 0 of the configured line"
    );
}

#[test]
fn pulse_fires_the_reject_output_at_its_width_and_spacing() {
    let sim = SimRun::new(|_| {});
    let out = linesight(&["pulse", "--count", "4", "--interval-ms", "150"], &sim.config);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("4 pulse(s) of 40 ms fired"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // Edges are never early; each may be as late as the command reports.
    let late = common::reported_lateness_ns(&out, 10.0);
    let edges = sim.edges();
    assert_eq!(edges.len(), 8, "four rises and four falls: {edges:?}");
    for (i, p) in edges.chunks(2).enumerate() {
        assert!(p[0].1 && !p[1].1);
        let width = p[1].0 - p[0].0;
        assert!(
            (40 * MS - late..=40 * MS + late).contains(&width),
            "pulse {i} {} µs",
            width / 1000
        );
        if i > 0 {
            let gap = p[0].0 - edges[2 * (i - 1)].0;
            assert!(
                (150 * MS - late..=150 * MS + late).contains(&gap),
                "spacing {} µs",
                gap / 1000
            );
        }
    }
}

#[test]
fn check_opens_the_camera_and_reports_its_first_frame() {
    let sim = SimRun::new(|_| {});
    let out = linesight(&["check"], &sim.config);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("camera: synthetic line 256x256 px") && text.contains("first frame 256x256 Gray8"),
        "{text}"
    );
    assert!(text.contains("trigger: free run"), "{text}");
    assert!(text.contains("all checks passed"), "{text}");
}
