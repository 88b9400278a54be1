//! `[mqtt]`: every part's result, the line's state and linesight's health, published to
//! the plant's broker (MQTT 3.1.1, QoS 1), with store and forward while it is away.
//!
//! ```text
//! feed (bounded, drop-oldest) ──bridge thread──▶ session (tokio, one thread) ──▶ rumqttc event loop ──▶ broker
//!                                                  └─ Outbox: queued → in flight → acknowledged
//! ```
//!
//! The session owns the outbox and decides what to publish; each connection has an event
//! loop of its own (a new one after every loss), so that nothing requested on a dead
//! connection can go out later under a packet id the session no longer knows. Topics,
//! messages and the outbox are pure (message.rs, outbox.rs); this file connects them to
//! the broker. The topics and their JSON: docs/mqtt.md.

pub mod message;
pub mod outbox;

use crate::clock::{self, unix_ms};
use crate::config::{Broker, Config, MqttConfig, PublishResults};
use crate::frame::Verdict;
use crate::sinks::feed::{FeedReceiver, Recv};
use crate::sinks::{Cadence, Delivery, Headline, LineEvent, LineInfo, LineState, SinkReport, Sinks, STOP_WITHIN};
use anyhow::Context;
use message::{LastPart, Offline, SinkCounters, Topics};
use outbox::{Outbox, Pending, Tag, Tracker};
use rumqttc::{
    AsyncClient, ConnectReturnCode, ConnectionError, Event, EventLoop, LastWill, MqttOptions, Outgoing, Packet, QoS,
    SubscribeReasonCode, TlsConfiguration, Transport,
};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::{sleep_until, Instant};

/// Results handed to the client and awaiting their PUBACK at most.
const MAX_IN_FLIGHT: usize = 32;
/// Packet ids the client cycles through: far more than are ever outstanding, so that a
/// broker acknowledging out of order cannot make an id collide.
const PACKET_IDS: u16 = 1024;
/// Events between the line and the bridge thread (the bridge empties it at once).
const FEED_EVENTS: usize = 1024;
/// Of which the offline status is given at least this much.
const OFFLINE_WITHIN: Duration = Duration::from_millis(400);

/// What a connection needs, resolved once at start: files read, names made.
pub struct Settings {
    broker: Broker,
    topics: Topics,
    device_id: String,
    client_id: String,
    credentials: Option<Credentials>,
    tls: Option<Tls>,
    keep_alive: Duration,
    connect_timeout_s: u64,
    reconnect: (Duration, Duration),
    state_interval: Duration,
    results: PublishResults,
    buffer_parts: usize,
}

struct Credentials {
    username: String,
    password: String,
    path: PathBuf,
}

struct Tls {
    config: Arc<rustls::ClientConfig>,
    /// Where the trust came from, for `check`.
    roots: String,
    client_cert: Option<PathBuf>,
}

/// `username:password` from the first line of a credentials file, split at the first `:`.
pub fn parse_credentials(text: &str) -> Result<(String, String), String> {
    let line = text.lines().next().unwrap_or("").trim_end_matches('\r');
    match line.split_once(':') {
        Some((user, pw)) if !user.is_empty() => Ok((user.to_string(), pw.to_string())),
        _ => Err("expected username:password on the first line".to_string()),
    }
}

/// The host name, from the kernel.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default()
}

impl Settings {
    /// Reads the files `[mqtt]` names; `None` when there is no `[mqtt]`.
    pub fn resolve(config: &Config) -> anyhow::Result<Option<Settings>> {
        let Some(m) = &config.mqtt else { return Ok(None) };
        let broker = m.endpoint().map_err(anyhow::Error::msg).context("mqtt.broker")?;
        let device_id = m
            .device_id
            .clone()
            .unwrap_or_else(|| message::device_id_from_host(&host_name()));
        let client_id = m.client_id.clone().unwrap_or_else(|| format!("linesight-{device_id}"));
        let credentials_dir = std::env::var("CREDENTIALS_DIRECTORY").ok();
        let secret = |key: &str, p: &Path| {
            MqttConfig::secret_path(p, &config.base_dir, credentials_dir.as_deref())
                .map_err(anyhow::Error::msg)
                .with_context(|| key.to_string())
        };
        let credentials = match &m.credentials_file {
            None => None,
            Some(p) => {
                let path = secret("mqtt.credentials_file", p)?;
                let text = crate::files::read_text_capped(&path, crate::files::TEXT_MAX_BYTES)
                    .with_context(|| format!("mqtt.credentials_file: cannot read {}", path.display()))?;
                let (username, password) = parse_credentials(&text)
                    .map_err(anyhow::Error::msg)
                    .with_context(|| format!("mqtt.credentials_file {}", path.display()))?;
                Some(Credentials {
                    username,
                    password,
                    path,
                })
            }
        };
        let tls = if broker.tls {
            let key = match &m.client_key_file {
                Some(p) => Some(secret("mqtt.client_key_file", p)?),
                None => None,
            };
            Some(tls_config(m, config, key.as_deref())?)
        } else {
            None
        };
        Ok(Some(Settings {
            topics: Topics::new(&m.topic_prefix, &device_id),
            broker,
            device_id,
            client_id,
            credentials,
            tls,
            keep_alive: Duration::from_secs(m.keep_alive_s),
            connect_timeout_s: m.connect_timeout_s,
            reconnect: (
                Duration::from_millis(m.reconnect_ms),
                Duration::from_millis(m.reconnect_max_ms),
            ),
            state_interval: Duration::from_secs(m.state_interval_s),
            results: m.results,
            buffer_parts: m.buffer_parts,
        }))
    }

