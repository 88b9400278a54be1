//! The OPC UA server against a real client: asyncua (tests/opcua_client.py) subscribes to
//! the last result of a running sim line and reads each result, as a SCADA or MES would.
//!
//! The Python with asyncua is `$LINESIGHT_PLANT_PYTHON`, else `target/plant-venv/bin/python`
//! (what .ci/run makes), else `python3`. Without asyncua a test prints what to install and
//! passes, unless `CI` is set: then it fails.
#![cfg(feature = "opcua")]

mod common;

use common::{set, terminate, wait_until, SimRun};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

const DEVICE: &str = "cell-7";

/// The sim line with an OPC UA server on a free loopback port.
fn sim_with_opcua(edit: impl FnOnce(&mut toml::Table)) -> SimRun {
    SimRun::new(|t| {
        set(t, "opcua.listen", "opc.tcp://127.0.0.1:0".into());
        set(t, "opcua.device_id", DEVICE.into());
        // The test is about what the client reads, not about CPU time on a loaded machine.
        set(t, "decision.deadline_ms", 250.into());
        set(t, "decision.queue_depth", 8.into());
        edit(t);
    })
}

/// linesight running without a part limit; the endpoint its server took, from its log.
fn spawn(sim: &SimRun) -> (Child, String, Arc<Mutex<Vec<String>>>) {
    common::spawn_announcing(sim, &[], "opcua server on ")
}

/// The client, its JSON lines collected as they come.
struct Client {
    child: Child,
    lines: Arc<Mutex<Vec<Value>>>,
    reader: std::thread::JoinHandle<()>,
}

impl Client {
    fn start(py: &Path, url: &str, user: &[&str]) -> Client {
        let mut child = Command::new(py)
            .arg(common::repo().join("tests/opcua_client.py"))
            .args([url, DEVICE])
            .args(user)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let reader = {
            let (pipe, lines) = (child.stdout.take().unwrap(), Arc::clone(&lines));
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    lines.lock().unwrap().push(serde_json::from_str(&line).unwrap());
                }
            })
        };
        Client { child, lines, reader }
    }

    fn said(&self, key: &str) -> bool {
        self.lines.lock().unwrap().iter().any(|l| l.get(key).is_some())
    }

    /// Its exit code and lines, once it has ended.
    fn wait(self) -> (i32, Vec<Value>, String) {
        let out = self.child.wait_with_output().unwrap();
        self.reader.join().unwrap();
        let lines = self.lines.lock().unwrap().clone();
        (
            out.status.code().unwrap_or(-1),
            lines,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

fn one<'a>(lines: &'a [Value], key: &str) -> &'a Value {
    lines
        .iter()
        .find_map(|l| l.get(key))
        .unwrap_or_else(|| panic!("no {key:?} from the client: {lines:?}"))
}

/// Subscribes, waits for `more` parts decided after the subscription, stops the line with
/// SIGTERM; the client's lines and the results log.
fn subscribe_and_stop(sim: &SimRun, py: &Path, user: &[&str], more: usize) -> (Vec<Value>, Vec<Value>) {
    let (mut line, url, log) = spawn(sim);
    let client = Client::start(py, &url, user);
    wait_until("the client subscribed", || {
        if let Some(status) = line.try_wait().unwrap() {
            panic!("linesight exited ({status}):\n{}", log.lock().unwrap().join("\n"));
        }
        client.said("subscribed") || client.said("refused")
    });
    let seen = common::complete_lines(&sim.results_path()).len();
    sim.wait_for_results(&mut line, "parts after the subscription", |r| r.len() >= seen + more);
    terminate(line);
    let (code, lines, stderr) = client.wait();
    assert_eq!(code, 0, "the asyncua client failed:\n{lines:?}\n{stderr}");
    (lines, sim.results())
}

/// A result as read over OPC UA is the results log's line.
fn assert_same(read: &Value, logged: &Value) {
    let id = logged["id"].as_u64().unwrap();
    assert_eq!(read["PartId"], logged["id"], "{read} vs {logged}");
    assert_eq!(read["ResultId"], logged["device_seq"], "part {id}");
    let state = match logged["reason"].as_str().unwrap() {
        "below_threshold" => 1,
        "above_threshold" => 2,
        _ => 3,
    };
    assert_eq!(read["ResultState"], state, "part {id}");
    assert_eq!(read["Pass"], logged["verdict"] == "pass", "part {id}");
    assert_eq!(read["Reason"], logged["reason"], "part {id}");
    let f32_of = |v: &Value| v.as_f64().map(|x| x as f32);
    assert_eq!(
        f32_of(&read["AnomalyScore"]),
        f32_of(&logged["score"]),
        "part {id}: score"
    );
    assert_eq!(f32_of(&read["Threshold"]), f32_of(&logged["threshold"]), "part {id}");
    assert_eq!(read["ProcessingTimeMs"], logged["latency"]["total_ms"], "part {id}");
    assert_eq!(read["CreationTime"], logged["unix_ms"], "part {id}");
    assert!(read["ModelId"].as_str().unwrap().starts_with("sim-flange@"), "{read}");
}

