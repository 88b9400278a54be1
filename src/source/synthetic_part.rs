//! A synthetic production line: seeded, deterministic images of one machined product,
//! a turned steel flange lying on a conveyor belt, seen from above in 8-bit grey.
//!
//! Part `i` of a line depends only on `(seed, i)`: every random choice for it comes
//! from its own ChaCha stream, so a data set can be regenerated part by part.
//! All random choices are drawn up front into a [`Scene`]; rendering is then a pure
//! function of the scene, which lets the same part be drawn with and without its
//! defect (the defect mask is the set of pixels the defect changes).

use std::f32::consts::{FRAC_1_SQRT_2, PI, TAU};
use std::io;
use std::path::Path;

use crate::config::SyntheticCamera;
use crate::frame::DefectKind;
use image::GrayImage;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Knobs of the synthetic line: its config section, `[camera] kind = "synthetic"`
/// (sizes, defect ratio, defect kinds, seed; the line speed is the camera's business).
pub type PartSpec = SyntheticCamera;

/// The kinds a line draws from: the named ones (validated in config/camera.rs), or all.
fn kinds_of(spec: &PartSpec) -> Vec<DefectKind> {
    if spec.defect_kinds.is_empty() {
        DefectKind::ALL.to_vec()
    } else {
        spec.defect_kinds.iter().filter_map(|k| DefectKind::parse(k)).collect()
    }
}

pub struct SyntheticPart {
    pub image: GrayImage,
    /// 255 where the defect is, 0 elsewhere; all zero for a good part.
    pub mask: GrayImage,
    /// None for a good part.
    pub defect: Option<DefectKind>,
}

pub struct PartGenerator {
    spec: PartSpec,
    kinds: Vec<DefectKind>,
    next_index: u64,
}

impl PartGenerator {
    pub fn new(spec: PartSpec) -> Self {
        PartGenerator {
            kinds: kinds_of(&spec),
            spec,
            next_index: 0,
        }
    }

    /// The next part on the line. Part i depends only on (seed, i).
    pub fn next_part(&mut self) -> SyntheticPart {
        let part = self.part(self.next_index);
        self.next_index += 1;
        part
    }

    /// Part number `index` directly (same result as the index-th call of next_part).
    pub fn part(&self, index: u64) -> SyntheticPart {
        let scene = plan(&self.spec, &self.kinds, index);
        let with = render(&scene, true);
        let image = finish(&with, &scene);
        let mask = match scene.defect {
            Some(_) => defect_mask(&with, &render(&scene, false), &scene),
            None => GrayImage::new(scene.width, scene.height),
        };
        SyntheticPart {
            image,
            mask,
            defect: scene.defect.as_ref().map(Defect::kind),
        }
    }
}

/// What `save_dataset` wrote.
#[derive(Debug)]
pub struct DatasetSummary {
    pub good: usize,
    pub defect: usize,
    /// Count per kind, in `DefectKind::ALL` order (kinds that did not occur included).
    pub per_kind: Vec<(DefectKind, usize)>,
}

/// Writes parts `0..count` of the line as `dir/good/part_000123.png`,
/// `dir/defect/<kind>_000124.png` and its mask `dir/masks/<kind>_000124.png`.
pub fn save_dataset(dir: &Path, count: usize, spec: PartSpec) -> io::Result<DatasetSummary> {
    let (good_dir, defect_dir, mask_dir) = (dir.join("good"), dir.join("defect"), dir.join("masks"));
    for d in [&good_dir, &defect_dir, &mask_dir] {
        std::fs::create_dir_all(d)?;
    }
    let mut summary = DatasetSummary {
        good: 0,
        defect: 0,
        per_kind: DefectKind::ALL.iter().map(|&k| (k, 0)).collect(),
    };
    let mut generator = PartGenerator::new(spec);
    for index in 0..count {
        let part = generator.next_part();
        match part.defect {
            None => {
                save_png(&part.image, &good_dir.join(format!("part_{index:06}.png")))?;
                summary.good += 1;
            }
            Some(kind) => {
                let name = format!("{}_{index:06}.png", kind.as_str());
                save_png(&part.image, &defect_dir.join(&name))?;
                save_png(&part.mask, &mask_dir.join(&name))?;
                summary.defect += 1;
                if let Some(entry) = summary.per_kind.iter_mut().find(|(k, _)| *k == kind) {
                    entry.1 += 1;
                }
            }
        }
    }
    Ok(summary)
}

fn save_png(img: &GrayImage, path: &Path) -> io::Result<()> {
    img.save_with_format(path, image::ImageFormat::Png).map_err(|e| {
        let kind = match &e {
            image::ImageError::IoError(io) => io.kind(),
            _ => io::ErrorKind::Other,
        };
        io::Error::new(kind, format!("{}: {e}", path.display()))
    })
}

// ---------------------------------------------------------------------------------
// Scene: every random choice for one part.
// ---------------------------------------------------------------------------------

/// Unit vector towards the key light in the image plane (upper left).
const LIGHT: [f32; 2] = [-0.6, -0.8];
/// Metal grey of the flat face before lighting gain.
const FACE: f32 = 150.0;
/// Sensor noise, grey levels (1 sigma).
const NOISE_SIGMA: f32 = 2.5;
/// Parts per cycle of the slow lighting drift.
const DRIFT_PERIOD: u64 = 480;

struct Scene {
    width: u32,
    height: u32,
    centre: [f32; 2],
    radius: f32,
    /// Rotation of the part in the fixture, radians.
    angle: f32,
    /// Lighting gain: slow drift over the line times a per-part flicker.
    gain: f32,
    /// Azimuth of the anisotropic highlight of the turning marks.
    spec_azimuth: f32,
    /// Centre of the broad highlight of the diffuser.
    hot_spot: [f32; 2],
    /// How far the belt has moved under the camera, px.
    belt_shift: u32,
    belt_seed: u32,
    surface_seed: u32,
    noise_seed: u32,
    defect: Option<Defect>,
}

