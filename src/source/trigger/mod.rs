//! Parts from a part-present sensor: each accepted edge on the trigger input is a part,
//! stamped with the kernel's event time, and the camera frame captured inside that
//! part's window (`trigger.window_start_ms` .. `window_end_ms` after the edge) is its image.
//!
//! ```text
//! gpio thread ──edges (kernel time, debounced)──┐
//!                                               ├──▶ Matcher ──▶ parts, in edge order
//! camera feed ──frames (capture time)───────────┘
//! ```
//!
//! A part whose window closes without a frame is rejected: `missing_frame`, or
//! `camera_lost` while the camera is down. Frames in no part's window are counted and dropped.

pub mod sensor;

use crate::clock;
use crate::config::GpioTrigger;
use crate::frame::Reason;
use crate::frame::{Frame, NoImage};
use crate::source::supervise::{CameraWatch, Polled};
use crate::source::{CameraHealth, Source};
use crossbeam_channel::{Receiver, RecvTimeoutError, Select};
use std::collections::VecDeque;
use std::time::Duration;

/// Accepts an edge only if it comes at least `min_gap_ns` after the last accepted one
/// (kernel timestamps): a bouncing contact gives one part, timed by its first edge.
#[derive(Debug, Clone)]
pub struct Debounce {
    min_gap_ns: u64,
    last: Option<u64>,
}

impl Debounce {
    pub fn new(min_gap: Duration) -> Debounce {
        Debounce {
            min_gap_ns: min_gap.as_nanos() as u64,
            last: None,
        }
    }

    pub fn accept(&mut self, t_ns: u64) -> bool {
        match self.last {
            Some(last) if t_ns.saturating_sub(last) < self.min_gap_ns => false,
            _ => {
                self.last = Some(t_ns);
                true
            }
        }
    }
}

/// How a trigger's part came out.
#[derive(Debug)]
pub enum Matched {
    Frame(Frame),
    /// The window closed with no frame.
    Missing,
}

/// Pairs triggers with frames by time. Pure: time comes in as arguments.
pub struct Matcher {
    start_ns: u64,
    end_ns: u64,
    triggers: VecDeque<u64>,
    frames: VecDeque<Frame>,
    /// Frames that fell in no part's window.
    pub unmatched: u64,
}

impl Matcher {
    pub fn new(window_start: Duration, window_end: Duration) -> Matcher {
        Matcher {
            start_ns: window_start.as_nanos() as u64,
            end_ns: window_end.as_nanos() as u64,
            triggers: VecDeque::new(),
            frames: VecDeque::new(),
            unmatched: 0,
        }
    }

    pub fn trigger(&mut self, t_ns: u64) {
        self.triggers.push_back(t_ns);
    }

    pub fn frame(&mut self, f: Frame) {
        self.frames.push_back(f);
    }

    /// When the oldest part's window closes (the next moment `next` may decide it).
    pub fn wake_at(&self) -> Option<u64> {
        self.triggers.front().map(|t| t + self.end_ns)
    }

    /// The oldest part, once it can be decided at `now_ns`: (trigger time, outcome).
    pub fn next(&mut self, now_ns: u64) -> Option<(u64, Matched)> {
        let Some(&t) = self.triggers.front() else {
            // No part waits: keep recent frames only, for a trigger event read late.
            let keep_from = now_ns.saturating_sub(self.end_ns + 200_000_000);
            while self
                .frames
                .front()
                .is_some_and(|f| f.capture_ns < keep_from || self.frames.len() > 64)
            {
                self.frames.pop_front();
                self.unmatched += 1;
            }
            return None;
        };
        let (from, to) = (t + self.start_ns, t + self.end_ns);
        // Frames before this window are before every later window too.
        while self.frames.front().is_some_and(|f| f.capture_ns < from) {
            self.frames.pop_front();
            self.unmatched += 1;
        }
        let decided = match self.frames.front() {
            Some(f) if f.capture_ns <= to => Matched::Frame(self.frames.pop_front().expect("front exists")),
            // A frame after the window, or the window has closed: no frame will come.
            Some(_) => Matched::Missing,
            None if now_ns >= to => Matched::Missing,
            None => return None,
        };
        self.triggers.pop_front();
        Some((t, decided))
    }
}

