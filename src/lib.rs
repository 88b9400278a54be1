//! linesight: line-side visual inspection with a GAN anomaly model on ONNX Runtime.
//!
//! The data's way through, one module each:
//! camera → preprocess → model → verdict → actuate, with record beside; pipeline
//! wires them. config is the file a field engineer edits.

pub mod actuate;
pub mod bench;
pub mod camera;
pub mod check;
pub mod clock;
pub mod commission;
pub mod config;
pub mod eval;
pub mod gpio;
pub mod model;
pub mod pipeline;
pub mod preprocess;
pub mod record;
pub mod score;
pub mod service;
pub mod trigger;
pub mod verdict;
