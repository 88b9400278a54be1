//! `[runtime]`: ONNX Runtime settings: the library, threads, execution providers and their options.

use super::{range, Problems};
use serde::Deserialize;
use std::path::PathBuf;

/// `[runtime]`
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RuntimeConfig {
    /// Path of the ONNX Runtime shared library (`libonnxruntime.so.1.x`). Unset: `ORT_DYLIB_PATH`,
    /// then the library fetched at build time, then one beside the executable.
    pub onnxruntime_library: Option<PathBuf>,
    /// Threads ONNX Runtime may use inside one inference, 0 to 256; 0 (default) lets it
    /// choose (all cores). Leave a core free for the camera and the reject timing on small boards.
    pub intra_threads: usize,
    /// Execution providers to try, in order: `"tensorrt"`, `"cuda"`, `"cpu"` (default `["cpu"]`).
    /// The first one that registers serves the model; the others are fallbacks.
    pub providers: Vec<ProviderKind>,
    /// `true`: if the first provider cannot be registered, linesight does not start and says
    /// why (a missing `libnvinfer.so.10`, say). `false` (default): it falls back to the next one with a WARN.
    pub require_accelerator: bool,
    /// Inferences run before the pipeline reports ready and the reject output is armed
    /// (a TensorRT engine build, cuDNN algorithm search and lazy allocations happen here).
    /// Default 3, 0 to 1000 (0 runs one all the same).
    pub warmup_runs: u32,
    /// `[runtime.tensorrt]`: options of the TensorRT provider.
    pub tensorrt: TensorRtConfig,
    /// `[runtime.cuda]`: options of the CUDA provider.
    pub cuda: CudaConfig,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            onnxruntime_library: None,
            intra_threads: 0,
            providers: vec![ProviderKind::Cpu],
            require_accelerator: false,
            warmup_runs: 3,
            tensorrt: TensorRtConfig::default(),
            cuda: CudaConfig::default(),
        }
    }
}

/// An ONNX Runtime execution provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    Tensorrt,
    Cuda,
    Cpu,
}

impl ProviderKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Tensorrt => "tensorrt",
            ProviderKind::Cuda => "cuda",
            ProviderKind::Cpu => "cpu",
        }
    }
    pub fn parse(s: &str) -> Option<ProviderKind> {
        match s {
            "tensorrt" => Some(ProviderKind::Tensorrt),
            "cuda" => Some(ProviderKind::Cuda),
            "cpu" => Some(ProviderKind::Cpu),
            _ => None,
        }
    }
}

/// `[runtime.tensorrt]`
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TensorRtConfig {
    /// GPU index (default 0, 0 to 63).
    pub device_id: i32,
    /// Build FP16 engines (faster on Jetson; check the drift with `linesight eval --compare-providers`).
    pub fp16: bool,
    /// Where built engines are kept, in a sub-folder per model sha256, TensorRT version, GPU and
    /// precision, so a new model or a new JetPack never loads a stale engine. Unset:
    /// `$CACHE_DIRECTORY/trt` (systemd's CacheDirectory=), else `~/.cache/linesight/trt`.
    pub engine_cache_dir: Option<PathBuf>,
    /// Keep TensorRT's timing cache beside the engines (speeds up rebuilds after a model change;
    /// default true).
    pub timing_cache: bool,
    /// Builder workspace limit in MiB, 0 to 262144 (256 GiB); 0 (default) leaves TensorRT's default.
    pub workspace_mb: u64,
    /// Builder optimisation level 0 to 5 (default 3, TensorRT's own; higher builds longer).
    pub builder_optimization_level: u8,
}

impl Default for TensorRtConfig {
    fn default() -> Self {
        TensorRtConfig {
            device_id: 0,
            fp16: false,
            engine_cache_dir: None,
            timing_cache: true,
            workspace_mb: 0,
            builder_optimization_level: 3,
        }
    }
}

/// `[runtime.cuda]`
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CudaConfig {
    /// GPU index (default 0, 0 to 63).
    pub device_id: i32,
    /// cuDNN convolution algorithm search: `"exhaustive"` (default: best kernels, slower first
    /// run), `"heuristic"` or `"default"`.
    pub cudnn_conv_algo_search: ConvSearch,
    /// Capture the graph once and replay it (shapes here are static). Needs the model's inputs
    /// and outputs at fixed device addresses, which linesight's I/O binding provides.
    pub cuda_graph: bool,
}

/// `runtime.cuda.cudnn_conv_algo_search`
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConvSearch {
    #[default]
    Exhaustive,
    Heuristic,
    Default,
}

impl RuntimeConfig {
    pub(super) fn validate(&self, p: &mut Problems) {
        let providers = &self.providers;
        if providers.is_empty() {
            p.bad(
                "runtime.providers",
                "lists no provider; expected some of \"tensorrt\", \"cuda\", \"cpu\" in order",
            );
        }
        for (i, k) in providers.iter().enumerate() {
            if providers[..i].contains(k) {
                p.bad(
                    format!("runtime.providers[{i}]"),
                    format!("\"{}\" is listed twice", k.as_str()),
                );
            }
        }
        if let Some(i) = providers.iter().position(|k| *k == ProviderKind::Cpu) {
            if i + 1 < providers.len() {
                p.bad(
                    format!("runtime.providers[{}]", i + 1),
                    "comes after \"cpu\", which always registers, so it would never be tried",
                );
            }
        }
        if self.require_accelerator && providers.first() == Some(&ProviderKind::Cpu) {
            p.bad(
                "runtime.require_accelerator",
                "is true but the first provider is \"cpu\"; list \"tensorrt\" or \"cuda\" first",
            );
        }
        let level = self.tensorrt.builder_optimization_level;
        if level > 5 {
            p.bad(
                "runtime.tensorrt.builder_optimization_level",
                format!("expected 0 to 5, found {level}"),
            );
        }
        for (key, id) in [
            ("runtime.tensorrt.device_id", self.tensorrt.device_id),
            ("runtime.cuda.device_id", self.cuda.device_id),
        ] {
            if !(0..=63).contains(&id) {
                p.bad(key, format!("expected a GPU index from 0 to 63, found {id}"));
            }
        }
        range(p, "runtime.intra_threads", self.intra_threads as u64, 0, 256, "threads");
        range(p, "runtime.warmup_runs", self.warmup_runs.into(), 0, 1000, "runs");
        range(
            p,
            "runtime.tensorrt.workspace_mb",
            self.tensorrt.workspace_mb,
            0,
            262_144,
            "MiB",
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threads_runs_and_devices_have_their_bounds() {
        let mut c = RuntimeConfig {
            intra_threads: 100_000,
            warmup_runs: 4_000_000_000,
            ..Default::default()
        };
        c.tensorrt.device_id = -1;
        c.tensorrt.workspace_mb = 1 << 40;
        c.cuda.device_id = 64;
        assert_eq!(
            Problems::of(|p| c.validate(p)),
            [
                "runtime.tensorrt.device_id: expected a GPU index from 0 to 63, found -1",
                "runtime.cuda.device_id: expected a GPU index from 0 to 63, found 64",
                "runtime.intra_threads: expected 0 to 256 threads, found 100000",
                "runtime.warmup_runs: expected 0 to 1000 runs, found 4000000000",
                "runtime.tensorrt.workspace_mb: expected 0 to 262144 MiB, found 1099511627776",
            ]
        );
        assert!(Problems::of(|p| RuntimeConfig::default().validate(p)).is_empty());
    }
}
