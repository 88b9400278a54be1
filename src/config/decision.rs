//! `[decision]`: how a score becomes a verdict, and by when.

use super::Problems;
use serde::Deserialize;

/// `[decision]`
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DecisionConfig {
    /// Score above which a part is rejected. Unset: the threshold calibrated in the model manifest.
    pub threshold: Option<f32>,
    /// A part with no verdict this long after its capture is rejected (fail-safe; default 200).
    /// Must be shorter than `reject.delay_ms`, so that the pulse can still be scheduled.
    pub deadline_ms: u64,
    /// Frames waiting for inference at most (default 4); a part arriving to a full queue is
    /// rejected as overload.
    pub queue_depth: usize,
}

impl Default for DecisionConfig {
    fn default() -> Self {
        DecisionConfig {
            threshold: None,
            deadline_ms: 200,
            queue_depth: 4,
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
        }
    }
}
