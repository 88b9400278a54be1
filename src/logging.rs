//! Log lines with levels, through the `log` crate's macros (`log::warn!`, …).
//!
//! On a terminal or in a file a line reads as it always has: `linesight: WARN …`,
//! `linesight: ERROR …`, `linesight: …` for information. Under systemd, when stderr is
//! the journal (`$JOURNAL_STREAM` names it), each line also starts with its sd-daemon(3)
//! priority prefix (`<4>` for a warning), which journald stores as the entry's
//! PRIORITY: `journalctl -p warning -u linesight` then shows the warnings and errors.
//! Set `LINESIGHT_LOG` to `error`, `warn`, `info` (default) or `debug`.

use log::{Level, LevelFilter, Log, Metadata, Record};
use std::io::Write;

struct StderrLog {
    journal: bool,
}

/// sd-daemon(3) priorities: SD_ERR, SD_WARNING, SD_INFO, SD_DEBUG.
fn priority(level: Level) -> u8 {
    match level {
        Level::Error => 3,
        Level::Warn => 4,
        Level::Info => 6,
        Level::Debug | Level::Trace => 7,
    }
}

/// The line as an operator reads it (and as the tests read it).
fn line(level: Level, message: &std::fmt::Arguments) -> String {
    match level {
        Level::Error => format!("linesight: ERROR {message}"),
        Level::Warn => format!("linesight: WARN {message}"),
        Level::Info => format!("linesight: {message}"),
        Level::Debug | Level::Trace => format!("linesight: debug: {message}"),
    }
}

impl Log for StderrLog {
    fn enabled(&self, metadata: &Metadata) -> bool {
        // The libraries' own information lines (OPC UA's sessions, ...) are noise to an
        // operator: only their warnings and errors are shown, unless LINESIGHT_LOG=debug.
        let most = if is_ours(metadata.target()) || log::max_level() >= LevelFilter::Debug {
            log::max_level()
        } else {
            LevelFilter::Warn
        };
        metadata.level() <= most
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let text = if is_ours(record.target()) {
            line(record.level(), record.args())
        } else {
            // A library's line says whose it is.
            line(record.level(), &format_args!("{}: {}", record.target(), record.args()))
        };
        let prefix = if self.journal {
            format!("<{}>", priority(record.level()))
        } else {
            String::new()
        };
        // One write per line, so that lines from several threads never interleave.
        let _ = std::io::stderr().write_all(format!("{prefix}{text}\n").as_bytes());
    }

    fn flush(&self) {}
}

/// A line from linesight's own code (its target is its module path).
fn is_ours(target: &str) -> bool {
    target == "linesight" || target.starts_with("linesight::")
}

/// True when stderr is the journal's stream: `$JOURNAL_STREAM` is `<device>:<inode>` of
/// the socket systemd connected it to (systemd.exec(5)).
pub fn stderr_is_journal() -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(want) = std::env::var("JOURNAL_STREAM") else {
        return false;
    };
    let Ok(meta) = std::fs::File::open("/proc/self/fd/2").and_then(|f| f.metadata()) else {
        return false;
    };
    want == format!("{}:{}", meta.dev(), meta.ino())
}

/// The sd-daemon prefix for a line written to stderr by hand (the fatal error in main).
pub fn prefix(level: Level) -> String {
    if stderr_is_journal() {
        format!("<{}>", priority(level))
    } else {
        String::new()
    }
}

/// Installs the logger; call once, first thing in main.
pub fn init() {
    let level = match std::env::var("LINESIGHT_LOG").as_deref() {
        Ok("error") => LevelFilter::Error,
        Ok("warn") => LevelFilter::Warn,
        Ok("debug") => LevelFilter::Debug,
        _ => LevelFilter::Info,
    };
    let logger = StderrLog {
        journal: stderr_is_journal(),
    };
    if log::set_boxed_logger(Box::new(logger)).is_ok() {
        log::set_max_level(level);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_keep_their_text_and_carry_journal_priorities() {
        assert_eq!(
            line(Level::Warn, &format_args!("camera: x")),
            "linesight: WARN camera: x"
        );
        assert_eq!(line(Level::Error, &format_args!("y")), "linesight: ERROR y");
        assert_eq!(line(Level::Info, &format_args!("ready")), "linesight: ready");
        assert_eq!(
            [Level::Error, Level::Warn, Level::Info, Level::Debug].map(priority),
            [3, 4, 6, 7]
        );
    }

    #[test]
    fn only_linesight_targets_are_its_own() {
        assert!(is_ours("linesight") && is_ours("linesight::sinks::opcua"));
        assert!(!is_ours("opcua_server::session") && !is_ours("linesightx"));
    }
}
