//! The status page in a real browser: headless Chromium (Debian's `chromium`) loads it
//! from a running sim line twice, the counters have moved between the loads, a reject's
//! overlay has loaded in the gallery, and a screenshot is saved under target/
//! (`target/tmp/web-page/status-page.png`, which CI keeps).
//!
//! Chromium is driven with its own flags (`--dump-dom`, `--screenshot`,
//! `--virtual-time-budget`): no driver to install. It runs at nice 19, so that the
//! browser, which shares this machine's cores with the line here, takes what the line
//! leaves.

mod common;
mod http_common;

use common::set;
use http_common::{sim_with_page, wait_for, WebLine, PATIENCE};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Instant;

/// Debian's `chromium`, or another name it goes by.
fn find_chromium() -> Option<PathBuf> {
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        if let Some(p) = std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join(name))
                .find(|p| p.is_file())
        }) {
            return Some(p);
        }
    }
    http_common::tool("chromium", "chromium chromium-driver")
}

/// Runs headless Chromium on `url` with `extra` flags (the ones that work as root on a
/// machine without a network, DESIGN.md), killed if it takes longer than [`PATIENCE`].
fn chromium(browser: &Path, profile: &Path, url: &str, extra: &[&str]) -> Output {
    let mut child = Command::new("nice")
        .args(["-n", "19"])
        .arg(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(url)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot start chromium");
    let end = Instant::now() + PATIENCE;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > end {
            let _ = child.kill();
            panic!("chromium did not finish within {PATIENCE:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The `data-value` of the element with `id` in a dumped DOM.
fn data_value<'a>(dom: &'a str, id: &str) -> Option<&'a str> {
    let at = dom.find(&format!("id=\"{id}\""))?;
    let tag_start = dom[..at].rfind('<')?;
    let tag = &dom[tag_start..tag_start + dom[tag_start..].find('>')?];
    tag.split("data-value=\"").nth(1)?.split('"').next()
}

/// Parts counted since the start on the page as Chromium shows it.
fn parts_shown(dom: &str) -> u64 {
    data_value(dom, "c-start-parts")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no parts counter in the page:\n{dom}"))
}

#[test]
fn chromium_shows_the_counters_moving_and_a_reject_overlay() {
    let Some(browser) = find_chromium() else {
        return;
    };
    let sim = sim_with_page(|t| {
        set(t, "camera.defect_ratio", 0.2.into());
        set(t, "http.title", "Line 3 · flange cell".into());
    });
    // writes on, so that the page shows its commissioning controls
    let token = sim.dir.path().join("token");
    std::fs::write(&token, "0123456789abcdef0123456789abcdef\n").unwrap();
    sim.edit(|t| set(t, "http.token_file", token.display().to_string().into()));
    let mut line = WebLine::start(sim, &["--max-parts", "100000"], &[]);
    line.wait_running();
    line.wait_parts(20);
    let url = format!("http://{}/", line.addr);
    let profile = tempfile::tempdir().unwrap();
    // Virtual time: the page's timers run through the budget, waiting for its fetches.
    let budget = "--virtual-time-budget=3000";

    let first = String::from_utf8(chromium(&browser, profile.path(), &url, &[budget, "--dump-dom"]).stdout).unwrap();
    let before = parts_shown(&first);
    assert!(before >= 20, "{before} parts shown");
    assert_eq!(data_value(&first, "phase"), Some("running"), "the run's state is shown");

    line.wait_parts(before + 15);
    let second = String::from_utf8(chromium(&browser, profile.path(), &url, &[budget, "--dump-dom"]).stdout).unwrap();
    let after = parts_shown(&second);
    assert!(after >= before + 15, "the counters moved: {before} then {after}");

    // a reject's overlay, loaded from linesight, in the gallery
    let gallery = &second[second.find("id=\"gallery\"").expect("a gallery")..];
    let overlay = gallery
        .split("<img ")
        .skip(1)
        .find(|img| img.contains("src=\"/images/") && img.contains("class=\"loaded\""));
    assert!(overlay.is_some(), "no loaded reject overlay in the gallery:\n{gallery}");
    let last_frame = data_value(&second, "verdict");
    assert!(matches!(last_frame, Some("pass" | "reject")), "{last_frame:?}");

    // A screenshot for people (CI keeps target/tmp/web-page/), once the trend has some length.
    line.wait_parts(after + 100);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("web-page");
    std::fs::create_dir_all(&dir).unwrap();
    let shot = dir.join("status-page.png");
    let _ = std::fs::remove_file(&shot);
    chromium(
        &browser,
        profile.path(),
        &url,
        &[
            "--virtual-time-budget=4000",
            "--window-size=1440,1960",
            &format!("--screenshot={}", shot.display()),
        ],
    );
    let png = wait_for("the screenshot", || std::fs::read(&shot).ok());
    assert!(png.starts_with(b"\x89PNG") && png.len() > 50_000, "{} bytes", png.len());
    eprintln!("screenshot: {}", shot.display());
    let log = line.stop();
    assert!(!log.contains("ERROR"), "{log}");
}
