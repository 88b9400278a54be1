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

/// What a model takes from a camera: its colour, and the frames worth inspecting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameSpec {
    pub channels: PixelFormat,
    pub limit: FrameLimit,
}

/// The largest and smallest frame inspected, from the model's input size and
/// `decision.max_frame_scale`. A frame outside is a broken frame: refused from its header
/// before it is decoded, and never resized (a 20000x20000 image would take seconds).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameLimit {
    /// Smallest width and height, pixels.
    pub min: (u32, u32),
    /// Largest width and height, pixels.
    pub max: (u32, u32),
    /// The model input (width, height) and the scale it was multiplied by, for messages;
    /// scale 0: exactly the size a camera stream was set up for.
    input: (u32, u32),
    scale: u32,
}

impl FrameLimit {
    /// Frames from `input / scale` to `input * scale` in each dimension (`scale` at least 1).
    pub fn for_input((w, h): (u32, u32), scale: u32) -> FrameLimit {
        let scale = scale.max(1);
        FrameLimit {
            min: ((w / scale).max(1), (h / scale).max(1)),
            max: (w.saturating_mul(scale), h.saturating_mul(scale)),
            input: (w, h),
            scale,
        }
    }

    /// Frames of exactly `w`x`h` pixels: a stream's buffers, whose size was negotiated.
    pub fn exactly(w: u32, h: u32) -> FrameLimit {
        FrameLimit {
            min: (w, h),
            max: (w, h),
            input: (w, h),
            scale: 0,
        }
    }

    /// `Err(why)` for a frame of `w`x`h` pixels outside the limit.
    pub fn check(&self, w: u32, h: u32) -> Result<(), String> {
        let ((iw, ih), s) = (self.input, self.scale);
        if s == 0 {
            return match (w, h) == (iw, ih) {
                true => Ok(()),
                false => Err(format!("{w}x{h} px, the stream was set up for {iw}x{ih}")),
            };
        }
        if w > self.max.0 || h > self.max.1 {
            return Err(format!(
                "{w}x{h} px, larger than the largest frame inspected, {}x{} px (decision.max_frame_scale = {s} times the model's {iw}x{ih} input)",
                self.max.0, self.max.1
            ));
        }
        if w < self.min.0 || h < self.min.1 {
            return Err(format!(
                "{w}x{h} px, smaller than the smallest frame inspected, {}x{} px (the model's {iw}x{ih} input divided by decision.max_frame_scale = {s})",
                self.min.0, self.min.1
            ));
        }
        Ok(())
    }

    /// Bytes of the largest frame as 8-bit RGB, the most a decoded frame holds.
    pub fn max_frame_bytes(&self) -> u64 {
        self.max.0 as u64 * self.max.1 as u64 * 3
    }

    /// The largest image file read for a frame: an uncompressed 32-bit BMP of the largest
    /// frame, and room for its headers.
    pub fn max_file_bytes(&self) -> u64 {
        self.max.0 as u64 * self.max.1 as u64 * 4 + (1 << 20)
    }
}

/// Decodes an image file's bytes (PNG, JPEG, BMP) into a frame, if its header gives a size
/// inside `limit`; the decoder may allocate no more than such a frame needs. A JPEG
/// without its end-of-image marker (a truncated file or a torn MJPG buffer) is refused:
/// the decoder would fill the missing rows with grey and the part be scored on them.
pub fn decode_image(bytes: &[u8], limit: &FrameLimit) -> Result<Pixels, String> {
    use image::ImageDecoder;
    let mut reader = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| e.to_string())?;
    let Some(format) = reader.format() else {
        return Err("not a PNG, JPEG or BMP image".into());
    };
    let mut limits = image::Limits::default();
    // 16-bit RGBA at most, 8 bytes a pixel, before it becomes 8-bit.
    limits.max_alloc = Some(limit.max.0 as u64 * limit.max.1 as u64 * 8 + (1 << 20));
    reader.limits(limits);
    let decoder = reader.into_decoder().map_err(|e| e.to_string())?;
    let (w, h) = decoder.dimensions();
    limit.check(w, h)?;
    if format == image::ImageFormat::Jpeg && !jpeg_complete(bytes) {
        return Err(format!(
            "truncated JPEG ({w}x{h} px, {} bytes): no end-of-image marker (FF D9) at its end",
            bytes.len()
        ));
    }
    let img = image::DynamicImage::from_decoder(decoder).map_err(|e| e.to_string())?;
    Ok(Pixels::from_dynamic(img))
}