    /// The client's options; `will` is the last will (none for `check`'s probe).
    fn options(&self, client_id: &str, will: Option<LastWill>) -> MqttOptions {
        // rumqttc joins host and port with ':' for the lookup: an IPv6 address needs brackets.
        let host = if self.broker.host.contains(':') {
            format!("[{}]", self.broker.host)
        } else {
            self.broker.host.clone()
        };
        let mut o = MqttOptions::new(client_id, host, self.broker.port);
        o.set_keep_alive(self.keep_alive)
            .set_clean_session(true)
            .set_inflight(PACKET_IDS)
            .set_max_packet_size(1 << 20, 1 << 20);
        if let Some(c) = &self.credentials {
            o.set_credentials(c.username.clone(), c.password.clone());
        }
        if let Some(t) = &self.tls {
            o.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(Arc::clone(
                &t.config,
            ))));
        }
        if let Some(w) = will {
            o.set_last_will(w);
        }
        o
    }

    fn new_client(&self, client_id: &str, will: Option<LastWill>) -> (AsyncClient, EventLoop) {
        let (client, mut el) = AsyncClient::new(self.options(client_id, will), 2 * MAX_IN_FLIGHT + 16);
        let mut net = el.network_options();
        net.set_connection_timeout(self.connect_timeout_s);
        el.set_network_options(net);
        (client, el)
    }

    /// The broker's URL and connect timeout, for error messages.
    fn broker_hint(&self) -> (String, u64) {
        (self.broker.url(), self.connect_timeout_s)
    }

    /// One line for `check` and the log: where, what, how much.
    pub fn describe(&self) -> String {
        let results = match self.results {
            PublishResults::All => "all results",
            PublishResults::Rejects => "rejects only",
            PublishResults::None => "no results",
        };
        format!(
            "{} as {}, topics {}/{{status,state,result}}, {results}, buffer {} parts",
            self.broker.url(),
            self.client_id,
            self.topics.base,
            self.buffer_parts
        )
    }
}

/// rustls with the ring provider, chosen here (no process-wide default needed): the CA
/// from `mqtt.ca_file` or the system's trust store, and the client certificate if any.
/// A PEM file's bytes: a regular file, of a certificate's or a key's size at most.
fn pem_file(key: &str, path: &Path) -> anyhow::Result<Vec<u8>> {
    crate::files::read_capped(path, crate::files::TEXT_MAX_BYTES)
        .with_context(|| format!("{key}: cannot read {}", path.display()))
}

