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
use crate::source::supervise::{CamEvent, CameraWatch, Feed, Next, Polled};
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

/// Parts from the trigger, images from the camera: the matcher and the camera's state
/// together. Pure, like `Matcher`: edges and camera events come in with their times.
pub struct TriggeredParts {
    watch: CameraWatch,
    matcher: Matcher,
    next_id: u64,
    /// `trigger.window_start_ms`, `window_end_ms`.
    window: (u64, u64),
    camera_ended: bool,
}

impl TriggeredParts {
    pub fn new(watch: CameraWatch, config: &GpioTrigger) -> TriggeredParts {
        let window = (config.window_start_ms, config.window_end_ms);
        TriggeredParts {
            watch,
            matcher: Matcher::new(Duration::from_millis(window.0), Duration::from_millis(window.1)),
            next_id: 0,
            window,
            camera_ended: false,
        }
    }

    /// An accepted edge at `t_ns` (kernel time): a part.
    pub fn edge(&mut self, t_ns: u64) {
        self.watch.counts().triggers += 1;
        self.matcher.trigger(t_ns);
    }

    /// What a wait on the camera feed brought (a timeout included), seen at `now_ns`.
    pub fn camera(&mut self, got: Result<CamEvent, RecvTimeoutError>, now_ns: u64) {
        match self.watch.handle(got, now_ns) {
            Polled::Frame(f) => self.matcher.frame(f),
            Polled::Ended => self.camera_ended = true,
            Polled::WentDown | Polled::Idle => {}
        }
    }

    /// The oldest part, once it can be decided at `now_ns`; the end once the camera has
    /// ended and no part waits.
    pub fn next(&mut self, now_ns: u64) -> Next {
        let decided = self.matcher.next(now_ns);
        self.watch.counts().unmatched_frames = self.matcher.unmatched;
        match decided {
            Some((t, m)) => Next::Part(self.part(t, m)),
            None if self.camera_ended && self.matcher.wake_at().is_none() => Next::End,
            None => Next::Wait,
        }
    }

