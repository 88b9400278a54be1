//! systemd integration through `$NOTIFY_SOCKET` (the sd_notify protocol): `READY=1` once
//! the model is warm and the reject output armed, `STATUS=` lines for `systemctl status`,
//! `WATCHDOG=1` fed by the pipeline's heartbeat, `STOPPING=1` when the line drains.
//!
//! Without `NOTIFY_SOCKET` (not started by systemd with `Type=notify`) every call here
//! does nothing. The state is process-wide on purpose: systemd hands the process one
//! socket and one watchdog, and the hooks sit inside stage loops that otherwise know
//! nothing of services (see the `service::` lines in pipeline.rs).
//!
//! The watchdog is fed by the pipeline, not by a timer. The judge thread calls [`beat`]
//! every time round its loop, and waits at most [`beat_wait`] for anything to happen, so
//! an idle line (no parts) still beats. [`beat`] sends `WATCHDOG=1` every half
//! `WATCHDOG_USEC`, unless the inspect stage has been busy with one frame for longer than
//! that (a wedged inference). A wedged judge sends nothing; a wedged inference withholds
//! the ping; either way systemd's `WatchdogSec=` runs out and it restarts linesight.
//! The record's writer thread counts too: a results, image or metrics write blocked for
//! longer than that withholds the ping the same way (storage that hangs, a hung NFS
//! mount or SD card), and `STATUS=` says so; `record_errors` (results lines not written)
//! is in every `STATUS=` line once there are any.
//! A camera that delivers no frames is not a fault here: a triggered line waits for parts.
//!
//! Written on std's `UnixDatagram` rather than the `sd-notify` crate: the protocol is one
//! datagram per message to a path or abstract address, which std covers in a few lines,
//! and this way the send is non-blocking (a stuck systemd can never stall the judge).

use crate::clock;
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

/// STATUS= refresh period when systemd asked for no watchdog.
const STATUS_EVERY: Duration = Duration::from_secs(2);

/// A datagram socket aimed at systemd's notification socket.
pub struct Notifier {
    sock: UnixDatagram,
    addr: SocketAddr,
}

impl Notifier {
    /// `path` as in `$NOTIFY_SOCKET`: a file system path, or `@name` for an abstract socket.
    pub fn new(path: &OsStr) -> io::Result<Notifier> {
        let addr = match path.as_bytes().strip_prefix(b"@") {
            Some(name) => SocketAddr::from_abstract_name(name)?,
            None if path.as_bytes().starts_with(b"/") => SocketAddr::from_pathname(path)?,
            None => {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    format!(
                        "NOTIFY_SOCKET={}: only a path or an @abstract name is supported",
                        path.to_string_lossy()
                    ),
                ))
            }
        };
        let sock = UnixDatagram::unbound()?;
        sock.set_nonblocking(true)?;
        Ok(Notifier { sock, addr })
    }

    /// Sends one message: newline-separated `KEY=value` assignments.
    pub fn send(&self, msg: &str) -> io::Result<()> {
        self.sock.send_to_addr(msg.as_bytes(), &self.addr).map(|_| ())
    }
}

/// What the environment asks for, read once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `$NOTIFY_SOCKET`.
    pub socket: OsString,
    /// The watchdog timeout (`$WATCHDOG_USEC`), when it is meant for this process.
    pub watchdog: Option<Duration>,
}

impl Settings {
    /// From the variables systemd sets; `None` when there is no notification socket.
    /// A watchdog is only ours if `WATCHDOG_PID` is unset or names this process.
    pub fn parse(
        notify_socket: Option<OsString>,
        watchdog_usec: Option<&str>,
        watchdog_pid: Option<&str>,
        pid: u32,
    ) -> Option<Settings> {
        let socket = notify_socket.filter(|s| !s.is_empty())?;
        let ours = watchdog_pid.is_none_or(|p| p.trim().parse::<u32>() == Ok(pid));
        let watchdog = watchdog_usec
            .and_then(|u| u.trim().parse::<u64>().ok())
            .filter(|&u| u > 0 && ours)
            .map(Duration::from_micros);
        Some(Settings { socket, watchdog })
    }

    /// How often WATCHDOG=1 goes out: half the timeout, as sd_watchdog_enabled(3) advises.
    pub fn ping_every(&self) -> Option<Duration> {
        self.watchdog.map(|w| w / 2)
    }
}

