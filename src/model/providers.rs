//! Execution providers: register the configured ones in order and say which one serves.
//!
//! Every provider that registers is kept (TensorRT first, CUDA for the nodes TensorRT does
//! not take, the CPU for the rest); the first that registers is the one "serving" the
//! model. A provider that cannot register is either a startup error
//! (`require_accelerator`) or a WARN naming the reason, never a silent fallback.

use crate::config::{ConvSearch, ProviderKind, RuntimeConfig};
use anyhow::bail;
use ort::ep::{self, ExecutionProvider};
use ort::session::builder::SessionBuilder;
use std::ffi::{c_char, c_int, CStr, CString};
use std::path::{Path, PathBuf};

/// What serves the model, and what was given up on the way.
#[derive(Debug, Clone)]
pub struct Serving {
    pub provider: ProviderKind,
    /// One line for logs and `check`, e.g. `cuda (device 0, cuDNN search exhaustive)`.
    pub detail: String,
    /// Providers that could not be registered, each with its reason.
    pub skipped: Vec<(ProviderKind, String)>,
    /// TensorRT's engine folder, when TensorRT serves.
    pub engine_cache: Option<PathBuf>,
    /// The GPU it runs on (0 for the CPU).
    pub device_id: i32,
}

/// Registers the providers of `rt.providers[from..]` on `builder`.
pub fn register(
    builder: &mut SessionBuilder,
    rt: &RuntimeConfig,
    model_sha256: &str,
    from: usize,
) -> anyhow::Result<Serving> {
    let mut skipped = Vec::new();
    let mut serving: Option<Serving> = None;
    for (i, kind) in rt.providers.iter().enumerate().skip(from) {
        let attempt = match kind {
            ProviderKind::Cpu => Ok(("cpu".to_string(), None)),
            ProviderKind::Cuda => register_cuda(builder, rt),
            ProviderKind::Tensorrt => register_tensorrt(builder, rt, model_sha256),
        };
        match attempt {
            Ok((detail, engine_cache)) => {
                if serving.is_none() {
                    let device_id = match kind {
                        ProviderKind::Tensorrt => rt.tensorrt.device_id,
                        ProviderKind::Cuda => rt.cuda.device_id,
                        ProviderKind::Cpu => 0,
                    };
                    serving = Some(Serving {
                        provider: *kind,
                        detail,
                        skipped: Vec::new(),
                        engine_cache,
                        device_id,
                    });
                }
                if *kind == ProviderKind::Cpu {
                    break;
                }
            }
            Err(reason) => {
                if i == 0 && rt.require_accelerator {
                    bail!(
                        "runtime.providers[0] = \"{}\" cannot be used: {reason} (runtime.require_accelerator = true, so linesight does not start on another provider)",
                        kind.as_str()
                    );
                }
                skipped.push((*kind, reason));
            }
        }
    }
    let Some(mut s) = serving else {
        bail!(
            "none of runtime.providers could be registered: {}",
            skipped
                .iter()
                .map(|(k, r)| format!("{}: {r}", k.as_str()))
                .collect::<Vec<_>>()
                .join("; ")
        );
    };
    s.skipped = skipped;
    Ok(s)
}

type Attempt = Result<(String, Option<PathBuf>), String>;

fn register_cuda(builder: &mut SessionBuilder, rt: &RuntimeConfig) -> Attempt {
    let c = &rt.cuda;
    let search = match c.cudnn_conv_algo_search {
        ConvSearch::Exhaustive => ep::cuda::ConvAlgorithmSearch::Exhaustive,
        ConvSearch::Heuristic => ep::cuda::ConvAlgorithmSearch::Heuristic,
        ConvSearch::Default => ep::cuda::ConvAlgorithmSearch::Default,
    };
    ep::CUDA::default()
        .with_device_id(c.device_id)
        .with_conv_algorithm_search(search)
        .with_cuda_graph(c.cuda_graph)
        .register(builder)
        .map_err(|e| one_line(&e.to_string()))?;
    let search = format!("{:?}", c.cudnn_conv_algo_search).to_lowercase();
    let graph = if c.cuda_graph { ", CUDA graph" } else { "" };
    Ok((
        format!("cuda (device {}, cuDNN search {search}{graph})", c.device_id),
        None,
    ))
}

fn register_tensorrt(builder: &mut SessionBuilder, rt: &RuntimeConfig, model_sha256: &str) -> Attempt {
    let t = &rt.tensorrt;
    // TensorRT's own library first: its absence is the commonest reason, and its version
    // is part of the engine cache key.
    let version = tensorrt_version()?;
    let gpu = gpu_name(t.device_id).unwrap_or_else(|e| format!("gpu{}-unknown ({e})", t.device_id));
    let precision = if t.fp16 { "fp16" } else { "fp32" };
    let base = t.engine_cache_dir.clone().unwrap_or_else(default_engine_cache);
    let dir = base.join(engine_key(model_sha256, &version, &gpu, precision));
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create the engine cache {}: {e}", dir.display()))?;
    let dir_s = dir.to_string_lossy().to_string();
    let mut ep = ep::TensorRT::default()
        .with_device_id(t.device_id)
        .with_fp16(t.fp16)
        .with_engine_cache(true)
        .with_engine_cache_path(&dir_s)
        .with_timing_cache(t.timing_cache)
        .with_timing_cache_path(&dir_s)
        .with_builder_optimization_level(t.builder_optimization_level);
    if t.workspace_mb > 0 {
        ep = ep.with_max_workspace_size((t.workspace_mb * 1024 * 1024) as usize);
    }
    ep.register(builder).map_err(|e| one_line(&e.to_string()))?;
    Ok((
        format!("tensorrt {version} on {gpu} ({precision}, device {})", t.device_id),
        Some(dir),
    ))
}

