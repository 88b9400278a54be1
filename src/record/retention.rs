//! Retention of what the record keeps besides the live results log (`record.keep_mb`,
//! `record.keep_days`): saved images and rotated results logs, the oldest first.
//! Both carry a `device_seq` in their names (an image its part's, a rotated log its last
//! line's), so that this number is their age order; only files so named are ever
//! removed. The plan is pure, with time passed in; the sweep runs on the writer thread,
//! now and then.

use std::path::{Path, PathBuf};

/// One file the sweep may remove.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Saved {
    pub path: PathBuf,
    pub kind: Kind,
    /// The `device_seq` in its name: its age order.
    pub seq: u64,
    pub bytes: u64,
    /// Last modified, Unix seconds.
    pub modified_s: u64,
}

/// What a file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Image,
    /// A rotated results log.
    Log,
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

/// A saved image's name: ten digits of `device_seq`, `_`, …, `.png`; its `device_seq`.
pub fn saved_image_seq(name: &str) -> Option<u64> {
    let b = name.as_bytes();
    let ok = b.len() > 15 && b[..10].iter().all(u8::is_ascii_digit) && b[10] == b'_' && name.ends_with(".png");
    ok.then(|| name[..10].parse().ok()).flatten()
}

/// The name a results log `live` (e.g. `results.jsonl`) is rotated to when its last line
/// has `device_seq` `seq`: `results.0000000123.jsonl`.
pub fn rotated_name(live: &Path, seq: u64) -> PathBuf {
    let stem = live.file_stem().unwrap_or_default().to_string_lossy();
    let name = match live.extension() {
        Some(ext) => format!("{stem}.{seq:010}.{}", ext.to_string_lossy()),
        None => format!("{stem}.{seq:010}"),
    };
    live.with_file_name(name)
}

