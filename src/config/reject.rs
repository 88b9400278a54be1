//! `[reject]`: when and how the ejector is fired.

use super::{OutputConfig, Problems};
use serde::Deserialize;

/// `[reject]`: when and how the ejector is fired.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RejectConfig {
    /// Time from a part's capture to its arrival at the ejector: the pulse starts then.
    pub delay_ms: u64,
    /// How long the reject output stays asserted for one part (default 50). Pulses that overlap merge.
    #[serde(default = "pulse_ms")]
    pub pulse_ms: u64,
    /// The output that drives the ejector.
    pub output: OutputConfig,
}

// Named field by field: `delay_ms` and `output` are required, so no container default.
fn pulse_ms() -> u64 {
    50
}

impl RejectConfig {
    pub(super) fn validate(&self, p: &mut Problems) {
        if self.pulse_ms == 0 {
            p.bad("reject.pulse_ms", "must be at least 1 ms, or the ejector never fires");
        }
        if self.delay_ms > 60_000 {
            p.bad(
                "reject.delay_ms",
                format!(
                    "expected at most 60000 ms from camera to ejector, found {}",
                    self.delay_ms
                ),
            );
        }
        self.output.validate("reject.output", p);
    }
}
