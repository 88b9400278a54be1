//! `[camera]`: the frame source, chosen by `kind`.

use super::{range, Problems};
use crate::frame::DefectKind;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// `[camera]`: the frame source, chosen by `kind`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum CameraConfig {
    /// A simulated production line: seeded images of a machined flange, some with defects.
    Synthetic(SyntheticCamera),
    /// Image files replayed as a line. Ground truth comes from `good/` and `defect/` sub-folders when present.
    Folder {
        /// The folder of images (PNG, JPEG, BMP; grey or colour; any size), searched recursively.
        path: PathBuf,
        /// Replay rate in parts per second (default 10, 0.01 to 1000).
        #[serde(default = "parts_per_second")]
        parts_per_second: f64,
        /// Start again from the first image after the last one.
        #[serde(default, rename = "loop")]
        looped: bool,
    },
    /// A V4L2 capture device (USB, CSI with a V4L2 driver), streamed through mmap buffers.
    V4l2(V4l2Camera),
    /// A GStreamer pipeline ending in an appsink: Jetson CSI, RTSP, GigE Vision (aravissrc),
    /// files. Needs a linesight built with the `gstreamer` feature.
    Gstreamer(GstreamerCamera),
}

// The defaults of keys that sit beside required ones (`path`, `device`, `pipeline`): serde's
// container default would fill the required keys too, so these are named field by field.
/// `[camera] kind = "synthetic"`
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SyntheticCamera {
    /// Image width in pixels (default 256, 16 to 8192).
    pub width: u32,
    /// Image height in pixels (default 256, 16 to 8192).
    pub height: u32,
    /// Line speed: parts that pass the camera per second (default 10, 0.01 to 1000).
    pub parts_per_second: f64,
    /// Share of parts that carry a defect, 0 to 1 (default 0.1).
    pub defect_ratio: f64,
    /// Defect kinds drawn from (scratch, dent, crack, stain, missing_hole, chip); empty means all.
    pub defect_kinds: Vec<String>,
    /// Seed of the line: the same seed gives the same parts (default 0; any 64-bit number).
    pub seed: u64,
}

impl Default for SyntheticCamera {
    fn default() -> Self {
        SyntheticCamera {
            width: 256,
            height: 256,
            parts_per_second: parts_per_second(),
            defect_ratio: 0.1,
            defect_kinds: Vec::new(),
            seed: 0,
        }
    }
}

fn parts_per_second() -> f64 {
    10.0
}
fn v4l2_buffers() -> u32 {
    4
}
fn gst_max_buffers() -> u32 {
    1
}
fn yes() -> bool {
    true
}

/// `[camera] kind = "v4l2"`
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct V4l2Camera {
    /// The capture device: `/dev/video0`, or better a stable link such as `/dev/v4l/by-id/...`.
    pub device: PathBuf,
    /// Pixel format to ask for: "GREY", "YUYV" or "MJPG". Unset: the first of these (in that
    /// order) that the device offers. `linesight check` lists what the device has.
    pub pixel_format: Option<String>,
    /// Frame width in pixels, 16 to 16384. Unset: the device's current width.
    pub width: Option<u32>,
    /// Frame height in pixels, 16 to 16384. Unset: the device's current height.
    pub height: Option<u32>,
    /// Frame rate to ask for, 0.1 to 1000. Unset: the device's current rate.
    pub fps: Option<f64>,
    /// Manual exposure time in microseconds, 1 to 10000000 (10 s); turns auto exposure off.
    /// Unset: as the device has it.
    pub exposure_us: Option<u32>,
    /// Gain in the device's own units (`linesight check` shows the range; the device
    /// refuses a value outside it when the camera opens). Unset: as the device has it.
    pub gain: Option<i32>,
    /// Kernel buffers to stream through, 2 to 32 (default 4): room for frames while linesight is busy.
    #[serde(default = "v4l2_buffers")]
    pub buffers: u32,
    /// Further controls by name, as `linesight check` lists them (v4l2-ctl's names: lower
    /// case, `_` between words), e.g. `{ brightness = 128, power_line_frequency = 1 }`; each
    /// a 32-bit integer, in the range the device gives for that control.
    #[serde(default)]
    pub controls: BTreeMap<String, i32>,
}

/// The pixel formats `camera.pixel_format` accepts, in the order linesight prefers them.
/// The V4L2 source maps each to its four-character code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum V4l2PixelFormat {
    /// 8-bit luma.
    Grey,
    /// 4:2:2 Y0 U Y1 V.
    Yuyv,
    /// Motion JPEG: one JPEG per frame.
    Mjpg,
}

