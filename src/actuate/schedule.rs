//! The pulse scheduler: a thread that raises the reject output at each rejected
//! part's ejector window and lowers it after, merging windows that overlap.

use super::OutputLine;
use crate::clock;
use crossbeam_channel::{Receiver, RecvTimeoutError};
use std::collections::VecDeque;
use std::time::Duration;

/// When a rejected part is at the ejector: [start_ns, end_ns) on the monotonic clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start_ns: u64,
    pub end_ns: u64,
}

/// Pending windows, sorted and disjoint: overlapping or touching windows are merged,
/// so the output never drops between two parts that both need the ejector.
#[derive(Debug, Default)]
pub struct PulsePlan {
    windows: VecDeque<Window>,
}

impl PulsePlan {
    pub fn add(&mut self, w: Window) {
        let at = self.windows.partition_point(|x| x.start_ns <= w.start_ns);
        self.windows.insert(at, w);
        // Merge around the insertion point until the queue is disjoint again.
        let mut i = at.saturating_sub(1);
        while i + 1 < self.windows.len() {
            if self.windows[i + 1].start_ns <= self.windows[i].end_ns {
                let next = self.windows.remove(i + 1).expect("index checked");
                self.windows[i].end_ns = self.windows[i].end_ns.max(next.end_ns);
            } else if i + 1 > at {
                break;
            } else {
                i += 1;
            }
        }
    }

    pub fn front(&self) -> Option<Window> {
        self.windows.front().copied()
    }

    fn pop(&mut self) {
        self.windows.pop_front();
    }
}

/// What the scheduler did, for the summary.
#[derive(Debug, Default, Clone)]
pub struct PulseStats {
    /// Pulses driven (after merging).
    pub pulses: u64,
    /// Windows asked for (one per rejected part).
    pub windows: u64,
    /// Edges that came more than 1 ms after their due time.
    pub late_edges: u64,
    /// The latest edge, in ms after its due time.
    pub worst_lateness_ms: f64,
    /// Output errors (the line could not be set).
    pub errors: u64,
}

/// Runs until `windows` is closed and every window received has been driven, then
/// leaves the output de-energised (`OutputLine::release`). `lowered(end_ns)` hears of each
/// pulse that was driven whole (both edges set), with its window's end: every window
/// ending by then is done.
pub fn run_scheduler(
    mut line: Box<dyn OutputLine>,
    windows: Receiver<Window>,
    mut lowered: impl FnMut(u64),
) -> PulseStats {
    const EARLY_WAKE: Duration = Duration::from_micros(2000);
    raise_priority();
    let mut plan = PulsePlan::default();
    let mut stats = PulseStats::default();
    let mut asserted = false;
    // An edge of the pulse under way could not be set.
    let mut pulse_failed = false;
    let mut open = true;
    loop {
        let due = plan.front().map(|w| if asserted { w.end_ns } else { w.start_ns });
        // Wait for new windows until shortly before the next edge.
        if open {
            let got = match due {
                None => windows.recv().map_err(|_| RecvTimeoutError::Disconnected),
                Some(t) => {
                    let wait = Duration::from_nanos(t.saturating_sub(clock::now_ns())).saturating_sub(EARLY_WAKE);
                    windows.recv_timeout(wait)
                }
            };
            match got {
                Ok(w) => {
                    stats.windows += 1;
                    plan.add(w);
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => open = false,
                Err(RecvTimeoutError::Timeout) => {}
            }
        }
        let Some(t) = due else {
            if open {
                continue;
            }
            break;
        };
        clock::sleep_until(t, Duration::from_secs(120));
        let level = !asserted;
        if let Err(e) = line.set(level) {
            stats.errors += 1;
            pulse_failed = true;
            log::error!("reject output {}: {e:#}", line.describe());
        }
        let late_ms = clock::ns_to_ms(clock::now_ns().saturating_sub(t));
        if late_ms > 1.0 {
            stats.late_edges += 1;
        }
        stats.worst_lateness_ms = stats.worst_lateness_ms.max(late_ms);
        asserted = level;
        if asserted {
            stats.pulses += 1;
        } else {
            if let (Some(w), false) = (plan.front(), pulse_failed) {
                lowered(w.end_ns);
            }
            pulse_failed = false;
            plan.pop();
        }
    }
    if let Err(e) = line.release() {
        log::error!("could not leave reject output {} de-energised: {e:#}", line.describe());
    }
    stats
}

/// Edges must land within a millisecond or two while inference keeps every core
/// busy: ask for real-time scheduling (root or CAP_SYS_NICE, e.g. systemd's
/// `AmbientCapabilities=CAP_SYS_NICE`). Without it the scheduler still runs, with a warning.
fn raise_priority() {
    let param = libc::sched_param { sched_priority: 50 };
    // SAFETY: plain FFI call on the current thread with a valid sched_param.
    let rc = unsafe { libc::pthread_setschedparam(libc::pthread_self(), libc::SCHED_FIFO, &param) };
    if rc != 0 {
        log::warn!(
            "reject timing runs at normal priority (SCHED_FIFO refused: {}); \
             grant CAP_SYS_NICE for tighter pulse edges under load",
            std::io::Error::from_raw_os_error(rc)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(s: u64, e: u64) -> Window {
        Window { start_ns: s, end_ns: e }
    }

    fn all(p: &PulsePlan) -> Vec<(u64, u64)> {
        p.windows.iter().map(|w| (w.start_ns, w.end_ns)).collect()
    }

    #[test]
    fn overlapping_windows_merge_and_disjoint_ones_stay_apart() {
        let mut p = PulsePlan::default();
        p.add(w(100, 150));
        p.add(w(140, 190)); // overlaps
        p.add(w(300, 350)); // apart
        p.add(w(190, 200)); // touches the merged one
        assert_eq!(all(&p), vec![(100, 200), (300, 350)]);
        p.add(w(50, 320)); // swallows both
        assert_eq!(all(&p), vec![(50, 350)]);
    }

    #[test]
    fn out_of_order_windows_are_sorted() {
        let mut p = PulsePlan::default();
        p.add(w(500, 510));
        p.add(w(100, 110));
        p.add(w(300, 310));
        assert_eq!(all(&p), vec![(100, 110), (300, 310), (500, 510)]);
    }
}
