//! The one thread that touches the record's storage: results lines, saved images, the
//! metrics file and the seq file's reservations. The record thread hands it work through a
//! bounded queue and never waits on it, so storage that is full, failing or hung costs
//! records (counted, in `record_errors`), never the record thread, the sinks or the
//! summary. At shutdown the writer gets until its queue is done, unless a write has been
//! blocked for `record.stall_ms`: then it is abandoned, so that SIGTERM always ends.

use super::retention::{self, rotated_name, Keep, Removed};
use super::{FlushPolicy, JournalEvent, JournalTx, MetricsFile, ResultsLog, SeqFile, Snapshot, Summary};
use crate::clock;
use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender, TrySendError};
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The writer's state, read by the record thread (figures) and the service (stalls).
#[derive(Debug, Default)]
pub struct Health {
    /// When the write in progress began (CLOCK_MONOTONIC ns); 0 while idle.
    busy_since_ns: AtomicU64,
    /// Results lines not written: failed, dropped for a full backlog, or abandoned.
    errors: AtomicU64,
    /// Parts queued for the writer and not yet done.
    backlog: AtomicU64,
    /// Images that could not be saved.
    image_errors: AtomicU64,
    /// Saved images removed by retention (`record.keep_mb`, `record.keep_days`).
    images_removed: AtomicU64,
    /// Rotated results logs removed by retention.
    logs_removed: AtomicU64,
    /// A metrics rewrite is queued: no second one is queued behind it.
    metrics_queued: AtomicBool,
}

/// Whether storage is failing now, for `status.fault_line`: while a write is stalled, and
/// for [`StorageFault::HOLD_NS`] after the last results line it refused, so that a PLC
/// polling the line sees even a short failure. Pure: the time is passed in.
#[derive(Debug, Default)]
pub struct StorageFault {
    errors: u64,
    last_error_ns: Option<u64>,
}

impl StorageFault {
    pub const HOLD_NS: u64 = 5_000_000_000;

    /// `errors`: results lines not written so far; `stalled`: a write blocked past stall_ms.
    pub fn update(&mut self, errors: u64, stalled: bool, now_ns: u64) -> bool {
        if errors > self.errors {
            self.errors = errors;
            self.last_error_ns = Some(now_ns);
        }
        stalled
            || self
                .last_error_ns
                .is_some_and(|t| now_ns.saturating_sub(t) < Self::HOLD_NS)
    }
}

impl Health {
    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }

    pub fn backlog(&self) -> u64 {
        self.backlog.load(Ordering::Relaxed)
    }

    pub fn image_errors(&self) -> u64 {
        self.image_errors.load(Ordering::Relaxed)
    }

    pub fn images_removed(&self) -> u64 {
        self.images_removed.load(Ordering::Relaxed)
    }

    pub fn logs_removed(&self) -> u64 {
        self.logs_removed.load(Ordering::Relaxed)
    }

    /// How long the write in progress has been blocked at `now_ns`; `None` while idle.
    pub fn blocked_ns(&self, now_ns: u64) -> Option<u64> {
        let since = self.busy_since_ns.load(Ordering::Relaxed);
        (since != 0).then(|| now_ns.saturating_sub(since))
    }

    fn busy(&self, on: bool) {
        self.busy_since_ns
            .store(if on { clock::now_ns().max(1) } else { 0 }, Ordering::Relaxed);
        crate::service::record_busy(on); // service: a write stuck here withholds the watchdog
    }

    fn error(&self) -> u64 {
        let n = self.errors.fetch_add(1, Ordering::Relaxed) + 1;
        crate::service::record_errors(n); // service
        n
    }
}

/// One part's record: its line and, if it is to be saved, its image.
pub struct PartJob {
    /// The part's number in this run (for the journal).
    pub id: u64,
    /// Its number on this device (names the results log when it is rotated after it).
    pub device_seq: u64,
    pub line: Vec<u8>,
    pub image: Option<ImageJob>,
}

pub struct ImageJob {
    pub snapshot: Snapshot,
    pub path: PathBuf,
    pub threshold: f32,
    /// Told to the record thread once the image is saved (or not), with this ticket.
    pub ticket: u64,
}