fn tls_config(m: &MqttConfig, config: &Config, key: Option<&Path>) -> anyhow::Result<Tls> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    let described = match &m.ca_file {
        Some(p) => {
            let path = config.resolve(p);
            let certs = CertificateDer::pem_slice_iter(&pem_file("mqtt.ca_file", &path)?)
                .collect::<Result<Vec<_>, _>>()
                .with_context(|| format!("mqtt.ca_file: cannot read PEM certificates from {}", path.display()))?;
            let (added, _) = roots.add_parsable_certificates(certs);
            if added == 0 {
                anyhow::bail!("mqtt.ca_file: no usable certificate in {}", path.display());
            }
            format!("{added} CA certificate(s) from {}", path.display())
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                anyhow::bail!(
                    "mqtt.ca_file is unset and the system trust store holds no CA certificate: set mqtt.ca_file{}",
                    found.errors.first().map(|e| format!(" ({e})")).unwrap_or_default()
                );
            }
            format!("{added} CA certificate(s) from the system trust store")
        }
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS versions")?
        .with_root_certificates(roots);
    let (client_config, client_cert) = match (&m.client_cert_file, key) {
        (Some(cert), Some(key)) => {
            let cert = config.resolve(cert);
            let chain = CertificateDer::pem_slice_iter(&pem_file("mqtt.client_cert_file", &cert)?)
                .collect::<Result<Vec<_>, _>>()
                .with_context(|| format!("mqtt.client_cert_file: cannot read {}", cert.display()))?;
            if chain.is_empty() {
                anyhow::bail!("mqtt.client_cert_file: no certificate in {}", cert.display());
            }
            let key = PrivateKeyDer::from_pem_slice(&pem_file("mqtt.client_key_file", key)?)
                .with_context(|| format!("mqtt.client_key_file: cannot read a private key from {}", key.display()))?;
            let c = builder
                .with_client_auth_cert(chain, key)
                .context("mqtt.client_cert_file and client_key_file do not make a client certificate")?;
            (c, Some(cert))
        }
        _ => (builder.with_no_client_auth(), None),
    };
    Ok(Tls {
        config: Arc::new(client_config),
        roots: described,
        client_cert,
    })
}

/// Starts the MQTT sink if the config has `[mqtt]`. A file it names that cannot be read
/// stops the start; a broker that cannot be reached does not (it is retried, results
/// are buffered).
pub fn open(config: &Config, info: &LineInfo, sinks: &mut Sinks) -> anyhow::Result<()> {
    let Some(settings) = Settings::resolve(config)? else {
        return Ok(());
    };
    log::info!("mqtt: {}", settings.describe());
    let info = info.clone();
    sinks.add("mqtt", FEED_EVENTS, move |rx| run(settings, info, rx))
}

/// The sink's thread: a one-thread runtime for the session, and a bridge thread that
/// moves events from the line's feed into it. Without them nothing is published, and
/// there are no figures to report.
fn run(settings: Settings, info: LineInfo, rx: FeedReceiver<LineEvent>) -> SinkReport {
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            log::error!("mqtt: cannot start the sink's runtime: {e}; nothing is published");
            return SinkReport::default();
        }
    };
    let (tx, events) = mpsc::channel(256);
    let bridge = std::thread::Builder::new()
        .name("ls-sink-mqtt-feed".into())
        .spawn(move || loop {
            match rx.recv_timeout(Duration::from_secs(1)) {
                Recv::Item(e) => {
                    if tx.blocking_send((e, rx.dropped())).is_err() {
                        break;
                    }
                }
                Recv::Timeout if tx.is_closed() => break,
                Recv::Timeout => {}
                Recv::Closed => break,
            }
        });
    if let Err(e) = bridge {
        log::error!("mqtt: cannot start the feed thread: {e}; nothing is published");
        return SinkReport::default();
    }
    let (line, results) = rt.block_on(Session::new(settings, info).run(events));
    log::info!("mqtt: {line}");
    SinkReport { results: Some(results) }
}

/// What one connection's event loop tells the session.
#[derive(Debug)]
enum Net {
    Up,
    Written(u16),
    Acked(u16),
    /// Our DISCONNECT went out.
    Closed,
    Down(String),
}

/// Polls one connection until it fails or is closed; never reconnects (the session
/// makes a new connection, with a new event loop, after its backoff).
async fn drive(mut el: EventLoop, epoch: u64, broker: (String, u64), tx: mpsc::Sender<(u64, Net)>) {
    loop {
        let net = match el.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => Net::Up,
            Ok(Event::Incoming(Packet::PubAck(a))) => Net::Acked(a.pkid),
            Ok(Event::Outgoing(Outgoing::Publish(pkid))) => Net::Written(pkid),
            Ok(Event::Outgoing(Outgoing::AwaitAck(pkid))) => Net::Down(format!(
                "the broker acknowledged out of order (packet id {pkid} still unacknowledged)"
            )),
            Ok(Event::Outgoing(Outgoing::Disconnect)) => Net::Closed,
            Ok(_) => continue,
            Err(e) => Net::Down(describe(&e, &broker)),
        };
        let end = matches!(net, Net::Down(_) | Net::Closed);
        if tx.send((epoch, net)).await.is_err() || end {
            return;
        }
    }
}

