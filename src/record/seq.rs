//! The device's part sequence (`device_seq`): one more for every part, never repeated
//! across restarts. Numbers are reserved ahead in blocks: `record.seq_file` holds the
//! first number not yet reserved, written (and synced) before any number below it is
//! used. A restart starts at that number, or after the results log's last line if that
//! is further on, so a crash or a power cut leaves a gap, never a repeat.

use anyhow::Context;
use std::io::Write;
use std::path::{Path, PathBuf};

/// How many numbers one reservation covers; the next is written once half are used.
pub const BLOCK: u64 = 10_000;

/// The numbering, pure: what to hand out and when to reserve more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeqBlock {
    next: u64,
    /// Numbers below this are reserved (written to the seq file, or about to be).
    reserved_to: u64,
    block: u64,
}

impl SeqBlock {
    /// Starts after `stored` (the seq file's number) and `last_logged` (the results log's
    /// last `device_seq`); returns the numbering and the first reservation to write.
    pub fn start(stored: Option<u64>, last_logged: Option<u64>, block: u64) -> (SeqBlock, u64) {
        let next = stored.unwrap_or(0).max(last_logged.map_or(0, |s| s + 1));
        let block = block.max(2);
        let s = SeqBlock {
            next,
            reserved_to: next + block,
            block,
        };
        (s, s.reserved_to)
    }

    /// The number the next part gets: at a clean end, the reservation to leave behind, so
    /// that the next run continues without a gap.
    pub fn next(&self) -> u64 {
        self.next
    }

    /// The next number, and a new reservation to write when half the current one is used.
    pub fn take(&mut self) -> (u64, Option<u64>) {
        let n = self.next;
        self.next += 1;
        let more = (self.reserved_to - self.next <= self.block / 2).then(|| {
            self.reserved_to += self.block;
            self.reserved_to
        });
        (n, more)
    }
}

/// `record.seq_file`: one decimal number and a newline.
pub struct SeqFile {
    path: PathBuf,
}

impl SeqFile {
    pub fn new(path: PathBuf) -> SeqFile {
        SeqFile { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The stored number; `None` if there is no file yet.
    pub fn read(&self) -> anyhow::Result<Option<u64>> {
        match std::fs::read_to_string(&self.path) {
            Ok(text) => text.trim().parse().map(Some).with_context(|| {
                format!(
                    "record.seq_file {}: expected a number, found {:?}",
                    self.path.display(),
                    text.trim()
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("record.seq_file {}: cannot read", self.path.display())),
        }
    }

    /// Writes `next` durably: a temporary file, synced, renamed over the old one, and the
    /// folder synced, so that a power cut leaves the old number or the new one.
    pub fn write(&self, next: u64) -> std::io::Result<()> {
        let dir = self
            .path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)?;
        let tmp = self.path.with_extension("tmp");
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(format!("{next}\n").as_bytes())?;
        f.sync_data()?;
        std::fs::rename(&tmp, &self.path)?;
        std::fs::File::open(dir)?.sync_all()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_continue_after_the_reservation_or_the_log_whichever_is_further() {
        assert_eq!(SeqBlock::start(None, None, 10).0.next, 0);
        assert_eq!(SeqBlock::start(Some(40), Some(12), 10).0.next, 40, "a crash left a gap");
        assert_eq!(
            SeqBlock::start(Some(5), Some(12), 10).0.next,
            13,
            "the seq file was lost"
        );
        assert_eq!(
            SeqBlock::start(None, Some(12), 10),
            (SeqBlock::start(Some(13), None, 10).0, 23)
        );
    }

    #[test]
    fn more_is_reserved_when_half_the_block_is_used_and_before_it_runs_out() {
        let (mut s, first) = SeqBlock::start(Some(100), None, 10);
        assert_eq!(first, 110);
        let taken: Vec<(u64, Option<u64>)> = (0..12).map(|_| s.take()).collect();
        let numbers: Vec<u64> = taken.iter().map(|t| t.0).collect();
        assert_eq!(
            numbers,
            (100..112).collect::<Vec<_>>(),
            "one more each time, no gap within a run"
        );
        let reservations: Vec<(u64, u64)> = taken.iter().filter_map(|(n, r)| r.map(|r| (*n, r))).collect();
        assert_eq!(
            reservations,
            [(104, 120)],
            "the next block asked for with half of this one left"
        );
        // Every number handed out lies below a reservation asked for before it (or with it).
        let mut reserved = first;
        for (n, r) in taken {
            assert!(n < reserved, "{n} used beyond the reservation {reserved}");
            reserved = r.unwrap_or(reserved);
        }
    }

    #[test]
    fn the_seq_file_round_trips_and_a_garbled_one_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let f = SeqFile::new(dir.path().join("state/linesight.seq"));
        assert_eq!(f.read().unwrap(), None);
        f.write(20_000).unwrap();
        assert_eq!(f.read().unwrap(), Some(20_000));
        std::fs::write(f.path(), "twelve\n").unwrap();
        let e = f.read().unwrap_err();
        assert!(format!("{e:#}").contains("expected a number"), "{e:#}");
    }
}
