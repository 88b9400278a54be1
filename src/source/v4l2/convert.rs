//! Kernel buffer → frame pixels, in one pass over the mapped buffer.
//!
//! The conversion is the only copy: each row is read from the mmap'ed kernel buffer
//! (skipping the driver's row padding) straight into the frame's pixel buffer, in the
//! colour the model wants, and the kernel buffer is queued back at once so that the
//! driver never runs short while a frame waits for inference.

use crate::config::V4l2PixelFormat;
use crate::frame::{decode_image, FrameLimit, PixelFormat, Pixels};

/// A packed pixel format by its V4L2 four-character code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FourCc {
    /// 8-bit luma.
    Grey,
    /// 4:2:2 Y0 U Y1 V.
    Yuyv,
    /// Motion JPEG: one JPEG per frame.
    Mjpg,
}

impl From<V4l2PixelFormat> for FourCc {
    fn from(f: V4l2PixelFormat) -> FourCc {
        match f {
            V4l2PixelFormat::Grey => FourCc::Grey,
            V4l2PixelFormat::Yuyv => FourCc::Yuyv,
            V4l2PixelFormat::Mjpg => FourCc::Mjpg,
        }
    }
}

impl FourCc {
    pub const PREFERENCE: [FourCc; 3] = [FourCc::Grey, FourCc::Yuyv, FourCc::Mjpg];

    /// A format by name, with the aliases `camera.pixel_format` accepts (config owns them).
    pub fn parse(s: &str) -> Option<FourCc> {
        V4l2PixelFormat::parse(s).map(FourCc::from)
    }

    pub fn code(self) -> u32 {
        fourcc(match self {
            FourCc::Grey => b"GREY",
            FourCc::Yuyv => b"YUYV",
            FourCc::Mjpg => b"MJPG",
        })
    }

    pub fn from_code(code: u32) -> Option<FourCc> {
        FourCc::PREFERENCE.into_iter().find(|f| f.code() == code)
    }

    pub fn name(self) -> &'static str {
        match self {
            FourCc::Grey => "GREY",
            FourCc::Yuyv => "YUYV",
            FourCc::Mjpg => "MJPG",
        }
    }

    /// Bytes per pixel of a packed format (None: compressed).
    fn bytes_per_pixel(self) -> Option<usize> {
        match self {
            FourCc::Grey => Some(1),
            FourCc::Yuyv => Some(2),
            FourCc::Mjpg => None,
        }
    }
}

pub const fn fourcc(c: &[u8; 4]) -> u32 {
    c[0] as u32 | (c[1] as u32) << 8 | (c[2] as u32) << 16 | (c[3] as u32) << 24
}

/// A four-character code as text ("YUYV"), for messages about formats linesight cannot use.
pub fn fourcc_name(code: u32) -> String {
    let s: String = code
        .to_le_bytes()
        .iter()
        .map(|b| {
            if b.is_ascii_graphic() || *b == b' ' {
                *b as char
            } else {
                '?'
            }
        })
        .collect();
    s.trim_end().to_string()
}

/// Converts one captured buffer into pixels: luma (`rgb` false) or RGB.
pub fn to_pixels(
    data: &[u8],
    format: FourCc,
    (width, height): (u32, u32),
    stride: usize,
    rgb: bool,
) -> Result<Pixels, String> {
    let (w, h) = (width as usize, height as usize);
    if let Some(bpp) = format.bytes_per_pixel() {
        let stride = stride.max(w * bpp);
        let needed = stride * (h - 1) + w * bpp;
        if data.len() < needed {
            return Err(format!(
                "short {} buffer: {width}x{height} needs {needed} bytes, the driver filled {}",
                format.name(),
                data.len()
            ));
        }
    }
    let rows = |bpp: usize| (0..h).map(move |y| &data[y * stride.max(w * bpp)..][..w * bpp]);
    let (format, out) = match (format, rgb) {
        (FourCc::Grey, _) => {
            let mut out = Vec::with_capacity(w * h);
            rows(1).for_each(|r| out.extend_from_slice(r));
            (PixelFormat::Gray8, out)
        }
        (FourCc::Yuyv, false) => {
            let mut out = Vec::with_capacity(w * h);
            rows(2).for_each(|r| out.extend(r.iter().step_by(2)));
            (PixelFormat::Gray8, out)
        }
        (FourCc::Yuyv, true) => {
            let mut out = Vec::with_capacity(w * h * 3);
            for r in rows(2) {
                for q in r.chunks_exact(4) {
                    let (y0, u, y1, v) = (q[0], q[1], q[2], q[3]);
                    out.extend_from_slice(&yuv_to_rgb(y0, u, v));
                    out.extend_from_slice(&yuv_to_rgb(y1, u, v));
                }
                if w % 2 == 1 {
                    // An odd width leaves one pixel in the last half-used macropixel.
                    let q = &r[(w - 1) * 2..];
                    out.extend_from_slice(&yuv_to_rgb(q[0], q[1], *r.get(w * 2 + 1).unwrap_or(&128)));
                }
            }
            out.truncate(w * h * 3);
            (PixelFormat::Rgb8, out)
        }
        (FourCc::Mjpg, _) => {
            // Its size is checked from its header before it is decoded, and a torn buffer
            // (no end-of-image marker) is refused, not scored on the decoder's grey fill.
            return decode_image(data, &FrameLimit::exactly(width, height))
                .map_err(|e| format!("MJPG frame does not decode: {e}"));
        }
    };
    Ok(Pixels {
        width,
        height,
        format,
        data: out,
    })
}

