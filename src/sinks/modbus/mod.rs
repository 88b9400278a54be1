//! `[modbus]`: a Modbus TCP server from which a PLC reads every part's result, with a
//! result handshake (docs/modbus.md).
//!
//! ```text
//! feed (bounded, drop-oldest) ──▶ ls-sink-modbus: Core ◀── ls-modbus: tokio-modbus on a
//!                                 (registers, handshake)    current-thread tokio runtime
//! ```
//!
//! The register map (map.rs) and the handshake (handshake.rs) are pure; this file connects
//! them to the line's feed and to the PLC's connections. Neither thread can hold up a
//! verdict: the line only pushes to the feed, and both threads take the core's lock for
//! a copy or an update of a few words.

mod handshake;
pub mod map;

use crate::config::{Config, ModbusConfig};
use crate::sinks::feed::{FeedReceiver, Recv};
use crate::sinks::{Delivery, LineEvent, LineInfo, SinkReport, Sinks, STOP_WITHIN};
use anyhow::Context;
use handshake::Core;
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio_modbus::{ExceptionCode, Request, Response, SlaveRequest};

/// Events the server may fall behind by before the oldest are dropped (and counted as
/// overruns: the sequence numbers show the gap).
const FEED_CAPACITY: usize = 1024;

type Shared = Arc<Mutex<Core>>;

fn lock(core: &Shared) -> MutexGuard<'_, Core> {
    core.lock().unwrap_or_else(|e| e.into_inner())
}

/// Starts the Modbus server if `[modbus]` is configured.
pub fn open(sinks: &mut Sinks, config: &Config, info: &LineInfo) -> anyhow::Result<()> {
    let Some(m) = &config.modbus else {
        return Ok(());
    };
    let addr = m.listen_addr().context("modbus.listen")?;
    let listener = TcpListener::bind(addr).with_context(|| format!("modbus.listen {addr}: cannot listen"))?;
    listener.set_nonblocking(true)?;
    let bound = listener.local_addr()?;
    let core: Shared = Arc::new(Mutex::new(Core::new(m.buffer_results, &info.config_sha256)));
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = {
        let core = Arc::clone(&core);
        let (unit, allow) = (m.unit_id, m.allowed());
        std::thread::Builder::new()
            .name("ls-modbus".into())
            .spawn(move || serve(listener, core, unit, allow, stop_rx))
            .context("cannot start the Modbus server thread")?
    };
    sinks.add("modbus", FEED_CAPACITY, move |rx| {
        feed_loop(&rx, &core);
        let report = drain(&core);
        let _ = stop_tx.send(());
        let _ = server.join();
        report
    })?;
    log::info!("modbus server on {bound} ({})", describe(m));
    Ok(())
}

/// Unit, buffer and clients, for the log and `check`.
fn describe(m: &ModbusConfig) -> String {
    let clients = if m.allow.is_empty() {
        "any client".to_string()
    } else {
        format!("clients {}", m.allow.join(", "))
    };
    format!(
        "unit {}, up to {} result(s) buffered for the acknowledge, {clients}",
        m.unit_id, m.buffer_results
    )
}

/// The line's events into the core, until the feed closes.
fn feed_loop(rx: &FeedReceiver<LineEvent>, core: &Shared) {
    loop {
        match rx.recv_timeout(Duration::from_secs(1)) {
            Recv::Item(LineEvent::Part { seq, record, .. }) => lock(core).part(seq, &record),
            Recv::Item(LineEvent::State(s)) => lock(core).state(&s),
            Recv::Timeout => {}
            Recv::Closed => return,
        }
    }
}

