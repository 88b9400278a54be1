//! One ONNX Runtime session running the exported GAN. The graph computes the score
//! and the anomaly map itself; this side never re-implements the network.

use super::providers::{self, Serving};
use super::{library, progress, Manifest};
use crate::config::{ProviderKind, RuntimeConfig};
use anyhow::{anyhow, bail, Context};
use ort::memory::{AllocationDevice, Allocator, AllocatorType, MemoryInfo, MemoryType};
use ort::session::{builder::GraphOptimizationLevel, IoBinding, Session};
use ort::value::Tensor;
use ort::AsPointer;
use std::ffi::{CStr, CString};
use std::fmt::Display;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// What the model says about one part.
#[derive(Debug, Clone)]
pub struct Inspection {
    /// Higher is more anomalous.
    pub score: f32,
    /// Per-pixel anomaly map at model resolution (row-major H×W), when asked for and available.
    pub anomaly_map: Option<Vec<f32>>,
}

/// The session with its I/O bound once: the input lives in one tensor that preprocessing
/// writes into (pinned host memory when a GPU serves), the score and the map come back
/// into tensors allocated at open. Nothing is allocated per frame.
pub struct Detector {
    session: Session,
    input: Tensor<f32>,
    /// `input.name` as ONNX Runtime takes it, made once.
    input_name: CString,
    /// Score and map copied back to the host.
    with_map: Bound,
    /// Only where a GPU serves: the score back, the map left on the device.
    without_map: Option<Bound>,
    pub manifest: Manifest,
    pub serving: Serving,
}

/// One I/O binding and the host tensors its outputs land in (shared with the binding).
struct Bound {
    binding: IoBinding,
    score: Tensor<f32>,
    map: Option<Tensor<f32>>,
}

fn ort_err<T, E: Display>(r: Result<T, E>, what: &str) -> anyhow::Result<T> {
    r.map_err(|e| anyhow!("{what}: {e}"))
}

/// The input tensor and the bindings.
type Bindings = (Tensor<f32>, Bound, Option<Bound>);

fn bindings(session: &Session, m: &Manifest, serving: &Serving, pinned: bool) -> anyhow::Result<Bindings> {
    let input_alloc = if pinned {
        let info = MemoryInfo::new(
            AllocationDevice::CUDA_PINNED,
            0,
            AllocatorType::Device,
            MemoryType::CPUInput,
        )
        .map_err(|e| anyhow!("pinned host memory: {e}"))?;
        Allocator::new(session, info).map_err(|e| anyhow!("pinned host memory: {e}"))?
    } else {
        Allocator::default()
    };
    let shape: Vec<i64> = m.input.shape.iter().map(|d| *d as i64).collect();
    let input =
        Tensor::<f32>::new(&input_alloc, shape).map_err(|e| anyhow!("cannot allocate the input tensor: {e}"))?;
    let host = Allocator::default();
    let score = || Tensor::<f32>::new(&host, [1_i64]).map_err(|e| anyhow!("cannot allocate the score tensor: {e}"));
    let bind_score = |b: &mut IoBinding| -> anyhow::Result<Tensor<f32>> {
        let mut t = score()?;
        b.bind_output(m.outputs.score.as_str(), &mut t)
            .map_err(|e| anyhow!("binding output \"{}\": {e}", m.outputs.score))?;
        Ok(t)
    };
    let map_shape = [1_i64, 1, m.input.height() as i64, m.input.width() as i64];
    let mut binding = session.create_binding().map_err(|e| anyhow!("I/O binding: {e}"))?;
    let score_t = bind_score(&mut binding)?;
    let mut with_map = Bound {
        binding,
        score: score_t,
        map: None,
    };
    let mut without_map = None;
    if let Some(name) = &m.outputs.anomaly_map {
        let mut map =
            Tensor::<f32>::new(&host, map_shape).map_err(|e| anyhow!("cannot allocate the map tensor: {e}"))?;
        with_map
            .binding
            .bind_output(name.as_str(), &mut map)
            .map_err(|e| anyhow!("binding output \"{name}\": {e}"))?;
        with_map.map = Some(map);
        if serving.provider != ProviderKind::Cpu {
            let mut b = session.create_binding().map_err(|e| anyhow!("I/O binding: {e}"))?;
            let score = bind_score(&mut b)?;
            let device = MemoryInfo::new(
                AllocationDevice::CUDA,
                serving.device_id,
                AllocatorType::Device,
                MemoryType::Default,
            )
            .map_err(|e| anyhow!("device memory: {e}"))?;
            b.bind_output_to_device(name.as_str(), &device)
                .map_err(|e| anyhow!("binding output \"{name}\" to the device: {e}"))?;
            without_map = Some(Bound {
                binding: b,
                score,
                map: None,
            });
        }
    }
    Ok((input, with_map, without_map))
}

