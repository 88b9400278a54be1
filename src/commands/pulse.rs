//! `linesight pulse`: fire the reject output, to check the wiring and the ejector's timing.

use crate::actuate::{self, Window};
use crate::clock;
use crate::config::{Config, TriggerConfig};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Fire the reject output to check wiring and ejector timing: with a GPIO trigger, one
/// pulse reject.delay_ms after each part; in free run, one pulse every --interval-ms.
#[derive(clap::Args)]
pub struct Args {
    #[arg(long, short)]
    config: PathBuf,
    /// Pulses to fire.
    #[arg(long, default_value_t = 1)]
    count: u64,
    /// Free run: time between pulse starts.
    #[arg(long, default_value_t = 1000)]
    interval_ms: u64,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let config = Config::load(&args.config)?;
    let stop = super::stop_on_signals()?;
    let r = pulse(&config, args.count, Duration::from_millis(args.interval_ms), &stop)?;
    println!(
        "{} pulse(s) of {} ms fired; worst edge lateness {:.2} ms; {} output error(s)",
        r.pulses, config.reject.pulse_ms, r.worst_lateness_ms, r.errors
    );
    Ok(if r.errors == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// What `pulse` did.
pub struct PulseReport {
    pub pulses: u64,
    pub worst_lateness_ms: f64,
    pub errors: u64,
}

/// Fires the reject output `count` times for `reject.pulse_ms` each, through the same
/// scheduler as inspection. With a trigger, each pulse starts `reject.delay_ms` after a
/// trigger edge (the ejector should hit the part that passed the sensor); in free run,
/// every `interval` from now.
pub fn pulse(config: &Config, count: u64, interval: Duration, stop: &AtomicBool) -> anyhow::Result<PulseReport> {
    let line = actuate::open_reject(config)?;
    let (tx, rx) = crossbeam_channel::unbounded::<Window>();
    log::info!(
        "pulsing {} {count} time(s), {} ms each",
        line.describe(),
        config.reject.pulse_ms
    );
    let scheduler = std::thread::spawn(move || actuate::run_scheduler(line, rx, |_| {}));
    let (delay_ns, pulse_ns) = (
        clock::ms_to_ns(config.reject.delay_ms),
        clock::ms_to_ns(config.reject.pulse_ms),
    );
    let result = (|| -> anyhow::Result<()> {
        match &config.trigger {
            TriggerConfig::Gpio(t) => {
                let (edges, desc) = crate::source::trigger::sensor::spawn(t)?;
                log::info!(
                    "waiting for {count} part(s) at {desc}; pulse {} ms after each",
                    config.reject.delay_ms
                );
                let mut seen = 0;
                while seen < count && !stop.load(Ordering::Relaxed) {
                    match edges.recv_timeout(Duration::from_millis(200)) {
                        Ok(crate::source::trigger::TriggerEvent::Edge(t_ns)) => {
                            seen += 1;
                            let start_ns = t_ns + delay_ns;
                            println!("part {seen}: edge at {t_ns} ns, pulse at {start_ns} ns");
                            let _ = tx.send(Window {
                                start_ns,
                                end_ns: start_ns + pulse_ns,
                            });
                        }
                        Ok(crate::source::trigger::TriggerEvent::Failed(e)) => anyhow::bail!("trigger: {e}"),
                        Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
                        Err(_) => anyhow::bail!("trigger: the input thread stopped"),
                    }
                }
            }
            TriggerConfig::FreeRun => {
                let t0 = clock::now_ns() + 100_000_000;
                for i in 0..count {
                    let start_ns = t0 + i * interval.as_nanos() as u64;
                    let _ = tx.send(Window {
                        start_ns,
                        end_ns: start_ns + pulse_ns,
                    });
                }
            }
        }
        Ok(())
    })();
    drop(tx);
    let stats = scheduler.join().expect("pulse scheduler panicked");
    result?;
    Ok(PulseReport {
        pulses: stats.pulses,
        worst_lateness_ms: stats.worst_lateness_ms,
        errors: stats.errors,
    })
}