impl V4l2PixelFormat {
    pub const ALL: [V4l2PixelFormat; 3] = [V4l2PixelFormat::Grey, V4l2PixelFormat::Yuyv, V4l2PixelFormat::Mjpg];

    /// A format by its V4L2 name or a common alias (GRAY, Y8; YUY2; MJPEG), in any case.
    pub fn parse(s: &str) -> Option<V4l2PixelFormat> {
        match s.to_ascii_uppercase().as_str() {
            "GREY" | "GRAY" | "Y8" => Some(V4l2PixelFormat::Grey),
            "YUYV" | "YUY2" => Some(V4l2PixelFormat::Yuyv),
            "MJPG" | "MJPEG" => Some(V4l2PixelFormat::Mjpg),
            _ => None,
        }
    }

    /// The V4L2 four-character name.
    pub fn name(self) -> &'static str {
        match self {
            V4l2PixelFormat::Grey => "GREY",
            V4l2PixelFormat::Yuyv => "YUYV",
            V4l2PixelFormat::Mjpg => "MJPG",
        }
    }
}

/// `[camera] kind = "gstreamer"`
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GstreamerCamera {
    /// A gst-launch-1.0 pipeline description whose last element is an `appsink`, e.g.
    /// `"v4l2src device=/dev/video0 ! videoconvert ! appsink"`. Put `videoconvert` before the
    /// appsink unless the source already gives GRAY8 or RGB: linesight sets the appsink's caps
    /// to the model's colour (GRAY8 or RGB) unless the pipeline sets them.
    pub pipeline: String,
    /// Appsink `sync`: false (default) hands each frame over as soon as it arrives; true
    /// releases frames at their timestamps (replaying files at their frame rate).
    #[serde(default)]
    pub sync: bool,
    /// Appsink `max-buffers`: frames held for linesight at most (default 1: only the newest; 1 to 64).
    #[serde(default = "gst_max_buffers")]
    pub max_buffers: u32,
    /// Appsink `drop`: when full, drop the oldest frame (true, default) instead of blocking
    /// the pipeline (false: no frame is lost, for replaying files).
    #[serde(default = "yes")]
    pub drop: bool,
    /// What the end of the stream means: "reconnect" (default: a live camera that ends has
    /// failed; the pipeline is rebuilt with backoff) or "stop" (files: the run ends).
    #[serde(default)]
    pub end_of_stream: EndOfStream,
}

/// `camera.end_of_stream`
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndOfStream {
    #[default]
    Reconnect,
    Stop,
}

impl CameraConfig {
    pub(super) fn validate(&self, p: &mut Problems) {
        match self {
            CameraConfig::Synthetic(SyntheticCamera {
                width,
                height,
                parts_per_second,
                defect_ratio,
                defect_kinds,
                ..
            }) => {
                for (key, v) in [("camera.width", width), ("camera.height", height)] {
                    if !(16..=8192).contains(v) {
                        p.bad(key, format!("expected 16 to 8192 pixels, found {v}"));
                    }
                }
                check_rate(p, *parts_per_second);
                if !(0.0..=1.0).contains(defect_ratio) {
                    p.bad(
                        "camera.defect_ratio",
                        format!("expected a share from 0 to 1, found {defect_ratio}"),
                    );
                }
                for (i, k) in defect_kinds.iter().enumerate() {
                    if DefectKind::parse(k).is_none() {
                        p.bad(
                            format!("camera.defect_kinds[{i}]"),
                            format!(
                                "unknown defect kind \"{k}\"; expected one of {}",
                                DefectKind::ALL.map(|k| k.as_str()).join(", ")
                            ),
                        );
                    }
                }
            }
            CameraConfig::Folder {
                path, parts_per_second, ..
            } => {
                if path.as_os_str().is_empty() {
                    p.bad("camera.path", "must name a folder of images");
                }
                check_rate(p, *parts_per_second);
            }
            CameraConfig::V4l2(c) => c.validate(p),
            CameraConfig::Gstreamer(c) => c.validate(p),
        }
    }
}

