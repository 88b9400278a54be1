//! What the page and the API show, kept from the line's events: the pure core of the web
//! sink. No I/O and no clock: events and times are passed in, so that it is tested
//! without a server.

use crate::frame::Verdict;
use crate::record::PartRecord;
use crate::sinks::{LineEvent, LineInfo, LineState, RunState};
use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

/// Where the line is, as `/healthz` says it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// No `Running` state yet: warming up, or not yet armed.
    Starting,
    Running,
    Stopping,
}

/// One part as the sink keeps it.
#[derive(Clone, Debug)]
pub struct Part {
    pub seq: u64,
    pub record: Arc<PartRecord>,
    /// The saved overlay's file name in `record.save_dir`, if one was saved.
    pub image: Option<String>,
}

/// A part as the API shows it: the results line, its sequence number and its image's URL.
#[derive(Serialize)]
pub struct PartView<'a> {
    pub seq: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_url: Option<String>,
    #[serde(flatten)]
    pub record: &'a PartRecord,
}

impl Part {
    pub fn view(&self) -> PartView<'_> {
        PartView {
            seq: self.seq,
            image_url: self.image.as_ref().map(|name| format!("/images/{name}")),
            record: &self.record,
        }
    }
}

/// Parts counted by verdict and by reason.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Counters {
    pub parts: u64,
    pub passed: u64,
    pub rejected: u64,
    /// Every reason seen, passes (`below_threshold`) included.
    pub by_reason: BTreeMap<String, u64>,
    /// When counting began (Unix ms): the start of the run or the last reset.
    pub since_unix_ms: u64,
}

impl Counters {
    fn starting_at(unix_ms: u64) -> Counters {
        Counters {
            since_unix_ms: unix_ms,
            ..Counters::default()
        }
    }

    fn add(&mut self, r: &PartRecord) {
        self.parts += 1;
        match r.verdict {
            Verdict::Pass => self.passed += 1,
            Verdict::Reject => self.rejected += 1,
        }
        *self.by_reason.entry(r.reason.as_str().to_string()).or_default() += 1;
    }
}

/// Lowest and highest threshold a write may set.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct ThresholdRange {
    pub low: f32,
    pub high: f32,
    /// Where the bounds come from, for people.
    #[serde(skip)]
    pub source: &'static str,
}

impl ThresholdRange {
    /// From the calibration on good parts: their mean score (below it about half the good
    /// parts would be rejected) to their highest plus 3 standard deviations. Widened to
    /// hold `start`, the threshold the line started with, so that a write can always go back.
    pub fn from_calibration(mean: f32, std: f32, max: f32, start: f32) -> ThresholdRange {
        ThresholdRange {
            low: mean.min(start),
            high: (max + 3.0 * std).max(start),
            source: "model calibration: mean to max + 3 std",
        }
    }

    /// `http.threshold_range`, widened to hold `start` as above.
    pub fn configured([low, high]: [f32; 2], start: f32) -> ThresholdRange {
        ThresholdRange {
            low: low.min(start),
            high: high.max(start),
            source: "http.threshold_range",
        }
    }

    /// `value` if it may be set, else why not, as the operator reads it.
    pub fn check(&self, value: f32) -> Result<f32, String> {
        if !value.is_finite() {
            return Err(format!("threshold must be a finite number, found {value}"));
        }
        if value < self.low || value > self.high {
            return Err(format!(
                "threshold {value} is outside the sane range {} to {} ({})",
                self.low, self.high, self.source
            ));
        }
        Ok(value)
    }
}

/// Everything the page shows, updated from the line's events.
pub struct WebState {
    pub info: Arc<LineInfo>,
    phase: Phase,
    last_state: Option<Arc<LineState>>,
    recent: VecDeque<Part>,
    recent_cap: usize,
    rejects: VecDeque<Part>,
    rejects_cap: usize,
    /// The latest part that has a saved image.
    last_image: Option<Part>,
    since_start: Counters,
    since_reset: Counters,
    /// Events the feed dropped because this sink was behind.
    pub dropped_events: u64,
}

impl WebState {
    pub fn new(info: Arc<LineInfo>, recent_parts: usize, recent_rejects: usize, now_unix_ms: u64) -> WebState {
        WebState {
            info,
            phase: Phase::Starting,
            last_state: None,
            recent: VecDeque::with_capacity(recent_parts.min(4096)),
            recent_cap: recent_parts.max(1),
            rejects: VecDeque::new(),
            rejects_cap: recent_rejects.max(1),
            last_image: None,
            since_start: Counters::starting_at(now_unix_ms),
            since_reset: Counters::starting_at(now_unix_ms),
            dropped_events: 0,
        }
    }

