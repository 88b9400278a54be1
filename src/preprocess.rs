//! Frame → model input tensor: colour, resize and normalisation as the manifest says.
//!
//! Mirrors models/training/train.py exactly (convert colour, stretch-resize with a
//! bilinear filter, scale to the value range, then (x − mean) / std), so that the
//! scores on the line are the scores seen in training and calibration.

use crate::frame::{PixelFormat, Pixels};
use crate::model::{InputSpec, Resize};

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

/// Fills `out` (exactly C·H·W values: the detector's bound input tensor) with the model
/// input for `pixels`. For tools; the line keeps one [`Preprocessor`] and allocates nothing.
pub fn to_tensor(pixels: &Pixels, spec: &InputSpec, out: &mut [f32]) -> Result<(), PreprocessError> {
    Preprocessor::default().to_tensor(pixels, spec, out)
}

/// Frame → tensor with buffers kept from frame to frame: once they have grown to the
/// largest frame, a frame costs no heap allocation (tests/frame_path_allocations.rs).
#[derive(Default)]
pub struct Preprocessor {
    /// The frame in the model's colour, when the camera's differs.
    colour: Vec<u8>,
    resample: Resample,
}

impl Preprocessor {
    /// Fills `out` (exactly C·H·W values) with the model input for `pixels`.
    pub fn to_tensor(&mut self, pixels: &Pixels, spec: &InputSpec, out: &mut [f32]) -> Result<(), PreprocessError> {
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
        assert_eq!(
            out.len(),
            plane * spec.channel_count(),
            "tensor size is the manifest's input shape"
        );
        let [lo, hi] = spec.value_range;
        let scale = (hi - lo) / 255.0;
        // Where the image lands: all of the input (stretch) or a centred box (letterbox, fit),
        // the rest padded with pixel value 0, as train.py pads.
        let (x0, y0, nw, nh) = placement(spec.resize, (w, h), (tw, th));
        let norm = |v: u8, c: usize| (lo + v as f32 * scale - spec.mean[c]) / spec.std[c];
        if (nw, nh) != (tw, th) {
            for c in 0..spec.channel_count() {
                out[c * plane..(c + 1) * plane].fill(norm(0, c));
            }
        }
        let at = |x: u32, y: u32| ((y + y0) * tw + x + x0) as usize;
        // The frame in the model's colour: its own buffer where it already is.
        let channels = spec.channel_count();
        let data: &[u8] = match (spec.channels, pixels.format) {
            (PixelFormat::Gray8, PixelFormat::Rgb8) => {
                self.colour.clear();
                self.colour
                    .extend(pixels.data.chunks_exact(3).map(|p| luma(p[0], p[1], p[2])));
                &self.colour
            }
            (PixelFormat::Rgb8, PixelFormat::Gray8) => {
                self.colour.clear();
                self.colour.extend(pixels.data.iter().flat_map(|g| [*g; 3]));
                &self.colour
            }
            _ => &pixels.data,
        };
        let img = self.resample.resize(data, channels, (w, h), (nw, nh));
        // Interleaved HWC → planar CHW.
        for (i, p) in img.chunks_exact(channels).enumerate() {
            let o = at(i as u32 % nw, i as u32 / nw);
            for (c, v) in p.iter().enumerate() {
                out[c * plane + o] = norm(*v, c);
            }
        }
        Ok(())
    }
}

