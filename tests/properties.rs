//! Property tests of what a user or a camera hands linesight: config text, model manifests
//! and image bytes, mutated at random from real ones. Whatever comes in, the answer is a
//! value or an error with a message, never a panic. They run in every CI (a few hundred
//! cases each, about a second); coverage-guided fuzzing of the same entry points is the
//! long-run complement.

mod common;

use linesight::config::Config;
use linesight::frame::{decode_image, PixelFormat, Pixels};
use linesight::model::Manifest;
use proptest::prelude::*;
use std::path::{Path, PathBuf};

/// Values that have broken parsers before: huge, negative, non-finite, wrong types.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|v| v.to_string()),
        any::<f64>().prop_map(|v| format!("{v:?}")),
        Just("nan".to_string()),
        Just("-inf".to_string()),
        Just("18446744073709551616".to_string()),
        Just("1e308".to_string()),
        "\"[ -~]{0,12}\"",
        Just("[]".to_string()),
        Just("[1, \"a\", 2.5]".to_string()),
        Just("{ a = 1 }".to_string()),
        Just("true".to_string()),
        Just("".to_string()),
        "[ -~]{0,8}",
    ]
}

/// `text` with `n`-th `key = value` line's value replaced, or a line cut, or a line doubled.
fn mutate(text: &str, edits: &[(usize, u8, String)]) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    for (at, how, v) in edits {
        if lines.is_empty() {
            break;
        }
        let i = at % lines.len();
        match how % 4 {
            0 | 1 => {
                if let Some((k, _)) = lines[i].split_once('=') {
                    lines[i] = format!("{k}= {v}");
                }
            }
            2 => {
                let half = lines[i].chars().count() / 2;
                let cut = lines[i].char_indices().nth(half).map_or(0, |(b, _)| b);
                lines[i].truncate(cut);
            }
            _ => {
                let l = lines[i].clone();
                lines.insert(i, l);
            }
        }
    }
    lines.join("\n")
}

fn edits() -> impl Strategy<Value = Vec<(usize, u8, String)>> {
    proptest::collection::vec((any::<usize>(), any::<u8>(), value()), 1..4)
}

fn sim_config() -> String {
    std::fs::read_to_string(common::repo().join("board/sim/linesight.toml")).unwrap()
}

fn sim_manifest() -> String {
    std::fs::read_to_string(common::repo().join("models/sim-flange/model.toml")).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn config_text_gives_a_config_or_a_keyed_error(edits in edits()) {
        let text = mutate(&sim_config(), &edits);
        match Config::parse(&text, Path::new("p.toml"), PathBuf::new()) {
            Ok(c) => prop_assert!(c.problems().is_empty()),
            Err(e) => {
                let msg = e.to_string();
                // a parse error points at its line or key; a validation error names keys
                prop_assert!(msg.starts_with("config p.toml") && msg.len() > 20, "{msg}");
            }
        }
    }

    #[test]
    fn arbitrary_bytes_as_config_are_refused_not_a_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let text = String::from_utf8_lossy(&bytes);
        if let Err(e) = Config::parse(&text, Path::new("p.toml"), PathBuf::new()) {
            prop_assert!(!e.to_string().is_empty());
        }
    }

    #[test]
    fn manifest_text_gives_a_manifest_or_an_error(edits in edits()) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("model.toml"), mutate(&sim_manifest(), &edits)).unwrap();
        if let Err(e) = Manifest::load(dir.path()) {
            let msg = format!("{e:#}");
            prop_assert!(msg.contains("model manifest") || msg.contains("model.toml"), "{msg}");
        }
    }

    #[test]
    fn image_bytes_decode_to_a_frame_or_an_error_and_preprocess(
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..6),
        cut in any::<usize>(),
        jpeg in any::<bool>(),
    ) {
        let manifest = Manifest::load(&common::repo().join("models/sim-flange")).unwrap();
        let limit = manifest.input.frames(4).limit;
        let mut bytes = if jpeg { encoded(image::ImageFormat::Jpeg) } else { encoded(image::ImageFormat::Png) };
        for (at, b) in flips {
            let i = at % bytes.len();
            bytes[i] ^= b;
        }
        if cut % 3 == 0 {
            bytes.truncate(cut % bytes.len());
        }
        if let Ok(px) = decode_image(&bytes, &limit) {
            prop_assert!(limit.check(px.width, px.height).is_ok());
            prop_assert_eq!(px.data.len(), (px.width * px.height) as usize * px.format.channels());
            let mut out = vec![0f32; manifest.input.shape.iter().product()];
            let _ = linesight::preprocess::to_tensor(&px, &manifest.input, &mut out);
        }
    }

    #[test]
    fn preprocess_takes_any_frame_size_and_format_inside_the_limit(
        w in 1u32..300, h in 1u32..300, rgb in any::<bool>(), seed in any::<u8>(),
    ) {
        let manifest = Manifest::load(&common::repo().join("models/sim-flange")).unwrap();
        let format = if rgb { PixelFormat::Rgb8 } else { PixelFormat::Gray8 };
        let data = (0..(w * h) as usize * format.channels()).map(|i| (i as u8).wrapping_mul(seed)).collect();
        let px = Pixels { width: w, height: h, format, data };
        let mut out = vec![f32::NAN; manifest.input.shape.iter().product()];
        linesight::preprocess::to_tensor(&px, &manifest.input, &mut out).unwrap();
        let [lo, hi] = manifest.input.value_range;
        let bound = (hi - lo).abs() / manifest.input.std.iter().cloned().fold(f32::INFINITY, f32::min) + 1.0;
        prop_assert!(out.iter().all(|v| v.is_finite() && v.abs() <= bound * 4.0));
    }
}

/// A 96 x 80 grey part, encoded.
fn encoded(format: image::ImageFormat) -> Vec<u8> {
    let img = image::GrayImage::from_fn(96, 80, |x, y| image::Luma([((x * 3 + y * 5) % 256) as u8]));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, format).unwrap();
    out.into_inner()
}

/// Every fuzzing seed (and any input that once crashed a fuzz target, kept beside them)
/// goes through the same entry points as the fuzz targets.
#[test]
fn the_fuzz_seeds_replay_without_a_panic() {
    let seeds = common::repo().join("fuzz/seeds");
    let files = |target: &str| {
        let mut v: Vec<PathBuf> = std::fs::read_dir(seeds.join(target))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        v.sort();
        assert!(!v.is_empty(), "no seeds for {target}");
        v
    };
    for f in files("config") {
        let text = String::from_utf8_lossy(&std::fs::read(&f).unwrap()).into_owned();
        if let Ok(c) = Config::parse(&text, &f, PathBuf::new()) {
            let _ = c.problems();
        }
    }
    for f in files("manifest") {
        let dir = tempfile::tempdir().unwrap();
        std::fs::copy(&f, dir.path().join("model.toml")).unwrap();
        let _ = Manifest::load(dir.path());
    }
    let m = Manifest::load(&common::repo().join("models/sim-flange")).unwrap();
    let limit = m.input.frames(4).limit;
    let mut decoded = 0;
    for f in files("image") {
        if let Ok(px) = decode_image(&std::fs::read(&f).unwrap(), &limit) {
            decoded += 1;
            let mut out = vec![0f32; m.input.shape.iter().product()];
            linesight::preprocess::to_tensor(&px, &m.input, &mut out).unwrap();
        }
    }
    assert!(decoded >= 3, "the clean seed images decode ({decoded})");
}