struct Service {
    notifier: Notifier,
    /// WATCHDOG=1 (or, without a watchdog, STATUS=) at most this often.
    tick_ns: u64,
    watchdog: bool,
    ready: AtomicBool,
    stopping: AtomicBool,
    last_tick_ns: AtomicU64,
    /// When the inspect stage took its current frame; 0 while it waits for one.
    busy_since_ns: AtomicU64,
    /// When the record's writer began its current write; 0 while idle.
    record_busy_since_ns: AtomicU64,
    record_errors: AtomicU64,
    parts: AtomicU64,
    rejects: AtomicU64,
    /// A stall was logged (once per stall).
    stall_logged: AtomicBool,
    send_failed: AtomicBool,
}

static SERVICE: OnceLock<Option<Service>> = OnceLock::new();

fn service() -> Option<&'static Service> {
    SERVICE
        .get_or_init(|| {
            let usec = std::env::var("WATCHDOG_USEC").ok();
            let pid = std::env::var("WATCHDOG_PID").ok();
            let settings = Settings::parse(
                std::env::var_os("NOTIFY_SOCKET"),
                usec.as_deref(),
                pid.as_deref(),
                std::process::id(),
            )?;
            let notifier = match Notifier::new(&settings.socket) {
                Ok(n) => n,
                Err(e) => {
                    log::warn!("systemd notification socket unusable: {e}");
                    return None;
                }
            };
            Some(Service {
                notifier,
                tick_ns: settings.ping_every().unwrap_or(STATUS_EVERY).as_nanos() as u64,
                watchdog: settings.watchdog.is_some(),
                ready: AtomicBool::new(false),
                stopping: AtomicBool::new(false),
                last_tick_ns: AtomicU64::new(0),
                busy_since_ns: AtomicU64::new(0),
                record_busy_since_ns: AtomicU64::new(0),
                record_errors: AtomicU64::new(0),
                parts: AtomicU64::new(0),
                rejects: AtomicU64::new(0),
                stall_logged: AtomicBool::new(false),
                send_failed: AtomicBool::new(false),
            })
        })
        .as_ref()
}

impl Service {
    fn send(&self, msg: &str) {
        if let Err(e) = self.notifier.send(msg) {
            if !self.send_failed.swap(true, Ordering::Relaxed) {
                log::warn!("cannot notify systemd: {e} (further failures not shown)");
            }
        }
    }
}

/// The line is inspecting: model warm, reject output armed. Sends READY=1 once.
pub fn ready(what: &str) {
    let Some(s) = service() else { return };
    if s.ready.swap(true, Ordering::SeqCst) {
        return;
    }
    s.last_tick_ns.store(clock::now_ns(), Ordering::Relaxed);
    s.send(&format!("READY=1\nSTATUS=ready: {what}"));
    let ns = s.tick_ns as f64 / 1e9;
    if s.watchdog {
        log::info!("systemd notified: ready; watchdog fed every {ns:.2} s by the judge's heartbeat");
    } else {
        log::info!("systemd notified: ready (no watchdog asked for)");
    }
}

/// The line is draining before exit: STOPPING=1. The watchdog stays fed while it drains.
pub fn stopping() {
    let Some(s) = service() else { return };
    s.stopping.store(true, Ordering::SeqCst);
    s.send(&format!(
        "STOPPING=1\nSTATUS=stopping: finishing the parts in flight ({} parts inspected)",
        s.parts.load(Ordering::Relaxed)
    ));
}

/// The judge is alive. Sends WATCHDOG=1 (and a STATUS= line) when one is due, unless
/// inspection is stuck on one frame. Called from the judge loop only.
pub fn beat() {
    let Some(s) = service() else { return };
    if !s.ready.load(Ordering::Relaxed) {
        return;
    }
    let now = clock::now_ns();
    let stuck_for =
        |since: u64| (since != 0 && now.saturating_sub(since) > s.tick_ns).then(|| (now - since) as f64 / 1e9);
    let stuck = match (
        stuck_for(s.busy_since_ns.load(Ordering::Relaxed)),
        stuck_for(s.record_busy_since_ns.load(Ordering::Relaxed)),
    ) {
        (Some(t), _) => Some((t, "one inspection running")),
        (None, Some(t)) => Some((t, "a results write blocked")),
        (None, None) => None,
    };
    // A ping withheld during a stall is sent as soon as the stage is back, not a tick later.
    let recovered = stuck.is_none() && s.stall_logged.load(Ordering::Relaxed);
    if now < s.last_tick_ns.load(Ordering::Relaxed) + s.tick_ns && !recovered {
        return;
    }
    s.last_tick_ns.store(now, Ordering::Relaxed);
    let (parts, rejects) = (s.parts.load(Ordering::Relaxed), s.rejects.load(Ordering::Relaxed));
    let errors = match s.record_errors.load(Ordering::Relaxed) {
        0 => String::new(),
        n => format!(", record_errors {n}"),
    };
    let mut msg = String::new();
    if s.watchdog && stuck.is_none() {
        msg.push_str("WATCHDOG=1\n");
    }
    if let Some((t, what)) = stuck {
        if !s.stall_logged.swap(true, Ordering::Relaxed) {
            log::warn!(
                "{what} for {t:.1} s: watchdog ping withheld{}",
                if s.watchdog {
                    "; systemd restarts linesight if it lasts past WatchdogSec"
                } else {
                    ""
                }
            );
        }
        msg.push_str(&format!(
            "STATUS=stalled: {what} for {t:.1} s ({parts} parts, {rejects} rejected{errors})"
        ));
    } else {
        if recovered {
            s.stall_logged.store(false, Ordering::Relaxed);
            log::info!("inspection and recording are moving again: watchdog fed again");
        }
        if !s.stopping.load(Ordering::Relaxed) {
            msg.push_str(&format!(
                "STATUS=inspecting, {parts} parts ({rejects} rejected{errors})"
            ));
        }
    }
    if !msg.is_empty() {
        s.send(msg.trim_end());
    }
}

