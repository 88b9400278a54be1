//! When the line's state is told: on a steady cadence whether parts come or not, so that
//! an idle line still says that it is alive and what its camera is doing, and at once
//! when its headline changes. One rule for the record thread (which hands states to the
//! sinks, every second) and the MQTT sink (which publishes them every
//! `mqtt.state_interval_s`). Pure: the time comes in as an argument.

use super::{LineState, RunState};
use crate::source::CameraState;
use std::time::Duration;

/// What a state headlines: a change of it is told at once, not at the next interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Headline {
    run_state: RunState,
    /// The camera up or down; none before it opened.
    camera_up: Option<bool>,
}

impl Headline {
    pub fn new(run_state: RunState, camera: Option<&CameraState>) -> Headline {
        Headline {
            run_state,
            camera_up: camera.map(|c| c.up),
        }
    }

    pub fn of(s: &LineState) -> Headline {
        Headline::new(s.run_state, s.camera.as_ref())
    }
}

/// The cadence of one stream of states: never more than `interval` apart while they are
/// told, closer only when the headline changes.
#[derive(Debug, Clone)]
pub struct Cadence {
    interval_ns: u64,
    /// When the last state was told (monotonic ns), and its headline.
    last: Option<(u64, Headline)>,
}

impl Cadence {
    pub fn new(interval: Duration) -> Cadence {
        Cadence {
            interval_ns: interval.as_nanos() as u64,
            last: None,
        }
    }

    /// Whether `headline` differs from the last one told (true before the first).
    pub fn changed(&self, headline: Headline) -> bool {
        self.last.is_none_or(|(_, h)| h != headline)
    }

    /// Whether a state with `headline` is due at `now_ns`: the first, one whose headline
    /// changed, or one an interval after the last.
    pub fn due(&self, now_ns: u64, headline: Headline) -> bool {
        self.changed(headline) || self.next_due_ns().is_some_and(|t| now_ns >= t)
    }

    /// A state with `headline` was told at `now_ns`: the next interval runs from here.
    pub fn told(&mut self, now_ns: u64, headline: Headline) {
        self.last = Some((now_ns, headline));
    }

    /// When the next state is due if the headline stays as it is; none before the first.
    pub fn next_due_ns(&self) -> Option<u64> {
        self.last.map(|(t, _)| t.saturating_add(self.interval_ns))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    fn camera(up: bool) -> CameraState {
        CameraState {
            up,
            since_unix_ms: 0,
            last_error: None,
            losses: 0,
        }
    }

    fn running(up: bool) -> Headline {
        Headline::new(RunState::Running, Some(&camera(up)))
    }

    /// The times in `0..end_ns`, stepped by `step_ns`, at which a state is told.
    fn told_at(c: &mut Cadence, end_ns: u64, step_ns: u64, headline: impl Fn(u64) -> Headline) -> Vec<u64> {
        let mut told = Vec::new();
        for now in (0..end_ns).step_by(step_ns as usize) {
            if c.due(now, headline(now)) {
                c.told(now, headline(now));
                told.push(now);
            }
        }
        told
    }

    #[test]
    fn an_idle_line_is_told_every_interval() {
        let mut c = Cadence::new(Duration::from_secs(5));
        assert_eq!(c.next_due_ns(), None);
        // Woken every 250 ms with nothing new (no part, the camera up): every 5 s exactly.
        let told = told_at(&mut c, 21 * S, S / 4, |_| running(true));
        assert_eq!(told, [0, 5 * S, 10 * S, 15 * S, 20 * S]);
        assert_eq!(c.next_due_ns(), Some(25 * S));
        assert!(!c.due(25 * S - 1, running(true)) && c.due(25 * S, running(true)));
    }

    #[test]
    fn a_change_of_the_headline_is_told_at_once_and_the_interval_runs_from_it() {
        let mut c = Cadence::new(Duration::from_secs(5));
        // The camera goes down at 7.25 s and is back at 8 s.
        let camera_up = |now: u64| !(29 * S / 4..8 * S).contains(&now);
        let told = told_at(&mut c, 19 * S, S / 4, |now| running(camera_up(now)));
        assert_eq!(told, [0, 5 * S, 29 * S / 4, 8 * S, 13 * S, 18 * S]);
    }

    #[test]
    fn the_run_state_and_the_camera_opening_are_changes() {
        let mut c = Cadence::new(Duration::from_secs(5));
        let before_open = Headline::new(RunState::Running, None);
        assert!(
            c.changed(before_open) && c.due(0, before_open),
            "the first is due at once"
        );
        c.told(0, before_open);
        assert!(!c.due(S, before_open));
        assert!(c.due(S, running(true)), "the camera opened");
        c.told(S, running(true));
        let stopping = Headline::new(RunState::Stopping, Some(&camera(true)));
        assert!(c.changed(stopping) && c.due(S + 1, stopping));
    }
}