/// From the first result the client got on, every part in order, none missed, each equal
/// to its results line.
fn assert_every_result_from_the_first(lines: &[Value], logged: &[Value]) -> usize {
    let read: Vec<&Value> = lines.iter().filter_map(|l| l.get("result")).collect();
    let ids: Vec<u64> = read.iter().map(|r| r["ResultId"].as_u64().unwrap()).collect();
    let first = logged
        .iter()
        .position(|r| r["device_seq"].as_u64() == ids.first().copied())
        .unwrap_or_else(|| panic!("the first result read, {ids:?}, is not in the log"));
    let want: Vec<u64> = logged[first..]
        .iter()
        .map(|r| r["device_seq"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, want, "every part from the first one read, in order, none missed");
    for (r, l) in read.iter().zip(&logged[first..]) {
        assert_same(r, l);
    }
    ids.len()
}

#[test]
fn a_subscriber_reads_every_result_equal_to_the_results_log() {
    let Some(py) = common::plant_python("asyncua", "asyncua==2.1.*") else {
        return;
    };
    let _serial = common::serial();
    let sim = sim_with_opcua(|_| {});
    let (lines, logged) = subscribe_and_stop(&sim, &py, &[], 20);
    let n = assert_every_result_from_the_first(&lines, &logged);
    assert!(n >= 20, "only {n} results read");

    let ident = one(&lines, "identification");
    use sha2::Digest;
    let config_sha: String = sha2::Sha256::digest(std::fs::read(&sim.config).unwrap())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(ident["ConfigSha256"], config_sha.as_str(), "{ident}");
    assert_eq!(ident["RunId"], logged[0]["run_id"], "{ident}");
    assert_eq!(
        (&ident["Model"], &ident["ModelName"]),
        (&"linesight".into(), &"sim-flange".into())
    );

    let end = one(&lines, "end");
    let parts = logged.len() as u64;
    let passed = logged.iter().filter(|r| r["verdict"] == "pass").count() as u64;
    let on_score = logged.iter().filter(|r| r["reason"] == "above_threshold").count() as u64;
    assert_eq!(end["Counters/Parts"], parts, "{end}");
    assert_eq!(end["Counters/Passed"], passed, "{end}");
    assert_eq!(end["Counters/Rejected"], on_score, "{end}");
    assert_eq!(end["Counters/Errors"], parts - passed - on_score, "{end}");
    assert_eq!(end["Health/ResultsDropped"], 0, "{end}");
    assert!(end["Health/Heartbeat"].as_u64().unwrap() >= 1, "{end}");
}

#[test]
fn basic256sha256_lets_in_a_trusted_client_with_its_user_only() {
    let Some(py) = common::plant_python("asyncua", "asyncua==2.1.*") else {
        return;
    };
    let _serial = common::serial();
    let sim = sim_with_opcua(|_| {});
    let (users, pki, certs) = (
        sim.dir.path().join("opcua-users"),
        sim.dir.path().join("pki"),
        sim.dir.path().join("client"),
    );
    std::fs::write(&users, "# the cell's SCADA\nscada:line-7-secret\n").unwrap();
    std::fs::create_dir(&certs).unwrap();
    sim.edit(|t| {
        set(t, "opcua.security", "basic256sha256".into());
        set(t, "opcua.users_file", users.display().to_string().into());
        set(t, "opcua.pki_dir", pki.display().to_string().into());
    });
    let certs = certs.display().to_string();
    let user = ["scada", "line-7-secret", certs.as_str()];

    // Unknown certificate: refused, and kept in rejected/ for the operator.
    let (mut line, url, _log) = spawn(&sim);
    let (code, lines, stderr) = Client::start(&py, &url, &user).wait();
    assert_eq!(code, 3, "an untrusted client must be refused: {lines:?}\n{stderr}");
    let rejected: Vec<PathBuf> = std::fs::read_dir(pki.join("rejected"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(rejected.len(), 1, "the client's certificate in rejected/: {rejected:?}");
    let made = pki.join("own/cert.der");
    assert!(made.is_file(), "the server's certificate, made at the first start");
    let cert = std::fs::read(&made).unwrap();
    // The operator trusts it.
    let name = rejected[0].file_name().unwrap();
    std::fs::rename(&rejected[0], pki.join("trusted").join(name)).unwrap();

    // A wrong password is refused too.
    let wrong = ["scada", "guess", certs.as_str()];
    let (code, lines, stderr) = Client::start(&py, &url, &wrong).wait();
    assert_eq!(code, 3, "a wrong password must be refused: {lines:?}\n{stderr}");
    assert!(line.try_wait().unwrap().is_none(), "the line runs on");
    terminate(line);

    // Trusted, right user: every result, through an encrypted channel. The server's
    // certificate is the one made at the first start.
    let (lines, logged) = subscribe_and_stop(&sim, &py, &user, 10);
    assert!(assert_every_result_from_the_first(&lines, &logged) >= 10);
    assert_eq!(
        std::fs::read(&made).unwrap(),
        cert,
        "the certificate is kept across starts"
    );
}

#[test]
fn check_refuses_security_none_beyond_loopback_and_reads_the_users_file() {
    let sim = sim_with_opcua(|t| set(t, "opcua.listen", "opc.tcp://0.0.0.0:4840".into()));
    let out = Command::new(env!("CARGO_BIN_EXE_linesight"))
        .args(["check", "--config"])
        .arg(&sim.config)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("opcua.security: \"none\" lets anyone on the network in"),
        "{text}"
    );

    let users = sim.dir.path().join("users");
    std::fs::write(&users, "scada\n").unwrap();
    sim.edit(|t| {
        set(t, "opcua.security", "basic256sha256".into());
        set(t, "opcua.users_file", users.display().to_string().into());
        set(t, "opcua.listen", "opc.tcp://127.0.0.1:0".into());
    });
    let out = Command::new(env!("CARGO_BIN_EXE_linesight"))
        .args(["check", "--config"])
        .arg(&sim.config)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("line 1: expected name:password, found \"scada\""),
        "the bad line is named: {text}"
    );
}
