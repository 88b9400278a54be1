//! The plant's side of the line: what linesight tells MQTT, the web page and its API,
//! Prometheus, and a PLC over Modbus TCP or OPC UA.
//!
//! ```text
//! record thread ──LineEvent──▶ Sinks ──feed (bounded, drop-oldest)──▶ each sink's own thread(s)
//! ```
//!
//! Off the frame path by construction: `Sinks::send` never blocks. A sink that falls
//! behind (slow, hung or absent peer) loses its oldest events, counted in its feed, and
//! never delays a verdict or a pulse. Each sink may run an async runtime of its own.

mod cadence;
mod controls;
pub mod feed;
pub mod http;
pub mod modbus;
pub mod mqtt;
#[cfg(feature = "opcua")]
pub mod opcua;

pub use cadence::{Cadence, Headline};
pub use controls::Controls;

use crate::config::Config;
use crate::model::Manifest;
use crate::record::{PartRecord, Summary};
use crate::source::CameraState;
use feed::{FeedReceiver, FeedSender};
use serde::Serialize;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// A result as a PLC takes it: 1 pass, 2 rejected on its score, 3 rejected fail-safe
/// (the part could not be judged on its score). Modbus's `result_code`, OPC UA's `ResultState`.
pub fn result_code(r: &PartRecord) -> u16 {
    use crate::frame::{Reason, Verdict};
    match (r.verdict, r.reason) {
        (Verdict::Pass, _) => 1,
        (Verdict::Reject, Reason::AboveThreshold) => 2,
        (Verdict::Reject, _) => 3,
    }
}

/// `check`'s probe of a sink's listening address: free, linesight could listen there.
/// `usual_port` is the section's default, for the hint about ports below 1024.
pub(crate) fn probe_listen(addr: std::net::SocketAddr, usual_port: u16) -> anyhow::Result<String> {
    use anyhow::bail;
    if addr.port() == 0 {
        return Ok(format!("{addr}: a free port is taken at start and logged"));
    }
    match std::net::TcpListener::bind(addr) {
        Ok(_) => Ok(format!("{addr}: free")),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            bail!("{addr}: in use (by another program, or a linesight already running): linesight run would not start")
        }
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => bail!(
            "{addr}: cannot listen: {e} (ports below 1024 need root or CAP_NET_BIND_SERVICE; the default is {usual_port})"
        ),
        Err(e) => bail!("{addr}: cannot listen: {e}"),
    }
}

/// A secret file named in the config (`http.token_file`, `opcua.users_file`): absolute as
/// given; relative in `$CREDENTIALS_DIRECTORY` when systemd sets it (`LoadCredential=`),
/// else next to the config file.
pub(crate) fn secret_path(config: &Config, file: &std::path::Path) -> PathBuf {
    if file.is_absolute() {
        return file.to_path_buf();
    }
    match std::env::var_os("CREDENTIALS_DIRECTORY") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir).join(file),
        _ => config.resolve(file),
    }
}

/// At the end of a run, each sink gets this long for what it still holds (buffered
/// results, the last state, the offline status) ...
pub(crate) const STOP_WITHIN: Duration = Duration::from_millis(1500);
/// ... and the record thread waits this long for all of them together.
pub const STOP_WAIT: Duration = Duration::from_secs(2);

/// What the line tells the plant.
#[derive(Clone, Debug)]
pub enum LineEvent {
    /// One part's verdict, as written to the results log. `seq` counts the run's parts
    /// from 1 (for de-duplication downstream); `image` is the saved overlay when
    /// `record.save` kept one.
    Part {
        seq: u64,
        record: Arc<PartRecord>,
        image: Option<PathBuf>,
    },
    /// The line's state: every second, parts or not, and at once when its headline
    /// changes (the run state, the camera up or down): see [`Cadence`].
    State(Arc<LineState>),
}

/// Where the run is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    /// Warm and armed: parts are being inspected.
    Running,
    /// Draining after Ctrl-C/SIGTERM or the end of the source.
    Stopping,
}

/// Facts that hold for the whole run.
#[derive(Clone, Debug, Serialize)]
pub struct LineInfo {
    /// New at every start: joins a run's messages.
    pub run_id: String,
    pub model: String,
    pub model_sha256: String,
    /// The execution provider serving the model.
    pub provider: String,
    /// sha256 of the config file's text: which settings the line runs with.
    pub config_sha256: String,
    /// The config file's text (shown read-only on the web page).
    #[serde(skip)]
    pub config_text: String,
    pub threshold: f32,
    /// The reject output, as `describe()` gives it.
    pub reject_output: String,
}

