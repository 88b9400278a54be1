//! `[faults]`: deliberate faults, for commissioning drills and tests of the fail-safe path.

use super::{range, Problems};
use serde::Deserialize;

/// `[faults]`: each `*_every = N` injects that fault into every N-th part (0 = never, the
/// default; any 64-bit count).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FaultsConfig {
    /// Deliver a corrupted frame (its pixel buffer cut short).
    pub broken_frame_every: u64,
    /// Make the inference call fail.
    pub inference_error_every: u64,
    /// Stall the inference by `slow_inference_ms` (a deadline miss when it exceeds `decision.deadline_ms`).
    pub slow_inference_every: u64,
    /// Length of an injected stall (default 1000, 1 to 60000 ms).
    pub slow_inference_ms: u64,
    /// Unplug the camera after this many frames (once): its parts become `camera_lost`
    /// rejects and the fault output is asserted until it is back (a drill of the fault wiring;
    /// any 64-bit count).
    pub camera_loss_at_part: Option<u64>,
    /// How long the drilled camera stays unplugged (reopen tries fail meanwhile; default 1000,
    /// 1 to 600000 ms).
    pub camera_loss_ms: u64,
}

impl Default for FaultsConfig {
    fn default() -> Self {
        FaultsConfig {
            broken_frame_every: 0,
            inference_error_every: 0,
            slow_inference_every: 0,
            slow_inference_ms: 1000,
            camera_loss_at_part: None,
            camera_loss_ms: 1000,
        }
    }
}

impl FaultsConfig {
    pub(super) fn validate(&self, p: &mut Problems) {
        if self.slow_inference_every > 0 && self.slow_inference_ms == 0 {
            p.bad(
                "faults.slow_inference_ms",
                "must be at least 1 ms when faults.slow_inference_every is set",
            );
        } else if self.slow_inference_ms > 0 {
            range(p, "faults.slow_inference_ms", self.slow_inference_ms, 1, 60_000, "ms");
        }
        range(p, "faults.camera_loss_ms", self.camera_loss_ms, 1, 600_000, "ms");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drilled_stalls_and_outages_have_their_bounds() {
        let c = FaultsConfig {
            slow_inference_ms: 60_001,
            camera_loss_ms: 0,
            ..Default::default()
        };
        assert_eq!(
            Problems::of(|p| c.validate(p)),
            [
                "faults.slow_inference_ms: expected 1 to 60000 ms, found 60001",
                "faults.camera_loss_ms: expected 1 to 600000 ms, found 0",
            ]
        );
        assert!(Problems::of(|p| FaultsConfig::default().validate(p)).is_empty());
    }
}
