//! `[model]`: which model inspects the parts.

use super::Problems;
use serde::Deserialize;
use std::path::PathBuf;

/// `[model]`
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// Folder holding `model.onnx` and its manifest `model.toml`.
    pub dir: PathBuf,
}

impl ModelConfig {
    pub(super) fn validate(&self, p: &mut Problems) {
        if self.dir.as_os_str().is_empty() {
            p.bad("model.dir", "must name the folder holding model.onnx and model.toml");
        }
    }
}