fn plan(spec: &PartSpec, kinds: &[DefectKind], index: u64) -> Scene {
    let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
    rng.set_stream(index);
    let line_seed = mix32(spec.seed as u32 ^ mix32((spec.seed >> 32) as u32));

    let size = spec.width.min(spec.height).max(1) as f32;
    let jitter = 0.04 * size;
    let centre = [
        spec.width as f32 * 0.5 + sym(&mut rng, jitter),
        spec.height as f32 * 0.5 + sym(&mut rng, jitter),
    ];
    let radius = (0.35 * size * (1.0 + sym(&mut rng, 0.02))).max(2.0);
    let angle = sym(&mut rng, 3f32.to_radians());
    let phase = unit(line_seed) as f64 * std::f64::consts::TAU;
    let cycle = (index % DRIFT_PERIOD) as f64 / DRIFT_PERIOD as f64;
    let drift = 1.0 + 0.08 * (std::f64::consts::TAU * cycle + phase).sin() as f32;
    let gain = drift * (1.0 + sym(&mut rng, 0.03));
    let spec_azimuth = LIGHT[1].atan2(LIGHT[0]) + sym(&mut rng, 0.12);
    let hot_spot = [
        centre[0] - 0.3 * radius + sym(&mut rng, 0.08 * radius),
        centre[1] - 0.35 * radius + sym(&mut rng, 0.08 * radius),
    ];
    let belt_shift = (index.wrapping_mul(61) as u32).wrapping_add(rng.gen_range(0..8));
    let mut scene = Scene {
        width: spec.width,
        height: spec.height,
        centre,
        radius,
        angle,
        gain,
        spec_azimuth,
        hot_spot,
        belt_shift,
        belt_seed: mix32(line_seed ^ 0xB17),
        surface_seed: rng.gen(),
        noise_seed: rng.gen(),
        defect: None,
    };

    // Drawn last, so the good version of a part is the same scene minus the defect.
    let ratio = if spec.defect_ratio.is_nan() {
        0.0
    } else {
        spec.defect_ratio.clamp(0.0, 1.0)
    };
    if rng.gen_bool(ratio) && !kinds.is_empty() {
        let kind = kinds[rng.gen_range(0..kinds.len())];
        let g = Geom::new(&scene);
        scene.defect = Some(Defect::sample(kind, &g, &mut rng));
    }
    scene
}

/// Uniform in -a..a.
fn sym(rng: &mut ChaCha8Rng, a: f32) -> f32 {
    (rng.gen::<f32>() * 2.0 - 1.0) * a
}

/// Uniform in lo..hi.
fn uni(rng: &mut ChaCha8Rng, lo: f32, hi: f32) -> f32 {
    lo + rng.gen::<f32>() * (hi - lo)
}

// ---------------------------------------------------------------------------------
// Geometry of the flange in image pixels.
// ---------------------------------------------------------------------------------

struct Geom {
    c: [f32; 2],
    r_out: f32,
    /// Pixel size of features that are 1 px at 256x256.
    s: f32,
    cos_a: f32,
    sin_a: f32,
    chamfer: f32,
    r_bore: f32,
    bore_chamfer: f32,
    /// Radius of the raised hub's step.
    r_hub: f32,
    holes: [[f32; 2]; 4],
    r_hole: f32,
    hole_chamfer: f32,
    /// Offset of the part's shadow on the belt (light comes from the upper left).
    shadow: [f32; 2],
    shadow_blur: f32,
    ring_period: f32,
    /// Turning marks finer than a pixel are attenuated, not aliased into moire.
    ring_contrast: f32,
    spec_dir: [f32; 2],
}

impl Geom {
    fn new(scene: &Scene) -> Geom {
        let r = scene.radius;
        let s = r / 89.6;
        let (sin_a, cos_a) = scene.angle.sin_cos();
        let pitch = 0.69 * r;
        let holes = std::array::from_fn(|i| {
            let a = scene.angle + PI / 4.0 + i as f32 * PI / 2.0;
            [scene.centre[0] + pitch * a.cos(), scene.centre[1] + pitch * a.sin()]
        });
        let ring_period = 0.025 * r;
        let blur = PI * 0.5 / ring_period.max(0.1);
        Geom {
            c: scene.centre,
            r_out: r,
            s,
            cos_a,
            sin_a,
            chamfer: 0.035 * r,
            r_bore: 0.25 * r,
            bore_chamfer: 0.04 * r,
            r_hub: 0.47 * r,
            holes,
            r_hole: 0.085 * r,
            hole_chamfer: 0.022 * r,
            shadow: [3.5 * s, 4.5 * s],
            shadow_blur: 4.0 * s,
            ring_period,
            ring_contrast: (-2.0 * blur * blur).exp(),
            spec_dir: [scene.spec_azimuth.cos(), scene.spec_azimuth.sin()],
        }
    }
}

// ---------------------------------------------------------------------------------
// Rendering: a pure function of the scene, in grey levels before sensor noise.
// ---------------------------------------------------------------------------------

fn render(scene: &Scene, with_defect: bool) -> Vec<f32> {
    let g = Geom::new(scene);
    let defect = if with_defect { scene.defect.as_ref() } else { None };
    let missing = match defect {
        Some(Defect::MissingHole(i)) => Some(*i),
        _ => None,
    };
    let (w, h) = (scene.width as usize, scene.height as usize);
    let columns: Vec<f32> = (0..scene.width).map(|x| belt_column(scene, x)).collect();
    let (hw, hh) = (w as f32 * 0.5, h as f32 * 0.5);
    let vignette = 0.16 / (hw * hw + hh * hh).max(1.0);
    let mut out = Vec::with_capacity(w * h);
    for y in 0..scene.height {
        let py = y as f32 + 0.5;
        let row = belt_row(scene, y);
        for (x, col) in columns.iter().enumerate() {
            let px = x as f32 + 0.5;
            let belt = belt_at(scene, x as u32, y, row + col);
            let v = shade_pixel(scene, &g, defect, missing, [px, py], belt);
            let (vx, vy) = (px - hw, py - hh);
            out.push(v * scene.gain * (1.0 - vignette * (vx * vx + vy * vy)));
        }
    }
    out
}

