//! Image files replayed as a production line.

use super::{Frame, NoImage, Pacer, Pixels, Truth};
use anyhow::{bail, Context};
use std::path::{Path, PathBuf};

const EXTENSIONS: [&str; 4] = ["png", "jpg", "jpeg", "bmp"];

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

/// Image files under `root`, recursively, in name order.
pub fn list_images(root: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let entries = std::fs::read_dir(&dir).with_context(|| format!("cannot list {}", dir.display()))?;
        for entry in entries {
            let path = entry?.path();
            if path.is_dir() {
                dirs.push(path);
            } else if is_image(&path) {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

pub fn is_image(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// Ground truth from the folder layout: `good/...` or `defect/...` (the kind is the
/// sub-folder below `defect/`, or the file-name prefix before `_`).
pub fn truth_of(root: &Path, file: &Path) -> Option<Truth> {
    let rel = file.strip_prefix(root).unwrap_or(file);
    let parts: Vec<&str> = rel.iter().filter_map(|c| c.to_str()).collect();
    let pos = parts.iter().position(|c| *c == "good" || *c == "defect")?;
    if parts[pos] == "good" {
        return Some(Truth::Good);
    }
    let kind = if parts.len() > pos + 2 {
        Some(parts[pos + 1].to_string())
    } else {
        file.file_stem().and_then(|s| s.to_str()).and_then(kind_from_name)
    };
    Some(Truth::Defect(kind))
}

/// The defect kind in a file name: the prefix before `__` (`blowhole__exp1_num_4`),
/// else the name less a trailing `_<number>` (`missing_hole_000123`).
pub fn kind_from_name(stem: &str) -> Option<String> {
    let kind = match stem.split_once("__") {
        Some((k, _)) => k,
        None => match stem.rsplit_once('_') {
            Some((k, n)) if !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()) => k,
            _ => return None,
        },
    };
    (!kind.is_empty()).then(|| kind.to_string())
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
            truth: truth_of(&self.root, file),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truth_comes_from_the_folder_layout() {
        let root = Path::new("/data");
        assert_eq!(truth_of(root, Path::new("/data/good/a.png")), Some(Truth::Good));
        assert_eq!(
            truth_of(root, Path::new("/data/defect/crack_001.png")),
            Some(Truth::Defect(Some("crack".into())))
        );
        assert_eq!(
            truth_of(root, Path::new("/data/defect/blowhole/x_1.jpg")),
            Some(Truth::Defect(Some("blowhole".into())))
        );
        assert_eq!(
            truth_of(root, Path::new("/data/defect/missing_hole_000123.png")),
            Some(Truth::Defect(Some("missing_hole".into())))
        );
        assert_eq!(
            truth_of(root, Path::new("/data/defect/blowhole__exp1_num_4.jpg")),
            Some(Truth::Defect(Some("blowhole".into())))
        );
        assert_eq!(
            truth_of(root, Path::new("/data/defect/odd.png")),
            Some(Truth::Defect(None))
        );
        assert_eq!(truth_of(root, Path::new("/data/a.png")), None);
    }
}