/// A connection error as an operator reads it; `broker` is the URL and `connect_timeout_s`.
fn describe(e: &ConnectionError, broker: &(String, u64)) -> String {
    let (url, timeout_s) = broker;
    match e {
        ConnectionError::ConnectionRefused(code) => match code {
            ConnectReturnCode::BadUserNamePassword => {
                "the broker refused the user name or password (mqtt.credentials_file)".to_string()
            }
            ConnectReturnCode::NotAuthorized => {
                // Mosquitto answers a wrong password with this code, too.
                "the broker refused: not authorized (is the user name or password in mqtt.credentials_file wrong, or does the broker want one, or a client certificate?)".to_string()
            }
            ConnectReturnCode::BadClientId => "the broker refused the client id (mqtt.client_id)".to_string(),
            ConnectReturnCode::ServiceUnavailable => "the broker says it is unavailable".to_string(),
            ConnectReturnCode::RefusedProtocolVersion => "the broker does not accept MQTT 3.1.1".to_string(),
            ConnectReturnCode::Success => "connection refused".to_string(),
        },
        ConnectionError::Tls(t) => {
            let text = t.to_string();
            let hint = if text.contains("certificate") || text.contains("Certificate") {
                " (is mqtt.ca_file the CA that signed the broker's certificate, and does that certificate name the host in mqtt.broker?)"
            } else {
                ""
            };
            format!("TLS: {text}{hint}")
        }
        ConnectionError::MqttState(e) => e.to_string(),
        ConnectionError::NetworkTimeout => {
            format!("no answer from {url} within mqtt.connect_timeout_s ({timeout_s} s)")
        }
        ConnectionError::Io(io) => format!("cannot connect to {url}: {io}"),
        other => other.to_string(),
    }
}

struct Conn {
    client: AsyncClient,
    task: tokio::task::JoinHandle<()>,
    up: bool,
}

struct Session {
    s: Settings,
    info: LineInfo,
    outbox: Outbox,
    tracker: Tracker,
    conn: Option<Conn>,
    /// Counts connections made; events of an older one are ignored.
    epoch: u64,
    net_tx: mpsc::Sender<(u64, Net)>,
    net_rx: Option<mpsc::Receiver<(u64, Net)>>,
    latest: Option<Arc<LineState>>,
    /// When the latest state is published: every `mqtt.state_interval_s`, whether parts
    /// come or not, and at once when its headline changes.
    cadence: Cadence,
    /// Publish the latest state at the next chance, whatever the cadence says (after a
    /// (re)connection: the retained state may be stale).
    state_due: bool,
    /// The latest state has not been published yet. The cadence publishes only such a
    /// state: the line makes one every second, so an interval of 1 s cannot send the same
    /// state twice when the two clocks drift apart; it sends the next one as it comes.
    latest_new: bool,
    /// (parts seen, Unix ms) when the last state was published: the rate since then.
    rate_point: Option<(u64, u64)>,
    last_part: Option<LastPart>,
    online_due: bool,
    connects: u64,
    feed_dropped: u64,
    retry_at: Option<Instant>,
    backoff: Duration,
    outage: Option<(Instant, u64)>,
    stopping: bool,
    offline_sent: bool,
    offline_acked: bool,
}

impl Session {
    fn new(s: Settings, info: LineInfo) -> Session {
        let (net_tx, net_rx) = mpsc::channel(256);
        Session {
            outbox: Outbox::new(s.buffer_parts),
            backoff: s.reconnect.0,
            cadence: Cadence::new(s.state_interval),
            s,
            info,
            tracker: Tracker::default(),
            conn: None,
            epoch: 0,
            net_tx,
            net_rx: Some(net_rx),
            latest: None,
            state_due: false,
            latest_new: false,
            rate_point: None,
            last_part: None,
            online_due: true,
            connects: 0,
            feed_dropped: 0,
            retry_at: None,
            outage: None,
            stopping: false,
            offline_sent: false,
            offline_acked: false,
        }
    }

    fn counters(&self) -> SinkCounters {
        let c = &self.outbox.counts;
        SinkCounters {
            connected: self.conn.as_ref().is_some_and(|c| c.up),
            buffered: self.outbox.buffered() as u64,
            sent: c.sent,
            dropped: c.dropped,
            resent: c.resent,
            feed_dropped: self.feed_dropped,
            connects: self.connects,
        }
    }

