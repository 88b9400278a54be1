//! linesight: line-side visual inspection with a GAN anomaly model on ONNX Runtime.
//!
//! The data's way through, one module each, imports running one way along it:
//!
//! ```text
//! source ──frame──▶ preprocess ──tensor──▶ model ──score, map──▶ judge ──▶ actuate
//!                                                                  └──▶ record ──▶ sinks
//! ```
//!
//! `runtime` opens the live objects a validated `config` names; `pipeline` runs them as
//! threads. The leaves everything may use: `frame`, `files`, `stats`, `clock`, `gpio`, `dataset`,
//! `logging`.
//! `commands` holds one file per subcommand (the tools sit there, apart from the line).

// leaves
pub mod clock;
pub mod config;
pub mod dataset;
pub mod files;
pub mod frame;
pub mod gpio;
pub mod logging;
pub mod stats;

// the line, in the data's order
pub mod actuate;
pub mod judge;
pub mod model;
pub mod preprocess;
pub mod record;
pub mod sinks;
pub mod source;

// composition
pub mod pipeline;
pub mod runtime;
pub mod service;

pub mod commands;