/// The line has stopped: the PLC may still take what waits, for a moment. Then the figures.
fn drain(core: &Shared) -> SinkReport {
    let end = Instant::now() + STOP_WITHIN;
    while lock(core).waiting() > 0 && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(10));
    }
    let c = lock(core);
    let t = c.totals();
    let unsent = c.waiting() as u64;
    log::info!(
        "modbus: {} result(s) acknowledged by the PLC, {} overrun(s) ({} of them dropped before the server), {unsent} unacknowledged at the stop",
        t.acknowledged,
        t.overruns,
        t.lost_in_feed
    );
    SinkReport {
        results: Some(Delivery {
            sent: t.acknowledged,
            dropped: t.overruns,
            unsent,
        }),
    }
}

/// The server thread: tokio-modbus on a current-thread runtime until `stop`.
fn serve(listener: TcpListener, core: Shared, unit: u8, allow: Vec<IpAddr>, stop: tokio::sync::oneshot::Receiver<()>) {
    let run = || -> anyhow::Result<()> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_io().build()?;
        rt.block_on(async {
            let listener = tokio::net::TcpListener::from_std(listener)?;
            let server = tokio_modbus::server::tcp::Server::new(listener);
            let on_connected = |stream: tokio::net::TcpStream, peer: SocketAddr| {
                let service = admit(&allow, peer).then(|| Plc {
                    core: Arc::clone(&core),
                    unit,
                    peer,
                    refused: Mutex::new(0),
                });
                async move { Ok(service.map(|s| (s, stream))) }
            };
            let on_error = |e: std::io::Error| log::warn!("modbus: a connection ended with an error: {e}");
            server
                .serve_until(&on_connected, on_error, async {
                    let _ = stop.await;
                })
                .await
        })?;
        Ok(())
    };
    if let Err(e) = run() {
        log::error!("modbus: the server stopped: {e:#}");
    }
}

/// Whether `peer` may connect: any with an empty `allow`, else those it names.
fn admit(allow: &[IpAddr], peer: SocketAddr) -> bool {
    let ip = match peer.ip() {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    };
    let ok = allow.is_empty() || allow.contains(&ip);
    if ok {
        log::info!("modbus: client {peer} connected");
    } else {
        log::warn!("modbus: connection from {peer} refused: not in modbus.allow");
    }
    ok
}

/// One PLC's connection.
struct Plc {
    core: Shared,
    unit: u8,
    peer: SocketAddr,
    /// Requests refused so far (the first is logged).
    refused: Mutex<u64>,
}

impl Plc {
    fn handle(&self, req: SlaveRequest<'static>) -> Result<Response, ExceptionCode> {
        if req.slave != self.unit {
            return Err(ExceptionCode::GatewayTargetDevice);
        }
        let mut core = lock(&self.core);
        match req.request {
            Request::ReadInputRegisters(a, n) => core.read_input(a, n).map(Response::ReadInputRegisters),
            Request::ReadHoldingRegisters(a, n) => core.read_holding(a, n).map(Response::ReadHoldingRegisters),
            Request::WriteSingleRegister(a, w) => core
                .write_holding(a, &[w])
                .map(|()| Response::WriteSingleRegister(a, w)),
            Request::WriteMultipleRegisters(a, ws) => core
                .write_holding(a, &ws)
                .map(|()| Response::WriteMultipleRegisters(a, ws.len() as u16)),
            Request::MaskWriteRegister(a, and, or) => core
                .mask_write(a, and, or)
                .map(|()| Response::MaskWriteRegister(a, and, or)),
            _ => Err(ExceptionCode::IllegalFunction),
        }
    }
}

impl tokio_modbus::server::Service for Plc {
    type Request = SlaveRequest<'static>;
    type Response = Response;
    type Exception = ExceptionCode;
    type Future = std::future::Ready<Result<Response, ExceptionCode>>;

    fn call(&self, req: Self::Request) -> Self::Future {
        let (unit, function) = (req.slave, req.request.function_code());
        let result = self.handle(req);
        if let Err(e) = &result {
            let mut n = self.refused.lock().unwrap_or_else(|e| e.into_inner());
            *n += 1;
            if *n == 1 || n.is_power_of_two() {
                log::warn!(
                    "modbus: function {function} for unit {unit} from {} refused: {e:?} ({n} so far on this connection)",
                    self.peer
                );
            }
        }
        std::future::ready(result)
    }
}

