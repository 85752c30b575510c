//! Control-API requests: one JSON object per line in, a typed
//! [`ApiRequest`] out, or an [`ApiError`] naming the field at fault. Pure:
//! no socket, no VMM state beyond the topology (ids and keys are checked
//! against it). `docs/control-api.md` documents every command, response and
//! error; the VMM serves the socket and the commands that touch devices.
//!
//! Also here: the response lines ([`ok_response`], [`error_response`]), the
//! answers to the commands the engine alone serves ([`ApiRequest::answer`]),
//! and the translation of `cxlvmm ctl` arguments into a request line
//! ([`request_from_args`]).

use serde_json::{json, Map, Value};

use crate::engine::Engine;
use crate::topology::{ParamError, ParamValue, Topology};

/// Longest request line accepted, in bytes (without the newline).
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;

/// Kinds of event record `inject-event` adds to a device's event log
/// (CXL 3.1 §8.2.9.2.1: General Media, DRAM, Memory Module event records).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    GeneralMedia,
    Dram,
    MemoryModule,
}

impl EventKind {
    pub const ALL: [EventKind; 3] = [
        EventKind::GeneralMedia,
        EventKind::Dram,
        EventKind::MemoryModule,
    ];

    /// Spelling in requests.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::GeneralMedia => "general-media",
            EventKind::Dram => "dram",
            EventKind::MemoryModule => "memory-module",
        }
    }

    pub fn parse(s: &str) -> Option<EventKind> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// A parsed, checked request. Devices are type-3 indices into the topology.
#[derive(Debug, Clone, PartialEq)]
pub enum ApiRequest {
    /// One parameter, or all of an element's when `key` is absent.
    Get {
        id: String,
        key: Option<String>,
    },
    /// Change a parameter (checked against the topology's rules already).
    Set {
        id: String,
        key: String,
        value: ParamValue,
    },
    Stats,
    Topology,
    /// Poison `length` bytes (64 B records) from `dpa`.
    InjectPoison {
        device: usize,
        dpa: u64,
        length: u64,
    },
    /// Clear the 64 B poison record at `dpa`.
    ClearPoison {
        device: usize,
        dpa: u64,
    },
    InjectEvent {
        device: usize,
        kind: EventKind,
    },
}

/// A rejected request: the message names the field and value; `field` is
/// the request field at fault, if one is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub field: Option<String>,
    pub message: String,
}

impl ApiError {
    fn new(field: &str, message: impl Into<String>) -> Self {
        ApiError {
            field: Some(field.to_string()),
            message: message.into(),
        }
    }

    fn whole(message: impl Into<String>) -> Self {
        ApiError {
            field: None,
            message: message.into(),
        }
    }
}

impl From<ParamError> for ApiError {
    fn from(e: ParamError) -> Self {
        ApiError::new(e.field(), e.to_string())
    }
}

/// Commands and the fields each takes (`cmd` aside).
const COMMANDS: [(&str, &[&str]); 7] = [
    ("get", &["id", "key"]),
    ("set", &["id", "key", "value"]),
    ("stats", &[]),
    ("topology", &[]),
    ("inject-poison", &["device", "dpa", "length"]),
    ("clear-poison", &["device", "dpa"]),
    ("inject-event", &["device", "kind"]),
];

fn command_names() -> String {
    COMMANDS.map(|(c, _)| c).join(", ")
}

/// A JSON value as written, for messages (long values cut short).
fn shown(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 80 {
        let cut = (0..=77).rev().find(|&i| s.is_char_boundary(i)).unwrap_or(0);
        format!("{}...", &s[..cut])
    } else {
        s
    }
}

/// The fields of one request object.
struct Fields<'a> {
    obj: &'a Map<String, Value>,
}

