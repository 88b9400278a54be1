//! When written results lines are made durable (fdatasync): after `every_lines` lines or
//! `every_ns` after the first line not yet synced, whichever comes first. Pure, with
//! time passed in.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlushPolicy {
    every_lines: u64,
    every_ns: u64,
    /// Lines written since the last sync.
    unsynced: u64,
    /// When the first of them was written.
    since_ns: u64,
}

impl FlushPolicy {
    /// `every_lines` 0 counts as 1 (every line).
    pub fn new(every_lines: u64, every_ms: u64) -> FlushPolicy {
        FlushPolicy {
            every_lines: every_lines.max(1),
            every_ns: every_ms.saturating_mul(1_000_000),
            unsynced: 0,
            since_ns: 0,
        }
    }

    /// A line was written at `now_ns`.
    pub fn wrote(&mut self, now_ns: u64) {
        if self.unsynced == 0 {
            self.since_ns = now_ns;
        }
        self.unsynced += 1;
    }

    /// A sync is due now.
    pub fn due(&self, now_ns: u64) -> bool {
        self.unsynced > 0
            && (self.unsynced >= self.every_lines || now_ns >= self.since_ns.saturating_add(self.every_ns))
    }

    /// When the next sync falls due if no more lines come; `None` with nothing to sync.
    pub fn next_due_ns(&self) -> Option<u64> {
        (self.unsynced > 0).then(|| self.since_ns.saturating_add(self.every_ns))
    }

    /// The lines were synced (or the sync failed and they are given up on).
    pub fn synced(&mut self) {
        self.unsynced = 0;
    }

    /// Lines written and not yet synced: what a power cut now could lose from the file.
    pub fn unsynced(&self) -> u64 {
        self.unsynced
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn a_sync_after_n_lines_or_t_after_the_first_unsynced_line() {
        let mut p = FlushPolicy::new(3, 100);
        assert!(
            !p.due(0) && p.next_due_ns().is_none(),
            "nothing written, nothing to sync"
        );
        p.wrote(10 * MS);
        assert_eq!(p.next_due_ns(), Some(110 * MS));
        p.wrote(20 * MS);
        assert!(!p.due(109 * MS));
        assert!(p.due(110 * MS), "100 ms after the first unsynced line");
        p.wrote(30 * MS);
        assert!(p.due(30 * MS), "the third line");
        assert_eq!(p.unsynced(), 3);
        p.synced();
        assert!(!p.due(1000 * MS) && p.next_due_ns().is_none());
        p.wrote(500 * MS);
        assert_eq!(
            p.next_due_ns(),
            Some(600 * MS),
            "timed from the first line after the sync"
        );
    }

    #[test]
    fn one_line_or_zero_syncs_every_line() {
        for n in [0, 1] {
            let mut p = FlushPolicy::new(n, 1000);
            p.wrote(5);
            assert!(p.due(5));
        }
    }
}
