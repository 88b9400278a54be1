//! Camera loss and recovery, the same for every kind of camera.
//!
//! ```text
//! device source ──▶ feed thread ──events──▶ CameraWatch ──▶ FreeRun / Triggered source
//!   (reopened with backoff)        (up/down, counts) └──reports──▶ CameraListener
//! ```
//!
//! The feed thread reads the device source; when it errors, ends unexpectedly or stalls,
//! the thread drops it (closing the device) and reopens it with exponential backoff, for
//! as long as the run lasts. `CameraWatch` turns those events into a state: while the
//! camera is down, the parts of that time are fail-safe rejects with the reason
//! `camera_lost`: in free run one per nominal frame pitch (the camera's own recent rate),
//! with a trigger each trigger of that time. Each loss and recovery is reported to the
//! `CameraListener` of whoever wired the source (the composition root drives the
//! `[status] fault_line` from it): the source drives no output itself.
//!
//! `CameraWatch` and `FreeRunParts` are pure: events and the time they were seen come in
//! as arguments, so that their decisions are unit-tested without threads or sleeps.
//! `Feed` (the thread and its channel) and `FreeRun` are the thin shell around them.

use super::Source;
use crate::clock;
use crate::config::{CameraConfig, Config};
use crate::frame::FrameSpec;
use crate::frame::Reason;
use crate::frame::{Frame, NoImage};
use crate::stats::{self, Histogram, Percentiles};
use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender};
use serde::Serialize;
use std::collections::VecDeque;
use std::fmt::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Opens a device source; called once at start and again after every loss.
pub type Opener = Box<dyn FnMut() -> anyhow::Result<Box<dyn Source>> + Send>;

/// What the feed thread tells the watcher.
#[derive(Debug)]
pub enum CamEvent {
    Frame(Frame),
    /// The open source failed (error, stall or unexpected end); it has been closed.
    Lost(String),
    /// A try to reopen failed; the next comes after `retry_in`.
    OpenFailed {
        error: String,
        attempt: u64,
        retry_in: Duration,
    },
    /// The device is open again (its description).
    Reopened(String),
    /// The source has no more frames (a replayed folder or file that is done).
    Ended,
}

/// Backoff for reopening a lost camera.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    pub first: Duration,
    pub max: Duration,
}

impl Retry {
    /// The waits before each try: first, 2×first, 4×first, … capped at max.
    pub fn waits(self) -> impl Iterator<Item = Duration> {
        std::iter::successors(Some(self.first), move |w| Some((*w * 2).min(self.max)))
    }
}

/// The feed thread and the channel its events come out of. Dropping it stops the thread.
pub struct Feed {
    rx: Receiver<CamEvent>,
    /// Starts the thread at the first wait for a frame.
    go: Option<Sender<()>>,
    stop: Arc<AtomicBool>,
}

impl Feed {
    /// Starts the feed thread on an open source; `reopen` opens it again after a loss.
    /// The thread reads nothing until `start`, so that no frame goes stale while the rest
    /// of the pipeline starts.
    pub fn spawn(first: Box<dyn Source>, reopen: Opener, retry: Retry) -> anyhow::Result<Feed> {
        let (tx, rx) = bounded(8);
        let (go_tx, go_rx) = bounded::<()>(1);
        let stop = Arc::new(AtomicBool::new(false));
        let thread_stop = Arc::clone(&stop);
        std::thread::Builder::new().name("ls-camera".into()).spawn(move || {
            if go_rx.recv().is_ok() {
                feed_loop(first, reopen, retry, tx, &thread_stop)
            }
        })?;
        Ok(Feed {
            rx,
            go: Some(go_tx),
            stop,
        })
    }

    /// Lets the thread read frames; true the first time (the camera starts now).
    pub fn start(&mut self) -> bool {
        match self.go.take() {
            Some(go) => {
                let _ = go.send(());
                true
            }
            None => false,
        }
    }

    /// The next event, waiting until `deadline_ns` at most (None: until one comes).
    pub fn recv_until(&self, deadline_ns: Option<u64>) -> Result<CamEvent, RecvTimeoutError> {
        match deadline_ns {
            Some(t) => self
                .rx
                .recv_timeout(Duration::from_nanos(t.saturating_sub(clock::now_ns()))),
            None => self.rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
        }
    }

    /// The channel to wait on, for callers that wait on other channels too (the trigger).
    pub fn events(&self) -> &Receiver<CamEvent> {
        &self.rx
    }
}

