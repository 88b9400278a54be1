//! Score → verdict, and the fail-safe rule: anything but a clean score below the
//! threshold rejects the part.

use crate::frame::Reason;
#[cfg(test)]
use crate::frame::Verdict;

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_clean_low_score_passes() {
        let t = Threshold(0.5);
        assert_eq!(t.judge(0.49).verdict(), Verdict::Pass);
        assert_eq!(t.judge(0.5).verdict(), Verdict::Pass);
        assert_eq!(t.judge(0.51).verdict(), Verdict::Reject);
        assert_eq!(t.judge(f32::NAN).verdict(), Verdict::Reject);
        for r in [
            Reason::DeadlineMissed,
            Reason::InferenceError,
            Reason::BrokenFrame,
            Reason::Overload,
            Reason::MissingFrame,
            Reason::CameraLost,
        ] {
            assert_eq!(r.verdict(), Verdict::Reject, "{r:?} must be fail-safe");
        }
    }
}