enum Job {
    Part(PartJob),
    Metrics(Box<Summary>, Option<f32>),
    Reserve(u64),
}

/// The writer's word on an image: its path if it was saved.
pub struct ImageDone {
    pub ticket: u64,
    pub saved: Option<PathBuf>,
}

/// What the writer did, at the end of the run.
#[derive(Debug, Clone, Copy, Default)]
pub struct WriterEnd {
    /// Lines written.
    pub written: u64,
    /// fdatasyncs of the results log.
    pub syncs: u64,
    /// Times the results log reached `record.rotate_mb` and was rotated.
    pub rotations: u64,
}

/// The record thread's end of the writer.
pub struct Writer {
    jobs: Sender<Job>,
    pub images: Receiver<ImageDone>,
    end: Receiver<WriterEnd>,
    health: Arc<Health>,
    stall_ns: u64,
}

/// How the writer is set up.
pub struct WriterSettings {
    pub flush: FlushPolicy,
    pub backlog_parts: usize,
    pub stall_ms: u64,
    /// The results log is rotated once it holds this many bytes.
    pub rotate_bytes: u64,
    /// Retention of rotated results logs and of saved images in `save_dir`.
    pub keep: Keep,
    pub save_dir: PathBuf,
    /// Told of every line written, so that a crash after it does not report the part.
    pub journal: JournalTx,
}

impl Writer {
    pub fn spawn(
        results: ResultsLog,
        metrics: Option<MetricsFile>,
        seq_file: SeqFile,
        settings: WriterSettings,
    ) -> anyhow::Result<Writer> {
        let (jobs, jobs_rx) = bounded(settings.backlog_parts.max(1));
        let (images_tx, images) = crossbeam_channel::unbounded();
        let (end_tx, end) = bounded(1);
        let health = Arc::new(Health::default());
        let h = Arc::clone(&health);
        let flush = settings.flush;
        let retention = (!settings.keep.is_none()).then(|| (settings.keep, settings.save_dir.clone()));
        let rotate_bytes = settings.rotate_bytes;
        let journal = settings.journal;
        std::thread::Builder::new()
            .name("ls-write".into())
            .spawn(move || {
                let mut w = Thread {
                    results,
                    metrics,
                    seq_file,
                    flush,
                    health: h,
                    images: images_tx,
                    end: WriterEnd::default(),
                    retention,
                    saved_since_sweep: None,
                    rotate_bytes,
                    rotate_at: rotate_bytes,
                    journal,
                };
                w.run(jobs_rx);
                let _ = end_tx.send(w.end);
            })
            .map_err(|e| anyhow::anyhow!("cannot start the record writer thread: {e}"))?;
        Ok(Writer {
            jobs,
            images,
            end,
            health,
            stall_ns: clock::ms_to_ns(settings.stall_ms.max(1)),
        })
    }

    pub fn health(&self) -> &Arc<Health> {
        &self.health
    }

