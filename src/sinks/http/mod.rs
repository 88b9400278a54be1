//! `[http]`: the web status page, its JSON API, `/healthz` and Prometheus `/metrics`
//! (docs/web.md).
//!
//! ```text
//! feed (bounded, drop-oldest) ──▶ ls-sink-http: WebState, Metrics ◀── ls-http: axum on a
//!                                                                      current-thread tokio runtime
//! ```
//!
//! Two threads of its own, both at a lower CPU priority than the line (nice 10): the feed
//! thread applies the line's events to the page's state, the server thread answers
//! browsers and scrapers. Neither can hold up a verdict: the line only pushes to the feed.
//! The listening socket is bound at start, so that a port in use stops the start with
//! its reason instead of a page that never comes.

mod api;
mod audit;
mod state;

use crate::config::{Config, HttpConfig, SaveImages};
use crate::model::Manifest;
use crate::record::Metrics;
use crate::sinks::feed::{FeedReceiver, Recv};
use crate::sinks::{LineEvent, LineInfo, SinkReport, Sinks};
use anyhow::{bail, Context};
use api::{Shared, Writes};
use audit::AuditLog;
use state::{ThresholdRange, WebState};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Events the page may fall behind by before the oldest are dropped (and counted).
const FEED_CAPACITY: usize = 4096;

/// Starts the web sink if `[http]` is configured.
pub fn open(sinks: &mut Sinks, config: &Config, info: &LineInfo) -> anyhow::Result<()> {
    let Some(http) = &config.http else {
        return Ok(());
    };
    let addr = http.listen_addr().context("http.listen")?;
    let writes = match &http.token_file {
        Some(file) => Some(Writes {
            token: read_token(&crate::sinks::secret_path(config, file))?,
            audit: AuditLog::open(&audit_path(config, http))?,
        }),
        None => None,
    };
    let range = threshold_range(config, http, info.threshold)?;
    let listener = TcpListener::bind(addr).with_context(|| format!("http.listen {addr}: cannot listen"))?;
    listener.set_nonblocking(true)?;
    let bound = listener.local_addr()?;
    let shared = Arc::new(Shared {
        state: Mutex::new(WebState::new(
            Arc::new(info.clone()),
            http.recent_parts,
            http.recent_rejects,
            crate::clock::unix_ms(),
        )),
        metrics: Metrics::new(&info.model, &info.provider, info.threshold),
        controls: sinks.controls(),
        save_dir: (config.record.save != SaveImages::None).then(|| config.resolve(&config.record.save_dir)),
        writes,
        range,
        refresh_ms: http.refresh_ms,
        title: http.title.clone(),
        start_threshold: info.threshold,
    });
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = {
        let shared = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("ls-http".into())
            .spawn(move || serve(listener, shared, stop_rx))
            .context("cannot start the web server thread")?
    };
    let writes = match &shared.writes {
        Some(w) => format!("writes with the bearer token, audited in {}", w.audit.path().display()),
        None => "read-only: no http.token_file".into(),
    };
    sinks.add("http", FEED_CAPACITY, move |rx| {
        feed_loop(rx, &shared, stop_tx, server);
        SinkReport::default()
    })?;
    log::info!("web page on http://{bound}/ ({writes})");
    Ok(())
}

/// The server thread: axum on a current-thread runtime until the feed closes.
fn serve(listener: TcpListener, shared: Arc<Shared>, stop: tokio::sync::oneshot::Receiver<()>) {
    lower_priority();
    let run = || -> anyhow::Result<()> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_io().build()?;
        rt.block_on(async {
            let listener = tokio::net::TcpListener::from_std(listener)?;
            let app = api::router(shared).into_make_service_with_connect_info::<SocketAddr>();
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stop.await;
                })
                .await
        })?;
        Ok(())
    };
    if let Err(e) = run() {
        log::error!("web page: the server stopped: {e:#}");
    }
}

