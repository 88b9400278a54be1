//! `[mqtt]`: results, state and health published to the plant's MQTT broker. Off unless
//! the section is there. The topics and their messages: docs/mqtt.md.

use super::{range, Problems};
use serde::Deserialize;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// `[mqtt]`
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MqttConfig {
    /// The broker: `mqtt://host:port` (plain TCP, port 1883 if left out) or
    /// `mqtts://host:port` (TLS, port 8883 if left out). An IPv6 address goes in brackets:
    /// `mqtt://[::1]:1883`. Default `mqtt://127.0.0.1:1883`, a broker on this machine.
    /// User names and passwords never go here: see `credentials_file`.
    pub broker: String,
    /// Unified-Namespace prefix of every topic, levels separated by `/`, such as
    /// `acme/plant1/area2/line3/cell4` (default empty). Topics are
    /// `<topic_prefix>/linesight/<device_id>/{status,state,result}`.
    pub topic_prefix: String,
    /// This device's topic level (default: the host name, with any `/`, `+` or `#` made `_`).
    pub device_id: Option<String>,
    /// The MQTT client id (default `linesight-<device_id>`). Unique on the broker: a second
    /// client with the same id takes the connection over.
    pub client_id: Option<String>,
    /// File whose first line is `username:password` (split at the first `:`, so the
    /// password may contain `:`; a trailing newline is ignored). Keep it readable by the
    /// service only (mode 0600). `$CREDENTIALS_DIRECTORY/name` reads the systemd credential
    /// `name` (`LoadCredential=name:/etc/linesight/mqtt-credentials` in the unit). Unset:
    /// connect without a user name.
    pub credentials_file: Option<PathBuf>,
    /// PEM file with the certificate(s) of the CA that signed the broker's certificate
    /// (`mqtts://` only). Unset: the system's trust store (/etc/ssl/certs).
    pub ca_file: Option<PathBuf>,
    /// PEM certificate for brokers that authenticate clients by certificate (`mqtts://`
    /// only; needs `client_key_file`). Unset: no client certificate.
    pub client_cert_file: Option<PathBuf>,
    /// PEM private key of `client_cert_file` (PKCS#8, PKCS#1 or SEC1); like
    /// `credentials_file`, `$CREDENTIALS_DIRECTORY/name` reads a systemd credential.
    pub client_key_file: Option<PathBuf>,
    /// Which parts get a message on `result`: "all" (default), "rejects" (rejected parts,
    /// whatever the reason) or "none" (status and state only).
    pub results: PublishResults,
    /// Results kept while the broker is away (store and forward, in memory, about 1 kB
    /// each), sent in order when it is back; beyond that the oldest are dropped and
    /// counted (default 10000, 1 to 1000000: 10000 is 17 minutes at 10 parts/s).
    pub buffer_parts: usize,
    /// MQTT keep-alive in seconds (default 30, 5 to 3600): a broker that hears nothing for
    /// 1.5 times this long counts linesight as gone and publishes its last will.
    pub keep_alive_s: u64,
    /// Seconds between `state` messages (default 5, 1 to 3600), whether parts come or not;
    /// a change of the run state or of the camera (lost, back) is published at once.
    pub state_interval_s: u64,
    /// Seconds to wait for the broker to accept a connection (default 5, 1 to 60).
    pub connect_timeout_s: u64,
    /// Wait before reconnecting after the broker went away (default 1000, 100 to 60000);
    /// doubles after each failed try up to `reconnect_max_ms`.
    pub reconnect_ms: u64,
    /// Longest wait between tries to reconnect (default 30000, `reconnect_ms` to 600000).
    pub reconnect_max_ms: u64,
}

impl Default for MqttConfig {
    fn default() -> Self {
        MqttConfig {
            broker: "mqtt://127.0.0.1:1883".to_string(),
            topic_prefix: String::new(),
            device_id: None,
            client_id: None,
            credentials_file: None,
            ca_file: None,
            client_cert_file: None,
            client_key_file: None,
            results: PublishResults::All,
            buffer_parts: 10_000,
            keep_alive_s: 30,
            state_interval_s: 5,
            connect_timeout_s: 5,
            reconnect_ms: 1000,
            reconnect_max_ms: 30_000,
        }
    }
}

/// `mqtt.results`
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PublishResults {
    #[default]
    All,
    Rejects,
    None,
}

/// Where the broker is, from `mqtt.broker`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broker {
    /// `mqtts://`: TLS.
    pub tls: bool,
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    pub port: u16,
}

