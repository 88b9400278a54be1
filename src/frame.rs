//! What every stage shares: a part's frame and pixels, what is known of it beforehand
//! (ground truth, defect kind), and the reasons a part gets its verdict.
//!
//! A leaf: it imports nothing from the rest of linesight.

use serde::{Deserialize, Serialize};

/// Pixel layouts: what a frame arrives in, and what a model takes (`channels = "gray"` or
/// `"rgb"` in model.toml). One byte per channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
pub enum PixelFormat {
    #[serde(rename = "gray")]
    Gray8,
    #[serde(rename = "rgb")]
    Rgb8,
}

impl PixelFormat {
    pub fn channels(self) -> usize {
        match self {
            PixelFormat::Gray8 => 1,
            PixelFormat::Rgb8 => 3,
        }
    }

    /// The name model.toml uses.
    pub fn as_str(self) -> &'static str {
        match self {
            PixelFormat::Gray8 => "gray",
            PixelFormat::Rgb8 => "rgb",
        }
    }
}

/// A frame's pixels as the camera delivered them. The buffer is not trusted: the
/// preprocessor checks it against the stated size before use.
#[derive(Clone, Debug)]
pub struct Pixels {
    pub width: u32,
    pub height: u32,
    pub format: PixelFormat,
    pub data: Vec<u8>,
}

impl Pixels {
    pub fn from_dynamic(img: image::DynamicImage) -> Pixels {
        let (width, height) = (img.width(), img.height());
        match img {
            image::DynamicImage::ImageLuma8(g) => Pixels {
                width,
                height,
                format: PixelFormat::Gray8,
                data: g.into_raw(),
            },
            // 16-bit and alpha images are reduced to 8-bit; grey stays grey.
            other if other.color().channel_count() <= 2 => Pixels {
                width,
                height,
                format: PixelFormat::Gray8,
                data: other.into_luma8().into_raw(),
            },
            other => Pixels {
                width,
                height,
                format: PixelFormat::Rgb8,
                data: other.into_rgb8().into_raw(),
            },
        }
    }
}

/// What is known about a part before inspection (synthetic and labelled sources).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Truth {
    Good,
    /// A defective part, with its kind where known.
    Defect(Option<String>),
}

/// Why a part has no usable image; the part is rejected with this reason.
#[derive(Clone, Debug, PartialEq)]
pub struct NoImage {
    pub reason: Reason,
    pub detail: String,
}

impl NoImage {
    /// The camera delivered something that cannot be read.
    pub fn broken(detail: impl Into<String>) -> NoImage {
        NoImage {
            reason: Reason::BrokenFrame,
            detail: detail.into(),
        }
    }
}

/// One part as seen by the camera.
#[derive(Debug)]
pub struct Frame {
    /// Part number, counted from 0 in the order parts passed the camera.
    pub id: u64,
    /// The part's time on CLOCK_MONOTONIC (see clock.rs): the frame's capture time, or
    /// with a part-present trigger the sensor's edge. Deadline and reject delay run from it.
    pub capture_ns: u64,
    /// With a trigger: the capture time of the frame matched to the part, if any.
    pub frame_ns: Option<u64>,
    /// The pixels, or why there are none (the part is then rejected).
    pub image: Result<Pixels, NoImage>,
    pub truth: Option<Truth>,
    /// Where the frame came from, for the results log (a file name, say).
    pub origin: Option<String>,
}

#[cfg(test)]
impl Frame {
    /// A one-pixel grey frame of value `value` captured at `capture_ns`, for unit tests.
    pub fn one_pixel(capture_ns: u64, value: u8) -> Frame {
        Frame {
            id: 0,
            capture_ns,
            frame_ns: None,
            image: Ok(Pixels {
                width: 1,
                height: 1,
                format: PixelFormat::Gray8,
                data: vec![value],
            }),
            truth: None,
            origin: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Pass,
    Reject,
}

/// Why a part got its verdict. Only `BelowThreshold` passes a part.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// Inspected: score at or below the threshold.
    BelowThreshold,
    /// Inspected: score above the threshold.
    AboveThreshold,
    /// No verdict by `decision.deadline_ms` after capture.
    DeadlineMissed,
    /// The model could not be run on this part.
    InferenceError,
    /// The frame could not be read or was malformed.
    BrokenFrame,
    /// The inspection queue was full when the part arrived.
    Overload,
    /// A trigger's window closed with no frame from a working camera.
    MissingFrame,
    /// The camera was lost (error, stall, unplugged) when the part passed.
    CameraLost,
}

impl Reason {
    pub fn verdict(self) -> Verdict {
        match self {
            Reason::BelowThreshold => Verdict::Pass,
            _ => Verdict::Reject,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::BelowThreshold => "below_threshold",
            Reason::AboveThreshold => "above_threshold",
            Reason::DeadlineMissed => "deadline_missed",
            Reason::InferenceError => "inference_error",
            Reason::BrokenFrame => "broken_frame",
            Reason::Overload => "overload",
            Reason::MissingFrame => "missing_frame",
            Reason::CameraLost => "camera_lost",
        }
    }
}

/// Defect kinds the synthetic line can produce. `as_str()` gives the snake_case name
/// used in file names and results ("scratch", "dent", "crack", "stain",
/// "missing_hole", "chip").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DefectKind {
    Scratch,
    Dent,
    Crack,
    Stain,
    MissingHole,
    Chip,
}

impl DefectKind {
    pub const ALL: [DefectKind; 6] = [
        DefectKind::Scratch,
        DefectKind::Dent,
        DefectKind::Crack,
        DefectKind::Stain,
        DefectKind::MissingHole,
        DefectKind::Chip,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DefectKind::Scratch => "scratch",
            DefectKind::Dent => "dent",
            DefectKind::Crack => "crack",
            DefectKind::Stain => "stain",
            DefectKind::MissingHole => "missing_hole",
            DefectKind::Chip => "chip",
        }
    }

    /// The kind named by `as_str()` (ASCII case is ignored).
    pub fn parse(s: &str) -> Option<DefectKind> {
        let s = s.trim();
        Self::ALL.into_iter().find(|k| k.as_str().eq_ignore_ascii_case(s))
    }
}
