//! The fail-safe core: decides every part, strictly in capture order, by its deadline.
//!
//! A part is announced when it passes the camera ([`Judge::captured`]) and its outcome
//! comes later from inspection ([`Judge::outcome`]). [`Judge::decide`] gives every
//! decision that can be made at the time passed in: the front part waits for its outcome
//! until its deadline, then is rejected `deadline_missed`; parts behind it wait their turn.
//! An outcome for a part already decided is counted as late and changes nothing.
//!
//! A pure state machine, like `source::trigger::Matcher` and `actuate::PulsePlan`: it
//! never reads the clock, so it is tested without sleeping. The pipeline's judge thread
//! feeds it, wakes it at [`Judge::next_due_ns`], and carries its decisions to the
//! ejector and the results log.
//!
//! The verdict rule is here, once: only a finite score at or below the threshold passes
//! (see [`Threshold`]); every other reason rejects the part.

use crate::clock;
use crate::frame::{Reason, Truth, Verdict};
use std::collections::VecDeque;

/// The decision rule for an inspected part.
#[derive(Debug, Clone, Copy)]
pub struct Threshold(pub f32);

impl Threshold {
    /// A score exactly at the threshold passes: the calibrated threshold already has its margin.
    pub fn judge(self, score: f32) -> Reason {
        if score.is_finite() && score <= self.0 {
            Reason::BelowThreshold
        } else {
            Reason::AboveThreshold
        }
    }
}

/// A score as `Threshold::judge` ranks it, for AUROC and ROC curves: one that is not a
/// finite number rejects at every threshold, so it ranks as the most anomalous (+inf).
pub fn rank_score(score: f32) -> f32 {
    if score.is_finite() {
        score
    } else {
        f32::INFINITY
    }
}

/// The line's timing, in CLOCK_MONOTONIC ns, every rule that runs from a part's capture.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// Capture → the latest moment a verdict may be given (`decision.deadline_ms`).
    pub deadline_ns: u64,
    /// Capture → the part is at the ejector (`reject.delay_ms`).
    pub reject_delay_ns: u64,
    /// How long the ejector fires (`reject.pulse_ms`).
    pub pulse_ns: u64,
}

impl Timing {
    /// When a part captured at `capture_ns` must have its verdict.
    pub fn deadline_of(&self, capture_ns: u64) -> u64 {
        capture_ns + self.deadline_ns
    }

    /// A rejected part's ejector window, [start_ns, end_ns).
    pub fn eject_window(&self, capture_ns: u64) -> [u64; 2] {
        let start = capture_ns + self.reject_delay_ns;
        [start, start + self.pulse_ns]
    }

    /// Why a part must not be inspected when inspection could start at `now_ns`: its
    /// deadline has passed, so the judge has rejected it already, and running the model
    /// would only delay the parts behind it (after a stall the stage catches up at once).
    pub fn expired_before_inspection(&self, capture_ns: u64, now_ns: u64) -> Option<Failure> {
        (now_ns >= self.deadline_of(capture_ns)).then(|| {
            Failure::new(
                Reason::DeadlineMissed,
                format!(
                    "not inspected: {} ms after capture when inspection could start (deadline {} ms)",
                    (now_ns - capture_ns) / 1_000_000,
                    self.deadline_ns / 1_000_000
                ),
            )
        })
    }
}

/// Why a part has no score: its fail-safe reason and what went wrong.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub reason: Reason,
    pub detail: String,
}

impl Failure {
    pub fn new(reason: Reason, detail: impl Into<String>) -> Failure {
        Failure {
            reason,
            detail: detail.into(),
        }
    }
}

/// A part as it passed the camera, announced to the judge before inspection starts.
#[derive(Debug, Clone)]
pub struct Captured {
    pub id: u64,
    pub capture_ns: u64,
    /// With a trigger: the capture time of the frame matched to the part, if any.
    pub frame_ns: Option<u64>,
    /// The part has no image (missing frame, camera lost): its outcome is known already.
    pub no_image: Option<Failure>,
    pub truth: Option<Truth>,
    pub origin: Option<String>,
}