    /// When to wake without an event: the oldest window's end, or a camera stall.
    pub fn wake_at(&self) -> Option<u64> {
        self.watch.due(self.matcher.wake_at())
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

/// Triggered parts on a live camera and a live input: the feed thread, the trigger
/// thread's edges, and `TriggeredParts` deciding.
pub struct Triggered {
    // Dropped first: the feed thread stops before the listener hears the end.
    feed: Feed,
    edges: Receiver<TriggerEvent>,
    parts: TriggeredParts,
    describe: String,
}

impl Triggered {
    /// Requests the trigger line and starts reading its edges.
    pub fn open(config: &GpioTrigger, feed: Feed, watch: CameraWatch) -> anyhow::Result<Triggered> {
        let (edges, describe) = sensor::spawn(config)?;
        Ok(Triggered {
            feed,
            edges,
            parts: TriggeredParts::new(watch, config),
            describe,
        })
    }

    fn take(&mut self, event: TriggerEvent) -> anyhow::Result<()> {
        match event {
            TriggerEvent::Edge(t) => {
                self.parts.edge(t);
                Ok(())
            }
            TriggerEvent::Failed(e) => anyhow::bail!("trigger: {e}"),
        }
    }
}

impl Source for Triggered {
    fn next_frame(&mut self) -> anyhow::Result<Option<Frame>> {
        if self.feed.start() {
            self.parts.watch.start(clock::now_ns());
        }
        loop {
            while let Ok(event) = self.edges.try_recv() {
                self.take(event)?;
            }
            match self.parts.next(clock::now_ns()) {
                Next::Part(f) => return Ok(Some(f)),
                Next::End => return Ok(None),
                Next::Wait => {}
            }
            // Wait for a frame, an edge, the oldest window's end or a camera stall.
            let cam_rx = self.feed.events().clone();
            let edges = self.edges.clone();
            let mut sel = Select::new();
            let cam = (!self.parts.camera_ended).then(|| sel.recv(&cam_rx));
            let trig = sel.recv(&edges);
            let op = match self.parts.wake_at() {
                Some(t) => sel.select_timeout(Duration::from_nanos(t.saturating_sub(clock::now_ns()))),
                None => Ok(sel.select()),
            };
            match op {
                Ok(op) if Some(op.index()) == cam => {
                    let got = op.recv(&cam_rx).map_err(|_| RecvTimeoutError::Disconnected);
                    self.parts.camera(got, clock::now_ns());
                }
                Ok(op) => {
                    debug_assert_eq!(op.index(), trig);
                    match op.recv(&edges) {
                        Ok(event) => self.take(event)?,
                        Err(_) => anyhow::bail!("trigger: the input thread stopped"),
                    }
                }
                // Timeout: let the watcher see a stall; the loop then decides what fell due.
                Err(_) => self.parts.camera(Err(RecvTimeoutError::Timeout), clock::now_ns()),
            }
        }
    }

    fn describe(&self) -> String {
        let (start, end) = self.parts.window;
        format!(
            "{}; parts from trigger {}, frame window {start}..{end} ms",
            self.parts.watch.source(),
            self.describe,
        )
    }

    fn health(&self) -> Option<CameraHealth> {
        Some(self.parts.watch.health(clock::now_ns()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn frame(t_ms: u64) -> Frame {
        Frame::one_pixel(t_ms * MS, t_ms as u8)
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

    /// What reaches a triggered source: an edge from the trigger thread, or a camera event.
    enum Seen {
        Edge(u64),
        Camera(CamEvent),
    }

    /// Plays a timeline of (time seen, what) into triggered parts as `Triggered` waits for
    /// it: between events it wakes with a timeout whenever the parts ask to. The parts made.
    fn play(parts: &mut TriggeredParts, timeline: Vec<(u64, Seen)>) -> Vec<Frame> {
        let mut out = Vec::new();
        let mut decide = |parts: &mut TriggeredParts, now_ns| {
            while let Next::Part(f) = parts.next(now_ns) {
                out.push(f);
            }
        };
        for (t, seen) in timeline {
            for wakes in 0.. {
                let Some(wake) = parts.wake_at().filter(|&w| w <= t) else {
                    break;
                };
                assert!(wakes < 1000, "the parts keep waking at {wake} ns");
                parts.camera(Err(RecvTimeoutError::Timeout), wake);
                decide(parts, wake);
            }
            match seen {
                Seen::Edge(edge_ns) => parts.edge(edge_ns),
                Seen::Camera(event) => parts.camera(Ok(event), t),
            }
            decide(parts, t);
        }
        out
    }

    #[test]
    fn trigger_parts_get_their_frame_or_missing_frame_or_camera_lost() {
        use crate::config::{LineRef, TriggerEdge};
        use crate::source::supervise::test_support::Reports;

        let reports = Reports::default();
        let mut watch = CameraWatch::new(
            Some(Duration::from_secs(2)),
            "scripted".into(),
            Box::new(reports.clone()),
        );
        watch.start(0);
        let config = GpioTrigger {
            chip: "test".into(),
            line: LineRef::Offset(0),
            edge: TriggerEdge::Rising,
            bias: None,
            debounce_us: 0,
            window_start_ms: 0,
            window_end_ms: 60,
        };
        let mut parts = TriggeredParts::new(watch, &config);
        // The camera: frames every 20 ms (each seen 1 ms after capture), silent from 200 to
        // 520 ms, unplugged at 705 ms, two failed reopens, frames again from 1020 ms.
        let frames = |from_ms: u64, to_ms: u64| {
            (from_ms..=to_ms)
                .step_by(20)
                .map(|t| ((t + 1) * MS, Seen::Camera(CamEvent::Frame(frame(t)))))
        };
        let failed = |attempt| {
            Seen::Camera(CamEvent::OpenFailed {
                error: "no such device".into(),
                attempt,
                retry_in: Duration::from_millis(100),
            })
        };
        let mut timeline: Vec<(u64, Seen)> = frames(20, 200).chain(frames(520, 700)).collect();
        timeline.push((705 * MS, Seen::Camera(CamEvent::Lost("unplugged".into()))));
        timeline.push((805 * MS, failed(1)));
        timeline.push((905 * MS, failed(2)));
        timeline.push((1005 * MS, Seen::Camera(CamEvent::Reopened("scripted".into()))));
        timeline.extend(frames(1020, 1600));
        // Parts pass the sensor at 100, 350, 600, 850 and 1500 ms; each edge is read 1 ms later.
        for edge_ms in [100, 350, 600, 850, 1500] {
            timeline.push(((edge_ms + 1) * MS, Seen::Edge(edge_ms * MS)));
        }
        timeline.sort_by_key(|(t, _)| *t);
        let got = play(&mut parts, timeline);

        let summary: Vec<(u64, u64, Option<Reason>, Option<u64>)> = got
            .iter()
            .map(|f| {
                let reason = f.image.as_ref().err().map(|e| e.reason);
                (f.id, f.capture_ns / MS, reason, f.frame_ns.map(|n| n / MS))
            })
            .collect();
        assert_eq!(
            summary,
            [
                (0, 100, None, Some(100)),
                (1, 350, Some(Reason::MissingFrame), None),
                (2, 600, None, Some(600)),
                (3, 850, Some(Reason::CameraLost), None),
                (4, 1500, None, Some(1500)),
            ]
        );
        let h = parts.watch.health(1601 * MS);
        assert_eq!(
            (h.triggers, h.missing_frames, h.lost_parts, h.losses, h.recoveries),
            (5, 1, 1, 1, 1)
        );
        assert_eq!(reports.heard(), ["down: unplugged", "up"]);
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