    async fn run(mut self, mut events: mpsc::Receiver<(LineEvent, u64)>) -> (String, Delivery) {
        let mut net_rx = self.net_rx.take().expect("run once");
        self.connect();
        loop {
            self.pump();
            let retry = self.retry_at.filter(|_| self.conn.is_none());
            let state_at = self
                .next_state_ns()
                .map(|t| Instant::now() + Duration::from_nanos(t.saturating_sub(clock::now_ns())));
            tokio::select! {
                e = events.recv() => match e {
                    Some((event, dropped)) => {
                        self.feed_dropped = dropped;
                        self.take(event);
                    }
                    None => break,
                },
                Some((epoch, net)) = net_rx.recv() => {
                    if epoch == self.epoch {
                        self.on_net(net);
                    }
                }
                _ = sleep_until(retry.unwrap_or_else(Instant::now)), if retry.is_some() => {
                    self.retry_at = None;
                    self.connect();
                }
                // `pump` publishes it, at the top of the loop.
                _ = sleep_until(state_at.unwrap_or_else(Instant::now)), if state_at.is_some() => {}
            }
        }
        self.stop(&mut net_rx).await
    }

    /// One event from the line.
    fn take(&mut self, event: LineEvent) {
        match event {
            LineEvent::Part { seq, record, image } => {
                self.last_part = Some(LastPart::of(seq, &record));
                let publish = match self.s.results {
                    PublishResults::All => true,
                    PublishResults::Rejects => record.verdict == Verdict::Reject,
                    PublishResults::None => false,
                };
                if publish {
                    self.outbox.push(Pending {
                        seq,
                        payload: message::result(&self.info, &self.s.device_id, seq, &record, image.as_deref()),
                    });
                }
            }
            LineEvent::State(s) => {
                self.latest = Some(s);
                self.latest_new = true;
            }
        }
    }

    /// Whether the latest state is to be published at `now_ns`: after a (re)connection,
    /// or a new one as the cadence says. While stopping only a change counts: the
    /// stopping state is the last, then the offline status.
    fn state_wanted(&self, now_ns: u64) -> bool {
        let Some(s) = &self.latest else { return false };
        let headline = Headline::of(s);
        self.state_due
            || (self.latest_new
                && if self.stopping {
                    self.cadence.changed(headline)
                } else {
                    self.cadence.due(now_ns, headline)
                })
    }

    /// When the cadence wants the next state, while a new one waits and can be published
    /// (connected, none awaiting its acknowledgement); at other times an event wakes the
    /// session.
    fn next_state_ns(&self) -> Option<u64> {
        let can = self.latest_new && self.conn.as_ref().is_some_and(|c| c.up) && !self.tracker.has(Tag::State);
        self.latest.as_ref().filter(|_| can)?;
        self.cadence.next_due_ns()
    }

    fn connect(&mut self) {
        self.epoch += 1;
        self.tracker = Tracker::default();
        let will = LastWill::new(
            self.s.topics.status.clone(),
            message::status(
                &self.info,
                &self.s.device_id,
                &self.s.client_id,
                Some(Offline::ConnectionLost),
                None,
            ),
            QoS::AtLeastOnce,
            true,
        );
        let (client, el) = self.s.new_client(&self.s.client_id, Some(will));
        let task = tokio::spawn(drive(el, self.epoch, self.s.broker_hint(), self.net_tx.clone()));
        self.conn = Some(Conn {
            client,
            task,
            up: false,
        });
    }

    fn on_net(&mut self, net: Net) {
        match net {
            Net::Up => {
                if let Some(c) = &mut self.conn {
                    c.up = true;
                }
                self.connects += 1;
                self.backoff = self.s.reconnect.0;
                let buffered = self.outbox.buffered();
                match self.outage.take() {
                    None => log::info!("mqtt: connected to {} as {}", self.s.broker.url(), self.s.client_id),
                    Some((since, tries)) => log::info!(
                        "mqtt: broker {} back after {:.1} s ({tries} failed tries); sending {buffered} buffered result(s)",
                        self.s.broker.url(),
                        since.elapsed().as_secs_f64()
                    ),
                }
                self.online_due = true;
                self.state_due = self.latest.is_some();
            }
            Net::Written(pkid) => {
                self.tracker.written(pkid);
            }
            Net::Acked(pkid) => match self.tracker.acked(pkid) {
                Some(Tag::Result(seq)) => {
                    self.outbox.acked(seq);
                }
                Some(Tag::Offline) => self.offline_acked = true,
                Some(Tag::State | Tag::Online) | None => {}
            },
            Net::Closed => {
                if let Some(c) = self.conn.take() {
                    c.task.abort();
                }
            }
            Net::Down(why) => self.lost(why),
        }
    }

