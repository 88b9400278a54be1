//! Topic names and the JSON of every message: pure functions of what the line reports.
//! The schema names carry a version; a field is only ever added, never renamed or
//! repurposed, without a new version (docs/mqtt.md).

use crate::frame::{Reason, Verdict};
use crate::record::PartRecord;
use crate::sinks::{LineInfo, LineState};
use crate::stats::Percentiles;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;

pub const RESULT_SCHEMA: &str = "linesight.result.v1";
pub const STATE_SCHEMA: &str = "linesight.state.v1";
pub const STATUS_SCHEMA: &str = "linesight.status.v1";

/// The three topics of one device: `<topic_prefix>/linesight/<device_id>/…`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    /// `<topic_prefix>/linesight/<device_id>`
    pub base: String,
    pub status: String,
    pub state: String,
    pub result: String,
}

impl Topics {
    /// An empty prefix gives `linesight/<device_id>/…`.
    pub fn new(prefix: &str, device_id: &str) -> Topics {
        let base = if prefix.is_empty() {
            format!("linesight/{device_id}")
        } else {
            format!("{prefix}/linesight/{device_id}")
        };
        Topics {
            status: format!("{base}/status"),
            state: format!("{base}/state"),
            result: format!("{base}/result"),
            base,
        }
    }
}

/// The host name as one topic level: MQTT's separators and wildcards made `_`.
pub fn device_id_from_host(host: &str) -> String {
    let id: String = host
        .trim()
        .chars()
        .map(|c| if matches!(c, '/' | '+' | '#' | '\0') { '_' } else { c })
        .collect();
    if id.is_empty() {
        "linesight".to_string()
    } else {
        id
    }
}

#[derive(Serialize)]
struct ModelRef<'a> {
    name: &'a str,
    sha256: &'a str,
}

#[derive(Serialize)]
struct Latency {
    queue: Option<f64>,
    preprocess: Option<f64>,
    inference: Option<f64>,
    total: f64,
}

#[derive(Serialize)]
struct ResultMessage<'a> {
    schema: &'static str,
    run_id: &'a str,
    device_id: &'a str,
    seq: u64,
    /// The device's part number, as in results.jsonl: never repeated across restarts.
    device_seq: u64,
    id: u64,
    /// CLOCK_MONOTONIC ns, as in results.jsonl.
    capture_ns: u64,
    /// Wall clock: the verdict's time less the capture → verdict latency.
    capture_unix_ms: u64,
    /// Wall clock of the verdict.
    unix_ms: u64,
    verdict: Verdict,
    reason: Reason,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<&'a str>,
    score: Option<f32>,
    threshold: f32,
    latency_ms: Latency,
    #[serde(skip_serializing_if = "Option::is_none")]
    eject_ns: Option<[u64; 2]>,
    model: ModelRef<'a>,
    image: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    truth: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    defect_kind: Option<&'a str>,
}

/// One part's `result` message.
pub fn result(info: &LineInfo, device_id: &str, seq: u64, r: &PartRecord, image: Option<&Path>) -> Vec<u8> {
    let l = &r.latency;
    let m = ResultMessage {
        schema: RESULT_SCHEMA,
        run_id: &info.run_id,
        device_id,
        seq,
        device_seq: r.device_seq,
        id: r.id,
        capture_ns: r.capture_ns,
        capture_unix_ms: r.unix_ms.saturating_sub(l.total_ms.max(0.0).round() as u64),
        unix_ms: r.unix_ms,
        verdict: r.verdict,
        reason: r.reason,
        detail: r.detail.as_deref(),
        score: r.score.filter(|s| s.is_finite()),
        threshold: r.threshold,
        latency_ms: Latency {
            queue: l.queue_ms,
            preprocess: l.preprocess_ms,
            inference: l.inference_ms,
            total: l.total_ms,
        },
        eject_ns: r.eject_ns,
        model: ModelRef {
            name: &info.model,
            sha256: &info.model_sha256,
        },
        image: image.map(|p| p.display().to_string()),
        truth: r.truth,
        defect_kind: r.defect_kind.as_deref(),
    };
    serde_json::to_vec(&m).expect("a result serialises")
}

