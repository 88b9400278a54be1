//! An output line, as `[reject.output]` and `[status] fault_line` write it, and the GPIO
//! line check that these and `[trigger]` share.

use super::Problems;
use serde::Deserialize;
use std::fmt;
use std::path::PathBuf;

/// `[reject.output]` and `status.fault_line`, chosen by `kind`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum OutputConfig {
    /// A GPIO line through the kernel's character device.
    Gpio {
        /// The GPIO chip: a path (`/dev/gpiochip0`) or a chip label (`tegra234-gpio`).
        /// Labels are stable across boots; chip numbers are not.
        chip: String,
        /// The line: an offset on the chip (`5`) or a line name (`"PAC.06"`).
        line: LineRef,
        /// The ejector fires on a low level (the reject is asserted by driving the line low).
        #[serde(default)]
        active_low: bool,
    },
    /// No hardware: every edge is kept with its time, and written to `edge_log` if set.
    Simulated {
        /// File for the edge log, one JSON line per edge (`{"t_ns":..,"level":..}`).
        edge_log: Option<PathBuf>,
    },
}

/// A GPIO line, by offset or by name.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum LineRef {
    Offset(u32),
    Name(String),
}

impl fmt::Display for LineRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LineRef::Offset(o) => write!(f, "offset {o}"),
            LineRef::Name(n) => write!(f, "\"{n}\""),
        }
    }
}

impl OutputConfig {
    /// `at`: where this output sits in the file (`reject.output`, `status.fault_line`).
    pub(super) fn validate(&self, at: &str, p: &mut Problems) {
        if let OutputConfig::Gpio { chip, line, .. } = self {
            check_gpio_line(p, at, chip, line);
        }
    }
}

/// A GPIO chip and line as the user wrote them, at `at` (`trigger`, `reject.output`, ...).
pub(super) fn check_gpio_line(p: &mut Problems, at: &str, chip: &str, line: &LineRef) {
    if chip.is_empty() {
        p.bad(
            format!("{at}.chip"),
            "must name a GPIO chip: a path like /dev/gpiochip0 or a label like tegra234-gpio",
        );
    }
    if *line == LineRef::Name(String::new()) {
        p.bad(
            format!("{at}.line"),
            "must be a line offset (5) or a line name (\"PAC.06\")",
        );
    }
}
