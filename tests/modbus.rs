//! The Modbus TCP server against a real client: pymodbus (tests/modbus_plc.py) takes the
//! results of a running sim line through the handshake, as a PLC would.
//!
//! The Python with pymodbus is `$LINESIGHT_PLANT_PYTHON`, else `target/plant-venv/bin/python`
//! (what .ci/run makes), else `python3`. Without pymodbus a test prints what to install and
//! passes, unless `CI` is set: then it fails.

mod common;

use common::{set, SimRun};
use serde_json::Value;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

/// The sim line with a Modbus server on a free loopback port.
fn sim_with_modbus(buffer_results: u64) -> SimRun {
    SimRun::new(|t| {
        set(t, "modbus.listen", "127.0.0.1:0".into());
        set(t, "modbus.unit_id", 3.into());
        set(t, "modbus.buffer_results", (buffer_results as i64).into());
        // The test is about the handshake, not about CPU time on a loaded machine.
        set(t, "decision.deadline_ms", 250.into());
        set(t, "decision.queue_depth", 8.into());
    })
}

/// linesight running, its stderr collected; the port its server took, from its log.
struct Line {
    child: Child,
    stderr: Arc<Mutex<Vec<String>>>,
    port: u16,
}

impl Line {
    fn spawn(sim: &SimRun, args: &[&str]) -> Line {
        let (child, port, stderr) = common::spawn_announcing(sim, args, "modbus server on 127.0.0.1:");
        let port = port
            .parse()
            .unwrap_or_else(|e| panic!("modbus server port {port:?}: {e}"));
        Line { child, stderr, port }
    }