/// BT.601 limited range (what YUYV webcams and vivid send) to RGB, in fixed point.
fn yuv_to_rgb(y: u8, u: u8, v: u8) -> [u8; 3] {
    let c = (y as i32 - 16) * 298;
    let d = u as i32 - 128;
    let e = v as i32 - 128;
    let clamp = |x: i32| ((x + 128) >> 8).clamp(0, 255) as u8;
    [clamp(c + 409 * e), clamp(c - 100 * d - 208 * e), clamp(c + 516 * d)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fourcc_codes_are_little_endian_characters() {
        assert_eq!(FourCc::Yuyv.code(), 0x5659_5559);
        assert_eq!(FourCc::from_code(0x5945_5247), Some(FourCc::Grey));
        assert_eq!(fourcc_name(FourCc::Mjpg.code()), "MJPG");
        assert_eq!(FourCc::parse("mjpeg"), Some(FourCc::Mjpg));
        assert_eq!(FourCc::parse("NV12"), None);
    }

    #[test]
    fn control_names_are_written_as_v4l2_ctl_writes_them() {
        use crate::source::v4l2::control_name;
        assert_eq!(control_name("Loop Video"), "loop_video");
        assert_eq!(control_name("Power Line Frequency"), "power_line_frequency");
        assert_eq!(control_name("Exposure, Absolute"), "exposure_absolute");
        assert_eq!(control_name("White Balance (auto)"), "white_balance_auto");
    }

    #[test]
    fn padded_grey_rows_lose_their_padding() {
        // 3x2 with rows padded to 4 bytes.
        let data = [1, 2, 3, 99, 4, 5, 6, 99];
        let px = to_pixels(&data, FourCc::Grey, (3, 2), 4, false).unwrap();
        assert_eq!(px.data, [1, 2, 3, 4, 5, 6]);
        assert_eq!(px.format, PixelFormat::Gray8);
    }

    #[test]
    fn yuyv_gives_its_luma_for_a_gray_model_and_rgb_for_a_colour_one() {
        // Two pixels: Y0=16 (black), Y1=235 (white), neutral chroma.
        let data = [16, 128, 235, 128];
        let gray = to_pixels(&data, FourCc::Yuyv, (2, 1), 4, false).unwrap();
        assert_eq!(gray.data, [16, 235]);
        let rgb = to_pixels(&data, FourCc::Yuyv, (2, 1), 4, true).unwrap();
        assert_eq!(rgb.data, [0, 0, 0, 255, 255, 255]);
        // Pure red in BT.601 limited range: Y=81, U=90, V=240.
        let red = to_pixels(&[81, 90, 81, 240], FourCc::Yuyv, (2, 1), 4, true).unwrap();
        assert!(
            red.data[0] > 250 && red.data[1] < 5 && red.data[2] < 5,
            "{:?}",
            red.data
        );
    }

    #[test]
    fn a_short_buffer_is_a_broken_frame_not_a_panic() {
        let err = to_pixels(&[0; 10], FourCc::Yuyv, (4, 2), 8, false).unwrap_err();
        assert!(err.contains("needs 16 bytes"), "{err}");
    }

    #[test]
    fn mjpeg_frames_decode_and_must_match_the_stream_size() {
        let img = image::GrayImage::from_fn(16, 8, |x, _| image::Luma([(x * 16) as u8]));
        let mut jpeg = Vec::new();
        image::DynamicImage::ImageLuma8(img)
            .write_to(&mut std::io::Cursor::new(&mut jpeg), image::ImageFormat::Jpeg)
            .unwrap();
        let px = to_pixels(&jpeg, FourCc::Mjpg, (16, 8), 0, false).unwrap();
        assert_eq!((px.width, px.height, px.format), (16, 8, PixelFormat::Gray8));
        assert!(to_pixels(&jpeg, FourCc::Mjpg, (32, 8), 0, false).is_err());
        assert!(to_pixels(b"not a jpeg", FourCc::Mjpg, (16, 8), 0, false).is_err());
    }
}
