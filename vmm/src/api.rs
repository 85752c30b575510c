//! The control socket (`cxlvmm run --api-socket PATH`): JSON lines, one
//! request in, one response out (docs/control-api.md). Requests are parsed
//! and checked by `fabric::control`; this file serves them against the
//! running machine: timing parameters on the shared engine, statistics,
//! and error injection into the type-3 devices.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;

use devices::cxl::mailbox::{DeviceRegisters, HostEvent};
use fabric::control::{
    error_response, ok_response, parse_request, ApiError, ApiRequest, EventKind, MAX_REQUEST_BYTES,
};
use fabric::{Engine, Topology};
use serde_json::json;

use crate::accel::clock::MachineClock;
use crate::seccomp::{self, ThreadRole};
use crate::timed::TimedMemory;
use crate::vclock::shared::SharedClock;

/// What the API reaches in the running machine.
pub struct ApiContext {
    pub topology: Topology,
    pub engine: Arc<Mutex<Engine>>,
    /// Type-3 device registers, indexed like the topology's list.
    pub type3: Vec<Arc<Mutex<DeviceRegisters>>>,
    pub timed: Option<Arc<TimedMemory>>,
    pub clock: Option<Arc<SharedClock>>,
    /// Guest time: the virtual clock, or host time where none runs.
    pub guest_clock: Arc<MachineClock>,
}

impl ApiContext {
    fn engine(&self) -> std::sync::MutexGuard<'_, Engine> {
        self.engine.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn now_ps(&self) -> u64 {
        devices::clock::GuestClock::now_ps(self.guest_clock.as_ref())
    }

    /// The fabric's counters up to now.
    pub fn fabric_stats(&self) -> fabric::FabricStats {
        let now = self.now_ps();
        self.engine().fabric_stats(now)
    }

    /// Everything `stats` returns and `--stats FILE` writes.
    pub fn stats_json(&self) -> serde_json::Value {
        let now = self.now_ps();
        let fabric = self.engine().fabric_stats(now);
        json!({
            "guest_time_ps": now,
            "fabric": fabric,
            "timed": self.timed.as_ref().map(|t| t.stats().clone()),
            "clock": self.clock.as_ref().map(|c| c.stats()),
        })
    }

    fn device(&self, i: usize) -> std::sync::MutexGuard<'_, DeviceRegisters> {
        self.type3[i].lock().unwrap_or_else(|e| e.into_inner())
    }

    fn device_error(&self, what: &str, rc: impl std::fmt::Debug) -> String {
        error_response(&ApiError {
            field: Some("dpa".into()),
            message: format!("{what} refused by the device: {rc:?}"),
        })
    }

    /// Serves one request line; the response line (without newline).
    pub fn handle(&self, line: &str) -> String {
        let req = match parse_request(line, &self.topology) {
            Ok(r) => r,
            Err(e) => return error_response(&e),
        };
        if let Some(answer) = req.answer(&mut self.engine()) {
            if let ApiRequest::Set { id, key, value } = &req {
                if answer.starts_with("{\"ok\":true") {
                    log::info!("control API: set {id} {key} = {value:?}");
                }
            }
            return answer;
        }
        let id = |d: usize| self.topology.type3[d].id.clone();
        match req {
            ApiRequest::Stats => ok_response(self.stats_json()),
            ApiRequest::InjectPoison {
                device,
                dpa,
                length,
            } => match self.device(device).host_inject_poison(dpa, length) {
                Ok(lines) => {
                    log::info!(
                        "control API: poisoned {lines} line(s) at {}:{dpa:#x}",
                        id(device)
                    );
                    ok_response(json!({ "device": id(device), "dpa": dpa, "lines": lines }))
                }
                Err(rc) => self.device_error("inject-poison", rc),
            },
            ApiRequest::ClearPoison { device, dpa } => {
                match self.device(device).host_clear_poison(dpa) {
                    Ok(()) => ok_response(json!({ "device": id(device), "dpa": dpa })),
                    Err(rc) => self.device_error("clear-poison", rc),
                }
            }
            ApiRequest::InjectEvent { device, kind } => {
                let event = match kind {
                    EventKind::GeneralMedia => HostEvent::GeneralMedia { dpa: 0 },
                    EventKind::Dram => HostEvent::Dram { dpa: 0 },
                    EventKind::MemoryModule => HostEvent::MemoryModule,
                };
                match self.device(device).host_inject_event(event) {
                    Ok(handle) => {
                        log::info!("control API: {} event on {}", kind.as_str(), id(device));
                        ok_response(
                            json!({ "device": id(device), "kind": kind.as_str(), "handle": handle }),
                        )
                    }
                    Err(rc) => self.device_error("inject-event", rc),
                }
            }
            // Answered by the engine above.
            ApiRequest::Get { .. } | ApiRequest::Set { .. } | ApiRequest::Topology => {
                error_response(&ApiError {
                    field: Some("cmd".into()),
                    message: "not served".into(),
                })
            }
        }
    }
}

