//! The model: manifest, ONNX Runtime library, execution providers and the inference session.

mod detector;
pub mod library;
mod manifest;
mod progress;
pub mod providers;

pub use detector::{Detector, Inspection};
pub use manifest::{hex, Calibration, InputSpec, Manifest, Resize, MANIFEST_FILE};
pub use providers::Serving;
