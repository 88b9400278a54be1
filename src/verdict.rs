//! Score → verdict, and the fail-safe rule: anything but a clean score below the
//! threshold rejects the part.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Pass,
    Reject,
}

/// Why a part got its verdict. Only `BelowThreshold` passes a part.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// Inspected: score at or below the threshold.
    BelowThreshold,
    /// Inspected: score above the threshold.
    AboveThreshold,
    /// No verdict by `decision.deadline_ms` after capture.
    DeadlineMissed,
    /// The model could not be run on this part.
    InferenceError,
    /// The frame could not be read or was malformed.
    BrokenFrame,
    /// The inspection queue was full when the part arrived.
    Overload,
    /// A trigger's window closed with no frame from a working camera.
    MissingFrame,
    /// The camera was lost (error, stall, unplugged) when the part passed.
    CameraLost,
}

impl Reason {
    pub fn verdict(self) -> Verdict {
        match self {
            Reason::BelowThreshold => Verdict::Pass,
            _ => Verdict::Reject,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::BelowThreshold => "below_threshold",
            Reason::AboveThreshold => "above_threshold",
            Reason::DeadlineMissed => "deadline_missed",
            Reason::InferenceError => "inference_error",
            Reason::BrokenFrame => "broken_frame",
            Reason::Overload => "overload",
            Reason::MissingFrame => "missing_frame",
            Reason::CameraLost => "camera_lost",
        }
    }
}

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
