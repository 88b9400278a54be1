//! `[faults]`: deliberate faults, for commissioning drills and tests of the fail-safe path.

use super::Problems;
use serde::Deserialize;

/// `[faults]`: each `*_every = N` injects that fault into every N-th part (0 = never, the default).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FaultsConfig {
    /// Deliver a corrupted frame (its pixel buffer cut short).
    pub broken_frame_every: u64,
    /// Make the inference call fail.
    pub inference_error_every: u64,
    /// Stall the inference by `slow_inference_ms` (a deadline miss when it exceeds `decision.deadline_ms`).
    pub slow_inference_every: u64,
    /// Length of an injected stall (default 1000).
    pub slow_inference_ms: u64,
    /// Unplug the camera after this many frames (once): its parts become `camera_lost`
    /// rejects and the fault output is asserted until it is back (a drill of the fault wiring).
    pub camera_loss_at_part: Option<u64>,
    /// How long the drilled camera stays unplugged (reopen tries fail meanwhile; default 1000).
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
        }
    }
}
