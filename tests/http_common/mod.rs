//! Shared by the web sink's tests: a sim line with `[http]` running in the background,
//! a plain HTTP/1.1 client over std's TcpStream (only 127.0.0.1), and bounded waits.

#![allow(dead_code)]

use crate::common::{set, SimRun};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What a whole test may wait for one thing: generous, for a loaded 2-core machine.
pub const PATIENCE: Duration = Duration::from_secs(120);

/// A sim line with its web page, run until `stop` (or dropped: then killed).
pub struct WebLine {
    pub sim: SimRun,
    child: Child,
    pub addr: SocketAddr,
    stderr: Arc<Mutex<Vec<String>>>,
}

/// The sim line's config with the page on a free loopback port and reject overlays saved.
pub fn sim_with_page(edit: impl FnOnce(&mut toml::Table)) -> SimRun {
    SimRun::new(|t| {
        set(t, "http.listen", "127.0.0.1:0".into());
        set(t, "record.save", "rejects".into());
        edit(t);
    })
}

impl WebLine {
    /// Starts `linesight run` on `sim` and waits for the page's address in its log.
    pub fn start(sim: SimRun, args: &[&str], env: &[(&str, &str)]) -> WebLine {
        let mut cmd = sim.command(args);
        cmd.stdout(Stdio::null()).stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("cannot start linesight");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        {
            let lines = Arc::clone(&stderr);
            let pipe = child.stderr.take().unwrap();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    if let Some(rest) = line.split("web page on http://").nth(1) {
                        let addr = rest.split('/').next().unwrap_or_default().to_string();
                        let _ = tx.send(addr);
                    }
                    lines.lock().unwrap().push(line);
                }
            });
        }
        let addr = match rx.recv_timeout(PATIENCE) {
            Ok(a) => a
                .parse()
                .unwrap_or_else(|e| panic!("bad address {a:?} in the log: {e}")),
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "no \"web page on http://\" line within {PATIENCE:?}:\n{}",
                    stderr.lock().unwrap().join("\n")
                );
            }
        };
        WebLine {
            sim,
            child,
            addr,
            stderr,
        }
    }

    pub fn log(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }

    pub fn get(&self, path: &str) -> Reply {
        request(self.addr, "GET", path, &[], b"")
    }

    pub fn get_json(&self, path: &str) -> Value {
        let r = self.get(path);
        assert_eq!(r.status, 200, "GET {path}: {}", r.text());
        r.json()
    }

    pub fn post(&self, path: &str, headers: &[(&str, &str)], body: &str) -> Reply {
        request(self.addr, "POST", path, headers, body.as_bytes())
    }

    /// Waits until `/healthz` answers 200.
    pub fn wait_running(&self) {
        wait_for("/healthz to answer 200", || {
            (self.get("/healthz").status == 200).then_some(())
        });
    }

    /// Waits until the page has seen at least `n` parts; returns its state then.
    pub fn wait_parts(&self, n: u64) -> Value {
        wait_for(&format!("{n} parts on /api/state"), || {
            let st = self.get_json("/api/state");
            (st["last_seq"].as_u64().unwrap_or(0) >= n).then_some(st)
        })
    }

    /// SIGTERM, as systemd stops the service, then waits for a clean exit; returns the log.
    /// The run's folder stays until the `WebLine` is dropped.
    pub fn stop(&mut self) -> String {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let end = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "linesight ended with {status}:\n{}", self.log());
                break;
            }
            assert!(Instant::now() < end, "linesight did not stop within {PATIENCE:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
        // the reader thread has the last lines once the pipe closes
        std::thread::sleep(Duration::from_millis(200));
        self.log()
    }
}

impl WebLine {
    /// The log once linesight has ended by itself (successfully), else `None`.
    pub fn try_finished(&mut self) -> Option<String> {
        let status = self.child.try_wait().unwrap()?;
        assert!(status.success(), "linesight ended with {status}:\n{}", self.log());
        std::thread::sleep(Duration::from_millis(200));
        Some(self.log())
    }
}

impl Drop for WebLine {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Polls `f` until it gives a value, every 100 ms, for at most [`PATIENCE`].
pub fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + PATIENCE;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < end, "gave up waiting for {what} after {PATIENCE:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

/// One HTTP/1.1 request on a new connection (`Connection: close`), 10 s at most.
pub fn request(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
    try_request(addr, method, path, headers, body).unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

/// [`request`], with a failure to connect or read as an error.
pub fn try_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<Reply> {
    assert!(addr.ip().is_loopback(), "tests talk to loopback only, not {addr}");
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req += &format!("{k}: {v}\r\n");
    }
    if !body.is_empty() || method == "POST" {
        req += &format!("Content-Length: {}\r\n", body.len());
    }
    req += "\r\n";
    s.write_all(req.as_bytes())?;
    s.write_all(body)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other(format!("no header end in {:?}", String::from_utf8_lossy(&raw))))?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no status line in {head:?}")))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"))
    {
        body = dechunk(&body);
    }
    Ok(Reply { status, headers, body })
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(i) = b.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(String::from_utf8_lossy(&b[..i]).trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        out.extend_from_slice(&b[i + 2..i + 2 + size]);
        b = &b[i + 2 + size + 2..];
    }
    out
}

/// The external tool a test needs, or: under CI a failure, else one line saying what to
/// install and `None` (the test then passes without running).
pub fn tool(name: &str, package: &str) -> Option<std::path::PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        let msg = format!("{name} not found: install it with `apt-get install {package}` to run this test");
        assert!(std::env::var_os("CI").is_none(), "{msg} (CI is set: the test must run)");
        // Straight to stderr, past the test harness's capture, so that a plain `cargo test` shows it.
        let _ = writeln!(std::io::stderr(), "skipped: {msg}");
    }
    found
}