impl Drop for Feed {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn feed_loop(first: Box<dyn Source>, mut reopen: Opener, retry: Retry, tx: Sender<CamEvent>, stop: &AtomicBool) {
    let mut source = Some(first);
    loop {
        let Some(mut src) = source.take() else { return };
        // Stream until the source fails or ends.
        let lost = loop {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            match src.next_frame() {
                Ok(Some(f)) => {
                    if tx.send(CamEvent::Frame(f)).is_err() {
                        return;
                    }
                }
                Ok(None) => {
                    let _ = tx.send(CamEvent::Ended);
                    return;
                }
                Err(e) => break format!("{e:#}"),
            }
        };
        drop(src); // closes the device before the next try opens it again
        if tx.send(CamEvent::Lost(lost)).is_err() {
            return;
        }
        for (attempt, wait) in (1..).zip(retry.waits()) {
            if !sleep_unless_stopped(wait, stop) {
                return;
            }
            match reopen() {
                Ok(s) => {
                    let _ = tx.send(CamEvent::Reopened(s.describe()));
                    source = Some(s);
                    break;
                }
                Err(e) => {
                    let next = (wait * 2).min(retry.max);
                    let event = CamEvent::OpenFailed {
                        error: format!("{e:#}"),
                        attempt,
                        retry_in: next,
                    };
                    if tx.send(event).is_err() {
                        return;
                    }
                }
            }
        }
    }
}

/// Sleeps in short steps; false if `stop` was set meanwhile.
fn sleep_unless_stopped(d: Duration, stop: &AtomicBool) -> bool {
    let end = clock::now_ns() + d.as_nanos() as u64;
    while !stop.load(Ordering::Relaxed) {
        let now = clock::now_ns();
        if now >= end {
            return true;
        }
        std::thread::sleep(Duration::from_nanos((end - now).min(50_000_000)));
    }
    false
}

/// Counts for the summary and the logs.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CameraHealth {
    /// The device as last opened.
    pub source: String,
    pub frames: u64,
    /// Times the camera was lost (error, stall or unexpected end).
    pub losses: u64,
    pub recoveries: u64,
    /// Tries to reopen that failed.
    pub failed_reopens: u64,
    /// Time without a camera, in seconds, and the longest single outage.
    pub down_s: f64,
    pub longest_outage_s: f64,
    /// Recovery times (loss → first frame again), in seconds.
    pub recovery_s: Vec<f64>,
    /// Parts rejected because the camera was down.
    pub lost_parts: u64,
    /// Parts from the trigger, those whose frame was missing, and frames in no part's window.
    pub triggers: u64,
    pub missing_frames: u64,
    pub unmatched_frames: u64,
    /// Capture → frame handed to linesight, in ms: p50, p99, max.
    pub delivery_ms: Option<[f64; 3]>,
    /// The camera is down as the run ends.
    pub down_at_end: bool,
}

impl CameraHealth {
    pub fn render(&self) -> String {
        let mut s = String::new();
        let _ = write!(s, "camera     {} frames", self.frames);
        if let Some([p50, p99, max]) = self.delivery_ms {
            let _ = write!(
                s,
                "; capture to linesight p50 {p50:.2} ms, p99 {p99:.2} ms, max {max:.2} ms"
            );
        }
        s.push('\n');
        if self.losses > 0 {
            let _ = writeln!(
                s,
                "camera lost {} time(s), recovered {}{}; down {:.2} s in all (longest {:.2} s); {} failed reopen(s); {} part(s) rejected as camera_lost",
                self.losses,
                self.recoveries,
                if self.down_at_end { " (down at the end)" } else { "" },
                self.down_s,
                self.longest_outage_s,
                self.failed_reopens,
                self.lost_parts
            );
        }
        if self.triggers > 0 {
            let _ = writeln!(
                s,
                "trigger    {} part(s): {} with a frame, {} missing frame(s); {} frame(s) outside any part's window",
                self.triggers,
                self.triggers.saturating_sub(self.missing_frames + self.lost_parts),
                self.missing_frames,
                self.unmatched_frames
            );
        }
        s
    }
}

/// Hears of the camera's losses and recoveries: implemented by whoever wired the source
/// (the composition root drives the `[status] fault_line` from it).
pub trait CameraListener: Send {
    /// The camera was just lost, for `cause`; its parts are rejected until it is back.
    fn camera_down(&mut self, cause: &str);
    /// The first frame after a loss has arrived.
    fn camera_up(&mut self);
    /// What `camera_down` sets off, named in the camera-lost ERROR ("fault output
    /// asserted"); None if nothing.
    fn down_action(&self) -> Option<&str> {
        None
    }
}