impl Fields<'_> {
    fn get(&self, name: &str) -> Option<&Value> {
        self.obj.get(name)
    }

    fn string(&self, name: &str) -> Result<String, ApiError> {
        match self.get(name) {
            None => Err(ApiError::new(name, format!("{name}: missing"))),
            Some(Value::String(s)) => Ok(s.clone()),
            Some(v) => Err(ApiError::new(
                name,
                format!("{name} = {}: expected a string", shown(v)),
            )),
        }
    }

    /// A non-negative integer: a JSON integer or a string (decimal, or
    /// hexadecimal with 0x).
    fn address(&self, name: &str) -> Result<Option<u64>, ApiError> {
        let Some(v) = self.get(name) else {
            return Ok(None);
        };
        let bad = |why: &str| ApiError::new(name, format!("{name} = {}: {why}", shown(v)));
        match v {
            Value::Number(n) => match (n.as_u64(), n.as_i64()) {
                (Some(u), _) => Ok(Some(u)),
                (None, Some(_)) => Err(bad("must not be negative")),
                _ => Err(bad("expected an integer")),
            },
            Value::String(s) => {
                let t = s.trim();
                let parsed = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
                    Some(hex) => u64::from_str_radix(hex, 16),
                    None => t.parse::<u64>(),
                };
                parsed
                    .map(Some)
                    .map_err(|_| bad("expected an integer (decimal or 0x hex)"))
            }
            _ => Err(bad("expected an integer")),
        }
    }
}

/// A JSON value as a parameter value.
fn param_value(v: &Value) -> Result<ParamValue, ApiError> {
    Ok(match v {
        Value::Null => ParamValue::Null,
        Value::Bool(b) => ParamValue::Bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => ParamValue::Int(i),
            None => ParamValue::Float(n.as_f64().unwrap_or(f64::INFINITY)),
        },
        Value::String(s) => ParamValue::Text(s.clone()),
        _ => {
            return Err(ApiError::new(
                "value",
                format!(
                    "value = {}: expected a number, string, boolean or null",
                    shown(v)
                ),
            ))
        }
    })
}

/// A type-3 device by id.
fn type3(topo: &Topology, id: &str) -> Result<usize, ApiError> {
    topo.type3.iter().position(|d| d.id == id).ok_or_else(|| {
        let known: Vec<&str> = topo.type3.iter().map(|d| d.id.as_str()).collect();
        ApiError::new(
            "device",
            format!(
                "device = {id:?}: no such type-3 device (type-3 devices: {})",
                known.join(", ")
            ),
        )
    })
}

/// A DPA that must be 64 B aligned and inside `device`.
fn dpa_in(topo: &Topology, device: usize, name: &str, dpa: u64) -> Result<u64, ApiError> {
    let d = &topo.type3[device];
    let cap = d.volatile + d.persistent;
    if !dpa.is_multiple_of(64) {
        return Err(ApiError::new(
            name,
            format!("{name} = {dpa:#x}: must be a multiple of 64"),
        ));
    }
    if dpa >= cap {
        return Err(ApiError::new(
            name,
            format!(
                "{name} = {dpa:#x}: past the end of {} ({cap:#x} bytes)",
                d.id
            ),
        ));
    }
    Ok(dpa)
}

