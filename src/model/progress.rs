//! Feedback while something slow runs once (a TensorRT engine build takes minutes on a
//! Jetson): after a few seconds, the elapsed time every few seconds on stderr.

use std::sync::mpsc;
use std::time::{Duration, Instant};

const QUIET: Duration = Duration::from_secs(3);
const EVERY: Duration = Duration::from_secs(5);

/// Runs `f`; if it takes longer than a few seconds, says `what` and the time elapsed
/// (and, when `engine_build`, that TensorRT's engine is cached for the next start).
pub fn while_running<T>(what: &str, engine_build: bool, f: impl FnOnce() -> T) -> T {
    let (done, wait) = mpsc::channel::<()>();
    let started = Instant::now();
    std::thread::scope(|s| {
        s.spawn(move || {
            let mut next = QUIET;
            while let Err(mpsc::RecvTimeoutError::Timeout) = wait.recv_timeout(next.saturating_sub(started.elapsed())) {
                let why = if engine_build {
                    " (a first TensorRT engine build can take minutes; it is cached, so the next start is fast)"
                } else {
                    ""
                };
                log::info!("{what}: {:.0} s so far{why}", started.elapsed().as_secs_f64());
                next += EVERY;
            }
        });
        let out = f();
        drop(done);
        out
    })
}
