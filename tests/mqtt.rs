//! The MQTT sink against a real Mosquitto (Debian's `mosquitto`), each test starting its
//! own broker on free loopback ports with a config file written here. The test
//! subscribes with rumqttc, as a plant historian would.
//!
//! Without `mosquitto` (and `mosquitto_passwd`, `openssl` for TLS) a test prints what to
//! install and passes, unless `CI` is set: then it fails.

mod common;

use common::{set, SimRun};
use rumqttc::{Client, Event, MqttOptions, Packet, QoS};
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// One test at a time: each runs a timed line, and the fail-safe test must not share the
/// two cores with another line.
fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// The tools are there; else one line saying what to install (a failure under CI).
fn have(tools: &[&str]) -> bool {
    let missing: Vec<&str> = tools.iter().copied().filter(|t| tool(t).is_none()).collect();
    if missing.is_empty() {
        return true;
    }
    let msg = format!(
        "MQTT test skipped: {} not found; install Debian's mosquitto (and openssl): apt-get install -y mosquitto openssl",
        missing.join(", ")
    );
    if std::env::var_os("CI").is_some() {
        panic!("{msg} (CI is set: the real-broker tests must run)");
    }
    eprintln!("{msg}");
    false
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits for `cond`, checking every 50 ms, for at most `within`.
fn wait_for(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + within;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A Mosquitto of the test's own, with `conf` (its listeners on `ports`).
struct Mosquitto {
    child: Option<Child>,
    conf: PathBuf,
    log: PathBuf,
    ports: Vec<u16>,
}

impl Mosquitto {
    /// `conf` gets the ports and the folder and returns the config text (listeners etc.).
    fn start(dir: &Path, listeners: usize, conf: impl FnOnce(&[u16], &Path) -> String) -> Mosquitto {
        let ports: Vec<u16> = (0..listeners).map(|_| free_port()).collect();
        // As root, stay root (the files are in a private temporary folder); otherwise
        // Mosquitto ignores `user`.
        let text = format!("user root\nlog_dest stderr\nlog_type all\n{}", conf(&ports, dir));
        let path = dir.join("mosquitto.conf");
        std::fs::write(&path, text).unwrap();
        let mut m = Mosquitto {
            child: None,
            conf: path,
            log: dir.join("mosquitto.log"),
            ports,
        };
        m.restart();
        m
    }

    fn port(&self) -> u16 {
        self.ports[0]
    }

    /// Starts it (again, on the same ports) and waits until every listener answers.
    fn restart(&mut self) {
        assert!(self.child.is_none());
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(tool("mosquitto").unwrap())
            .arg("-c")
            .arg(&self.conf)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let ports = self.ports.clone();
        let up = wait_for(Duration::from_secs(20), || {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("mosquitto exited ({status}):\n{}", self.log_text());
            }
            ports.iter().all(|p| TcpStream::connect(("127.0.0.1", *p)).is_ok())
        });
        assert!(up, "mosquitto did not listen in 20 s:\n{}", self.log_text());
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn signal(&self, sig: i32) {
        let pid = self.child.as_ref().unwrap().id() as i32;
        // SAFETY: a signal to the broker process this test started.
        assert_eq!(unsafe { libc::kill(pid, sig) }, 0);
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        if let Some(c) = &self.child {
            // SAFETY: as in `signal`; a stopped broker must be continued to be killed cleanly.
            unsafe { libc::kill(c.id() as i32, libc::SIGCONT) };
        }
        self.kill();
    }
}

#[derive(Debug, Clone)]
struct Msg {
    topic: String,
    retain: bool,
    json: Value,
}

/// A subscriber on the broker: every message on `topics`, as it arrives.
struct Subscriber {
    msgs: Arc<Mutex<Vec<Msg>>>,
    subacks: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Subscriber {
    /// `persistent`: a session the broker keeps (clean session off, QoS 1), as a historian
    /// has, so that what is published while it reconnects waits for it.
    fn new(port: u16, id: &str, topics: &[String], persistent: bool) -> Subscriber {
        let mut o = MqttOptions::new(id, "127.0.0.1", port);
        o.set_clean_session(!persistent)
            .set_keep_alive(Duration::from_secs(5))
            .set_max_packet_size(1 << 20, 1 << 20);
        let (client, mut conn) = Client::new(o, 100);
        let msgs = Arc::new(Mutex::new(Vec::new()));
        let subacks = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let n = topics.len();
        let (m, s, st, topics) = (msgs.clone(), subacks.clone(), stop.clone(), topics.to_vec());
        let thread = std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                match conn.recv_timeout(Duration::from_millis(100)) {
                    Ok(Ok(Event::Incoming(Packet::ConnAck(_)))) => {
                        for t in &topics {
                            let _ = client.try_subscribe(t.clone(), QoS::AtLeastOnce);
                        }
                    }
                    Ok(Ok(Event::Incoming(Packet::SubAck(_)))) => {
                        s.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(Ok(Event::Incoming(Packet::Publish(p)))) => {
                        let json = serde_json::from_slice(&p.payload)
                            .unwrap_or_else(|e| panic!("not JSON on {}: {e}", p.topic));
                        m.lock().unwrap().push(Msg {
                            topic: p.topic.clone(),
                            retain: p.retain,
                            json,
                        });
                    }
                    Ok(Ok(_)) | Err(_) => {}
                    // The broker is away: rumqttc reconnects on the next call.
                    Ok(Err(_)) => std::thread::sleep(Duration::from_millis(100)),
                }
            }
        });
        let sub = Subscriber {
            msgs,
            subacks,
            stop,
            thread: Some(thread),
        };
        assert!(
            wait_for(Duration::from_secs(20), || sub.subacks.load(Ordering::Relaxed) >= n),
            "the test's subscription was not acknowledged in 20 s"
        );
        sub
    }

    fn messages(&self) -> Vec<Msg> {
        self.msgs.lock().unwrap().clone()
    }

    fn on(&self, topic: &str) -> Vec<Msg> {
        self.messages().into_iter().filter(|m| m.topic == topic).collect()
    }

    /// Waits up to `within` for a message on `topic` that `pred` accepts.
    fn wait(&self, within: Duration, topic: &str, pred: impl Fn(&Value) -> bool) -> Option<Msg> {
        let mut found = None;
        wait_for(within, || {
            found = self.on(topic).into_iter().find(|m| pred(&m.json));
            found.is_some()
        });
        found
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

const PREFIX: &str = "acme/plant1/area2/line3/cell4";
const DEVICE: &str = "cam-07";

fn topic(leaf: &str) -> String {
    format!("{PREFIX}/linesight/{DEVICE}/{leaf}")
}

/// The sim board with `[mqtt]` pointing at `port`, plus `extra` keys under `mqtt.`.
fn sim_with_mqtt(port: u16, extra: &[(&str, toml::Value)]) -> SimRun {
    SimRun::new(|t| {
        set(t, "mqtt.broker", format!("mqtt://127.0.0.1:{port}").into());
        set(t, "mqtt.topic_prefix", PREFIX.into());
        set(t, "mqtt.device_id", DEVICE.into());
        set(t, "mqtt.reconnect_ms", 200.into());
        set(t, "mqtt.reconnect_max_ms", 500.into());
        set(t, "mqtt.state_interval_s", 1.into());
        for (k, v) in extra {
            set(t, &format!("mqtt.{k}"), v.clone());
        }
    })
}

/// linesight running in the background, stderr to a file.
struct Line {
    child: Child,
    stderr: PathBuf,
}

impl Line {
    fn spawn(sim: &SimRun, args: &[&str]) -> Line {
        let stderr = sim.dir.path().join("stderr.txt");
        let child = sim
            .command(args)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        Line { child, stderr }
    }

    /// Waits for it to end by itself, at most `within`; its stdout and stderr.
    fn finish(mut self, within: Duration) -> (String, String) {
        let ended = wait_for(within, || self.child.try_wait().unwrap().is_some());
        if !ended {
            let _ = self.child.kill();
        }
        let out = self.child.wait_with_output().unwrap();
        let stderr = std::fs::read_to_string(&self.stderr).unwrap();
        assert!(ended, "linesight did not end within {within:?}:\n{stderr}");
        assert!(out.status.success(), "linesight failed ({}):\n{stderr}", out.status);
        (String::from_utf8_lossy(&out.stdout).into_owned(), stderr)
    }

    fn signal(&self, sig: i32) {
        // SAFETY: a signal to the linesight process this test started.
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, sig) }, 0);
    }
}

