//! The plant's side of the line: what linesight tells MQTT, the web page and its API,
//! and Prometheus.
//!
//! ```text
//! record thread ──LineEvent──▶ Sinks ──feed (bounded, drop-oldest)──▶ each sink's own thread(s)
//! ```
//!
//! Off the frame path by construction: `Sinks::send` never blocks. A sink that falls
//! behind (slow, hung or absent peer) loses its oldest events, counted in its feed, and
//! never delays a verdict or a pulse. Each sink may run an async runtime of its own.

mod controls;
pub mod feed;
pub mod http;
pub mod mqtt;

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
    /// The line's state: every second, and at once when the run state changes.
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
    Ok(sinks)
}

/// The started sinks. Dropping it (or `stop`) closes their feeds; each sink then sends
/// what it must (MQTT's offline status) and ends.
pub struct Sinks {
    feeds: Vec<FeedSender<LineEvent>>,
    threads: Vec<std::thread::JoinHandle<()>>,
    /// What the sinks may change in the line (the threshold), read by the judge thread.
    controls: Arc<Controls>,
}

impl Sinks {
    /// No sink configured: `send` does nothing.
    pub fn none() -> Sinks {
        Sinks {
            feeds: Vec::new(),
            threads: Vec::new(),
            controls: Arc::default(),
        }
    }

    /// The line's controls, shared with the sinks that may write them.
    pub fn controls(&self) -> Arc<Controls> {
        Arc::clone(&self.controls)
    }

    /// Adds a sink: `run` gets the receiving end of a feed of `capacity` events and runs
    /// on its own thread until the feed is closed.
    pub fn add(
        &mut self,
        name: &str,
        capacity: usize,
        run: impl FnOnce(FeedReceiver<LineEvent>) + Send + 'static,
    ) -> anyhow::Result<()> {
        let (tx, rx) = feed::feed(capacity);
        let thread = std::thread::Builder::new()
            .name(format!("ls-sink-{name}"))
            .spawn(move || run(rx))?;
        self.feeds.push(tx);
        self.threads.push(thread);
        Ok(())
    }

    /// Hands the event to every sink; never blocks.
    pub fn send(&self, event: LineEvent) {
        for f in &self.feeds {
            f.push(event.clone());
        }
    }

    /// Events dropped so far, summed over the sinks.
    pub fn dropped(&self) -> u64 {
        self.feeds.iter().map(FeedSender::dropped).sum()
    }

    /// Closes the feeds and waits up to `within` for the sinks to finish; a sink still
    /// busy then (a hung peer) is left behind, so that shutdown stays bounded.
    pub fn stop(mut self, within: Duration) {
        self.feeds.clear();
        let end = std::time::Instant::now() + within;
        for t in self.threads.drain(..) {
            while !t.is_finished() && std::time::Instant::now() < end {
                std::thread::sleep(Duration::from_millis(10));
            }
            if t.is_finished() {
                let _ = t.join();
            }
        }
    }
}
