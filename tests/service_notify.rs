//! linesight under systemd (Type=notify, WatchdogSec=): the real binary on the sim
//! board, talking to a notification socket bound here the way systemd binds its own.
//! What an operator relies on: `systemctl start` returns only once the model is warm and
//! the output armed, the watchdog is fed while the line lives and withheld when
//! inspection hangs, and a stop is announced.

mod common;

use common::{set, SimRun};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixDatagram;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

/// One datagram as systemd would read it, with when linesight sent it (seconds after start).
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

/// CLOCK_REALTIME now, in seconds: the clock of the kernel's datagram timestamps.
fn realtime_s() -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

/// Asks the kernel to stamp every datagram as it is sent to `sock` (SO_TIMESTAMPNS), so
/// that the times are linesight's, not those of this test's thread getting round to them.
fn stamp_datagrams(sock: &UnixDatagram) {
    let on: libc::c_int = 1;
    // SAFETY: a valid socket and an int option of the size given.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPNS,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "SO_TIMESTAMPNS: {}", std::io::Error::last_os_error());
}

/// One datagram and the kernel's timestamp of it (CLOCK_REALTIME, seconds).
fn recv_stamped(sock: &UnixDatagram, buf: &mut [u8]) -> std::io::Result<(usize, f64)> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // Room for one control message with a timespec, aligned as cmsghdr wants.
    let mut control = [0u64; 16];
    // SAFETY: msghdr is plain data; the fields that matter are set below.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control);
    // SAFETY: msg points at buffers that live across the call.
    let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, 0) };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the kernel filled the control buffer that msg describes.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_TIMESTAMPNS {
                let ts: libc::timespec = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast());
                return Ok((n as usize, ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9));
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    panic!("a datagram without its SO_TIMESTAMPNS timestamp");
}

/// Runs linesight with NOTIFY_SOCKET and WATCHDOG_USEC set; collects every message.
fn run_notified(sim: &SimRun, watchdog_usec: u64, args: &[&str]) -> (Vec<Msg>, Output) {
    let sock_path = sim.dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    stamp_datagrams(&sock);
    sock.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let start = Instant::now();
    let start_s = realtime_s();
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
    let mut exited = false;
    loop {
        match recv_stamped(&sock, &mut buf) {
            Ok((n, sent_s)) => {
                let text = String::from_utf8(buf[..n].to_vec()).unwrap();
                let fields = text
                    .lines()
                    .map(|l| {
                        let (k, v) = l.split_once('=').unwrap_or_else(|| panic!("not KEY=value: {l:?}"));
                        (k.to_string(), v.to_string())
                    })
                    .collect();
                msgs.push(Msg {
                    t: sent_s - start_s,
                    fields,
                });
            }
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                // Once the process is gone, all it sent is queued: one more empty wait ends it.
                if exited {
                    break;
                }
                exited = child.try_wait().unwrap().is_some();
                assert!(start.elapsed() < common::HUNG, "linesight did not finish");
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

    // STOPPING=1 once, after READY, and every part got its verdict.
    let stopping: Vec<usize> = (0..msgs.len()).filter(|&i| msgs[i].has("STOPPING", "1")).collect();
    assert_eq!(stopping.len(), 1, "one STOPPING=1: {msgs:#?}");
    assert!(stopping[0] > r);
    assert_eq!(sim.results().len(), 8);

    // linesight says how often it feeds the watchdog: every half WATCHDOG_USEC, as
    // sd_watchdog_enabled(3) advises.
    let every = common::reported(&stderr, "watchdog fed every ");
    assert_eq!(every, 0.5, "half of WATCHDOG_USEC (1 s): {stderr}");
    // Fed from READY through the drain: no gap in which systemd's 1 s would run out. That
    // is systemd's own limit, not a guess at this machine's speed (and the times are when
    // linesight sent each message, so this test's own lateness does not count).
    let pings = watchdog_times(&msgs);
    let mut fed: Vec<f64> = [msgs[r].t, msgs[stopping[0]].t]
        .into_iter()
        .chain(pings.iter().copied())
        .collect();
    fed.sort_by(f64::total_cmp);
    let max = gaps(&fed).into_iter().fold(0.0, f64::max);
    assert!(
        max < 1.0,
        "a gap of {max:.3} s would have let systemd's watchdog fire: pings at {pings:.3?}"
    );
    // ... and no more often than announced: a ping is due a full interval after the last.
    // (The median, as a ping sent late shortens the gap after it; less the announcement's
    // printed rounding.)
    let mut g = gaps(&[&[msgs[r].t][..], &pings[..]].concat());
    g.sort_by(f64::total_cmp);
    let median = g[g.len() / 2];
    eprintln!(
        "watchdog: {} pings, gaps median {median:.3} s, max {max:.3} s (WATCHDOG_USEC 1 s)",
        pings.len()
    );
    assert!(
        median >= every - 0.005,
        "median ping gap {median:.3} s, shorter than the announced {every} s: {g:.3?}"
    );
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

    let every = common::reported(&stderr, "watchdog fed every ");
    let pings = watchdog_times(&msgs);
    let g = gaps(&pings);
    let (at, longest) = g
        .iter()
        .copied()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .expect("pings");
    eprintln!("watchdog pings at {pings:.2?}; longest gap {longest:.2} s");
    // Pings stop once the inspection has run one interval and resume when it returns: a
    // gap of at least 2 s less one interval, well past the 1 s timeout (a loaded machine
    // only makes the hang longer).
    let withheld = 2.0 - every - 0.005;
    assert!(
        longest >= withheld,
        "a 2 s hang must leave a gap of {withheld:.3} s, past the 1 s watchdog timeout: gaps {g:.3?}"
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