/// The camera now, as its listener last heard it: what the plant's side shows (MQTT
/// `state`, the web page). Times are wall clock (Unix ms): they are read by people and
/// other machines, not used to time the line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CameraState {
    /// Delivering frames; false while it is lost and being reopened (its parts are rejected).
    pub up: bool,
    /// Since when it has been up (opened, or recovered) or down (lost), Unix ms.
    pub since_unix_ms: u64,
    /// Why it was last lost (while it is down: why it is down); none before a first loss.
    pub last_error: Option<String>,
    /// Times it was lost in this run.
    pub losses: u64,
}

/// One `CameraState` shared by the camera's listener, which writes it on the source's
/// thread, and the recorder, which copies it into every line state. Empty until the
/// camera has opened. Its lock is held only for a copy, never across I/O.
#[derive(Debug, Default)]
pub struct CameraCell(Mutex<Option<CameraState>>);

impl CameraCell {
    /// The camera opened at `unix_ms`.
    pub fn opened(&self, unix_ms: u64) {
        *self.lock() = Some(CameraState {
            up: true,
            since_unix_ms: unix_ms,
            last_error: None,
            losses: 0,
        });
    }

    /// The camera was lost at `unix_ms` for `cause`. While it is down, a later report
    /// keeps the first cause and time, as the watcher does.
    pub fn down(&self, cause: &str, unix_ms: u64) {
        let mut cell = self.lock();
        let s = cell.get_or_insert_with(|| CameraState {
            up: true,
            since_unix_ms: unix_ms,
            last_error: None,
            losses: 0,
        });
        if s.up {
            s.up = false;
            s.since_unix_ms = unix_ms;
            s.last_error = Some(cause.to_string());
            s.losses += 1;
        }
    }

    /// The camera delivered its first frame after a loss, at `unix_ms`.
    pub fn up(&self, unix_ms: u64) {
        if let Some(s) = self.lock().as_mut().filter(|s| !s.up) {
            s.up = true;
            s.since_unix_ms = unix_ms;
        }
    }

