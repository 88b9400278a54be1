//! Config text: a config or an error, never a panic or a hang.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::path::{Path, PathBuf};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(c) = linesight::config::Config::parse(&text, Path::new("fuzz.toml"), PathBuf::new()) {
        let _ = c.problems();
    }
});
