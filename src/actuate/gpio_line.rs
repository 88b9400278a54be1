//! The reject output on a GPIO line, through the kernel's character device.
//!
//! The line is requested without the kernel's ACTIVE_LOW flag, so `set_high()` is
//! always the physical high level (linux-embedded-hal's `CdevPin` cancels the flag
//! out anyway). `active_low` is applied here, in one place: `level()`.

use super::RejectLine;
use crate::config::LineRef;
use crate::gpio::{find_chip, find_offset};
use anyhow::{anyhow, Context};
use embedded_hal::digital::{OutputPin, PinState};
use gpio_cdev::{Chip, LineRequestFlags};
use linux_embedded_hal::CdevPin;

/// The physical level for a logical reject state.
pub fn level(asserted: bool, active_low: bool) -> PinState {
    PinState::from(asserted != active_low)
}

pub struct GpioLine {
    /// Held for the life of the process: dropping it would release the line.
    pin: CdevPin,
    active_low: bool,
    name: String,
}

impl GpioLine {
    /// Requests the line as an output at its deasserted level; `key` (`reject.output`,
    /// `status.fault_line`) names it in messages.
    pub fn open(chip: &str, line: &LineRef, active_low: bool, consumer: &str, key: &str) -> anyhow::Result<GpioLine> {
        // found through the shared lookup (uAPI v2), then requested through gpio-cdev,
        // whose handle linux-embedded-hal's CdevPin wraps
        let found = find_chip(chip, key)?;
        let offset = find_offset(&found, line, key)?;
        let path = found.path().to_path_buf();
        let name = format!("{} line {offset} ({})", path.display(), found.info()?.label);
        let handle = Chip::new(&path)
            .and_then(|mut c| c.get_line(offset))
            .and_then(|l| l.request(LineRequestFlags::OUTPUT, level(false, active_low) as u8, consumer))
            .with_context(|| {
                format!("{key}: cannot request {name} as an output (is it used by another program or driver?)")
            })?;
        let pin = CdevPin::new(handle).with_context(|| format!("{key}: cannot read back {name}"))?;
        Ok(GpioLine { pin, active_low, name })
    }
}

impl RejectLine for GpioLine {
    fn set(&mut self, asserted: bool) -> anyhow::Result<()> {
        self.pin
            .set_state(level(asserted, self.active_low))
            .map_err(|e| anyhow!("cannot drive {}: {e}", self.name))
    }

    fn release(&mut self) -> anyhow::Result<()> {
        self.pin
            .set_state(PinState::Low)
            .map_err(|e| anyhow!("cannot drive {} low: {e}", self.name))
    }

    fn describe(&self) -> String {
        format!(
            "gpio {}{}",
            self.name,
            if self.active_low { ", active low" } else { "" }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reject_asserted_is_high_unless_active_low() {
        assert_eq!(level(true, false), PinState::High);
        assert_eq!(level(false, false), PinState::Low);
        assert_eq!(level(true, true), PinState::Low);
        assert_eq!(level(false, true), PinState::High);
    }
}
