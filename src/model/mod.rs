//! The model: manifest, ONNX Runtime library, and the inference session.

mod detector;
pub mod library;
mod manifest;

pub use detector::{Detector, Inspection};
pub use manifest::{hex, write_calibration, Calibration, Channels, InputSpec, Manifest, Resize};
