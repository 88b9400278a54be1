//! The model: manifest, ONNX Runtime library, execution providers and the inference session.

mod detector;
pub mod library;
mod manifest;
mod progress;
pub mod providers;

pub use detector::{Detector, Inspection};
pub use manifest::{hex, write_calibration, Calibration, InputSpec, Manifest, Resize};
pub use providers::Serving;