/// A rotated results log's name (as `rotated_name` makes them for `live`); its `device_seq`.
pub fn rotated_seq(live: &Path, name: &str) -> Option<u64> {
    let stem = live.file_stem()?.to_str()?;
    let rest = name.strip_prefix(stem)?.strip_prefix('.')?;
    let digits = match live.extension() {
        Some(ext) => rest.strip_suffix(ext.to_str()?)?.strip_suffix('.')?,
        None => rest,
    };
    (digits.len() == 10 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

/// The files to remove, oldest first: those older than `keep.secs`, then the oldest of
/// the rest until what is left fits in `keep.bytes`.
pub fn plan(mut files: Vec<Saved>, keep: Keep, now_s: u64) -> Vec<Saved> {
    files.sort_by(|a, b| (a.seq, &a.path).cmp(&(b.seq, &b.path)));
    let mut total: u64 = files.iter().map(|f| f.bytes).sum();
    let mut out = Vec::new();
    for f in files {
        let too_old = keep.secs.is_some_and(|s| now_s.saturating_sub(f.modified_s) > s);
        let too_much = keep.bytes.is_some_and(|b| total > b);
        if !(too_old || too_much) {
            break;
        }
        total -= f.bytes;
        out.push(f);
    }
    out
}

/// What a sweep removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Removed {
    pub images: u64,
    pub logs: u64,
    pub bytes: u64,
}

/// Removes what `plan` says of the saved images in `save_dir` and the rotated
/// logs beside the results log `live`, within one budget.
pub fn sweep(save_dir: &Path, live: &Path, keep: Keep, now_s: u64) -> std::io::Result<Removed> {
    let mut files = Vec::new();
    list(save_dir, Kind::Image, saved_image_seq, &mut files)?;
    let logs_dir = live
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    list(logs_dir, Kind::Log, |name| rotated_seq(live, name), &mut files)?;
    let mut removed = Removed::default();
    for f in plan(files, keep, now_s) {
        std::fs::remove_file(&f.path)?;
        match f.kind {
            Kind::Image => removed.images += 1,
            Kind::Log => removed.logs += 1,
        }
        removed.bytes += f.bytes;
    }
    Ok(removed)
}

/// The regular files in `dir` whose names `seq_of` knows.
fn list(dir: &Path, kind: Kind, seq_of: impl Fn(&str) -> Option<u64>, out: &mut Vec<Saved>) -> std::io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        r => r?,
    };
    for e in entries {
        let e = e?;
        let Some(seq) = e.file_name().to_str().and_then(&seq_of) else {
            continue;
        };
        let m = e.metadata()?;
        if !m.is_file() {
            continue;
        }
        let modified_s = m
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs());
        out.push(Saved {
            path: e.path(),
            kind,
            seq,
            bytes: m.len(),
            modified_s,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(seq: u64, bytes: u64, modified_s: u64) -> Saved {
        Saved {
            path: format!("{seq:010}_r1_{seq:08}_above_threshold.png").into(),
            kind: Kind::Image,
            seq,
            bytes,
            modified_s,
        }
    }

    fn seqs(v: Vec<Saved>) -> Vec<u64> {
        v.into_iter().map(|f| f.seq).collect()
    }

    #[test]
    fn the_oldest_go_first_until_the_rest_fits_and_is_young_enough() {
        let files = vec![f(3, 100, 1000), f(1, 100, 900), f(2, 100, 950), f(4, 100, 1000)];
        let keep = |bytes, secs| Keep { bytes, secs };
        assert_eq!(seqs(plan(files.clone(), Keep::default(), 2000)), Vec::<u64>::new());
        assert_eq!(seqs(plan(files.clone(), keep(Some(250), None), 0)), [1, 2]);
        assert_eq!(seqs(plan(files.clone(), keep(None, Some(60)), 1000)), [1]);
        assert_eq!(
            seqs(plan(files, keep(Some(350), Some(60)), 1000)),
            [1],
            "old, and then within the size"
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
    fn only_linesight_s_own_names_are_known() {
        assert_eq!(saved_image_seq("0000000012_r_1_above_threshold.png"), Some(12));
        for name in ["notes.png", "0000000001.png", "readme.txt", "000000000x_r_1_a.png"] {
            assert_eq!(saved_image_seq(name), None, "{name}");
        }
        let live = Path::new("/var/lib/linesight/results.jsonl");
        assert_eq!(
            rotated_name(live, 1234),
            Path::new("/var/lib/linesight/results.0000001234.jsonl")
        );
        assert_eq!(rotated_seq(live, "results.0000001234.jsonl"), Some(1234));
        for name in [
            "results.jsonl",
            "results.123.jsonl",
            "other.0000001234.jsonl",
            "results.0000001234.json",
        ] {
            assert_eq!(rotated_seq(live, name), None, "{name}");
        }
        let bare = Path::new("log");
        assert_eq!(rotated_name(bare, 7), Path::new("log.0000000007"));
        assert_eq!(rotated_seq(bare, "log.0000000007"), Some(7));
    }

    #[test]
    fn a_sweep_removes_the_oldest_images_and_rotated_logs_within_one_budget() {
        let dir = tempfile::tempdir().unwrap();
        let saved = dir.path().join("saved");
        std::fs::create_dir(&saved).unwrap();
        for seq in [1, 3, 5] {
            std::fs::write(saved.join(&f(seq, 0, 0).path), vec![0u8; 1000]).unwrap();
        }
        let live = dir.path().join("results.jsonl");
        std::fs::write(&live, vec![b'x'; 5000]).unwrap();
        for seq in [2, 4] {
            std::fs::write(rotated_name(&live, seq), vec![0u8; 1000]).unwrap();
        }
        std::fs::write(saved.join("keep-me.png"), vec![0u8; 5000]).unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let keep = Keep {
            bytes: Some(2500),
            secs: None,
        };
        let removed = sweep(&saved, &live, keep, now).unwrap();
        assert_eq!(
            removed,
            Removed {
                images: 2,
                logs: 1,
                bytes: 3000
            }
        );
        let names = |d: &Path| {
            let mut v: Vec<String> = std::fs::read_dir(d)
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect();
            v.sort();
            v
        };
        assert_eq!(
            names(&saved),
            [f(5, 0, 0).path.to_string_lossy().into_owned(), "keep-me.png".into()]
        );
        assert_eq!(
            names(dir.path()),
            ["results.0000000004.jsonl", "results.jsonl", "saved"]
        );
    }
}