/// Reads one line of at most [`MAX_REQUEST_BYTES`]. Ok(None) at end of
/// input; Err(message) for an oversized line (whose rest is skipped).
fn read_line(r: &mut impl BufRead) -> io::Result<Option<Result<String, String>>> {
    let mut buf = Vec::new();
    let n = r
        .by_ref()
        .take(MAX_REQUEST_BYTES as u64 + 1)
        .read_until(b'\n', &mut buf)?;
    if n == 0 {
        return Ok(None);
    }
    if buf.last() == Some(&b'\n') {
        buf.pop();
    } else if buf.len() > MAX_REQUEST_BYTES {
        // Skip the rest of the line.
        let mut rest = Vec::new();
        r.read_until(b'\n', &mut rest)?;
        return Ok(Some(Err(format!(
            "request: line longer than {MAX_REQUEST_BYTES} bytes"
        ))));
    }
    Ok(Some(
        String::from_utf8(buf).map_err(|_| "request: not UTF-8".to_string()),
    ))
}

fn serve_connection(ctx: &ApiContext, stream: UnixStream) -> io::Result<()> {
    let mut out = stream.try_clone()?;
    let mut input = BufReader::new(stream);
    while let Some(line) = read_line(&mut input)? {
        let response = match line {
            Ok(l) if l.trim().is_empty() => continue,
            Ok(l) => ctx.handle(&l),
            Err(message) => error_response(&ApiError {
                field: None,
                message,
            }),
        };
        out.write_all(response.as_bytes())?;
        out.write_all(b"\n")?;
    }
    Ok(())
}

/// Connections served at once; a further client waits (in the listening
/// socket's backlog, then for a free worker) until one of them closes.
/// `cxlvmm ctl` holds its connection for one request.
pub const API_WORKERS: usize = 4;

/// The listening socket; removed when dropped.
pub struct ApiServer {
    path: PathBuf,
    _threads: Vec<JoinHandle<()>>,
}

/// Puts the calling API thread under its seccomp filter and says so on
/// `ready`; false when the filter could not be installed (the thread must
/// not serve then).
fn enter_filter(ready: &mpsc::Sender<Result<(), String>>) -> bool {
    let entered = seccomp::enter(ThreadRole::Api).map_err(|e| e.to_string());
    let ok = entered.is_ok();
    let _ = ready.send(entered);
    ok
}