    pub fn apply(&mut self, event: LineEvent) {
        match event {
            LineEvent::Part { seq, record, image } => {
                let part = Part {
                    seq,
                    image: image.and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned())),
                    record,
                };
                self.since_start.add(&part.record);
                self.since_reset.add(&part.record);
                if part.image.is_some() {
                    self.last_image = Some(part.clone());
                }
                if part.record.verdict == Verdict::Reject {
                    push_bounded(&mut self.rejects, part.clone(), self.rejects_cap);
                }
                push_bounded(&mut self.recent, part, self.recent_cap);
            }
            LineEvent::State(state) => {
                self.phase = match state.run_state {
                    RunState::Running if self.phase != Phase::Stopping => Phase::Running,
                    RunState::Running | RunState::Stopping => Phase::Stopping,
                };
                self.last_state = Some(state);
            }
        }
    }

    /// Ready only once the line runs: after the first `Running` state, until `Stopping`.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    pub fn last_state(&self) -> Option<&LineState> {
        self.last_state.as_deref()
    }

    pub fn last_part(&self) -> Option<&Part> {
        self.recent.back()
    }

    pub fn last_image(&self) -> Option<&Part> {
        self.last_image.as_ref()
    }

    /// The threshold the last part was judged with.
    pub fn threshold_in_use(&self) -> Option<f32> {
        self.last_part().map(|p| p.record.threshold)
    }

    /// Parts after `since` (a sequence number; 0: all kept), oldest first.
    pub fn parts_since(&self, since: u64) -> impl Iterator<Item = &Part> {
        // Sequence numbers rise by one, but the feed may have dropped some: search.
        let start = self.recent.partition_point(|p| p.seq <= since);
        self.recent.range(start..)
    }

    /// The oldest part still kept, if any.
    pub fn oldest_seq(&self) -> Option<u64> {
        self.recent.front().map(|p| p.seq)
    }

    /// The last rejects, oldest first.
    pub fn rejects(&self) -> impl Iterator<Item = &Part> {
        self.rejects.iter()
    }

    pub fn since_start(&self) -> &Counters {
        &self.since_start
    }

    pub fn since_reset(&self) -> &Counters {
        &self.since_reset
    }

    /// Starts the "since reset" counters again; returns the ones it replaced.
    pub fn reset(&mut self, now_unix_ms: u64) -> Counters {
        std::mem::replace(&mut self.since_reset, Counters::starting_at(now_unix_ms))
    }
}