/// The feed thread: the line's events into the page's state and the metrics.
fn feed_loop(
    rx: FeedReceiver<LineEvent>,
    shared: &Shared,
    stop: tokio::sync::oneshot::Sender<()>,
    server: std::thread::JoinHandle<()>,
) {
    lower_priority();
    loop {
        match rx.recv_timeout(Duration::from_secs(1)) {
            Recv::Item(event) => {
                let summary = match &event {
                    LineEvent::State(s) => Some(Arc::clone(s)),
                    LineEvent::Part { .. } => None,
                };
                let mut st = shared.state();
                st.apply(event);
                st.dropped_events = rx.dropped();
                let threshold = st.threshold_in_use();
                drop(st);
                if let Some(s) = summary {
                    shared.metrics.update(&s.summary, threshold);
                }
            }
            Recv::Timeout => {}
            Recv::Closed => break,
        }
    }
    // The line has stopped: let open requests finish, for a moment at most.
    let _ = stop.send(());
    let end = Instant::now() + Duration::from_secs(1);
    while !server.is_finished() && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(10));
    }
    if server.is_finished() {
        let _ = server.join();
    }
}

/// Nice 10 for the calling thread: the page waits when the line needs the CPU.
fn lower_priority() {
    // SAFETY: plain syscalls on the calling thread's own id.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, 10);
    }
}

/// The token: the file's first line, trimmed; printable ASCII without spaces.
fn read_token(path: &Path) -> anyhow::Result<String> {
    let text = crate::files::read_text_capped(path, crate::files::TEXT_MAX_BYTES)
        .with_context(|| format!("http.token_file {}: cannot read", path.display()))?;
    let token = text.lines().next().unwrap_or("").trim();
    if token.is_empty() {
        bail!(
            "http.token_file {}: is empty; put the bearer token on its first line",
            path.display()
        );
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        bail!(
            "http.token_file {}: the token must be printable ASCII without spaces (it travels in an HTTP header)",
            path.display()
        );
    }
    Ok(token.to_string())
}

/// `http.audit_log`, or `audit.jsonl` beside `record.results`.
fn audit_path(config: &Config, http: &HttpConfig) -> PathBuf {
    match &http.audit_log {
        Some(p) => config.resolve(p),
        None => {
            let results = config.resolve(&config.record.results);
            results.parent().unwrap_or(Path::new("")).join("audit.jsonl")
        }
    }
}

/// `http.threshold_range`, or the calibration's bounds from the model's manifest.
fn threshold_range(config: &Config, http: &HttpConfig, start: f32) -> anyhow::Result<ThresholdRange> {
    if let Some(range) = http.threshold_range {
        return Ok(ThresholdRange::configured(range, start));
    }
    let m = Manifest::load(&config.resolve(&config.model.dir)).context("http: the threshold's sane range")?;
    let c = &m.calibration;
    Ok(ThresholdRange::from_calibration(c.mean, c.std, c.max, start))
}

/// What `linesight check` says about `[http]`: one line per item; an `Err` is a problem
/// (check fails), an `Ok` starting with `WARN` a warning.
pub fn check(config: &Config) -> Vec<(&'static str, anyhow::Result<String>)> {
    let Some(http) = &config.http else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let Some(addr) = http.listen_addr() else {
        out.push(("http", Err(anyhow::anyhow!("http.listen: not an address"))));
        return out;
    };
    out.push(("http listen", probe_listen(addr)));
    if let Some(w) = exposure_warning(addr, http.token_file.is_some()) {
        out.push(("http listen", Ok(w)));
    }
    match &http.token_file {
        None => out.push(("http writes", Ok("none: read-only page (no http.token_file)".into()))),
        Some(file) => {
            let path = crate::sinks::secret_path(config, file);
            out.push(("http token", check_token(&path)));
            let audit = audit_path(config, http);
            out.push((
                "http audit log",
                writable(&audit).map(|()| format!("{} (every write, accepted or refused)", audit.display())),
            ));
        }
    }
    out.push((
        "http threshold",
        threshold_range(config, http, config.decision.threshold.unwrap_or(f32::NAN))
            .map(|r| format!("writes may set {} to {} ({})", r.low, r.high, r.source)),
    ));
    if config.record.save == SaveImages::None {
        out.push((
            "http images",
            Ok("none on the page: record.save = \"none\" (set \"rejects\" to see reject overlays)".into()),
        ));
    }
    out
}

