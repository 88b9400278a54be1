//! The run's journal (`record.journal_file`): what is in flight, so that a run killed
//! without warning (SIGKILL, the OOM killer, a panic that aborts) is accounted for at the
//! next start. Four events, one text line each:
//!
//! ```text
//! run RUN_ID              the run that wrote what follows
//! c ID CAPTURE_NS         part ID was captured
//! r ID CAPTURE_NS END_NS  part ID was rejected; its ejector window ends at END_NS
//! w ID                    part ID's results line was written
//! p END_NS                the reject output was lowered after a window ending at END_NS
//! ```
//!
//! At the next start, a part captured without `w` got no results line, and a reject
//! whose window ends after the last `p` never had its pulse finish: each gets one
//! results line with reason `interrupted` (the part was not ejected; pull it by hand).
//! A clean end leaves nothing in flight and removes the file.
//!
//! Lines are written with plain `write(2)` on an append-only file, without `fdatasync`:
//! the kernel keeps them through the death of the process, not through a power cut (a
//! power cut is what `record.seq_file`'s gap and the results log's flush policy cover).
//! The file is rewritten with only what is still open when it passes [`COMPACT_BYTES`],
//! so it stays small on a line that runs for months.

use super::{PartRecord, StageLatency};
use crate::frame::Reason;
use anyhow::Context;
use crossbeam_channel::{unbounded, Receiver, RecvTimeoutError, Sender};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The journal is rewritten with only the open entries past this size.
pub const COMPACT_BYTES: u64 = 256 * 1024;

/// Something that happened to a part, in the order the stages saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    Captured { id: u64, capture_ns: u64 },
    Rejected { id: u64, capture_ns: u64, end_ns: u64 },
    Written { id: u64 },
    Pulsed { end_ns: u64 },
}

/// The event's journal line, newline included.
impl std::fmt::Display for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Event::Captured { id, capture_ns } => writeln!(f, "c {id} {capture_ns}"),
            Event::Rejected { id, capture_ns, end_ns } => writeln!(f, "r {id} {capture_ns} {end_ns}"),
            Event::Written { id } => writeln!(f, "w {id}"),
            Event::Pulsed { end_ns } => writeln!(f, "p {end_ns}"),
        }
    }
}

impl Event {
    fn parse(line: &str) -> Option<Event> {
        let mut f = line.split(' ');
        let kind = f.next()?;
        let mut n = || f.next()?.parse::<u64>().ok();
        let e = match kind {
            "c" => Event::Captured {
                id: n()?,
                capture_ns: n()?,
            },
            "r" => Event::Rejected {
                id: n()?,
                capture_ns: n()?,
                end_ns: n()?,
            },
            "w" => Event::Written { id: n()? },
            "p" => Event::Pulsed { end_ns: n()? },
            _ => return None,
        };
        n().is_none().then_some(e)
    }
}

/// What a run left undone, from its journal.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Leftover {
    /// The run that left it.
    pub run_id: Option<String>,
    /// Captured, no results line: (part id, capture time).
    pub unrecorded: Vec<(u64, u64)>,
    /// Recorded as rejects whose pulse never finished: (part id, capture time).
    pub unpulsed: Vec<(u64, u64)>,
}

impl Leftover {
    pub fn is_empty(&self) -> bool {
        self.unrecorded.is_empty() && self.unpulsed.is_empty()
    }
}

impl Leftover {
    /// One results line for each part left undone (`device_seq` is the caller's to set):
    /// reason `interrupted`, a reject, since nobody can say the part was good.
    pub fn records(&self, threshold: f32, unix_ms: u64) -> Vec<PartRecord> {
        let run = self.run_id.clone().unwrap_or_default();
        let record = |id: u64, capture_ns: u64, detail: String| PartRecord {
            run_id: run.clone(),
            device_seq: 0,
            id,
            capture_ns,
            frame_ns: None,
            unix_ms,
            origin: None,
            score: None,
            threshold,
            verdict: Reason::Interrupted.verdict(),
            reason: Reason::Interrupted,
            detail: Some(detail),
            eject_ns: None,
            latency: StageLatency::default(),
            truth: None,
            defect_kind: None,
        };
        let unrecorded = self.unrecorded.iter().map(|&(id, t)| {
            record(
                id,
                t,
                format!(
                    "run {run} ended before this part's results line was written (killed, or its storage failed): \
                 it may not have been inspected or ejected; take it off the line"
                ),
            )
        });
        let unpulsed = self.unpulsed.iter().map(|&(id, t)| {
            record(
                id,
                t,
                format!(
                    "run {run} recorded this part as a reject and ended before its reject pulse finished: \
                 it was not ejected; take it off the line"
                ),
            )
        });
        unrecorded.chain(unpulsed).collect()
    }

