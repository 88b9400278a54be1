//! The address space: the one table that both the server's nodes and docs/opcua.md come
//! from, and the values the line's events give them. Pure: no server here.
//!
//! Every node is a variable under `LineSight/<device>/`, its string node id that path in the
//! namespace [`NAMESPACE`], read-only. Names follow OPC 40100 (Machine Vision) where it has
//! one; linesight does not claim conformance to it.

use crate::record::PartRecord;
use crate::sinks::{LineInfo, LineState, RunState};
use opcua::types::{DataValue, DateTime, Variant};

/// The namespace of linesight's nodes.
pub const NAMESPACE: &str = "urn:linesight";

/// A node's data type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Type {
    Boolean,
    Int32,
    UInt32,
    UInt64,
    Float,
    Double,
    String,
    DateTime,
}

impl Type {
    /// The value a node holds before the line gives it one.
    fn initial(self) -> Variant {
        match self {
            Type::Boolean => false.into(),
            Type::Int32 => 0i32.into(),
            Type::UInt32 => 0u32.into(),
            Type::UInt64 => 0u64.into(),
            Type::Float => f32::NAN.into(),
            Type::Double => 0f64.into(),
            Type::String => "".into(),
            Type::DateTime => DateTime::null().into(),
        }
    }
}

/// One variable.
#[derive(Debug, Clone, Copy)]
pub struct Node {
    /// Its path under `LineSight/<device>/`, folders separated by `/`.
    pub path: &'static str,
    pub kind: Type,
    pub meaning: &'static str,
}

const fn n(path: &'static str, kind: Type, meaning: &'static str) -> Node {
    Node { path, kind, meaning }
}

pub const IDENTIFICATION: &[Node] = &[
    n(
        "Identification/Manufacturer",
        Type::String,
        "Who made the software: `linesight developers`",
    ),
    n("Identification/Model", Type::String, "`linesight`"),
    n("Identification/SoftwareRevision", Type::String, "linesight's version"),
    n(
        "Identification/ModelName",
        Type::String,
        "The anomaly model's name (its manifest's `name`)",
    ),
    n(
        "Identification/ModelSha256",
        Type::String,
        "sha256 of the model's ONNX file",
    ),
    n(
        "Identification/ConfigSha256",
        Type::String,
        "sha256 of the config file's text (`config_sha256` in MQTT and /api/state)",
    ),
    n(
        "Identification/Provider",
        Type::String,
        "The execution provider serving the model (`cpu`, `cuda`, `tensorrt`)",
    ),
    n(
        "Identification/RunId",
        Type::String,
        "New at every start, as `run_id` in the results log",
    ),
];

pub const STATE: &[Node] = &[
    n("SystemState", Type::String, "`running` (warm and inspecting), `stopping` (draining after SIGTERM or the end of the source), `stopped` (every result written; the server closes half a second later)"),
];

/// The last result, in the order it is written: `ResultId` last.
pub const LAST_RESULT: &[Node] = &[
    n("ResultManagement/LastResult/PartId", Type::UInt64, "The part's number in this run (`id` in the results log)"),
    n("ResultManagement/LastResult/CreationTime", Type::DateTime, "When the verdict was made (`unix_ms` in the results log)"),
    n("ResultManagement/LastResult/ResultState", Type::Int32, "1 pass, 2 reject on the score, 3 rejected fail-safe (the part could not be judged on its score); as Modbus's `result_code`"),
    n("ResultManagement/LastResult/Pass", Type::Boolean, "True when the part passed"),
    n("ResultManagement/LastResult/Reason", Type::String, "The results log's `reason`: `below_threshold`, `above_threshold`, or the fail-safe reason"),
    n("ResultManagement/LastResult/AnomalyScore", Type::Float, "The score; NaN when the part was not inspected"),
    n("ResultManagement/LastResult/Threshold", Type::Float, "The threshold the part was judged by (reject above it)"),
    n("ResultManagement/LastResult/ProcessingTimeMs", Type::Double, "Capture to verdict, ms"),
    n("ResultManagement/LastResult/ModelId", Type::String, "The model that judged it: `name@` and the first 12 hex digits of its sha256"),
    n("ResultManagement/LastResult/ImageReference", Type::String, "The saved image's path on the device (`record.save`); empty when none was kept"),
    n("ResultManagement/LastResult/ResultId", Type::UInt64, "The device's part number (`device_seq` in the results log: never repeats, across restarts too). Written last: when it changes, the result is complete"),
];

pub const COUNTERS: &[Node] = &[
    n("Counters/Parts", Type::UInt64, "Parts decided in this run"),
    n("Counters/Passed", Type::UInt64, "Of which passed"),
    n("Counters/Rejected", Type::UInt64, "Of which rejected on their score"),
    n("Counters/Errors", Type::UInt64, "Of which rejected fail-safe"),
];

