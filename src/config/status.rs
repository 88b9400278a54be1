//! `[status]`: linesight's own health: the fault output, and how a lost camera is detected
//! and reopened.

use super::{range, OutputConfig, Problems};
use serde::Deserialize;

/// `[status]`
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StatusConfig {
    /// Output asserted while the camera is lost, and while storage refuses or blocks results
    /// lines (from the failure until 5 s after the last one), for a stack light or the line
    /// PLC; same keys as `[reject.output]`. Unset: faults are only logged and counted.
    pub fault_line: Option<OutputConfig>,
    /// A camera (v4l2, gstreamer) that delivers no frame for this long is lost (default 2000,
    /// 0 to 600000; 0: never, for cameras that are idle between parts). Keep it well below `reject.delay_ms` in
    /// free run, so that the parts of an outage can still be ejected.
    pub camera_stall_ms: u64,
    /// Wait before the first try to reopen a lost camera (default 100, 1 to 60000); doubles
    /// after each failed try.
    pub camera_retry_ms: u64,
    /// Longest wait between tries to reopen a lost camera (default 5000, `camera_retry_ms` to 600000).
    pub camera_retry_max_ms: u64,
}

impl Default for StatusConfig {
    fn default() -> Self {
        StatusConfig {
            fault_line: None,
            camera_stall_ms: 2000,
            camera_retry_ms: 100,
            camera_retry_max_ms: 5000,
        }
    }
}

impl StatusConfig {
    pub(super) fn validate(&self, p: &mut Problems) {
        if let Some(line) = &self.fault_line {
            line.validate("status.fault_line", p);
        }
        if self.camera_retry_ms == 0 {
            p.bad("status.camera_retry_ms", "must be at least 1 ms");
        } else {
            range(p, "status.camera_retry_ms", self.camera_retry_ms, 1, 60_000, "ms");
        }
        range(p, "status.camera_stall_ms", self.camera_stall_ms, 0, 600_000, "ms");
        if self.camera_retry_max_ms < self.camera_retry_ms {
            p.bad(
                "status.camera_retry_max_ms",
                format!(
                    "must be at least status.camera_retry_ms ({} ms); found {} ms",
                    self.camera_retry_ms, self.camera_retry_max_ms
                ),
            );
        } else {
            range(
                p,
                "status.camera_retry_max_ms",
                self.camera_retry_max_ms,
                1,
                600_000,
                "ms",
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn camera_timings_have_their_bounds() {
        let c = StatusConfig {
            camera_stall_ms: u64::MAX,
            camera_retry_ms: 60_001,
            camera_retry_max_ms: 600_001,
            ..Default::default()
        };
        assert_eq!(
            Problems::of(|p| c.validate(p)),
            [
                "status.camera_retry_ms: expected 1 to 60000 ms, found 60001",
                "status.camera_stall_ms: expected 0 to 600000 ms, found 18446744073709551615",
                "status.camera_retry_max_ms: expected 1 to 600000 ms, found 600001",
            ]
        );
    }
}
