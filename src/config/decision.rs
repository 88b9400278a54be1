//! `[decision]`: how a score becomes a verdict, and by when.

use super::{range, Problems};
use serde::Deserialize;

/// `[decision]`
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DecisionConfig {
    /// Score above which a part is rejected: any finite number. Unset: the threshold
    /// calibrated in the model manifest. `linesight check` warns when it lies outside what
    /// the manifest's calibration makes plausible (below the good parts' mean score, or
    /// above their highest plus 3 standard deviations) and says what that implies.
    pub threshold: Option<f32>,
    /// A part with no verdict this long after its capture is rejected (fail-safe; default
    /// 200, 1 to 59999). Must be shorter than `reject.delay_ms`, so that the pulse can
    /// still be scheduled.
    pub deadline_ms: u64,
    /// Frames waiting for inference at most (default 4, 1 to 64); a part arriving to a full
    /// queue is rejected as overload. Frames held for inspection take at most
    /// `queue_depth + 2` times the largest frame `max_frame_scale` allows.
    pub queue_depth: usize,
    /// The largest and smallest frame inspected, relative to the model's input (default 16,
    /// 1 to 64): a frame wider than `max_frame_scale` times the input width (or higher than
    /// that many times its height), or narrower (lower) than the input's width (height)
    /// divided by it, is rejected as `broken_frame` with its size as the reason. Image
    /// files are checked from their header, before they are decoded. For a 128x128 model
    /// the default takes frames from 8x8 to 2048x2048 pixels.
    pub max_frame_scale: u32,
}

impl Default for DecisionConfig {
    fn default() -> Self {
        DecisionConfig {
            threshold: None,
            deadline_ms: 200,
            queue_depth: 4,
            max_frame_scale: 16,
        }
    }
}

impl DecisionConfig {
    /// The deadline against `reject.delay_ms` is a cross-section check, in mod.rs.
    pub(super) fn validate(&self, p: &mut Problems) {
        if let Some(t) = self.threshold.filter(|t| !t.is_finite()) {
            p.bad("decision.threshold", format!("expected a finite score, found {t}"));
        }
        if self.deadline_ms == 0 {
            p.bad(
                "decision.deadline_ms",
                "must be at least 1 ms: a part needs time to be inspected",
            );
        }
        if self.queue_depth == 0 {
            p.bad("decision.queue_depth", "must be at least 1 frame");
        } else {
            range(p, "decision.queue_depth", self.queue_depth as u64, 1, 64, "frames");
        }
        range(
            p,
            "decision.max_frame_scale",
            self.max_frame_scale.into(),
            1,
            64,
            "times the model input",
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_number_has_its_bounds() {
        let c = DecisionConfig {
            threshold: Some(f32::NAN),
            deadline_ms: 0,
            queue_depth: 100_000_000_000,
            max_frame_scale: 0,
        };
        assert_eq!(
            Problems::of(|p| c.validate(p)),
            [
                "decision.threshold: expected a finite score, found NaN",
                "decision.deadline_ms: must be at least 1 ms: a part needs time to be inspected",
                "decision.queue_depth: expected 1 to 64 frames, found 100000000000",
                "decision.max_frame_scale: expected 1 to 64 times the model input, found 0",
            ]
        );
        assert!(Problems::of(|p| DecisionConfig::default().validate(p)).is_empty());
        let zero = DecisionConfig {
            queue_depth: 0,
            ..Default::default()
        };
        assert_eq!(
            Problems::of(|p| zero.validate(p)),
            ["decision.queue_depth: must be at least 1 frame"]
        );
    }
}
