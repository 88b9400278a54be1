//! `[opcua]`: an OPC UA server with the line's identification, state, last result,
//! counters and health, in nodes named after OPC 40100 (docs/opcua.md). Off unless the
//! section is there; needs a linesight built with the `opcua` feature (the default).

use super::Problems;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;

/// How clients must talk to the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Security {
    /// No signing, no encryption, anonymous clients: allowed on a loopback `listen` only.
    None,
    /// Basic256Sha256, signed and encrypted, a user name and password from `users_file`.
    Basic256sha256,
}

/// `[opcua]`: off unless the section is there.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OpcuaConfig {
    /// The endpoint, as `opc.tcp://IP:port` (default `opc.tcp://127.0.0.1:4840`: this
    /// machine only). No host names. Port 0 takes a free port; the endpoint is logged either
    /// way (`linesight: opcua server on opc.tcp://127.0.0.1:PORT/`).
    pub listen: String,
    /// `"none"` (the default; loopback only) or `"basic256sha256"` (required on any other
    /// address: signed and encrypted, users from `users_file`, no anonymous access).
    pub security: Security,
    /// With `basic256sha256`: the users allowed in, one `name:password` per line (`#` starts
    /// a comment; spaces around the name and the password are ignored). Keep it readable by the service only (mode 0600). A relative path is
    /// looked up in `$CREDENTIALS_DIRECTORY` when systemd sets it, else next to this file.
    pub users_file: Option<PathBuf>,
    /// The server's certificate and key (made at the first start, then kept) and the client
    /// certificates: `trusted/` holds the ones allowed, `rejected/` the ones refused so far
    /// (move a client's file from `rejected/` to `trusted/` to let it in). Unset: `opcua-pki`
    /// in the folder of `record.results`.
    pub pki_dir: Option<PathBuf>,
    /// This device's name in the address space, `LineSight/<device_id>/...` (default: the
    /// host name).
    pub device_id: Option<String>,
}

impl Default for OpcuaConfig {
    fn default() -> Self {
        OpcuaConfig {
            listen: "opc.tcp://127.0.0.1:4840".to_string(),
            security: Security::None,
            users_file: None,
            pki_dir: None,
            device_id: None,
        }
    }
}

impl OpcuaConfig {
    /// `listen` as an address; `None` if it is not `opc.tcp://IP:port`.
    pub fn listen_addr(&self) -> Option<SocketAddr> {
        let rest = self.listen.trim().strip_prefix("opc.tcp://")?;
        super::parse_listen(rest.strip_suffix('/').unwrap_or(rest))
    }

    pub(super) fn validate(&self, p: &mut Problems) {
        #[cfg(not(feature = "opcua"))]
        p.bad(
            "opcua",
            "this linesight was built without OPC UA (cargo feature `opcua`, on by default): remove [opcua] or use a build with it",
        );
        let Some(addr) = self.listen_addr() else {
            p.bad(
                "opcua.listen",
                format!(
                    "expected opc.tcp://IP:port such as opc.tcp://127.0.0.1:4840 (no host names), found {:?}",
                    self.listen
                ),
            );
            return;
        };
        if self.security == Security::None && !addr.ip().is_loopback() {
            p.bad(
                "opcua.security",
                format!(
                    "\"none\" lets anyone on the network in unencrypted and anonymously: it is allowed on a loopback listen address only; found opcua.listen {:?}: set security = \"basic256sha256\" and a users_file",
                    self.listen
                ),
            );
        }
        match (&self.users_file, self.security) {
            (Some(f), _) if f.as_os_str().is_empty() => p.bad("opcua.users_file", "must name a file"),
            (None, Security::Basic256sha256) => p.bad(
                "opcua.users_file",
                "security = \"basic256sha256\" needs a users file (one name:password per line); found none",
            ),
            (Some(_), Security::None) => p.bad(
                "opcua.users_file",
                "users are only asked for with security = \"basic256sha256\"; found security = \"none\" (remove users_file or raise the security)",
            ),
            _ => {}
        }
        if self.pki_dir.as_ref().is_some_and(|d| d.as_os_str().is_empty()) {
            p.bad(
                "opcua.pki_dir",
                "must name a folder (leave the key out for the default)",
            );
        }
        if let Some(id) = &self.device_id {
            if id.is_empty() || id.contains('/') || id.chars().any(char::is_control) {
                p.bad(
                    "opcua.device_id",
                    format!("expected a name without '/' or control characters, found {id:?}"),
                );
            }
        }
    }
}

