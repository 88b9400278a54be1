//! `[http]`: the web status page, its JSON API and Prometheus metrics (docs/web.md).

use super::{listen, parse_listen, Problems};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;

/// `[http]`: off unless the section is there.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Address and port of the page, the API and `/metrics`, as `IP:port` (default
    /// `127.0.0.1:8080`: this machine only). Port 0 takes a free port; the address is logged
    /// either way (`linesight: web page on http://127.0.0.1:PORT/`). Any other address
    /// serves plain HTTP to the network: `linesight check` warns about it.
    pub listen: String,
    /// File holding the bearer token that the write endpoints (reset counters, change the
    /// threshold) require, one line. A relative path is looked up in
    /// `$CREDENTIALS_DIRECTORY` when systemd sets it (`LoadCredential=`), else next to this
    /// config file. Unset: there are no write endpoints; the page is read-only.
    pub token_file: Option<PathBuf>,
    /// Audit log of every write, accepted or refused (JSON lines: time, peer, what, old and
    /// new value, result). Unset: `audit.jsonl` in the folder of `record.results`.
    pub audit_log: Option<PathBuf>,
    /// Parts kept in memory for `/api/parts` and the page's score trend (default 600).
    pub recent_parts: usize,
    /// Rejects kept for `/api/rejects` and the page's gallery (default 24).
    pub recent_rejects: usize,
    /// How often the page asks for news, ms (default 1000).
    pub refresh_ms: u64,
    /// Heading of the page, e.g. the line and cell (default: none, the model's name is shown).
    pub title: Option<String>,
    /// Lowest and highest threshold a write may set, `[low, high]`. Unset: from the model's
    /// calibration on good parts, from their mean score (about half the good parts would be
    /// rejected below it) to their highest score plus 3 standard deviations.
    pub threshold_range: Option<[f32; 2]>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: "127.0.0.1:8080".to_string(),
            token_file: None,
            audit_log: None,
            recent_parts: 600,
            recent_rejects: 24,
            refresh_ms: 1000,
            title: None,
            threshold_range: None,
        }
    }
}

impl HttpConfig {
    /// `listen` as an address; `None` if it is not one (a validation problem).
    pub fn listen_addr(&self) -> Option<SocketAddr> {
        parse_listen(&self.listen)
    }

    pub(super) fn validate(&self, p: &mut Problems) {
        listen(p, "http.listen", &self.listen, 8080);
        if self.token_file.as_ref().is_some_and(|f| f.as_os_str().is_empty()) {
            p.bad(
                "http.token_file",
                "must name a file (leave the key out for a read-only page)",
            );
        }
        if self.audit_log.as_ref().is_some_and(|f| f.as_os_str().is_empty()) {
            p.bad("http.audit_log", "must name a file (leave the key out for the default)");
        }
        if !(1..=100_000).contains(&self.recent_parts) {
            p.bad(
                "http.recent_parts",
                format!("expected 1 to 100000 parts, found {}", self.recent_parts),
            );
        }
        if !(1..=1000).contains(&self.recent_rejects) {
            p.bad(
                "http.recent_rejects",
                format!("expected 1 to 1000 rejects, found {}", self.recent_rejects),
            );
        }
        if !(100..=60_000).contains(&self.refresh_ms) {
            p.bad(
                "http.refresh_ms",
                format!("expected 100 to 60000 ms, found {}", self.refresh_ms),
            );
        }
        if let Some([low, high]) = self.threshold_range {
            if !(low.is_finite() && high.is_finite() && low < high) {
                p.bad(
                    "http.threshold_range",
                    format!("expected [low, high] with finite low < high, found [{low}, {high}]"),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(c: &HttpConfig) -> Vec<String> {
        Problems::of(|p| c.validate(p))
    }

    #[test]
    fn the_default_listens_on_loopback_and_is_valid() {
        let c = HttpConfig::default();
        assert!(c.listen_addr().unwrap().ip().is_loopback());
        assert!(problems(&c).is_empty());
        let parsed: HttpConfig = toml::from_str("").unwrap();
        assert_eq!(parsed, c, "an empty [http] takes every default");
    }

    #[test]
    fn every_bad_value_is_named_with_its_key() {
        let c = HttpConfig {
            listen: "localhost:8080".into(),
            token_file: Some(PathBuf::new()),
            recent_parts: 0,
            recent_rejects: 5000,
            refresh_ms: 10,
            threshold_range: Some([5.0, 1.0]),
            ..HttpConfig::default()
        };
        let keys: Vec<String> = problems(&c)
            .iter()
            .map(|p| p.split(':').next().unwrap().to_string())
            .collect();
        assert_eq!(
            keys,
            [
                "http.listen",
                "http.token_file",
                "http.recent_parts",
                "http.recent_rejects",
                "http.refresh_ms",
                "http.threshold_range"
            ]
        );
    }

    #[test]
    fn ipv6_and_port_zero_are_addresses() {
        for listen in ["[::1]:0", "127.0.0.1:0", "0.0.0.0:80"] {
            let c = HttpConfig {
                listen: listen.into(),
                ..HttpConfig::default()
            };
            assert!(problems(&c).is_empty(), "{listen}");
        }
    }
}