    /// The connection failed (or never came up): put back what was in flight, retry later.
    fn lost(&mut self, why: String) {
        let was_up = self.conn.take().is_some_and(|c| {
            c.task.abort();
            c.up
        });
        self.outbox.connection_lost();
        self.tracker = Tracker::default();
        self.online_due = true;
        self.state_due = self.latest.is_some();
        let (max, n) = (self.s.buffer_parts, self.outbox.buffered());
        match &mut self.outage {
            None => {
                let what = if was_up {
                    "lost the broker"
                } else {
                    "cannot reach the broker"
                };
                log::warn!(
                    "mqtt: {what} {}: {why}; keeping up to {max} results ({n} now) and retrying",
                    self.s.broker.url()
                );
                self.outage = Some((Instant::now(), u64::from(!was_up)));
            }
            Some((_, tries)) => {
                *tries += 1;
                log::debug!("mqtt: still no broker: {why}");
            }
        }
        if self.stopping {
            return;
        }
        self.retry_at = Some(Instant::now() + self.backoff);
        self.backoff = (self.backoff * 2).min(self.s.reconnect.1);
    }

    /// Hands the client what is due: the online status first after a connect, the state,
    /// then results in order up to `MAX_IN_FLIGHT`; at the stop, the offline status once
    /// the results and the last state are through.
    fn pump(&mut self) {
        let Some(client) = self.conn.as_ref().filter(|c| c.up).map(|c| c.client.clone()) else {
            return;
        };
        let topics = self.s.topics.clone();
        if self.online_due && !self.stopping {
            let p = message::status(&self.info, &self.s.device_id, &self.s.client_id, None, Some(unix_ms()));
            if !self.publish(&client, Tag::Online, &topics.status, true, p) {
                return;
            }
            self.online_due = false;
        }
        let now_ns = clock::now_ns();
        if !self.tracker.has(Tag::State) && self.state_wanted(now_ns) {
            if let Some(s) = self.latest.clone() {
                // Parts as the sink saw them arrive, against its own clock: an idle line reads 0.
                let now = (self.last_part.as_ref().map_or(0, |p| p.seq), unix_ms());
                let rate = self.rate_point.and_then(|before| message::rate(before, now));
                let p = message::state(
                    &self.info,
                    &self.s.device_id,
                    &s,
                    rate,
                    self.last_part.as_ref(),
                    self.counters(),
                );
                if !self.publish(&client, Tag::State, &topics.state, true, p) {
                    return;
                }
                self.rate_point = Some(now);
                self.cadence.told(now_ns, Headline::of(&s));
                self.latest_new = false;
            }
            self.state_due = false;
        }
        while let Some(p) = self.outbox.next(MAX_IN_FLIGHT) {
            let (seq, payload) = (p.seq, p.payload.clone());
            if !self.publish(&client, Tag::Result(seq), &topics.result, false, payload) {
                return;
            }
        }
    }

    fn publish(&mut self, client: &AsyncClient, tag: Tag, topic: &str, retain: bool, payload: Vec<u8>) -> bool {
        match client.try_publish(topic, QoS::AtLeastOnce, retain, payload) {
            Ok(()) => {
                self.tracker.requested(tag);
                true
            }
            Err(e) => {
                self.lost(format!("the client's queue refused a message: {e}"));
                false
            }
        }
    }

    fn publish_offline(&mut self) {
        let Some(client) = self.conn.as_ref().filter(|c| c.up).map(|c| c.client.clone()) else {
            return;
        };
        let p = message::status(
            &self.info,
            &self.s.device_id,
            &self.s.client_id,
            Some(Offline::Stopped),
            Some(unix_ms()),
        );
        let topic = self.s.topics.status.clone();
        self.offline_sent = self.publish(&client, Tag::Offline, &topic, true, p);
    }