/// A JPEG ends with its end-of-image marker FF D9 (cameras may pad the buffer with zeros).
fn jpeg_complete(bytes: &[u8]) -> bool {
    let end = bytes.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1);
    bytes[..end].ends_with(&[0xFF, 0xD9])
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
    /// The last run ended without warning (killed) before this part had its results line
    /// or its reject pulse: written at the next start; the part was not ejected.
    Interrupted,
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
            Reason::Interrupted => "interrupted",
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

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(w: u32, h: u32, format: image::ImageFormat) -> Vec<u8> {
        let img = image::GrayImage::from_fn(w, h, |x, y| image::Luma([((x * 7 + y * 3) % 256) as u8]));
        let mut out = Vec::new();
        image::DynamicImage::ImageLuma8(img)
            .write_to(&mut std::io::Cursor::new(&mut out), format)
            .unwrap();
        out
    }

    #[test]
    fn the_limit_scales_the_model_input_both_ways() {
        let l = FrameLimit::for_input((128, 128), 16);
        assert_eq!((l.min, l.max), ((8, 8), (2048, 2048)));
        assert!(l.check(2048, 8).is_ok());
        assert_eq!(
            l.check(13000, 13000).unwrap_err(),
            "13000x13000 px, larger than the largest frame inspected, 2048x2048 px (decision.max_frame_scale = 16 times the model's 128x128 input)"
        );
        assert_eq!(
            l.check(1, 1).unwrap_err(),
            "1x1 px, smaller than the smallest frame inspected, 8x8 px (the model's 128x128 input divided by decision.max_frame_scale = 16)"
        );
        assert!(l.check(1, 50000).unwrap_err().contains("larger than"));
        assert!(l.check(10, 7).unwrap_err().contains("smaller than"));
        assert_eq!(FrameLimit::for_input((4, 4), 64).min, (1, 1));
    }

    #[test]
    fn an_image_outside_the_limit_is_refused_from_its_header() {
        let l = FrameLimit::for_input((16, 16), 2);
        for format in [
            image::ImageFormat::Png,
            image::ImageFormat::Jpeg,
            image::ImageFormat::Bmp,
        ] {
            let px = decode_image(&encoded(32, 8, format), &l).unwrap();
            assert_eq!((px.width, px.height), (32, 8), "{format:?}");
            let e = decode_image(&encoded(33, 8, format), &l).unwrap_err();
            assert!(e.starts_with("33x8 px, larger than"), "{format:?}: {e}");
            let e = decode_image(&encoded(8, 7, format), &l).unwrap_err();
            assert!(e.starts_with("8x7 px, smaller than"), "{format:?}: {e}");
        }
        assert_eq!(decode_image(b"hello", &l).unwrap_err(), "not a PNG, JPEG or BMP image");
    }

    #[test]
    fn a_truncated_image_is_refused() {
        let l = FrameLimit::for_input((64, 64), 2);
        let jpeg = encoded(64, 64, image::ImageFormat::Jpeg);
        let mut padded = jpeg.clone();
        padded.extend_from_slice(&[0; 16]);
        assert!(
            decode_image(&padded, &l).is_ok(),
            "zero padding after the marker is fine"
        );
        let e = decode_image(&jpeg[..jpeg.len() * 2 / 3], &l).unwrap_err();
        assert!(e.starts_with("truncated JPEG (64x64 px"), "{e}");
        for format in [image::ImageFormat::Png, image::ImageFormat::Bmp] {
            let full = encoded(64, 64, format);
            assert!(decode_image(&full[..full.len() * 2 / 3], &l).is_err(), "{format:?}");
        }
    }
}
