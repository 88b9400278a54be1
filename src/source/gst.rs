//! `[camera] kind = "gstreamer"` (cargo feature `gstreamer`): any pipeline that ends in
//! an appsink. Jetson CSI (nvarguscamerasrc), RTSP, GigE Vision (aravissrc), files.
//!
//! The appsink is set for low latency unless the config says otherwise: it holds one
//! buffer (`max-buffers=1`), drops the older one when a newer arrives (`drop=true`) and
//! hands buffers over as they come rather than at their timestamps (`sync=false`).
//! Its caps are GRAY8 or RGB, the model's colour first: a grey camera stays grey and a
//! colour one arrives as RGB (the `videoconvert` before the appsink passes either through
//! untouched). Colour → grey for a grey model is then done by preprocess with the exact
//! formula training used, which GStreamer's YUV-based conversion would not match.

use super::Source;
use crate::clock;
use crate::config::{EndOfStream, GstreamerCamera};
use crate::frame::PixelFormat;
use crate::frame::{Frame, NoImage, Pixels};
use anyhow::{anyhow, bail, Context};
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app::AppSink;
use gstreamer_video::prelude::*;
use gstreamer_video::{VideoFormat, VideoFrameRef, VideoInfo};
use std::time::Duration;

pub struct GstSource {
    pipeline: gst::Pipeline,
    sink: AppSink,
    wait: Duration,
    eos_stops: bool,
    next_id: u64,
    description: String,
    playing: bool,
}

impl GstSource {
    /// Builds the pipeline and starts it: a camera that cannot deliver fails here, with
    /// GStreamer's own error, after at most `wait`.
    pub fn open(c: &GstreamerCamera, channels: PixelFormat, wait: Duration) -> anyhow::Result<GstSource> {
        gst::init().context("camera: GStreamer does not initialise")?;
        let element = gst::parse::launch(&c.pipeline)
            .map_err(|e| anyhow!("camera.pipeline: GStreamer cannot build `{}`: {e}", c.pipeline))?;
        let pipeline = element
            .downcast::<gst::Pipeline>()
            .map_err(|_| anyhow!("camera.pipeline: expected a pipeline of several elements ending in an appsink"))?;
        let sink = pipeline
            .iterate_sinks()
            .into_iter()
            .filter_map(Result::ok)
            .find_map(|e| e.downcast::<AppSink>().ok())
            .context("camera.pipeline: the pipeline has no appsink")?;
        sink.set_max_buffers(c.max_buffers);
        sink.set_drop(c.drop);
        sink.set_property("sync", c.sync);
        sink.set_property("enable-last-sample", false);
        if sink.caps().is_none() {
            let (first, second) = match channels {
                PixelFormat::Gray8 => ("GRAY8", "RGB"),
                PixelFormat::Rgb8 => ("RGB", "GRAY8"),
            };
            let caps = gst::Caps::builder_full()
                .structure(gst::Structure::builder("video/x-raw").field("format", first).build())
                .structure(gst::Structure::builder("video/x-raw").field("format", second).build())
                .build();
            sink.set_caps(Some(&caps));
        }
        let mut source = GstSource {
            pipeline,
            sink,
            wait,
            eos_stops: c.end_of_stream == EndOfStream::Stop,
            next_id: 0,
            description: String::new(),
            playing: false,
        };
        // A live source (a camera) does not preroll: it is started and must deliver a
        // frame now, which is dropped (the line has not started; its time would be stale).
        // A file pipeline prerolls paused, and plays from the first `next_frame`, so that
        // its first frame is not held back, stale, while the model warms up.
        let live = match source.pipeline.set_state(gst::State::Paused) {
            Err(e) => {
                let why = source.bus_error().unwrap_or_else(|| e.to_string());
                bail!("camera: the pipeline does not start: {why}");
            }
            Ok(s) => s == gst::StateChangeSuccess::NoPreroll,
        };
        if live {
            source.play()?;
            if source.pull()?.is_none() {
                bail!("camera: the stream ended before its first frame");
            }
        } else {
            source.preroll()?;
        }
        let caps = source
            .sink
            .sink_pads()
            .first()
            .and_then(|p| p.current_caps())
            .map(|c| c.to_string())
            .unwrap_or_default();
        source.description = format!(
            "gstreamer `{}` ({caps}){}",
            c.pipeline,
            if live { "" } else { ", not live" }
        );
        Ok(source)
    }

    fn play(&mut self) -> anyhow::Result<()> {
        if let Err(e) = self.pipeline.set_state(gst::State::Playing) {
            let why = self.bus_error().unwrap_or_else(|| e.to_string());
            bail!("camera: the pipeline does not play: {why}");
        }
        self.playing = true;
        Ok(())
    }

    /// Waits for a paused pipeline to preroll (its first buffer at the appsink).
    fn preroll(&mut self) -> anyhow::Result<()> {
        let bus = self.pipeline.bus().context("pipeline without a bus")?;
        let timeout = gst::ClockTime::from_nseconds(self.wait.as_nanos() as u64);
        match bus.timed_pop_filtered(timeout, &[gst::MessageType::AsyncDone, gst::MessageType::Error]) {
            Some(msg) => match msg.view() {
                gst::MessageView::Error(e) => bail!(
                    "camera: the pipeline does not start: {}{}",
                    e.error(),
                    e.debug().map(|d| format!(" ({d})")).unwrap_or_default()
                ),
                _ => Ok(()),
            },
            None => bail!(
                "camera: the pipeline did not preroll within {} ms",
                self.wait.as_millis()
            ),
        }
    }