    /// Queues a part's record; `false` (and counted) if the backlog is full.
    pub fn part(&self, job: PartJob) -> bool {
        self.health.backlog.fetch_add(1, Ordering::Relaxed);
        match self.jobs.try_send(Job::Part(job)) {
            Ok(()) => true,
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.health.backlog.fetch_sub(1, Ordering::Relaxed);
                self.health.error();
                false
            }
        }
    }

    /// Queues a rewrite of the metrics file, unless one is still waiting.
    pub fn metrics(&self, summary: Summary, threshold: Option<f32>) {
        if self.health.metrics_queued.swap(true, Ordering::Relaxed) {
            return;
        }
        if self.jobs.try_send(Job::Metrics(Box::new(summary), threshold)).is_err() {
            self.health.metrics_queued.store(false, Ordering::Relaxed);
        }
    }

    /// Queues a new reservation of the device sequence.
    pub fn reserve(&self, next: u64) {
        // A reservation must not be lost to a full queue: it waits for room, but only
        // while the writer is moving (a hung writer could not write it anyway).
        let mut job = Job::Reserve(next);
        loop {
            match self.jobs.send_timeout(job, Duration::from_millis(100)) {
                Ok(()) => return,
                Err(crossbeam_channel::SendTimeoutError::Timeout(j)) => {
                    if self.stalled_ns(clock::now_ns()).is_some() {
                        log::error!("record.seq_file: reservation up to {next} not written (storage blocked)");
                        return;
                    }
                    job = j;
                }
                Err(crossbeam_channel::SendTimeoutError::Disconnected(_)) => return,
            }
        }
    }

    /// How long the write in progress has been blocked, once that is past `record.stall_ms`.
    pub fn stalled_ns(&self, now_ns: u64) -> Option<u64> {
        self.health.blocked_ns(now_ns).filter(|b| *b >= self.stall_ns)
    }

    pub fn stall_ns(&self) -> u64 {
        self.stall_ns
    }

    /// Lets the writer finish its queue and its last sync. A write blocked for
    /// `record.stall_ms` is abandoned with what is still queued (counted as errors).
    /// Returns what it did, or `None` if it was abandoned.
    pub fn finish(self) -> Option<WriterEnd> {
        let Writer {
            jobs,
            end,
            health,
            stall_ns,
            ..
        } = self;
        drop(jobs);
        loop {
            let now = clock::now_ns();
            let wait = match health.blocked_ns(now) {
                Some(b) if b >= stall_ns => {
                    let lost = health.backlog();
                    log::error!(
                        "record: a write has been blocked for {:.1} s: abandoned with {lost} results line(s) not written",
                        b as f64 / 1e9
                    );
                    for _ in 0..lost {
                        health.error();
                    }
                    return None;
                }
                Some(b) => stall_ns - b,
                None => stall_ns,
            };
            match end.recv_timeout(Duration::from_nanos(wait)) {
                Ok(e) => return Some(e),
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => return None,
            }
        }
    }
}

struct Thread {
    results: ResultsLog,
    metrics: Option<MetricsFile>,
    seq_file: SeqFile,
    flush: FlushPolicy,
    health: Arc<Health>,
    images: Sender<ImageDone>,
    end: WriterEnd,
    retention: Option<(Keep, PathBuf)>,
    /// Images saved since the last retention sweep; `None` before the first.
    saved_since_sweep: Option<u64>,
    rotate_bytes: u64,
    /// The log's size at which it is rotated next: `rotate_bytes`, or 1 MiB further on
    /// after a rotation failed, so that a failing one costs a try per MiB, not per line.
    rotate_at: u64,
    journal: JournalTx,
}

/// A retention sweep after this many images saved (and with the first).
const SWEEP_EVERY_IMAGES: u64 = 50;