    /// The state now; none before the camera opened.
    pub fn get(&self) -> Option<CameraState> {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<CameraState>> {
        // A panic elsewhere while holding it cannot leave a half-written state: every write is one assignment.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What one wait on the camera brought.
#[derive(Debug)]
pub enum Polled {
    Frame(Frame),
    /// The camera was just declared lost.
    WentDown,
    /// Nothing happened before the deadline.
    Idle,
    /// The source has no more frames.
    Ended,
}

/// What a source makes of one step: a part, the end, or nothing yet (wait again).
#[derive(Debug)]
pub enum Next {
    Part(Frame),
    End,
    Wait,
}

struct Outage {
    since_ns: u64,
    cause: String,
    tries: u64,
}

/// The camera's state as seen from the frame path: up or down, reported to its listener.
/// Shared by the free-run and the triggered sources. Pure: every event comes with the
/// time it was seen (`now_ns`), so stalls, losses and recoveries are decided without a clock.
pub struct CameraWatch {
    listener: Box<dyn CameraListener>,
    stall_ns: Option<u64>,
    down: Option<Outage>,
    last_frame_ns: u64,
    last_capture_ns: Option<u64>,
    /// Recent capture-to-capture intervals, for the nominal frame pitch.
    intervals: VecDeque<u64>,
    delivery: Histogram,
    health: CameraHealth,
    ended: bool,
}

impl CameraWatch {
    /// A camera that is lost after `stall` without a frame (None: never by silence alone).
    pub fn new(stall: Option<Duration>, source: String, listener: Box<dyn CameraListener>) -> CameraWatch {
        CameraWatch {
            listener,
            stall_ns: stall.map(|d| d.as_nanos() as u64),
            down: None,
            last_frame_ns: 0,
            last_capture_ns: None,
            intervals: VecDeque::new(),
            delivery: Histogram::new(),
            health: CameraHealth {
                source,
                ..Default::default()
            },
            ended: false,
        }
    }

    /// The camera started streaming at `now_ns`: the stall time runs from here.
    pub fn start(&mut self, now_ns: u64) {
        self.last_frame_ns = now_ns;
    }

    /// Why the camera is down, while it is.
    pub fn down_cause(&self) -> Option<&str> {
        self.down.as_ref().map(|o| o.cause.as_str())
    }

    /// The source has no more frames.
    pub fn ended(&self) -> bool {
        self.ended
    }

    /// The camera's frame pitch from its recent frames (median interval), once known.
    pub fn pitch_ns(&self) -> Option<u64> {
        if self.intervals.len() < 2 {
            return None;
        }
        stats::median(self.intervals.iter().map(|&ns| ns as f64)).map(|m| (m as u64).max(1_000_000))
    }

    /// Counts so far, with an outage still running at `now_ns` folded in.
    pub fn health(&self, now_ns: u64) -> CameraHealth {
        let mut h = self.health.clone();
        if let Some(o) = &self.down {
            let s = now_ns.saturating_sub(o.since_ns) as f64 / 1e9;
            h.down_s += s;
            h.longest_outage_s = h.longest_outage_s.max(s);
            h.down_at_end = true;
        }
        h.delivery_ms = self.delivery.percentiles_ms().map(Percentiles::to_array);
        h
    }

    /// The source as last opened.
    pub fn source(&self) -> &str {
        &self.health.source
    }

    pub fn counts(&mut self) -> &mut CameraHealth {
        &mut self.health
    }

    /// When the watcher wants to run next: `until_ns`, or earlier when a stall falls due.
    pub fn due(&self, until_ns: Option<u64>) -> Option<u64> {
        let stall_due = self.stall_due();
        [until_ns, stall_due].into_iter().flatten().min()
    }

    fn stall_due(&self) -> Option<u64> {
        match (&self.down, self.stall_ns) {
            (None, Some(s)) => Some(self.last_frame_ns + s),
            _ => None,
        }
    }

    /// Takes in what a wait on the feed brought (a timeout included), seen at `now_ns`.
    pub fn handle(&mut self, got: Result<CamEvent, RecvTimeoutError>, now_ns: u64) -> Polled {
        if self.ended {
            return Polled::Ended;
        }
        match got {
            Ok(CamEvent::Frame(f)) => {
                self.on_frame(&f, now_ns);
                Polled::Frame(f)
            }
            Ok(CamEvent::Lost(cause)) => self.go_down(cause, now_ns),
            Ok(CamEvent::OpenFailed {
                error,
                attempt,
                retry_in,
            }) => {
                self.health.failed_reopens += 1;
                if let Some(o) = &mut self.down {
                    o.tries += 1;
                }
                if attempt.is_power_of_two() {
                    log::warn!(
                        "camera still lost: try {attempt} to reopen failed: {error}; next try in {} ms",
                        retry_in.as_millis()
                    );
                }
                Polled::Idle
            }
            Ok(CamEvent::Reopened(desc)) => {
                log::info!("camera reopened: {desc}; waiting for its first frame");
                self.health.source = desc;
                // A fresh stream: the pitch starts over.
                self.last_capture_ns = None;
                Polled::Idle
            }
            Ok(CamEvent::Ended) | Err(RecvTimeoutError::Disconnected) => {
                self.ended = true;
                Polled::Ended
            }
            Err(RecvTimeoutError::Timeout) => match self.stall_due() {
                Some(t) if now_ns >= t => {
                    let ms = self.stall_ns.unwrap_or(0) / 1_000_000;
                    self.go_down(format!("no frame for {ms} ms (status.camera_stall_ms)"), now_ns)
                }
                _ => Polled::Idle,
            },
        }
    }

    fn on_frame(&mut self, f: &Frame, now_ns: u64) {
        self.health.frames += 1;
        self.delivery
            .record_ms(clock::ns_to_ms(now_ns.saturating_sub(f.capture_ns)));
        if let Some(prev) = self.last_capture_ns {
            if f.capture_ns > prev {
                self.intervals.push_back(f.capture_ns - prev);
                if self.intervals.len() > 15 {
                    self.intervals.pop_front();
                }
            }
        }
        self.last_capture_ns = Some(f.capture_ns);
        self.last_frame_ns = now_ns;
        if let Some(o) = self.down.take() {
            let s = now_ns.saturating_sub(o.since_ns) as f64 / 1e9;
            self.health.recoveries += 1;
            self.health.down_s += s;
            self.health.longest_outage_s = self.health.longest_outage_s.max(s);
            self.health.recovery_s.push(s);
            self.listener.camera_up();
            log::info!(
                "camera recovered after {s:.2} s ({} failed reopen(s)): {}",
                o.tries,
                self.health.source
            );
        }
    }

    fn go_down(&mut self, cause: String, now_ns: u64) -> Polled {
        if let Some(o) = &self.down {
            // Already down (a stall first, then the source's own error): keep the first cause.
            log::warn!(
                "camera: {cause} (down since {:.2} s)",
                now_ns.saturating_sub(o.since_ns) as f64 / 1e9
            );
            return Polled::Idle;
        }
        self.health.losses += 1;
        log::error!(
            "camera lost: {cause}; its parts are rejected (camera_lost){}, reopening with backoff",
            self.listener
                .down_action()
                .map(|a| format!(", {a}"))
                .unwrap_or_default()
        );
        self.listener.camera_down(&cause);
        self.down = Some(Outage {
            since_ns: now_ns,
            cause,
            tries: 0,
        });
        Polled::WentDown
    }

    /// A part with no frame because the camera is down.
    pub fn lost_part(&mut self, id: u64, capture_ns: u64) -> Frame {
        self.health.lost_parts += 1;
        let cause = self.down_cause().unwrap_or("camera not delivering").to_string();
        Frame {
            id,
            capture_ns,
            frame_ns: None,
            image: Err(NoImage {
                reason: Reason::CameraLost,
                detail: format!("camera lost: {cause}"),
            }),
            truth: None,
            origin: None,
        }
    }
}

/// Free run's parts: every frame is a part. While the camera is down, a `camera_lost`
/// part is made at each nominal frame pitch, so that the ejector takes whatever passes
/// meanwhile. Pure, like `CameraWatch`.
pub struct FreeRunParts {
    watch: CameraWatch,
    next_id: u64,
    /// When the next stand-in part is due, while the camera is down.
    next_lost_ns: Option<u64>,
    pitch_ns: Option<u64>,
}

impl FreeRunParts {
    pub fn new(watch: CameraWatch) -> FreeRunParts {
        FreeRunParts {
            watch,
            next_id: 0,
            next_lost_ns: None,
            pitch_ns: None,
        }
    }

    /// When to wake without an event: the next stand-in part, or a stall.
    pub fn wake_at(&self) -> Option<u64> {
        let stand_in = self.next_lost_ns.filter(|_| self.watch.down_cause().is_some());
        self.watch.due(stand_in)
    }

    /// Takes in what a wait on the feed brought, seen at `now_ns`.
    pub fn handle(&mut self, got: Result<CamEvent, RecvTimeoutError>, now_ns: u64) -> Next {
        match self.watch.handle(got, now_ns) {
            Polled::Frame(mut f) => {
                self.next_lost_ns = None;
                f.id = self.next_id;
                self.next_id += 1;
                return Next::Part(f);
            }
            Polled::Ended => return Next::End,
            Polled::WentDown => {
                // Parts keep coming at the camera's pitch: the first one a pitch after
                // the last frame. After a stall that moment has passed, but its part
                // may still be short of the ejector.
                self.pitch_ns = self.watch.pitch_ns();
                self.next_lost_ns = match (self.pitch_ns, self.watch.last_capture_ns) {
                    (Some(p), Some(last)) => Some(last + p),
                    (Some(_), None) => Some(now_ns),
                    _ => None,
                };
            }
            Polled::Idle => {}
        }
        match (self.next_lost_ns, self.pitch_ns) {
            (Some(due), Some(pitch)) if self.watch.down_cause().is_some() && now_ns >= due => {
                self.next_lost_ns = Some(due + pitch);
                let id = self.next_id;
                self.next_id += 1;
                Next::Part(self.watch.lost_part(id, due))
            }
            _ => Next::Wait,
        }
    }
}

/// Free run on a live camera: the feed thread, and `FreeRunParts` deciding.
pub struct FreeRun {
    // Dropped first: the feed thread stops before the listener hears the end.
    feed: Feed,
    parts: FreeRunParts,
}

impl FreeRun {
    pub fn new(feed: Feed, watch: CameraWatch) -> FreeRun {
        FreeRun {
            feed,
            parts: FreeRunParts::new(watch),
        }
    }
}

impl Source for FreeRun {
    fn next_frame(&mut self) -> anyhow::Result<Option<Frame>> {
        if self.feed.start() {
            self.parts.watch.start(clock::now_ns());
        }
        loop {
            if self.parts.watch.ended() {
                return Ok(None);
            }
            let got = self.feed.recv_until(self.parts.wake_at());
            match self.parts.handle(got, clock::now_ns()) {
                Next::Part(f) => return Ok(Some(f)),
                Next::End => return Ok(None),
                Next::Wait => {}
            }
        }
    }

    fn describe(&self) -> String {
        format!("{} (free run: every frame is a part)", self.parts.watch.source())
    }

    fn health(&self) -> Option<CameraHealth> {
        Some(self.parts.watch.health(clock::now_ns()))
    }
}

/// A commissioning drill (`[faults] camera_loss_at_part`): the camera "unplugs" after N
/// frames and cannot be reopened for `camera_loss_ms`, then comes back.
#[derive(Default)]
struct Drill {
    frames: u64,
    fired: bool,
    back_at_ns: u64,
}

struct DrilledSource {
    inner: Box<dyn Source>,
    drill: Arc<Mutex<Drill>>,
    at: u64,
    down_ns: u64,
}

impl Source for DrilledSource {
    fn next_frame(&mut self) -> anyhow::Result<Option<Frame>> {
        {
            let mut d = self.drill.lock().expect("drill lock");
            if !d.fired && d.frames == self.at {
                d.fired = true;
                d.back_at_ns = clock::now_ns() + self.down_ns;
                anyhow::bail!("injected fault (faults.camera_loss_at_part): the camera is unplugged");
            }
            d.frames += 1;
        }
        self.inner.next_frame()
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }
}

/// The watched camera for a config: the device source opened (with the drill, if any),
/// its feed thread and the watcher. `listener` is called once the camera has opened (so
/// that what it requests, such as the fault output, is requested only then) and hears
/// every loss and recovery. Free run or a trigger makes parts of it (`source::open`).
pub fn watched_camera(
    config: &Config,
    frames: FrameSpec,
    listener: impl FnOnce() -> anyhow::Result<Box<dyn CameraListener>>,
) -> anyhow::Result<(Feed, CameraWatch)> {
    let status = &config.status;
    // Only a real camera stalls: a simulated line or a folder is paced by linesight itself
    // (and may be slower than any stall time, like the virtual board's 0.5 parts/s).
    let real_camera = matches!(config.camera, CameraConfig::V4l2(_) | CameraConfig::Gstreamer(_));
    let stall = (real_camera && status.camera_stall_ms > 0).then(|| Duration::from_millis(status.camera_stall_ms));
    // A device source waits at most this long inside one next_frame (the feed thread
    // checks for shutdown between frames).
    let device_wait = stall.unwrap_or(Duration::from_secs(1));
    let cfg = config.clone();
    let drill = Arc::new(Mutex::new(Drill::default()));
    let (at, down_ms) = (config.faults.camera_loss_at_part, config.faults.camera_loss_ms);
    let mut opener: Opener = Box::new(move || {
        let inner = {
            let d = drill.lock().expect("drill lock");
            if d.fired && clock::now_ns() < d.back_at_ns {
                anyhow::bail!("injected fault (faults.camera_loss_ms): the camera is still unplugged");
            }
            super::open_device(&cfg, frames, device_wait)?
        };
        Ok(match at {
            Some(at) => Box::new(DrilledSource {
                inner,
                drill: Arc::clone(&drill),
                at,
                down_ns: clock::ms_to_ns(down_ms),
            }),
            None => inner,
        })
    });
    let first = opener()?;
    let source = first.describe();
    let listener = listener()?;
    let retry = Retry {
        first: Duration::from_millis(status.camera_retry_ms),
        max: Duration::from_millis(status.camera_retry_max_ms),
    };
    let feed = Feed::spawn(first, opener, retry)?;
    Ok((feed, CameraWatch::new(stall, source, listener)))
}

#[cfg(test)]
pub(crate) mod test_support {
    use super::CameraListener;
    use std::sync::{Arc, Mutex};

    /// A listener that keeps every report ("down: <cause>", "up"), for tests.
    #[derive(Clone, Default)]
    pub struct Reports(Arc<Mutex<Vec<String>>>);

    impl Reports {
        pub fn heard(&self) -> Vec<String> {
            self.0.lock().unwrap().clone()
        }
    }

    impl CameraListener for Reports {
        fn camera_down(&mut self, cause: &str) {
            self.0.lock().unwrap().push(format!("down: {cause}"));
        }
        fn camera_up(&mut self) {
            self.0.lock().unwrap().push("up".into());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::Reports;
    use super::*;

    const MS: u64 = 1_000_000;

    fn frame(capture_ns: u64) -> Frame {
        Frame::one_pixel(capture_ns, 0)
    }

    fn free_run(stall_ms: u64, reports: &Reports) -> FreeRunParts {
        let mut watch = CameraWatch::new(
            Some(Duration::from_millis(stall_ms)),
            "scripted".into(),
            Box::new(reports.clone()),
        );
        watch.start(0);
        FreeRunParts::new(watch)
    }

    fn failed_open(attempt: u64) -> CamEvent {
        CamEvent::OpenFailed {
            error: "no such device".into(),
            attempt,
            retry_in: Duration::from_millis(80),
        }
    }

    /// Plays a timeline of (time seen, event) into free run as `FreeRun` waits for it:
    /// between events it wakes with a timeout whenever the parts ask to. The parts made.
    fn play(parts: &mut FreeRunParts, timeline: Vec<(u64, CamEvent)>) -> Vec<Frame> {
        let mut out = Vec::new();
        for (t, event) in timeline {
            for wakes in 0.. {
                let Some(wake) = parts.wake_at().filter(|&w| w <= t) else {
                    break;
                };
                assert!(wakes < 1000, "free run keeps waking at {wake} ns");
                if let Next::Part(f) = parts.handle(Err(RecvTimeoutError::Timeout), wake) {
                    out.push(f);
                }
            }
            if let Next::Part(f) = parts.handle(Ok(event), t) {
                out.push(f);
            }
        }
        out
    }

    fn reason(f: &Frame) -> Option<Reason> {
        f.image.as_ref().err().map(|e| e.reason)
    }

    #[test]
    fn the_camera_cell_says_up_or_down_since_when_and_why() {
        let cell = CameraCell::default();
        assert_eq!(cell.get(), None, "nothing before the camera opened");
        cell.opened(1_000);
        assert_eq!(
            cell.get(),
            Some(CameraState {
                up: true,
                since_unix_ms: 1_000,
                last_error: None,
                losses: 0
            })
        );
        cell.up(1_500);
        assert_eq!(cell.get().unwrap().since_unix_ms, 1_000, "up while up changes nothing");
        cell.down("device vanished", 2_000);
        cell.down("driver gave up", 2_100);
        let down = cell.get().unwrap();
        assert_eq!(
            (down.up, down.since_unix_ms, down.last_error.as_deref(), down.losses),
            (false, 2_000, Some("device vanished"), 1),
            "one loss, with its first cause and time"
        );
        cell.up(3_000);
        let back = cell.get().unwrap();
        assert_eq!(
            (back.up, back.since_unix_ms, back.last_error.as_deref(), back.losses),
            (true, 3_000, Some("device vanished"), 1),
            "back up, the last loss's cause kept"
        );
        cell.down("no frame for 500 ms (status.camera_stall_ms)", 4_000);
        assert_eq!(cell.get().unwrap().losses, 2);
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let r = Retry {
            first: Duration::from_millis(100),
            max: Duration::from_millis(500),
        };
        let w: Vec<u128> = r.waits().take(5).map(|d| d.as_millis()).collect();
        assert_eq!(w, [100, 200, 400, 500, 500]);
    }

    #[test]
    fn a_lost_camera_gives_camera_lost_parts_at_its_pitch_then_recovers() {
        let reports = Reports::default();
        let mut parts = free_run(500, &reports);
        // 20 frames at a 10 ms pitch (each seen 1 ms after capture), lost at 205 ms, two
        // failed reopens, open again at 400 ms and frames from 405 ms.
        let mut timeline: Vec<(u64, CamEvent)> = (1..=20)
            .map(|i| ((10 * i + 1) * MS, CamEvent::Frame(frame(10 * i * MS))))
            .collect();
        timeline.push((205 * MS, CamEvent::Lost("device vanished".into())));
        timeline.push((245 * MS, failed_open(1)));
        timeline.push((325 * MS, failed_open(2)));
        timeline.push((400 * MS, CamEvent::Reopened("scripted".into())));
        timeline.extend((0..10).map(|i| ((406 + 10 * i) * MS, CamEvent::Frame(frame((405 + 10 * i) * MS)))));
        let got = play(&mut parts, timeline);

        let ids: Vec<u64> = got.iter().map(|f| f.id).collect();
        assert_eq!(ids, (0..50).collect::<Vec<_>>(), "parts numbered without gaps");
        assert!(
            got[..20].iter().all(|f| reason(f).is_none()),
            "frames before the loss are parts"
        );
        // One stand-in per pitch from a pitch after the last frame, until the camera is back.
        let lost = &got[20..40];
        assert!(lost.iter().all(|f| reason(f) == Some(Reason::CameraLost)));
        let times: Vec<u64> = lost.iter().map(|f| f.capture_ns / MS).collect();
        assert_eq!(times, (21..=40).map(|i| i * 10).collect::<Vec<_>>());
        assert_eq!(
            lost[0].image.as_ref().unwrap_err().detail,
            "camera lost: device vanished"
        );
        assert!(
            got[40..].iter().all(|f| reason(f).is_none()),
            "frames again after recovery"
        );

        let h = parts.watch.health(500 * MS);
        assert_eq!((h.losses, h.recoveries, h.failed_reopens, h.lost_parts), (1, 1, 2, 20));
        assert_eq!(h.recovery_s, [0.201], "loss at 205 ms, first frame back seen at 406 ms");
        assert!(!h.down_at_end);
        assert_eq!(reports.heard(), ["down: device vanished", "up"]);
    }

    #[test]
    fn a_stalled_camera_is_lost_after_the_stall_time() {
        let reports = Reports::default();
        let mut parts = free_run(50, &reports);
        for i in 1..=10 {
            let got = parts.handle(Ok(CamEvent::Frame(frame(10 * i * MS))), (10 * i + 1) * MS);
            assert!(matches!(got, Next::Part(_)));
        }
        assert_eq!(
            parts.wake_at(),
            Some(151 * MS),
            "stall due 50 ms after the last frame was seen"
        );
        assert!(matches!(
            parts.handle(Err(RecvTimeoutError::Timeout), 150 * MS),
            Next::Wait
        ));
        assert!(reports.heard().is_empty(), "not lost before the stall time");

        // Lost at 151 ms; the stand-ins a pitch apart from 110 ms, already due, come at once.
        let mut times = Vec::new();
        while let Next::Part(f) = parts.handle(Err(RecvTimeoutError::Timeout), 151 * MS) {
            assert_eq!(reason(&f), Some(Reason::CameraLost));
            times.push(f.capture_ns / MS);
        }
        assert_eq!(times, [110, 120, 130, 140, 150]);
        assert_eq!(parts.wake_at(), Some(160 * MS));
        let cause = "no frame for 50 ms (status.camera_stall_ms)";
        assert_eq!(parts.watch.down_cause(), Some(cause));

        // The source's own error after the stall: still one loss, with the first cause.
        assert!(matches!(
            parts.handle(Ok(CamEvent::Lost("driver gave up".into())), 155 * MS),
            Next::Wait
        ));
        assert_eq!(parts.watch.down_cause(), Some(cause));
        assert_eq!(reports.heard(), [format!("down: {cause}")]);
        assert_eq!(parts.watch.health(155 * MS).losses, 1);
    }

    /// A scripted device: `left` frames, then an error (or the end, if `then_end`).
    struct Scripted {
        left: u64,
        then_end: bool,
    }

    impl Source for Scripted {
        fn next_frame(&mut self) -> anyhow::Result<Option<Frame>> {
            if self.left == 0 {
                if self.then_end {
                    return Ok(None);
                }
                anyhow::bail!("device vanished");
            }
            self.left -= 1;
            Ok(Some(frame(clock::now_ns())))
        }
        fn describe(&self) -> String {
            "scripted".into()
        }
    }

    /// The thread is the point here: it closes a failed device and reopens it with backoff.
    #[test]
    fn the_feed_thread_reopens_a_lost_camera_with_backoff() {
        let mut tries = 0;
        let opener: Opener = Box::new(move || {
            tries += 1;
            if tries < 3 {
                anyhow::bail!("no such device");
            }
            Ok(Box::new(Scripted {
                left: 2,
                then_end: true,
            }))
        });
        let retry = Retry {
            first: Duration::from_millis(1),
            max: Duration::from_millis(2),
        };
        let first = Box::new(Scripted {
            left: 3,
            then_end: false,
        });
        let mut feed = Feed::spawn(first, opener, retry).unwrap();
        assert!(feed.start(), "the first start lets the thread read");
        assert!(!feed.start());
        let mut events = Vec::new();
        loop {
            // Only a guard against a hung thread: nothing here is timed.
            let Ok(event) = feed.events().recv_timeout(Duration::from_secs(30)) else {
                panic!("the feed thread went quiet after {events:?}");
            };
            events.push(match event {
                CamEvent::Frame(_) => "frame".to_string(),
                CamEvent::Lost(e) => format!("lost: {e}"),
                CamEvent::OpenFailed {
                    error,
                    attempt,
                    retry_in,
                } => format!("try {attempt} failed: {error}; next in {} ms", retry_in.as_millis()),
                CamEvent::Reopened(d) => format!("reopened: {d}"),
                CamEvent::Ended => break,
            });
        }
        assert_eq!(
            events,
            [
                "frame",
                "frame",
                "frame",
                "lost: device vanished",
                "try 1 failed: no such device; next in 2 ms",
                "try 2 failed: no such device; next in 2 ms",
                "reopened: scripted",
                "frame",
                "frame",
            ]
        );
    }
}