/// The line's state at one moment.
#[derive(Clone, Debug, Serialize)]
pub struct LineState {
    pub run_state: RunState,
    /// Wall-clock time of this state (Unix ms).
    pub unix_ms: u64,
    pub summary: Summary,
    /// The camera up or down and since when; none before it opened.
    pub camera: Option<CameraState>,
    /// The last part decided, if any.
    pub last_part: Option<u64>,
}

impl LineInfo {
    /// The run's facts; `run_id` is new at every start (Unix ms and process id, in hex).
    pub fn new(config: &Config, model: &Manifest, provider: &str, threshold: f32, reject_output: String) -> LineInfo {
        use sha2::Digest;
        let unix_ms = crate::clock::unix_ms();
        LineInfo {
            run_id: format!("{unix_ms:x}-{:x}", std::process::id()),
            model: model.name.clone(),
            model_sha256: model.sha256.clone(),
            provider: provider.to_string(),
            config_sha256: crate::model::hex(&sha2::Sha256::digest(config.text.as_bytes())),
            config_text: config.text.clone(),
            threshold,
            reject_output,
        }
    }
}

/// Starts the sinks the config names (none by default).
pub fn open(config: &Config, info: &LineInfo) -> anyhow::Result<Sinks> {
    let mut sinks = Sinks::none();
    mqtt::open(config, info, &mut sinks)?;
    http::open(&mut sinks, config, info)?;
    modbus::open(&mut sinks, config, info)?;
    #[cfg(feature = "opcua")]
    opcua::open(&mut sinks, config, info)?;
    Ok(sinks)
}

/// `linesight check`'s lines for the sinks the config names, in the order they start.
pub fn check(config: &Config) -> Vec<(&'static str, anyhow::Result<String>)> {
    let mut lines = mqtt::check(config);
    lines.extend(http::check(config));
    lines.extend(modbus::check(config));
    #[cfg(feature = "opcua")]
    lines.extend(opcua::check(config));
    lines
}

/// The started sinks. Dropping it (or `stop`) closes their feeds; each sink then sends
/// what it must (MQTT's offline status) and ends.
pub struct Sinks {
    running: Vec<Running>,
    /// What the sinks may change in the line (the threshold), read by the judge thread.
    controls: Arc<Controls>,
}

/// One started sink: the line's end of its feed and its thread.
struct Running {
    name: String,
    feed: FeedSender<LineEvent>,
    thread: std::thread::JoinHandle<SinkReport>,
}

/// What a sink's thread says as it ends, for the run's summary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SinkReport {
    /// For a sink that delivers every part's result (MQTT): what became of them.
    pub results: Option<Delivery>,
}

/// What became of the results a sink was given, at the end of the run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Delivery {
    /// Acknowledged by the peer (the broker).
    pub sent: u64,
    /// Given up, the oldest first, because the buffer was full.
    pub dropped: u64,
    /// Still buffered or unacknowledged at the stop: lost with the process.
    pub unsent: u64,
}

/// One sink's figures in the run's summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkSummary {
    pub name: String,
    /// Events its feed dropped because the sink was behind.
    pub feed_dropped: u64,
    /// Its own report; none if it was still busy when the stop's wait ran out.
    pub report: Option<SinkReport>,
}

impl SinkSummary {
    /// Its line in the run's summary.
    pub fn render(&self) -> String {
        let own = match &self.report {
            None => {
                "still busy at the end of the stop's wait (a hung peer?): its own figures are unknown; ".to_string()
            }
            Some(SinkReport { results: Some(d) }) => format!(
                "{} result(s) acknowledged, {} dropped (buffer full), {} unsent at the stop; ",
                d.sent, d.dropped, d.unsent
            ),
            Some(SinkReport { results: None }) => String::new(),
        };
        format!("{:<10} {own}{} feed event(s) dropped\n", self.name, self.feed_dropped)
    }
}

impl Sinks {
    /// No sink configured: `send` does nothing.
    pub fn none() -> Sinks {
        Sinks {
            running: Vec::new(),
            controls: Arc::default(),
        }
    }

    /// The line's controls, shared with the sinks that may write them.
    pub fn controls(&self) -> Arc<Controls> {
        Arc::clone(&self.controls)
    }

