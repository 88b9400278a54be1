//! `[opcua]`: an OPC UA server with the line's identification, state, last result,
//! counters and health (docs/opcua.md).
//!
//! ```text
//! feed (bounded, drop-oldest) ──▶ ls-sink-opcua: writes the nodes ──▶ address space ◀── ls-opcua:
//!                                 (one batch per event)                                async-opcua on a
//!                                                                                      current-thread runtime
//! ```
//!
//! A result's values are written in one batch under the address space's lock, `ResultId`
//! last, all with the same source timestamp: a Read of several nodes sees one result, and a
//! subscriber can tell which values belong together. Neither thread can hold up a verdict:
//! the line only pushes to the feed.

pub mod nodes;

use crate::config::{Config, OpcuaConfig, OpcuaSecurity};
use crate::sinks::feed::{FeedReceiver, Recv};
use crate::sinks::{LineEvent, LineInfo, SinkReport, Sinks, STOP_WITHIN};
use anyhow::{bail, Context};
use opcua::crypto::SecurityPolicy;
use opcua::server::address_space::Variable;
use opcua::server::diagnostics::NamespaceMetadata;
use opcua::server::node_manager::memory::{simple_node_manager, SimpleNodeManager};
use opcua::server::{ServerBuilder, ServerHandle, ServerUserToken, ANONYMOUS_USER_TOKEN_ID};
use opcua::types::{BuildInfo, DateTime, MessageSecurityMode, NodeId};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Events the server may fall behind by before the oldest are dropped (counted in
/// `Health/ResultsDropped`).
const FEED_CAPACITY: usize = 1024;

/// How long the server stays up after the last result, for subscribers to get it.
const LINGER: Duration = Duration::from_millis(500);

/// Starts the OPC UA server if `[opcua]` is configured.
pub fn open(sinks: &mut Sinks, config: &Config, info: &LineInfo) -> anyhow::Result<()> {
    let Some(o) = &config.opcua else {
        return Ok(());
    };
    let addr = o.listen_addr().context("opcua.listen")?;
    let listener = TcpListener::bind(addr).with_context(|| format!("opcua.listen {addr}: cannot listen"))?;
    listener.set_nonblocking(true)?;
    let bound = listener.local_addr()?;
    let users = match o.security {
        OpcuaSecurity::None => Vec::new(),
        OpcuaSecurity::Basic256sha256 => read_users(config, o)?,
    };
    let device = device_id(o);
    let pki = pki_dir(config, o);
    // The server's own runtime: its node managers start their samplers while it is built.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("opcua: cannot start the server's runtime")?;
    let (server, handle) = {
        let _inside = rt.enter();
        builder(o, bound, &device, &pki, &users)
            .build()
            .map_err(|e| anyhow::anyhow!("opcua: the server cannot be set up: {e}"))?
    };
    let space = Space::new(&handle, &device)?;
    space.write(nodes::identification(info));
    let model_id = format!(
        "{}@{}",
        info.model,
        info.model_sha256.get(..12).unwrap_or(&info.model_sha256)
    );

    let thread = {
        let handle = handle.clone();
        std::thread::Builder::new()
            .name("ls-opcua".into())
            .spawn(move || {
                let run = || -> anyhow::Result<()> {
                    rt.block_on(async {
                        let listener = tokio::net::TcpListener::from_std(listener)?;
                        server.run_with(listener).await.map_err(|e| anyhow::anyhow!(e))
                    })
                };
                if let Err(e) = run() {
                    log::error!("opcua: the server stopped: {e:#}");
                    handle.cancel();
                }
            })
            .context("cannot start the OPC UA server thread")?
    };
    sinks.add("opcua", FEED_CAPACITY, move |rx| {
        feed_loop(&rx, &space, &model_id);
        space.write(vec![("SystemState", "stopped".into())]);
        // Subscribers' next publish carries the last result and the stop; then the server
        // closes its sessions and ends. A client that hangs is not waited for.
        let end = std::time::Instant::now() + STOP_WITHIN;
        std::thread::sleep(LINGER);
        handle.cancel();
        while !thread.is_finished() && std::time::Instant::now() < end {
            std::thread::sleep(Duration::from_millis(10));
        }
        SinkReport::default()
    })?;
    log::info!("opcua server on opc.tcp://{bound}/ ({})", describe(o, &device, &pki));
    Ok(())
}

/// The server as `[opcua]` says: one endpoint, the security and users it names.
fn builder(
    o: &OpcuaConfig,
    bound: SocketAddr,
    device: &str,
    pki: &Path,
    users: &[crate::config::OpcuaUser],
) -> ServerBuilder {
    let mut b = ServerBuilder::new()
        .application_name(format!("linesight {device}"))
        .application_uri(format!("urn:linesight:{device}"))
        .product_uri("urn:linesight")
        .build_info(BuildInfo {
            product_uri: "urn:linesight".into(),
            manufacturer_name: "linesight developers".into(),
            product_name: "linesight".into(),
            software_version: env!("CARGO_PKG_VERSION").into(),
            build_number: env!("CARGO_PKG_VERSION").into(),
            build_date: DateTime::now(),
        })
        .host(bound.ip().to_string())
        .port(bound.port())
        .pki_dir(pki)
        .certificate_path("own/cert.der")
        .private_key_path("private/private.pem")
        // Made at the first start, then kept: clients that trusted it go on trusting it.
        .create_sample_keypair(true)
        // An unknown client certificate lands in rejected/ for the operator to move.
        .trust_client_certs(false)
        .discovery_urls(vec!["/".to_owned()])
        .with_node_manager(simple_node_manager(
            NamespaceMetadata {
                namespace_uri: nodes::NAMESPACE.to_owned(),
                ..Default::default()
            },
            "linesight",
        ));
    // Results are written as they come, not polled: a monitored item with sampling interval
    // 0 gets each one (the library's default floor of 100 ms would keep only the newest of
    // those that come faster).
    b.limits_mut().subscriptions.min_sampling_interval_ms = 0.0;
    match o.security {
        OpcuaSecurity::None => {
            b = b.add_endpoint(
                "none",
                (
                    "/",
                    SecurityPolicy::None,
                    MessageSecurityMode::None,
                    &[ANONYMOUS_USER_TOKEN_ID] as &[&str],
                ),
            );
        }
        OpcuaSecurity::Basic256sha256 => {
            let ids: Vec<String> = (0..users.len()).map(|i| format!("user{i}")).collect();
            for (id, u) in ids.iter().zip(users) {
                b = b.add_user_token(id, ServerUserToken::user_pass(u.name.as_str(), u.password.as_str()));
            }
            let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
            b = b.add_endpoint(
                "basic256sha256",
                (
                    "/",
                    SecurityPolicy::Basic256Sha256,
                    MessageSecurityMode::SignAndEncrypt,
                    ids.as_slice(),
                ),
            );
        }
    }
    b
}

/// linesight's nodes in the server's address space.
struct Space {
    manager: Arc<SimpleNodeManager>,
    handle: ServerHandle,
    ns: u16,
    device: String,
}

impl Space {
    /// Adds the folders and variables of [`nodes::TABLES`] under `Objects/LineSight/<device>`.
    fn new(handle: &ServerHandle, device: &str) -> anyhow::Result<Space> {
        let manager = handle
            .node_managers()
            .get_of_type::<SimpleNodeManager>()
            .context("opcua: the server has no node manager for linesight's nodes")?;
        let ns = handle
            .get_namespace_index(nodes::NAMESPACE)
            .context("opcua: linesight's namespace is missing")?;
        let space = Space {
            manager,
            handle: handle.clone(),
            ns,
            device: device.to_string(),
        };
        let mut a = space.manager.address_space().write();
        let root = format!("LineSight/{device}");
        a.add_folder(
            &space.id("LineSight"),
            "LineSight",
            "LineSight",
            &NodeId::objects_folder_id(),
        );
        a.add_folder(&space.id(&root), device, device, &space.id("LineSight"));
        for (node, value) in nodes::initial() {
            // Folders on the way, each once.
            let mut parent = root.clone();
            let (dirs, name) = node.path.rsplit_once('/').unwrap_or(("", node.path));
            for dir in dirs.split('/').filter(|d| !d.is_empty()) {
                let folder = format!("{parent}/{dir}");
                if a.find(&space.id(&folder)).is_none() {
                    a.add_folder(&space.id(&folder), dir, dir, &space.id(&parent));
                }
                parent = folder;
            }
            let id = space.id(&format!("{root}/{}", node.path));
            a.add_variables(vec![Variable::new(&id, name, name, value)], &space.id(&parent));
        }
        drop(a);
        Ok(space)
    }

    fn id(&self, path: &str) -> NodeId {
        NodeId::new(self.ns, path.to_string())
    }

    /// Writes the values in one batch, in their order, with one source timestamp.
    fn write(&self, values: nodes::Values) {
        let stamp = DateTime::now();
        let ids: Vec<(NodeId, opcua::types::DataValue)> = nodes::data_values(values, stamp)
            .map(|(path, v)| (self.id(&format!("LineSight/{}/{path}", self.device)), v))
            .collect();
        let batch = ids.iter().map(|(id, v)| (id, None, v.clone()));
        if let Err(e) = self.manager.set_values(self.handle.subscriptions(), batch) {
            log::warn!("opcua: the nodes could not be written: {e}");
        }
    }
}

/// The line's events into the nodes, until the feed closes.
fn feed_loop(rx: &FeedReceiver<LineEvent>, space: &Space, model_id: &str) {
    let mut heartbeat: u32 = 0;
    loop {
        match rx.recv_timeout(Duration::from_secs(1)) {
            Recv::Item(LineEvent::Part { record, image, .. }) => {
                space.write(nodes::result(&record, image.as_deref(), model_id));
            }
            Recv::Item(LineEvent::State(s)) => {
                heartbeat = heartbeat.wrapping_add(1);
                space.write(nodes::state(&s, heartbeat, rx.dropped()));
            }
            Recv::Timeout => {}
            Recv::Closed => return,
        }
    }
}

/// `opcua.device_id`, or the host name.
fn device_id(o: &OpcuaConfig) -> String {
    o.device_id.clone().unwrap_or_else(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        let host = host.trim().replace('/', "_");
        if host.is_empty() {
            "linesight".into()
        } else {
            host
        }
    })
}