impl Broker {
    /// `mqtt://host:port`, `mqtts://host:port`, `mqtt://[v6]:port`; the port defaults to
    /// 1883 (mqtt) or 8883 (mqtts).
    pub fn parse(url: &str) -> Result<Broker, String> {
        let (tls, rest) = if let Some(r) = url.strip_prefix("mqtt://") {
            (false, r)
        } else if let Some(r) = url.strip_prefix("mqtts://") {
            (true, r)
        } else {
            let hint = if url.starts_with("tcp://") {
                " (tcp:// is written mqtt:// here)"
            } else if url.starts_with("ssl://") || url.starts_with("tls://") {
                " (ssl:// is written mqtts:// here)"
            } else if url.starts_with("ws://") || url.starts_with("wss://") {
                " (MQTT over websockets is not supported)"
            } else {
                ""
            };
            return Err(format!(
                "expected mqtt://host:port or mqtts://host:port{hint}, found {url:?}"
            ));
        };
        if rest.contains('@') {
            return Err(
                "user names and passwords never go in the config text: put them in mqtt.credentials_file".to_string(),
            );
        }
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains(['/', '?', '#']) {
            return Err(format!("expected only host and port after the scheme, found {url:?}"));
        }
        let default_port = if tls { 8883 } else { 1883 };
        let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
            let (host, after) = v6
                .split_once(']')
                .ok_or_else(|| format!("an IPv6 address needs its closing bracket, found {url:?}"))?;
            if host.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(format!("{host:?} is not an IPv6 address"));
            }
            match after {
                "" => (host, None),
                p => (
                    host,
                    Some(
                        p.strip_prefix(':')
                            .ok_or_else(|| format!("expected :port after the address, found {after:?}"))?,
                    ),
                ),
            }
        } else {
            match rest.rsplit_once(':') {
                Some((h, p)) if !h.contains(':') => (h, Some(p)),
                Some(_) => {
                    return Err(format!(
                        "an IPv6 address goes in brackets: mqtt://[::1]:1883, found {url:?}"
                    ))
                }
                None => (rest, None),
            }
        };
        if host.is_empty() {
            return Err(format!("no host in {url:?}"));
        }
        let port = match port {
            None => default_port,
            Some(p) => match p.parse::<u16>() {
                Ok(n) if n > 0 => n,
                _ => return Err(format!("expected a port from 1 to 65535, found {p:?}")),
            },
        };
        Ok(Broker {
            tls,
            host: host.to_string(),
            port,
        })
    }

    /// On this machine: a loopback address or `localhost`.
    pub fn is_loopback(&self) -> bool {
        self.host.eq_ignore_ascii_case("localhost") || self.host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
    }

    /// The URL again, as written in messages: `mqtts://broker.plant:8883`.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "mqtts" } else { "mqtt" };
        if self.host.contains(':') {
            format!("{scheme}://[{}]:{}", self.host, self.port)
        } else {
            format!("{scheme}://{}:{}", self.host, self.port)
        }
    }
}

/// The prefix that `$CREDENTIALS_DIRECTORY` secrets start with.
pub const CREDENTIALS_DIRECTORY: &str = "$CREDENTIALS_DIRECTORY/";

impl MqttConfig {
    /// The broker; `Config::load` has already checked that it parses.
    pub fn endpoint(&self) -> Result<Broker, String> {
        Broker::parse(&self.broker)
    }