    /// One line for the log and the run's summary.
    pub fn render(&self) -> String {
        format!(
            "last run {} left {} part(s) without a results line and {} reject(s) without their pulse (it was \
             killed, or its storage failed); written now as `interrupted` results lines",
            self.run_id.as_deref().unwrap_or("(unknown)"),
            self.unrecorded.len(),
            self.unpulsed.len()
        )
    }
}

/// The journal's state, pure: the parts still open.
#[derive(Debug, Default, Clone)]
pub struct Ledger {
    run_id: Option<String>,
    /// Captured and not yet written: id -> capture time.
    unwritten: BTreeMap<u64, u64>,
    /// Rejected with a window not yet known to be pulsed: id -> (capture time, window end).
    rejects: BTreeMap<u64, (u64, u64)>,
    /// The latest window end after which the output was lowered.
    pulsed_to: u64,
}

impl Ledger {
    pub fn new(run_id: &str) -> Ledger {
        Ledger {
            run_id: Some(run_id.to_string()),
            ..Ledger::default()
        }
    }

    /// Replays a journal's text; a line torn by the process's death is skipped.
    pub fn replay(text: &str) -> Ledger {
        let mut l = Ledger::default();
        for line in text.lines() {
            match line.strip_prefix("run ") {
                Some(id) => l.run_id = Some(id.to_string()),
                None => {
                    if let Some(e) = Event::parse(line) {
                        l.apply(e);
                    }
                }
            }
        }
        l
    }

    pub fn apply(&mut self, e: Event) {
        match e {
            Event::Captured { id, capture_ns } => {
                self.unwritten.insert(id, capture_ns);
            }
            Event::Rejected { id, capture_ns, end_ns } => {
                if end_ns > self.pulsed_to {
                    self.rejects.insert(id, (capture_ns, end_ns));
                }
            }
            Event::Written { id } => {
                self.unwritten.remove(&id);
            }
            Event::Pulsed { end_ns } => {
                self.pulsed_to = self.pulsed_to.max(end_ns);
                self.rejects.retain(|_, (_, end)| *end > end_ns);
            }
        }
    }

    /// Nothing in flight: every part written, every pulse finished.
    pub fn is_settled(&self) -> bool {
        self.unwritten.is_empty() && self.rejects.is_empty()
    }

    /// What is still open, as a run that ended now would leave it. A part with no line
    /// counts once, as unrecorded, whether or not it was also rejected.
    pub fn leftover(&self) -> Leftover {
        Leftover {
            run_id: self.run_id.clone(),
            unrecorded: self.unwritten.iter().map(|(&id, &t)| (id, t)).collect(),
            unpulsed: self
                .rejects
                .iter()
                .filter(|(id, _)| !self.unwritten.contains_key(id))
                .map(|(&id, &(capture_ns, _))| (id, capture_ns))
                .collect(),
        }
    }

    /// The journal's text holding only what is open (for compaction).
    pub fn text(&self) -> String {
        let mut s = String::new();
        if let Some(run) = &self.run_id {
            let _ = writeln!(s, "run {run}");
        }
        if self.pulsed_to > 0 {
            let _ = write!(s, "{}", Event::Pulsed { end_ns: self.pulsed_to });
        }
        for (&id, &capture_ns) in &self.unwritten {
            let _ = write!(s, "{}", Event::Captured { id, capture_ns });
        }
        for (&id, &(capture_ns, end_ns)) in &self.rejects {
            let _ = write!(s, "{}", Event::Rejected { id, capture_ns, end_ns });
        }
        s
    }
}