/// An ONNX Runtime status: Ok, or its message (the status released).
///
/// # Safety
/// `status` is what an ONNX Runtime C API call returned.
unsafe fn status(status: ort::sys::OrtStatusPtr) -> Result<(), String> {
    if status.0.is_null() {
        return Ok(());
    }
    let api = ort::api();
    // SAFETY: a non-null status holds a NUL-terminated message until it is released.
    let message = unsafe { CStr::from_ptr((api.GetErrorMessage)(status.0)) }
        .to_string_lossy()
        .into_owned();
    unsafe { (api.ReleaseStatus)(status.0) };
    Err(message)
}

impl Detector {
    /// Loads the library (once per process), checks the model file against its manifest,
    /// registers the execution providers and builds the session. A provider that
    /// registers but then fails to build the session (a TensorRT engine build error, say)
    /// is given up like one that did not register.
    pub fn open(manifest: Manifest, runtime: &RuntimeConfig, library_path: Option<&Path>) -> anyhow::Result<Detector> {
        let onnx = manifest.verify_onnx()?;
        let lib = library::load(library_path)?;
        let what = format!("cannot build a session for {}", manifest.onnx_path().display());
        let mut from = 0;
        let mut given_up = Vec::new();
        loop {
            let mut builder = ort_err(Session::builder(&lib.env), &what)?;
            builder = ort_err(builder.with_optimization_level(GraphOptimizationLevel::All), &what)?;
            if runtime.intra_threads > 0 {
                builder = ort_err(builder.with_intra_threads(runtime.intra_threads), &what)?;
            }
            let mut serving = providers::register(&mut builder, runtime, &manifest.sha256, from)?;
            let started = Instant::now();
            let trt = serving.provider == ProviderKind::Tensorrt;
            let committed =
                progress::while_running(&format!("building the session on {}", serving.detail), trt, || {
                    builder.commit_from_memory(&onnx)
                });
            let at = runtime
                .providers
                .iter()
                .position(|k| *k == serving.provider)
                .unwrap_or(0);
            match committed {
                Ok(session) => {
                    given_up.append(&mut serving.skipped);
                    serving.skipped = given_up;
                    if let Some(dir) = &serving.engine_cache {
                        let secs = started.elapsed().as_secs_f64();
                        if secs > 10.0 {
                            log::info!(
                                "TensorRT engine built in {secs:.0} s and cached in {}; the next start will be fast",
                                dir.display()
                            );
                        }
                    }
                    return Detector::bind(session, manifest, serving);
                }
                Err(e) if serving.provider != ProviderKind::Cpu => {
                    let reason = format!("the session could not be built: {e}");
                    if at == 0 && runtime.require_accelerator {
                        bail!(
                            "runtime.providers[0] = \"{}\" cannot be used: {reason} (runtime.require_accelerator = true)",
                            serving.provider.as_str()
                        );
                    }
                    given_up.append(&mut serving.skipped);
                    given_up.push((serving.provider, reason));
                    from = at + 1;
                }
                Err(e) => bail!("{what}: {e}"),
            }
        }
    }

    /// Allocates the I/O tensors and binds them. The input lives in pinned host memory
    /// when a GPU serves and `pinned` (a faster upload); the outputs in ordinary host
    /// memory (ONNX Runtime 1.31's CUDA provider refuses outputs bound to pinned memory),
    /// and with a GPU the map has a second binding that keeps it on the device.
    fn bind(session: Session, manifest: Manifest, serving: Serving) -> anyhow::Result<Detector> {
        let gpu = serving.provider != ProviderKind::Cpu;
        let (input, with_map, without_map) = bindings(&session, &manifest, &serving, gpu)?;
        let input_name = CString::new(manifest.input.name.as_str())
            .map_err(|_| anyhow!("input.name {:?} holds a NUL character", manifest.input.name))?;
        let mut d = Detector {
            session,
            input,
            input_name,
            with_map,
            without_map,
            manifest,
            serving,
        };
        d.check_signature()
            .with_context(|| format!("model {} does not match its manifest", d.manifest.onnx_path().display()))?;
        if gpu {
            if let Err(e) = d.probe() {
                log::warn!(
                    "this ONNX Runtime refused the GPU I/O binding ({e:#}); using ordinary host memory, map copied back every run"
                );
                let (input, with_map, _) = bindings(&d.session, &d.manifest, &d.serving, false)?;
                (d.input, d.with_map, d.without_map) = (input, with_map, None);
                d.probe().context("inference with host-memory I/O binding failed")?;
            }
        }
        Ok(d)
    }

    /// One run with and one without the map, on a blank input.
    fn probe(&mut self) -> anyhow::Result<()> {
        self.input_mut().fill(0.0);
        self.run(false)?;
        self.run(true).map(|_| ())
    }

