//! Image files replayed as a production line.

use super::Pacer;
use crate::dataset::{list_images, truth_of, EXTENSIONS};
use crate::frame::{Frame, NoImage, Pixels};
use anyhow::bail;
use std::path::{Path, PathBuf};

pub struct FolderSource {
    root: PathBuf,
    files: Vec<PathBuf>,
    pacer: Pacer,
    looped: bool,
    next_index: usize,
}

impl FolderSource {
    pub fn open(root: &Path, parts_per_second: f64, looped: bool) -> anyhow::Result<Self> {
        let files = list_images(root)?;
        if files.is_empty() {
            bail!("no images ({}) in {}", EXTENSIONS.join(", "), root.display());
        }
        Ok(FolderSource {
            root: root.to_path_buf(),
            files,
            pacer: Pacer::new(parts_per_second),
            looped,
            next_index: 0,
        })
    }
}

impl super::Source for FolderSource {
    fn next_frame(&mut self) -> anyhow::Result<Option<Frame>> {
        if self.next_index == self.files.len() {
            if !self.looped {
                return Ok(None);
            }
            self.next_index = 0;
        }
        let file = &self.files[self.next_index];
        self.next_index += 1;
        // A file that does not decode is still a part: it is rejected with the reason.
        let image = image::open(file)
            .map(Pixels::from_dynamic)
            .map_err(|e| NoImage::broken(format!("cannot decode {}: {e}", file.display())));
        let (id, capture_ns) = self.pacer.wait_for_part();
        Ok(Some(Frame {
            id,
            capture_ns,
            frame_ns: None,
            image,
            truth: truth_of(file),
            origin: Some(file.display().to_string()),
        }))
    }

    fn describe(&self) -> String {
        format!(
            "folder {} ({} images{}), {:.1} parts/s",
            self.root.display(),
            self.files.len(),
            if self.looped { ", looped" } else { "" },
            self.pacer.parts_per_second()
        )
    }
}