/// `opcua.pki_dir`, or `opcua-pki` beside `record.results`.
fn pki_dir(config: &Config, o: &OpcuaConfig) -> PathBuf {
    match &o.pki_dir {
        Some(d) => config.resolve(d),
        None => {
            let results = config.resolve(&config.record.results);
            results.parent().unwrap_or(Path::new("")).join("opcua-pki")
        }
    }
}

fn read_users(config: &Config, o: &OpcuaConfig) -> anyhow::Result<Vec<crate::config::OpcuaUser>> {
    let Some(file) = &o.users_file else {
        bail!("opcua.users_file: security = \"basic256sha256\" needs one");
    };
    let path = crate::sinks::secret_path(config, file);
    let text = crate::files::read_text_capped(&path, crate::files::TEXT_MAX_BYTES)
        .with_context(|| format!("opcua.users_file {}: cannot read", path.display()))?;
    crate::config::parse_users(&text).map_err(|e| anyhow::anyhow!("opcua.users_file {}: {e}", path.display()))
}

/// Endpoint security, users and where the certificates are, for the log and `check`.
fn describe(o: &OpcuaConfig, device: &str, pki: &Path) -> String {
    let security = match o.security {
        OpcuaSecurity::None => "security none, anonymous clients (loopback only)".to_string(),
        OpcuaSecurity::Basic256sha256 => "Basic256Sha256 sign and encrypt, users from opcua.users_file".to_string(),
    };
    format!(
        "nodes under LineSight/{device} in namespace {}, {security}, certificates in {}",
        nodes::NAMESPACE,
        pki.display()
    )
}

/// `linesight check`'s lines for `[opcua]` (none without it).
pub fn check(config: &Config) -> Vec<(&'static str, anyhow::Result<String>)> {
    let Some(o) = &config.opcua else {
        return Vec::new();
    };
    let Some(addr) = o.listen_addr() else {
        return vec![("opcua", Err(anyhow::anyhow!("opcua.listen: not an address")))];
    };
    let mut out = vec![
        ("opcua listen", crate::sinks::probe_listen(addr, 4840)),
        ("opcua", Ok(describe(o, &device_id(o), &pki_dir(config, o)))),
    ];
    if o.security == OpcuaSecurity::Basic256sha256 {
        out.push((
            "opcua users",
            read_users(config, o).map(|u| {
                let names: Vec<&str> = u.iter().map(|u| u.name.as_str()).collect();
                format!("{} user(s): {}", u.len(), names.join(", "))
            }),
        ));
    }
    out
}