/// Adds sensor noise and quantises.
fn finish(clean: &[f32], scene: &Scene) -> GrayImage {
    let data = clean
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let n = gauss(scene.noise_seed, i as u32) * NOISE_SIGMA;
            (v + n).round().clamp(0.0, 255.0) as u8
        })
        .collect();
    GrayImage::from_raw(scene.width, scene.height, data).expect("buffer matches size")
}

/// Pixels the defect changed, dilated by 1 px: those whose output differs (same
/// sensor noise), or whose clean grey level moved by half a level or more.
fn defect_mask(with: &[f32], without: &[f32], scene: &Scene) -> GrayImage {
    let (w, h) = (scene.width as usize, scene.height as usize);
    let (a, b) = (finish(with, scene), finish(without, scene));
    let changed: Vec<bool> = (with.iter().zip(without))
        .zip(a.as_raw().iter().zip(b.as_raw()))
        .map(|((x, y), (p, q))| p != q || (x - y).abs() >= 0.5)
        .collect();
    let mut mask = GrayImage::new(scene.width, scene.height);
    for y in 0..h {
        for x in 0..w {
            let hit = (y.saturating_sub(1)..(y + 2).min(h))
                .any(|yy| (x.saturating_sub(1)..(x + 2).min(w)).any(|xx| changed[yy * w + xx]));
            if hit {
                mask.put_pixel(x as u32, y as u32, image::Luma([255]));
            }
        }
    }
    mask
}

/// The nearest bolt hole that is present.
#[derive(Clone, Copy)]
struct HoleHit {
    centre: [f32; 2],
    dist: f32,
}

fn nearest_hole(g: &Geom, p: [f32; 2], missing: Option<usize>) -> Option<HoleHit> {
    let mut best: Option<HoleHit> = None;
    for (i, c) in g.holes.iter().enumerate() {
        if Some(i) == missing {
            continue;
        }
        let dist = (p[0] - c[0]).hypot(p[1] - c[1]);
        if best.is_none_or(|b| dist < b.dist) {
            best = Some(HoleHit { centre: *c, dist });
        }
    }
    best
}

fn shade_pixel(
    scene: &Scene,
    g: &Geom,
    defect: Option<&Defect>,
    missing: Option<usize>,
    p: [f32; 2],
    belt: f32,
) -> f32 {
    let (dx, dy) = (p[0] - g.c[0], p[1] - g.c[1]);
    let r = (dx * dx + dy * dy).sqrt();
    let bg = belt * (1.0 - 0.55 * shadow(g, p));
    if r > g.r_out + 1.0 {
        return bg;
    }
    // Signed distance to the outline; a chip bites a notch out of it.
    let mut d_body = r - g.r_out;
    if let Some(Defect::Chip(chip)) = defect {
        d_body = d_body.max(-chip.sdf(p));
    }
    let body = coverage(d_body);
    if body <= 0.0 {
        return bg;
    }
    let hole = nearest_hole(g, p, missing);
    let mut metal = metal_shade(scene, g, p, [dx, dy], r, hole);
    if let Some(d) = defect {
        metal = d.apply(g, p, metal);
    }
    let (open, inside) = opening(g, p, r, hole, belt);
    let part = metal + (inside - metal) * open;
    bg + (part - bg) * body
}

/// Area fraction of a pixel inside a shape, from the signed distance (px) to its edge.
fn coverage(d: f32) -> f32 {
    (0.5 - d).clamp(0.0, 1.0)
}

// --- conveyor belt --------------------------------------------------------------

/// Weft rows of the belt fabric, plus a little row-to-row irregularity.
fn belt_row(scene: &Scene, y: u32) -> f32 {
    let s = scene.radius / 89.6;
    let weave = (y as f32 * TAU / (3.1 * s)).sin() * 2.5;
    weave + signed(hash3(y, scene.belt_seed, 7)) * 1.5
}

/// Warp threads; they travel with the belt.
fn belt_column(scene: &Scene, x: u32) -> f32 {
    let s = scene.radius / 89.6;
    let bx = x.wrapping_add(scene.belt_shift);
    (bx as f32 * TAU / (4.3 * s)).sin() * 1.2 + signed(hash3(bx, scene.belt_seed, 11)) * 0.8
}

fn belt_at(scene: &Scene, x: u32, y: u32, weave: f32) -> f32 {
    let s = scene.radius / 89.6;
    let bx = x.wrapping_add(scene.belt_shift);
    let fine = signed(hash3(bx, y, scene.belt_seed)) * 5.0;
    // Worn and dirty patches, a few tens of px across.
    let dirt = value_noise(bx as f32 / (22.0 * s), y as f32 / (22.0 * s), scene.belt_seed) * 4.0;
    42.0 + weave + fine + dirt
}

/// 0..1: how much the part shades the belt here.
fn shadow(g: &Geom, p: [f32; 2]) -> f32 {
    let (dx, dy) = (p[0] - g.c[0] - g.shadow[0], p[1] - g.c[1] - g.shadow[1]);
    let d = (dx * dx + dy * dy).sqrt() - g.r_out;
    smoothstep(g.shadow_blur, -g.shadow_blur, d)
}

// --- the flange -----------------------------------------------------------------