/// Parse and check one request line (without its newline) against `topo`.
pub fn parse_request(line: &str, topo: &Topology) -> Result<ApiRequest, ApiError> {
    if line.len() > MAX_REQUEST_BYTES {
        return Err(ApiError::whole(format!(
            "request is {} bytes, more than the limit of {MAX_REQUEST_BYTES}",
            line.len()
        )));
    }
    let value: Value =
        serde_json::from_str(line).map_err(|e| ApiError::whole(format!("malformed JSON: {e}")))?;
    let Value::Object(obj) = &value else {
        return Err(ApiError::whole(format!(
            "a request is a JSON object, not {}",
            shown(&value)
        )));
    };
    let f = Fields { obj };
    let cmd = f.string("cmd").map_err(|e| ApiError {
        message: format!("{} (commands: {})", e.message, command_names()),
        ..e
    })?;
    let Some((_, allowed)) = COMMANDS.iter().find(|(c, _)| *c == cmd) else {
        return Err(ApiError::new(
            "cmd",
            format!(
                "cmd = {cmd:?}: unknown command (commands: {})",
                command_names()
            ),
        ));
    };
    if let Some(extra) = obj
        .keys()
        .find(|k| *k != "cmd" && !allowed.contains(&k.as_str()))
    {
        let mut fields = vec!["cmd"];
        fields.extend(allowed.iter());
        return Err(ApiError::new(
            extra,
            format!(
                "{extra}: unknown field for {cmd} (fields: {})",
                fields.join(", ")
            ),
        ));
    }
    match cmd.as_str() {
        "get" => {
            let id = f.string("id")?;
            let key = match f.get("key") {
                None => None,
                Some(_) => Some(f.string("key")?),
            };
            match &key {
                Some(k) => topo.param(&id, k).map(|_| ())?,
                None => topo.param_keys(&id).map(|_| ())?,
            }
            Ok(ApiRequest::Get { id, key })
        }
        "set" => {
            let id = f.string("id")?;
            let key = f.string("key")?;
            let value = match f.get("value") {
                None => return Err(ApiError::new("value", "value: missing")),
                Some(v) => param_value(v)?,
            };
            topo.check_param(&id, &key, &value)?;
            Ok(ApiRequest::Set { id, key, value })
        }
        "stats" => Ok(ApiRequest::Stats),
        "topology" => Ok(ApiRequest::Topology),
        "inject-poison" => {
            let device = type3(topo, &f.string("device")?)?;
            let dpa = f
                .address("dpa")?
                .ok_or_else(|| ApiError::new("dpa", "dpa: missing"))?;
            let dpa = dpa_in(topo, device, "dpa", dpa)?;
            let length = f.address("length")?.unwrap_or(64);
            let d = &topo.type3[device];
            let cap = d.volatile + d.persistent;
            if length == 0 || !length.is_multiple_of(64) || length > cap - dpa {
                return Err(ApiError::new(
                    "length",
                    format!(
                        "length = {length:#x}: must be a non-zero multiple of 64 within {} \
                         ({:#x} bytes from dpa)",
                        d.id,
                        cap - dpa
                    ),
                ));
            }
            Ok(ApiRequest::InjectPoison {
                device,
                dpa,
                length,
            })
        }
        "clear-poison" => {
            let device = type3(topo, &f.string("device")?)?;
            let dpa = f
                .address("dpa")?
                .ok_or_else(|| ApiError::new("dpa", "dpa: missing"))?;
            let dpa = dpa_in(topo, device, "dpa", dpa)?;
            Ok(ApiRequest::ClearPoison { device, dpa })
        }
        _ => {
            let device = type3(topo, &f.string("device")?)?;
            let kind = f.string("kind")?;
            let kind = EventKind::parse(&kind).ok_or_else(|| {
                let kinds = EventKind::ALL.map(EventKind::as_str).join(", ");
                ApiError::new(
                    "kind",
                    format!("kind = {kind:?}: unknown event kind ({kinds})"),
                )
            })?;
            Ok(ApiRequest::InjectEvent { device, kind })
        }
    }
}

/// `{"ok":true, ...payload}` as one line (`payload` an object, or null).
pub fn ok_response(payload: Value) -> String {
    let mut obj = Map::new();
    obj.insert("ok".into(), Value::Bool(true));
    if let Value::Object(m) = payload {
        obj.extend(m);
    }
    Value::Object(obj).to_string()
}

/// `{"ok":false,"error":"...","field":"..."}` as one line (`field` only
/// when one field is at fault).
pub fn error_response(e: &ApiError) -> String {
    let mut v = json!({ "ok": false, "error": e.message });
    if let Some(f) = &e.field {
        v["field"] = Value::String(f.clone());
    }
    v.to_string()
}