pub const HEALTH: &[Node] = &[
    n(
        "Health/Heartbeat",
        Type::UInt32,
        "+1 at every state the line sends (about every second), parts or not",
    ),
    n("Health/CameraOk", Type::Boolean, "The camera delivers frames"),
    n(
        "Health/CameraLosses",
        Type::UInt64,
        "Times the camera was lost in this run",
    ),
    n(
        "Health/RecordErrors",
        Type::UInt64,
        "Results lines not written (storage failed)",
    ),
    n(
        "Health/RecordBacklog",
        Type::UInt64,
        "Parts waiting for the record's storage",
    ),
    n(
        "Health/ResultsDropped",
        Type::UInt64,
        "Events this server fell behind by and dropped (a gap in ResultId)",
    ),
];

/// Every table, in the order the address space and the docs show them.
pub const TABLES: &[(&str, &[Node])] = &[
    ("Identification", IDENTIFICATION),
    ("State", STATE),
    ("Last result", LAST_RESULT),
    ("Counters", COUNTERS),
    ("Health", HEALTH),
];

/// A node by its path; the tables are fixed, so a missing one is a bug.
fn node(path: &str) -> Node {
    TABLES
        .iter()
        .flat_map(|(_, t)| t.iter())
        .find(|n| n.path == path)
        .copied()
        .unwrap_or_else(|| panic!("no OPC UA node {path}"))
}

/// Every node with its initial value.
pub fn initial() -> impl Iterator<Item = (Node, Variant)> {
    TABLES
        .iter()
        .flat_map(|(_, t)| t.iter())
        .map(|n| (*n, n.kind.initial()))
}

