//! The synthetic production line: parts from `PartGenerator`, paced at line speed.

use super::{Frame, PartGenerator, PartSpec, PixelFormat, Pixels, Truth};
use crate::clock;
use std::time::Duration;

pub struct SyntheticSource {
    parts: PartGenerator,
    spec: PartSpec,
    period_ns: u64,
    next_id: u64,
    /// When the next part passes the camera; set by the first frame.
    next_due_ns: Option<u64>,
}

impl SyntheticSource {
    pub fn new(spec: PartSpec, parts_per_second: f64) -> Self {
        SyntheticSource {
            parts: PartGenerator::new(spec.clone()),
            spec,
            period_ns: (1e9 / parts_per_second) as u64,
            next_id: 0,
            next_due_ns: None,
        }
    }
}

impl super::Source for SyntheticSource {
    fn next_frame(&mut self) -> anyhow::Result<Option<Frame>> {
        // Render first, then wait for the part's moment: the capture time is when
        // the part passes, not when rendering finished.
        let part = self.parts.next_part();
        let due = *self.next_due_ns.get_or_insert_with(clock::now_ns);
        clock::sleep_until(due, Duration::from_secs(60));
        // A line that fell behind keeps its pitch from now on instead of bunching parts up.
        let capture_ns = clock::now_ns();
        self.next_due_ns = Some(due.max(capture_ns.saturating_sub(self.period_ns)) + self.period_ns);
        let id = self.next_id;
        self.next_id += 1;
        Ok(Some(Frame {
            id,
            capture_ns,
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
            1e9 / self.period_ns as f64,
            self.spec.defect_ratio,
            self.spec.seed
        )
    }
}