impl ApiRequest {
    /// Answer the commands the engine alone serves (`get`, `set`,
    /// `topology`) with a response line; None for the others (`stats`,
    /// poison and events), which need the VMM.
    pub fn answer(&self, engine: &mut Engine) -> Option<String> {
        let line = match self {
            ApiRequest::Get { id, key: Some(key) } => match engine.param(id, key) {
                Ok(v) => ok_response(json!({ "id": id, "key": key, "value": v })),
                Err(e) => error_response(&e.into()),
            },
            ApiRequest::Get { id, key: None } => {
                let params: Map<String, Value> = engine
                    .params()
                    .into_iter()
                    .filter(|p| p.id == *id)
                    .map(|p| (p.key, json!(p.value)))
                    .collect();
                ok_response(json!({ "id": id, "params": params }))
            }
            ApiRequest::Set { id, key, value } => match engine.set_param(id, key, value) {
                Ok(old) => {
                    // The value as stored (an integer latency reads back as a number).
                    let new = engine.param(id, key).unwrap_or_else(|_| value.clone());
                    ok_response(json!({ "id": id, "key": key, "old": old, "value": new }))
                }
                Err(e) => error_response(&e.into()),
            },
            ApiRequest::Topology => ok_response(json!({
                "tree": engine.topology().to_string(),
                "params": engine.params(),
            })),
            _ => return None,
        };
        Some(line)
    }
}

/// `cxlvmm ctl` arguments (after the socket option) as a request line:
/// `get ID [KEY]`, `set ID KEY VALUE`, `stats`, `topology`,
/// `inject-poison DEVICE DPA [LENGTH]`, `clear-poison DEVICE DPA`,
/// `inject-event DEVICE KIND`. A VALUE reads as JSON when it parses as a
/// number, `true`, `false` or `null`, else as a string; DPA and LENGTH
/// are passed as written (decimal or 0x hex). The server checks the rest.
pub fn request_from_args<S: AsRef<str>>(args: &[S]) -> Result<String, ApiError> {
    let a: Vec<&str> = args.iter().map(AsRef::as_ref).collect();
    let usage = |cmd: &str, form: &str| ApiError::new("cmd", format!("usage: {cmd} {form}"));
    let int_or_text = |s: &str| match s.parse::<u64>() {
        Ok(n) => json!(n),
        Err(_) => json!(s),
    };
    let v = match a.as_slice() {
        ["get", id] => json!({ "cmd": "get", "id": id }),
        ["get", id, key] => json!({ "cmd": "get", "id": id, "key": key }),
        ["get", ..] => return Err(usage("get", "ID [KEY]")),
        ["set", id, key, value] => {
            let value = match serde_json::from_str::<Value>(value) {
                Ok(v @ (Value::Number(_) | Value::Bool(_) | Value::Null)) => v,
                _ => json!(value),
            };
            json!({ "cmd": "set", "id": id, "key": key, "value": value })
        }
        ["set", ..] => return Err(usage("set", "ID KEY VALUE")),
        ["stats"] => json!({ "cmd": "stats" }),
        ["topology"] => json!({ "cmd": "topology" }),
        ["inject-poison", dev, dpa] => {
            json!({ "cmd": "inject-poison", "device": dev, "dpa": int_or_text(dpa) })
        }
        ["inject-poison", dev, dpa, len] => json!({
            "cmd": "inject-poison", "device": dev,
            "dpa": int_or_text(dpa), "length": int_or_text(len)
        }),
        ["inject-poison", ..] => return Err(usage("inject-poison", "DEVICE DPA [LENGTH]")),
        ["clear-poison", dev, dpa] => {
            json!({ "cmd": "clear-poison", "device": dev, "dpa": int_or_text(dpa) })
        }
        ["clear-poison", ..] => return Err(usage("clear-poison", "DEVICE DPA")),
        ["inject-event", dev, kind] => {
            json!({ "cmd": "inject-event", "device": dev, "kind": kind })
        }
        ["inject-event", ..] => return Err(usage("inject-event", "DEVICE KIND")),
        [cmd, ..] if COMMANDS.iter().any(|(c, _)| c == cmd) => {
            return Err(ApiError::new("cmd", format!("usage: {cmd} (no arguments)")))
        }
        [cmd, ..] => {
            return Err(ApiError::new(
                "cmd",
                format!("unknown command {cmd:?} (commands: {})", command_names()),
            ))
        }
        [] => {
            return Err(ApiError::new(
                "cmd",
                format!("a command is needed (commands: {})", command_names()),
            ))
        }
    };
    Ok(v.to_string())
}

#[cfg(test)]
mod tests;
