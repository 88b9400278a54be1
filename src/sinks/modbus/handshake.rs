//! The server's state and the result handshake, pure: the line's events and the PLC's
//! requests go in, register values and exceptions come out. No time, no sockets.
//!
//! Buffering off: the result fields show the newest part, `inspection_completed` toggles
//! with each. Buffering on, a four-step handshake per result:
//!
//! ```text
//! server: results_valid 1, result shown ──▶ PLC reads it, sets acknowledge 1
//!   ──▶ server: result taken, results_valid 0 ──▶ PLC sets acknowledge 0
//!   ──▶ server: the next waiting result shown, results_valid 1, inspection_completed toggled
//! ```
//!
//! A part that finds `buffer_results` waiting is not buffered: it is counted in
//! `overruns` and `buffer_overrun` is set, so that a loss is always seen; so is a part
//! the feed dropped before it reached the server (a gap in the line's sequence numbers).

use super::map::{Registers, Value, ERROR_CODES, HOLDING, INPUT};
use crate::frame::Reason;
use crate::record::PartRecord;
use crate::sinks::{LineState, RunState};
use std::collections::VecDeque;
use tokio_modbus::ExceptionCode;

/// Values of `result_code`.
pub const RESULT_CODES: &[(u16, &str, &str)] = &[
    (0, "none", "No result yet"),
    (1, "pass", "Inspected, the score at or below the threshold"),
    (2, "reject", "Inspected, the score above the threshold"),
    (
        3,
        "error",
        "Rejected fail-safe: the part could not be judged on its score (`reason_code` says why)",
    ),
];

/// Values of `reason_code`: the results log's `reason`.
pub const REASON_CODES: &[(u16, Option<Reason>, &str)] = &[
    (0, None, "No result yet"),
    (
        1,
        Some(Reason::BelowThreshold),
        "Inspected: the score at or below the threshold (pass)",
    ),
    (
        2,
        Some(Reason::AboveThreshold),
        "Inspected: the score above the threshold",
    ),
    (
        3,
        Some(Reason::DeadlineMissed),
        "Fail-safe: no verdict by `decision.deadline_ms`",
    ),
    (
        4,
        Some(Reason::InferenceError),
        "Fail-safe: the model could not be run on the part",
    ),
    (
        5,
        Some(Reason::BrokenFrame),
        "Fail-safe: the frame could not be read or was malformed",
    ),
    (6, Some(Reason::Overload), "Fail-safe: the inspection queue was full"),
    (
        7,
        Some(Reason::MissingFrame),
        "Fail-safe: the trigger's window closed without a frame",
    ),
    (
        8,
        Some(Reason::CameraLost),
        "Fail-safe: the camera was lost when the part passed",
    ),
    (
        9,
        Some(Reason::Interrupted),
        "Fail-safe: the last run was killed before this part was recorded or ejected",
    ),
];

/// Control bits.
pub const BUFFERING: u16 = 1 << 0;
pub const ACKNOWLEDGE: u16 = 1 << 1;
pub const RESET_COUNTERS: u16 = 1 << 2;
const CONTROL_MASK: u16 = BUFFERING | ACKNOWLEDGE | RESET_COUNTERS;

fn reason_code(reason: Reason) -> u16 {
    // Exhaustive: a new reason must get its code here (and in REASON_CODES).
    match reason {
        Reason::BelowThreshold => 1,
        Reason::AboveThreshold => 2,
        Reason::DeadlineMissed => 3,
        Reason::InferenceError => 4,
        Reason::BrokenFrame => 5,
        Reason::Overload => 6,
        Reason::MissingFrame => 7,
        Reason::CameraLost => 8,
        Reason::Interrupted => 9,
    }
}

/// One result as the registers show it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Shown {
    pub id: u32,
    pub result_code: u16,
    pub reason_code: u16,
    pub score: Option<f32>,
    pub threshold: f32,
    pub processing_ms: f32,
}

impl Shown {
    pub fn of(r: &PartRecord) -> Shown {
        Shown {
            id: r.id as u32,
            result_code: crate::sinks::result_code(r),
            reason_code: reason_code(r.reason),
            score: r.score,
            threshold: r.threshold,
            processing_ms: r.latency.total_ms as f32,
        }
    }
}

