//! Frame → model input tensor: colour, resize and normalisation as the manifest says.
//!
//! Mirrors models/training/train.py exactly (convert colour, stretch-resize with a
//! bilinear filter, scale to the value range, then (x − mean) / std), so that the
//! scores on the line are the scores seen in training and calibration.

use crate::camera::{PixelFormat, Pixels};
use crate::model::{Channels, InputSpec};
use image::{imageops, ImageBuffer, Luma, Rgb};
use std::borrow::Cow;

/// Why a frame could not become a tensor.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PreprocessError {
    #[error("broken frame: {width}x{height} {format:?} needs {expected} bytes, the buffer holds {found}")]
    BufferSize {
        width: u32,
        height: u32,
        format: PixelFormat,
        expected: usize,
        found: usize,
    },
    #[error("broken frame: empty image ({width}x{height})")]
    Empty { width: u32, height: u32 },
}

/// Fills `out` (len C·H·W, reused across frames) with the model input for `pixels`.
pub fn to_tensor(pixels: &Pixels, spec: &InputSpec, out: &mut Vec<f32>) -> Result<(), PreprocessError> {
    let (w, h) = (pixels.width, pixels.height);
    if w == 0 || h == 0 {
        return Err(PreprocessError::Empty { width: w, height: h });
    }
    let expected = w as usize * h as usize * pixels.format.channels();
    if pixels.data.len() != expected {
        return Err(PreprocessError::BufferSize {
            width: w,
            height: h,
            format: pixels.format,
            expected,
            found: pixels.data.len(),
        });
    }
    let (tw, th) = (spec.width() as u32, spec.height() as u32);
    let plane = (tw * th) as usize;
    out.resize(plane * spec.channel_count(), 0.0);
    let [lo, hi] = spec.value_range;
    let scale = (hi - lo) / 255.0;
    match spec.channels {
        Channels::Gray => {
            let gray: Cow<[u8]> = match pixels.format {
                PixelFormat::Gray8 => Cow::Borrowed(&pixels.data),
                PixelFormat::Rgb8 => pixels.data.chunks_exact(3).map(|p| luma(p[0], p[1], p[2])).collect(),
            };
            let img = resized::<Luma<u8>>(&gray, (w, h), (tw, th));
            let (m, s) = (spec.mean[0], spec.std[0]);
            for (o, p) in out.iter_mut().zip(img.iter()) {
                *o = (lo + *p as f32 * scale - m) / s;
            }
        }
        Channels::Rgb => {
            let rgb: Cow<[u8]> = match pixels.format {
                PixelFormat::Rgb8 => Cow::Borrowed(&pixels.data),
                PixelFormat::Gray8 => pixels.data.iter().flat_map(|g| [*g; 3]).collect(),
            };
            let img = resized::<Rgb<u8>>(&rgb, (w, h), (tw, th));
            // Interleaved HWC → planar CHW.
            for (i, p) in img.chunks_exact(3).enumerate() {
                for c in 0..3 {
                    out[c * plane + i] = (lo + p[c] as f32 * scale - spec.mean[c]) / spec.std[c];
                }
            }
        }
    }
    Ok(())
}

/// ITU-R 601 luma with PIL's fixed-point rounding (PIL's "L" conversion).
pub fn luma(r: u8, g: u8, b: u8) -> u8 {
    ((r as u32 * 19595 + g as u32 * 38470 + b as u32 * 7471 + 0x8000) >> 16) as u8
}

/// The samples at w×h: the frame's own buffer when it already has that size (no copy).
fn resized<P: image::Pixel<Subpixel = u8> + 'static>(
    data: &[u8],
    from: (u32, u32),
    (w, h): (u32, u32),
) -> Cow<'_, [u8]> {
    if from == (w, h) {
        return Cow::Borrowed(data);
    }
    let view: ImageBuffer<P, &[u8]> = ImageBuffer::from_raw(from.0, from.1, data).expect("size checked above");
    // Triangle = bilinear, widened when shrinking (like PIL's antialiased BILINEAR).
    Cow::Owned(imageops::resize(&view, w, h, imageops::FilterType::Triangle).into_raw())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Resize;

    fn spec(channels: Channels, size: usize) -> InputSpec {
        let c = if channels == Channels::Gray { 1 } else { 3 };
        InputSpec {
            name: "image".into(),
            shape: [1, c, size, size],
            channels,
            resize: Resize::Stretch,
            value_range: [0.0, 1.0],
            mean: vec![0.5; c],
            std: vec![0.5; c],
        }
    }

    #[test]
    fn gray_frame_is_normalised_to_minus_one_one() {
        let px = Pixels {
            width: 2,
            height: 1,
            format: PixelFormat::Gray8,
            data: vec![0, 255],
        };
        let mut out = Vec::new();
        to_tensor(&px, &spec(Channels::Gray, 1).clone_with_size(2, 1), &mut out).unwrap();
        assert_eq!(out, vec![-1.0, 1.0]);
    }

    #[test]
    fn colour_frame_for_a_gray_model_uses_pil_luma() {
        let px = Pixels {
            width: 1,
            height: 1,
            format: PixelFormat::Rgb8,
            data: vec![255, 0, 0],
        };
        let mut out = Vec::new();
        to_tensor(&px, &spec(Channels::Gray, 1), &mut out).unwrap();
        // PIL: L = 76 for pure red.
        assert!((out[0] - ((76.0 / 255.0 - 0.5) / 0.5)).abs() < 1e-6);
    }

    #[test]
    fn rgb_model_gets_planar_channels() {
        let px = Pixels {
            width: 1,
            height: 1,
            format: PixelFormat::Rgb8,
            data: vec![255, 0, 255],
        };
        let mut out = Vec::new();
        to_tensor(&px, &spec(Channels::Rgb, 1), &mut out).unwrap();
        assert_eq!(out, vec![1.0, -1.0, 1.0]);
    }

    #[test]
    fn any_size_is_stretched_to_the_model_input() {
        let px = Pixels {
            width: 640,
            height: 120,
            format: PixelFormat::Gray8,
            data: vec![128; 640 * 120],
        };
        let mut out = Vec::new();
        to_tensor(&px, &spec(Channels::Gray, 64), &mut out).unwrap();
        assert_eq!(out.len(), 64 * 64);
        assert!(out.iter().all(|v| (v - (128.0 / 255.0 - 0.5) / 0.5).abs() < 1e-6));
    }

    #[test]
    fn short_buffer_is_a_broken_frame() {
        let px = Pixels {
            width: 10,
            height: 10,
            format: PixelFormat::Gray8,
            data: vec![0; 50],
        };
        let err = to_tensor(&px, &spec(Channels::Gray, 8), &mut Vec::new()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "broken frame: 10x10 Gray8 needs 100 bytes, the buffer holds 50"
        );
    }

    impl InputSpec {
        fn clone_with_size(&self, w: usize, h: usize) -> InputSpec {
            let mut s = self.clone();
            s.shape[2] = h;
            s.shape[3] = w;
            s
        }
    }
}
