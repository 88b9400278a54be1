//! The configuration file: pure data (serde) plus validation that lists every problem.
//!
//! Phase one of two: nothing here opens a device or a library, and nothing here imports
//! the run path (only the leaf `frame`). `runtime` builds the live objects from a
//! validated `Config`.
//!
//! One file per `[section]`, each with its fields, its defaults and its validation. The
//! doc comment on each field is the user's documentation of that key. A section whose
//! keys all have defaults writes them once, in its `impl Default` (`#[serde(default)]` on
//! the struct); one with required keys names a default function per optional key, since
//! serde's container default would fill the required keys too. Rules between sections
//! live here, in `Config::cross_section_problems`. Relative paths are resolved against
//! the folder that holds the config file.

mod camera;
mod decision;
mod faults;
mod http;
mod modbus;
mod model;
mod mqtt;
mod opcua;
mod output;
mod parse_error;
mod record;
mod reject;
mod runtime;
mod status;
mod trigger;

pub use camera::{CameraConfig, EndOfStream, GstreamerCamera, SyntheticCamera, V4l2Camera, V4l2PixelFormat};
pub use decision::DecisionConfig;
pub use faults::FaultsConfig;
pub use http::HttpConfig;
pub use modbus::{ModbusConfig, MAX_BUFFER_RESULTS};
pub use model::ModelConfig;
pub use mqtt::{Broker, MqttConfig, PublishResults};
pub use opcua::{parse_users, OpcuaConfig, Security as OpcuaSecurity, User as OpcuaUser};
pub use output::{LineRef, OutputConfig};
pub use record::{RecordConfig, SaveImages};
pub use reject::RejectConfig;
pub use runtime::{ConvSearch, CudaConfig, ProviderKind, RuntimeConfig, TensorRtConfig};
pub use status::StatusConfig;
pub use trigger::{GpioTrigger, LineBias, TriggerConfig, TriggerEdge};

use serde::Deserialize;
use std::fmt;
use std::path::{Path, PathBuf};

/// The whole `linesight.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where frames come from.
    pub camera: CameraConfig,
    /// Which model inspects the parts.
    pub model: ModelConfig,
    /// ONNX Runtime settings.
    #[serde(default)]
    pub runtime: RuntimeConfig,
    /// How a score becomes a verdict, and by when.
    #[serde(default)]
    pub decision: DecisionConfig,
    /// The reject output that fires the ejector.
    pub reject: RejectConfig,
    /// Where verdicts are recorded.
    #[serde(default)]
    pub record: RecordConfig,
    /// Deliberate faults, for commissioning drills and tests of the fail-safe path.
    /// Leave out in production.
    #[serde(default)]
    pub faults: FaultsConfig,
    /// What makes a part: every frame (`free_run`), or a part-present sensor on a GPIO input.
    #[serde(default)]
    pub trigger: TriggerConfig,
    /// linesight's own health: the fault output, and how a lost camera is detected and reopened.
    #[serde(default)]
    pub status: StatusConfig,
    /// Results, state and health to the plant's MQTT broker (docs/mqtt.md). Unset: off.
    #[serde(default)]
    pub mqtt: Option<MqttConfig>,
    /// The web status page, its JSON API and Prometheus `/metrics` (docs/web.md). Off unless
    /// the section is there.
    pub http: Option<HttpConfig>,
    /// A Modbus TCP server from which a PLC reads every part's result, with a result
    /// handshake (docs/modbus.md). Off unless the section is there.
    pub modbus: Option<ModbusConfig>,
    /// An OPC UA server with the line's identification, state, last result, counters and
    /// health (docs/opcua.md). Off unless the section is there.
    pub opcua: Option<OpcuaConfig>,
    /// The folder of the config file; relative paths are resolved against it.
    #[serde(skip)]
    pub base_dir: PathBuf,
    /// The file's text as read: its checksum says which settings a line runs with.
    #[serde(skip)]
    pub text: String,
}