impl Thread {
    fn run(&mut self, jobs: Receiver<Job>) {
        loop {
            let wait = self.flush.next_due_ns().map_or(Duration::from_secs(3600), |due| {
                Duration::from_nanos(due.saturating_sub(clock::now_ns()))
            });
            match jobs.recv_timeout(wait) {
                Ok(job) => self.job(job),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            if self.flush.due(clock::now_ns()) {
                self.sync();
            }
        }
        self.sync();
    }

    fn job(&mut self, job: Job) {
        match job {
            Job::Part(p) => {
                if let Some(img) = p.image {
                    self.health.busy(true);
                    let saved = img.snapshot.save(&img.path, img.threshold);
                    self.health.busy(false);
                    let saved = match saved {
                        Ok(()) => {
                            self.image_saved();
                            Some(img.path)
                        }
                        Err(e) => {
                            let n = self.health.image_errors.fetch_add(1, Ordering::Relaxed) + 1;
                            if n.is_power_of_two() {
                                log::warn!("image not saved: {e:#} ({n} so far)");
                            }
                            None
                        }
                    };
                    let _ = self.images.send(ImageDone {
                        ticket: img.ticket,
                        saved,
                    });
                }
                self.health.busy(true);
                let r = self.results.append_line(&p.line);
                self.health.busy(false);
                self.health.backlog.fetch_sub(1, Ordering::Relaxed);
                match r {
                    Ok(()) => {
                        self.journal.send(JournalEvent::Written { id: p.id });
                        self.end.written += 1;
                        self.flush.wrote(clock::now_ns());
                        if self.results.bytes() >= self.rotate_at {
                            self.rotate(p.device_seq);
                        }
                    }
                    Err(e) => {
                        let n = self.health.error();
                        if n.is_power_of_two() {
                            log::error!(
                                "results line not written to {}: {e} ({n} not written so far; record_errors counts them all)",
                                self.results.path().display()
                            );
                        }
                    }
                }
            }
            Job::Metrics(summary, threshold) => {
                self.health.metrics_queued.store(false, Ordering::Relaxed);
                if let Some(m) = &self.metrics {
                    self.health.busy(true);
                    let r = m.write(&summary, threshold);
                    self.health.busy(false);
                    if let Err(e) = r {
                        log::warn!("record.metrics_file {}: {e}", m.path().display());
                    }
                }
            }
            Job::Reserve(next) => {
                self.health.busy(true);
                let r = self.seq_file.write(next);
                self.health.busy(false);
                if let Err(e) = r {
                    log::error!(
                        "record.seq_file {}: cannot reserve up to {next}: {e}",
                        self.seq_file.path().display()
                    );
                }
            }
        }
    }

    /// Every `SWEEP_EVERY_IMAGES` images saved (and with the first), a retention sweep.
    fn image_saved(&mut self) {
        let n = self.saved_since_sweep.map_or(SWEEP_EVERY_IMAGES, |n| n + 1);
        if n < SWEEP_EVERY_IMAGES {
            self.saved_since_sweep = Some(n);
            return;
        }
        self.saved_since_sweep = Some(0);
        self.retain();
    }

    /// Closes the results log as `results.<device_seq>.jsonl` (its last line's) and goes
    /// on in a new one; then a retention sweep. A log that cannot be rotated is appended
    /// to as before: no line is lost for it.
    fn rotate(&mut self, last_seq: u64) {
        self.sync();
        let to = rotated_name(self.results.path(), last_seq);
        self.health.busy(true);
        let r = self.results.rotate(&to);
        self.health.busy(false);
        match r {
            Ok(()) => {
                self.end.rotations += 1;
                self.rotate_at = self.rotate_bytes;
                log::info!(
                    "results: {} reached record.rotate_mb: closed as {}",
                    self.results.path().display(),
                    to.display()
                );
                self.retain();
            }
            Err(e) => {
                self.rotate_at = self.results.bytes() + (1 << 20);
                log::warn!(
                    "results: cannot rotate {} to {}: {e}; appending to it as before, tried again 1 MiB on",
                    self.results.path().display(),
                    to.display()
                );
            }
        }
    }

    /// Removes the oldest saved images and rotated results logs beyond `record.keep_mb` /
    /// `keep_days`.
    fn retain(&mut self) {
        let Some((keep, save_dir)) = &self.retention else {
            return;
        };
        self.health.busy(true);
        let r = retention::sweep(save_dir, self.results.path(), *keep, clock::unix_ms() / 1000);
        self.health.busy(false);
        match r {
            Ok(Removed { images: 0, logs: 0, .. }) => {}
            Ok(Removed { images, logs, bytes }) => {
                let total = self.health.images_removed.fetch_add(images, Ordering::Relaxed) + images;
                let total_logs = self.health.logs_removed.fetch_add(logs, Ordering::Relaxed) + logs;
                log::info!(
                    "record: removed the {images} oldest saved image(s) and {logs} rotated results log(s), {:.1} MiB (record.keep_mb / keep_days; {total} image(s) and {total_logs} log(s) so far)",
                    bytes as f64 / (1u64 << 20) as f64
                );
            }
            Err(e) => log::warn!("record: retention sweep failed: {e}"),
        }
    }

    fn sync(&mut self) {
        if self.flush.unsynced() == 0 {
            return;
        }
        self.health.busy(true);
        let r = self.results.sync();
        self.health.busy(false);
        let n = self.flush.unsynced();
        self.flush.synced();
        match r {
            Ok(()) => self.end.syncs += 1,
            Err(e) => log::error!(
                "results {}: fdatasync failed: {e}; {n} line(s) may not survive a power cut",
                self.results.path().display()
            ),
        }
    }
}

/// Parts on their way to the sinks, in order. One whose image is being saved waits for
/// the writer's word, so that a sink never names an image that is not on disk yet, but
/// no longer than `stall_ns`: a hung disk costs the sinks the image, never the part.
pub struct ToSinks<T> {
    queue: VecDeque<Entry<T>>,
    stall_ns: u64,
}

struct Entry<T> {
    item: T,
    ticket: Option<u64>,
    since_ns: u64,
    saved: Option<Option<PathBuf>>,
}

impl<T> ToSinks<T> {
    pub fn new(stall_ns: u64) -> ToSinks<T> {
        ToSinks {
            queue: VecDeque::new(),
            stall_ns,
        }
    }

