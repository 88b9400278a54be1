//! Finding and loading the ONNX Runtime shared library (`ort` with `load-dynamic`).

use anyhow::{anyhow, bail};
use ort::environment::Environment;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Where the build script put the library it fetched from the pinned `onnxruntime` wheel.
const BUNDLED: Option<&str> = option_env!("LINESIGHT_BUNDLED_ORT");

/// Candidates in order of precedence, each with where it came from.
pub fn candidates(configured: Option<&Path>) -> Vec<(PathBuf, &'static str)> {
    let mut out = Vec::new();
    if let Some(p) = configured {
        out.push((p.to_path_buf(), "runtime.onnxruntime_library"));
        return out;
    }
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        out.push((PathBuf::from(p), "ORT_DYLIB_PATH"));
        return out;
    }
    // A library shipped beside the binary (the .deb and the board images do this).
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        for name in ["libonnxruntime.so", "lib/libonnxruntime.so"] {
            out.push((dir.join(name), "beside the executable"));
        }
    }
    if let Some(p) = BUNDLED {
        out.push((PathBuf::from(p), "fetched at build time"));
    }
    out
}

/// The environment, the library it came from and where that path came from. ONNX
/// Runtime can be loaded once per process, so the first caller's choice holds.
static LOADED: OnceLock<Loaded> = OnceLock::new();

pub struct Loaded {
    pub env: Environment,
    pub path: PathBuf,
    pub origin: &'static str,
}

/// Loads ONNX Runtime and creates its environment. Errors are one line saying what to set.
pub fn load(configured: Option<&Path>) -> anyhow::Result<&'static Loaded> {
    if let Some(l) = LOADED.get() {
        return Ok(l);
    }
    let candidates = candidates(configured);
    let hint = "set runtime.onnxruntime_library in the config or ORT_DYLIB_PATH to a libonnxruntime.so of version 1.17 or newer";
    let Some((path, origin)) = candidates.iter().find(|(p, _)| p.exists()).cloned() else {
        let looked: Vec<_> = candidates
            .iter()
            .map(|(p, o)| format!("{} ({o})", p.display()))
            .collect();
        bail!(
            "no ONNX Runtime library found (looked for {}); {hint}",
            if looked.is_empty() {
                "nothing: no path configured".into()
            } else {
                looked.join(", ")
            }
        );
    };
    let env = ort::init_from(&path)
        .map_err(|e| {
            anyhow!(
                "cannot load ONNX Runtime from {} (from {origin}): {e}; {hint}",
                path.display()
            )
        })?
        .with_name("linesight")
        .build()
        .map_err(|e| anyhow!("ONNX Runtime from {} could not start: {e}; {hint}", path.display()))?;
    Ok(LOADED.get_or_init(|| Loaded { env, path, origin }))
}

/// The library in use, once `load` has succeeded.
pub fn loaded() -> Option<&'static Loaded> {
    LOADED.get()
}