/// Bright metal at this point of the part: turning marks, grain, highlights and the
/// chamfers, lit from the upper left.
fn metal_shade(scene: &Scene, g: &Geom, p: [f32; 2], d: [f32; 2], r: f32, hole: Option<HoleHit>) -> f32 {
    let inv = 1.0 / r.max(1e-3);
    let n = [d[0] * inv, d[1] * inv];
    let hub = r < g.r_hub;
    let marks = turning_marks(g, r, scene.surface_seed, hub);
    let mut v = if hub { FACE + 8.0 } else { FACE } + marks;

    // Brushed grain, in the part's frame so that it turns with the part.
    let (u, w) = (d[0] * g.cos_a + d[1] * g.sin_a, -d[0] * g.sin_a + d[1] * g.cos_a);
    let turn = w.atan2(u) / TAU + 0.5;
    v += polar_grain(g, r, turn, scene.surface_seed) * 5.0;

    // Concentric grooves reflect the light along one diameter: the "bow tie" of a
    // turned face. sin and cos of (azimuth - highlight azimuth):
    let sd = n[1] * g.spec_dir[0] - n[0] * g.spec_dir[1];
    let cd = n[0] * g.spec_dir[0] + n[1] * g.spec_dir[1];
    let lobe = (-(sd * sd) / 0.06).exp() * (0.75 + 0.25 * cd);
    v += 42.0 * lobe * smoothstep(0.0, 0.6 * g.r_out, r);
    // Broad soft reflection of the diffuser.
    let (hx, hy) = (p[0] - scene.hot_spot[0], p[1] - scene.hot_spot[1]);
    let sigma2 = 2.0 * (0.6 * g.r_out).powi(2);
    v += 14.0 * (-(hx * hx + hy * hy) / sigma2).exp();

    let n_dot_l = n[0] * LIGHT[0] + n[1] * LIGHT[1];
    // Step up to the raised hub: a narrow bevel facing outwards.
    let band = (r - g.r_hub).min(g.r_hub + 1.5 * g.s - r);
    if band > -0.5 {
        let bevel = FACE * facet_shade(n_dot_l) + 0.5 * marks;
        v = lerp(v, bevel, coverage(-band));
    }
    // Chamfer at the rim, tilted outwards.
    let t = coverage(g.r_out - g.chamfer - r);
    if t > 0.0 {
        v = lerp(v, FACE * facet_shade(n_dot_l) + 0.6 * marks, t);
    }
    // Chamfer of the bore, tilted inwards.
    let t = coverage(r - g.r_bore - g.bore_chamfer);
    if t > 0.0 {
        v = lerp(v, FACE * facet_shade(-n_dot_l) + 0.6 * marks, t);
    }
    // Chamfer of a bolt hole, tilted towards the hole's axis.
    if let Some(h) = hole {
        let t = coverage(h.dist - g.r_hole - g.hole_chamfer);
        if t > 0.0 {
            let inv = 1.0 / h.dist.max(1e-3);
            let nh = [(h.centre[0] - p[0]) * inv, (h.centre[1] - p[1]) * inv];
            let ndl = nh[0] * LIGHT[0] + nh[1] * LIGHT[1];
            v = lerp(v, FACE * facet_shade(ndl) + 0.4 * marks, t);
        }
    }
    v
}

/// Brightness of a 45 degree facet relative to the flat face, given the dot product of
/// its outward horizontal normal with the light's azimuth: lit, dark, and a specular
/// glint when it faces the light squarely.
fn facet_shade(n_dot_l: f32) -> f32 {
    const LH: f32 = 0.643; // light at 50 degrees elevation
    const LZ: f32 = 0.766;
    const AMBIENT: f32 = 0.15;
    let lambert = (FRAC_1_SQRT_2 * (n_dot_l * LH + LZ)).max(0.0);
    (AMBIENT + lambert) / (AMBIENT + LZ) + 0.45 * n_dot_l.max(0.0).powi(6)
}

/// Concentric rings of the turning tool: the feed marks, ring-to-ring variation from
/// tool wear, and a slower chatter.
fn turning_marks(g: &Geom, r: f32, seed: u32, hub: bool) -> f32 {
    let (period, seed) = if hub {
        (g.ring_period * 0.8, seed ^ 0x4B)
    } else {
        (g.ring_period, seed)
    };
    let contrast = if hub {
        g.ring_contrast * g.ring_contrast
    } else {
        g.ring_contrast
    };
    let phase = unit(seed) * TAU;
    let feed = (r * TAU / period + phase).sin() * 9.0 * contrast;
    let wear = noise1(r / (1.7 * g.s), seed) * 6.0;
    let chatter = (r * TAU / (11.0 * g.s) + phase).sin() * 2.0;
    feed + wear + chatter
}

/// Fine grain streaked along the turning direction. Value noise on rings of cells,
/// each ring's cell count a whole number so that it closes without a seam.
fn polar_grain(g: &Geom, r: f32, turn: f32, seed: u32) -> f32 {
    let cell_r = 0.9 * g.s;
    let cell_len = 9.0 * g.s;
    let ring = |i: u32| {
        let count = ((TAU * i as f32 * cell_r / cell_len) as u32).max(6);
        let t = turn * count as f32;
        let j = t.floor();
        let f = smooth(t - j);
        let j = j as u32 % count;
        let a = signed(hash3(i, j, seed));
        let b = signed(hash3(i, (j + 1) % count, seed));
        lerp(a, b, f)
    };
    let rr = r / cell_r;
    let i = rr.floor();
    lerp(ring(i as u32), ring(i as u32 + 1), smooth(rr - i))
}

/// Through holes: 0..1 coverage of an opening here and what is seen through it, the
/// belt in the part's shadow except where light falls through the hole.
fn opening(g: &Geom, p: [f32; 2], r: f32, hole: Option<HoleHit>, belt: f32) -> (f32, f32) {
    let (centre, radius, cov) = match hole {
        Some(h) if h.dist < g.r_hole + 1.0 => (h.centre, g.r_hole, coverage(h.dist - g.r_hole)),
        _ if r < g.r_bore + 1.0 => (g.c, g.r_bore, coverage(r - g.r_bore)),
        _ => return (0.0, 0.0),
    };
    let (lx, ly) = (p[0] - centre[0] - g.shadow[0], p[1] - centre[1] - g.shadow[1]);
    let lit = smoothstep(1.5 * g.s, -1.5 * g.s, (lx * lx + ly * ly).sqrt() - radius);
    (cov, belt * (0.2 + 0.65 * lit))
}

// ---------------------------------------------------------------------------------
// Defects, in image pixels.
// ---------------------------------------------------------------------------------

enum Defect {
    Scratch(Scratch),
    Dent(Dent),
    Crack(Crack),
    Stain(Stain),
    MissingHole(usize),
    Chip(Chip),
}