/// The longest the judge may wait before it beats again: an eighth of the watchdog
/// timeout with a watchdog (pings then come every 1/2 to 5/8 of it, leaving 3/8 for
/// a loaded machine), else 1 s.
pub fn beat_wait() -> Duration {
    match service() {
        Some(s) if s.watchdog => Duration::from_nanos(s.tick_ns / 4).max(Duration::from_millis(1)),
        _ => Duration::from_secs(1),
    }
}

/// The inspect stage took a frame (`true`) or handed its outcome on (`false`).
pub fn inspecting(busy: bool) {
    let Some(s) = service() else { return };
    s.busy_since_ns
        .store(if busy { clock::now_ns() } else { 0 }, Ordering::Relaxed);
}

/// The record's writer began (`true`) or ended (`false`) a write to storage.
pub fn record_busy(busy: bool) {
    let Some(s) = service() else { return };
    s.record_busy_since_ns
        .store(if busy { clock::now_ns() } else { 0 }, Ordering::Relaxed);
}

/// Results lines not written so far.
pub fn record_errors(total: u64) {
    let Some(s) = service() else { return };
    s.record_errors.fetch_max(total, Ordering::Relaxed);
}

/// The judge decided a part.
pub fn decided(rejected: bool) {
    let Some(s) = service() else { return };
    s.parts.fetch_add(1, Ordering::Relaxed);
    if rejected {
        s.rejects.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(sock: Option<&str>, usec: Option<&str>, pid: Option<&str>) -> Option<Settings> {
        Settings::parse(sock.map(OsString::from), usec, pid, 4242)
    }

    #[test]
    fn without_notify_socket_nothing_is_sent() {
        assert_eq!(parse(None, Some("1000000"), None), None);
        assert_eq!(parse(Some(""), None, None), None);
    }

    #[test]
    fn watchdog_pinged_at_half_its_timeout_when_it_is_ours() {
        let s = parse(Some("/run/systemd/notify"), Some("10000000"), None).unwrap();
        assert_eq!(s.watchdog, Some(Duration::from_secs(10)));
        assert_eq!(s.ping_every(), Some(Duration::from_secs(5)));
        let s = parse(Some("/run/systemd/notify"), Some("10000000"), Some("4242")).unwrap();
        assert_eq!(s.ping_every(), Some(Duration::from_secs(5)));
    }

    #[test]
    fn watchdog_meant_for_another_process_or_garbled_is_ignored() {
        let other = parse(Some("/run/systemd/notify"), Some("10000000"), Some("17")).unwrap();
        assert_eq!(other.watchdog, None);
        for bad in ["", "0", "ten", "-5"] {
            let s = parse(Some("/run/systemd/notify"), Some(bad), None).unwrap();
            assert_eq!(s.watchdog, None, "WATCHDOG_USEC={bad:?}");
        }
    }

    #[test]
    fn notifier_sends_datagrams_to_a_path_and_to_an_abstract_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let listener = UnixDatagram::bind(&path).unwrap();
        Notifier::new(path.as_os_str())
            .unwrap()
            .send("READY=1\nSTATUS=x")
            .unwrap();
        let mut buf = [0u8; 64];
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1\nSTATUS=x");

        let name = format!("linesight-test-{}", std::process::id());
        let abs = UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap()).unwrap();
        Notifier::new(OsStr::new(&format!("@{name}")))
            .unwrap()
            .send("WATCHDOG=1")
            .unwrap();
        let n = abs.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"WATCHDOG=1");
    }

    #[test]
    fn relative_or_vsock_addresses_are_refused() {
        assert!(Notifier::new(OsStr::new("notify.sock")).is_err());
        assert!(Notifier::new(OsStr::new("vsock:2:1234")).is_err());
    }
}