/// How long inspection took, per stage, in ms; `None` where a stage did not run.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct InspectionLatency {
    /// Capture → the inference worker picked the frame up.
    pub queue_ms: Option<f64>,
    pub preprocess_ms: Option<f64>,
    pub inference_ms: Option<f64>,
}

/// What inspection made of a part. `S` is whatever the record wants kept with the
/// verdict (the frame and its anomaly map); the judge only carries it along.
#[derive(Debug)]
pub struct Outcome<S> {
    pub id: u64,
    pub result: Result<f32, Failure>,
    pub latency: InspectionLatency,
    pub snapshot: Option<S>,
}

/// A part's verdict, with all the record and the ejector need.
#[derive(Debug)]
pub struct Decision<S> {
    pub id: u64,
    pub capture_ns: u64,
    pub frame_ns: Option<u64>,
    /// Wall-clock time of the verdict (Unix ms).
    pub unix_ms: u64,
    /// The anomaly score; `None` when the part could not be inspected.
    pub score: Option<f32>,
    pub threshold: f32,
    pub verdict: Verdict,
    pub reason: Reason,
    /// What went wrong, for fail-safe rejects.
    pub detail: Option<String>,
    /// The ejector window [start_ns, end_ns), for rejects.
    pub eject_ns: Option<[u64; 2]>,
    pub latency: InspectionLatency,
    /// Capture → verdict.
    pub total_ms: f64,
    pub truth: Option<Truth>,
    pub origin: Option<String>,
    pub snapshot: Option<S>,
}

/// A part waiting for its verdict, with its outcome once that has come.
#[derive(Debug)]
struct Pending<S> {
    part: Captured,
    outcome: Option<Outcome<S>>,
}

/// Decides parts in capture order by their deadlines. Time is passed in.
#[derive(Debug)]
pub struct Judge<S> {
    threshold: Threshold,
    timing: Timing,
    /// In capture order; the front is the next to be decided.
    pending: VecDeque<Pending<S>>,
    late_outcomes: u64,
}

impl<S> Judge<S> {
    pub fn new(threshold: Threshold, timing: Timing) -> Judge<S> {
        Judge {
            threshold,
            timing,
            pending: VecDeque::new(),
            late_outcomes: 0,
        }
    }

    /// The threshold for the parts decided from the next [`Judge::decide`] on (a change
    /// from the plant side takes effect between parts; the caller checks its range).
    pub fn set_threshold(&mut self, threshold: Threshold) {
        self.threshold = threshold;
    }

    /// A part passed the camera. One without an image has its outcome at once.
    pub fn captured(&mut self, mut part: Captured) {
        let outcome = part.no_image.take().map(|failure| Outcome {
            id: part.id,
            result: Err(failure),
            latency: InspectionLatency::default(),
            snapshot: None,
        });
        self.pending.push_back(Pending { part, outcome });
    }

    /// Inspection's outcome for a part. One for a part no longer waiting (decided at its
    /// deadline) or already given its outcome is counted as late; the first one stands.
    pub fn outcome(&mut self, outcome: Outcome<S>) {
        match self
            .pending
            .iter_mut()
            .find(|p| p.part.id == outcome.id && p.outcome.is_none())
        {
            Some(waiting) => waiting.outcome = Some(outcome),
            None => self.late_outcomes += 1,
        }
    }

    /// The next decision that can be made at `now_ns`, in capture order: the front part,
    /// if it has its outcome or its deadline has come. `unix_ms` stamps the verdict. Called
    /// until it gives None; nothing is allocated on the way for a part judged on its score.
    pub fn next_decision(&mut self, now_ns: u64, unix_ms: u64) -> Option<Decision<S>> {
        let front = self.pending.front()?;
        if front.outcome.is_none() && now_ns < self.timing.deadline_of(front.part.capture_ns) {
            return None;
        }
        let Pending { part, outcome } = self.pending.pop_front().expect("front exists");
        let outcome = outcome.unwrap_or_else(|| Outcome {
            id: part.id,
            result: Err(Failure::new(
                Reason::DeadlineMissed,
                format!(
                    "no verdict within {} ms of capture",
                    self.timing.deadline_ns / 1_000_000
                ),
            )),
            latency: InspectionLatency::default(),
            snapshot: None,
        });
        Some(self.verdict(part, outcome, now_ns, unix_ms))
    }