    /// Adds a sink: `run` gets the receiving end of a feed of `capacity` events and runs
    /// on its own thread until the feed is closed; what it returns goes to the run's summary.
    pub fn add(
        &mut self,
        name: &str,
        capacity: usize,
        run: impl FnOnce(FeedReceiver<LineEvent>) -> SinkReport + Send + 'static,
    ) -> anyhow::Result<()> {
        let (tx, rx) = feed::feed(capacity);
        let thread = std::thread::Builder::new()
            .name(format!("ls-sink-{name}"))
            .spawn(move || run(rx))?;
        self.running.push(Running {
            name: name.to_string(),
            feed: tx,
            thread,
        });
        Ok(())
    }

    /// Hands the event to every sink; never blocks.
    pub fn send(&self, event: LineEvent) {
        for r in &self.running {
            r.feed.push(event.clone());
        }
    }

    /// Closes the feeds and waits up to `within` for the sinks to finish; a sink still
    /// busy then (a hung peer) is left behind, so that shutdown stays bounded. Returns
    /// each sink's figures, in the order they were added.
    pub fn stop(self, within: Duration) -> Vec<SinkSummary> {
        let (feeds, threads): (Vec<_>, Vec<_>) = self.running.into_iter().map(|r| (r.feed, (r.name, r.thread))).unzip();
        // Final: nothing is pushed after this.
        let dropped: Vec<u64> = feeds.iter().map(FeedSender::dropped).collect();
        drop(feeds);
        let end = std::time::Instant::now() + within;
        threads
            .into_iter()
            .zip(dropped)
            .map(|((name, t), feed_dropped)| {
                while !t.is_finished() && std::time::Instant::now() < end {
                    std::thread::sleep(Duration::from_millis(10));
                }
                // A sink that panicked reports nothing, as one left behind.
                let report = if t.is_finished() { t.join().ok() } else { None };
                SinkSummary {
                    name,
                    feed_dropped,
                    report,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(last_part: u64) -> LineEvent {
        LineEvent::State(Arc::new(LineState {
            run_state: RunState::Running,
            unix_ms: 0,
            summary: Summary::default(),
            camera: None,
            last_part: Some(last_part),
        }))
    }

    #[test]
    fn stop_gives_each_sinks_report_and_its_feed_drops() {
        let mut sinks = Sinks::none();
        let results = Delivery {
            sent: 3,
            dropped: 1,
            unsent: 2,
        };
        // "slow" reads nothing until all four events are in its feed of 3: one dropped.
        let (go, wait) = std::sync::mpsc::channel::<()>();
        sinks
            .add("slow", 3, move |rx| {
                let _ = wait.recv();
                while !matches!(rx.recv_timeout(Duration::from_secs(60)), feed::Recv::Closed) {}
                SinkReport { results: Some(results) }
            })
            .unwrap();
        sinks.add("plain", 8, |_| SinkReport::default()).unwrap();
        (1..=4).for_each(|n| sinks.send(state(n)));
        drop(go);
        // Both end once their feeds close; the wait is only an upper bound.
        let summary = sinks.stop(Duration::from_secs(60));
        let want = |name: &str, feed_dropped, report| SinkSummary {
            name: name.into(),
            feed_dropped,
            report: Some(report),
        };
        assert_eq!(
            summary,
            [
                want("slow", 1, SinkReport { results: Some(results) }),
                want("plain", 0, SinkReport::default()),
            ]
        );
        assert_eq!(
            summary[0].render(),
            "slow       3 result(s) acknowledged, 1 dropped (buffer full), 2 unsent at the stop; 1 feed event(s) dropped\n"
        );
        assert_eq!(summary[1].render(), "plain      0 feed event(s) dropped\n");
    }

    #[test]
    fn a_sink_still_busy_at_the_stop_is_left_behind_with_its_feed_drops() {
        let mut sinks = Sinks::none();
        let (release, hold) = std::sync::mpsc::channel::<()>();
        sinks
            .add("hung", 1, move |_| {
                let _ = hold.recv();
                SinkReport::default()
            })
            .unwrap();
        (1..=3).for_each(|n| sinks.send(state(n)));
        // It cannot end before `release` is dropped: no wait at all is enough to see that.
        let summary = sinks.stop(Duration::ZERO);
        drop(release);
        assert_eq!(
            summary,
            [SinkSummary {
                name: "hung".into(),
                feed_dropped: 2,
                report: None
            }]
        );
        assert!(
            summary[0].render().starts_with("hung       still busy"),
            "{}",
            summary[0].render()
        );
    }
}
