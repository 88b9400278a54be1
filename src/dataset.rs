//! Labelled image sets on disk: which files are images, what a folder layout says about
//! each part (good or defective, the defect kind, its mask), and `.txt` split lists.
//!
//! The layout rule is written down for users in docs/datasets.md and is shared with the
//! training package (models/training/linesight_train/data.py): both test the cases in
//! tests/fixtures/dataset_layout.toml. The folder camera, `eval` and `calibrate` use it.

use crate::frame::Truth;
use anyhow::{bail, Context};
use std::path::{Path, PathBuf};

/// Image file endings linesight reads (any case).
pub const EXTENSIONS: [&str; 4] = ["png", "jpg", "jpeg", "bmp"];

pub fn is_image(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
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

/// The nearest folder above `file` with this name.
fn nearest_ancestor<'a>(file: &'a Path, name: &str) -> Option<&'a Path> {
    file.ancestors()
        .skip(1)
        .find(|a| a.file_name().is_some_and(|n| n == name))
}

/// Ground truth from the layout: below a `good/` or a `defect/` folder (the nearer wins).
pub fn truth_of(file: &Path) -> Option<Truth> {
    let good = nearest_ancestor(file, "good");
    let defect = nearest_ancestor(file, "defect");
    match (good, defect) {
        (Some(g), Some(d)) if g.starts_with(d) => Some(Truth::Good),
        (_, Some(d)) => Some(Truth::Defect(defect_kind(file, Some(d)))),
        (Some(_), None) => Some(Truth::Good),
        (None, None) => None,
    }
}

/// The defect folder of an image: its nearest ancestor named `defect`, else `named`
/// (the folder a user gave as defective, e.g. `eval --defect DIR`).
pub fn defect_dir<'a>(file: &'a Path, named: Option<&'a Path>) -> Option<&'a Path> {
    nearest_ancestor(file, "defect").or(named.filter(|d| file.starts_with(d)))
}