impl Defect {
    fn kind(&self) -> DefectKind {
        match self {
            Defect::Scratch(_) => DefectKind::Scratch,
            Defect::Dent(_) => DefectKind::Dent,
            Defect::Crack(_) => DefectKind::Crack,
            Defect::Stain(_) => DefectKind::Stain,
            Defect::MissingHole(_) => DefectKind::MissingHole,
            Defect::Chip(_) => DefectKind::Chip,
        }
    }

    fn sample(kind: DefectKind, g: &Geom, rng: &mut ChaCha8Rng) -> Defect {
        match kind {
            DefectKind::Scratch => Defect::Scratch(Scratch::sample(g, rng)),
            DefectKind::Dent => Defect::Dent(Dent::sample(g, rng)),
            DefectKind::Crack => Defect::Crack(Crack::sample(g, rng)),
            DefectKind::Stain => Defect::Stain(Stain::sample(g, rng)),
            DefectKind::MissingHole => Defect::MissingHole(rng.gen_range(0..4)),
            DefectKind::Chip => Defect::Chip(Chip::sample(g, rng)),
        }
    }

    /// The metal's grey level at `p` with the defect on its surface.
    fn apply(&self, g: &Geom, p: [f32; 2], v: f32) -> f32 {
        match self {
            Defect::Scratch(d) => d.apply(p, v),
            Defect::Dent(d) => d.apply(p, v),
            Defect::Crack(d) => d.apply(p, v),
            Defect::Stain(d) => d.apply(p, v),
            Defect::Chip(d) => d.apply(g, p, v),
            // Plain metal where the hole should be: handled by leaving the hole out.
            Defect::MissingHole(_) => v,
        }
    }
}

/// A random point on the part's face, between `lo` and `hi` times the radius.
fn face_point(g: &Geom, rng: &mut ChaCha8Rng, lo: f32, hi: f32) -> [f32; 2] {
    let a = uni(rng, 0.0, TAU);
    let r = g.r_out * uni(rng, lo, hi);
    [g.c[0] + r * a.cos(), g.c[1] + r * a.sin()]
}

#[derive(Clone, Copy)]
struct Rect {
    x0: f32,
    y0: f32,
    x1: f32,
    y1: f32,
}

impl Rect {
    fn around(points: &[[f32; 2]], margin: f32) -> Rect {
        let mut r = Rect {
            x0: f32::MAX,
            y0: f32::MAX,
            x1: f32::MIN,
            y1: f32::MIN,
        };
        for p in points {
            r.x0 = r.x0.min(p[0] - margin);
            r.y0 = r.y0.min(p[1] - margin);
            r.x1 = r.x1.max(p[0] + margin);
            r.y1 = r.y1.max(p[1] + margin);
        }
        r
    }

    fn contains(&self, p: [f32; 2]) -> bool {
        p[0] >= self.x0 && p[0] <= self.x1 && p[1] >= self.y0 && p[1] <= self.y1
    }
}

/// A thin line along a polyline.
struct Stroke {
    pts: Vec<[f32; 2]>,
    width: f32,
}

impl Stroke {
    /// Distance from `p` to the polyline and the position (0..1) along it.
    fn distance(&self, p: [f32; 2]) -> (f32, f32) {
        let segments = (self.pts.len() - 1).max(1) as f32;
        let (mut best, mut at) = (f32::MAX, 0.0);
        for (i, ab) in self.pts.windows(2).enumerate() {
            let (a, b) = (ab[0], ab[1]);
            let e = [b[0] - a[0], b[1] - a[1]];
            let q = [p[0] - a[0], p[1] - a[1]];
            let len2 = e[0] * e[0] + e[1] * e[1];
            let u = if len2 > 0.0 {
                ((q[0] * e[0] + q[1] * e[1]) / len2).clamp(0.0, 1.0)
            } else {
                0.0
            };
            let (rx, ry) = (q[0] - e[0] * u, q[1] - e[1] * u);
            let d2 = rx * rx + ry * ry;
            if d2 < best {
                best = d2;
                at = (i as f32 + u) / segments;
            }
        }
        (best.sqrt(), at)
    }

    /// Coverage of the line at `p`, its width scaled by `taper(position)`.
    fn alpha(&self, p: [f32; 2], taper: impl Fn(f32) -> f32) -> f32 {
        let (d, t) = self.distance(p);
        let w = self.width * taper(t);
        // A line narrower than a pixel covers that fraction of it.
        (w.min(1.0) * (0.5 + 0.5 * w.max(1.0) - d)).clamp(0.0, 1.0)
    }
}

struct Scratch {
    stroke: Stroke,
    /// Grey levels added at the middle of the scratch (bright or dark).
    delta: f32,
    bbox: Rect,
}

impl Scratch {
    fn sample(g: &Geom, rng: &mut ChaCha8Rng) -> Scratch {
        let len = 2.0 * g.r_out * uni(rng, 0.15, 0.40);
        let mid = face_point(g, rng, 0.3, 0.78);
        let (sin, cos) = uni(rng, 0.0, TAU).sin_cos();
        let sag = sym(rng, 0.1) * len;
        // Quadratic Bezier through mid, bowed sideways by `sag`.
        let p0 = [mid[0] - cos * len * 0.5, mid[1] - sin * len * 0.5];
        let p2 = [mid[0] + cos * len * 0.5, mid[1] + sin * len * 0.5];
        let ctrl = [mid[0] - sin * 2.0 * sag, mid[1] + cos * 2.0 * sag];
        let pts: Vec<[f32; 2]> = (0..=24)
            .map(|i| {
                let t = i as f32 / 24.0;
                let (a, b, c) = ((1.0 - t) * (1.0 - t), 2.0 * t * (1.0 - t), t * t);
                [a * p0[0] + b * ctrl[0] + c * p2[0], a * p0[1] + b * ctrl[1] + c * p2[1]]
            })
            .collect();
        let width = uni(rng, 1.0, 2.0) * g.s;
        let contrast = uni(rng, 45.0, 70.0);
        let delta = if rng.gen_bool(0.5) { contrast } else { -contrast };
        Scratch {
            bbox: Rect::around(&pts, width + 2.0),
            stroke: Stroke { pts, width },
            delta,
        }
    }