/// Where a `from`-sized image lands in the `to`-sized input: (x0, y0, width, height).
/// Letterbox keeps the aspect: the longer side fills the input, rounded half up in
/// integers exactly as the training package's `letterbox_rect` (models/training/linesight_train/data.py); fit does the same for an image larger
/// than the input and leaves a smaller one at its own size.
pub fn placement(resize: Resize, (w, h): (u32, u32), (tw, th): (u32, u32)) -> (u32, u32, u32, u32) {
    match resize {
        Resize::Stretch => (0, 0, tw, th),
        Resize::Letterbox | Resize::Fit => {
            // train.py's models are square; for a non-square input the scale fits both sides.
            let (w, h, tw, th) = (w as u64, h as u64, tw as u64, th as u64);
            let (num, den) = if w * th >= h * tw { (tw, w) } else { (th, h) };
            let (num, den) = if resize == Resize::Fit && num >= den {
                (1, 1)
            } else {
                (num, den)
            };
            let nw = ((2 * w * num + den) / (2 * den)).clamp(1, tw);
            let nh = ((2 * h * num + den) / (2 * den)).clamp(1, th);
            (((tw - nw) / 2) as u32, ((th - nh) / 2) as u32, nw as u32, nh as u32)
        }
    }
}

/// ITU-R 601 luma with PIL's fixed-point rounding (PIL's "L" conversion).
pub fn luma(r: u8, g: u8, b: u8) -> u8 {
    ((r as u32 * 19595 + g as u32 * 38470 + b as u32 * 7471 + 0x8000) >> 16) as u8
}

/// The image crate's `resize` with `FilterType::Triangle` (bilinear, widened when
/// shrinking, like PIL's antialiased BILINEAR), computed the same way to the bit (a vertical
/// pass into f32, then a horizontal pass rounded to u8; tested against the crate) but into
/// buffers kept from frame to frame: the crate allocates its intermediate and output
/// images, and the weights, at every call.
#[derive(Default)]
struct Resample {
    /// After the vertical pass: width × new height × channels.
    rows: Vec<f32>,
    out: Vec<u8>,
    weights: Vec<f32>,
}

impl Resample {
    /// `data` (interleaved, `channels` per pixel) at `to`: `data` itself when the size is the same.
    fn resize<'a>(&'a mut self, data: &'a [u8], channels: usize, from: (u32, u32), to: (u32, u32)) -> &'a [u8] {
        if from == to {
            return data;
        }
        let ((w, h), (nw, nh)) = ((from.0 as usize, from.1 as usize), (to.0 as usize, to.1 as usize));
        self.rows.clear();
        self.rows.resize(w * nh * channels, 0.0);
        for y in 0..nh {
            let left = triangle_weights(&mut self.weights, y, h, nh);
            let row = &mut self.rows[y * w * channels..(y + 1) * w * channels];
            for x in 0..w {
                for c in 0..channels {
                    let mut t = 0.0f32;
                    for (i, wt) in self.weights.iter().enumerate() {
                        t += data[((left + i) * w + x) * channels + c] as f32 * wt;
                    }
                    row[x * channels + c] = t;
                }
            }
        }
        self.out.clear();
        self.out.resize(nw * nh * channels, 0);
        for x in 0..nw {
            let left = triangle_weights(&mut self.weights, x, w, nw);
            for y in 0..nh {
                for c in 0..channels {
                    let mut t = 0.0f32;
                    for (i, wt) in self.weights.iter().enumerate() {
                        t += self.rows[(y * w + left + i) * channels + c] * wt;
                    }
                    self.out[(y * nw + x) * channels + c] = t.clamp(0.0, 255.0).round() as u8;
                }
            }
        }
        &self.out
    }
}

