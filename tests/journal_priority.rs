//! Log lines carry their level to journald: under systemd (stderr is the journal's stream,
//! named by $JOURNAL_STREAM) each line starts with its sd-daemon priority, `<4>` for a
//! WARN, which journald stores as PRIORITY (`journalctl -p warning` finds it). Elsewhere
//! the lines read as they always have.

mod common;

use common::SimRun;
use std::os::unix::fs::MetadataExt;
use std::process::{Command, Stdio};

/// `linesight collect` on a folder with one undecodable image: one WARN line ("has no
/// image"), then the collected frame. `journal` sets $JOURNAL_STREAM to stderr's file.
fn collect_with_a_broken_image(journal: bool) -> String {
    let sim = SimRun::new(|_| {});
    let images = sim.dir.path().join("images");
    std::fs::create_dir(&images).unwrap();
    std::fs::write(images.join("a_broken.png"), b"not a png").unwrap();
    image::GrayImage::new(32, 32).save(images.join("b_good.png")).unwrap();
    sim.edit(|t| {
        let camera: toml::Table = toml::from_str(&format!(
            "kind = \"folder\"\npath = \"{}\"\nparts_per_second = 100.0",
            images.display()
        ))
        .unwrap();
        t.insert("camera".into(), camera.into());
    });
    let stderr_path = sim.dir.path().join("stderr.txt");
    let stderr = std::fs::File::create(&stderr_path).unwrap();
    let meta = stderr.metadata().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_linesight"));
    cmd.args(["collect", "--count", "1", "--out"])
        .arg(sim.dir.path().join("out"))
        .arg("--config")
        .arg(&sim.config)
        .stdout(Stdio::null())
        .stderr(stderr)
        .env_remove("JOURNAL_STREAM");
    if journal {
        cmd.env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()));
    }
    let status = cmd.status().unwrap();
    let text = std::fs::read_to_string(&stderr_path).unwrap();
    assert!(status.success(), "collect failed:\n{text}");
    text
}

#[test]
fn a_warning_reaches_the_journal_with_warning_priority() {
    let text = collect_with_a_broken_image(true);
    let warn = text
        .lines()
        .find(|l| l.contains("has no image"))
        .unwrap_or_else(|| panic!("no WARN line:\n{text}"));
    assert!(warn.starts_with("<4>linesight: WARN part 0 has no image"), "{warn}");
    assert!(
        text.lines().any(|l| l.starts_with("<6>linesight: collecting 1 frames")),
        "information is priority 6:\n{text}"
    );
}

#[test]
fn a_terminal_or_file_sees_no_priority_prefix() {
    let text = collect_with_a_broken_image(false);
    assert!(
        text.lines()
            .any(|l| l.starts_with("linesight: WARN part 0 has no image")),
        "{text}"
    );
    assert!(!text.contains("<4>") && !text.contains("<6>"), "{text}");
}