/// The last part decided, as `state` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LastPart {
    pub seq: u64,
    pub id: u64,
    pub verdict: Verdict,
    pub reason: Reason,
    pub score: Option<f32>,
    pub unix_ms: u64,
}

impl LastPart {
    pub fn of(seq: u64, r: &PartRecord) -> LastPart {
        LastPart {
            seq,
            id: r.id,
            verdict: r.verdict,
            reason: r.reason,
            score: r.score.filter(|s| s.is_finite()),
            unix_ms: r.unix_ms,
        }
    }
}

/// The sink's own counters, in `state` and in its closing line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SinkCounters {
    /// Connected to the broker now.
    pub connected: bool,
    /// Results waiting to be sent or awaiting the broker's acknowledgement.
    pub buffered: u64,
    /// Results the broker acknowledged.
    pub sent: u64,
    /// Results given up unacknowledged because the buffer was full (the oldest first).
    pub dropped: u64,
    /// Results sent again after a connection was lost before their acknowledgement.
    pub resent: u64,
    /// Events (parts or states) the sink's feed lost because the sink thread was behind.
    pub feed_dropped: u64,
    /// Connections made to the broker; a count above 1 means it went away and came back.
    pub connects: u64,
}

#[derive(Serialize)]
struct StateMessage<'a> {
    schema: &'static str,
    run_id: &'a str,
    device_id: &'a str,
    unix_ms: u64,
    run_state: crate::sinks::RunState,
    parts: u64,
    passes: u64,
    rejects: u64,
    rejects_by_reason: &'a BTreeMap<String, u64>,
    /// Since the start of the run.
    parts_per_second: f64,
    /// Since the previous state message.
    parts_per_second_now: Option<f64>,
    latency_ms: BTreeMap<&'a str, Percentiles>,
    camera: Option<&'a crate::source::CameraState>,
    model: ModelRef<'a>,
    provider: &'a str,
    config_sha256: &'a str,
    threshold: f32,
    reject_output: &'a str,
    last_part: Option<&'a LastPart>,
    mqtt: SinkCounters,
}

/// The `state` message. `rate_now` is the part rate since the previous state message.
pub fn state(
    info: &LineInfo,
    device_id: &str,
    s: &LineState,
    rate_now: Option<f64>,
    last_part: Option<&LastPart>,
    counters: SinkCounters,
) -> Vec<u8> {
    let sum = &s.summary;
    let m = StateMessage {
        schema: STATE_SCHEMA,
        run_id: &info.run_id,
        device_id,
        unix_ms: s.unix_ms,
        run_state: s.run_state,
        parts: sum.parts,
        passes: sum.parts - sum.rejects.min(sum.parts),
        rejects: sum.rejects,
        rejects_by_reason: &sum.rejects_by_reason,
        parts_per_second: sum.parts_per_second,
        parts_per_second_now: rate_now,
        latency_ms: sum.latency_ms.iter().map(|(k, p)| (k.as_str(), *p)).collect(),
        camera: s.camera.as_ref(),
        model: ModelRef {
            name: &info.model,
            sha256: &info.model_sha256,
        },
        provider: &info.provider,
        config_sha256: &info.config_sha256,
        threshold: info.threshold,
        reject_output: &info.reject_output,
        last_part,
        mqtt: counters,
    };
    serde_json::to_vec(&m).expect("a state serialises")
}

/// Parts per second between two states `(parts, unix_ms)`; none over no time.
pub fn rate(before: (u64, u64), now: (u64, u64)) -> Option<f64> {
    let dt_ms = now.1.checked_sub(before.1).filter(|&d| d > 0)?;
    Some(now.0.saturating_sub(before.0) as f64 * 1000.0 / dt_ms as f64)
}

/// Why a device is offline, in its `status` message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Offline {
    /// linesight stopped and said so itself.
    Stopped,
    /// The last will: the broker lost the connection (crash, kill, power, network).
    ConnectionLost,
}

#[derive(Serialize)]
struct StatusMessage<'a> {
    schema: &'static str,
    online: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<Offline>,
    device_id: &'a str,
    run_id: &'a str,
    client_id: &'a str,
    version: &'static str,
    model: &'a str,
    provider: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    unix_ms: Option<u64>,
}