    /// The feed is closed: send what is buffered and the last state, then the offline
    /// status, then disconnect; all within `STOP_WITHIN`. Returns the closing log line
    /// and the results' figures.
    async fn stop(mut self, net_rx: &mut mpsc::Receiver<(u64, Net)>) -> (String, Delivery) {
        self.stopping = true;
        self.retry_at = None;
        let end = Instant::now() + STOP_WITHIN;
        let offline_by = end - OFFLINE_WITHIN;
        if self.conn.is_none() {
            // One last try, at once.
            self.connect();
        }
        let mut disconnecting = false;
        loop {
            self.pump();
            let through =
                self.outbox.is_empty() && !self.state_wanted(clock::now_ns()) && !self.tracker.has(Tag::State);
            if !self.offline_sent && (through || Instant::now() >= offline_by) {
                self.publish_offline();
            }
            if self.offline_acked && !disconnecting {
                if let Some(c) = &self.conn {
                    let _ = c.client.try_disconnect();
                }
                disconnecting = true;
            }
            if self.conn.is_none() && (disconnecting || self.retry_at.is_none()) {
                break;
            }
            tokio::select! {
                Some((epoch, net)) = net_rx.recv() => {
                    if epoch == self.epoch {
                        self.on_net(net);
                    }
                }
                _ = sleep_until(offline_by), if !self.offline_sent && Instant::now() < offline_by => {}
                _ = sleep_until(end) => break,
            }
        }
        if let Some(c) = self.conn.take() {
            c.task.abort();
        }
        let c = self.counters();
        let results = Delivery {
            sent: c.sent,
            dropped: c.dropped,
            unsent: self.outbox.buffered() as u64,
        };
        let line = format!(
            "{} result(s) acknowledged by the broker, {} dropped (buffer full), {} unsent at the stop; at most {} buffered, {} resent after a lost connection, {} feed event(s) lost; {} connection(s); offline status {}",
            results.sent,
            results.dropped,
            results.unsent,
            self.outbox.counts.most_buffered,
            c.resent,
            c.feed_dropped,
            c.connects,
            if self.offline_acked { "published" } else { "not published (the broker's last will says offline)" }
        );
        (line, results)
    }
}

/// `linesight check`'s lines for `[mqtt]`: the settings, the files they name, warnings
/// (an `Ok` line that starts with `WARN`), and what the broker says when linesight
/// connects to it (as `<client_id>-check`, so that a running line is not pushed off).
pub fn check(config: &Config) -> Vec<(&'static str, anyhow::Result<String>)> {
    let mut out = Vec::new();
    let settings = match Settings::resolve(config) {
        Ok(Some(s)) => s,
        Ok(None) => return out,
        Err(e) => {
            out.push(("mqtt", Err(e)));
            return out;
        }
    };
    let s = &settings;
    out.push(("mqtt", Ok(s.describe())));
    if let Some(c) = &s.credentials {
        out.push((
            "mqtt credentials",
            Ok(format!("user {:?} from {}", c.username, c.path.display())),
        ));
    }
    if let Some(t) = &s.tls {
        let client = match &t.client_cert {
            Some(p) => format!("; client certificate {}", p.display()),
            None => String::new(),
        };
        out.push(("mqtt tls", Ok(format!("{}{client}", t.roots))));
    }
    let mut secrets: Vec<&Path> = s.credentials.iter().map(|c| c.path.as_path()).collect();
    let key = config.mqtt.as_ref().and_then(|m| m.client_key_file.as_ref());
    let key_path = key.and_then(|k| {
        MqttConfig::secret_path(
            k,
            &config.base_dir,
            std::env::var("CREDENTIALS_DIRECTORY").ok().as_deref(),
        )
        .ok()
    });
    secrets.extend(key_path.as_deref());
    for w in security_warnings(
        &s.broker,
        s.credentials.is_some(),
        s.tls.as_ref().is_some_and(|t| t.client_cert.is_some()),
    )
    .into_iter()
    .chain(secrets.iter().filter_map(|p| loose_permissions(p)))
    {
        out.push(("mqtt", Ok(format!("WARN {w}"))));
    }
    out.push(("mqtt broker", probe(s)));
    out
}

/// Loopback is safe by default; a broker elsewhere wants TLS and a login.
pub fn security_warnings(broker: &Broker, credentials: bool, client_cert: bool) -> Vec<String> {
    let mut w = Vec::new();
    if broker.is_loopback() {
        return w;
    }
    if !broker.tls {
        w.push(format!(
            "broker {} is not on this machine and the connection has no TLS: results{} cross the network in clear text; use mqtts:// (with mqtt.ca_file)",
            broker.url(),
            if credentials { " and the password" } else { "" }
        ));
    }
    if !credentials && !client_cert {
        w.push(format!(
            "broker {} is not on this machine and linesight logs in without credentials: a broker that lets anyone in lets anyone publish as this device; set mqtt.credentials_file (or a client certificate)",
            broker.url()
        ));
    }
    w
}

/// A secret readable by group or others.
fn loose_permissions(path: &Path) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
    (mode & 0o077 != 0).then(|| {
        format!(
            "{} is readable by others than its owner (mode {mode:04o}): chmod 600 it",
            path.display()
        )
    })
}