    fn apply(&self, p: [f32; 2], v: f32) -> f32 {
        if !self.bbox.contains(p) {
            return v;
        }
        // The tool touched down and lifted off: the ends fade out.
        let a = self
            .stroke
            .alpha(p, |t| smoothstep(0.0, 0.12, t) * smoothstep(1.0, 0.88, t));
        v + self.delta * a
    }
}

/// A depression: a bump of height (1 - q^2)^2 over an ellipse, shaded by its slope.
struct Dent {
    centre: [f32; 2],
    axes: [f32; 2],
    cos: f32,
    sin: f32,
    contrast: f32,
    bbox: Rect,
}

impl Dent {
    fn sample(g: &Geom, rng: &mut ChaCha8Rng) -> Dent {
        let a = g.r_out * uni(rng, 0.04, 0.10);
        let b = a * uni(rng, 0.55, 0.9);
        // Keep clear of the bolt holes, where a dent would hardly show.
        let mut centre = face_point(g, rng, 0.38, 0.86);
        for _ in 0..16 {
            let clear = g
                .holes
                .iter()
                .all(|h| (centre[0] - h[0]).hypot(centre[1] - h[1]) > g.r_hole + g.hole_chamfer + a);
            if clear {
                break;
            }
            centre = face_point(g, rng, 0.38, 0.86);
        }
        let (sin, cos) = uni(rng, 0.0, PI).sin_cos();
        Dent {
            centre,
            axes: [a, b],
            cos,
            sin,
            contrast: uni(rng, 40.0, 60.0),
            bbox: Rect::around(&[centre], a + 1.0),
        }
    }

    fn apply(&self, p: [f32; 2], v: f32) -> f32 {
        if !self.bbox.contains(p) {
            return v;
        }
        let (dx, dy) = (p[0] - self.centre[0], p[1] - self.centre[1]);
        let u = self.cos * dx + self.sin * dy;
        let w = -self.sin * dx + self.cos * dy;
        let [a, b] = self.axes;
        let q2 = (u / a).powi(2) + (w / b).powi(2);
        if q2 >= 1.0 {
            return v;
        }
        let k = 1.0 - q2;
        let (hu, hw) = (-4.0 * u * k / (a * a), -4.0 * w * k / (b * b));
        let gx = hu * self.cos - hw * self.sin;
        let gy = hu * self.sin + hw * self.cos;
        // The wall nearer the light faces away from it and goes dark; the far wall
        // catches the light. 1.54 is the steepest slope of the profile.
        let slope = (gx * LIGHT[0] + gy * LIGHT[1]) * (a * b).sqrt() / 1.54;
        v + self.contrast * slope - 0.15 * self.contrast * k * k
    }
}

struct Crack {
    strokes: Vec<Stroke>,
    bbox: Rect,
}

impl Crack {
    fn sample(g: &Geom, rng: &mut ChaCha8Rng) -> Crack {
        let len = 2.0 * g.r_out * uni(rng, 0.10, 0.30);
        let a = uni(rng, 0.0, TAU);
        let dir = [a.cos(), a.sin()];
        // Cracks start where stress concentrates: at the rim or at the bore.
        let (start, heading) = match rng.gen_range(0..10) {
            0..=4 => {
                let r = g.r_out - 0.5;
                ([g.c[0] + r * dir[0], g.c[1] + r * dir[1]], a + PI)
            }
            5..=7 => {
                let r = g.r_bore + 0.5;
                ([g.c[0] + r * dir[0], g.c[1] + r * dir[1]], a)
            }
            _ => (face_point(g, rng, 0.35, 0.85), uni(rng, 0.0, TAU)),
        };
        let step = 1.6 * g.s.max(0.6);
        let width = 1.1 * g.s.max(0.8);
        let first = heading + sym(rng, 0.4);
        let main = random_walk(rng, start, first, len, step);
        let mut strokes = vec![];
        if rng.gen_bool(0.5) {
            let at = main[(main.len() as f32 * uni(rng, 0.35, 0.7)) as usize];
            let turn = if rng.gen_bool(0.5) { 1.0 } else { -1.0 } * uni(rng, 0.5, 1.0);
            let branch_len = len * uni(rng, 0.2, 0.4);
            let branch = random_walk(rng, at, heading + turn, branch_len, step);
            strokes.push(Stroke {
                pts: branch,
                width: width * 0.8,
            });
        }
        strokes.push(Stroke { pts: main, width });
        let all: Vec<[f32; 2]> = strokes.iter().flat_map(|s| s.pts.clone()).collect();
        Crack {
            bbox: Rect::around(&all, width + 2.0),
            strokes,
        }
    }

    fn apply(&self, p: [f32; 2], v: f32) -> f32 {
        if !self.bbox.contains(p) {
            return v;
        }
        // Narrowing towards the tip.
        let a = self
            .strokes
            .iter()
            .map(|s| s.alpha(p, |t| 1.0 - 0.45 * t))
            .fold(0.0, f32::max);
        v * (1.0 - 0.72 * a)
    }
}

/// A jagged path: each step turns a little, with a pull back towards `heading`.
fn random_walk(rng: &mut ChaCha8Rng, start: [f32; 2], heading: f32, len: f32, step: f32) -> Vec<[f32; 2]> {
    let n = (len / step).ceil().max(2.0) as usize;
    let mut pts = Vec::with_capacity(n + 1);
    let (mut p, mut h) = (start, heading);
    pts.push(p);
    for _ in 0..n {
        h = 0.75 * (h + sym(rng, 0.7)) + 0.25 * heading;
        p = [p[0] + step * h.cos(), p[1] + step * h.sin()];
        pts.push(p);
    }
    pts
}

/// Irregular outline: a circle whose radius wobbles with a few angular harmonics.
struct Blob {
    centre: [f32; 2],
    radius: f32,
    wobble: [(f32, f32); 4],
}