/// What the trigger thread sends.
#[derive(Debug)]
pub enum TriggerEvent {
    /// An accepted edge, kernel CLOCK_MONOTONIC time.
    Edge(u64),
    /// The input failed; the run stops with this error.
    Failed(String),
}

/// Parts from the trigger, images from the camera.
pub struct Triggered {
    watch: CameraWatch,
    edges: Receiver<TriggerEvent>,
    matcher: Matcher,
    next_id: u64,
    describe: String,
    window: (u64, u64),
}

impl Triggered {
    /// Requests the trigger line and starts reading its edges.
    pub fn open(config: &GpioTrigger, watch: CameraWatch) -> anyhow::Result<Triggered> {
        let (edges, describe) = sensor::spawn(config)?;
        Ok(Triggered::new(watch, edges, config, describe))
    }

    pub fn new(watch: CameraWatch, edges: Receiver<TriggerEvent>, config: &GpioTrigger, describe: String) -> Triggered {
        let window = (config.window_start_ms, config.window_end_ms);
        Triggered {
            watch,
            edges,
            matcher: Matcher::new(Duration::from_millis(window.0), Duration::from_millis(window.1)),
            next_id: 0,
            describe,
            window,
        }
    }

    fn part(&mut self, t_ns: u64, m: Matched) -> Frame {
        let id = self.next_id;
        self.next_id += 1;
        match m {
            Matched::Frame(f) => Frame {
                id,
                capture_ns: t_ns,
                frame_ns: Some(f.capture_ns),
                ..f
            },
            Matched::Missing => {
                if self.watch.down_cause().is_some() {
                    self.watch.lost_part(id, t_ns)
                } else {
                    self.watch.counts().missing_frames += 1;
                    Frame {
                        id,
                        capture_ns: t_ns,
                        frame_ns: None,
                        image: Err(NoImage {
                            reason: Reason::MissingFrame,
                            detail: format!(
                                "no frame captured {} to {} ms after the trigger",
                                self.window.0, self.window.1
                            ),
                        }),
                        truth: None,
                        origin: None,
                    }
                }
            }
        }
    }
}

impl Source for Triggered {
    fn next_frame(&mut self) -> anyhow::Result<Option<Frame>> {
        let mut camera_ended = false;
        loop {
            while let Ok(ev) = self.edges.try_recv() {
                match ev {
                    TriggerEvent::Edge(t) => {
                        self.watch.counts().triggers += 1;
                        self.matcher.trigger(t);
                    }
                    TriggerEvent::Failed(e) => anyhow::bail!("trigger: {e}"),
                }
            }
            if let Some((t, m)) = self.matcher.next(clock::now_ns()) {
                return Ok(Some(self.part(t, m)));
            }
            self.watch.counts().unmatched_frames = self.matcher.unmatched;
            if camera_ended && self.matcher.wake_at().is_none() {
                return Ok(None);
            }
            // Wait for a frame, an edge, the oldest window's end or a camera stall.
            let cam_rx = self.watch.events().clone();
            let due = self.watch.due(self.matcher.wake_at());
            let edges = self.edges.clone();
            let mut sel = Select::new();
            let cam = (!camera_ended).then(|| sel.recv(&cam_rx));
            let trig = sel.recv(&edges);
            let op = match due {
                Some(t) => sel.select_timeout(Duration::from_nanos(t.saturating_sub(clock::now_ns()))),
                None => Ok(sel.select()),
            };
            match op {
                Ok(op) if Some(op.index()) == cam => {
                    let got = op.recv(&cam_rx).map_err(|_| RecvTimeoutError::Disconnected);
                    match self.watch.handle(got) {
                        Polled::Frame(f) => self.matcher.frame(f),
                        Polled::Ended => camera_ended = true,
                        Polled::WentDown | Polled::Idle => {}
                    }
                }
                Ok(op) => {
                    debug_assert_eq!(op.index(), trig);
                    match op.recv(&edges) {
                        Ok(TriggerEvent::Edge(t)) => {
                            self.watch.counts().triggers += 1;
                            self.matcher.trigger(t);
                        }
                        Ok(TriggerEvent::Failed(e)) => anyhow::bail!("trigger: {e}"),
                        Err(_) => anyhow::bail!("trigger: the input thread stopped"),
                    }
                }
                Err(_) => {
                    // Timeout: let the watcher see a stall, then decide what fell due.
                    self.watch.handle(Err(RecvTimeoutError::Timeout));
                }
            }
        }
    }

