//! The trigger input: a GPIO line requested through the kernel's uAPI v2 (gpiocdev),
//! with edge detection on CLOCK_MONOTONIC, so that every part is stamped by the kernel
//! at the interrupt, not when linesight got round to reading it. (uAPI v1 requests
//! carry no per-line event clock.)

use super::{Debounce, TriggerEvent};
use crate::config::{GpioTrigger, LineBias, TriggerEdge};
use crate::gpio::{find_chip, find_offset};
use anyhow::Context;
use crossbeam_channel::{bounded, Receiver};
use gpiocdev::line::{Bias, EdgeDetection, EventClock};
use gpiocdev::request::Request;
use std::path::PathBuf;
use std::time::Duration;

/// Requests the trigger line and starts the thread that reads its edges.
pub fn spawn(config: &GpioTrigger) -> anyhow::Result<(Receiver<TriggerEvent>, String)> {
    let chip = find_chip(&config.chip, "trigger")?;
    let offset = find_offset(&chip, &config.line, "trigger")?;
    let path: PathBuf = chip.path().to_path_buf();
    let label = chip.info()?.label;
    let edge = match config.edge {
        TriggerEdge::Rising => EdgeDetection::RisingEdge,
        TriggerEdge::Falling => EdgeDetection::FallingEdge,
    };
    let bias = config.bias.map(|b| match b {
        LineBias::PullUp => Bias::PullUp,
        LineBias::PullDown => Bias::PullDown,
        LineBias::Disabled => Bias::Disabled,
    });
    let request = Request::builder()
        .on_chip(&path)
        .with_consumer("linesight-trigger")
        .with_line(offset)
        .as_input()
        .with_bias(bias)
        .with_edge_detection(edge)
        .with_event_clock(EventClock::Monotonic)
        .request()
        .with_context(|| {
            format!(
                "trigger: cannot request {} line {offset} for edge events (is it used by another program or driver?)",
                path.display()
            )
        })?;
    let describe = format!(
        "gpio {} ({label}) line {offset}, {} edge, debounce {} µs",
        path.display(),
        match config.edge {
            TriggerEdge::Rising => "rising",
            TriggerEdge::Falling => "falling",
        },
        config.debounce_us
    );
    let (tx, rx) = bounded(256);
    let mut debounce = Debounce::new(Duration::from_micros(config.debounce_us));
    std::thread::Builder::new().name("ls-trigger".into()).spawn(move || {
        // Held by this thread for the life of the run: dropping it releases the line.
        let request = request;
        loop {
            let event = match request.wait_edge_event(Duration::from_millis(500)) {
                Ok(false) => continue,
                Ok(true) => request.read_edge_event(),
                Err(e) => Err(e),
            };
            let msg = match event {
                Ok(ev) if debounce.accept(ev.timestamp_ns) => TriggerEvent::Edge(ev.timestamp_ns),
                Ok(_) => continue,
                Err(e) => TriggerEvent::Failed(format!("reading edge events failed: {e}")),
            };
            let failed = matches!(msg, TriggerEvent::Failed(_));
            if tx.send(msg).is_err() || failed {
                return;
            }
        }
    })?;
    Ok((rx, describe))
}
