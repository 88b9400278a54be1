//! Frame sources: where parts enter the pipeline.
//!
//! A source blocks until the next part is in front of the camera and hands over its
//! frame, stamped with the capture time on the monotonic clock.
//!
//! ```text
//! device source (v4l2, gstreamer, synthetic, folder) ── feed thread (reopens on loss)
//!        └──▶ supervise: free run (every frame a part) or trigger (parts from a sensor)
//!                └──▶ camera up/down reports to the `CameraListener` of whoever wired it
//! ```
//!
//! `open` builds the whole chain; the pipeline sees one `Source`. The source drives no
//! output: the composition root (runtime.rs) drives the fault output from its reports.

mod folder;
#[cfg(feature = "gstreamer")]
pub mod gst;
pub mod supervise;
mod synthetic;
mod synthetic_part;
pub mod v4l2;

pub use folder::FolderSource;
pub use supervise::{CameraCell, CameraHealth, CameraListener, CameraState};
pub use synthetic::SyntheticSource;
pub use synthetic_part::{save_dataset, PartGenerator, PartSpec, SyntheticPart};
pub mod trigger;

use crate::config::{CameraConfig, Config, TriggerConfig};
use crate::frame::{Frame, FrameSpec};
use anyhow::Context;

/// Paces a replayed or simulated line: one part every `period_ns`, numbered in order.
pub struct Pacer {
    period_ns: u64,
    next_id: u64,
    /// When the next part passes the camera; set by the first part.
    next_due_ns: Option<u64>,
}

impl Pacer {
    pub fn new(parts_per_second: f64) -> Pacer {
        Pacer {
            period_ns: (1e9 / parts_per_second) as u64,
            next_id: 0,
            next_due_ns: None,
        }
    }

    /// Waits for the next part's moment; returns its id and capture time. A line that
    /// fell behind keeps its pitch from now on instead of bunching parts up.
    pub fn wait_for_part(&mut self) -> (u64, u64) {
        let due = *self.next_due_ns.get_or_insert_with(crate::clock::now_ns);
        crate::clock::sleep_until(due, std::time::Duration::from_secs(60));
        let capture_ns = crate::clock::now_ns();
        self.next_due_ns = Some(due.max(capture_ns.saturating_sub(self.period_ns)) + self.period_ns);
        self.next_id += 1;
        (self.next_id - 1, capture_ns)
    }

    pub fn parts_per_second(&self) -> f64 {
        1e9 / self.period_ns as f64
    }
}

/// A camera or stand-in. `next_frame` blocks until the next part arrives.
pub trait Source: Send {
    /// The next part's frame, or `None` when the source has no more parts.
    fn next_frame(&mut self) -> anyhow::Result<Option<Frame>>;
    /// One line for logs: what this source is.
    fn describe(&self) -> String;
    /// Camera losses, recoveries and frame counts so far, for sources that watch a camera.
    fn health(&self) -> Option<CameraHealth> {
        None
    }
}

/// Opens the configured camera and trigger: the source the pipeline reads parts from.
/// `frames` is what the model wants: its colour, so that a camera delivers it without a
/// second conversion, and the frame sizes worth decoding.
/// Fails if the camera cannot be opened now; once running, a lost camera is reopened.
/// `listener` is called once the camera is open, and hears every loss and recovery.
pub fn open(
    config: &Config,
    frames: FrameSpec,
    listener: impl FnOnce() -> anyhow::Result<Box<dyn CameraListener>>,
) -> anyhow::Result<Box<dyn Source>> {
    let (feed, watch) = supervise::watched_camera(config, frames, listener)?;
    Ok(match &config.trigger {
        TriggerConfig::FreeRun => Box::new(supervise::FreeRun::new(feed, watch)),
        TriggerConfig::Gpio(t) => Box::new(trigger::Triggered::open(t, feed, watch)?),
    })
}

/// Opens the configured device source once, unsupervised (check, collect, and each
/// reopen after a loss). `stall` bounds how long one `next_frame` may wait for a frame.
pub fn open_device(config: &Config, frames: FrameSpec, stall: std::time::Duration) -> anyhow::Result<Box<dyn Source>> {
    Ok(match &config.camera {
        CameraConfig::Synthetic(c) => Box::new(SyntheticSource::new(c.clone(), c.parts_per_second)),
        CameraConfig::Folder {
            path,
            parts_per_second,
            looped,
        } => {
            let dir = config.resolve(path);
            Box::new(
                FolderSource::open(&dir, *parts_per_second, *looped, frames.limit)
                    .with_context(|| format!("camera.path: cannot use {}", dir.display()))?,
            )
        }
        CameraConfig::V4l2(c) => Box::new(v4l2::V4l2Source::open(c, frames.channels, stall)?),
        #[cfg(feature = "gstreamer")]
        CameraConfig::Gstreamer(c) => Box::new(gst::GstSource::open(c, frames.channels, stall)?),
        #[cfg(not(feature = "gstreamer"))]
        CameraConfig::Gstreamer(_) => anyhow::bail!(
            "camera.kind: \"gstreamer\" needs a linesight built with the `gstreamer` feature \
             (cargo build --release --features gstreamer); this one was built without it"
        ),
    })
}