/// The counters a PLC may reset.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub parts: u32,
    pub passed: u32,
    pub rejected: u32,
    pub errors: u32,
    pub overruns: u32,
}

/// What became of the results over the run (not reset by the PLC), for the summary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// Acknowledged by the PLC through the handshake.
    pub acknowledged: u64,
    /// Not buffered (the buffer full) or dropped before the server.
    pub overruns: u64,
    /// Parts the feed dropped before they reached the server (included in `overruns`).
    pub lost_in_feed: u64,
}

/// The server's whole state.
#[derive(Debug)]
pub struct Core {
    capacity: usize,
    config_checksum: u32,
    control: u16,
    online: bool,
    camera_ok: bool,
    /// The newest part was a fail-safe reject.
    newest_fail_safe: bool,
    heartbeat: u32,
    newest: Option<Shown>,
    /// Buffering on: the results waiting for the acknowledge, the one shown first.
    waiting: VecDeque<Shown>,
    /// What the result fields show, and whether `results_valid` is set.
    shown: Option<Shown>,
    valid: bool,
    toggle: bool,
    overrun: bool,
    counters: Counters,
    totals: Totals,
    last_seq: u64,
}

impl Core {
    /// `config_sha256` in hex: its first 8 digits are the checksum register.
    pub fn new(capacity: usize, config_sha256: &str) -> Core {
        Core {
            capacity: capacity.max(1),
            config_checksum: config_sha256
                .get(..8)
                .and_then(|h| u32::from_str_radix(h, 16).ok())
                .unwrap_or(0),
            control: 0,
            online: false,
            camera_ok: false,
            newest_fail_safe: false,
            heartbeat: 0,
            newest: None,
            waiting: VecDeque::new(),
            shown: None,
            valid: false,
            toggle: false,
            overrun: false,
            counters: Counters::default(),
            totals: Totals::default(),
            last_seq: 0,
        }
    }

    fn buffering(&self) -> bool {
        self.control & BUFFERING != 0
    }

    /// Results waiting for the acknowledge (buffering on).
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    pub fn totals(&self) -> Totals {
        self.totals
    }

    fn show(&mut self, s: Shown) {
        self.shown = Some(s);
        self.valid = true;
        self.toggle = !self.toggle;
    }

    fn count_overrun(&mut self, n: u64) {
        self.overrun = true;
        self.counters.overruns = self.counters.overruns.wrapping_add(n as u32);
        self.totals.overruns += n;
    }

    /// The line's `seq`-th part (from 1).
    pub fn part(&mut self, seq: u64, record: &PartRecord) {
        let missed = seq.saturating_sub(self.last_seq + 1);
        if missed > 0 {
            self.totals.lost_in_feed += missed;
            self.count_overrun(missed);
        }
        self.last_seq = self.last_seq.max(seq);
        let s = Shown::of(record);
        let c = &mut self.counters;
        c.parts = c.parts.wrapping_add(1);
        match s.result_code {
            1 => c.passed = c.passed.wrapping_add(1),
            2 => c.rejected = c.rejected.wrapping_add(1),
            _ => c.errors = c.errors.wrapping_add(1),
        }
        self.newest_fail_safe = s.result_code == 3;
        self.newest = Some(s);
        if !self.buffering() {
            self.show(s);
        } else if self.waiting.len() < self.capacity {
            self.waiting.push_back(s);
            self.advance();
        } else {
            self.count_overrun(1);
        }
    }

    /// The line's state: online, camera, heartbeat.
    pub fn state(&mut self, s: &LineState) {
        self.online = s.run_state == RunState::Running;
        self.camera_ok = s.camera.as_ref().is_some_and(|c| c.up);
        self.heartbeat = self.heartbeat.wrapping_add(1);
    }

    /// Buffering on, nothing shown, the acknowledge back at 0: the oldest waiting result.
    fn advance(&mut self) {
        if self.buffering() && !self.valid && self.control & ACKNOWLEDGE == 0 {
            if let Some(s) = self.waiting.front().copied() {
                self.show(s);
            }
        }
    }