    /// The input tensor (NCHW, as the manifest says) for preprocessing to fill in place.
    pub fn input_mut(&mut self) -> &mut [f32] {
        let n: usize = self.manifest.input.shape.iter().product();
        // `extract_tensor_mut` refuses CUDA-pinned memory although it is host memory; the
        // tensor was allocated at open with exactly the manifest's shape, as f32.
        // SAFETY: the pointer is to n f32s owned by `self.input`, borrowed mutably with self.
        unsafe { std::slice::from_raw_parts_mut(self.input.data_ptr_mut().cast::<f32>(), n) }
    }

    /// Runs `runs` inferences on a blank input before the line is armed: a TensorRT engine
    /// build, cuDNN's algorithm search and lazy allocations happen here, not on a part.
    /// Stops early, after the run in progress, once `stop` is set (a SIGTERM at start-up).
    /// Returns the runs done and the slowest, ms.
    pub fn warm_up(&mut self, runs: u32, stop: &AtomicBool) -> anyhow::Result<(u32, f64)> {
        self.input_mut().fill(0.0);
        let what = format!("warming up on {}", self.serving.detail);
        let trt = self.serving.provider == ProviderKind::Tensorrt;
        let mut worst = 0.0f64;
        for done in 0..runs.max(1) {
            if stop.load(Ordering::Relaxed) {
                return Ok((done, worst));
            }
            let t = Instant::now();
            progress::while_running(&what, trt, || self.run(false)).context("warm-up inference failed")?;
            worst = worst.max(t.elapsed().as_secs_f64() * 1e3);
        }
        Ok((runs.max(1), worst))
    }

    /// The graph's input and outputs must be the ones the manifest names.
    fn check_signature(&self) -> anyhow::Result<()> {
        let m = &self.manifest;
        let input = self
            .session
            .inputs()
            .iter()
            .find(|i| i.name() == m.input.name)
            .ok_or_else(|| anyhow!("the graph has no input named \"{}\" (input.name)", m.input.name))?;
        if let Some(shape) = input.dtype().tensor_shape() {
            let want: Vec<i64> = m.input.shape.iter().map(|d| *d as i64).collect();
            let found: Vec<i64> = shape.iter().copied().collect();
            let fits = found.len() == 4 && found.iter().zip(&want).all(|(f, w)| *f < 0 || f == w);
            if !fits {
                bail!(
                    "input \"{}\" has shape {found:?}, manifest input.shape says {want:?}",
                    m.input.name
                );
            }
        }
        let outputs: Vec<&str> = self.session.outputs().iter().map(|o| o.name()).collect();
        for (key, name) in [
            ("outputs.score", Some(&m.outputs.score)),
            ("outputs.anomaly_map", m.outputs.anomaly_map.as_ref()),
        ] {
            if let Some(name) = name {
                if !outputs.contains(&name.as_str()) {
                    bail!("the graph has no output named \"{name}\" ({key}); it has {outputs:?}");
                }
            }
        }
        Ok(())
    }

    /// Runs the model on the bound input. The anomaly map is copied out only when wanted.
    ///
    /// The frame path: nothing is allocated here (tests/frame_path_allocations.rs). ort's
    /// `bind_input` and `run_binding` allocate a name and output handles on every call, so
    /// the two C API calls are made directly, and the outputs are read from the host
    /// tensors bound at open.
    pub fn run(&mut self, want_map: bool) -> anyhow::Result<Inspection> {
        let m = &self.manifest;
        let bound = match (&mut self.without_map, want_map) {
            (Some(b), false) => b,
            _ => &mut self.with_map,
        };
        let api = ort::api();
        // Bound again every run: where a GPU serves, binding is when the host input is
        // copied to the device; on the CPU it is a reference.
        // SAFETY: the binding, the input value and the name live as long as `self`.
        unsafe {
            status((api.BindInput)(
                bound.binding.ptr_mut(),
                self.input_name.as_ptr(),
                self.input.ptr(),
            ))
        }
        .map_err(|e| anyhow!("input tensor rejected: {e}"))?;
        // SAFETY: the session and its binding are valid; `&mut self` keeps this call the
        // only one on the session.
        unsafe {
            status((api.RunWithBinding)(
                self.session.ptr_mut(),
                std::ptr::null(),
                bound.binding.ptr(),
            ))
        }
        .map_err(|e| anyhow!("inference failed: {e}"))?;
        // SAFETY: the score tensor holds one f32, written by the run that just returned.
        let score = unsafe { *bound.score.data_ptr().cast::<f32>() };
        if !score.is_finite() {
            bail!("the model returned a non-finite score ({score})");
        }
        let anomaly_map = match (&bound.map, want_map) {
            (Some(map), true) => {
                let n = m.input.height() * m.input.width();
                // SAFETY: the map tensor is [1, 1, H, W] f32, written by the run.
                Some(unsafe { std::slice::from_raw_parts(map.data_ptr().cast::<f32>(), n) }.to_vec())
            }
            _ => None,
        };
        Ok(Inspection { score, anomaly_map })
    }
}
