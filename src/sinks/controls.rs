//! What the plant side may change in the running line, and the one way the change gets
//! there: the judge thread reads [`Controls`] before each round of decisions, so that a
//! new threshold takes effect between parts, never in the middle of one.

use std::sync::atomic::{AtomicU32, Ordering};

/// Shared by the sinks (writers) and the judge thread (reader); lock-free.
#[derive(Debug)]
pub struct Controls {
    /// The threshold set from outside, as f32 bits; NaN: none set, the line keeps its own.
    threshold: AtomicU32,
}

impl Default for Controls {
    fn default() -> Self {
        Controls {
            threshold: AtomicU32::new(f32::NAN.to_bits()),
        }
    }
}

impl Controls {
    /// The threshold set from outside, if any.
    pub fn threshold(&self) -> Option<f32> {
        Some(f32::from_bits(self.threshold.load(Ordering::Acquire))).filter(|t| t.is_finite())
    }

    /// Sets the threshold the judge uses from its next round of decisions on. The caller
    /// checks the value against the sane range; a value that is not finite is ignored.
    pub fn set_threshold(&self, threshold: f32) {
        if threshold.is_finite() {
            self.threshold.store(threshold.to_bits(), Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_set_means_the_line_keeps_its_threshold() {
        let c = Controls::default();
        assert_eq!(c.threshold(), None);
        c.set_threshold(f32::NAN);
        assert_eq!(c.threshold(), None);
        c.set_threshold(7.25);
        assert_eq!(c.threshold(), Some(7.25));
    }
}