    /// The PLC writes the control register.
    pub fn write_control(&mut self, word: u16) -> Result<(), ExceptionCode> {
        if word & !CONTROL_MASK != 0 {
            return Err(ExceptionCode::IllegalDataValue);
        }
        let rose = word & !self.control;
        let fell = self.control & !word;
        self.control = word;
        if rose & BUFFERING != 0 {
            self.waiting.clear();
            self.valid = false;
        }
        if fell & BUFFERING != 0 {
            self.waiting.clear();
            self.valid = false;
            if let Some(s) = self.newest {
                self.show(s);
            }
        }
        if rose & ACKNOWLEDGE != 0 && self.buffering() && self.valid {
            self.waiting.pop_front();
            self.valid = false;
            self.totals.acknowledged += 1;
        }
        if rose & RESET_COUNTERS != 0 {
            self.counters = Counters::default();
            self.overrun = false;
        }
        self.advance();
        Ok(())
    }

    fn error_code(&self) -> u16 {
        let code = if self.online && !self.camera_ok {
            "camera_lost"
        } else if self.newest_fail_safe {
            "fail_safe_reject"
        } else {
            "none"
        };
        ERROR_CODES
            .iter()
            .find(|(_, n, _)| *n == code)
            .map_or(0, |(v, _, _)| *v)
    }

    /// The input registers as they are now.
    pub fn input(&self) -> Registers {
        let mut r = Registers::new(INPUT);
        let shown = self.shown;
        let error = self.error_code();
        let bits = [
            self.online,
            self.online && self.camera_ok,
            self.valid,
            self.toggle,
            shown.is_some_and(|s| s.result_code == 1),
            shown.is_some_and(|s| s.result_code >= 2),
            error != 0,
            self.overrun,
            self.camera_ok,
            self.buffering(),
            self.control & ACKNOWLEDGE != 0,
        ];
        let status = bits.iter().enumerate().fold(0u16, |w, (i, b)| w | ((*b as u16) << i));
        r.put("status", Value::Bits(status));
        r.put("error_code", Value::U16(error));
        let s = shown.unwrap_or(Shown {
            id: 0,
            result_code: 0,
            reason_code: 0,
            score: None,
            threshold: f32::NAN,
            processing_ms: 0.0,
        });
        r.put("inspection_id", Value::U32(s.id));
        r.put("result_code", Value::U16(s.result_code));
        r.put("reason_code", Value::U16(s.reason_code));
        r.put("score", Value::F32(s.score.unwrap_or(f32::NAN)));
        let x1000 = s.score.map_or(i32::MIN, |v| {
            let x = (v as f64 * 1000.0).round();
            x.clamp(i32::MIN as f64 + 1.0, i32::MAX as f64) as i32
        });
        r.put("score_x1000", Value::I32(x1000));
        r.put("threshold", Value::F32(s.threshold));
        r.put("processing_time_ms", Value::F32(s.processing_ms));
        let c = self.counters;
        r.put("parts", Value::U32(c.parts));
        r.put("passed", Value::U32(c.passed));
        r.put("rejected", Value::U32(c.rejected));
        r.put("errors", Value::U32(c.errors));
        r.put("overruns", Value::U32(c.overruns));
        r.put("heartbeat", Value::U32(self.heartbeat));
        r.put("config_checksum", Value::U32(self.config_checksum));
        r.put("buffered", Value::U16(self.waiting.len() as u16));
        r.put("buffer_capacity", Value::U16(self.capacity as u16));
        r
    }

    /// The holding registers as they are now.
    pub fn holding(&self) -> Registers {
        let mut r = Registers::new(HOLDING);
        r.put("control", Value::Bits(self.control));
        r
    }

    /// Reads `n` input registers from `addr` (function code 4).
    pub fn read_input(&self, addr: u16, n: u16) -> Result<Vec<u16>, ExceptionCode> {
        window(&self.input().words, addr, n)
    }

    /// Reads `n` holding registers from `addr` (function code 3).
    pub fn read_holding(&self, addr: u16, n: u16) -> Result<Vec<u16>, ExceptionCode> {
        window(&self.holding().words, addr, n)
    }

