//! The reject output on a GPIO line, through the kernel's character device.
//!
//! The line is requested without the kernel's ACTIVE_LOW flag, so `set_high()` is
//! always the physical high level (linux-embedded-hal's `CdevPin` cancels the flag
//! out anyway). `active_low` is applied here, in one place: `level()`.

use super::RejectLine;
use crate::config::LineRef;
use anyhow::{anyhow, bail, Context};
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
        let mut chip_dev = find_chip(chip, key)?;
        let offset = match line {
            LineRef::Offset(o) => {
                if *o >= chip_dev.num_lines() {
                    bail!(
                        "{key}.line: offset {o} does not exist on {} (it has {} lines)",
                        chip_dev.path().display(),
                        chip_dev.num_lines()
                    );
                }
                *o
            }
            LineRef::Name(n) => find_line(&mut chip_dev, n, key)?,
        };
        let name = format!("{} line {offset} ({})", chip_dev.path().display(), chip_dev.label());
        let handle = chip_dev
            .get_line(offset)
            .and_then(|l| l.request(LineRequestFlags::OUTPUT, level(false, active_low) as u8, consumer))
            .with_context(|| {
                format!("{key}: cannot request {name} as an output (is it used by another program or driver?)")
            })?;
        let pin = CdevPin::new(handle).with_context(|| format!("{key}: cannot read back {name}"))?;
        Ok(GpioLine { pin, active_low, name })
    }
}

/// A chip by path (`/dev/gpiochip0`) or by label (`tegra234-gpio`).
fn find_chip(chip: &str, key: &str) -> anyhow::Result<Chip> {
    if chip.starts_with('/') {
        return Chip::new(chip).with_context(|| format!("{key}.chip: cannot open {chip}"));
    }
    let mut labels = Vec::new();
    for c in gpio_cdev::chips().with_context(|| format!("{key}.chip: cannot list GPIO chips in /dev"))? {
        let c = c?;
        if c.label() == chip {
            return Ok(c);
        }
        labels.push(format!("{} ({})", c.label(), c.path().display()));
    }
    bail!(
        "{key}.chip: no GPIO chip labelled \"{chip}\"; found: {}",
        if labels.is_empty() {
            "none".into()
        } else {
            labels.join(", ")
        }
    )
}

fn find_line(chip: &mut Chip, name: &str, key: &str) -> anyhow::Result<u32> {
    for offset in 0..chip.num_lines() {
        let info = chip.get_line(offset)?.info()?;
        if info.name() == Some(name) {
            return Ok(offset);
        }
    }
    Err(anyhow!(
        "{key}.line: no line named \"{name}\" on {} ({})",
        chip.path().display(),
        chip.label()
    ))
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
