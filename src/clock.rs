//! One clock for the whole frame path: CLOCK_MONOTONIC in nanoseconds.
//!
//! V4L2 buffer timestamps and GPIO edge events are stamped by the kernel on this
//! clock, so capture times from any source and reject edges compare directly.

use std::time::Duration;

/// Nanoseconds on CLOCK_MONOTONIC.
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into the timespec we own; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Wall-clock now, Unix ms: for what people and other machines read (results, the
/// plant's side), never for timing the line (that is `now_ns`).
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

pub const fn ms_to_ns(ms: u64) -> u64 {
    ms.saturating_mul(1_000_000)
}

pub fn ns_to_ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

/// Sleeps until `deadline_ns`, at most `max`. Sleeps coarsely, then spins the last
/// stretch, so that edges land within tens of microseconds even on a loaded machine.
pub fn sleep_until(deadline_ns: u64, max: Duration) {
    const SPIN_NS: u64 = 1_500_000;
    let start = now_ns();
    let end = deadline_ns.min(start + max.as_nanos() as u64);
    loop {
        let now = now_ns();
        if now >= end {
            return;
        }
        let left = end - now;
        if left > SPIN_NS {
            std::thread::sleep(Duration::from_nanos(left - SPIN_NS));
        } else {
            std::thread::yield_now();
        }
    }
}