    /// Writes `words` from `addr` (function codes 6 and 16): the control register only.
    pub fn write_holding(&mut self, addr: u16, words: &[u16]) -> Result<(), ExceptionCode> {
        match (addr, words) {
            (0, [word]) => self.write_control(*word),
            (_, []) => Err(ExceptionCode::IllegalDataValue),
            _ => Err(ExceptionCode::IllegalDataAddress),
        }
    }

    /// Mask write (function code 22): `(current AND and) OR (or AND NOT and)`.
    pub fn mask_write(&mut self, addr: u16, and: u16, or: u16) -> Result<(), ExceptionCode> {
        if addr != 0 {
            return Err(ExceptionCode::IllegalDataAddress);
        }
        self.write_control((self.control & and) | (or & !and))
    }
}

/// `n` words from `addr`; 1 to 125 of them, all inside the table.
fn window(words: &[u16], addr: u16, n: u16) -> Result<Vec<u16>, ExceptionCode> {
    if !(1..=125).contains(&n) {
        return Err(ExceptionCode::IllegalDataValue);
    }
    let (start, end) = (addr as usize, addr as usize + n as usize);
    words
        .get(start..end)
        .map(<[u16]>::to_vec)
        .ok_or(ExceptionCode::IllegalDataAddress)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::StageLatency;
    use crate::source::CameraState;
    use std::sync::Arc;

    fn part(id: u64, reason: Reason, score: Option<f32>) -> PartRecord {
        PartRecord {
            run_id: "test".into(),
            device_seq: id,
            id,
            capture_ns: 0,
            frame_ns: None,
            unix_ms: 0,
            origin: None,
            score,
            threshold: 0.5,
            verdict: reason.verdict(),
            reason,
            detail: None,
            eject_ns: None,
            latency: StageLatency {
                total_ms: 12.5,
                ..StageLatency::default()
            },
            truth: None,
            defect_kind: None,
        }
    }

    fn pass(id: u64) -> PartRecord {
        part(id, Reason::BelowThreshold, Some(0.25))
    }

    fn state(run_state: RunState, camera_up: bool) -> LineState {
        LineState {
            run_state,
            unix_ms: 0,
            summary: Default::default(),
            camera: Some(CameraState {
                up: camera_up,
                since_unix_ms: 0,
                last_error: None,
                losses: 0,
            }),
            last_part: None,
        }
    }

    fn reg(c: &Core, name: &str) -> u32 {
        let f = INPUT.iter().find(|f| f.name == name).unwrap();
        let w = c.read_input(f.addr, f.kind.words()).unwrap();
        w.iter().fold(0, |v, x| (v << 16) | *x as u32)
    }

    fn bit(c: &Core, name: &str) -> bool {
        let (n, _, _) = super::super::map::STATUS_BITS
            .iter()
            .find(|(_, b, _)| *b == name)
            .unwrap();
        reg(c, "status") & (1 << n) != 0
    }

    /// The PLC's side of the handshake: the result shown, if valid, then acknowledge.
    fn take(c: &mut Core) -> Option<u32> {
        if !bit(c, "results_valid") {
            return None;
        }
        let id = reg(c, "inspection_id");
        c.write_control(BUFFERING | ACKNOWLEDGE).unwrap();
        assert!(!bit(c, "results_valid"), "the acknowledge takes the result");
        c.write_control(BUFFERING).unwrap();
        Some(id)
    }

    #[test]
    fn before_any_part_nothing_is_valid_and_the_codes_say_none() {
        let c = Core::new(8, "0badcafe99");
        assert_eq!(reg(&c, "status"), 0);
        assert_eq!(reg(&c, "result_code"), 0);
        assert_eq!(reg(&c, "score_x1000"), i32::MIN as u32);
        assert_eq!(reg(&c, "config_checksum"), 0x0bad_cafe);
        assert_eq!(reg(&c, "buffer_capacity"), 8);
    }

    #[test]
    fn without_buffering_the_newest_result_is_shown_and_the_bit_toggles() {
        let mut c = Core::new(8, "");
        c.state(&state(RunState::Running, true));
        assert!(bit(&c, "online") && bit(&c, "ready") && bit(&c, "camera_ok"));
        c.part(1, &pass(10));
        assert!(bit(&c, "results_valid") && bit(&c, "inspection_completed") && bit(&c, "last_pass"));
        assert_eq!(reg(&c, "inspection_id"), 10);
        assert_eq!(reg(&c, "score_x1000"), 250);
        assert_eq!(f32::from_bits(reg(&c, "score")), 0.25);
        assert_eq!(f32::from_bits(reg(&c, "threshold")), 0.5);
        assert_eq!(f32::from_bits(reg(&c, "processing_time_ms")), 12.5);
        c.part(2, &part(11, Reason::AboveThreshold, Some(0.75)));
        assert!(!bit(&c, "inspection_completed") && bit(&c, "last_reject") && !bit(&c, "last_pass"));
        assert_eq!(
            (reg(&c, "inspection_id"), reg(&c, "result_code"), reg(&c, "reason_code")),
            (11, 2, 2)
        );
        // The acknowledge means nothing without buffering.
        c.write_control(ACKNOWLEDGE).unwrap();
        assert!(bit(&c, "results_valid"));
        assert_eq!((reg(&c, "parts"), reg(&c, "passed"), reg(&c, "rejected")), (2, 1, 1));
    }

    #[test]
    fn a_fail_safe_reject_is_an_error_result_with_its_reason() {
        let mut c = Core::new(8, "");
        c.state(&state(RunState::Running, true));
        c.part(1, &part(3, Reason::DeadlineMissed, None));
        assert_eq!(
            (reg(&c, "result_code"), reg(&c, "reason_code"), reg(&c, "error_code")),
            (3, 3, 2)
        );
        assert!(bit(&c, "error") && bit(&c, "last_reject"));
        assert!(f32::from_bits(reg(&c, "score")).is_nan());
        assert_eq!(reg(&c, "score_x1000"), i32::MIN as u32);
        assert_eq!(reg(&c, "errors"), 1);
        c.part(2, &pass(4));
        assert_eq!(reg(&c, "error_code"), 0);
        c.state(&state(RunState::Running, false));
        assert_eq!(reg(&c, "error_code"), 1);
        assert!(!bit(&c, "ready") && !bit(&c, "camera_ok") && bit(&c, "online"));
        c.state(&state(RunState::Stopping, true));
        assert!(!bit(&c, "online") && !bit(&c, "ready"));
    }

    #[test]
    fn every_reason_has_the_code_of_the_table() {
        for (code, reason, _) in REASON_CODES {
            if let Some(r) = reason {
                assert_eq!(reason_code(*r), *code, "{}", r.as_str());
            }
        }
        assert_eq!(REASON_CODES.len(), 10, "every reason is in the table (and code 0)");
    }

    #[test]
    fn with_buffering_every_result_is_taken_in_order_through_the_handshake() {
        let mut c = Core::new(3, "");
        c.write_control(BUFFERING).unwrap();
        assert!(!bit(&c, "results_valid"));
        let mut taken = Vec::new();
        // Parts come in bursts of three, the PLC takes them between bursts.
        for id in 1..=12u64 {
            c.part(id, &pass(100 + id));
            assert!(c.waiting() <= 3);
            if id % 3 == 0 {
                while let Some(id) = take(&mut c) {
                    taken.push(id);
                }
                assert_eq!(c.waiting(), 0);
            }
        }
        assert_eq!(taken, (101..=112).collect::<Vec<u32>>());
        assert_eq!(c.totals().acknowledged, 12);
        assert_eq!(reg(&c, "overruns"), 0);
        assert!(!bit(&c, "buffer_overrun"));
    }

    #[test]
    fn the_next_result_waits_until_the_acknowledge_is_back_at_zero() {
        let mut c = Core::new(8, "");
        c.write_control(BUFFERING).unwrap();
        c.part(1, &pass(1));
        c.part(2, &pass(2));
        let toggle = bit(&c, "inspection_completed");
        c.write_control(BUFFERING | ACKNOWLEDGE).unwrap();
        assert!(!bit(&c, "results_valid") && bit(&c, "acknowledge"));
        // Held at 1: a second part arriving shows nothing yet, and the bit held is no new acknowledge.
        c.part(3, &pass(3));
        c.write_control(BUFFERING | ACKNOWLEDGE).unwrap();
        assert!(!bit(&c, "results_valid"));
        assert_eq!(reg(&c, "buffered"), 2);
        c.write_control(BUFFERING).unwrap();
        assert!(bit(&c, "results_valid"));
        assert_eq!(reg(&c, "inspection_id"), 2);
        assert_ne!(bit(&c, "inspection_completed"), toggle);
    }

    #[test]
    fn an_overrun_is_flagged_and_counted_and_the_waiting_results_are_kept() {
        let mut c = Core::new(2, "");
        c.write_control(BUFFERING).unwrap();
        for id in 1..=5 {
            c.part(id, &pass(id));
        }
        assert!(bit(&c, "buffer_overrun"));
        assert_eq!((reg(&c, "overruns"), reg(&c, "buffered")), (3, 2));
        // The first two, which waited, are the ones the PLC gets.
        assert_eq!([take(&mut c), take(&mut c), take(&mut c)], [Some(1), Some(2), None]);
        // The flag holds until the counters are reset.
        c.part(6, &pass(6));
        assert!(bit(&c, "buffer_overrun"));
        c.write_control(BUFFERING | RESET_COUNTERS).unwrap();
        assert!(!bit(&c, "buffer_overrun"));
        assert_eq!((reg(&c, "overruns"), reg(&c, "parts")), (0, 0));
        assert_eq!(c.totals().overruns, 3, "the run's own figure is not reset");
        assert_eq!(take(&mut c), Some(6));
    }

    #[test]
    fn a_part_the_feed_dropped_is_an_overrun_too() {
        let mut c = Core::new(8, "");
        c.part(1, &pass(1));
        c.part(4, &pass(4));
        assert!(bit(&c, "buffer_overrun"));
        assert_eq!(reg(&c, "overruns"), 2);
        assert_eq!(c.totals().lost_in_feed, 2);
    }

    #[test]
    fn turning_buffering_off_shows_the_newest_again_and_on_starts_empty() {
        let mut c = Core::new(8, "");
        c.part(1, &pass(1));
        c.write_control(BUFFERING).unwrap();
        assert!(!bit(&c, "results_valid"), "buffering starts with what comes next");
        c.part(2, &pass(2));
        c.part(3, &pass(3));
        assert_eq!(reg(&c, "inspection_id"), 2);
        c.write_control(0).unwrap();
        assert_eq!((reg(&c, "inspection_id"), reg(&c, "buffered")), (3, 0));
        assert!(bit(&c, "results_valid"));
    }

    #[test]
    fn writes_outside_the_control_bits_are_refused() {
        let mut c = Core::new(8, "");
        assert_eq!(c.write_holding(1, &[1]), Err(ExceptionCode::IllegalDataAddress));
        assert_eq!(c.write_holding(0, &[1, 0]), Err(ExceptionCode::IllegalDataAddress));
        assert_eq!(c.write_holding(0, &[0x0008]), Err(ExceptionCode::IllegalDataValue));
        assert_eq!(c.mask_write(3, 0, 1), Err(ExceptionCode::IllegalDataAddress));
        assert_eq!(c.read_holding(0, 1), Ok(vec![0]), "nothing refused was taken");
        c.write_holding(0, &[BUFFERING]).unwrap();
        c.mask_write(0, !ACKNOWLEDGE, ACKNOWLEDGE).unwrap();
        assert_eq!(c.read_holding(0, 1), Ok(vec![BUFFERING | ACKNOWLEDGE]));
        assert_eq!(c.read_input(29, 2), Err(ExceptionCode::IllegalDataAddress));
        assert_eq!(c.read_input(0, 0), Err(ExceptionCode::IllegalDataValue));
        assert_eq!(c.read_input(0, 30).unwrap().len(), 30);
    }

    #[test]
    fn the_heartbeat_counts_states() {
        let mut c = Core::new(8, "");
        let s = Arc::new(state(RunState::Running, true));
        (0..3).for_each(|_| c.state(&s));
        assert_eq!(reg(&c, "heartbeat"), 3);
    }
}
