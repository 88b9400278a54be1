//! `[trigger]`: what makes a part: every frame, or a part-present sensor on a GPIO input.

use super::output::check_gpio_line;
use super::{LineRef, Problems};
use serde::Deserialize;

/// `[trigger]`, chosen by `kind`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum TriggerConfig {
    /// No sensor: every frame the camera delivers is a part.
    #[default]
    FreeRun,
    /// A part-present sensor on a GPIO input: each edge is a part, stamped by the kernel,
    /// and the camera frame captured inside its window is that part's image. A part with no
    /// frame in its window is rejected (`missing_frame`, or `camera_lost` while the camera is down).
    Gpio(GpioTrigger),
}

/// `[trigger] kind = "gpio"`
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GpioTrigger {
    /// The GPIO chip: a path (`/dev/gpiochip0`) or a label (`tegra234-gpio`, `9030000.pl061`).
    pub chip: String,
    /// The input line: an offset (`3`) or a line name (`"PAC.00"`).
    pub line: LineRef,
    /// Which physical edge marks a part: "rising" (default) or "falling".
    #[serde(default)]
    pub edge: TriggerEdge,
    /// Line bias: "pull_up", "pull_down" or "disabled". Unset: as the board has it.
    pub bias: Option<LineBias>,
    /// Edges this soon after an accepted edge are contact bounce and ignored (microseconds;
    /// default 2000, 0 to 1000000). The part keeps the kernel timestamp of its first edge.
    #[serde(default = "debounce_us")]
    pub debounce_us: u64,
    /// Earliest frame capture time that belongs to a part, in ms after its edge (default 0;
    /// below `window_end_ms`).
    #[serde(default)]
    pub window_start_ms: u64,
    /// Latest frame capture time that belongs to a part, in ms after its edge (default 50); the
    /// part waits this long for its frame. Must be shorter than `decision.deadline_ms`.
    #[serde(default = "window_end_ms")]
    pub window_end_ms: u64,
}

// Named field by field: `chip` and `line` are required, so no container default.
fn debounce_us() -> u64 {
    2000
}
fn window_end_ms() -> u64 {
    50
}

/// `trigger.edge`
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TriggerEdge {
    #[default]
    Rising,
    Falling,
}

/// `trigger.bias`
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LineBias {
    PullUp,
    PullDown,
    Disabled,
}

impl TriggerConfig {
    /// The window against `decision.deadline_ms` is a cross-section check, in mod.rs.
    pub(super) fn validate(&self, p: &mut Problems) {
        let TriggerConfig::Gpio(t) = self else { return };
        check_gpio_line(p, "trigger", &t.chip, &t.line);
        if t.window_start_ms >= t.window_end_ms {
            p.bad(
                "trigger.window_end_ms",
                format!(
                    "must be later than trigger.window_start_ms ({} ms); found {} ms",
                    t.window_start_ms, t.window_end_ms
                ),
            );
        }
        if t.debounce_us > 1_000_000 {
            p.bad(
                "trigger.debounce_us",
                format!("expected at most 1000000 µs (1 s), found {}", t.debounce_us),
            );
        }
    }
}