impl Blob {
    fn sample(rng: &mut ChaCha8Rng, centre: [f32; 2], radius: f32, roughness: f32) -> Blob {
        let wobble = std::array::from_fn(|i| {
            let k = (i + 2) as f32;
            (uni(rng, 0.3, 1.0) * roughness / k, uni(rng, 0.0, TAU))
        });
        Blob { centre, radius, wobble }
    }

    /// Approximate signed distance to the outline (negative inside), and distance
    /// from the centre.
    fn sdf(&self, p: [f32; 2]) -> (f32, f32) {
        let (dx, dy) = (p[0] - self.centre[0], p[1] - self.centre[1]);
        let rho = (dx * dx + dy * dy).sqrt();
        let ang = dy.atan2(dx);
        let edge = self
            .wobble
            .iter()
            .enumerate()
            .fold(1.0, |acc, (i, (amp, ph))| acc + amp * ((i + 2) as f32 * ang + ph).sin());
        (rho - self.radius * edge, rho)
    }

    fn bbox(&self, margin: f32) -> Rect {
        Rect::around(&[self.centre], self.radius * 1.6 + margin)
    }
}

/// Oil or coolant: a soft, mottled, darker blotch with a slightly darker tide mark.
struct Stain {
    blob: Blob,
    depth: f32,
    seed: u32,
    bbox: Rect,
}

impl Stain {
    fn sample(g: &Geom, rng: &mut ChaCha8Rng) -> Stain {
        let radius = g.r_out * uni(rng, 0.08, 0.18);
        let centre = face_point(g, rng, 0.3, 0.75);
        let blob = Blob::sample(rng, centre, radius, 0.45);
        Stain {
            bbox: blob.bbox(2.0),
            blob,
            depth: uni(rng, 12.0, 30.0),
            seed: rng.gen(),
        }
    }

    fn apply(&self, p: [f32; 2], v: f32) -> f32 {
        if !self.bbox.contains(p) {
            return v;
        }
        let (d, _) = self.blob.sdf(p);
        let soft = 0.3 * self.blob.radius;
        if d >= 0.0 {
            return v;
        }
        let alpha = smoothstep(0.0, -soft, d);
        let scale = 0.35 * self.blob.radius;
        let mottle = 0.85 + 0.15 * value_noise(p[0] / scale, p[1] / scale, self.seed);
        let tide = (-((d + 0.4 * soft) / (0.2 * soft)).powi(2)).exp();
        v - self.depth * alpha * (mottle + 0.3 * tide)
    }
}

/// A notch broken out of the rim; its fracture face shows as a thin facet.
struct Chip {
    blob: Blob,
    bbox: Rect,
    seed: u32,
    s: f32,
}

impl Chip {
    fn sample(g: &Geom, rng: &mut ChaCha8Rng) -> Chip {
        let radius = g.r_out * uni(rng, 0.04, 0.08);
        let a = uni(rng, 0.0, TAU);
        let r = g.r_out + 0.15 * radius;
        let centre = [g.c[0] + r * a.cos(), g.c[1] + r * a.sin()];
        let blob = Blob::sample(rng, centre, radius, 0.35);
        Chip {
            bbox: blob.bbox(2.0 * g.s + 2.0),
            blob,
            seed: rng.gen(),
            s: g.s,
        }
    }

    /// Signed distance to the notch (negative inside the missing material).
    fn sdf(&self, p: [f32; 2]) -> f32 {
        if self.bbox.contains(p) {
            self.blob.sdf(p).0
        } else {
            f32::MAX
        }
    }

    fn apply(&self, _g: &Geom, p: [f32; 2], v: f32) -> f32 {
        let band = 1.8 * self.s.max(0.7);
        let d = self.sdf(p);
        if d >= band {
            return v;
        }
        // Fracture face, sloping down into the notch: lit when it faces the light,
        // with a rough, sparkly texture.
        let inv = 1.0 / self.blob.sdf(p).1.max(1e-3);
        let n = [(self.blob.centre[0] - p[0]) * inv, (self.blob.centre[1] - p[1]) * inv];
        let ndl = n[0] * LIGHT[0] + n[1] * LIGHT[1];
        let grit = signed(hash3(p[0] as u32, p[1] as u32, self.seed)) * 18.0;
        let face = FACE * (0.3 + 0.9 * facet_shade(ndl)) + grit;
        lerp(v, face, smoothstep(band, 0.3 * band, d))
    }
}

// ---------------------------------------------------------------------------------
// Hashing and noise.
// ---------------------------------------------------------------------------------

fn mix32(mut h: u32) -> u32 {
    h ^= h >> 16;
    h = h.wrapping_mul(0x7feb_352d);
    h ^= h >> 15;
    h = h.wrapping_mul(0x846c_a68b);
    h ^ (h >> 16)
}

fn hash3(a: u32, b: u32, c: u32) -> u32 {
    mix32(a ^ mix32(b ^ mix32(c.wrapping_add(0x9e37_79b9))))
}

/// 0..1
fn unit(h: u32) -> f32 {
    (h >> 8) as f32 * (1.0 / 16_777_216.0)
}

/// -1..1
fn signed(h: u32) -> f32 {
    unit(h) * 2.0 - 1.0
}

/// Approximately standard normal: sum of four uniforms (cheap, tails cut at 3.5 sigma).
fn gauss(seed: u32, i: u32) -> f32 {
    let a = hash3(i, seed, 0x51);
    let b = mix32(a ^ 0x68e3_1da4);
    let sum = (a & 0xffff) + (a >> 16) + (b & 0xffff) + (b >> 16);
    (sum as f32 / 65_536.0 - 2.0) * 3f32.sqrt()
}

fn smooth(t: f32) -> f32 {
    t * t * (3.0 - 2.0 * t)
}

/// 0 at e0, 1 at e1, smooth between (either order).
fn smoothstep(e0: f32, e1: f32, x: f32) -> f32 {
    smooth(((x - e0) / (e1 - e0)).clamp(0.0, 1.0))
}

fn lerp(a: f32, b: f32, t: f32) -> f32 {
    a + (b - a) * t
}

