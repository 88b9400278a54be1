//! An output (reject, fault) on a GPIO line, through the kernel's character device.
//!
//! ```text
//! GpioLine (asserted? active_low → level) ──embedded-hal OutputPin──▶ GpioPin (gpiocdev request)
//! ```
//!
//! The line is found and requested once, through gpiocdev (uAPI v2, the same lookup as
//! the trigger and `check`), and the request is held for the life of the process. It is
//! requested without the kernel's ACTIVE_LOW flag, so a pin level is always the physical
//! level; `active_low` is applied here, in one place: `level()`.

use super::OutputLine;
use crate::config::LineRef;
use crate::gpio::{find_chip, find_offset};
use anyhow::{anyhow, Context};
use embedded_hal::digital::{ErrorKind, ErrorType, OutputPin, PinState};
use gpiocdev::line::Value;
use gpiocdev::request::Request;

/// The physical level for a logical state (asserted = reject now, or camera fault).
pub fn level(asserted: bool, active_low: bool) -> PinState {
    PinState::from(asserted != active_low)
}

/// An output line requested through gpiocdev: the pin under `GpioLine`.
/// Dropping it releases the line, so it lives as long as its `GpioLine`.
pub struct GpioPin {
    request: Request,
    offset: u32,
}

impl GpioPin {
    /// Requests `offset` on the chip at `path` as an output, driven to `initial` at once.
    pub fn request(
        path: &std::path::Path,
        offset: u32,
        consumer: &str,
        initial: PinState,
    ) -> gpiocdev::Result<GpioPin> {
        let request = Request::builder()
            .on_chip(path)
            .with_consumer(consumer)
            .with_line(offset)
            .as_output(physical(initial))
            .request()?;
        Ok(GpioPin { request, offset })
    }
}

/// Without ACTIVE_LOW on the request, the kernel's Active is the physical high level.
fn physical(state: PinState) -> Value {
    match state {
        PinState::High => Value::Active,
        PinState::Low => Value::Inactive,
    }
}

/// A failed write to a requested line.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct PinError(#[from] gpiocdev::Error);

impl embedded_hal::digital::Error for PinError {
    fn kind(&self) -> ErrorKind {
        ErrorKind::Other
    }
}

impl ErrorType for GpioPin {
    type Error = PinError;
}

impl OutputPin for GpioPin {
    fn set_low(&mut self) -> Result<(), PinError> {
        Ok(self.request.set_value(self.offset, physical(PinState::Low))?)
    }

    fn set_high(&mut self) -> Result<(), PinError> {
        Ok(self.request.set_value(self.offset, physical(PinState::High))?)
    }
}

/// An output line on a pin: the logical state in, the pin's level out.
pub struct GpioLine<P = GpioPin> {
    pin: P,
    active_low: bool,
    name: String,
}

impl GpioLine {
    /// Requests the line as an output at its deasserted level; `key` (`reject.output`,
    /// `status.fault_line`) names it in messages.
    pub fn open(chip: &str, line: &LineRef, active_low: bool, consumer: &str, key: &str) -> anyhow::Result<GpioLine> {
        let found = find_chip(chip, key)?;
        let offset = find_offset(&found, line, key)?;
        let name = format!("{} line {offset} ({})", found.path().display(), found.info()?.label);
        let pin = GpioPin::request(found.path(), offset, consumer, level(false, active_low)).with_context(|| {
            format!("{key}: cannot request {name} as an output (is it used by another program or driver?)")
        })?;
        Ok(GpioLine::on_pin(pin, active_low, name))
    }
}

impl<P> GpioLine<P> {
    /// An output line on an already requested pin; `name` says which, in messages.
    pub fn on_pin(pin: P, active_low: bool, name: String) -> GpioLine<P> {
        GpioLine { pin, active_low, name }
    }
}

impl<P> OutputLine for GpioLine<P>
where
    P: OutputPin + Send,
    P::Error: std::fmt::Display,
{
    fn set(&mut self, asserted: bool) -> anyhow::Result<()> {
        self.pin
            .set_state(level(asserted, self.active_low))
            .map_err(|e| anyhow!("cannot drive {}: {e}", self.name))
    }

    fn release(&mut self) -> anyhow::Result<()> {
        self.pin
            .set_low()
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
    use std::convert::Infallible;

    /// A pin that remembers every level it was driven to.
    #[derive(Default)]
    struct Recorded(Vec<PinState>);

    impl ErrorType for Recorded {
        type Error = Infallible;
    }

    impl OutputPin for Recorded {
        fn set_low(&mut self) -> Result<(), Infallible> {
            self.0.push(PinState::Low);
            Ok(())
        }
        fn set_high(&mut self) -> Result<(), Infallible> {
            self.0.push(PinState::High);
            Ok(())
        }
    }

    fn levels(active_low: bool) -> Vec<PinState> {
        let mut line = GpioLine::on_pin(Recorded::default(), active_low, "test line".into());
        line.set(true).unwrap();
        line.set(false).unwrap();
        line.set(true).unwrap();
        line.release().unwrap();
        line.pin.0
    }

    #[test]
    fn reject_asserted_is_high_unless_active_low() {
        assert_eq!(level(true, false), PinState::High);
        assert_eq!(level(false, false), PinState::Low);
        assert_eq!(level(true, true), PinState::Low);
        assert_eq!(level(false, true), PinState::High);
    }

    #[test]
    fn the_pin_gets_the_physical_level_and_release_drives_it_low() {
        use PinState::{High, Low};
        assert_eq!(levels(false), [High, Low, High, Low]);
        // Active low: asserted is low; released is low too (de-energised, reads as asserted).
        assert_eq!(levels(true), [Low, High, Low, Low]);
    }
}