fn parts_decided(sim: &SimRun) -> usize {
    std::fs::read_to_string(sim.dir.path().join("results.jsonl"))
        .map(|t| t.lines().count())
        .unwrap_or(0)
}

/// Result messages by sequence number; a repeat (QoS 1 after a lost acknowledgement) must
/// be the same message.
fn results_by_seq(sub: &Subscriber) -> BTreeMap<u64, Value> {
    let mut by_seq = BTreeMap::new();
    for m in sub.on(&topic("result")) {
        assert!(!m.retain, "results are not retained: {}", m.json);
        let seq = m.json["seq"].as_u64().unwrap();
        if let Some(before) = by_seq.insert(seq, m.json.clone()) {
            assert_eq!(before, m.json, "seq {seq} published twice with different content");
        }
    }
    by_seq
}

/// "mqtt: N result(s) acknowledged by the broker, D dropped (buffer full), U unsent at the
/// stop; at most B buffered, R resent…": (N, D, U, B, R).
fn sink_report(stderr: &str) -> (u64, u64, u64, u64, u64) {
    let line = stderr
        .lines()
        .find(|l| l.contains("result(s) acknowledged by the broker"))
        .unwrap_or_else(|| panic!("no closing mqtt line in:\n{stderr}"));
    let num = |after: &str| -> u64 {
        let i = line.find(after).unwrap_or_else(|| panic!("no {after:?} in {line}"));
        line[..i]
            .trim_end()
            .rsplit(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    (
        num(" result(s) acknowledged"),
        num(" dropped"),
        num(" unsent"),
        num(" buffered"),
        num(" resent"),
    )
}

/// The run summary's MQTT line (stdout), "mqtt       N result(s) acknowledged, D dropped
/// (buffer full), U unsent at the stop; F feed event(s) dropped": (N, D, U, F).
fn summary_figures(stdout: &str) -> (u64, u64, u64, u64) {
    let line = stdout
        .lines()
        .find(|l| l.starts_with("mqtt "))
        .unwrap_or_else(|| panic!("no mqtt line in the run's summary:\n{stdout}"));
    let n: Vec<u64> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter(|w| !w.is_empty())
        .map(|w| w.parse().unwrap())
        .collect();
    assert!(
        n.len() == 4 && line.contains("result(s) acknowledged") && line.ends_with("feed event(s) dropped"),
        "{line}"
    );
    (n[0], n[1], n[2], n[3])
}

/// A generous deadline and queue: the tests that assert "no fail-safe reject" are about
/// the broker, not about the CPU time that other work on a loaded test machine takes.
fn lenient_timing(sim: &SimRun) {
    sim.edit(|t| {
        set(t, "decision.deadline_ms", 250.into());
        set(t, "decision.queue_depth", 8.into());
    });
}

fn assert_all_inspected(sim: &SimRun) {
    for r in sim.results() {
        assert!(
            r["reason"] == "below_threshold" || r["reason"] == "above_threshold",
            "a part was not judged on its score: {r}"
        );
    }
}

#[test]
fn every_part_arrives_in_order_with_its_sequence() {
    if !have(&["mosquitto"]) {
        return;
    }
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(dir.path(), 1, |p, _| {
        format!("listener {} 127.0.0.1\nallow_anonymous true\npersistence false\n", p[0])
    });
    let sub = Subscriber::new(
        broker.port(),
        "historian",
        &[topic("result"), topic("state"), topic("status")],
        false,
    );
    let sim = sim_with_mqtt(broker.port(), &[]);
    let (stdout, stderr) = Line::spawn(&sim, &["--max-parts", "40"]).finish(Duration::from_secs(120));
    let results = sim.results();
    assert_eq!(results.len(), 40);
    // The closing offline status is the last message; everything before it has arrived.
    let off = sub
        .wait(Duration::from_secs(10), &topic("status"), |v| v["online"] == false)
        .unwrap_or_else(|| panic!("no offline status:\n{stderr}"));
    assert_eq!(off.json["reason"], "stopped");
    let by_seq = results_by_seq(&sub);
    assert_eq!(
        by_seq.keys().copied().collect::<Vec<_>>(),
        (1..=40).collect::<Vec<u64>>()
    );
    // In order of arrival, too, and each the part of the results log at its place.
    let arrived: Vec<u64> = sub
        .on(&topic("result"))
        .iter()
        .map(|m| m.json["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(arrived, (1..=40).collect::<Vec<u64>>(), "arrival order");
    let run_id = by_seq[&1]["run_id"].clone();
    for (seq, r) in by_seq.iter() {
        let logged = &results[*seq as usize - 1];
        assert_eq!(r["schema"], "linesight.result.v1");
        assert_eq!(r["run_id"], run_id);
        assert_eq!(r["device_id"], DEVICE);
        assert_eq!(r["id"], logged["id"]);
        // The results log and the broker name a part alike: run and device sequence.
        assert_eq!(
            (&r["run_id"], &r["device_seq"]),
            (&logged["run_id"], &logged["device_seq"])
        );
        assert_eq!(r["verdict"], logged["verdict"]);
        assert_eq!(r["reason"], logged["reason"]);
        assert_eq!(r["capture_ns"], logged["capture_ns"]);
        assert_eq!(r["model"]["name"], "sim-flange");
    }
    let status = sub.on(&topic("status"));
    assert_eq!(status[0].json["online"], true, "online first: {:?}", status[0]);
    assert_eq!(status[0].json["run_id"], run_id);
    let states = sub.on(&topic("state"));
    assert!(states.iter().all(|m| m.json["schema"] == "linesight.state.v1"));
    let last = &states.last().expect("state messages").json;
    assert_eq!(last["run_state"], "stopping", "{last}");
    assert_eq!(last["parts"], 40);
    assert_eq!(last["last_part"]["seq"], 40);
    assert!(last["latency_ms"]["total"]["p99"].is_number(), "{last}");
    assert_eq!(last["model"]["sha256"].as_str().unwrap().len(), 64);
    let camera = &last["camera"];
    assert_eq!(
        (camera["up"].as_bool(), camera["losses"].as_u64()),
        (Some(true), Some(0)),
        "{last}"
    );
    assert!(
        camera["since_unix_ms"].as_u64().unwrap() <= last["unix_ms"].as_u64().unwrap(),
        "up since the camera opened: {last}"
    );
    // Status and state are retained (a live subscription gets them without the flag): a
    // newcomer reads the last of each at once.
    let late = Subscriber::new(broker.port(), "newcomer", &[topic("status"), topic("state")], false);
    let status = late.wait(Duration::from_secs(10), &topic("status"), |_| true).unwrap();
    let state = late.wait(Duration::from_secs(10), &topic("state"), |_| true).unwrap();
    assert!(status.retain && state.retain);
    assert_eq!(status.json["reason"], "stopped");
    assert_eq!(&state.json, last);
    let (sent, dropped, unsent, most, resent) = sink_report(&stderr);
    assert_eq!((sent, dropped, unsent, resent), (40, 0, 0, 0), "{stderr}");
    assert_eq!(summary_figures(&stdout), (40, 0, 0, 0), "{stdout}");
    eprintln!("40 parts: sent {sent}, dropped {dropped}, unsent {unsent}, at most {most} buffered");
}

#[test]
fn the_state_says_the_camera_is_down_since_when_and_why() {
    if !have(&["mosquitto"]) {
        return;
    }
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(dir.path(), 1, |p, _| {
        format!("listener {} 127.0.0.1\nallow_anonymous true\npersistence false\n", p[0])
    });
    let sub = Subscriber::new(broker.port(), "historian", &[topic("state")], false);
    // The camera is unplugged after 10 frames and not back before the run ends (its parts
    // count towards --max-parts as camera_lost rejects): the last state must say it is
    // down, whatever the timing of the states before it.
    let sim = sim_with_mqtt(broker.port(), &[]);
    sim.edit(|t| {
        set(t, "faults.camera_loss_at_part", 10.into());
        set(t, "faults.camera_loss_ms", 600_000.into());
        set(t, "status.camera_retry_max_ms", 200.into());
    });
    let (stdout, stderr) = Line::spawn(&sim, &["--max-parts", "30"]).finish(Duration::from_secs(120));
    let last = sub
        .wait(Duration::from_secs(10), &topic("state"), |v| {
            v["run_state"] == "stopping"
        })
        .unwrap_or_else(|| panic!("no stopping state:\n{stderr}"))
        .json;
    let states = sub.on(&topic("state"));
    let first = &states[0].json;
    assert_eq!(
        (first["camera"]["up"].as_bool(), first["camera"]["losses"].as_u64()),
        (Some(true), Some(0)),
        "the first state, before any part: {first}"
    );
    let camera = &last["camera"];
    assert_eq!(
        (camera["up"].as_bool(), camera["losses"].as_u64()),
        (Some(false), Some(1)),
        "{last}"
    );
    let cause = camera["last_error"].as_str().unwrap();
    assert!(cause.contains("injected fault (faults.camera_loss_at_part)"), "{last}");
    let since = camera["since_unix_ms"].as_u64().unwrap();
    assert!(
        first["camera"]["since_unix_ms"].as_u64().unwrap() < since && since <= last["unix_ms"].as_u64().unwrap(),
        "down after it opened, before the last state: {first} then {last}"
    );
    // Every state that saw the camera down says the same: one loss, its first cause and time.
    for s in states.iter().map(|m| &m.json).filter(|s| s["camera"]["up"] == false) {
        assert_eq!(&s["camera"], camera, "{s}");
    }
    assert!(last["rejects_by_reason"]["camera_lost"].as_u64().unwrap() > 0, "{last}");
    assert!(stdout.contains("(down at the end)"), "{stdout}");
}

/// An idle line (a part at the start, the next 100 s later) still publishes its state
/// every `state_interval_s`: each made when it was sent, not the last one again.
#[test]
fn an_idle_line_still_publishes_fresh_states() {
    if !have(&["mosquitto"]) {
        return;
    }
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(dir.path(), 1, |p, _| {
        format!("listener {} 127.0.0.1\nallow_anonymous true\npersistence false\n", p[0])
    });
    let sub = Subscriber::new(broker.port(), "historian", &[topic("state")], false);
    let sim = sim_with_mqtt(broker.port(), &[]);
    sim.edit(|t| set(t, "camera.parts_per_second", 0.01.into()));
    let mut line = Line::spawn(&sim, &[]);
    let idle = || -> Vec<Value> {
        sub.on(&topic("state"))
            .into_iter()
            .map(|m| m.json)
            .filter(|s| s["parts"] == 1)
            .collect()
    };
    // Three states after the one part: no part came between them (the next is 100 s
    // away), so only their own time tells them apart.
    let seen = wait_for(Duration::from_secs(60), || idle().len() >= 3);
    // Killed: a clean stop would wait for the sim's pacing, up to a minute at this rate.
    line.child.kill().unwrap();
    line.child.wait().unwrap();
    let stderr = std::fs::read_to_string(&line.stderr).unwrap();
    let states = idle();
    assert!(
        seen,
        "fewer than 3 states while the line was idle: {states:?}\n{stderr}"
    );
    let times: Vec<u64> = states.iter().map(|s| s["unix_ms"].as_u64().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] < w[1]), "each state is new: {times:?}");
    for s in &states[1..3] {
        assert_eq!(s["run_state"], "running", "{s}");
        assert_eq!(s["parts_per_second_now"], 0.0, "no part since the state before: {s}");
        assert_eq!(s["camera"]["up"], true, "{s}");
    }
}

/// A broker that keeps sessions across a kill (persistence saved at every change), and a
/// historian subscribed to the results and the status with a persistent session, so that
/// what linesight resends before the historian is back waits for it.
fn persistent_broker_and_historian(dir: &std::path::Path) -> (Mosquitto, Subscriber) {
    let broker = Mosquitto::start(dir, 1, |p, dir| {
        format!(
            "listener {} 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location {}/\nautosave_interval 1\nautosave_on_changes true\n",
            p[0],
            dir.display()
        )
    });
    let sub = Subscriber::new(broker.port(), "historian", &[topic("result"), topic("status")], true);
    assert!(
        wait_for(Duration::from_secs(20), || dir.join("mosquitto.db").exists()),
        "mosquitto saved no database"
    );
    (broker, sub)
}

/// The broker is killed (SIGKILL) mid-run and started again: every result of the outage
/// was kept and arrives, in order, after it; nothing is missing.
#[test]
fn a_broker_outage_leaves_no_gap_within_the_buffer() {
    if !have(&["mosquitto"]) {
        return;
    }
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let (mut broker, sub) = persistent_broker_and_historian(dir.path());
    let sim = sim_with_mqtt(broker.port(), &[]);
    lenient_timing(&sim);
    let line = Line::spawn(&sim, &["--max-parts", "90"]);
    assert!(
        wait_for(Duration::from_secs(60), || results_by_seq(&sub).len() >= 15),
        "no results before the outage"
    );
    broker.kill();
    let at_kill = parts_decided(&sim);
    // Parts keep being decided while the broker is away.
    assert!(
        wait_for(Duration::from_secs(60), || parts_decided(&sim) >= at_kill + 25),
        "the line stopped while the broker was away"
    );
    let at_restart = parts_decided(&sim);
    broker.restart();
    let (_, stderr) = line.finish(Duration::from_secs(120));
    let off = sub.wait(Duration::from_secs(20), &topic("status"), |v| v["reason"] == "stopped");
    assert!(off.is_some(), "no offline status after the outage:\n{stderr}");
    let by_seq = results_by_seq(&sub);
    assert_eq!(
        by_seq.keys().copied().collect::<Vec<_>>(),
        (1..=90).collect::<Vec<u64>>(),
        "results missing after the outage:\n{stderr}"
    );
    let (sent, dropped, unsent, most, resent) = sink_report(&stderr);
    assert_eq!((sent, dropped, unsent), (90, 0, 0), "{stderr}");
    assert!(most >= 25, "the outage's results were buffered: at most {most}");
    assert!(stderr.contains("mqtt: lost the broker"), "{stderr}");
    assert!(stderr.contains("back after"), "{stderr}");
    assert_all_inspected(&sim);
    eprintln!(
        "outage: parts {at_kill}..{at_restart} decided while the broker was away; sent {sent}, dropped {dropped}, at most {most} buffered, {resent} resent"
    );
}

/// A buffer smaller than the outage: the oldest results of the outage are dropped and
/// counted, the newest `buffer_parts` arrive, and after the gap nothing is missing.
#[test]
fn beyond_the_buffer_the_oldest_are_dropped_and_counted() {
    if !have(&["mosquitto"]) {
        return;
    }
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let (mut broker, sub) = persistent_broker_and_historian(dir.path());
    let sim = sim_with_mqtt(broker.port(), &[("buffer_parts", 10.into())]);
    let line = Line::spawn(&sim, &["--max-parts", "70"]);
    assert!(wait_for(Duration::from_secs(60), || results_by_seq(&sub).len() >= 10));
    broker.kill();
    let at_kill = parts_decided(&sim);
    assert!(wait_for(Duration::from_secs(60), || parts_decided(&sim) >= at_kill + 30));
    broker.restart();
    let (stdout, stderr) = line.finish(Duration::from_secs(120));
    assert!(sub
        .wait(Duration::from_secs(20), &topic("status"), |v| v["reason"] == "stopped")
        .is_some());
    let got: Vec<u64> = results_by_seq(&sub).keys().copied().collect();
    let (sent, dropped, unsent, most, _) = sink_report(&stderr);
    let (s_sent, s_dropped, s_unsent, _) = summary_figures(&stdout);
    assert_eq!(
        (s_sent, s_dropped, s_unsent),
        (sent, dropped, unsent),
        "the run's summary says what the sink logged:\n{stdout}"
    );
    assert!(dropped >= 10, "an outage of 30 parts with a buffer of 10: {stderr}");
    assert_eq!(sent + dropped + unsent, 70, "{stderr}");
    assert_eq!(got.len() as u64, 70 - dropped, "{got:?}");
    // One gap, of exactly the dropped results, and every result after it.
    let missing: Vec<u64> = (1..=70).filter(|s| !got.contains(s)).collect();
    assert_eq!(missing.len() as u64, dropped);
    assert_eq!(
        missing.last().unwrap() - missing[0] + 1,
        dropped,
        "the dropped are one run of the oldest: {missing:?}"
    );
    assert!(*missing.last().unwrap() < 70);
    eprintln!(
        "buffer 10: sent {sent}, dropped {dropped} (seq {}..={}), at most {most} buffered",
        missing[0],
        missing.last().unwrap()
    );
}

/// kill -9 of linesight: the broker publishes its last will, `{"online": false}`; a
/// clean stop (SIGTERM) publishes offline itself, and it stays retained.
#[test]
fn the_last_will_on_kill_and_offline_on_a_clean_stop() {
    if !have(&["mosquitto"]) {
        return;
    }
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(dir.path(), 1, |p, _| {
        format!("listener {} 127.0.0.1\nallow_anonymous true\npersistence false\n", p[0])
    });
    let sub = Subscriber::new(broker.port(), "scada", &[topic("status")], false);
    let sim = sim_with_mqtt(broker.port(), &[]);

    let mut line = Line::spawn(&sim, &[]);
    let online = sub
        .wait(Duration::from_secs(60), &topic("status"), |v| v["online"] == true)
        .expect("online status");
    let run_id = online.json["run_id"].clone();
    line.child.kill().unwrap(); // SIGKILL
    line.child.wait().unwrap();
    let will = sub
        .wait(Duration::from_secs(20), &topic("status"), |v| v["online"] == false)
        .unwrap_or_else(|| panic!("no last will:\n{}", broker.log_text()));
    assert_eq!(will.json["reason"], "connection_lost");
    assert_eq!(will.json["run_id"], run_id);
    assert_eq!(will.json["schema"], "linesight.status.v1");

    let line = Line::spawn(&sim, &[]);
    let online = sub
        .wait(Duration::from_secs(60), &topic("status"), |v| {
            v["online"] == true && v["run_id"] != run_id
        })
        .expect("online status of the second run");
    let run_id = online.json["run_id"].clone();
    line.signal(libc::SIGTERM);
    let (_, stderr) = line.finish(Duration::from_secs(60));
    let off = sub
        .wait(Duration::from_secs(20), &topic("status"), |v| {
            v["online"] == false && v["run_id"] == run_id
        })
        .unwrap_or_else(|| panic!("no offline status on a clean stop:\n{stderr}"));
    assert_eq!(off.json["reason"], "stopped");
    assert!(stderr.contains("offline status published"), "{stderr}");
    // A newcomer reads the retained status: offline, stopped.
    let late = Subscriber::new(broker.port(), "late", &[topic("status")], false);
    let retained = late
        .wait(Duration::from_secs(10), &topic("status"), |_| true)
        .expect("a retained status");
    assert!(retained.retain);
    assert_eq!(retained.json["reason"], "stopped");

    // check reads the retained status back; with the broker gone it says why it failed.
    let config = linesight::config::Config::load(&sim.config).unwrap();
    let found = |config| {
        linesight::sinks::mqtt::check(config)
            .into_iter()
            .find(|(what, _)| *what == "mqtt broker")
            .map(|(_, r)| r.map_err(|e| format!("{e:#}")))
            .unwrap()
    };
    let ok = found(&config).unwrap();
    assert!(ok.contains("retained status: offline (stopped, run "), "{ok}");
    eprintln!("check after a clean stop: mqtt broker: {ok}");
    drop(late);
    drop(sub);
    let mut broker = broker;
    broker.kill();
    let e = found(&config).unwrap_err();
    assert!(e.contains("cannot connect to mqtt://127.0.0.1:"), "{e}");
    eprintln!("check without a broker: mqtt broker: PROBLEM: {e}");
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").args(args).current_dir(dir).output().unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A test CA, a broker certificate for 127.0.0.1/localhost and a client certificate.
fn make_pki(dir: &Path) {
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    openssl(
        dir,
        &[
            &["req", "-x509"][..],
            &ec,
            &[
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "2",
                "-subj",
                "/CN=linesight test CA",
            ],
        ]
        .concat(),
    );
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("client.ext"),
        "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n",
    )
    .unwrap();
    for (name, cn) in [("server", "localhost"), ("client", "cam-07-cert")] {
        let (key, csr, pem, ext) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.pem"),
            format!("{name}.ext"),
        );
        openssl(
            dir,
            &[
                &["req"][..],
                &ec,
                &["-keyout", &key, "-out", &csr, "-subj", &format!("/CN={cn}")],
            ]
            .concat(),
        );
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &pem,
                "-days",
                "2",
                "-extfile",
                &ext,
            ],
        );
    }
}