/// A listener on any address but loopback, said plainly.
fn exposure_warning(addr: SocketAddr, token: bool) -> Option<String> {
    if addr.ip().is_loopback() {
        return None;
    }
    Some(if token {
        format!(
            "WARN http.listen {addr} is reachable from other hosts over plain HTTP (linesight serves no TLS): anyone there can read the page, the API and /metrics, and the bearer token crosses the network in clear text; listen on 127.0.0.1 behind a TLS reverse proxy"
        )
    } else {
        format!(
            "WARN http.listen {addr} is reachable from other hosts without authentication (no http.token_file) and without TLS: anyone there can read the page, the API and /metrics; listen on 127.0.0.1, or put a TLS reverse proxy with authentication in front"
        )
    })
}

/// Free: linesight could listen. In use: a linesight answering `/healthz` there is fine,
/// anything else would stop `linesight run`.
fn probe_listen(addr: SocketAddr) -> anyhow::Result<String> {
    if addr.port() == 0 {
        return Ok(format!("{addr}: a free port is taken at start and logged"));
    }
    match TcpListener::bind(addr) {
        Ok(_) => Ok(format!("{addr}: free, the page will be on http://{addr}/")),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => match get_healthz(addr) {
            Some(status) => Ok(format!("{addr}: in use by a running linesight (healthz: {status})")),
            None => bail!("{addr}: in use by another program: linesight run would not start"),
        },
        Err(e) => bail!("{addr}: cannot listen: {e}"),
    }
}

