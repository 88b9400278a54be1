//! The outputs: timed reject pulses that fire the ejector when a rejected part reaches
//! it, and the fault output that the composition root drives while the camera is down.
//! Both are one kind of line, `OutputLine`, opened through `open_output`.

mod gpio_line;
mod schedule;
mod simulated_line;

pub use gpio_line::{GpioLine, GpioPin};
pub use schedule::{run_scheduler, PulsePlan, PulseStats, Window};
pub use simulated_line::{Edge, SimulatedLine};

use crate::config::{Config, OutputConfig};

/// An output line with a logical state: asserted = "reject now" (or "camera fault").
/// What that means electrically is each backend's business (see gpio_line.rs).
pub trait OutputLine: Send {
    fn set(&mut self, asserted: bool) -> anyhow::Result<()>;
    /// Leaves the line as a stopped or dead board would: electrically low, de-energised.
    /// With fail-safe wiring (`active_low`) that reads as asserted (reject, fault), so a
    /// clean stop looks to the ejector like a crash or a power cut, whatever the kernel
    /// does with the line once it is released. Lines without electrical levels deassert.
    fn release(&mut self) -> anyhow::Result<()> {
        self.set(false)
    }
    /// One line for logs.
    fn describe(&self) -> String;
}

/// Opens the configured reject output (`[reject.output]`), deasserted.
pub fn open_reject(config: &Config) -> anyhow::Result<Box<dyn OutputLine>> {
    open_output(config, &config.reject.output, "linesight-reject", "reject.output")
}

/// Opens any output line (reject, fault), deasserted; `consumer` is the holder's name the
/// kernel shows, `key` names the line's config section in messages.
pub fn open_output(
    config: &Config,
    output: &OutputConfig,
    consumer: &str,
    key: &str,
) -> anyhow::Result<Box<dyn OutputLine>> {
    Ok(match output {
        OutputConfig::Gpio { chip, line, active_low } => {
            Box::new(GpioLine::open(chip, line, *active_low, consumer, key)?)
        }
        OutputConfig::Simulated { edge_log } => {
            Box::new(SimulatedLine::new(edge_log.as_ref().map(|p| config.resolve(p)), key)?)
        }
    })
}
