//! The audit log: one JSON line for every write to the API, accepted or refused, with or
//! without a token. Appended with one write per line and flushed to disk, so that a line
//! once answered is on record.

use anyhow::Context;
use serde::Serialize;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// One write, as the audit log records it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Entry {
    /// UTC, RFC 3339 with milliseconds.
    pub time: String,
    pub unix_ms: u64,
    /// Who asked: the TCP peer's address and port.
    pub peer: String,
    /// What was asked: `threshold`, `reset_counters`.
    pub what: &'static str,
    /// The value before, and the value asked for (`null` where there is none).
    pub old: serde_json::Value,
    pub new: serde_json::Value,
    /// `ok`, or `refused: <why>`.
    pub result: String,
}

impl Entry {
    pub fn new(unix_ms: u64, peer: SocketAddr, what: &'static str) -> Entry {
        Entry {
            time: rfc3339_utc(unix_ms),
            unix_ms,
            peer: peer.to_string(),
            what,
            old: serde_json::Value::Null,
            new: serde_json::Value::Null,
            result: String::new(),
        }
    }
}

pub struct AuditLog {
    path: PathBuf,
    file: Mutex<File>,
}

impl AuditLog {
    /// Opens for appending, creating the file and its folder.
    pub fn open(path: &Path) -> anyhow::Result<AuditLog> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("http.audit_log: cannot create folder {}", dir.display()))?;
        }
        let file = OpenOptions::new()
            .append(true)
            .create(true)
            .open(path)
            .with_context(|| format!("http.audit_log: cannot open {} for appending", path.display()))?;
        Ok(AuditLog {
            path: path.to_path_buf(),
            file: Mutex::new(file),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends the entry and flushes it to disk. A write that cannot be recorded must not
    /// take effect: the caller refuses it on an error.
    pub fn record(&self, entry: &Entry) -> anyhow::Result<()> {
        let mut line = serde_json::to_vec(entry)?;
        line.push(b'\n');
        let mut f = self.file.lock().unwrap_or_else(|e| e.into_inner());
        f.write_all(&line)
            .and_then(|()| f.sync_data())
            .with_context(|| format!("http.audit_log: cannot append to {}", self.path.display()))
    }
}

/// `2026-11-03T14:05:09.123Z` for a Unix time in ms (the proleptic Gregorian calendar,
/// as `date -u` gives it).
pub fn rfc3339_utc(unix_ms: u64) -> String {
    let secs = unix_ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        unix_ms % 1000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_times_read_as_date_says() {
        assert_eq!(rfc3339_utc(0), "1970-01-01T00:00:00.000Z");
        // date -u -d @951782400 → Tue Feb 29 00:00:00 UTC 2000
        assert_eq!(rfc3339_utc(951_782_400_000), "2000-02-29T00:00:00.000Z");
        // date -u -d @1700000000 → Tue Nov 14 22:13:20 UTC 2023
        assert_eq!(rfc3339_utc(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(rfc3339_utc(4_102_444_799_999), "2099-12-31T23:59:59.999Z");
    }

    #[test]
    fn every_entry_is_one_json_line() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::open(&dir.path().join("sub/audit.jsonl")).unwrap();
        let peer: SocketAddr = "127.0.0.1:5555".parse().unwrap();
        let mut e = Entry::new(1_700_000_000_000, peer, "threshold");
        e.old = 6.75.into();
        e.new = 7.0.into();
        e.result = "ok".into();
        log.record(&e).unwrap();
        e.result = "refused: no bearer token".into();
        log.record(&e).unwrap();
        let text = std::fs::read_to_string(log.path()).unwrap();
        let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["peer"], "127.0.0.1:5555");
        assert_eq!(lines[0]["time"], "2023-11-14T22:13:20.000Z");
        assert_eq!(
            (lines[0]["old"].as_f64(), lines[0]["new"].as_f64()),
            (Some(6.75), Some(7.0))
        );
        assert_eq!(lines[1]["result"], "refused: no bearer token");
    }
}
