//! A part's image with its anomaly map laid over in red, for people to see why.

use crate::model::Resize;
use image::{imageops, GrayImage, Rgb, RgbImage};

/// Red where the map is high: none up to half the threshold, full red at the threshold,
/// so that the everyday texture of good parts stays grey. `resize` is the model's policy:
/// with letterbox, only the part of the map that shows the image is laid over it.
pub fn overlay(img: &GrayImage, map: Option<&[f32]>, threshold: f32, resize: Resize) -> RgbImage {
    let (w, h) = img.dimensions();
    let heat = map.map(|m| {
        let side = (m.len() as f64).sqrt() as u32;
        let m8: Vec<u8> = m
            .iter()
            .map(|v| ((2.0 * v / threshold.max(f32::EPSILON) - 1.0).clamp(0.0, 1.0) * 255.0) as u8)
            .collect();
        let small = GrayImage::from_raw(side, side, m8).expect("square map");
        let (x0, y0, nw, nh) = crate::preprocess::placement(resize, (w, h), (side, side));
        let shown = imageops::crop_imm(&small, x0, y0, nw, nh).to_image();
        imageops::resize(&shown, w, h, imageops::FilterType::Triangle)
    });
    RgbImage::from_fn(w, h, |x, y| {
        let g = img.get_pixel(x, y)[0] as f32;
        let a = heat.as_ref().map_or(0.0, |h| h.get_pixel(x, y)[0] as f32 / 255.0) * 0.6;
        Rgb([
            (g * (1.0 - a) + 255.0 * a) as u8,
            (g * (1.0 - a)) as u8,
            (g * (1.0 - a)) as u8,
        ])
    })
}

/// A part's frame and anomaly map, kept for saving when `record.save` asks for it.
pub struct Snapshot {
    pub pixels: crate::frame::Pixels,
    /// Row-major, square, at model resolution.
    pub map: Vec<f32>,
    /// How the frame was fitted into the model input.
    pub resize: Resize,
}

impl Snapshot {
    /// Writes the frame in grey with the map in red to `path` (a PNG), creating its folder.
    pub fn save(&self, path: &std::path::Path, threshold: f32) -> anyhow::Result<()> {
        use anyhow::Context;
        let p = &self.pixels;
        let gray = match p.format {
            crate::frame::PixelFormat::Gray8 => p.data.clone(),
            crate::frame::PixelFormat::Rgb8 => p
                .data
                .chunks_exact(3)
                .map(|c| crate::preprocess::luma(c[0], c[1], c[2]))
                .collect(),
        };
        let img = GrayImage::from_raw(p.width, p.height, gray).context("frame buffer does not match its size")?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("record.save_dir: cannot create {}", dir.display()))?;
        }
        overlay(&img, Some(&self.map), threshold, self.resize)
            .save(path)
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(())
    }
}

/// A saved image's file name: `<device_seq>_<run_id>_<id>_<reason>.png`. The device
/// sequence first, so that names sort oldest first and no run overwrites another's.
pub fn image_name(device_seq: u64, run_id: &str, id: u64, reason: &str) -> String {
    format!("{device_seq:010}_{run_id}_{id:08}_{reason}.png")
}
