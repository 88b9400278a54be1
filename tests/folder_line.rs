//! The folder source: image files of any size and format replayed as a line, with
//! ground truth from good/ and defect/, and unreadable files rejected, not skipped.

mod common;

use common::{set, SimRun};
use linesight::source::{PartGenerator, PartSpec};

#[test]
fn every_file_gets_a_verdict_and_a_broken_one_is_rejected() {
    let sim = SimRun::new(|_| {});
    let data = sim.dir.path().join("replay");
    std::fs::create_dir_all(data.join("good")).unwrap();
    std::fs::create_dir_all(data.join("defect")).unwrap();
    let parts = PartGenerator::new(PartSpec {
        width: 300,
        height: 200,
        defect_ratio: 0.0,
        seed: 3,
        ..Default::default()
    });
    // Grey PNG, colour JPEG, BMP, each at its own size.
    parts.part(0).image.save(data.join("good/a.png")).unwrap();
    let colour = image::DynamicImage::ImageLuma8(parts.part(1).image).to_rgb8();
    colour.save(data.join("good/b.jpg")).unwrap();
    let small = image::imageops::resize(&parts.part(2).image, 97, 61, image::imageops::FilterType::Triangle);
    small.save(data.join("good/c.bmp")).unwrap();
    std::fs::write(data.join("defect/scratch_0007.png"), b"\x89PNG\r\n\x1a\nnot really").unwrap();

    let config = sim.config.clone();
    let mut t: toml::Table = toml::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    let camera: toml::Table = toml::from_str(&format!(
        "kind = \"folder\"\npath = {:?}\nparts_per_second = 20.0",
        data.display().to_string()
    ))
    .unwrap();
    set(&mut t, "camera", toml::Value::Table(camera));
    std::fs::write(&config, toml::to_string(&t).unwrap()).unwrap();

    sim.run(&[]);
    let results = sim.results();
    assert_eq!(results.len(), 4, "one verdict per file, then the run ends");
    let by_origin = |name: &str| {
        results
            .iter()
            .find(|r| r["origin"].as_str().unwrap().ends_with(name))
            .unwrap_or_else(|| panic!("no result for {name}"))
    };
    for name in ["good/a.png", "good/b.jpg", "good/c.bmp"] {
        let r = by_origin(name);
        assert_eq!(r["truth"], "good");
        assert!(r["score"].is_number(), "{name} was inspected: {r}");
    }
    let torn = by_origin("defect/scratch_0007.png");
    assert_eq!(torn["verdict"], "reject");
    assert_eq!(torn["reason"], "broken_frame");
    assert_eq!(torn["truth"], "defect");
    assert_eq!(torn["defect_kind"], "scratch");
    assert!(torn["detail"].as_str().unwrap().contains("scratch_0007.png"));
}