    /// A part at `now_ns`; `ticket` if its image is being saved.
    pub fn push(&mut self, item: T, ticket: Option<u64>, now_ns: u64) {
        self.queue.push_back(Entry {
            item,
            ticket,
            since_ns: now_ns,
            saved: None,
        });
    }

    /// The writer's word on an image.
    pub fn image_done(&mut self, ticket: u64, saved: Option<PathBuf>) {
        if let Some(e) = self.queue.iter_mut().find(|e| e.ticket == Some(ticket)) {
            e.saved = Some(saved);
        }
    }

    /// The parts that may go now, in order, with their saved image if any.
    pub fn ready(&mut self, now_ns: u64) -> Vec<(T, Option<PathBuf>)> {
        let mut out = Vec::new();
        while let Some(e) = self.queue.front() {
            let go = e.ticket.is_none() || e.saved.is_some() || now_ns >= e.since_ns.saturating_add(self.stall_ns);
            if !go {
                break;
            }
            let e = self.queue.pop_front().expect("a front entry");
            out.push((e.item, e.saved.flatten()));
        }
        out
    }

    /// When the front part goes even without the writer's word.
    pub fn next_due_ns(&self) -> Option<u64> {
        self.queue
            .front()
            .filter(|e| e.ticket.is_some() && e.saved.is_none())
            .map(|e| e.since_ns.saturating_add(self.stall_ns))
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_faults_while_stalled_and_for_a_while_after_each_refused_line() {
        let s = 1_000_000_000;
        let mut f = StorageFault::default();
        assert!(!f.update(0, false, 0));
        assert!(f.update(0, true, s), "a stalled write");
        assert!(!f.update(0, false, 2 * s), "the stall is over");
        assert!(f.update(3, false, 10 * s), "lines refused");
        assert!(f.update(3, false, 14 * s), "held");
        assert!(!f.update(3, false, 15 * s), "released HOLD after the last refusal");
        assert!(f.update(4, false, 20 * s));
        assert!(!f.update(4, false, 26 * s));
    }

    const MS: u64 = 1_000_000;

    #[test]
    fn parts_go_to_the_sinks_in_order_once_their_image_is_saved() {
        let mut q = ToSinks::new(500 * MS);
        q.push("a", None, 0);
        q.push("b", Some(1), MS);
        q.push("c", None, 2 * MS);
        assert_eq!(
            q.ready(3 * MS),
            [("a", None)],
            "b waits for its image, c waits behind b"
        );
        assert_eq!(q.next_due_ns(), Some(501 * MS));
        q.image_done(1, Some(PathBuf::from("x.png")));
        assert_eq!(q.ready(4 * MS), [("b", Some(PathBuf::from("x.png"))), ("c", None)]);
        assert!(q.is_empty() && q.next_due_ns().is_none());
    }

    #[test]
    fn an_image_not_saved_or_stuck_costs_the_sinks_the_image_not_the_part() {
        let mut q = ToSinks::new(500 * MS);
        q.push("a", Some(1), 0);
        q.push("b", Some(2), 10 * MS);
        q.image_done(2, None);
        assert!(q.ready(499 * MS).is_empty(), "the writer may still save a");
        assert_eq!(q.ready(500 * MS), [("a", None), ("b", None)], "a stuck, b not saved");
        q.image_done(1, Some(PathBuf::from("late.png"))); // too late: nothing to tell
        assert!(q.is_empty());
    }
}