    /// Every decision that can be made at `now_ns` ([`Judge::next_decision`] until None).
    pub fn decide(&mut self, now_ns: u64, unix_ms: u64) -> Vec<Decision<S>> {
        std::iter::from_fn(|| self.next_decision(now_ns, unix_ms)).collect()
    }

    /// When [`Judge::next_decision`] must next be called, if a part waits: the front part's
    /// deadline. Outcomes and new parts may make a decision possible sooner.
    pub fn next_due_ns(&self) -> Option<u64> {
        self.pending.front().map(|p| self.timing.deadline_of(p.part.capture_ns))
    }

    /// True while a part waits for its verdict. Once the inputs have closed, the judge is
    /// done when this is false: every part seen has been decided.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Outcomes that came for a part no longer waiting for one (see [`Judge::outcome`]).
    pub fn late_outcomes(&self) -> u64 {
        self.late_outcomes
    }

    fn verdict(&self, part: Captured, outcome: Outcome<S>, now_ns: u64, unix_ms: u64) -> Decision<S> {
        let (score, reason, detail) = match outcome.result {
            Ok(score) => (Some(score), self.threshold.judge(score), None),
            Err(Failure { reason, detail }) => (None, reason, Some(detail)),
        };
        let verdict = reason.verdict();
        let eject_ns = (verdict == Verdict::Reject).then(|| self.timing.eject_window(part.capture_ns));
        Decision {
            id: part.id,
            capture_ns: part.capture_ns,
            frame_ns: part.frame_ns,
            unix_ms,
            score,
            threshold: self.threshold.0,
            verdict,
            reason,
            detail,
            eject_ns,
            latency: outcome.latency,
            total_ms: clock::ns_to_ms(now_ns.saturating_sub(part.capture_ns)),
            truth: part.truth,
            origin: part.origin,
            snapshot: outcome.snapshot,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;
    const TIMING: Timing = Timing {
        deadline_ns: 150 * MS,
        reject_delay_ns: 300 * MS,
        pulse_ns: 40 * MS,
    };

    /// Every reason but a clean score: each must reject.
    const FAIL_SAFE: [Reason; 6] = [
        Reason::DeadlineMissed,
        Reason::InferenceError,
        Reason::BrokenFrame,
        Reason::Overload,
        Reason::MissingFrame,
        Reason::CameraLost,
    ];

    fn judge() -> Judge<()> {
        Judge::new(Threshold(0.5), TIMING)
    }

    /// A judge that has seen `count` parts, captured `every_ns` apart from time 0.
    fn judge_with_parts(count: u64, every_ns: u64) -> Judge<()> {
        let mut j = judge();
        for id in 0..count {
            j.captured(part(id, id * every_ns));
        }
        j
    }

    fn part(id: u64, capture_ns: u64) -> Captured {
        Captured {
            id,
            capture_ns,
            frame_ns: None,
            no_image: None,
            truth: None,
            origin: None,
        }
    }

    fn lost(id: u64, capture_ns: u64, reason: Reason) -> Captured {
        Captured {
            no_image: Some(Failure::new(reason, "camera gone")),
            ..part(id, capture_ns)
        }
    }

    fn scored(id: u64, score: f32) -> Outcome<()> {
        Outcome {
            id,
            result: Ok(score),
            latency: InspectionLatency::default(),
            snapshot: None,
        }
    }

    fn failed(id: u64, reason: Reason) -> Outcome<()> {
        Outcome {
            result: Err(Failure::new(reason, "it broke")),
            ..scored(id, 0.0)
        }
    }

    fn ids(decisions: &[Decision<()>]) -> Vec<u64> {
        decisions.iter().map(|d| d.id).collect()
    }

    #[test]
    fn only_a_clean_low_score_passes() {
        let t = Threshold(0.5);
        assert_eq!(t.judge(0.49).verdict(), Verdict::Pass);
        assert_eq!(t.judge(0.5).verdict(), Verdict::Pass);
        assert_eq!(t.judge(0.51).verdict(), Verdict::Reject);
        assert_eq!(t.judge(f32::NAN).verdict(), Verdict::Reject);
        for r in FAIL_SAFE {
            assert_eq!(r.verdict(), Verdict::Reject, "{r:?} must be fail-safe");
        }
    }

    #[test]
    fn a_part_without_outcome_is_rejected_deadline_missed_exactly_at_its_deadline() {
        let mut j = judge();
        j.captured(part(0, 1_000 * MS));
        let due = 1_150 * MS;
        assert_eq!(j.next_due_ns(), Some(due));
        assert!(j.decide(due - 1, 0).is_empty(), "not a nanosecond before the deadline");
        assert!(j.has_pending());
        let d = j.decide(due, 7).pop().unwrap();
        assert_eq!(
            (d.id, d.verdict, d.reason),
            (0, Verdict::Reject, Reason::DeadlineMissed)
        );
        assert_eq!(d.detail.as_deref(), Some("no verdict within 150 ms of capture"));
        assert_eq!((d.score, d.unix_ms, d.total_ms), (None, 7, 150.0));
        assert!(!j.has_pending());
        assert_eq!(j.next_due_ns(), None);
    }

    #[test]
    fn outcomes_out_of_order_are_decided_in_capture_order() {
        let mut j = judge_with_parts(3, 10 * MS);
        j.outcome(scored(2, 0.1));
        j.outcome(scored(1, 0.9));
        assert!(j.decide(20 * MS, 0).is_empty(), "part 0 is still in time and first");
        j.outcome(scored(0, 0.2));
        let d = j.decide(21 * MS, 0);
        assert_eq!(ids(&d), [0, 1, 2]);
        let reasons: Vec<Reason> = d.iter().map(|d| d.reason).collect();
        assert_eq!(
            reasons,
            [Reason::BelowThreshold, Reason::AboveThreshold, Reason::BelowThreshold]
        );
        assert_eq!(d[1].score, Some(0.9));
    }

    #[test]
    fn a_late_outcome_is_counted_and_decides_nothing_twice() {
        let mut j = judge();
        j.captured(part(0, 0));
        assert_eq!(j.decide(150 * MS, 0)[0].reason, Reason::DeadlineMissed);
        j.outcome(scored(0, 0.1));
        assert_eq!(j.late_outcomes(), 1);
        assert!(j.decide(1_000 * MS, 0).is_empty());
        assert!(!j.has_pending());

        // A second outcome for a part still waiting: the first stands.
        j.captured(part(1, 2_000 * MS));
        j.outcome(failed(1, Reason::InferenceError));
        j.outcome(scored(1, 0.1));
        assert_eq!(j.late_outcomes(), 2);
        let d = j.decide(2_001 * MS, 0);
        assert_eq!(ids(&d), [1]);
        assert_eq!(d[0].reason, Reason::InferenceError);
    }

    #[test]
    fn a_stall_holds_the_parts_behind_until_the_fronts_deadline_then_decides_them_at_once() {
        let mut j = judge_with_parts(4, 10 * MS);
        for id in 1..4 {
            j.outcome(scored(id, 0.1));
        }
        assert!(j.decide(149 * MS, 0).is_empty(), "held behind part 0");
        assert_eq!(j.next_due_ns(), Some(150 * MS));
        let d = j.decide(150 * MS, 0);
        assert_eq!(ids(&d), [0, 1, 2, 3]);
        assert_eq!(d[0].reason, Reason::DeadlineMissed);
        assert!(d[1..].iter().all(|d| d.reason == Reason::BelowThreshold));
        // Decided when they could be: capture → verdict includes the wait.
        assert_eq!(d[3].total_ms, 120.0);
    }

    #[test]
    fn parts_without_an_image_are_decided_in_order_with_their_reason() {
        let mut j = judge();
        j.captured(lost(0, 0, Reason::CameraLost));
        j.captured(part(1, MS));
        j.captured(lost(2, 2 * MS, Reason::MissingFrame));
        let d = j.decide(2 * MS, 0);
        assert_eq!(ids(&d), [0], "part 2 waits behind part 1");
        assert_eq!(
            (d[0].reason, d[0].detail.as_deref()),
            (Reason::CameraLost, Some("camera gone"))
        );
        j.outcome(scored(1, 0.3));
        let d = j.decide(3 * MS, 0);
        assert_eq!(ids(&d), [1, 2]);
        assert_eq!(d[1].reason, Reason::MissingFrame);
        assert_eq!(d[1].verdict, Verdict::Reject);
    }

    #[test]
    fn the_shutdown_drain_decides_every_pending_part_at_its_deadline_then_is_done() {
        let mut j = judge_with_parts(3, 100 * MS);
        j.outcome(scored(1, 0.1));
        // The inputs close here: only time moves on.
        let mut decided = Vec::new();
        while j.has_pending() {
            let due = j.next_due_ns().unwrap();
            decided.extend(j.decide(due, 0).into_iter().map(|d| (d.id, d.reason, d.total_ms)));
        }
        assert_eq!(
            decided,
            [
                (0, Reason::DeadlineMissed, 150.0),
                (1, Reason::BelowThreshold, 50.0),
                (2, Reason::DeadlineMissed, 150.0),
            ]
        );
        assert_eq!(j.next_due_ns(), None);
    }

    #[test]
    fn a_reject_ejects_from_capture_plus_delay_for_the_pulse_and_a_pass_never() {
        let mut j = judge();
        j.captured(part(0, 1_000 * MS));
        j.captured(part(1, 1_010 * MS));
        j.outcome(scored(0, 0.9));
        j.outcome(scored(1, 0.1));
        let d = j.decide(1_050 * MS, 0);
        assert_eq!(d[0].eject_ns, Some([1_300 * MS, 1_340 * MS]));
        assert_eq!(d[1].eject_ns, None);
        assert_eq!(TIMING.eject_window(0), [300 * MS, 340 * MS]);
    }

    #[test]
    fn a_score_at_the_threshold_passes_and_nan_or_infinity_rejects() {
        let mut j = judge();
        let scores = [0.5, f32::NAN, f32::INFINITY, 0.500_001];
        for (id, &s) in scores.iter().enumerate() {
            j.captured(part(id as u64, 0));
            j.outcome(scored(id as u64, s));
        }
        let d = j.decide(0, 0);
        let verdicts: Vec<(Verdict, bool)> = d.iter().map(|d| (d.verdict, d.eject_ns.is_some())).collect();
        assert_eq!(
            verdicts,
            [
                (Verdict::Pass, false),
                (Verdict::Reject, true),
                (Verdict::Reject, true),
                (Verdict::Reject, true)
            ]
        );
        assert!(d.iter().all(|d| d.threshold == 0.5));
    }

    #[test]
    fn a_fail_safe_reason_never_passes() {
        let mut j = judge();
        for (id, &r) in FAIL_SAFE.iter().enumerate() {
            j.captured(part(id as u64, 0));
            j.outcome(failed(id as u64, r));
        }
        for d in j.decide(0, 0) {
            assert_eq!(d.reason, FAIL_SAFE[d.id as usize]);
            assert_eq!(d.verdict, Verdict::Reject, "{:?} must be fail-safe", d.reason);
            assert!(d.eject_ns.is_some() && d.score.is_none() && d.detail.is_some());
        }
    }

    #[test]
    fn a_part_whose_deadline_passed_in_the_queue_is_not_inspected() {
        assert_eq!(TIMING.expired_before_inspection(1_000 * MS, 1_150 * MS - 1), None);
        let f = TIMING.expired_before_inspection(1_000 * MS, 1_212 * MS).unwrap();
        assert_eq!(f.reason, Reason::DeadlineMissed);
        assert_eq!(
            f.detail,
            "not inspected: 212 ms after capture when inspection could start (deadline 150 ms)"
        );
        assert!(TIMING.expired_before_inspection(1_000 * MS, 1_150 * MS).is_some());
    }

    #[test]
    fn a_new_threshold_decides_the_parts_after_it_and_is_recorded_with_them() {
        let mut j = judge_with_parts(2, 10 * MS);
        j.outcome(scored(0, 0.7));
        let first = j.decide(20 * MS, 0);
        assert_eq!((first[0].verdict, first[0].threshold), (Verdict::Reject, 0.5));
        j.set_threshold(Threshold(0.8));
        j.outcome(scored(1, 0.7));
        let second = j.decide(30 * MS, 0);
        assert_eq!((second[0].verdict, second[0].threshold), (Verdict::Pass, 0.8));
    }
}
