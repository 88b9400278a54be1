//! Camera loss and recovery, the same for every kind of camera.
//!
//! ```text
//! device source ──▶ feed thread ──events──▶ CameraWatch ──▶ FreeRun / Triggered source
//!   (reopened with backoff)          (up/down, fault output, counts)
//! ```
//!
//! The feed thread reads the device source; when it errors, ends unexpectedly or stalls,
//! the thread drops it (closing the device) and reopens it with exponential backoff, for
//! as long as the run lasts. `CameraWatch` turns those events into a state: while the
//! camera is down the `[status] fault_line` is asserted, and the parts of that time are
//! fail-safe rejects with the reason `camera_lost`: in free run one per nominal frame
//! pitch (the camera's own recent rate), with a trigger each trigger of that time.

use super::Source;
use crate::actuate::OutputLine;
use crate::clock;
use crate::config::{CameraConfig, Config, TriggerConfig};
use crate::frame::PixelFormat;
use crate::frame::Reason;
use crate::frame::{Frame, NoImage};
use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender};
use hdrhistogram::Histogram;
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

/// Starts the feed thread on an open source. Frames and state changes come out of the
/// returned channel; setting `stop` (or dropping the receiver) ends the thread.
/// The thread reads nothing until `CameraWatch` asks for the first frame, so that no
/// frame goes stale while the rest of the pipeline starts.
pub fn spawn_feed(
    first: Box<dyn Source>,
    reopen: Opener,
    retry: Retry,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<(Receiver<CamEvent>, Sender<()>)> {
    let (tx, rx) = bounded(8);
    let (go_tx, go_rx) = bounded::<()>(1);
    std::thread::Builder::new().name("ls-camera".into()).spawn(move || {
        if go_rx.recv().is_ok() {
            feed_loop(first, reopen, retry, tx, &stop)
        }
    })?;
    Ok((rx, go_tx))
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

struct Outage {
    since_ns: u64,
    cause: String,
    tries: u64,
}

/// The camera's state as seen from the frame path: up or down, with the fault output
/// following it. Shared by the free-run and the triggered sources.
pub struct CameraWatch {
    rx: Receiver<CamEvent>,
    /// Starts the feed thread at the first wait for a frame.
    go: Option<Sender<()>>,
    stop: Arc<AtomicBool>,
    fault: Option<Box<dyn OutputLine>>,
    stall_ns: Option<u64>,
    down: Option<Outage>,
    last_frame_ns: u64,
    last_capture_ns: Option<u64>,
    /// Recent capture-to-capture intervals, for the nominal frame pitch.
    intervals: VecDeque<u64>,
    delivery: Histogram<u64>,
    health: CameraHealth,
    ended: bool,
}

impl CameraWatch {
    pub fn new(
        (rx, go): (Receiver<CamEvent>, Sender<()>),
        stop: Arc<AtomicBool>,
        fault: Option<Box<dyn OutputLine>>,
        stall: Option<Duration>,
        source: String,
    ) -> CameraWatch {
        CameraWatch {
            rx,
            go: Some(go),
            stop,
            fault,
            stall_ns: stall.map(|d| d.as_nanos() as u64),
            down: None,
            last_frame_ns: clock::now_ns(),
            last_capture_ns: None,
            intervals: VecDeque::new(),
            delivery: Histogram::new_with_bounds(1, 60_000_000, 3).expect("static bounds are valid"),
            health: CameraHealth {
                source,
                ..Default::default()
            },
            ended: false,
        }
    }

    /// Why the camera is down, while it is.
    pub fn down_cause(&self) -> Option<&str> {
        self.down.as_ref().map(|o| o.cause.as_str())
    }

    /// The camera's frame pitch from its recent frames (median interval), once known.
    pub fn pitch_ns(&self) -> Option<u64> {
        if self.intervals.len() < 2 {
            return None;
        }
        let mut v: Vec<u64> = self.intervals.iter().copied().collect();
        v.sort_unstable();
        Some(v[v.len() / 2].max(1_000_000))
    }

    /// Counts so far, with a running outage folded in.
    pub fn health(&self) -> CameraHealth {
        let mut h = self.health.clone();
        if let Some(o) = &self.down {
            let s = (clock::now_ns() - o.since_ns) as f64 / 1e9;
            h.down_s += s;
            h.longest_outage_s = h.longest_outage_s.max(s);
            h.down_at_end = true;
        }
        if !self.delivery.is_empty() {
            let d = &self.delivery;
            h.delivery_ms = Some([
                d.value_at_quantile(0.5) as f64 / 1000.0,
                d.value_at_quantile(0.99) as f64 / 1000.0,
                d.max() as f64 / 1000.0,
            ]);
        }
        h
    }

    /// The source as last opened.
    pub fn source(&self) -> &str {
        &self.health.source
    }

    pub fn counts(&mut self) -> &mut CameraHealth {
        &mut self.health
    }

    /// Waits for the next camera event until `until_ns` (None: until something happens).
    pub fn poll(&mut self, until_ns: Option<u64>) -> Polled {
        if self.ended {
            return Polled::Ended;
        }
        self.start();
        let got = match self.due(until_ns) {
            Some(t) => self
                .rx
                .recv_timeout(Duration::from_nanos(t.saturating_sub(clock::now_ns()))),
            None => self.rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        self.handle(got)
    }

    /// The channel to wait on, for callers that wait on other channels too (the trigger).
    /// Starts the camera on first use.
    pub fn events(&mut self) -> &Receiver<CamEvent> {
        self.start();
        &self.rx
    }

    fn start(&mut self) {
        if let Some(go) = self.go.take() {
            self.last_frame_ns = clock::now_ns();
            let _ = go.send(());
        }
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

    /// Takes in what a wait on `events()` brought (a timeout included).
    pub fn handle(&mut self, got: Result<CamEvent, RecvTimeoutError>) -> Polled {
        if self.ended {
            return Polled::Ended;
        }
        match got {
            Ok(CamEvent::Frame(f)) => {
                self.on_frame(&f);
                Polled::Frame(f)
            }
            Ok(CamEvent::Lost(cause)) => self.go_down(cause),
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
                    eprintln!(
                        "linesight: WARN camera still lost: try {attempt} to reopen failed: {error}; next try in {} ms",
                        retry_in.as_millis()
                    );
                }
                Polled::Idle
            }
            Ok(CamEvent::Reopened(desc)) => {
                eprintln!("linesight: camera reopened: {desc}; waiting for its first frame");
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
                Some(t) if clock::now_ns() >= t => {
                    let ms = self.stall_ns.unwrap_or(0) / 1_000_000;
                    self.go_down(format!("no frame for {ms} ms (status.camera_stall_ms)"))
                }
                _ => Polled::Idle,
            },
        }
    }

    fn on_frame(&mut self, f: &Frame) {
        let now = clock::now_ns();
        self.health.frames += 1;
        self.delivery
            .saturating_record((now.saturating_sub(f.capture_ns) / 1000).max(1));
        if let Some(prev) = self.last_capture_ns {
            if f.capture_ns > prev {
                self.intervals.push_back(f.capture_ns - prev);
                if self.intervals.len() > 15 {
                    self.intervals.pop_front();
                }
            }
        }
        self.last_capture_ns = Some(f.capture_ns);
        self.last_frame_ns = now;
        if let Some(o) = self.down.take() {
            let s = (now - o.since_ns) as f64 / 1e9;
            self.health.recoveries += 1;
            self.health.down_s += s;
            self.health.longest_outage_s = self.health.longest_outage_s.max(s);
            self.health.recovery_s.push(s);
            self.set_fault(false);
            eprintln!(
                "linesight: camera recovered after {s:.2} s ({} failed reopen(s)): {}",
                o.tries, self.health.source
            );
        }
    }

    fn go_down(&mut self, cause: String) -> Polled {
        if let Some(o) = &self.down {
            // Already down (a stall first, then the source's own error): keep the first cause.
            eprintln!("linesight: WARN camera: {cause} (down since {:.2} s)", {
                (clock::now_ns() - o.since_ns) as f64 / 1e9
            });
            return Polled::Idle;
        }
        self.health.losses += 1;
        eprintln!(
            "linesight: ERROR camera lost: {cause}; its parts are rejected (camera_lost){}, reopening with backoff",
            if self.fault.is_some() {
                ", fault output asserted"
            } else {
                ""
            }
        );
        self.down = Some(Outage {
            since_ns: clock::now_ns(),
            cause,
            tries: 0,
        });
        self.set_fault(true);
        Polled::WentDown
    }

    fn set_fault(&mut self, asserted: bool) {
        if let Some(line) = &mut self.fault {
            if let Err(e) = line.set(asserted) {
                eprintln!("linesight: ERROR fault output {}: {e:#}", line.describe());
            }
        }
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

impl Drop for CameraWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // The fault output ends as a stopped board leaves it: de-energised.
        if let Some(line) = &mut self.fault {
            if let Err(e) = line.release() {
                eprintln!("linesight: ERROR fault output {}: {e:#}", line.describe());
            }
        }
    }
}

/// Free run: every frame is a part. While the camera is down, a `camera_lost` part is
/// made at each nominal frame pitch, so that the ejector takes whatever passes meanwhile.
pub struct FreeRun {
    watch: CameraWatch,
    next_id: u64,
    /// When the next stand-in part is due, while the camera is down.
    next_lost_ns: Option<u64>,
    pitch_ns: Option<u64>,
}

impl FreeRun {
    pub fn new(watch: CameraWatch) -> FreeRun {
        FreeRun {
            watch,
            next_id: 0,
            next_lost_ns: None,
            pitch_ns: None,
        }
    }
}

impl Source for FreeRun {
    fn next_frame(&mut self) -> anyhow::Result<Option<Frame>> {
        loop {
            let until = if self.watch.down_cause().is_some() {
                self.next_lost_ns
            } else {
                None
            };
            match self.watch.poll(until) {
                Polled::Frame(mut f) => {
                    self.next_lost_ns = None;
                    f.id = self.next_id;
                    self.next_id += 1;
                    return Ok(Some(f));
                }
                Polled::Ended => return Ok(None),
                Polled::WentDown => {
                    // Parts keep coming at the camera's pitch: the first one a pitch after
                    // the last frame. After a stall that moment has passed, but its part
                    // may still be short of the ejector.
                    self.pitch_ns = self.watch.pitch_ns();
                    self.next_lost_ns = match (self.pitch_ns, self.watch.last_capture_ns) {
                        (Some(p), Some(last)) => Some(last + p),
                        (Some(_), None) => Some(clock::now_ns()),
                        _ => None,
                    };
                }
                Polled::Idle => {}
            }
            if let (Some(due), Some(pitch)) = (self.next_lost_ns, self.pitch_ns) {
                if self.watch.down_cause().is_some() && clock::now_ns() >= due {
                    self.next_lost_ns = Some(due + pitch);
                    let id = self.next_id;
                    self.next_id += 1;
                    return Ok(Some(self.watch.lost_part(id, due)));
                }
            }
        }
    }

    fn describe(&self) -> String {
        format!("{} (free run: every frame is a part)", self.watch.source())
    }

    fn health(&self) -> Option<CameraHealth> {
        Some(self.watch.health())
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

/// The chain for a config: device source, feed thread, watcher, free run or trigger.
pub fn open(config: &Config, channels: PixelFormat) -> anyhow::Result<Box<dyn Source>> {
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
            super::open_device(&cfg, channels, device_wait)?
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
    let fault = match &status.fault_line {
        Some(o) => Some(crate::actuate::open_output(
            config,
            o,
            "linesight-fault",
            "status.fault_line",
        )?),
        None => None,
    };
    let stop = Arc::new(AtomicBool::new(false));
    let retry = Retry {
        first: Duration::from_millis(status.camera_retry_ms),
        max: Duration::from_millis(status.camera_retry_max_ms),
    };
    let feed = spawn_feed(first, opener, retry, Arc::clone(&stop))?;
    let watch = CameraWatch::new(feed, stop, fault, stall, source);
    Ok(match &config.trigger {
        TriggerConfig::FreeRun => Box::new(FreeRun::new(watch)),
        TriggerConfig::Gpio(t) => Box::new(crate::source::trigger::Triggered::open(t, watch)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{PixelFormat, Pixels};

    /// A scripted device: frames at a fixed pitch, then an error, and reopen results.
    struct Scripted {
        frames: u64,
        fail_after: Option<u64>,
        pitch: Duration,
    }

    impl Source for Scripted {
        fn next_frame(&mut self) -> anyhow::Result<Option<Frame>> {
            if self.fail_after == Some(self.frames) {
                anyhow::bail!("device vanished");
            }
            std::thread::sleep(self.pitch);
            self.frames += 1;
            Ok(Some(Frame {
                id: self.frames,
                capture_ns: clock::now_ns(),
                frame_ns: None,
                image: Ok(Pixels {
                    width: 1,
                    height: 1,
                    format: PixelFormat::Gray8,
                    data: vec![0],
                }),
                truth: None,
                origin: None,
            }))
        }
        fn describe(&self) -> String {
            "scripted".into()
        }
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
        let pitch = Duration::from_millis(10);
        let first = Box::new(Scripted {
            frames: 0,
            fail_after: Some(20),
            pitch,
        });
        let tries = Arc::new(Mutex::new(0));
        let t2 = Arc::clone(&tries);
        let opener: Opener = Box::new(move || {
            let mut n = t2.lock().unwrap();
            *n += 1;
            if *n < 3 {
                anyhow::bail!("no such device");
            }
            Ok(Box::new(Scripted {
                frames: 0,
                fail_after: None,
                pitch,
            }))
        });
        let retry = Retry {
            first: Duration::from_millis(40),
            max: Duration::from_millis(80),
        };
        let stop = Arc::new(AtomicBool::new(false));
        let feed = spawn_feed(first, opener, retry, Arc::clone(&stop)).unwrap();
        let watch = CameraWatch::new(feed, stop, None, Some(Duration::from_millis(500)), "scripted".into());
        let mut src = FreeRun::new(watch);
        let mut reasons = Vec::new();
        let mut ids = Vec::new();
        while reasons.iter().filter(|r: &&Option<Reason>| r.is_none()).count() < 30 {
            let f = src.next_frame().unwrap().unwrap();
            ids.push(f.id);
            reasons.push(f.image.err().map(|e| e.reason));
        }
        assert_eq!(
            ids,
            (0..ids.len() as u64).collect::<Vec<_>>(),
            "parts numbered without gaps"
        );
        let lost = reasons.iter().filter(|r| **r == Some(Reason::CameraLost)).count();
        // Down for 40 + 80 + 80 ms of backoff (three tries) at a 10 ms pitch: some 20 parts.
        assert!((10..=40).contains(&lost), "{lost} camera_lost parts: {reasons:?}");
        assert!(
            reasons[..20].iter().all(Option::is_none),
            "frames before the loss are parts"
        );
        assert!(reasons.last().unwrap().is_none(), "frames again after recovery");
        let h = src.health().unwrap();
        assert_eq!((h.losses, h.recoveries, h.failed_reopens), (1, 1, 2));
        assert_eq!(h.lost_parts as usize, lost);
        assert!(h.recovery_s[0] >= 0.1, "{:?}", h.recovery_s);
    }

    #[test]
    fn a_stalled_camera_is_lost_after_the_stall_time() {
        struct Silent;
        impl Source for Silent {
            fn next_frame(&mut self) -> anyhow::Result<Option<Frame>> {
                // A driver that never answers; the thread is left behind when the test ends.
                std::thread::sleep(Duration::from_secs(3600));
                Ok(None)
            }
            fn describe(&self) -> String {
                "silent".into()
            }
        }
        let stop = Arc::new(AtomicBool::new(false));
        let retry = Retry {
            first: Duration::from_millis(10),
            max: Duration::from_millis(10),
        };
        let rx = spawn_feed(
            Box::new(Silent),
            Box::new(|| anyhow::bail!("x")),
            retry,
            Arc::clone(&stop),
        )
        .unwrap();
        let mut watch = CameraWatch::new(rx, stop, None, Some(Duration::from_millis(100)), "silent".into());
        let t0 = clock::now_ns();
        let mut went_down = false;
        while clock::now_ns() - t0 < 1_000_000_000 {
            if let Polled::WentDown = watch.poll(Some(t0 + 1_000_000_000)) {
                went_down = true;
                break;
            }
        }
        let waited_ms = (clock::now_ns() - t0) / 1_000_000;
        assert!(
            went_down && (100..400).contains(&waited_ms),
            "down after {waited_ms} ms"
        );
        assert!(watch.down_cause().unwrap().contains("no frame for 100 ms"));
    }
}
