//! linesight under systemd (Type=notify, WatchdogSec=): the real binary on the sim
//! board, talking to a notification socket bound here the way systemd binds its own.
//! What an operator relies on: `systemctl start` returns only once the model is warm and
//! the output armed, the watchdog is fed while the line lives and withheld when
//! inspection hangs, and a stop is announced.

mod common;

use common::{set, SimRun};
use std::os::unix::net::UnixDatagram;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

/// One datagram as systemd would read it, with when it arrived (seconds after start).
#[derive(Debug)]
struct Msg {
    t: f64,
    fields: Vec<(String, String)>,
}

impl Msg {
    fn get(&self, key: &str) -> Option<&str> {
        self.fields.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
    fn has(&self, key: &str, value: &str) -> bool {
        self.get(key) == Some(value)
    }
}

/// Runs linesight with NOTIFY_SOCKET and WATCHDOG_USEC set; collects every message.
fn run_notified(sim: &SimRun, watchdog_usec: u64, args: &[&str]) -> (Vec<Msg>, Output) {
    let sock_path = sim.dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let start = Instant::now();
    let mut child = sim
        .command(args)
        .env("NOTIFY_SOCKET", &sock_path)
        .env("WATCHDOG_USEC", watchdog_usec.to_string())
        .env_remove("WATCHDOG_PID")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut msgs = Vec::new();
    let mut buf = [0u8; 4096];
    let mut exited_at = None;
    loop {
        match sock.recv(&mut buf) {
            Ok(n) => {
                let text = String::from_utf8(buf[..n].to_vec()).unwrap();
                let fields = text
                    .lines()
                    .map(|l| {
                        let (k, v) = l.split_once('=').unwrap_or_else(|| panic!("not KEY=value: {l:?}"));
                        (k.to_string(), v.to_string())
                    })
                    .collect();
                msgs.push(Msg {
                    t: start.elapsed().as_secs_f64(),
                    fields,
                });
            }
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                // Stop once the process is gone and the queue has been drained for a moment.
                match exited_at {
                    Some(t) if start.elapsed() > t + Duration::from_millis(200) => break,
                    Some(_) => {}
                    None if child.try_wait().unwrap().is_some() => exited_at = Some(start.elapsed()),
                    None => {}
                }
                assert!(start.elapsed() < Duration::from_secs(120), "linesight did not finish");
            }
            Err(e) => panic!("recv: {e}"),
        }
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "linesight run failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (msgs, out)
}

fn watchdog_times(msgs: &[Msg]) -> Vec<f64> {
    msgs.iter().filter(|m| m.has("WATCHDOG", "1")).map(|m| m.t).collect()
}

fn gaps(t: &[f64]) -> Vec<f64> {
    t.windows(2).map(|w| w[1] - w[0]).collect()
}

/// "inspecting, N parts (R rejected)" -> N
fn parts_in_status(m: &Msg) -> Option<u64> {
    m.get("STATUS")?
        .strip_prefix("inspecting, ")?
        .split(' ')
        .next()?
        .parse()
        .ok()
}

#[test]
fn ready_only_when_warm_then_watchdog_fed_by_the_line_then_stopping() {
    // A slow belt: the judge sits idle between parts, so the pings there come from
    // its idle wake-ups (idle but alive), not from parts flowing.
    let sim = SimRun::new(|t| set(t, "camera.parts_per_second", 2.0.into()));
    let (msgs, out) = run_notified(&sim, 1_000_000, &["--max-parts", "8"]);
    let stderr = String::from_utf8_lossy(&out.stderr);

    // READY=1 exactly once, saying the model is warm and the output armed.
    let ready: Vec<usize> = (0..msgs.len()).filter(|&i| msgs[i].has("READY", "1")).collect();
    assert_eq!(ready.len(), 1, "one READY=1: {msgs:#?}");
    let r = ready[0];
    let status = msgs[r].get("STATUS").unwrap_or_default();
    assert!(
        status.contains("model sim-flange warm") && status.contains("armed"),
        "READY carries what is ready: {status:?}"
    );
    // The model was warmed (the configured warm-up runs) before READY was sent.
    assert!(stderr.contains("model warm on cpu ("), "{stderr}");

    // Nothing about parts or the watchdog before READY: no part is inspected before
    // `systemctl start` would return.
    for m in &msgs[..r] {
        assert!(
            m.get("WATCHDOG").is_none() && parts_in_status(m).is_none(),
            "before READY: {m:?}"
        );
    }
    let counts: Vec<u64> = msgs[r..].iter().filter_map(parts_in_status).collect();
    assert!(
        counts.iter().any(|&n| n >= 1),
        "STATUS reports inspected parts: {msgs:#?}"
    );
    assert!(
        counts.windows(2).all(|w| w[0] <= w[1]),
        "part counts only grow: {counts:?}"
    );

    // WATCHDOG=1 every half WATCHDOG_USEC (0.5 s), never close to the 1 s timeout.
    let pings = watchdog_times(&msgs);
    let mut g = gaps(&[&[msgs[r].t][..], &pings[..]].concat());
    assert!(pings.len() >= 5, "{} pings over ~4 s: {pings:?}", pings.len());
    g.sort_by(f64::total_cmp);
    let median = g[g.len() / 2];
    let max = g[g.len() - 1];
    eprintln!(
        "watchdog: {} pings, gaps median {median:.3} s, max {max:.3} s (WATCHDOG_USEC 1 s)",
        pings.len()
    );
    assert!(
        (0.45..=0.80).contains(&median),
        "median ping gap {median:.3} s, gaps {g:?}"
    );
    assert!(
        max < 1.0,
        "a gap of {max:.3} s would have let systemd's watchdog fire: {g:?}"
    );

    // STOPPING=1 once, after READY, and every part got its verdict.
    let stopping: Vec<usize> = (0..msgs.len()).filter(|&i| msgs[i].has("STOPPING", "1")).collect();
    assert_eq!(stopping.len(), 1, "one STOPPING=1: {msgs:#?}");
    assert!(stopping[0] > r);
    assert_eq!(sim.results().len(), 8);
}

#[test]
fn a_hung_inspection_withholds_the_watchdog_until_it_returns() {
    // Part 5 stalls its inference for 2 s, four times the ping interval: the judge stays
    // alive (it rejects the parts behind it at their deadlines) but must stop pinging.
    let sim = SimRun::new(|t| {
        set(t, "camera.parts_per_second", 4.0.into());
        set(t, "decision.deadline_ms", 250.into());
        set(t, "faults.slow_inference_every", 6.into());
        set(t, "faults.slow_inference_ms", 2000.into());
    });
    let (msgs, out) = run_notified(&sim, 1_000_000, &["--max-parts", "10"]);
    let stderr = String::from_utf8_lossy(&out.stderr);

    let pings = watchdog_times(&msgs);
    let g = gaps(&pings);
    let (at, longest) = g
        .iter()
        .copied()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .expect("pings");
    eprintln!("watchdog pings at {pings:.2?}; longest gap {longest:.2} s");
    assert!(
        longest >= 1.2,
        "a 2 s hang must leave a gap past the 1 s watchdog timeout: gaps {g:.2?}"
    );
    assert!(
        at + 1 < pings.len(),
        "pings resume once the inference returns: {pings:.2?}"
    );
    assert!(
        msgs.iter().any(|m| m
            .get("STATUS")
            .is_some_and(|s| s.starts_with("stalled: one inspection running"))),
        "systemctl status says why: {msgs:#?}"
    );
    assert!(stderr.contains("watchdog ping withheld"), "{stderr}");
    assert!(stderr.contains("watchdog fed again"), "{stderr}");
    // The fail-safe path still decided every part.
    let results = sim.results();
    assert_eq!(results.len(), 10);
    assert_eq!(results[5]["reason"], "deadline_missed");
}