    /// Waits for the end of the run (--max-parts); its stdout.
    fn finish(self) -> String {
        let out = self.child.wait_with_output().unwrap();
        let log = self.stderr.lock().unwrap().join("\n");
        assert!(out.status.success(), "linesight failed ({}):\n{log}", out.status);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// What the client printed: its JSON lines, by key.
struct Plc {
    lines: Vec<Value>,
}

impl Plc {
    fn run(py: &PathBuf, port: u16, mode: &str) -> Child {
        Command::new(py)
            .arg(common::repo().join("tests/modbus_plc.py"))
            .args([port.to_string(), "3".into(), mode.into()])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    fn wait(child: Child) -> Plc {
        let out = child.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "the pymodbus client failed ({}):\n{text}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        Plc {
            lines: text
                .lines()
                .map(|l| {
                    serde_json::from_str(l).unwrap_or_else(|e| panic!("a client line is not JSON ({e}): {l:?}\n{text}"))
                })
                .collect(),
        }
    }

    fn one(&self, key: &str) -> &Value {
        self.lines
            .iter()
            .find_map(|l| l.get(key))
            .unwrap_or_else(|| panic!("no {key:?} from the client: {:?}", self.lines))
    }

    fn results(&self) -> Vec<&Value> {
        self.lines.iter().filter_map(|l| l.get("result")).collect()
    }
}

/// The summary's modbus line: (acknowledged, dropped, unsent, feed dropped).
fn summary(stdout: &str) -> (u64, u64, u64, u64) {
    let line = stdout
        .lines()
        .find(|l| l.starts_with("modbus "))
        .unwrap_or_else(|| panic!("no modbus line in the run's summary:\n{stdout}"));
    let n: Vec<u64> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter(|w| !w.is_empty())
        .map(|w| w.parse().unwrap())
        .collect();
    assert_eq!(n.len(), 4, "{line}");
    (n[0], n[1], n[2], n[3])
}

/// A result as read over Modbus is the results log's line.
fn assert_same(read: &Value, logged: &Value) {
    let id = logged["id"].as_u64().unwrap();
    assert_eq!(read["inspection_id"], id, "{read} vs {logged}");
    let reason = logged["reason"].as_str().unwrap();
    let (result_code, reason_code) = match reason {
        "below_threshold" => (1, 1),
        "above_threshold" => (2, 2),
        "deadline_missed" => (3, 3),
        "overload" => (3, 6),
        other => panic!("part {id}: reason {other} on the sim line"),
    };
    assert_eq!(
        (read["result_code"].as_u64(), read["reason_code"].as_u64()),
        (Some(result_code), Some(reason_code)),
        "part {id}"
    );
    let f32_of = |v: &Value| v.as_f64().map(|x| x as f32);
    match f32_of(&logged["score"]) {
        Some(score) => {
            assert_eq!(f32_of(&read["score"]), Some(score), "part {id}: the score");
            assert_eq!(
                read["score_x1000"].as_i64(),
                Some((score as f64 * 1000.0).round() as i64),
                "part {id}"
            );
        }
        None => {
            assert!(read["score"].is_null(), "part {id}: no score, NaN");
            assert_eq!(read["score_x1000"].as_i64(), Some(i32::MIN as i64));
        }
    }
    assert_eq!(
        f32_of(&read["threshold"]),
        f32_of(&logged["threshold"]),
        "part {id}: threshold"
    );
    assert_eq!(
        f32_of(&read["processing_time_ms"]),
        f32_of(&logged["latency"]["total_ms"]),
        "part {id}: processing time"
    );
}

fn checksum_of(sim: &SimRun) -> u64 {
    use sha2::Digest;
    let text = std::fs::read(&sim.config).unwrap();
    let hex: String = sha2::Sha256::digest(&text)[..4]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    u64::from_str_radix(&hex, 16).unwrap()
}

const PARTS: usize = 30;

#[test]
fn every_result_is_read_through_the_handshake_in_order() {
    let Some(py) = common::plant_python("pymodbus", "pymodbus==3.16.*") else {
        return;
    };
    let _serial = common::serial();
    let sim = sim_with_modbus(8);
    let line = Line::spawn(&sim, &["--max-parts", &PARTS.to_string()]);
    let plc = Plc::run(&py, line.port, "handshake");
    let stdout = line.finish();
    let plc = Plc::wait(plc);

    // Refused, by the server: a write outside the control bits, a bit not listed, another unit.
    let refused = plc.one("refused");
    assert_eq!(
        (
            &refused["write_register_1"],
            &refused["write_bit_8"],
            &refused["other_unit"]
        ),
        (&Value::from(2), &Value::from(3), &Value::from(11)),
        "{refused}"
    );

    let logged = sim.results();
    assert_eq!(logged.len(), PARTS);
    let read = plc.results();
    let ids: Vec<u64> = read.iter().map(|r| r["inspection_id"].as_u64().unwrap()).collect();
    let first = logged
        .iter()
        .position(|r| r["id"].as_u64() == ids.first().copied())
        .unwrap_or_else(|| panic!("the first result read, {ids:?}, is not in the log"));
    // Buffering went on before the PLC read the counters: every part decided after that
    // is in the buffer, so the first one read is at most the (counted + 1)-th part.
    let counted = plc.one("enabled")["parts"].as_u64().unwrap() as usize;
    assert!(
        first <= counted,
        "part {} read first, but only {counted} were decided when buffering went on",
        first + 1
    );
    let want: Vec<u64> = logged[first..].iter().map(|r| r["id"].as_u64().unwrap()).collect();
    assert_eq!(
        ids, want,
        "every part from the first buffered on, in order, none missed"
    );
    assert!(ids.len() >= 10, "only {} parts went through the handshake", ids.len());
    for (r, l) in read.iter().zip(&logged[first..]) {
        assert_same(r, l);
    }

    let end = plc.one("end");
    assert_eq!(end["overruns"], 0, "{end}");
    assert_eq!(
        end["status"].as_u64().unwrap() & (1 << 7),
        0,
        "no overrun flagged: {end}"
    );
    assert_eq!(end["parts"], PARTS as u64, "{end}");
    let passed = logged.iter().filter(|r| r["verdict"] == "pass").count() as u64;
    assert_eq!(end["passed"], passed);
    assert_eq!(end["buffer_capacity"], 8);
    assert_eq!(end["config_checksum"].as_u64(), Some(checksum_of(&sim)));
    assert!(
        end["heartbeat"].as_u64().unwrap() >= 1,
        "the line's states count: {end}"
    );

    assert_eq!(summary(&stdout), (ids.len() as u64, 0, 0, 0), "{stdout}");
}

#[test]
fn an_overrun_is_flagged_and_counted_when_the_plc_stops_acknowledging() {
    let Some(py) = common::plant_python("pymodbus", "pymodbus==3.16.*") else {
        return;
    };
    let _serial = common::serial();
    let sim = sim_with_modbus(4);
    let line = Line::spawn(&sim, &["--max-parts", &PARTS.to_string()]);
    let plc = Plc::run(&py, line.port, "overrun");
    let stdout = line.finish();
    let plc = Plc::wait(plc);

    let logged = sim.results();
    assert_eq!(logged.len(), PARTS);
    let logged_ids: Vec<u64> = logged.iter().map(|r| r["id"].as_u64().unwrap()).collect();
    let read = plc.results();
    let ids: Vec<u64> = read.iter().map(|r| r["inspection_id"].as_u64().unwrap()).collect();
    let first = logged_ids
        .iter()
        .position(|id| Some(id) == ids.first())
        .unwrap_or_else(|| panic!("the first result read, {ids:?}, is not in the log"));
    let counted = plc.one("enabled")["parts"].as_u64().unwrap() as usize;
    assert!(first <= counted);
    // The four that waited while the PLC did not acknowledge are the first four after
    // buffering went on, kept as they were; what followed them, in order, with gaps.
    assert_eq!(ids[..4], logged_ids[first..first + 4], "the buffered results are kept");
    let mut rest = logged_ids[first..].iter();
    for id in &ids {
        assert!(rest.any(|l| l == id), "part {id} read out of order: {ids:?}");
    }
    for r in &read {
        let l = logged.iter().find(|l| l["id"] == r["inspection_id"]).unwrap();
        assert_same(r, l);
    }
    // None silently lost: every part after the first buffered one was read or counted.
    let missed = (PARTS - first - ids.len()) as u64;
    let end = plc.one("end");
    assert!(missed >= 3, "the PLC waited for 3 overruns: {missed} missed");
    assert_eq!(end["overruns"].as_u64(), Some(missed), "{end}");
    assert_ne!(
        end["status"].as_u64().unwrap() & (1 << 7),
        0,
        "the overrun is flagged: {end}"
    );
    assert_eq!(summary(&stdout), (ids.len() as u64, missed, 0, 0), "{stdout}");
}
