//! Image files replayed as a production line.

use super::Pacer;
use crate::dataset::{list_images, truth_of, EXTENSIONS};
use crate::frame::{decode_image, Frame, FrameLimit, NoImage};
use anyhow::bail;
use std::path::{Path, PathBuf};

pub struct FolderSource {
    root: PathBuf,
    files: Vec<PathBuf>,
    pacer: Pacer,
    looped: bool,
    next_index: usize,
    limit: FrameLimit,
}

impl FolderSource {
    /// `limit`: images outside it are refused from their header, never decoded; the one
    /// frame decoded at a time takes at most `limit.max_frame_bytes()`.
    pub fn open(root: &Path, parts_per_second: f64, looped: bool, limit: FrameLimit) -> anyhow::Result<Self> {
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
            limit,
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
        // A file that does not decode is still a part: it is rejected with the reason. Only
        // a regular file is read (a FIFO would hang the line), and no more of it than an
        // uncompressed image of the largest frame.
        let image = crate::files::read_capped(file, self.limit.max_file_bytes())
            .map_err(|e| e.to_string())
            .and_then(|bytes| decode_image(&bytes, &self.limit))
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
