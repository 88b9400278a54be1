//! The reject output: timed pulses that fire the ejector when a rejected part reaches it.

mod gpio_line;
mod schedule;
mod simulated_line;

pub use gpio_line::GpioLine;
pub use schedule::{run_scheduler, PulsePlan, PulseStats, Window};
pub use simulated_line::{Edge, SimulatedLine};

use crate::config::{Config, OutputConfig};

/// An output line with a logical state: asserted = "reject now".
/// What that means electrically is each backend's business (see gpio.rs).
pub trait RejectLine: Send {
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

/// Opens the configured reject output, deasserted.
pub fn open(config: &Config) -> anyhow::Result<Box<dyn RejectLine>> {
    open_output(config, &config.reject.output, "linesight-reject", "reject.output")
}

/// Opens any output line (reject, fault), deasserted; `key` names it in messages.
pub fn open_output(
    config: &Config,
    output: &OutputConfig,
    consumer: &str,
    key: &str,
) -> anyhow::Result<Box<dyn RejectLine>> {
    Ok(match output {
        OutputConfig::Gpio { chip, line, active_low } => {
            Box::new(GpioLine::open(chip, line, *active_low, consumer, key)?)
        }
        OutputConfig::Simulated { edge_log } => {
            Box::new(SimulatedLine::new(edge_log.as_ref().map(|p| config.resolve(p)))?)
        }
    })
}