/// `<sha256 prefix>-trt<version>-<gpu>-<precision>`: a new model, TensorRT, GPU or precision
/// gets a folder of its own, so a stale engine is never loaded.
pub fn engine_key(model_sha256: &str, trt_version: &str, gpu: &str, precision: &str) -> String {
    let slug: String = gpu
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    format!(
        "{}-trt{trt_version}-{}-{precision}",
        &model_sha256[..model_sha256.len().min(16)],
        slug.trim_matches('_')
    )
}

fn default_engine_cache() -> PathBuf {
    if let Some(d) = std::env::var_os("CACHE_DIRECTORY").filter(|d| !d.is_empty()) {
        // systemd's CacheDirectory= may list several, colon-separated: take the first.
        let first = d.to_string_lossy().split(':').next().unwrap_or_default().to_string();
        return Path::new(&first).join("trt");
    }
    let home = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from("/var/cache"));
    home.join("linesight").join("trt")
}

fn one_line(s: &str) -> String {
    s.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .trim_end_matches('.')
        .to_string()
}

/// A shared library opened with dlopen, closed on drop.
struct Dl(*mut libc::c_void);

impl Dl {
    fn open(names: &[&str]) -> Result<Dl, String> {
        let mut first = String::new();
        for name in names {
            let c = CString::new(*name).expect("no NUL in library names");
            // SAFETY: dlopen with a valid C string; the handle is closed on drop.
            let h = unsafe { libc::dlopen(c.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
            if !h.is_null() {
                return Ok(Dl(h));
            }
            // SAFETY: dlerror returns a thread-local C string or null.
            let e = unsafe { libc::dlerror() };
            if !e.is_null() && first.is_empty() {
                first = unsafe { CStr::from_ptr(e) }.to_string_lossy().into_owned();
            }
        }
        // The first name's error: the library this build of linesight looks for first.
        Err(first)
    }

    /// SAFETY: the caller names the symbol's true type `F` (a C function pointer).
    unsafe fn sym<F: Copy>(&self, name: &str) -> Result<F, String> {
        let c = CString::new(name).expect("no NUL in symbol names");
        let p = libc::dlsym(self.0, c.as_ptr());
        if p.is_null() {
            return Err(format!("symbol {name} not found"));
        }
        Ok(std::mem::transmute_copy(&p))
    }
}

impl Drop for Dl {
    fn drop(&mut self) {
        // SAFETY: the handle came from dlopen.
        unsafe { libc::dlclose(self.0) };
    }
}

/// TensorRT's version as `major.minor.patch`, from libnvinfer's `getInferLibVersion`.
fn tensorrt_version() -> Result<String, String> {
    let lib = Dl::open(&["libnvinfer.so.10", "libnvinfer.so.8", "libnvinfer.so"])?;
    // SAFETY: `int32_t getInferLibVersion()` is TensorRT's exported C entry point.
    let f: unsafe extern "C" fn() -> i32 = unsafe { lib.sym("getInferLibVersion")? };
    let v = unsafe { f() };
    // TensorRT 10 encodes major*10000 + minor*100 + patch; 8.x used major*1000 + minor*100 + patch.
    let (major, rest) = if v >= 10000 {
        (v / 10000, v % 10000)
    } else {
        (v / 1000, v % 1000)
    };
    Ok(format!("{major}.{}.{}", rest / 100, rest % 100))
}

/// The GPU's name from the CUDA driver API (libcuda), e.g. "Orin (nvgpu)" or "NVIDIA H100".
fn gpu_name(device: i32) -> Result<String, String> {
    let lib = Dl::open(&["libcuda.so.1", "libcuda.so"])?;
    // SAFETY: the CUDA driver API's documented C signatures.
    unsafe {
        let init: unsafe extern "C" fn(u32) -> c_int = lib.sym("cuInit")?;
        let get: unsafe extern "C" fn(*mut c_int, c_int) -> c_int = lib.sym("cuDeviceGet")?;
        let name: unsafe extern "C" fn(*mut c_char, c_int, c_int) -> c_int = lib.sym("cuDeviceGetName")?;
        if init(0) != 0 {
            return Err("cuInit failed".into());
        }
        let mut dev: c_int = 0;
        if get(&mut dev, device) != 0 {
            return Err(format!("no CUDA device {device}"));
        }
        let mut buf = [0 as c_char; 256];
        if name(buf.as_mut_ptr(), buf.len() as c_int, dev) != 0 {
            return Err("cuDeviceGetName failed".into());
        }
        Ok(CStr::from_ptr(buf.as_ptr()).to_string_lossy().into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_key_changes_with_model_trt_gpu_and_precision() {
        let sha = "ab".repeat(32);
        let k = engine_key(&sha, "10.3.0", "Orin (nvgpu)", "fp16");
        assert_eq!(k, "abababababababab-trt10.3.0-orin__nvgpu-fp16");
        for other in [
            engine_key(&"cd".repeat(32), "10.3.0", "Orin (nvgpu)", "fp16"),
            engine_key(&sha, "8.5.2", "Orin (nvgpu)", "fp16"),
            engine_key(&sha, "10.3.0", "Xavier", "fp16"),
            engine_key(&sha, "10.3.0", "Orin (nvgpu)", "fp32"),
        ] {
            assert_ne!(k, other);
        }
    }
}