/// The status line's code and text of `GET /healthz` at `addr`, if a linesight answers.
fn get_healthz(addr: SocketAddr) -> Option<String> {
    use std::io::{Read, Write};
    let mut target = addr;
    if target.ip().is_unspecified() {
        target.set_ip(if addr.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    let mut s = std::net::TcpStream::connect_timeout(&target, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut reply = Vec::new();
    let _ = s.take(4096).read_to_end(&mut reply);
    let reply = String::from_utf8_lossy(&reply);
    let code = reply.lines().next()?.split(' ').nth(1)?.to_string();
    let body = reply.split("\r\n\r\n").nth(1)?.trim().to_string();
    matches!(body.as_str(), "running" | "starting" | "stopping").then(|| format!("{code} {body}"))
}

fn check_token(path: &Path) -> anyhow::Result<String> {
    use std::os::unix::fs::PermissionsExt;
    let token = read_token(path)?;
    let mut line = format!("{}: writes enabled ({} characters)", path.display(), token.len());
    if token.len() < 16 {
        line += "; WARN a token under 16 characters can be guessed: use e.g. `openssl rand -hex 32`";
    }
    if let Ok(meta) = std::fs::metadata(path) {
        if meta.permissions().mode() & 0o077 != 0 {
            line += &format!(
                "; WARN the file is readable by others (mode {:o}): chmod 600",
                meta.permissions().mode() & 0o777
            );
        }
    }
    Ok(line)
}

/// Whether linesight could append to `path`, without creating anything now.
fn writable(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    if path.exists() {
        std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .with_context(|| format!("{}: cannot append", path.display()))?;
        return Ok(());
    }
    // The nearest folder that exists must let us create the rest.
    let mut dir = path.parent();
    while let Some(d) = dir {
        if d.as_os_str().is_empty() {
            dir = Some(Path::new("."));
            continue;
        }
        if d.exists() {
            let c = std::ffi::CString::new(d.as_os_str().as_bytes())?;
            // SAFETY: a NUL-terminated path we own.
            if unsafe { libc::access(c.as_ptr(), libc::W_OK | libc::X_OK) } == 0 {
                return Ok(());
            }
            bail!(
                "{}: cannot create it, folder {} is not writable",
                path.display(),
                d.display()
            );
        }
        dir = d.parent();
    }
    bail!("{}: no folder to create it in", path.display())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_quiet_and_anything_else_is_a_warning_that_says_why() {
        assert_eq!(exposure_warning("127.0.0.1:8080".parse().unwrap(), false), None);
        assert_eq!(exposure_warning("[::1]:8080".parse().unwrap(), false), None);
        let open = exposure_warning("0.0.0.0:8080".parse().unwrap(), false).unwrap();
        assert!(
            open.starts_with("WARN ") && open.contains("without authentication"),
            "{open}"
        );
        let plain = exposure_warning("192.0.2.10:8080".parse().unwrap(), true).unwrap();
        assert!(plain.contains("no TLS") && plain.contains("clear text"), "{plain}");
    }

    #[test]
    fn a_token_is_one_printable_line() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("token");
        std::fs::write(&f, "  0123456789abcdef0123 \nsecond line\n").unwrap();
        assert_eq!(read_token(&f).unwrap(), "0123456789abcdef0123");
        std::fs::write(&f, "\n").unwrap();
        assert!(read_token(&f).unwrap_err().to_string().contains("is empty"));
        std::fs::write(&f, "two words\n").unwrap();
        assert!(read_token(&f).unwrap_err().to_string().contains("printable ASCII"));
        assert!(read_token(&dir.path().join("none"))
            .unwrap_err()
            .to_string()
            .contains("cannot read"));
    }

    #[test]
    fn a_short_or_open_token_file_is_warned_about() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("token");
        std::fs::write(&f, "short\n").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        let line = check_token(&f).unwrap();
        assert!(
            line.contains("WARN a token under 16") && line.contains("chmod 600"),
            "{line}"
        );
        std::fs::write(&f, "0123456789abcdef0123456789abcdef\n").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(!check_token(&f).unwrap().contains("WARN"));
    }

    fn config(dir: &Path, http: &str) -> Config {
        let text = format!(
            "[camera]\nkind = \"synthetic\"\n[model]\ndir = \"{}/models/sim-flange\"\n[reject]\ndelay_ms = 300\n\
             [reject.output]\nkind = \"simulated\"\n[http]\n{http}\n",
            env!("CARGO_MANIFEST_DIR")
        );
        Config::parse(&text, Path::new("t.toml"), dir.to_path_buf()).unwrap()
    }

    fn line<'a>(lines: &'a [(&str, anyhow::Result<String>)], what: &str) -> Vec<&'a str> {
        lines
            .iter()
            .filter(|(w, _)| *w == what)
            .map(|(_, r)| r.as_ref().map(String::as_str).unwrap_or("PROBLEM"))
            .collect()
    }

    #[test]
    fn check_says_what_it_found_and_warns_of_an_open_listener() {
        let dir = tempfile::tempdir().unwrap();
        let lines = check(&config(dir.path(), "listen = \"0.0.0.0:0\""));
        let listen = line(&lines, "http listen");
        assert!(listen[0].contains("a free port is taken at start"), "{listen:?}");
        assert!(
            listen[1].starts_with("WARN http.listen 0.0.0.0:0 is reachable from other hosts without authentication")
        );
        assert_eq!(
            line(&lines, "http writes"),
            ["none: read-only page (no http.token_file)"]
        );
        let range = line(&lines, "http threshold");
        assert!(range[0].starts_with("writes may set 4.262093 to 13.48"), "{range:?}");
        assert!(line(&lines, "http images")[0].contains("record.save = \"none\""));

        let token = dir.path().join("token");
        std::fs::write(&token, "0123456789abcdef0123456789abcdef\n").unwrap();
        std::fs::set_permissions(&token, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        let lines = check(&config(
            dir.path(),
            &format!("listen = \"127.0.0.1:0\"\ntoken_file = \"{}\"", token.display()),
        ));
        assert!(
            lines.iter().all(|(_, r)| r.as_ref().is_ok_and(|l| !l.contains("WARN"))),
            "{lines:?}"
        );
        assert!(line(&lines, "http token")[0].ends_with("writes enabled (32 characters)"));
        let audit = dir.path().join("audit.jsonl").display().to_string();
        assert!(
            line(&lines, "http audit log")[0].starts_with(&audit),
            "beside the results"
        );

        let lines = check(&config(dir.path(), "token_file = \"missing\""));
        assert_eq!(line(&lines, "http token"), ["PROBLEM"]);
    }

    #[test]
    fn check_finds_the_port_taken_by_another_program() {
        let dir = tempfile::tempdir().unwrap();
        let other = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = other.local_addr().unwrap();
        let lines = check(&config(dir.path(), &format!("listen = \"{addr}\"")));
        let (_, r) = lines.iter().find(|(w, _)| *w == "http listen").unwrap();
        let e = r.as_ref().unwrap_err().to_string();
        assert!(e.contains("in use by another program"), "{e}");
    }

    #[test]
    fn the_audit_log_is_checked_without_being_created() {
        let dir = tempfile::tempdir().unwrap();
        let audit = dir.path().join("new/sub/audit.jsonl");
        writable(&audit).unwrap();
        assert!(!audit.exists() && !dir.path().join("new").exists());
    }
}