/// `camera.parts_per_second`, shared by the synthetic and folder sources: at least one part
/// in 100 s (a slower line is paced no better than an idle one), at most 1000 a second.
fn check_rate(p: &mut Problems, pps: f64) {
    if !(0.01..=1000.0).contains(&pps) {
        p.bad(
            "camera.parts_per_second",
            format!("expected 0.01 to 1000 parts per second, found {pps}"),
        );
    }
}

impl V4l2Camera {
    fn validate(&self, p: &mut Problems) {
        if self.device.as_os_str().is_empty() {
            p.bad("camera.device", "must name a capture device such as /dev/video0");
        }
        if let Some(f) = &self.pixel_format {
            if V4l2PixelFormat::parse(f).is_none() {
                let names: Vec<String> = V4l2PixelFormat::ALL.map(|f| format!("\"{}\"", f.name())).into();
                p.bad(
                    "camera.pixel_format",
                    format!("expected one of {}, found \"{f}\"", names.join(", ")),
                );
            }
        }
        for (key, v) in [("camera.width", self.width), ("camera.height", self.height)] {
            if let Some(v) = v.filter(|v| !(16..=16384).contains(v)) {
                p.bad(key, format!("expected 16 to 16384 pixels, found {v}"));
            }
        }
        if self.width.is_some() != self.height.is_some() {
            p.bad("camera.width", "set camera.width and camera.height together");
        }
        if let Some(fps) = self.fps.filter(|f| !(0.1..=1000.0).contains(f)) {
            p.bad(
                "camera.fps",
                format!("expected 0.1 to 1000 frames per second, found {fps}"),
            );
        }
        if let Some(us) = self.exposure_us {
            range(p, "camera.exposure_us", us.into(), 1, 10_000_000, "µs");
        }
        if !(2..=32).contains(&self.buffers) {
            p.bad(
                "camera.buffers",
                format!("expected 2 to 32 buffers, found {}", self.buffers),
            );
        }
    }
}

impl GstreamerCamera {
    fn validate(&self, p: &mut Problems) {
        let last = self.pipeline.rsplit('!').next().unwrap_or_default().trim();
        if self.pipeline.trim().is_empty() {
            p.bad("camera.pipeline", "must be a GStreamer pipeline ending in an appsink");
        } else if !last.starts_with("appsink") {
            p.bad(
                "camera.pipeline",
                format!("must end in an appsink (`... ! videoconvert ! appsink`); it ends in `{last}`"),
            );
        }
        if self.max_buffers == 0 {
            p.bad("camera.max_buffers", "must be at least 1 frame");
        } else {
            range(p, "camera.max_buffers", self.max_buffers.into(), 1, 64, "frames");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(c: CameraConfig) -> Vec<String> {
        Problems::of(|p| c.validate(p))
    }

    #[test]
    fn line_speeds_that_cannot_be_paced_are_refused() {
        for pps in [1e-12, 0.0, -1.0, f64::NAN, f64::INFINITY, 1000.5] {
            let c = CameraConfig::Folder {
                path: "images".into(),
                parts_per_second: pps,
                looped: false,
            };
            assert_eq!(
                problems(c),
                [format!(
                    "camera.parts_per_second: expected 0.01 to 1000 parts per second, found {pps}"
                )]
            );
        }
        let slow = SyntheticCamera {
            parts_per_second: 0.01,
            ..Default::default()
        };
        assert!(problems(CameraConfig::Synthetic(slow)).is_empty());
    }

    #[test]
    fn v4l2_and_gstreamer_numbers_have_their_bounds() {
        let c = V4l2Camera {
            device: "/dev/video0".into(),
            pixel_format: None,
            width: Some(20_000),
            height: Some(16),
            fps: Some(1e-12),
            exposure_us: Some(0),
            gain: None,
            buffers: 33,
            controls: Default::default(),
        };
        assert_eq!(
            problems(CameraConfig::V4l2(c)),
            [
                "camera.width: expected 16 to 16384 pixels, found 20000",
                "camera.fps: expected 0.1 to 1000 frames per second, found 0.000000000001",
                "camera.exposure_us: expected 1 to 10000000 µs, found 0",
                "camera.buffers: expected 2 to 32 buffers, found 33",
            ]
        );
        let g = GstreamerCamera {
            pipeline: "videotestsrc ! appsink".into(),
            sync: false,
            max_buffers: 1000,
            drop: true,
            end_of_stream: EndOfStream::Stop,
        };
        assert_eq!(
            problems(CameraConfig::Gstreamer(g)),
            ["camera.max_buffers: expected 1 to 64 frames, found 1000"]
        );
    }
}