impl ApiServer {
    /// Binds `path` (a stale socket file is replaced) and serves it: one
    /// thread accepts, [`API_WORKERS`] threads serve a connection each.
    /// Every one of them is under the `Api` seccomp filter before it
    /// touches the socket; if a filter cannot be installed, nothing is
    /// served and this fails.
    pub fn start(path: &Path, ctx: Arc<ApiContext>) -> io::Result<Self> {
        if path.exists() {
            std::fs::remove_file(path)?;
        }
        let listener = UnixListener::bind(path)?;
        let (ready_tx, ready_rx) = mpsc::channel();
        let (conn_tx, conn_rx) = crossbeam_channel::bounded::<UnixStream>(0);
        let mut threads = Vec::with_capacity(API_WORKERS + 1);
        for i in 0..API_WORKERS {
            let (ctx, conns, ready) = (ctx.clone(), conn_rx.clone(), ready_tx.clone());
            threads.push(
                std::thread::Builder::new()
                    .name(format!("api-conn{i}"))
                    .spawn(move || {
                        if !enter_filter(&ready) {
                            return;
                        }
                        for stream in conns.iter() {
                            if let Err(e) = serve_connection(&ctx, stream) {
                                log::debug!("control API connection: {e}");
                            }
                        }
                    })?,
            );
        }
        drop(conn_rx);
        threads.push(
            std::thread::Builder::new()
                .name("api".into())
                .spawn(move || {
                    if !enter_filter(&ready_tx) {
                        return;
                    }
                    for stream in listener.incoming().flatten() {
                        if conn_tx.send(stream).is_err() {
                            break;
                        }
                    }
                })?,
        );
        for _ in 0..threads.len() {
            match ready_rx.recv() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(io::Error::other(e)),
                Err(_) => return Err(io::Error::other("a control API thread ended at start")),
            }
        }
        Ok(Self {
            path: path.to_path_buf(),
            _threads: threads,
        })
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// `cxlvmm ctl`: sends one request, prints the response; the exit status
/// says whether the server answered `ok`.
pub fn client(socket: &Path, request: &str) -> Result<String, String> {
    let mut s =
        UnixStream::connect(socket).map_err(|e| format!("--socket {}: {e}", socket.display()))?;
    s.write_all(request.as_bytes())
        .and_then(|()| s.write_all(b"\n"))
        .map_err(|e| format!("--socket {}: {e}", socket.display()))?;
    let mut line = String::new();
    BufReader::new(s)
        .read_line(&mut line)
        .map_err(|e| format!("--socket {}: {e}", socket.display()))?;
    Ok(line.trim_end().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use devices::cxl::mailbox::{MemoryLabels, Type3Config};

    fn ctx() -> ApiContext {
        let topology = Topology::default_topology();
        let type3 = topology
            .type3
            .iter()
            .map(|d| {
                Arc::new(Mutex::new(DeviceRegisters::new(Type3Config {
                    volatile_bytes: d.volatile,
                    persistent_bytes: d.persistent,
                    serial: d.serial,
                    lsa: Box::new(MemoryLabels::new(0)),
                    fw_revision: "t".into(),
                })))
            })
            .collect();
        ApiContext {
            engine: Arc::new(Mutex::new(Engine::new(&topology))),
            topology,
            type3,
            timed: None,
            clock: None,
            guest_clock: Arc::new(MachineClock::default()),
        }
    }

    fn ok(resp: &str) -> serde_json::Value {
        let v: serde_json::Value = serde_json::from_str(resp).unwrap();
        assert_eq!(v["ok"], true, "{resp}");
        v
    }

    #[test]
    fn requests_reach_engine_and_devices_and_bad_ones_get_errors() {
        let c = ctx();
        let sw = c.topology.switches[0].id.clone();
        let dev = c.topology.type3[0].id.clone();
        ok(&c.handle(&format!(
            r#"{{"cmd":"set","id":"{sw}","key":"latency_ns","value":5000}}"#
        )));
        let v = ok(&c.handle(&format!(
            r#"{{"cmd":"get","id":"{sw}","key":"latency_ns"}}"#
        )));
        assert_eq!(v["value"], 5000.0);
        let v = ok(&c.handle(&format!(
            r#"{{"cmd":"inject-poison","device":"{dev}","dpa":4096}}"#
        )));
        assert_eq!(v["lines"], 1);
        assert_eq!(c.device(0).poison_records().len(), 1);
        ok(&c.handle(&format!(
            r#"{{"cmd":"inject-event","device":"{dev}","kind":"dram"}}"#
        )));
        ok(&c.handle(r#"{"cmd":"stats"}"#));
        for bad in [
            "{not json",
            r#"{"cmd":"set","id":"nope","key":"latency_ns","value":1}"#,
            r#"{"cmd":"fly"}"#,
        ] {
            let v: serde_json::Value = serde_json::from_str(&c.handle(bad)).unwrap();
            assert_eq!(v["ok"], false, "{bad}");
        }
        let v: serde_json::Value = serde_json::from_str(&c.handle(&format!(
            r#"{{"cmd":"inject-poison","device":"{dev}","dpa":3}}"#
        )))
        .unwrap();
        assert_eq!(v["ok"], false);
    }

    #[test]
    fn oversized_lines_are_refused_and_the_connection_goes_on() {
        let big = "x".repeat(MAX_REQUEST_BYTES + 10);
        let input = format!("{big}\n{{\"cmd\":\"stats\"}}\n");
        let mut r = BufReader::new(input.as_bytes());
        assert!(matches!(read_line(&mut r), Ok(Some(Err(_)))));
        assert_eq!(
            read_line(&mut r).unwrap().unwrap().unwrap(),
            r#"{"cmd":"stats"}"#
        );
        assert!(read_line(&mut r).unwrap().is_none());
    }

    #[test]
    fn socket_round_trip() {
        let dir = std::env::temp_dir().join(format!("cxlvmm-api-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("api.sock");
        let server = ApiServer::start(&path, Arc::new(ctx())).unwrap();
        let resp = client(&path, r#"{"cmd":"topology"}"#).unwrap();
        ok(&resp);
        drop(server);
        assert!(!path.exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