/// The `status` message: online, or offline and why. The last will (`ConnectionLost`) is
/// stored by the broker at connection time, so it carries no time.
pub fn status(
    info: &LineInfo,
    device_id: &str,
    client_id: &str,
    offline: Option<Offline>,
    unix_ms: Option<u64>,
) -> Vec<u8> {
    let m = StatusMessage {
        schema: STATUS_SCHEMA,
        online: offline.is_none(),
        reason: offline,
        device_id,
        run_id: &info.run_id,
        client_id,
        version: env!("CARGO_PKG_VERSION"),
        model: &info.model,
        provider: &info.provider,
        unix_ms,
    };
    serde_json::to_vec(&m).expect("a status serialises")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{StageLatency, Summary};
    use crate::sinks::RunState;
    use serde_json::{json, Value};

    pub(crate) fn info() -> LineInfo {
        LineInfo {
            run_id: "19a2b3c4d5e-4d2".into(),
            model: "sim-flange".into(),
            model_sha256: "ab12".into(),
            provider: "cpu".into(),
            config_sha256: "cd34".into(),
            config_text: String::new(),
            threshold: 6.758,
            reject_output: "simulated".into(),
        }
    }

    pub(crate) fn part(id: u64, reason: Reason) -> PartRecord {
        PartRecord {
            run_id: "r".into(),
            device_seq: id,
            id,
            capture_ns: 5_000_000_000 + id,
            frame_ns: None,
            unix_ms: 1_790_000_000_500,
            origin: None,
            score: (reason == Reason::AboveThreshold || reason == Reason::BelowThreshold).then_some(7.25),
            threshold: 6.758,
            verdict: reason.verdict(),
            reason,
            detail: None,
            eject_ns: None,
            latency: StageLatency {
                queue_ms: Some(0.1),
                preprocess_ms: Some(0.5),
                inference_ms: Some(36.0),
                total_ms: 36.6,
            },
            truth: Some("defect"),
            defect_kind: Some("scratch".into()),
        }
    }

    fn parse(v: &[u8]) -> Value {
        serde_json::from_slice(v).unwrap()
    }

    #[test]
    fn topics_sit_under_the_namespace_prefix() {
        let t = Topics::new("acme/plant1/area2/line3/cell4", "cam-07");
        assert_eq!(t.status, "acme/plant1/area2/line3/cell4/linesight/cam-07/status");
        assert_eq!(t.state, "acme/plant1/area2/line3/cell4/linesight/cam-07/state");
        assert_eq!(t.result, "acme/plant1/area2/line3/cell4/linesight/cam-07/result");
        assert_eq!(Topics::new("", "cam-07").status, "linesight/cam-07/status");
        assert_eq!(device_id_from_host("jetson/a+b#\n"), "jetson_a_b_");
        assert_eq!(device_id_from_host(""), "linesight");
    }

    #[test]
    fn a_result_carries_schema_run_sequence_and_verdict() {
        let r = part(42, Reason::AboveThreshold);
        let v = parse(&result(
            &info(),
            "cam-07",
            17,
            &r,
            Some(Path::new("/var/img/42_above_threshold.png")),
        ));
        assert_eq!(
            v,
            json!({
                "schema": "linesight.result.v1",
                "run_id": "19a2b3c4d5e-4d2",
                "device_id": "cam-07",
                "seq": 17,
                "device_seq": 42,
                "id": 42,
                "capture_ns": 5_000_000_042u64,
                "capture_unix_ms": 1_790_000_000_463u64,
                "unix_ms": 1_790_000_000_500u64,
                "verdict": "reject",
                "reason": "above_threshold",
                "score": 7.25,
                "threshold": 6.758,
                "latency_ms": {"queue": 0.1, "preprocess": 0.5, "inference": 36.0, "total": 36.6},
                "model": {"name": "sim-flange", "sha256": "ab12"},
                "image": "/var/img/42_above_threshold.png",
                "truth": "defect",
                "defect_kind": "scratch"
            })
        );
        let mut late = part(43, Reason::DeadlineMissed);
        late.detail = Some("no verdict 150 ms after capture".into());
        let v = parse(&result(&info(), "cam-07", 18, &late, None));
        assert_eq!(v["score"], Value::Null);
        assert_eq!(v["image"], Value::Null);
        assert_eq!(v["detail"], "no verdict 150 ms after capture");
    }

    #[test]
    fn a_state_has_counters_latency_identity_and_the_sinks_own_counts() {
        let mut summary = Summary {
            parts: 100,
            rejects: 12,
            rejects_by_reason: BTreeMap::from([("above_threshold".to_string(), 11), ("overload".to_string(), 1)]),
            latency_ms: BTreeMap::from([(
                "total".to_string(),
                Percentiles {
                    p50: 36.7,
                    p99: 43.8,
                    max: 47.7,
                },
            )]),
            parts_per_second: 10.0,
            ..Default::default()
        };
        summary.provider = "cpu".into();
        let s = LineState {
            run_state: RunState::Running,
            unix_ms: 1_790_000_001_000,
            summary,
            camera: Some(crate::source::CameraState {
                up: false,
                since_unix_ms: 1_790_000_000_900,
                last_error: Some("no frame for 500 ms (status.camera_stall_ms)".into()),
                losses: 1,
            }),
            last_part: Some(99),
        };
        let last = LastPart::of(100, &part(99, Reason::BelowThreshold));
        let counters = SinkCounters {
            connected: true,
            buffered: 3,
            sent: 97,
            dropped: 0,
            resent: 2,
            feed_dropped: 0,
            connects: 2,
        };
        let v = parse(&state(&info(), "cam-07", &s, Some(9.5), Some(&last), counters));
        assert_eq!(v["schema"], "linesight.state.v1");
        assert_eq!(v["run_state"], "running");
        assert_eq!(
            (v["parts"].as_u64(), v["passes"].as_u64(), v["rejects"].as_u64()),
            (Some(100), Some(88), Some(12))
        );
        assert_eq!(v["rejects_by_reason"]["overload"], 1);
        assert_eq!(v["latency_ms"]["total"], json!({"p50": 36.7, "p99": 43.8, "max": 47.7}));
        assert_eq!(v["parts_per_second_now"], 9.5);
        assert_eq!(
            v["camera"],
            json!({"up": false, "since_unix_ms": 1_790_000_000_900u64,
                   "last_error": "no frame for 500 ms (status.camera_stall_ms)", "losses": 1})
        );
        assert_eq!(v["model"], json!({"name": "sim-flange", "sha256": "ab12"}));
        assert_eq!(v["config_sha256"], "cd34");
        assert_eq!(v["last_part"]["seq"], 100);
        assert_eq!(v["last_part"]["verdict"], "pass");
        assert_eq!(
            v["mqtt"],
            json!({"connected": true, "buffered": 3, "sent": 97, "dropped": 0, "resent": 2, "feed_dropped": 0, "connects": 2})
        );
    }

    #[test]
    fn status_online_offline_and_the_last_will() {
        let on = parse(&status(&info(), "cam-07", "linesight-cam-07", None, Some(7)));
        assert_eq!(on["online"], true);
        assert_eq!(on["schema"], "linesight.status.v1");
        assert!(on.get("reason").is_none());
        let will = parse(&status(
            &info(),
            "cam-07",
            "linesight-cam-07",
            Some(Offline::ConnectionLost),
            None,
        ));
        assert_eq!(will["online"], false);
        assert_eq!(will["reason"], "connection_lost");
        assert!(will.get("unix_ms").is_none());
        let off = parse(&status(
            &info(),
            "cam-07",
            "linesight-cam-07",
            Some(Offline::Stopped),
            Some(9),
        ));
        assert_eq!(
            (off["online"].as_bool(), off["reason"].as_str()),
            (Some(false), Some("stopped"))
        );
    }

    #[test]
    fn the_rate_is_parts_over_the_time_between_states() {
        assert_eq!(rate((100, 1_000), (150, 6_000)), Some(10.0));
        assert_eq!(rate((100, 1_000), (100, 1_000)), None);
        assert_eq!(rate((100, 2_000), (100, 1_000)), None);
    }
}