    pub(super) fn validate(&self, p: &mut Problems) {
        let broker = match self.endpoint() {
            Ok(b) => Some(b),
            Err(e) => {
                p.bad("mqtt.broker", e);
                None
            }
        };
        if broker.as_ref().is_some_and(|b| b.tls && b.host.contains(':')) {
            p.bad(
                "mqtt.broker",
                "mqtts:// needs a host name that the broker's certificate names, not an IPv6 address",
            );
        }
        if let Err(e) = topic_levels(&self.topic_prefix) {
            p.bad("mqtt.topic_prefix", e);
        }
        if let Some(id) = &self.device_id {
            if let Err(e) = topic_level(id) {
                p.bad("mqtt.device_id", e);
            }
        }
        if let Some(id) = &self.client_id {
            if id.is_empty() || id.len() > 65535 {
                p.bad(
                    "mqtt.client_id",
                    format!("expected 1 to 65535 bytes, found {}", id.len()),
                );
            }
        }
        for (key, path) in [
            ("mqtt.credentials_file", &self.credentials_file),
            ("mqtt.ca_file", &self.ca_file),
            ("mqtt.client_cert_file", &self.client_cert_file),
            ("mqtt.client_key_file", &self.client_key_file),
        ] {
            let Some(path) = path else { continue };
            let secret = matches!(key, "mqtt.credentials_file" | "mqtt.client_key_file");
            let text = path.to_string_lossy();
            if text.is_empty() {
                p.bad(key, "must name a file");
            } else if text.starts_with('$') && !(secret && text.starts_with(CREDENTIALS_DIRECTORY)) {
                p.bad(
                    key,
                    if secret {
                        format!("only $CREDENTIALS_DIRECTORY/<name> is expanded, found {text:?}")
                    } else {
                        format!("expected a file path (no variables), found {text:?}")
                    },
                );
            }
        }
        if broker.as_ref().is_some_and(|b| !b.tls) {
            for (key, v) in [
                ("mqtt.ca_file", &self.ca_file),
                ("mqtt.client_cert_file", &self.client_cert_file),
                ("mqtt.client_key_file", &self.client_key_file),
            ] {
                if v.is_some() {
                    p.bad(
                        key,
                        format!("is for TLS only: write the broker as mqtts://, found {}", self.broker),
                    );
                }
            }
        }
        match (&self.client_cert_file, &self.client_key_file) {
            (Some(_), None) => p.bad("mqtt.client_key_file", "needed with mqtt.client_cert_file"),
            (None, Some(_)) => p.bad("mqtt.client_cert_file", "needed with mqtt.client_key_file"),
            _ => {}
        }
        range(p, "mqtt.buffer_parts", self.buffer_parts as u64, 1, 1_000_000, "parts");
        range(p, "mqtt.keep_alive_s", self.keep_alive_s, 5, 3600, "s");
        range(p, "mqtt.state_interval_s", self.state_interval_s, 1, 3600, "s");
        range(p, "mqtt.connect_timeout_s", self.connect_timeout_s, 1, 60, "s");
        range(p, "mqtt.reconnect_ms", self.reconnect_ms, 100, 60_000, "ms");
        range(
            p,
            "mqtt.reconnect_max_ms",
            self.reconnect_max_ms,
            self.reconnect_ms.max(100),
            600_000,
            "ms",
        );
    }

    /// A secret's file: `$CREDENTIALS_DIRECTORY/name` as given by `credentials_dir` (the
    /// environment variable's value, if set), else the path resolved against `base`.
    pub fn secret_path(path: &Path, base: &Path, credentials_dir: Option<&str>) -> Result<PathBuf, String> {
        match path.to_str().and_then(|p| p.strip_prefix(CREDENTIALS_DIRECTORY)) {
            Some(name) => match credentials_dir {
                Some(dir) if !dir.is_empty() => Ok(Path::new(dir).join(name)),
                _ => Err(format!(
                    "{} names a systemd credential, but $CREDENTIALS_DIRECTORY is not set (LoadCredential= in the unit)",
                    path.display()
                )),
            },
            None if path.is_absolute() => Ok(path.to_path_buf()),
            None => Ok(base.join(path)),
        }
    }
}

/// One topic level: not empty, no `/`, and none of MQTT's wildcards `+`, `#` (nor NUL).
fn topic_level(level: &str) -> Result<(), String> {
    if level.is_empty() {
        Err("expected one topic level, found an empty one".to_string())
    } else if level.contains(['/', '+', '#', '\0']) {
        Err(format!(
            "expected one topic level without '/', '+', '#', found {level:?}"
        ))
    } else {
        Ok(())
    }
}