/// Smooth 1-D value noise, -1..1.
fn noise1(x: f32, seed: u32) -> f32 {
    let i = x.floor();
    let f = smooth(x - i);
    let i = i as i32 as u32;
    lerp(signed(hash3(i, seed, 1)), signed(hash3(i.wrapping_add(1), seed, 1)), f)
}

/// Smooth 2-D value noise, -1..1.
fn value_noise(x: f32, y: f32, seed: u32) -> f32 {
    let (xi, yi) = (x.floor(), y.floor());
    let (fx, fy) = (smooth(x - xi), smooth(y - yi));
    let (xi, yi) = (xi as i32 as u32, yi as i32 as u32);
    let h = |dx: u32, dy: u32| signed(hash3(xi.wrapping_add(dx), yi.wrapping_add(dy), seed));
    lerp(lerp(h(0, 0), h(1, 0), fx), lerp(h(0, 1), h(1, 1), fx), fy)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(seed: u64) -> PartSpec {
        PartSpec {
            seed,
            ..PartSpec::default()
        }
    }

    fn defective(kind: DefectKind, width: u32, height: u32) -> PartSpec {
        PartSpec {
            width,
            height,
            defect_ratio: 1.0,
            defect_kinds: vec![kind.as_str().into()],
            seed: 7,
            ..PartSpec::default()
        }
    }

    #[test]
    fn same_seed_and_index_give_the_same_part() {
        let a = PartGenerator::new(spec(3));
        let mut b = PartGenerator::new(spec(3));
        for _ in 0..5 {
            b.next_part();
        }
        let (pa, pb) = (a.part(5), b.next_part());
        assert_eq!(pa.image, pb.image);
        assert_eq!(pa.mask, pb.mask);
        assert_eq!(pa.defect, pb.defect);
    }

    #[test]
    fn different_index_or_seed_gives_a_different_part() {
        let g = PartGenerator::new(spec(3));
        assert_ne!(g.part(0).image, g.part(1).image);
        assert_ne!(g.part(0).image, PartGenerator::new(spec(4)).part(0).image);
    }

    #[test]
    fn defect_ratio_is_respected() {
        let spec = PartSpec {
            width: 16,
            height: 16,
            ..spec(11)
        };
        for ratio in [0.1, 0.5] {
            let spec = PartSpec {
                defect_ratio: ratio,
                ..spec.clone()
            };
            let n = 2000;
            let bad = (0..n)
                .filter(|&i| plan(&spec, &DefectKind::ALL, i).defect.is_some())
                .count();
            let got = bad as f64 / n as f64;
            assert!((got - ratio).abs() <= 0.03, "ratio {ratio}: got {got}");
        }
    }

    #[test]
    fn defects_change_the_part_inside_the_mask_only() {
        for (w, h) in [(256, 256), (128, 96), (640, 480)] {
            for kind in DefectKind::ALL {
                let spec = defective(kind, w, h);
                for index in 0..6 {
                    let scene = plan(&spec, &[kind], index);
                    let part = PartGenerator::new(spec.clone()).part(index);
                    assert_eq!(part.defect, Some(kind));
                    let plain = finish(&render(&scene, false), &scene);
                    let mut inside = 0;
                    let mut differs = 0u64;
                    for (x, y, m) in part.mask.enumerate_pixels() {
                        let (a, b) = (part.image.get_pixel(x, y)[0], plain.get_pixel(x, y)[0]);
                        if m[0] == 0 {
                            assert_eq!(a, b, "{kind:?} {w}x{h} #{index}: change outside mask");
                            continue;
                        }
                        assert_eq!(m[0], 255);
                        inside += 1;
                        differs += a.abs_diff(b) as u64;
                        let (dx, dy) = (x as f32 + 0.5 - scene.centre[0], y as f32 + 0.5 - scene.centre[1]);
                        assert!(
                            dx.hypot(dy) <= scene.radius + 2.5,
                            "{kind:?} {w}x{h} #{index}: mask outside the part"
                        );
                    }
                    assert!(inside > 0, "{kind:?} {w}x{h} #{index}: empty mask");
                    assert!(differs > 0, "{kind:?} {w}x{h} #{index}: no visible change");
                }
            }
        }
    }

    #[test]
    fn good_parts_have_empty_masks() {
        let spec = PartSpec {
            defect_ratio: 0.0,
            ..spec(5)
        };
        let g = PartGenerator::new(spec);
        for i in 0..10 {
            let p = g.part(i);
            assert!(p.defect.is_none());
            assert!(p.mask.pixels().all(|m| m[0] == 0));
        }
    }

    #[test]
    fn odd_sizes_work() {
        for (w, h) in [(128, 96), (640, 480), (97, 301), (1, 1)] {
            let g = PartGenerator::new(PartSpec {
                width: w,
                height: h,
                defect_ratio: 0.5,
                ..spec(1)
            });
            for i in 0..8 {
                let p = g.part(i);
                assert_eq!(p.image.dimensions(), (w, h));
                assert_eq!(p.mask.dimensions(), (w, h));
            }
        }
    }

    #[test]
    fn kinds_round_trip_through_their_names() {
        for k in DefectKind::ALL {
            assert_eq!(DefectKind::parse(k.as_str()), Some(k));
        }
        assert_eq!(DefectKind::parse("Missing_Hole"), Some(DefectKind::MissingHole));
        assert_eq!(DefectKind::parse("blob"), None);
    }

    #[test]
    fn dataset_is_written() {
        let dir = std::env::temp_dir().join(format!("synth-part-test-{}", std::process::id()));
        let spec = PartSpec {
            width: 64,
            height: 48,
            defect_ratio: 0.5,
            ..spec(2)
        };
        let sum = save_dataset(&dir, 12, spec).unwrap();
        assert_eq!(sum.good + sum.defect, 12);
        assert_eq!(sum.per_kind.iter().map(|k| k.1).sum::<usize>(), sum.defect);
        let count = |d: &str| std::fs::read_dir(dir.join(d)).unwrap().count();
        assert_eq!(count("good"), sum.good);
        assert_eq!(count("defect"), sum.defect);
        assert_eq!(count("masks"), sum.defect);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