impl Config {
    /// Reads, parses and validates a config file: a regular file of at most
    /// `files::CONFIG_MAX_BYTES` (a device or a FIFO is refused, not read).
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = crate::files::read_text_capped(path, crate::files::CONFIG_MAX_BYTES).map_err(|source| {
            ConfigError::Read {
                path: path.to_path_buf(),
                source,
            }
        })?;
        let base = path.parent().unwrap_or(Path::new("")).to_path_buf();
        Config::parse(&text, path, base)
    }

    /// Parses and validates config text; `path` only names it in messages.
    pub fn parse(text: &str, path: &Path, base_dir: PathBuf) -> Result<Config, ConfigError> {
        let mut config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: parse_message(&e, text),
        })?;
        config.base_dir = base_dir;
        config.text = text.to_string();
        let problems = config.problems();
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::Invalid {
                path: path.to_path_buf(),
                problems,
            })
        }
    }

    /// A path from the config, resolved against the config file's folder.
    pub fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base_dir.join(p)
        }
    }

    /// Every problem at once, each with its key path, in the order of the file's sections.
    /// No I/O.
    pub fn problems(&self) -> Vec<Problem> {
        let mut p = Problems::default();
        self.camera.validate(&mut p);
        self.model.validate(&mut p);
        self.runtime.validate(&mut p);
        self.decision.validate(&mut p);
        // Right after [decision], so that the decision.* problems are listed together.
        self.cross_section_problems(&mut p);
        self.reject.validate(&mut p);
        self.record.validate(&mut p);
        self.faults.validate(&mut p);
        self.trigger.validate(&mut p);
        self.status.validate(&mut p);
        if let Some(m) = &self.mqtt {
            m.validate(&mut p);
        }
        if let Some(http) = &self.http {
            http.validate(&mut p);
        }
        if let Some(modbus) = &self.modbus {
            modbus.validate(&mut p);
        }
        if let Some(opcua) = &self.opcua {
            opcua.validate(&mut p);
        }
        p.0
    }

    /// The rules between sections: a part's times must nest, trigger window inside the
    /// decision deadline inside the reject delay. A value its own section already rejected
    /// (a zero deadline, an empty window) is not compared again.
    fn cross_section_problems(&self, p: &mut Problems) {
        let deadline = self.decision.deadline_ms;
        let delay = self.reject.delay_ms;
        if deadline > 0 && deadline >= delay {
            p.bad(
                "decision.deadline_ms",
                format!(
                    "must be shorter than reject.delay_ms ({delay} ms), or a late verdict could not reach the ejector in time; found {deadline} ms"
                ),
            );
        }
        if let TriggerConfig::Gpio(t) = &self.trigger {
            if t.window_start_ms < t.window_end_ms && t.window_end_ms >= deadline {
                p.bad(
                    "trigger.window_end_ms",
                    format!(
                        "must be shorter than decision.deadline_ms ({deadline} ms): a part waits this long for its frame before inspection; found {} ms",
                        t.window_end_ms
                    ),
                );
            }
        }
    }
}

/// The one collector every section validates into, in the order the problems are found.
#[derive(Debug, Default)]
struct Problems(Vec<Problem>);

impl Problems {
    /// Every problem `check` finds, as text (for unit tests of one section).
    #[cfg(test)]
    pub(crate) fn of(check: impl FnOnce(&mut Problems)) -> Vec<String> {
        let mut p = Problems::default();
        check(&mut p);
        p.0.into_iter().map(|p| p.to_string()).collect()
    }

    /// `key` is the whole key path, as the user reads it: `reject.output.chip`, `runtime.providers[2]`.
    fn bad(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.0.push(Problem {
            key: key.into(),
            message: message.into(),
        });
    }
}

/// A listening address as `[http]` and `[modbus]` take it: IP:port, no host names (a
/// line-side device must not wait on DNS to start).
pub fn parse_listen(s: &str) -> Option<std::net::SocketAddr> {
    s.trim().parse().ok()
}

/// `key` must be a listening address (`port` is the section's usual one, for the example).
fn listen(p: &mut Problems, key: &str, value: &str, port: u16) {
    if parse_listen(value).is_none() {
        p.bad(
            key,
            format!("expected IP:port such as 127.0.0.1:{port} or [::1]:{port} (no host names), found {value:?}"),
        );
    }
}

/// `key` must hold `lo..=hi` (`unit` as the message writes it: "ms", "frames").
fn range(p: &mut Problems, key: &str, v: u64, lo: u64, hi: u64, unit: &str) {
    if !(lo..=hi).contains(&v) {
        p.bad(key, format!("expected {lo} to {hi} {unit}, found {v}"));
    }
}

/// One problem in a config, with the key it is about.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub key: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// Why a config could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read {
        path: PathBuf,
        source: crate::files::ReadError,
    },
    #[error("config {path} is not valid TOML for linesight: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config {path} has {} problem(s):\n{}", problems.len(), list(problems))]
    Invalid { path: PathBuf, problems: Vec<Problem> },
}

fn list(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| format!("  - {p}"))
        .collect::<Vec<_>>()
        .join("\n")
}

pub(crate) use parse_error::parse_message;

#[cfg(test)]
mod tests;