fn push_bounded<T>(q: &mut VecDeque<T>, item: T, cap: usize) {
    if q.len() == cap {
        q.pop_front();
    }
    q.push_back(item);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::Reason;
    use crate::record::{StageLatency, Summary};
    use std::path::PathBuf;

    pub(crate) fn info() -> Arc<LineInfo> {
        Arc::new(LineInfo {
            run_id: "r1".into(),
            model: "sim-flange".into(),
            model_sha256: "ab".repeat(32),
            provider: "cpu".into(),
            config_sha256: "cd".repeat(32),
            config_text: "[camera]\nkind = \"synthetic\"\n".into(),
            threshold: 6.75,
            reject_output: "simulated".into(),
        })
    }

    pub(crate) fn record(id: u64, score: f32, threshold: f32) -> PartRecord {
        let reason = crate::judge::Threshold(threshold).judge(score);
        PartRecord {
            run_id: "r".into(),
            device_seq: id,
            id,
            capture_ns: id * 100_000_000,
            frame_ns: None,
            unix_ms: 1_700_000_000_000 + id * 100,
            origin: None,
            score: Some(score),
            threshold,
            verdict: reason.verdict(),
            reason,
            detail: None,
            eject_ns: None,
            latency: StageLatency {
                total_ms: 36.0,
                ..StageLatency::default()
            },
            truth: None,
            defect_kind: None,
        }
    }

    fn part(seq: u64, score: f32, image: Option<&str>) -> LineEvent {
        LineEvent::Part {
            seq,
            record: Arc::new(record(seq - 1, score, 6.75)),
            image: image.map(|n| PathBuf::from("/var/lib/linesight/images").join(n)),
        }
    }

    fn state(run_state: RunState) -> LineEvent {
        LineEvent::State(Arc::new(LineState {
            run_state,
            unix_ms: 0,
            summary: Summary::default(),
            camera: None,
            last_part: None,
        }))
    }

    #[test]
    fn healthy_only_between_the_first_running_state_and_stopping() {
        let mut s = WebState::new(info(), 10, 5, 0);
        assert_eq!(s.phase(), Phase::Starting);
        s.apply(part(1, 1.0, None));
        assert_eq!(
            s.phase(),
            Phase::Starting,
            "a part alone does not say the line is armed"
        );
        s.apply(state(RunState::Running));
        assert_eq!(s.phase(), Phase::Running);
        s.apply(state(RunState::Stopping));
        assert_eq!(s.phase(), Phase::Stopping);
        s.apply(state(RunState::Running));
        assert_eq!(s.phase(), Phase::Stopping, "a stopping line does not come back");
    }

    #[test]
    fn parts_since_gives_the_newer_ones_from_a_bounded_ring() {
        let mut s = WebState::new(info(), 3, 5, 0);
        for seq in 1..=5 {
            s.apply(part(seq, 1.0, None));
        }
        let seqs = |since| s.parts_since(since).map(|p| p.seq).collect::<Vec<_>>();
        assert_eq!(seqs(0), [3, 4, 5], "only the last 3 are kept");
        assert_eq!(seqs(3), [4, 5]);
        assert_eq!(seqs(5), Vec::<u64>::new());
        assert_eq!(seqs(99), Vec::<u64>::new());
        assert_eq!(s.oldest_seq(), Some(3));
    }

    #[test]
    fn counters_by_reason_since_start_and_since_reset() {
        let mut s = WebState::new(info(), 10, 2, 1000);
        s.apply(part(1, 1.0, None));
        s.apply(part(2, 9.0, Some("00000001_above_threshold.png")));
        let old = s.reset(2000);
        assert_eq!((old.parts, old.rejected, old.since_unix_ms), (2, 1, 1000));
        s.apply(part(3, 9.5, Some("00000002_above_threshold.png")));
        s.apply(part(4, 2.0, None));
        assert_eq!(s.since_start().parts, 4);
        assert_eq!(s.since_start().by_reason["above_threshold"], 2);
        assert_eq!(s.since_start().by_reason["below_threshold"], 2);
        let r = s.since_reset();
        assert_eq!((r.parts, r.passed, r.rejected, r.since_unix_ms), (2, 1, 1, 2000));
        assert_eq!(s.rejects().map(|p| p.seq).collect::<Vec<_>>(), [2, 3]);
        let img = s.last_image().unwrap();
        assert_eq!(img.image.as_deref(), Some("00000002_above_threshold.png"));
        assert_eq!(
            img.view().image_url.as_deref(),
            Some("/images/00000002_above_threshold.png"),
            "only the file name leaves the sink, never the folder"
        );
    }

    #[test]
    fn a_part_view_is_its_results_line_with_seq_and_image() {
        let mut s = WebState::new(info(), 10, 2, 0);
        s.apply(part(7, 9.0, Some("00000006_above_threshold.png")));
        let v = serde_json::to_value(s.last_part().unwrap().view()).unwrap();
        assert_eq!(v["seq"], 7);
        assert_eq!(v["id"], 6);
        assert_eq!(v["verdict"], "reject");
        assert_eq!(v["reason"], Reason::AboveThreshold.as_str());
        assert_eq!(v["threshold"], 6.75);
        assert_eq!(v["image_url"], "/images/00000006_above_threshold.png");
    }

    #[test]
    fn the_sane_range_comes_from_the_calibration_and_holds_the_start() {
        let r = ThresholdRange::from_calibration(4.0, 1.0, 10.0, 6.75);
        assert_eq!((r.low, r.high), (4.0, 13.0));
        assert_eq!(r.check(7.5), Ok(7.5));
        assert_eq!(r.check(4.0), Ok(4.0));
        assert!(r.check(3.9).unwrap_err().contains("outside the sane range 4 to 13"));
        assert!(r.check(f32::NAN).unwrap_err().contains("finite"));
        assert!(r.check(f32::INFINITY).is_err());
        let wide = ThresholdRange::from_calibration(4.0, 1.0, 10.0, 20.0);
        assert_eq!(wide.high, 20.0, "the start threshold is always in range");
        let set = ThresholdRange::configured([5.0, 8.0], 6.75);
        assert_eq!((set.low, set.high, set.source), (5.0, 8.0, "http.threshold_range"));
    }
}