/// Values to write: node paths and values, in the order they must be written.
pub type Values = Vec<(&'static str, Variant)>;

/// OPC UA's DateTime (100 ns ticks since 1601) of a Unix time in ms.
pub fn date_time(unix_ms: u64) -> DateTime {
    const UNIX_EPOCH_TICKS: i64 = 116_444_736_000_000_000;
    DateTime::from(UNIX_EPOCH_TICKS + unix_ms as i64 * 10_000)
}

/// The run's facts.
pub fn identification(info: &LineInfo) -> Values {
    vec![
        ("Identification/Manufacturer", "linesight developers".into()),
        ("Identification/Model", "linesight".into()),
        ("Identification/SoftwareRevision", env!("CARGO_PKG_VERSION").into()),
        ("Identification/ModelName", info.model.as_str().into()),
        ("Identification/ModelSha256", info.model_sha256.as_str().into()),
        ("Identification/ConfigSha256", info.config_sha256.as_str().into()),
        ("Identification/Provider", info.provider.as_str().into()),
        ("Identification/RunId", info.run_id.as_str().into()),
    ]
}

/// One part's result, `ResultId` last.
pub fn result(record: &PartRecord, image: Option<&std::path::Path>, model_id: &str) -> Values {
    let state = i32::from(crate::sinks::result_code(record));
    let image = image.map(|p| p.display().to_string()).unwrap_or_default();
    let values: Values = vec![
        ("ResultManagement/LastResult/PartId", record.id.into()),
        (
            "ResultManagement/LastResult/CreationTime",
            date_time(record.unix_ms).into(),
        ),
        ("ResultManagement/LastResult/ResultState", state.into()),
        ("ResultManagement/LastResult/Pass", (state == 1).into()),
        ("ResultManagement/LastResult/Reason", record.reason.as_str().into()),
        (
            "ResultManagement/LastResult/AnomalyScore",
            record.score.unwrap_or(f32::NAN).into(),
        ),
        ("ResultManagement/LastResult/Threshold", record.threshold.into()),
        (
            "ResultManagement/LastResult/ProcessingTimeMs",
            record.latency.total_ms.into(),
        ),
        ("ResultManagement/LastResult/ModelId", model_id.into()),
        ("ResultManagement/LastResult/ImageReference", image.into()),
        ("ResultManagement/LastResult/ResultId", record.device_seq.into()),
    ];
    debug_assert!(values.iter().map(|(p, _)| *p).eq(LAST_RESULT.iter().map(|n| n.path)));
    values
}

/// The line's state: counters and health. `heartbeat` counts the states; `dropped` is
/// what this server's feed dropped.
pub fn state(s: &LineState, heartbeat: u32, dropped: u64) -> Values {
    let sum = &s.summary;
    let on_score = sum.rejects_by_reason.get("above_threshold").copied().unwrap_or(0);
    let run_state = match s.run_state {
        RunState::Running => "running",
        RunState::Stopping => "stopping",
    };
    let camera = s.camera.as_ref();
    vec![
        ("SystemState", run_state.into()),
        ("Counters/Parts", sum.parts.into()),
        ("Counters/Passed", sum.parts.saturating_sub(sum.rejects).into()),
        ("Counters/Rejected", on_score.into()),
        ("Counters/Errors", sum.rejects.saturating_sub(on_score).into()),
        ("Health/Heartbeat", heartbeat.into()),
        ("Health/CameraOk", camera.is_some_and(|c| c.up).into()),
        ("Health/CameraLosses", camera.map_or(0, |c| c.losses).into()),
        ("Health/RecordErrors", sum.record_errors.into()),
        ("Health/RecordBacklog", sum.record_backlog.into()),
        ("Health/ResultsDropped", dropped.into()),
    ]
}

/// The values as the server writes them: every one with the same source timestamp, so
/// that a client can tell which values belong together.
pub fn data_values(values: Values, stamp: DateTime) -> impl Iterator<Item = (&'static str, DataValue)> {
    values.into_iter().map(move |(path, v)| {
        debug_assert_eq!(v.type_id(), node(path).kind.initial().type_id(), "{path}");
        (path, DataValue::new_at(v, stamp))
    })
}

/// docs/opcua.md's tables, as the server builds its nodes.
pub fn markdown() -> String {
    let mut out = String::new();
    for (title, nodes) in TABLES {
        out.push_str(&format!(
            "### {title}\n\n| Node | Type | Meaning |\n| --- | --- | --- |\n"
        ));
        for n in *nodes {
            out.push_str(&format!("| `{}` | {:?} | {} |\n", n.path, n.kind, n.meaning));
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{Reason, Verdict};

    fn record(verdict: Verdict, reason: Reason, score: Option<f32>) -> PartRecord {
        assert_eq!(reason.verdict(), verdict);
        PartRecord {
            run_id: "r1".into(),
            device_seq: 41,
            id: 7,
            capture_ns: 1,
            frame_ns: None,
            unix_ms: 1_764_800_000_123,
            origin: None,
            score,
            threshold: 0.5,
            verdict,
            reason,
            detail: None,
            eject_ns: None,
            latency: crate::record::StageLatency {
                total_ms: 6.5,
                ..Default::default()
            },
            truth: None,
            defect_kind: None,
        }
    }

    fn get<'a>(values: &'a Values, path: &str) -> &'a Variant {
        &values.iter().find(|(p, _)| *p == path).unwrap().1
    }

    #[test]
    fn a_result_fills_every_last_result_node_with_result_id_last() {
        let v = result(&record(Verdict::Reject, Reason::DeadlineMissed, None), None, "m@abc");
        assert_eq!(v.last().unwrap().0, "ResultManagement/LastResult/ResultId");
        assert_eq!(*get(&v, "ResultManagement/LastResult/ResultId"), Variant::UInt64(41));
        assert_eq!(*get(&v, "ResultManagement/LastResult/PartId"), Variant::UInt64(7));
        assert_eq!(*get(&v, "ResultManagement/LastResult/ResultState"), Variant::Int32(3));
        assert_eq!(*get(&v, "ResultManagement/LastResult/Pass"), Variant::Boolean(false));
        assert_eq!(
            *get(&v, "ResultManagement/LastResult/Reason"),
            Variant::from("deadline_missed")
        );
        assert!(matches!(get(&v, "ResultManagement/LastResult/AnomalyScore"), Variant::Float(f) if f.is_nan()));
        assert_eq!(
            *get(&v, "ResultManagement/LastResult/ProcessingTimeMs"),
            Variant::Double(6.5)
        );
        let pass = result(
            &record(Verdict::Pass, Reason::BelowThreshold, Some(0.25)),
            Some("images/a.png".as_ref()),
            "m@abc",
        );
        assert_eq!(
            *get(&pass, "ResultManagement/LastResult/ResultState"),
            Variant::Int32(1)
        );
        assert_eq!(
            *get(&pass, "ResultManagement/LastResult/AnomalyScore"),
            Variant::Float(0.25)
        );
        assert_eq!(
            *get(&pass, "ResultManagement/LastResult/ImageReference"),
            Variant::from("images/a.png")
        );
        let on_score = result(
            &record(Verdict::Reject, Reason::AboveThreshold, Some(0.9)),
            None,
            "m@abc",
        );
        assert_eq!(
            *get(&on_score, "ResultManagement/LastResult/ResultState"),
            Variant::Int32(2)
        );
    }

    #[test]
    fn creation_time_is_the_verdicts_unix_time() {
        let t = date_time(1_764_800_000_123);
        assert_eq!(t.as_chrono().timestamp_millis(), 1_764_800_000_123);
        // Every value of one batch carries the same source timestamp, with its node's type.
        let v = result(&record(Verdict::Pass, Reason::BelowThreshold, Some(0.1)), None, "m");
        let stamped: Vec<_> = data_values(v, t).collect();
        assert_eq!(stamped.len(), LAST_RESULT.len());
        assert!(stamped.iter().all(|(_, d)| d.source_timestamp == Some(t)));
    }

    #[test]
    fn node_paths_are_unique_and_every_written_path_is_a_node() {
        let mut paths: Vec<_> = initial().map(|(n, _)| n.path).collect();
        let all = paths.len();
        paths.sort_unstable();
        paths.dedup();
        assert_eq!(paths.len(), all);
        let state = LineState {
            run_state: RunState::Running,
            unix_ms: 0,
            summary: Default::default(),
            camera: None,
            last_part: None,
        };
        for (path, v) in self::state(&state, 3, 0) {
            assert_eq!(v.type_id(), node(path).kind.initial().type_id(), "{path}");
        }
    }

    #[test]
    fn docs_hold_the_node_tables() {
        let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/opcua.md")).unwrap();
        assert!(
            doc.contains(markdown().trim_end()),
            "docs/opcua.md is out of date; paste in what nodes::markdown() writes:\n{}",
            markdown()
        );
    }
}