/// The defect kind of an image: the first sub-folder below its defect folder `dir` when
/// it sits in one, else what its file name says (`kind_from_name`).
pub fn defect_kind(file: &Path, dir: Option<&Path>) -> Option<String> {
    let mut below = dir
        .and_then(|d| file.strip_prefix(d).ok())
        .into_iter()
        .flat_map(Path::iter);
    if let (Some(first), Some(_)) = (below.next(), below.next()) {
        return first.to_str().map(str::to_string);
    }
    file.file_stem().and_then(|s| s.to_str()).and_then(kind_from_name)
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

/// The masks folder of a defect folder: `masks/` beside it, else `ground_truth/`.
pub fn masks_dir(defect_dir: &Path) -> Option<PathBuf> {
    let parent = defect_dir.parent()?;
    ["masks", "ground_truth"]
        .into_iter()
        .map(|m| parent.join(m))
        .find(|m| m.is_dir())
}

/// The mask of an image at `<defect dir>/<rel>/<stem>.<ext>`: the first file that exists
/// of `<masks>/<rel>/<stem>.png`, `<masks>/<rel>/<stem>_mask.png`, `<masks>/<stem>.png`,
/// `<masks>/<stem>_mask.png`.
pub fn find_mask(file: &Path, defect_dir: &Path, masks: &Path) -> Option<PathBuf> {
    let stem = file.file_stem()?.to_str()?;
    let rel = file.parent()?.strip_prefix(defect_dir).ok()?;
    let names = [format!("{stem}.png"), format!("{stem}_mask.png")];
    [masks.join(rel), masks.to_path_buf()]
        .iter()
        .flat_map(|dir| names.iter().map(move |n| dir.join(n)))
        .find(|p| p.is_file())
}

/// One image of a labelled set.
#[derive(Debug, Clone)]
pub struct Sample {
    pub path: PathBuf,
    pub defect: bool,
    /// The defect kind (see `defect_kind`).
    pub kind: Option<String>,
    pub mask: Option<PathBuf>,
}

/// Images from a folder (recursively) or a `.txt` list of paths, one a line, relative to
/// the folder above the list's folder (the data set's root). `masks` replaces the masks
/// folder the layout rule finds.
pub fn load_set(arg: &Path, defect: bool, masks: Option<&Path>) -> anyhow::Result<Vec<Sample>> {
    let (files, named) = if arg.is_dir() {
        (list_images(arg)?, arg.to_path_buf())
    } else if arg.extension().is_some_and(|e| e == "txt") {
        let (files, root) = read_list(arg)?;
        (files, root.join(if defect { "defect" } else { "good" }))
    } else {
        bail!("{} is neither a folder nor a .txt list of images", arg.display());
    };
    if files.is_empty() {
        bail!("no images in {}", arg.display());
    }
    Ok(files
        .into_iter()
        .filter(|f| is_image(f))
        .map(|path| {
            let (kind, mask) = if defect {
                let dir = defect_dir(&path, Some(&named));
                // Without a defect folder the image's own folder is where masks are relative to.
                let base = dir.or(path.parent()).unwrap_or(Path::new(""));
                let mask = masks
                    .map(Path::to_path_buf)
                    .or_else(|| dir.and_then(masks_dir))
                    .and_then(|m| find_mask(&path, base, &m));
                (defect_kind(&path, dir), mask)
            } else {
                (None, None)
            };
            Sample {
                path,
                defect,
                kind,
                mask,
            }
        })
        .collect())
}

/// The files of a `.txt` list and the root they are relative to (the folder above the
/// list's folder). Blank lines and `#` comments are skipped; a missing file is an error
/// naming its line.
fn read_list(list: &Path) -> anyhow::Result<(Vec<PathBuf>, PathBuf)> {
    let text = std::fs::read_to_string(list).with_context(|| format!("cannot read list {}", list.display()))?;
    // The root as the user wrote it, so that reports name images the way the user
    // does (a list named without its folder needs the absolute form).
    let root = match list
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .and_then(Path::parent)
    {
        Some(r) => r.to_path_buf(),
        None => list
            .canonicalize()?
            .parent()
            .and_then(Path::parent)
            .map(Path::to_path_buf)
            .unwrap_or_default(),
    };
    let mut files = Vec::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty() && !l.starts_with('#'))
    {
        let p = root.join(line.trim());
        if !p.is_file() {
            bail!(
                "{}:{}: {} does not exist (paths are relative to {})",
                list.display(),
                i + 1,
                p.display(),
                root.display()
            );
        }
        files.push(p);
    }
    Ok((files, root))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[test]
    fn truth_comes_from_the_folder_layout() {
        let defect = |k: &str| Some(Truth::Defect(Some(k.to_string())));
        for (file, truth) in [
            ("/data/good/a.png", Some(Truth::Good)),
            ("/data/defect/crack_001.png", defect("crack")),
            ("/data/defect/blowhole/x_1.jpg", defect("blowhole")),
            ("/data/defect/missing_hole_000123.png", defect("missing_hole")),
            ("/data/defect/blowhole__exp1_num_4.jpg", defect("blowhole")),
            ("/data/defect/odd.png", Some(Truth::Defect(None))),
            ("/data/defect/good/a.png", Some(Truth::Good)),
            ("/data/a.png", None),
        ] {
            assert_eq!(truth_of(Path::new(file)), truth, "{file}");
        }
    }

    #[derive(Deserialize)]
    struct Fixture {
        case: Vec<Case>,
    }

    #[derive(Deserialize)]
    struct Case {
        image: String,
        #[serde(default)]
        files: Vec<String>,
        kind: String,
        mask: String,
    }

    /// The cases the training package tests too (models/training/tests/test_data.py).
    #[test]
    fn the_shared_layout_cases_hold() {
        let text = include_str!("../tests/fixtures/dataset_layout.toml");
        let fixture: Fixture = toml::from_str(text).expect("tests/fixtures/dataset_layout.toml parses");
        assert!(fixture.case.len() >= 12, "only {} cases", fixture.case.len());
        for case in fixture.case {
            let root = tempfile::tempdir().unwrap();
            for f in std::iter::once(&case.image).chain(&case.files) {
                let p = root.path().join(f);
                std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                std::fs::write(&p, b"").unwrap();
            }
            let image = root.path().join(&case.image);
            let dir = defect_dir(&image, None);
            let kind = defect_kind(&image, dir).unwrap_or_default();
            assert_eq!(kind, case.kind, "kind of {}", case.image);
            let mask = dir
                .and_then(|d| Some((d, masks_dir(d)?)))
                .and_then(|(d, m)| find_mask(&image, d, &m))
                .map(|m| m.strip_prefix(root.path()).unwrap().display().to_string())
                .unwrap_or_default();
            assert_eq!(mask, case.mask, "mask of {}", case.image);
        }
    }
}