/// Reads what the last run left in the journal at `path`; none if there is no journal
/// (the last run ended cleanly, or there was none).
pub fn read(path: &Path) -> anyhow::Result<Option<Leftover>> {
    // Compaction keeps it near COMPACT_BYTES; the cap only guards against a wrong path.
    match crate::files::read_capped(path, crate::files::TEXT_MAX_BYTES) {
        Ok(bytes) => Ok(Some(Ledger::replay(&String::from_utf8_lossy(&bytes)).leftover())),
        Err(crate::files::ReadError::Io(e)) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(anyhow::anyhow!("record.journal_file {}: {e}", path.display())),
    }
}

/// Where the stages report their events: cheap to clone, never blocks.
#[derive(Clone)]
pub struct JournalTx(Option<Sender<Event>>);

impl JournalTx {
    /// A journal that keeps nothing (tools and tests that run a pipeline without one).
    pub fn none() -> JournalTx {
        JournalTx(None)
    }

    pub fn send(&self, e: Event) {
        if let Some(tx) = &self.0 {
            let _ = tx.send(e);
        }
    }
}

/// The journal's thread: owns the file.
pub struct Journal {
    tx: JournalTx,
    done: Receiver<bool>,
    path: PathBuf,
}

impl Journal {
    /// Starts this run's journal at `path` (replacing the last one's, already read).
    pub fn start(path: &Path, run_id: &str) -> anyhow::Result<Journal> {
        let ledger = Ledger::new(run_id);
        let (file, size) = rewrite(path, &ledger).with_context(|| format!("record.journal_file {}", path.display()))?;
        let (tx, rx) = unbounded();
        let (done_tx, done) = crossbeam_channel::bounded(1);
        let p = path.to_path_buf();
        std::thread::Builder::new()
            .name("ls-journal".into())
            .spawn(move || {
                let settled = run(rx, (file, size), ledger, &p);
                let _ = done_tx.send(settled);
            })
            .context("cannot start the journal thread")?;
        Ok(Journal {
            tx: JournalTx(Some(tx)),
            done,
            path: path.to_path_buf(),
        })
    }

    pub fn tx(&self) -> JournalTx {
        self.tx.clone()
    }

    /// Ends the journal once every sender is gone; waits at most `wait` for storage. A run
    /// that settled everything removes the file; else it stays for the next start.
    pub fn finish(self, wait: Duration) {
        drop(self.tx);
        match self.done.recv_timeout(wait) {
            Ok(true) => {
                if let Err(e) = std::fs::remove_file(&self.path) {
                    log::warn!("record.journal_file {}: cannot remove it: {e}", self.path.display());
                }
            }
            Ok(false) => log::warn!(
                "record.journal_file {}: parts left in flight are reported at the next start",
                self.path.display()
            ),
            Err(RecvTimeoutError::Timeout) => {
                log::error!(
                    "record.journal_file {}: storage blocked, abandoned",
                    self.path.display()
                )
            }
            Err(RecvTimeoutError::Disconnected) => {}
        }
    }
}

/// Writes `ledger`'s open entries to a new file beside `path` and renames it over, so the
/// journal is whole at every moment; returns the file opened for appending, and its size.
fn rewrite(path: &Path, ledger: &Ledger) -> std::io::Result<(File, u64)> {
    let tmp = path.with_extension("journal-new");
    let text = ledger.text();
    File::create(&tmp)?.write_all(text.as_bytes())?;
    std::fs::rename(&tmp, path)?;
    Ok((OpenOptions::new().append(true).open(path)?, text.len() as u64))
}

