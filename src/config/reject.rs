//! `[reject]`: when and how the ejector is fired.

use super::{range, OutputConfig, Problems};
use serde::Deserialize;

/// `[reject]`: when and how the ejector is fired.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RejectConfig {
    /// Time from a part's capture to its arrival at the ejector, 2 to 60000 ms: the pulse
    /// starts then. Must be longer than `decision.deadline_ms`.
    pub delay_ms: u64,
    /// How long the reject output stays asserted for one part (default 50, 1 to 5000).
    /// Pulses that overlap merge.
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
        } else {
            range(p, "reject.pulse_ms", self.pulse_ms, 1, 5000, "ms");
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pulse_that_would_wrap_or_hold_the_ejector_is_refused() {
        for (pulse_ms, delay_ms, want) in [
            (
                18_446_744_073_710,
                300,
                vec!["reject.pulse_ms: expected 1 to 5000 ms, found 18446744073710"],
            ),
            (
                0,
                300,
                vec!["reject.pulse_ms: must be at least 1 ms, or the ejector never fires"],
            ),
            (
                5000,
                60_001,
                vec!["reject.delay_ms: expected at most 60000 ms from camera to ejector, found 60001"],
            ),
            (1, 2, vec![]),
        ] {
            let c = RejectConfig {
                delay_ms,
                pulse_ms,
                output: OutputConfig::Simulated { edge_log: None },
            };
            assert_eq!(Problems::of(|p| c.validate(p)), want, "{pulse_ms} {delay_ms}");
        }
    }
}
