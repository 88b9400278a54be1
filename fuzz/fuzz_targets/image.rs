//! Image bytes from a folder, a camera or a GStreamer pipeline: decoded within the frame
//! limit and preprocessed, or refused; never a panic, never more memory than the limit.
#![no_main]
use libfuzzer_sys::fuzz_target;
use linesight::model::Manifest;
use std::sync::OnceLock;

fuzz_target!(|data: &[u8]| {
    static MODEL: OnceLock<Manifest> = OnceLock::new();
    let m = MODEL.get_or_init(|| {
        Manifest::load(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/sim-flange")).unwrap()
    });
    let limit = m.input.frames(4).limit;
    if let Ok(px) = linesight::frame::decode_image(data, &limit) {
        assert!(limit.check(px.width, px.height).is_ok());
        let mut out = vec![0f32; m.input.shape.iter().product()];
        let _ = linesight::preprocess::to_tensor(&px, &m.input, &mut out);
    }
});