    fn describe(&self) -> String {
        format!(
            "{}; parts from trigger {}, frame window {}..{} ms",
            self.watch.source(),
            self.describe,
            self.window.0,
            self.window.1
        )
    }

    fn health(&self) -> Option<CameraHealth> {
        Some(self.watch.health())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{PixelFormat, Pixels};

    const MS: u64 = 1_000_000;

    fn frame(t_ms: u64) -> Frame {
        Frame {
            id: 0,
            capture_ns: t_ms * MS,
            frame_ns: None,
            image: Ok(Pixels {
                width: 1,
                height: 1,
                format: PixelFormat::Gray8,
                data: vec![t_ms as u8],
            }),
            truth: None,
            origin: None,
        }
    }

    fn matched_at(m: &Matched) -> Option<u64> {
        match m {
            Matched::Frame(f) => Some(f.capture_ns / MS),
            Matched::Missing => None,
        }
    }

    #[test]
    fn bounces_inside_the_debounce_time_are_one_part_timed_by_the_first_edge() {
        let mut d = Debounce::new(Duration::from_millis(2));
        let edges = [1000, 1300, 1900, 2999, 3001, 3500, 9000];
        let accepted: Vec<u64> = edges.into_iter().filter(|t| d.accept(t * 1000)).collect();
        assert_eq!(accepted, [1000, 3001, 9000]);
    }

    #[test]
    fn each_trigger_takes_the_first_frame_in_its_window() {
        let mut m = Matcher::new(Duration::from_millis(5), Duration::from_millis(40));
        m.frame(frame(90)); // before any window: dropped
        m.trigger(100 * MS);
        m.trigger(200 * MS);
        m.frame(frame(103)); // before the first window's start (105)
        m.frame(frame(110)); // part 100
        m.frame(frame(120)); // second frame in the same window: unmatched
        m.frame(frame(215)); // part 200
        let (t, got) = m.next(150 * MS).unwrap();
        assert_eq!((t / MS, matched_at(&got)), (100, Some(110)));
        let (t, got) = m.next(150 * MS).unwrap();
        assert_eq!((t / MS, matched_at(&got)), (200, Some(215)));
        assert!(m.next(1000 * MS).is_none());
        assert_eq!(m.unmatched, 3);
    }

    #[test]
    fn a_window_that_closes_empty_is_a_missing_frame_and_waits_until_then() {
        let mut m = Matcher::new(Duration::ZERO, Duration::from_millis(30));
        m.trigger(100 * MS);
        assert!(m.next(110 * MS).is_none(), "the window is still open");
        assert!(m.next(129 * MS).is_none());
        let (_, got) = m.next(130 * MS).unwrap();
        assert!(matches!(got, Matched::Missing));
        // A frame after the window decides at once, before the clock gets there.
        m.trigger(200 * MS);
        m.trigger(210 * MS);
        m.frame(frame(235));
        let (t, got) = m.next(236 * MS).unwrap();
        assert_eq!((t / MS, matched_at(&got)), (200, None));
        let (t, got) = m.next(236 * MS).unwrap();
        assert_eq!((t / MS, matched_at(&got)), (210, Some(235)));
    }

    /// A camera on a script: frames every 20 ms, a silent spell, then an error; reopened
    /// after two failed tries it streams again.
    struct ScriptedCamera {
        n: u64,
    }

    impl Source for ScriptedCamera {
        fn next_frame(&mut self) -> anyhow::Result<Option<Frame>> {
            self.n += 1;
            match self.n {
                // Silent for 300 ms (no error: a camera that skips frames).
                11 => std::thread::sleep(Duration::from_millis(300)),
                // Unplugged.
                21 => anyhow::bail!("unplugged"),
                _ => std::thread::sleep(Duration::from_millis(20)),
            }
            let mut f = frame(0);
            f.capture_ns = clock::now_ns();
            Ok(Some(f))
        }
        fn describe(&self) -> String {
            "scripted camera".into()
        }
    }

    #[test]
    fn trigger_parts_get_their_frame_or_missing_frame_or_camera_lost() {
        use crate::config::{GpioTrigger, LineRef, TriggerEdge};
        use crate::source::supervise::{spawn_feed, CameraWatch, Opener, Retry};
        use std::sync::atomic::AtomicBool;
        use std::sync::{Arc, Mutex};

        let tries = Arc::new(Mutex::new(0));
        let t2 = Arc::clone(&tries);
        let reopen: Opener = Box::new(move || {
            let mut n = t2.lock().unwrap();
            *n += 1;
            if *n < 3 {
                anyhow::bail!("no such device");
            }
            Ok(Box::new(ScriptedCamera { n: 0 }))
        });
        let retry = Retry {
            first: Duration::from_millis(100),
            max: Duration::from_millis(100),
        };
        let stop = Arc::new(AtomicBool::new(false));
        let feed = spawn_feed(Box::new(ScriptedCamera { n: 0 }), reopen, retry, Arc::clone(&stop)).unwrap();
        let watch = CameraWatch::new(feed, stop, None, Some(Duration::from_secs(2)), "scripted".into());
        let config = GpioTrigger {
            chip: "test".into(),
            line: LineRef::Offset(0),
            edge: TriggerEdge::Rising,
            bias: None,
            debounce_us: 0,
            window_start_ms: 0,
            window_end_ms: 60,
        };
        let (tx, rx) = crossbeam_channel::unbounded();
        let mut parts = Triggered::new(watch, rx, &config, "test edges".into());
        // The first read starts the camera; edges follow on the camera's own timeline:
        // 10 frames (~200 ms), 300 ms silent, 10 frames (~200 ms), lost ~300 ms, frames again.
        let first = std::thread::spawn(move || {
            let t0 = clock::now_ns();
            for at_ms in [100, 350, 600, 850, 1500] {
                clock::sleep_until(t0 + at_ms * MS, Duration::from_secs(5));
                tx.send(TriggerEvent::Edge(clock::now_ns())).unwrap();
            }
            std::thread::sleep(Duration::from_millis(500));
        });
        let mut got = Vec::new();
        for _ in 0..5 {
            let f = parts.next_frame().unwrap().unwrap();
            got.push((
                f.id,
                f.image.as_ref().err().map(|e| e.reason),
                f.frame_ns.map(|n| n - f.capture_ns),
            ));
        }
        first.join().unwrap();
        let reasons: Vec<Option<Reason>> = got.iter().map(|g| g.1).collect();
        assert_eq!(
            reasons,
            [None, Some(Reason::MissingFrame), None, Some(Reason::CameraLost), None],
            "{got:?}"
        );
        for (id, reason, after) in &got {
            if reason.is_none() {
                let after = after.expect("a matched part has its frame's time");
                assert!(after <= 60 * MS, "part {id}: frame {} ms after its edge", after / MS);
            }
        }
        let h = parts.health().unwrap();
        assert_eq!(
            (h.triggers, h.missing_frames, h.lost_parts, h.losses, h.recoveries),
            (5, 1, 1, 1, 1)
        );
    }

    #[test]
    fn a_frame_read_before_its_trigger_event_still_matches() {
        let mut m = Matcher::new(Duration::ZERO, Duration::from_millis(30));
        m.frame(frame(105));
        assert!(m.next(110 * MS).is_none());
        m.trigger(100 * MS);
        let (_, got) = m.next(111 * MS).unwrap();
        assert_eq!(matched_at(&got), Some(105));
        assert_eq!(m.unmatched, 0);
    }
}