/// The thread's loop; returns whether the run settled everything.
fn run(rx: Receiver<Event>, (mut file, mut written): (File, u64), mut ledger: Ledger, path: &Path) -> bool {
    let mut errors = 0u64;
    let mut batch = String::new();
    while let Ok(first) = rx.recv() {
        batch.clear();
        // One write for everything waiting: a busy line costs one syscall per wake-up.
        for e in std::iter::once(first).chain(rx.try_iter()) {
            ledger.apply(e);
            let _ = write!(batch, "{e}");
        }
        let r = if written + batch.len() as u64 > COMPACT_BYTES {
            rewrite(path, &ledger).map(|(f, size)| (file, written) = (f, size))
        } else {
            file.write_all(batch.as_bytes()).map(|()| written += batch.len() as u64)
        };
        if let Err(e) = r {
            errors += 1;
            if errors.is_power_of_two() {
                log::warn!(
                    "record.journal_file {}: {e} ({errors} failed write(s); a crash now may go unreported)",
                    path.display()
                );
            }
        }
    }
    ledger.is_settled()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replay(events: &[Event]) -> Ledger {
        let mut l = Ledger::new("r1");
        for &e in events {
            l.apply(e);
        }
        l
    }

    #[test]
    fn a_part_without_its_line_and_a_reject_without_its_pulse_are_left_over() {
        use Event::*;
        let l = replay(&[
            Captured { id: 0, capture_ns: 10 },
            Written { id: 0 },
            Captured { id: 1, capture_ns: 20 },
            Rejected {
                id: 1,
                capture_ns: 20,
                end_ns: 500,
            },
            Written { id: 1 },
            Captured { id: 2, capture_ns: 30 },
            Rejected {
                id: 2,
                capture_ns: 30,
                end_ns: 600,
            },
            Captured { id: 3, capture_ns: 40 },
        ]);
        let left = l.leftover();
        assert_eq!(left.run_id.as_deref(), Some("r1"));
        // 2 was rejected but never written: one entry, as unrecorded
        assert_eq!(left.unrecorded, vec![(2, 30), (3, 40)]);
        assert_eq!(left.unpulsed, vec![(1, 20)]);
        assert!(!l.is_settled());
    }

    #[test]
    fn a_pulse_settles_every_window_ending_by_then_even_one_heard_of_later() {
        use Event::*;
        let l = replay(&[
            Captured { id: 0, capture_ns: 1 },
            Rejected {
                id: 0,
                capture_ns: 1,
                end_ns: 100,
            },
            Captured { id: 1, capture_ns: 2 },
            Pulsed { end_ns: 150 }, // merged window covering part 1's
            Rejected {
                id: 1,
                capture_ns: 2,
                end_ns: 150,
            },
            Written { id: 0 },
            Written { id: 1 },
        ]);
        assert!(l.is_settled(), "{:?}", l.leftover());
        assert!(l.leftover().is_empty());
    }

    #[test]
    fn the_text_round_trips_and_a_torn_last_line_is_skipped() {
        use Event::*;
        let l = replay(&[
            Captured { id: 7, capture_ns: 70 },
            Rejected {
                id: 7,
                capture_ns: 70,
                end_ns: 900,
            },
            Written { id: 7 },
            Pulsed { end_ns: 50 },
            Captured { id: 8, capture_ns: 80 },
        ]);
        let back = Ledger::replay(&(l.text() + "c 9 9"));
        // "c 9 9" without its newline is whole enough to parse; a torn "c 9" is not
        assert_eq!(back.leftover().unrecorded, vec![(8, 80), (9, 9)]);
        let torn = Ledger::replay(&(l.text() + "c 9"));
        assert_eq!(torn.leftover(), l.leftover());
        assert_eq!(torn.leftover().unpulsed, vec![(7, 70)]);
        assert_eq!(
            Ledger::replay("garbage\nw x\nc 1 2 3\n").leftover(),
            Leftover::default()
        );
    }

    #[test]
    fn the_thread_compacts_and_a_settled_run_removes_the_file() {
        let dir = std::env::temp_dir().join(format!("ls-journal-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("j.journal");
        let j = Journal::start(&path, "run-a").unwrap();
        let tx = j.tx();
        // enough parts to pass COMPACT_BYTES several times over
        for id in 0..40_000u64 {
            tx.send(Event::Captured { id, capture_ns: id });
            tx.send(Event::Written { id });
        }
        tx.send(Event::Captured {
            id: 40_000,
            capture_ns: 5,
        });
        drop(tx);
        // part 40000 is open: the file stays, small, and names it
        j.finish(Duration::from_secs(30));
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.len() < COMPACT_BYTES as usize + 64, "{} bytes", text.len());
        let left = read(&path).unwrap().unwrap();
        assert_eq!(left.unrecorded, vec![(40_000, 5)]);
        assert_eq!(left.run_id.as_deref(), Some("run-a"));

        let j = Journal::start(&path, "run-b").unwrap();
        let tx = j.tx();
        tx.send(Event::Captured { id: 0, capture_ns: 1 });
        tx.send(Event::Written { id: 0 });
        drop(tx);
        j.finish(Duration::from_secs(30));
        assert!(!path.exists(), "a settled run removes its journal");
        assert_eq!(read(&path).unwrap(), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
