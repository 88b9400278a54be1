//! `[modbus]`: a Modbus TCP server from which a PLC reads every part's result, with a
//! result handshake (docs/modbus.md). Off unless the section is there.

use super::{listen, parse_listen, Problems};
use serde::Deserialize;
use std::net::{IpAddr, SocketAddr};

/// Most results that wait for the PLC's acknowledge with buffering on.
pub const MAX_BUFFER_RESULTS: usize = 8;

/// `[modbus]`: off unless the section is there.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModbusConfig {
    /// Address and port of the Modbus TCP server, as `IP:port` (default `127.0.0.1:5020`:
    /// this machine only; 502, Modbus's own port, needs root or `CAP_NET_BIND_SERVICE`).
    /// Port 0 takes a free port; the address is logged either way
    /// (`linesight: modbus server on 127.0.0.1:PORT`). Modbus has no authentication and no
    /// encryption: on any other address `linesight check` warns, and `allow` should name
    /// the PLC.
    pub listen: String,
    /// The unit identifier (slave id) this server answers to, 1 to 255 (default 1). A
    /// request for another unit gets exception 0x0B (gateway target device failed to respond).
    pub unit_id: u8,
    /// Results that wait for the PLC's acknowledge while it has buffering on (holding
    /// register 0, bit 0), 1 to 8 (default 8). A result that finds them all waiting is not
    /// buffered: the overrun bit is set and the overrun counter counts it.
    pub buffer_results: usize,
    /// Client addresses allowed to connect, such as `["192.168.10.20"]` (IPv4 or IPv6, no
    /// host names). Empty (the default): any client that can reach `listen`. A connection
    /// from elsewhere is closed at once and logged.
    pub allow: Vec<String>,
}

impl Default for ModbusConfig {
    fn default() -> Self {
        ModbusConfig {
            listen: "127.0.0.1:5020".to_string(),
            unit_id: 1,
            buffer_results: MAX_BUFFER_RESULTS,
            allow: Vec::new(),
        }
    }
}

impl ModbusConfig {
    /// `listen` as an address; `None` if it is not one (a validation problem).
    pub fn listen_addr(&self) -> Option<SocketAddr> {
        parse_listen(&self.listen)
    }

    /// The `allow` entries that are addresses (all of them in a validated config).
    pub fn allowed(&self) -> Vec<IpAddr> {
        self.allow.iter().filter_map(|a| a.trim().parse().ok()).collect()
    }

    pub(super) fn validate(&self, p: &mut Problems) {
        listen(p, "modbus.listen", &self.listen, 5020);
        if self.unit_id == 0 {
            p.bad(
                "modbus.unit_id",
                "expected 1 to 255, found 0 (unit 0 is Modbus's broadcast address, which gets no answer)",
            );
        }
        if !(1..=MAX_BUFFER_RESULTS).contains(&self.buffer_results) {
            p.bad(
                "modbus.buffer_results",
                format!(
                    "expected 1 to {MAX_BUFFER_RESULTS} results, found {}",
                    self.buffer_results
                ),
            );
        }
        for (i, a) in self.allow.iter().enumerate() {
            if a.trim().parse::<IpAddr>().is_err() {
                p.bad(
                    format!("modbus.allow[{i}]"),
                    format!("expected an IP address such as 192.168.10.20 or fd00::20 (no host names, no port), found {a:?}"),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(c: &ModbusConfig) -> Vec<String> {
        Problems::of(|p| c.validate(p))
    }

    #[test]
    fn the_default_listens_on_loopback_and_is_valid() {
        let c = ModbusConfig::default();
        assert!(c.listen_addr().unwrap().ip().is_loopback());
        assert!(problems(&c).is_empty());
        let parsed: ModbusConfig = toml::from_str("").unwrap();
        assert_eq!(parsed, c, "an empty [modbus] takes every default");
    }

    #[test]
    fn every_bad_value_is_named_with_its_key() {
        let c = ModbusConfig {
            listen: "plc.local:502".into(),
            unit_id: 0,
            buffer_results: 9,
            allow: vec!["192.168.10.20".into(), "plc.local".into(), "10.0.0.1:502".into()],
        };
        let keys: Vec<String> = problems(&c)
            .iter()
            .map(|p| p.split(": ").next().unwrap().to_string())
            .collect();
        assert_eq!(
            keys,
            [
                "modbus.listen",
                "modbus.unit_id",
                "modbus.buffer_results",
                "modbus.allow[1]",
                "modbus.allow[2]"
            ]
        );
        let zero = ModbusConfig {
            buffer_results: 0,
            ..ModbusConfig::default()
        };
        assert_eq!(
            problems(&zero),
            ["modbus.buffer_results: expected 1 to 8 results, found 0"]
        );
    }

    #[test]
    fn an_unknown_key_is_refused() {
        let e = toml::from_str::<ModbusConfig>("port = 502").unwrap_err().to_string();
        assert!(e.contains("unknown field `port`"), "{e}");
    }

    #[test]
    fn allowed_clients_are_addresses() {
        let c = ModbusConfig {
            allow: vec!["192.168.10.20".into(), " ::1 ".into()],
            ..ModbusConfig::default()
        };
        assert!(problems(&c).is_empty());
        assert_eq!(
            c.allowed(),
            ["192.168.10.20".parse::<IpAddr>().unwrap(), "::1".parse().unwrap()]
        );
    }
}