/// Connects once as `<client_id>-check` (no last will), reads the retained status and
/// state of this device, and disconnects.
fn probe(s: &Settings) -> anyhow::Result<String> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        let id = format!("{}-check", s.client_id);
        let (client, mut el) = s.new_client(&id, None);
        let hint = s.broker_hint();
        let t0 = Instant::now();
        let deadline = t0 + Duration::from_secs(s.connect_timeout_s + 1);
        loop {
            match tokio::time::timeout_at(deadline, el.poll()).await {
                Ok(Ok(Event::Incoming(Packet::ConnAck(_)))) => break,
                Ok(Ok(_)) => {}
                Ok(Err(e)) => anyhow::bail!("{}", describe(&e, &hint)),
                Err(_) => anyhow::bail!("{}", describe(&ConnectionError::NetworkTimeout, &hint)),
            }
        }
        let connected_ms = t0.elapsed().as_secs_f64() * 1000.0;
        client.try_subscribe(s.topics.status.clone(), QoS::AtMostOnce)?;
        let (mut status, mut refused) = (None, false);
        let until = Instant::now() + Duration::from_secs(1);
        let mut subacked = None;
        loop {
            // Retained messages follow the SUBACK; give them a moment after it.
            let wait = subacked.map_or(until, |t: Instant| (t + Duration::from_millis(300)).min(until));
            match tokio::time::timeout_at(wait, el.poll()).await {
                Ok(Ok(Event::Incoming(Packet::SubAck(a)))) => {
                    refused = a.return_codes.contains(&SubscribeReasonCode::Failure);
                    subacked = Some(Instant::now());
                }
                Ok(Ok(Event::Incoming(Packet::Publish(p)))) if p.topic == s.topics.status => {
                    status = serde_json::from_slice::<serde_json::Value>(&p.payload).ok();
                    break;
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) => anyhow::bail!("connected, then {}", describe(&e, &hint)),
                Err(_) => break,
            }
        }
        let _ = client.try_disconnect();
        let _ = tokio::time::timeout(Duration::from_millis(300), async {
            while let Ok(ev) = el.poll().await {
                if ev == Event::Outgoing(Outgoing::Disconnect) {
                    break;
                }
            }
        })
        .await;
        let tls = if s.tls.is_some() {
            ", TLS with the broker's certificate verified"
        } else {
            ""
        };
        let found = if refused {
            format!("the broker does not let {id} read {}", s.topics.status)
        } else {
            match status {
                None => format!("no retained status on {} yet", s.topics.status),
                Some(v) => {
                    let field = |k: &str| v[k].as_str().unwrap_or("?").to_string();
                    if v["online"] == true {
                        format!(
                            "retained status: online (run {}, model {}): a linesight with this device id is connected now",
                            field("run_id"),
                            field("model")
                        )
                    } else {
                        format!("retained status: offline ({}, run {})", field("reason"), field("run_id"))
                    }
                }
            }
        };
        Ok(format!(
            "accepted {id} in {connected_ms:.0} ms{tls}{}; {found}",
            match &s.credentials {
                Some(c) => format!(", logged in as {:?}", c.username),
                None => String::new(),
            }
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_user_colon_password_on_the_first_line() {
        assert_eq!(
            parse_credentials("linesight:s3:cr:et\n").unwrap(),
            ("linesight".to_string(), "s3:cr:et".to_string())
        );
        assert_eq!(
            parse_credentials("u:\r\nignored").unwrap(),
            ("u".to_string(), String::new())
        );
        assert!(parse_credentials("no colon").is_err());
        assert!(parse_credentials(":pw").is_err());
        assert!(parse_credentials("").is_err());
    }

    #[test]
    fn a_broker_elsewhere_without_tls_or_login_is_warned_about() {
        let b = |u| Broker::parse(u).unwrap();
        assert!(security_warnings(&b("mqtt://127.0.0.1"), false, false).is_empty());
        assert!(security_warnings(&b("mqtt://[::1]"), false, false).is_empty());
        let w = security_warnings(&b("mqtt://10.0.0.5"), false, false);
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(
            w[0].contains("clear text") && w[1].contains("without credentials"),
            "{w:?}"
        );
        let w = security_warnings(&b("mqtt://10.0.0.5"), true, false);
        assert_eq!(w.len(), 1);
        assert!(w[0].contains("and the password"), "{w:?}");
        assert!(security_warnings(&b("mqtts://broker.plant"), true, false).is_empty());
        assert!(security_warnings(&b("mqtts://broker.plant"), false, true).is_empty());
        assert_eq!(security_warnings(&b("mqtts://broker.plant"), false, false).len(), 1);
    }
}