    /// The first error message on the bus, if any, with GStreamer's debug detail.
    fn bus_error(&self) -> Option<String> {
        let bus = self.pipeline.bus()?;
        while let Some(msg) = bus.pop_filtered(&[gst::MessageType::Error]) {
            if let gst::MessageView::Error(e) = msg.view() {
                let from = e.src().map(|s| s.path_string().to_string()).unwrap_or_default();
                return Some(format!(
                    "{from}: {}{}",
                    e.error(),
                    e.debug().map(|d| format!(" ({d})")).unwrap_or_default()
                ));
            }
        }
        None
    }

    /// The next frame: Ok(None) at a stopping end of stream; Err on error, end of a live
    /// stream, or no frame within `wait`.
    fn pull(&mut self) -> anyhow::Result<Option<Frame>> {
        let end = clock::now_ns() + self.wait.as_nanos() as u64;
        loop {
            // Short slices, so that bus errors are seen without waiting the whole stall time.
            let slice = gst::ClockTime::from_mseconds(50);
            if let Some(sample) = self.sink.try_pull_sample(slice) {
                return Ok(Some(self.frame(&sample)));
            }
            if let Some(e) = self.bus_error() {
                bail!("camera: GStreamer error: {e}");
            }
            if self.sink.is_eos() {
                if self.eos_stops {
                    return Ok(None);
                }
                bail!("camera: the stream ended (camera.end_of_stream = \"reconnect\")");
            }
            if clock::now_ns() >= end {
                bail!("camera: no frame for {} ms", self.wait.as_millis());
            }
        }
    }

    fn frame(&mut self, sample: &gst::Sample) -> Frame {
        let arrived = clock::now_ns();
        let id = self.next_id;
        self.next_id += 1;
        let capture_ns = self.capture_time(sample).unwrap_or(arrived);
        Frame {
            id,
            capture_ns,
            frame_ns: None,
            image: pixels(sample).map_err(NoImage::broken),
            truth: None,
            origin: None,
        }
    }

    /// The buffer's capture time on CLOCK_MONOTONIC.
    ///
    /// A buffer's PTS is a stream time; the segment turns it into running time, and the
    /// pipeline's base time turns that into a time on the pipeline clock (live sources
    /// stamp buffers with the clock time at capture; v4l2src uses the kernel's buffer
    /// time). The pipeline clock need not be CLOCK_MONOTONIC (an RTSP source may choose
    /// its own), so the capture time is carried over as an age: how long ago, on the
    /// pipeline clock, the buffer was captured, subtracted from CLOCK_MONOTONIC now.
    /// With GStreamer's default system clock (monotonic) this is exact up to the few
    /// microseconds between the two clock reads. No PTS (some file sources): arrival time.
    fn capture_time(&self, sample: &gst::Sample) -> Option<u64> {
        let pts = sample.buffer()?.pts()?;
        let segment = sample.segment()?.downcast_ref::<gst::ClockTime>()?;
        let running = segment.to_running_time(pts)?;
        let base = self.pipeline.base_time()?;
        let clock = self.pipeline.clock()?;
        let now_clock = clock.time();
        let now_mono = clock::now_ns();
        let captured_clock = base + running;
        let age = now_clock.saturating_sub(captured_clock).nseconds();
        Some(now_mono.saturating_sub(age))
    }
}

/// GRAY8 or RGB buffer → packed pixels (rows without GStreamer's 4-byte padding).
fn pixels(sample: &gst::Sample) -> Result<Pixels, String> {
    let caps = sample.caps().ok_or("sample without caps")?;
    let info = VideoInfo::from_caps(caps).map_err(|e| format!("not raw video ({caps}): {e}"))?;
    let format = match info.format() {
        VideoFormat::Gray8 => PixelFormat::Gray8,
        VideoFormat::Rgb => PixelFormat::Rgb8,
        other => {
            return Err(format!(
                "the appsink got {other:?}; put `videoconvert` before the appsink so that it gets GRAY8 or RGB"
            ))
        }
    };
    let buffer = sample.buffer().ok_or("sample without buffer")?;
    let frame =
        VideoFrameRef::from_buffer_ref_readable(buffer, &info).map_err(|e| format!("cannot map buffer: {e}"))?;
    let (w, h) = (info.width() as usize, info.height() as usize);
    let row = w * format.channels();
    let stride = frame.plane_stride()[0] as usize;
    let data = frame.plane_data(0).map_err(|e| format!("cannot read plane: {e}"))?;
    if stride < row || data.len() < stride * (h.max(1) - 1) + row {
        return Err(format!(
            "buffer of {} bytes is short for {w}x{h} with stride {stride}",
            data.len()
        ));
    }
    let mut out = Vec::with_capacity(row * h);
    for y in 0..h {
        out.extend_from_slice(&data[y * stride..][..row]);
    }
    Ok(Pixels {
        width: w as u32,
        height: h as u32,
        format,
        data: out,
    })
}

impl Source for GstSource {
    fn next_frame(&mut self) -> anyhow::Result<Option<Frame>> {
        if !self.playing {
            self.play()?;
        }
        self.pull()
    }

    fn describe(&self) -> String {
        self.description.clone()
    }
}

impl Drop for GstSource {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}
