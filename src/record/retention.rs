//! Retention of saved images (`record.keep_mb`, `record.keep_days`): the oldest go first.
//! Saved images are named `<device_seq>_…png`, so that name order is age order; only
//! files so named are ever removed. The plan is pure, with time passed in; the sweep runs
//! on the writer thread, now and then.

use std::path::Path;

/// One saved image, as the sweep finds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Saved {
    pub name: String,
    pub bytes: u64,
    /// Last modified, Unix seconds.
    pub modified_s: u64,
}

/// The limits; `None`: no limit of that kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Keep {
    pub bytes: Option<u64>,
    pub secs: Option<u64>,
}

impl Keep {
    pub fn new(keep_mb: Option<u64>, keep_days: Option<u64>) -> Keep {
        Keep {
            bytes: keep_mb.map(|mb| mb.saturating_mul(1 << 20)),
            secs: keep_days.map(|d| d.saturating_mul(86_400)),
        }
    }

    pub fn is_none(&self) -> bool {
        self.bytes.is_none() && self.secs.is_none()
    }
}

/// A saved image's name: ten digits of `device_seq`, `_`, …, `.png`.
pub fn is_saved_image(name: &str) -> bool {
    let b = name.as_bytes();
    b.len() > 15 && b[..10].iter().all(u8::is_ascii_digit) && b[10] == b'_' && name.ends_with(".png")
}

/// The names to remove, oldest first: those older than `keep.secs`, then the oldest of
/// the rest until what is left fits in `keep.bytes`.
pub fn plan(mut files: Vec<Saved>, keep: Keep, now_s: u64) -> Vec<String> {
    files.retain(|f| is_saved_image(&f.name));
    files.sort_by(|a, b| a.name.cmp(&b.name));
    let mut total: u64 = files.iter().map(|f| f.bytes).sum();
    let mut out = Vec::new();
    for f in files {
        let too_old = keep.secs.is_some_and(|s| now_s.saturating_sub(f.modified_s) > s);
        let too_much = keep.bytes.is_some_and(|b| total > b);
        if !(too_old || too_much) {
            break;
        }
        total -= f.bytes;
        out.push(f.name);
    }
    out
}

/// Removes what `plan` says from `dir`; returns the files and bytes removed.
pub fn sweep(dir: &Path, keep: Keep, now_s: u64) -> std::io::Result<(u64, u64)> {
    let mut files = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let Ok(name) = e.file_name().into_string() else {
            continue;
        };
        if !is_saved_image(&name) {
            continue;
        }
        let m = e.metadata()?;
        if !m.is_file() {
            continue;
        }
        let modified_s = m
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs());
        files.push(Saved {
            name,
            bytes: m.len(),
            modified_s,
        });
    }
    let sizes: std::collections::HashMap<String, u64> = files.iter().map(|f| (f.name.clone(), f.bytes)).collect();
    let (mut n, mut bytes) = (0, 0);
    for name in plan(files, keep, now_s) {
        std::fs::remove_file(dir.join(&name))?;
        n += 1;
        bytes += sizes[&name];
    }
    Ok((n, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(seq: u64, bytes: u64, modified_s: u64) -> Saved {
        Saved {
            name: format!("{seq:010}_r1_{seq:08}_above_threshold.png"),
            bytes,
            modified_s,
        }
    }

    #[test]
    fn the_oldest_go_first_until_the_rest_fits_and_is_young_enough() {
        let files = vec![f(3, 100, 1000), f(1, 100, 900), f(2, 100, 950), f(4, 100, 1000)];
        let names = |v: Vec<String>| {
            v.into_iter()
                .map(|n| n[..10].parse::<u64>().unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(names(plan(files.clone(), Keep::default(), 2000)), Vec::<u64>::new());
        assert_eq!(
            names(plan(
                files.clone(),
                Keep {
                    bytes: Some(250),
                    secs: None
                },
                0
            )),
            [1, 2]
        );
        assert_eq!(
            names(plan(
                files.clone(),
                Keep {
                    bytes: None,
                    secs: Some(60)
                },
                1000
            )),
            [1]
        );
        assert_eq!(
            names(plan(
                files,
                Keep {
                    bytes: Some(350),
                    secs: Some(60)
                },
                1000
            )),
            [1],
            "old, and then within the size"
        );
    }

    #[test]
    fn only_saved_images_are_ever_removed() {
        let mut files = vec![f(1, 100, 0)];
        for name in ["notes.png", "0000000001.png", "readme.txt", "000000000x_r_1_a.png"] {
            files.push(Saved {
                name: name.into(),
                bytes: 1000,
                modified_s: 0,
            });
        }
        assert_eq!(
            plan(
                files,
                Keep {
                    bytes: Some(0),
                    secs: Some(0)
                },
                10
            )
            .len(),
            1
        );
        assert_eq!(
            Keep::new(Some(2), Some(1)),
            Keep {
                bytes: Some(2 << 20),
                secs: Some(86_400)
            }
        );
    }

    #[test]
    fn a_sweep_removes_the_planned_files_and_counts_them() {
        let dir = tempfile::tempdir().unwrap();
        for seq in 1..=4 {
            std::fs::write(dir.path().join(f(seq, 0, 0).name), vec![0u8; 1000]).unwrap();
        }
        std::fs::write(dir.path().join("keep-me.png"), vec![0u8; 5000]).unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let keep = Keep {
            bytes: Some(2500),
            secs: None,
        };
        assert_eq!(sweep(dir.path(), keep, now).unwrap(), (2, 2000));
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, [f(3, 0, 0).name, f(4, 0, 0).name, "keep-me.png".into()]);
    }
}
