//! Model manifests (`model.toml`): a manifest or an error, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fuzz_target!(|data: &[u8]| {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    let dir = DIR.get_or_init(|| tempfile::tempdir().unwrap());
    std::fs::write(dir.path().join("model.toml"), data).unwrap();
    if let Ok(m) = linesight::model::Manifest::load(dir.path()) {
        let _ = m.input.frames(4);
        let _ = m.threshold_warning(m.calibration.threshold, "calibration.threshold");
    }
});