/// The normalised triangle-filter weights of output sample `out` of `new` from `len`
/// input samples, into `ws`; returns the first input sample they apply to. The image
/// crate's arithmetic, step by step, in f32.
fn triangle_weights(ws: &mut Vec<f32>, out: usize, len: usize, new: usize) -> usize {
    let ratio = len as f32 / new as f32;
    let sratio = if ratio < 1.0 { 1.0 } else { ratio };
    let support = sratio; // the triangle's support is 1
    let input = (out as f32 + 0.5) * ratio;
    let left = ((input - support).floor() as i64).clamp(0, len as i64 - 1);
    let right = ((input + support).ceil() as i64).clamp(left + 1, len as i64);
    let input = input - 0.5;
    ws.clear();
    let mut sum = 0.0f32;
    for i in left..right {
        let x = (i as f32 - input) / sratio;
        let w = if x.abs() < 1.0 { 1.0 - x.abs() } else { 0.0 };
        ws.push(w);
        sum += w;
    }
    for w in ws.iter_mut() {
        *w /= sum;
    }
    left as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(channels: PixelFormat, size: usize) -> InputSpec {
        let c = if channels == PixelFormat::Gray8 { 1 } else { 3 };
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

    fn gray(width: u32, height: u32, data: Vec<u8>) -> Pixels {
        Pixels {
            width,
            height,
            format: PixelFormat::Gray8,
            data,
        }
    }

    fn rgb_pixel(rgb: [u8; 3]) -> Pixels {
        Pixels {
            width: 1,
            height: 1,
            format: PixelFormat::Rgb8,
            data: rgb.to_vec(),
        }
    }

    #[test]
    fn gray_frame_is_normalised_to_minus_one_one() {
        let px = gray(2, 1, vec![0, 255]);
        let mut out = vec![0.0; 2];
        to_tensor(&px, &spec(PixelFormat::Gray8, 1).clone_with_size(2, 1), &mut out).unwrap();
        assert_eq!(out, vec![-1.0, 1.0]);
    }

    #[test]
    fn colour_frame_for_a_gray_model_uses_pil_luma() {
        let px = rgb_pixel([255, 0, 0]);
        let mut out = vec![0.0; 1];
        to_tensor(&px, &spec(PixelFormat::Gray8, 1), &mut out).unwrap();
        // PIL: L = 76 for pure red.
        assert!((out[0] - ((76.0 / 255.0 - 0.5) / 0.5)).abs() < 1e-6);
    }

    #[test]
    fn rgb_model_gets_planar_channels() {
        let px = rgb_pixel([255, 0, 255]);
        let mut out = vec![0.0; 3];
        to_tensor(&px, &spec(PixelFormat::Rgb8, 1), &mut out).unwrap();
        assert_eq!(out, vec![1.0, -1.0, 1.0]);
    }

    #[test]
    fn any_size_is_stretched_to_the_model_input() {
        let px = gray(640, 120, vec![128; 640 * 120]);
        let mut out = vec![0.0; 64 * 64];
        to_tensor(&px, &spec(PixelFormat::Gray8, 64), &mut out).unwrap();
        assert_eq!(out.len(), 64 * 64);
        assert!(out.iter().all(|v| (v - (128.0 / 255.0 - 0.5) / 0.5).abs() < 1e-6));
    }

    #[test]
    fn short_buffer_is_a_broken_frame() {
        let px = gray(10, 10, vec![0; 50]);
        let err = to_tensor(&px, &spec(PixelFormat::Gray8, 8), &mut [0.0; 64]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "broken frame: 10x10 Gray8 needs 100 bytes, the buffer holds 50"
        );
    }

    /// The rows of a 4x4 grey model input made from `px` with `resize`.
    fn rows_4x4(px: &Pixels, resize: Resize) -> Vec<Vec<f32>> {
        let mut sp = spec(PixelFormat::Gray8, 4);
        sp.resize = resize;
        let mut out = vec![9.0; 16];
        to_tensor(px, &sp, &mut out).unwrap();
        out.chunks(4).map(<[f32]>::to_vec).collect()
    }

    #[test]
    fn letterbox_keeps_the_aspect_and_pads_with_black() {
        // 4x2 fills rows 1 and 2 of the 4x4 input; rows 0 and 3 are padding (pixel 0 → -1).
        let rows = rows_4x4(&gray(4, 2, vec![255; 8]), Resize::Letterbox);
        assert_eq!(rows[0], [-1.0; 4]);
        assert_eq!(rows[1], [1.0; 4]);
        assert_eq!(rows[2], [1.0; 4]);
        assert_eq!(rows[3], [-1.0; 4]);
    }

    #[test]
    fn fit_keeps_a_small_image_at_its_own_size() {
        // A 2x1 frame in a 4x4 input: letterbox would enlarge it to 4x2, fit leaves it 2x1
        // in the centre (pixels at their training scale), the rest padding.
        let rows = rows_4x4(&gray(2, 1, vec![255, 0]), Resize::Fit);
        assert_eq!(rows[0], [-1.0; 4]);
        assert_eq!(rows[1], [-1.0, 1.0, -1.0, -1.0]);
        assert_eq!(rows[2], [-1.0; 4]);
        assert_eq!(rows[3], [-1.0; 4]);
    }

    #[test]
    fn letterbox_placement_matches_train_py() {
        // train.py letterbox_rect(593, 261, 256) == (0, 71, 256, 113); (248, 373, 256) == (42, 0, 170, 256)
        assert_eq!(placement(Resize::Letterbox, (593, 261), (256, 256)), (0, 71, 256, 113));
        assert_eq!(placement(Resize::Letterbox, (248, 373), (256, 256)), (43, 0, 170, 256));
        assert_eq!(placement(Resize::Stretch, (593, 261), (256, 256)), (0, 0, 256, 256));
        // train.py letterbox_rect(w, h, 512, upscale=False): larger images shrink, smaller keep their size
        assert_eq!(placement(Resize::Fit, (593, 261), (512, 512)), (0, 143, 512, 225));
        assert_eq!(placement(Resize::Fit, (248, 373), (512, 512)), (132, 69, 248, 373));
        assert_eq!(placement(Resize::Fit, (512, 100), (512, 512)), (0, 206, 512, 100));
    }

    /// The image crate's resize, as the line used it before it kept its buffers.
    fn crate_resize(data: &[u8], channels: usize, from: (u32, u32), to: (u32, u32)) -> Vec<u8> {
        use image::{imageops, ImageBuffer, Luma, Rgb};
        let f = imageops::FilterType::Triangle;
        if channels == 1 {
            let v: ImageBuffer<Luma<u8>, &[u8]> = ImageBuffer::from_raw(from.0, from.1, data).unwrap();
            imageops::resize(&v, to.0, to.1, f).into_raw()
        } else {
            let v: ImageBuffer<Rgb<u8>, &[u8]> = ImageBuffer::from_raw(from.0, from.1, data).unwrap();
            imageops::resize(&v, to.0, to.1, f).into_raw()
        }
    }

    #[test]
    fn resampling_is_the_image_crates_to_the_bit_with_buffers_kept() {
        let mut r = Resample::default();
        let mut seed = 7u64;
        let mut next = || {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (seed >> 33) as u32
        };
        let sizes = [
            (1, 1),
            (2, 3),
            (7, 5),
            (64, 64),
            (100, 37),
            (256, 256),
            (300, 301),
            (33, 500),
        ];
        for &(w, h) in &sizes {
            for &(nw, nh) in &sizes {
                for channels in [1usize, 3] {
                    let data: Vec<u8> = (0..w * h * channels as u32).map(|_| next() as u8).collect();
                    let want = crate_resize(&data, channels, (w, h), (nw, nh));
                    let got = r.resize(&data, channels, (w, h), (nw, nh)).to_vec();
                    assert!(want == got, "{w}x{h} → {nw}x{nh}, {channels} channel(s)");
                }
            }
        }
    }

    #[test]
    fn a_kept_preprocessor_gives_what_a_fresh_one_gives() {
        let mut kept = Preprocessor::default();
        let sp = spec(PixelFormat::Rgb8, 16);
        for (w, h) in [(40, 30), (16, 16), (9, 70), (40, 30)] {
            let px = Pixels {
                width: w,
                height: h,
                format: PixelFormat::Gray8,
                data: (0..w * h).map(|i| (i * 7) as u8).collect(),
            };
            let (mut a, mut b) = (vec![0.0; 3 * 256], vec![0.0; 3 * 256]);
            kept.to_tensor(&px, &sp, &mut a).unwrap();
            to_tensor(&px, &sp, &mut b).unwrap();
            assert_eq!(a, b, "{w}x{h}");
        }
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
