//! Every config fixture under tests/config: good ones load, bad ones make
//! `linesight check` fail with the message each fixture expects (its `# expect:` lines).

use std::path::{Path, PathBuf};
use std::process::Command;

fn fixtures(kind: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/config").join(kind);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    files
}

#[test]
fn good_configs_load() {
    let files = fixtures("good");
    assert!(files.len() >= 2);
    for f in files {
        if let Err(e) = linesight::config::Config::load(&f) {
            panic!("{} should load: {e}", f.display());
        }
    }
}

#[test]
fn bad_configs_fail_check_with_their_message() {
    let files = fixtures("bad");
    assert!(files.len() >= 15, "at least 15 bad fixtures, found {}", files.len());
    let mut failures = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        let expects: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("# expect: ")).collect();
        assert!(!expects.is_empty(), "{} has no `# expect:` line", f.display());
        let out = Command::new(env!("CARGO_BIN_EXE_linesight"))
            .args(["check", "--config"])
            .arg(f)
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
        if out.status.success() {
            failures.push(format!("{}: check passed, expected a failure\n{said}", f.display()));
        }
        for e in expects {
            if !said.contains(e) {
                failures.push(format!("{}: message lacks {e:?}; it said:\n{said}", f.display()));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
