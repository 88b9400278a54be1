//! Hostile images in a folder camera: each is a part rejected as `broken_frame` with its
//! reason, refused from its header where its size is wrong, and the line goes on.

use super::{base_config, linesight, mkfifo, with, Said};
use serde_json::Value;
use std::path::Path;

/// A PNG whose header says `w`x`h` RGB, with a token of image data: what the header
/// promises is all a size check may read.
fn png_header(w: u32, h: u32) -> Vec<u8> {
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let chunk = |out: &mut Vec<u8>, kind: &[u8], data: &[u8]| {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let start = out.len();
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        let crc = crc32(&out[start..]);
        out.extend_from_slice(&crc.to_be_bytes());
    };
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    chunk(&mut out, b"IHDR", &ihdr);
    // zlib: a stored block of zeros, far fewer than the header promises.
    chunk(
        &mut out,
        b"IDAT",
        &[0x78, 0x01, 0x01, 0x04, 0x00, 0xfb, 0xff, 0, 0, 0, 0],
    );
    chunk(&mut out, b"IEND", &[]);
    out
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for b in data {
        crc ^= *b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A 24-bit BMP whose header says `w`x`h`, with no pixels behind it.
fn bmp_header(w: u32, h: u32) -> Vec<u8> {
    let mut out = b"BM".to_vec();
    out.extend_from_slice(&(54u32 + w * h * 3).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&54u32.to_le_bytes());
    out.extend_from_slice(&40u32.to_le_bytes());
    out.extend_from_slice(&(w as i32).to_le_bytes());
    out.extend_from_slice(&(h as i32).to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&24u16.to_le_bytes());
    out.extend_from_slice(&[0; 24]);
    out
}

fn encoded(w: u32, h: u32, format: image::ImageFormat) -> Vec<u8> {
    let img = image::GrayImage::from_fn(w, h, |x, y| image::Luma([(96 + (x + y) % 64) as u8]));
    let mut out = Vec::new();
    image::DynamicImage::ImageLuma8(img)
        .write_to(&mut std::io::Cursor::new(&mut out), format)
        .unwrap();
    out
}

fn results(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Runs a folder line over `images` (results and config in `dir`) to its end; its results
/// and what linesight said.
fn folder_line(dir: &Path, images: &Path) -> (Vec<Value>, Said) {
    let config = dir.join("linesight.toml");
    let camera = format!(
        "[camera]\nkind = \"folder\"\npath = {:?}\nparts_per_second = 20.0\n",
        images.display().to_string()
    );
    let text = base_config(dir, None).replace("[camera]\nkind = \"synthetic\"\n", &camera);
    std::fs::write(&config, with(&text, "decision", "deadline_ms = 250")).unwrap();
    let said = linesight(&["run", "--config", config.to_str().unwrap()]);
    assert!(said.success, "{}", said.text);
    (results(&dir.join("results.jsonl")), said)
}

#[test]
fn hostile_images_are_broken_frames_with_their_reason() {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images");
    std::fs::create_dir_all(&images).unwrap();
    let write = |name: &str, bytes: &[u8]| std::fs::write(images.join(name), bytes).unwrap();
    // Eight images whose headers promise 13000x13000 RGB (500 MB each decoded).
    for i in 0..8 {
        write(&format!("huge_{i}.png"), &png_header(13000, 13000));
    }
    write("huge.bmp", &bmp_header(20000, 20000));
    let jpeg = encoded(256, 256, image::ImageFormat::Jpeg);
    write("truncated.jpg", &jpeg[..jpeg.len() * 6 / 10]);
    write("tiny.png", &encoded(1, 1, image::ImageFormat::Png));
    write("sliver.png", &encoded(1, 50000, image::ImageFormat::Png));
    write("good.png", &encoded(256, 256, image::ImageFormat::Png));
    mkfifo(&images.join("fifo.png"));

    let (results, _) = folder_line(dir.path(), &images);
    assert_eq!(results.len(), 14, "one verdict per file:\n{results:#?}");
    let of = |name: &str| {
        results
            .iter()
            .find(|r| r["origin"].as_str().unwrap().ends_with(name))
            .unwrap_or_else(|| panic!("no verdict for {name}"))
    };
    let good = of("good.png");
    assert!(good["score"].is_number(), "the good image was inspected: {good}");
    let mut failures = Vec::new();
    let mut expect = |name: &str, detail: &str| {
        let r = of(name);
        if r["verdict"] != "reject" || r["reason"] != "broken_frame" {
            failures.push(format!("{name}: expected a broken_frame reject, got {r}"));
        }
        if !r["detail"].as_str().unwrap_or("").contains(detail) {
            failures.push(format!("{name}: detail lacks {detail:?}: {r}"));
        }
    };
    for i in 0..8 {
        expect(
            &format!("huge_{i}.png"),
            "13000x13000 px, larger than the largest frame inspected, 2048x2048 px (decision.max_frame_scale = 16 times the model's 128x128 input)",
        );
    }
    expect("huge.bmp", "20000x20000 px, larger than the largest frame inspected");
    expect("truncated.jpg", "truncated JPEG (256x256 px");
    expect("tiny.png", "1x1 px, smaller than the smallest frame inspected, 8x8 px");
    expect("sliver.png", "1x50000 px, larger than the largest frame inspected");
    expect("fifo.png", "not a regular file (it is a FIFO)");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A whole, valid `w`x`h` RGB PNG, written row by row (no image of that size in memory):
/// a few hundred KB that decode to `w * h * 3` bytes.
fn real_png(path: &Path, w: u32, h: u32) {
    let file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut enc = png::Encoder::new(file, w, h);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    enc.set_compression(png::Compression::Fast);
    let mut writer = enc.write_header().unwrap();
    let mut stream = writer.stream_writer().unwrap();
    let mut row = vec![0u8; w as usize * 3];
    for y in 0..h {
        row.fill((y % 251) as u8);
        std::io::Write::write_all(&mut stream, &row).unwrap();
    }
    stream.finish().unwrap();
}

#[test]
fn eight_real_13000_px_pngs_are_refused_from_their_headers_in_little_memory() {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images");
    std::fs::create_dir_all(&images).unwrap();
    real_png(&images.join("huge_0.png"), 13000, 13000);
    for i in 1..8 {
        std::fs::copy(images.join("huge_0.png"), images.join(format!("huge_{i}.png"))).unwrap();
    }
    std::fs::write(images.join("good.png"), encoded(256, 256, image::ImageFormat::Png)).unwrap();
    // Each is whole: the image crate itself would decode it (it is not a header trick).
    let probe = image::ImageReader::open(images.join("huge_0.png"))
        .unwrap()
        .with_guessed_format()
        .unwrap();
    assert_eq!(probe.into_dimensions().unwrap(), (13000, 13000));

    let (results, said) = folder_line(dir.path(), &images);
    assert_eq!(results.len(), 9, "one verdict per file:\n{results:#?}");
    for r in &results {
        let good = r["origin"].as_str().unwrap().ends_with("good.png");
        assert_eq!(r["reason"] == "broken_frame", !good, "{r}");
    }
    // Seen before the header check: 3.25 GB for these eight. Decoding one would take 484 MiB.
    assert!(
        said.peak_rss_mib < 400.0,
        "peak memory {:.0} MiB: a 13000x13000 image was decoded",
        said.peak_rss_mib
    );
    eprintln!("peak memory of the run: {:.0} MiB", said.peak_rss_mib);
}