/// One `name:password` entry of the users file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub password: String,
}

/// The users file's entries; an error names the line.
pub fn parse_users(text: &str) -> Result<Vec<User>, String> {
    let mut users = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match line.split_once(':') {
            Some((name, password)) if !name.trim().is_empty() && !password.trim().is_empty() => users.push(User {
                name: name.trim().to_string(),
                password: password.trim().to_string(),
            }),
            _ => return Err(format!("line {}: expected name:password, found {line:?}", n + 1)),
        }
    }
    if users.is_empty() {
        return Err("holds no user: put one name:password per line".into());
    }
    Ok(users)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(c: &OpcuaConfig) -> Vec<String> {
        Problems::of(|p| c.validate(p))
            .into_iter()
            .filter(|p| !p.starts_with("opcua: this linesight was built without"))
            .collect()
    }

    #[test]
    fn the_default_is_loopback_without_security_and_valid() {
        let c = OpcuaConfig::default();
        assert!(c.listen_addr().unwrap().ip().is_loopback());
        assert!(problems(&c).is_empty(), "{:?}", problems(&c));
        assert_eq!(toml::from_str::<OpcuaConfig>("").unwrap(), c);
        let slash = OpcuaConfig {
            listen: "opc.tcp://[::1]:0/".into(),
            ..c
        };
        assert_eq!(slash.listen_addr(), Some("[::1]:0".parse().unwrap()));
    }

    #[test]
    fn no_security_is_refused_beyond_loopback_and_users_go_with_security() {
        let open = OpcuaConfig {
            listen: "opc.tcp://0.0.0.0:4840".into(),
            ..OpcuaConfig::default()
        };
        let p = problems(&open);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].starts_with("opcua.security: \"none\" lets anyone"), "{p:?}");
        let secure = OpcuaConfig {
            security: Security::Basic256sha256,
            ..open.clone()
        };
        assert_eq!(
            problems(&secure),
            ["opcua.users_file: security = \"basic256sha256\" needs a users file (one name:password per line); found none"]
        );
        let ok = OpcuaConfig {
            users_file: Some("opcua-users".into()),
            ..secure
        };
        assert!(problems(&ok).is_empty());
        let stray = OpcuaConfig {
            users_file: Some("opcua-users".into()),
            ..OpcuaConfig::default()
        };
        assert!(problems(&stray)[0].starts_with("opcua.users_file: users are only asked for"));
    }

    #[test]
    fn every_bad_value_is_named_with_its_key() {
        let keys = |c: &OpcuaConfig| -> Vec<String> {
            problems(c)
                .iter()
                .map(|p| p.split(':').next().unwrap().to_string())
                .collect()
        };
        let c = OpcuaConfig {
            listen: "opc.tcp://plc.local:4840".into(),
            ..OpcuaConfig::default()
        };
        assert_eq!(keys(&c), ["opcua.listen"]);
        let c = OpcuaConfig {
            listen: "127.0.0.1:4840".into(),
            ..OpcuaConfig::default()
        };
        assert_eq!(keys(&c), ["opcua.listen"], "the scheme is required");
        let c = OpcuaConfig {
            pki_dir: Some(PathBuf::new()),
            device_id: Some("a/b".into()),
            ..OpcuaConfig::default()
        };
        assert_eq!(keys(&c), ["opcua.pki_dir", "opcua.device_id"]);
        let e = toml::from_str::<OpcuaConfig>("security = \"basic128\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown variant `basic128`"), "{e}");
    }

    #[test]
    fn the_users_file_is_name_colon_password_lines() {
        let users = parse_users("# the cell's PLC\nplc:s3cr:et\n\n  scada : pw \n").unwrap();
        assert_eq!(
            users,
            [
                User {
                    name: "plc".into(),
                    password: "s3cr:et".into()
                },
                User {
                    name: "scada".into(),
                    password: "pw".into()
                }
            ]
        );
        assert_eq!(
            parse_users("plc\n").unwrap_err(),
            "line 1: expected name:password, found \"plc\""
        );
        assert_eq!(
            parse_users("a:\n").unwrap_err(),
            "line 1: expected name:password, found \"a:\""
        );
        assert!(parse_users("# none\n").unwrap_err().starts_with("holds no user"));
    }
}