/// `linesight check`'s lines for `[modbus]` (none without it).
pub fn check(config: &Config) -> Vec<(&'static str, anyhow::Result<String>)> {
    let Some(m) = &config.modbus else {
        return Vec::new();
    };
    let Some(addr) = m.listen_addr() else {
        return vec![("modbus", Err(anyhow::anyhow!("modbus.listen: not an address")))];
    };
    let mut out = vec![
        ("modbus listen", crate::sinks::probe_listen(addr, 5020)),
        ("modbus", Ok(describe(m))),
    ];
    if let Some(w) = exposure_warning(addr, !m.allow.is_empty()) {
        out.push(("modbus listen", Ok(w)));
    }
    out
}

/// A listener on any address but loopback, said plainly: Modbus has no authentication.
fn exposure_warning(addr: SocketAddr, allow: bool) -> Option<String> {
    if addr.ip().is_loopback() {
        return None;
    }
    Some(if allow {
        format!(
            "WARN modbus.listen {addr} is reachable from other hosts; Modbus TCP has no authentication and no encryption: only the addresses in modbus.allow may connect, but an address can be spoofed on the cell's network"
        )
    } else {
        format!(
            "WARN modbus.listen {addr} is reachable from other hosts and modbus.allow is empty: anyone on the network can read the results and write the control bits (Modbus TCP has no authentication); name the PLC in modbus.allow"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_allowed_clients_are_admitted() {
        let peer: SocketAddr = "192.168.10.20:40000".parse().unwrap();
        assert!(admit(&[], peer));
        assert!(admit(&["192.168.10.20".parse().unwrap()], peer));
        assert!(!admit(&["192.168.10.21".parse().unwrap()], peer));
        // An IPv4 client on a dual-stack socket is the IPv4 address.
        let mapped: SocketAddr = "[::ffff:192.168.10.20]:40000".parse().unwrap();
        assert!(admit(&["192.168.10.20".parse().unwrap()], mapped));
    }

    #[test]
    fn a_request_for_another_unit_or_function_is_refused() {
        let plc = Plc {
            core: Arc::new(Mutex::new(Core::new(8, ""))),
            unit: 7,
            peer: "127.0.0.1:1".parse().unwrap(),
            refused: Mutex::new(0),
        };
        let req = |slave, request| SlaveRequest { slave, request };
        assert_eq!(
            plc.handle(req(1, Request::ReadInputRegisters(0, 2))),
            Err(ExceptionCode::GatewayTargetDevice)
        );
        assert_eq!(
            plc.handle(req(7, Request::ReadCoils(0, 1))),
            Err(ExceptionCode::IllegalFunction)
        );
        assert_eq!(
            plc.handle(req(7, Request::WriteSingleRegister(5, 1))),
            Err(ExceptionCode::IllegalDataAddress)
        );
        assert_eq!(
            plc.handle(req(7, Request::WriteSingleRegister(0, 1))),
            Ok(Response::WriteSingleRegister(0, 1))
        );
        assert_eq!(
            plc.handle(req(7, Request::ReadHoldingRegisters(0, 1))),
            Ok(Response::ReadHoldingRegisters(vec![1]))
        );
    }

    #[test]
    fn check_warns_about_a_listener_beyond_this_machine() {
        assert!(exposure_warning("127.0.0.1:5020".parse().unwrap(), false).is_none());
        let open = exposure_warning("0.0.0.0:502".parse().unwrap(), false).unwrap();
        assert!(
            open.starts_with("WARN") && open.contains("modbus.allow is empty"),
            "{open}"
        );
        let named = exposure_warning("0.0.0.0:502".parse().unwrap(), true).unwrap();
        assert!(named.contains("only the addresses in modbus.allow"), "{named}");
    }
}
