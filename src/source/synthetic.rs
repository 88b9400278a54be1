//! The synthetic production line: parts from `PartGenerator`, paced at line speed.

use super::{Pacer, PartGenerator, PartSpec};
use crate::frame::{Frame, PixelFormat, Pixels, Truth};

pub struct SyntheticSource {
    parts: PartGenerator,
    spec: PartSpec,
    pacer: Pacer,
}

impl SyntheticSource {
    pub fn new(spec: PartSpec, parts_per_second: f64) -> Self {
        SyntheticSource {
            parts: PartGenerator::new(spec.clone()),
            spec,
            pacer: Pacer::new(parts_per_second),
        }
    }
}

impl super::Source for SyntheticSource {
    fn next_frame(&mut self) -> anyhow::Result<Option<Frame>> {
        // Render first, then wait for the part's moment: the capture time is when
        // the part passes, not when rendering finished.
        let part = self.parts.next_part();
        let (id, capture_ns) = self.pacer.wait_for_part();
        Ok(Some(Frame {
            id,
            capture_ns,
            frame_ns: None,
            image: Ok(Pixels {
                width: part.image.width(),
                height: part.image.height(),
                format: PixelFormat::Gray8,
                data: part.image.into_raw(),
            }),
            truth: Some(match part.defect {
                None => Truth::Good,
                Some(kind) => Truth::Defect(Some(kind.as_str().to_string())),
            }),
            origin: None,
        }))
    }

    fn describe(&self) -> String {
        format!(
            "synthetic line {}x{} px, {:.1} parts/s, defect ratio {}, seed {}",
            self.spec.width,
            self.spec.height,
            self.pacer.parts_per_second(),
            self.spec.defect_ratio,
            self.spec.seed
        )
    }
}