/// A topic prefix: empty, or levels separated by `/`, none of them empty (no leading,
/// trailing or doubled `/`).
fn topic_levels(prefix: &str) -> Result<(), String> {
    if prefix.is_empty() {
        return Ok(());
    }
    if prefix.starts_with('/') || prefix.ends_with('/') || prefix.contains("//") {
        return Err(format!(
            "expected levels separated by single '/', without a '/' at either end, found {prefix:?}"
        ));
    }
    if prefix.len() > 60_000 {
        return Err("longer than MQTT allows for a topic".to_string());
    }
    prefix
        .split('/')
        .try_for_each(topic_level)
        .map_err(|e| format!("{e} in {prefix:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(c: &MqttConfig) -> Vec<String> {
        Problems::of(|p| c.validate(p))
    }

    #[test]
    fn broker_urls_parse_with_their_default_ports() {
        let b = |u| Broker::parse(u).unwrap();
        assert_eq!(
            b("mqtt://127.0.0.1:1883"),
            Broker {
                tls: false,
                host: "127.0.0.1".into(),
                port: 1883
            }
        );
        assert_eq!(b("mqtts://broker.plant").port, 8883);
        assert_eq!(b("mqtt://broker.plant/").port, 1883);
        assert_eq!(b("mqtt://[::1]:1884").host, "::1");
        assert_eq!(b("mqtt://[::1]").url(), "mqtt://[::1]:1883");
        assert!(b("mqtt://[::1]").is_loopback());
        assert!(b("mqtt://localhost").is_loopback());
        assert!(b("mqtt://127.0.0.2:1883").is_loopback());
        assert!(!b("mqtts://10.0.0.5").is_loopback());
        assert!(!b("mqtt://broker.plant").is_loopback());
    }

    #[test]
    fn bad_broker_urls_say_what_was_expected() {
        let e = |u| Broker::parse(u).unwrap_err();
        assert!(e("tcp://host:1883").contains("mqtt://"), "{}", e("tcp://host:1883"));
        assert!(e("ssl://host:8883").contains("mqtts://"));
        assert!(e("mqtt://user:pw@host").contains("credentials_file"));
        assert!(e("mqtt://host:0").contains("port"));
        assert!(e("mqtt://host:99999").contains("port"));
        assert!(e("mqtt://::1:1883").contains("brackets"));
        assert!(e("mqtt://:1883").contains("no host"));
        assert!(e("mqtt://host/topic").contains("only host and port"));
    }

    #[test]
    fn defaults_are_valid_and_loopback() {
        let c = MqttConfig::default();
        assert!(problems(&c).is_empty(), "{:?}", problems(&c));
        assert!(c.endpoint().unwrap().is_loopback());
    }

    #[test]
    fn every_problem_has_its_key() {
        let c = MqttConfig {
            broker: "mqtt://broker.plant".into(),
            topic_prefix: "acme//line3/".into(),
            device_id: Some("cell+4".into()),
            client_id: Some(String::new()),
            credentials_file: Some("$HOME/pw".into()),
            ca_file: Some("ca.pem".into()),
            client_cert_file: Some("c.pem".into()),
            buffer_parts: 0,
            keep_alive_s: 1,
            state_interval_s: 0,
            connect_timeout_s: 61,
            reconnect_ms: 10,
            reconnect_max_ms: 50,
            ..MqttConfig::default()
        };
        let keys: Vec<String> = problems(&c)
            .iter()
            .map(|p| p.split(':').next().unwrap().to_string())
            .collect();
        assert_eq!(
            keys,
            [
                "mqtt.topic_prefix",
                "mqtt.device_id",
                "mqtt.client_id",
                "mqtt.credentials_file",
                "mqtt.ca_file",
                "mqtt.client_cert_file",
                "mqtt.client_key_file",
                "mqtt.buffer_parts",
                "mqtt.keep_alive_s",
                "mqtt.state_interval_s",
                "mqtt.connect_timeout_s",
                "mqtt.reconnect_ms",
                "mqtt.reconnect_max_ms",
            ]
        );
    }

    /// board/sim/linesight.toml's commented `[mqtt]` block, uncommented, is a valid section.
    #[test]
    fn the_sim_boards_example_is_valid() {
        let text = include_str!("../../board/sim/linesight.toml");
        let start = text.find("# [mqtt]").expect("a commented [mqtt] block");
        let keys: Vec<&str> = text[start..]
            .lines()
            .skip(1)
            .take_while(|l| l.starts_with('#'))
            .filter(|l| !l.starts_with("# #"))
            .map(|l| l.trim_start_matches("# "))
            .collect();
        let c: MqttConfig = toml::from_str(&keys.join("\n")).unwrap();
        assert!(problems(&c).is_empty(), "{:?}", problems(&c));
        assert_eq!(c.topic_prefix, "acme/plant1/area2/line3/cell4");
        assert_eq!(c.device_id.as_deref(), Some("sim"));
    }

    #[test]
    fn a_uns_prefix_is_levels_without_wildcards() {
        assert!(topic_levels("acme/plant1/area2/line3/cell4").is_ok());
        assert!(topic_levels("").is_ok());
        assert!(topic_levels("/acme").is_err());
        assert!(topic_levels("acme/#").is_err());
    }

    #[test]
    fn secrets_come_from_files_or_systemd_credentials() {
        let base = Path::new("/etc/linesight");
        let p = |s: &str, dir| MqttConfig::secret_path(Path::new(s), base, dir);
        assert_eq!(p("pw", None).unwrap(), Path::new("/etc/linesight/pw"));
        assert_eq!(p("/run/pw", None).unwrap(), Path::new("/run/pw"));
        assert_eq!(
            p(
                "$CREDENTIALS_DIRECTORY/mqtt",
                Some("/run/credentials/linesight.service")
            )
            .unwrap(),
            Path::new("/run/credentials/linesight.service/mqtt")
        );
        assert!(p("$CREDENTIALS_DIRECTORY/mqtt", None)
            .unwrap_err()
            .contains("LoadCredential"));
    }
}