/// TLS with a CA made here and a Mosquitto password file: linesight publishes through
/// it; `check` says what it found, and what is wrong when the password or the CA is.
#[test]
fn tls_with_a_test_ca_and_a_password_file() {
    if !have(&["mosquitto", "mosquitto_passwd", "openssl"]) {
        return;
    }
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    make_pki(d);
    let password = "s3cret:with colon";
    let out = Command::new(tool("mosquitto_passwd").unwrap())
        .args(["-b", "-c"])
        .arg(d.join("passwd"))
        .args(["linesight", password])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // 0: TLS + password (linesight); 1: plain, anonymous, for the test's subscriber;
    // 2: TLS + client certificate (its name is the user name).
    let broker = Mosquitto::start(d, 3, |p, d| {
        let tls = format!(
            "cafile {0}/ca.pem\ncertfile {0}/server.pem\nkeyfile {0}/server.key\n",
            d.display()
        );
        format!(
            "per_listener_settings true\npersistence false\n\
             listener {} 127.0.0.1\n{tls}allow_anonymous false\npassword_file {}/passwd\n\
             listener {} 127.0.0.1\nallow_anonymous true\n\
             listener {} 127.0.0.1\n{tls}require_certificate true\nuse_identity_as_username true\nallow_anonymous false\n",
            p[0],
            d.display(),
            p[1],
            p[2]
        )
    });
    let creds = d.join("credentials");
    std::fs::create_dir_all(&creds).unwrap();
    std::fs::write(creds.join("mqtt"), format!("linesight:{password}\n")).unwrap();
    std::fs::write(d.join("wrong"), "linesight:not-it\n").unwrap();
    let sub = Subscriber::new(broker.ports[1], "historian", &[topic("result"), topic("status")], false);
    let tls_sim = |port: u16, extra: &[(&str, toml::Value)]| {
        let sim = sim_with_mqtt(port, extra);
        sim.edit(|t| set(t, "mqtt.broker", format!("mqtts://127.0.0.1:{port}").into()));
        sim
    };
    let ca = d.join("ca.pem").display().to_string();
    let check = |sim: &SimRun| {
        let config = linesight::config::Config::load(&sim.config).unwrap();
        linesight::sinks::mqtt::check(&config)
            .into_iter()
            .map(|(what, r)| (what, r.map_err(|e| format!("{e:#}"))))
            .collect::<Vec<_>>()
    };
    let broker_line = |lines: &[(&str, Result<String, String>)]| {
        lines
            .iter()
            .find(|(w, _)| *w == "mqtt broker")
            .map(|(_, r)| r.clone())
            .expect("a broker line")
    };

    // check: a wrong password, then no CA (the system's store knows no test CA).
    let wrong = tls_sim(
        broker.port(),
        &[
            ("ca_file", ca.clone().into()),
            ("credentials_file", d.join("wrong").display().to_string().into()),
        ],
    );
    let e = broker_line(&check(&wrong)).unwrap_err();
    eprintln!("check with a wrong password: mqtt broker: PROBLEM: {e}");
    // Mosquitto answers a wrong password with "not authorized".
    assert!(
        e.contains("not authorized") && e.contains("mqtt.credentials_file"),
        "{e}"
    );
    let no_ca = tls_sim(
        broker.port(),
        &[("credentials_file", d.join("wrong").display().to_string().into())],
    );
    let lines = check(&no_ca);
    match &broker_line(&lines) {
        Err(e) => {
            assert!(e.contains("TLS") && e.contains("mqtt.ca_file"), "{e}");
            eprintln!("check without the test CA: mqtt broker: PROBLEM: {e}");
        }
        Ok(s) => panic!("a broker certificate from an unknown CA was accepted: {s}"),
    }
    // A client certificate on the third listener.
    let mtls = tls_sim(
        broker.ports[2],
        &[
            ("ca_file", ca.clone().into()),
            ("client_cert_file", d.join("client.pem").display().to_string().into()),
            ("client_key_file", d.join("client.key").display().to_string().into()),
        ],
    );
    let lines = check(&mtls);
    let ok = broker_line(&lines).unwrap_or_else(|e| panic!("{e}\n{}", broker.log_text()));
    assert!(ok.contains("TLS"), "{ok}");
    eprintln!("check with a client certificate: mqtt broker: {ok}");
    assert!(lines
        .iter()
        .any(|(w, r)| *w == "mqtt tls" && r.as_ref().unwrap().contains("client certificate")));

    // The run: the password as a systemd credential.
    let sim = tls_sim(
        broker.port(),
        &[
            ("ca_file", ca.into()),
            ("credentials_file", "$CREDENTIALS_DIRECTORY/mqtt".into()),
        ],
    );
    // check() reads $CREDENTIALS_DIRECTORY as the service would (no other thread reads it).
    std::env::set_var("CREDENTIALS_DIRECTORY", &creds);
    let lines = check(&sim);
    std::env::remove_var("CREDENTIALS_DIRECTORY");
    let ok = broker_line(&lines).unwrap();
    assert!(
        ok.contains("TLS with the broker's certificate verified") && ok.contains("logged in as \"linesight\""),
        "{ok}"
    );
    let warnings = |lines: &[(&str, Result<String, String>)]| -> Vec<String> {
        lines
            .iter()
            .filter_map(|(_, r)| r.as_ref().ok().filter(|s| s.starts_with("WARN")).cloned())
            .collect()
    };
    let w = warnings(&lines);
    assert!(
        w.len() == 1 && w[0].contains("mode 0644"),
        "the secret is readable by others: {w:?}"
    );
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(creds.join("mqtt"), std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    std::env::set_var("CREDENTIALS_DIRECTORY", &creds);
    let lines = check(&sim);
    std::env::remove_var("CREDENTIALS_DIRECTORY");
    assert!(
        warnings(&lines).is_empty(),
        "loopback, TLS, secret 0600: no warnings: {lines:?}"
    );
    for (what, r) in &lines {
        eprintln!("check: {what}: {r:?}");
    }
    let (_, stderr) = {
        let mut c = sim.command(&["--max-parts", "20"]);
        c.env("CREDENTIALS_DIRECTORY", &creds);
        let out = c.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{stderr}");
        (String::from_utf8_lossy(&out.stdout).into_owned(), stderr)
    };
    assert!(sub
        .wait(Duration::from_secs(10), &topic("status"), |v| v["reason"] == "stopped")
        .is_some());
    let got: Vec<u64> = results_by_seq(&sub).keys().copied().collect();
    assert_eq!(got, (1..=20).collect::<Vec<u64>>(), "{stderr}");
    assert!(!stderr.contains(password), "the password is never logged");
}

/// A broker that hangs (SIGSTOP: connections open, nothing answered) from mid-run to the
/// end: every part is still judged on its score, none is a fail-safe reject for lack of
/// time, and the run ends by itself with its results counted as unsent.
#[test]
fn a_hung_broker_does_not_touch_the_lines_timing() {
    if !have(&["mosquitto"]) {
        return;
    }
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(dir.path(), 1, |p, _| {
        format!("listener {} 127.0.0.1\nallow_anonymous true\npersistence false\n", p[0])
    });
    let sub = Subscriber::new(broker.port(), "historian", &[topic("result")], false);
    let sim = sim_with_mqtt(broker.port(), &[("connect_timeout_s", 1.into())]);
    lenient_timing(&sim);
    let line = Line::spawn(&sim, &["--max-parts", "80"]);
    assert!(wait_for(Duration::from_secs(60), || results_by_seq(&sub).len() >= 10));
    broker.signal(libc::SIGSTOP);
    let at_stop = parts_decided(&sim);
    let (_, stderr) = line.finish(Duration::from_secs(120));
    let results = sim.results();
    assert_eq!(results.len(), 80);
    assert!(
        at_stop < 60,
        "the broker hung for most of the run ({at_stop} parts before)"
    );
    assert_all_inspected(&sim);
    let (sent, dropped, unsent, _, _) = sink_report(&stderr);
    assert!(unsent > 0, "results were waiting for the hung broker: {stderr}");
    assert_eq!(sent + dropped + unsent, 80, "{stderr}");
    eprintln!("hung broker from part {at_stop}: sent {sent}, dropped {dropped}, unsent at the stop {unsent}");
}
