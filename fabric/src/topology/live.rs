//! Timing parameters by element id and key, read and changed at run time
//! (the control API's `get`/`set`, `cxlvmm ctl`).
//!
//! A parameter is addressed by the id of its element (`hb0`, `sw0`, `mem0`,
//! `gpu0`) or of a table (`fabric`, `cpu_cache`) and by its key as written
//! inside that element's TOML table (`latency_ns`, `link.gen`,
//! `media.read_latency_ns`). A new value is checked with the same rules as
//! the topology file, by the same functions, so a value the file would
//! reject is rejected here with the same reason; the error names
//! `<id>.<key>` and the value as given.
//!
//! Not settable: structure (ports, sizes, windows), and the `[fabric]`
//! defaults (`link`, `media`, `switch_latency_ns`, ...), which only fill in
//! what each element's table left out when the file was read.

use std::fmt;

use serde::Serialize;

use super::error::TopologyError;
use super::raw::{RawCpuCache, RawLink, RawMedia, RawSize};
use super::validate::{
    bandwidth, cpu_cache_params, latency, link_params, media_params, quoted, RESERVED_IDS,
};
use super::{ElementRef, LinkParams, Topology};

/// A parameter's value as the control API carries it (JSON null, boolean,
/// integer, number or string).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum ParamValue {
    /// No value (`fabric.rc_p2p_bandwidth_gbps` when uncapped).
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
}

impl fmt::Display for ParamValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParamValue::Null => f.write_str("null"),
            ParamValue::Bool(b) => write!(f, "{b}"),
            ParamValue::Int(i) => write!(f, "{i}"),
            ParamValue::Float(x) => write!(f, "{x}"),
            ParamValue::Text(s) => write!(f, "{s:?}"),
        }
    }
}

/// One parameter of one element.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Param {
    pub id: String,
    pub key: String,
    pub value: ParamValue,
}

/// Why a parameter could not be read or changed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ParamError {
    #[error("no element or table with id {id:?} (ids: {})", known.join(", "))]
    UnknownId { id: String, known: Vec<String> },
    #[error("{id}.{key}: unknown key for {what} (keys: {})", known.join(", "))]
    UnknownKey {
        id: String,
        key: String,
        what: &'static str,
        known: Vec<&'static str>,
    },
    #[error("{id}.{key} = {value}: expected {expected}")]
    WrongType {
        id: String,
        key: String,
        value: String,
        expected: &'static str,
    },
    /// The topology's own rule, e.g. `sw0.latency_ns = -5: must not be negative`.
    #[error(transparent)]
    Invalid(#[from] TopologyError),
}

impl ParamError {
    /// Which request field is at fault: `id`, `key` or `value`.
    pub fn field(&self) -> &'static str {
        match self {
            ParamError::UnknownId { .. } => "id",
            ParamError::UnknownKey { .. } => "key",
            ParamError::WrongType { .. } | ParamError::Invalid(_) => "value",
        }
    }
}

/// What a change touched, for the engine to rebuild.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Changed {
    /// The link above an element.
    Link(ElementRef),
    /// A fixed delay inside routes (host bridge, switch, root complex).
    Routes,
    /// The root complex's P2P bandwidth cap (and routes, which may gain or
    /// lose the cap stage).
    RcCap,
    Media(usize),
    Bar(usize),
    HostMemory,
    /// `[cpu_cache]`: `rebuild` false when only the hit latency changed.
    Cache {
        rebuild: bool,
    },
}

const LINK_KEYS: [&str; 10] = [
    "link.gen",
    "link.width",
    "link.flit",
    "link.retimers",
    "link.retimer_latency_ns",
    "link.port_latency_ns",
    "link.credits",
    "link.ber",
    "link.max_payload",
    "link.max_read_request",
];
const MEDIA_KEYS: [&str; 5] = [
    "media.read_latency_ns",
    "media.write_latency_ns",
    "media.read_bandwidth_gbps",
    "media.write_bandwidth_gbps",
    "media.queue_depth",
];
const FABRIC_KEYS: [&str; 4] = [
    "host_memory_latency_ns",
    "host_memory_bandwidth_gbps",
    "rc_p2p_latency_ns",
    "rc_p2p_bandwidth_gbps",
];
const CACHE_KEYS: [&str; 5] = ["enabled", "size", "ways", "line", "hit_latency_ns"];

/// What an id names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owner {
    Element(ElementRef),
    Fabric,
    Cache,
}

impl Owner {
    fn what(self) -> &'static str {
        match self {
            Owner::Element(ElementRef::HostBridge(_)) => "a host bridge",
            Owner::Element(ElementRef::Switch(_)) => "a switch",
            Owner::Element(ElementRef::Type3(_)) => "a type-3 device",
            Owner::Element(ElementRef::Accelerator(_)) => "an accelerator",
            Owner::Fabric => "[fabric]",
            Owner::Cache => "[cpu_cache]",
        }
    }

    fn keys(self) -> Vec<&'static str> {
        let mut k = Vec::new();
        match self {
            Owner::Element(ElementRef::HostBridge(_)) => k.push("latency_ns"),
            Owner::Element(ElementRef::Switch(_)) => {
                k.push("latency_ns");
                k.extend(LINK_KEYS);
            }
            Owner::Element(ElementRef::Type3(_)) => {
                k.extend(LINK_KEYS);
                k.extend(MEDIA_KEYS);
            }
            Owner::Element(ElementRef::Accelerator(_)) => {
                k.extend(["bar_latency_ns", "bar_bandwidth_gbps"]);
                k.extend(LINK_KEYS);
            }
            Owner::Fabric => k.extend(FABRIC_KEYS),
            Owner::Cache => k.extend(CACHE_KEYS),
        }
        k
    }
}

fn int(v: impl Into<i64>) -> ParamValue {
    ParamValue::Int(v.into())
}

fn link_value(l: &LinkParams, field: &str) -> Option<ParamValue> {
    Some(match field {
        "gen" => int(l.gen),
        "width" => int(l.width),
        "flit" => ParamValue::Text(l.flit.as_str().into()),
        "retimers" => int(l.retimers),
        "retimer_latency_ns" => ParamValue::Float(l.retimer_latency_ns),
        "port_latency_ns" => ParamValue::Float(l.port_latency_ns),
        "credits" => int(l.credits),
        "ber" => ParamValue::Float(l.ber),
        "max_payload" => int(l.max_payload),
        "max_read_request" => int(l.max_read_request),
        _ => return None,
    })
}

/// A value converted for one key; errors are completed with id and key.
struct Input<'a> {
    id: &'a str,
    key: &'a str,
    value: &'a ParamValue,
}

impl Input<'_> {
    fn wrong(&self, expected: &'static str) -> ParamError {
        ParamError::WrongType {
            id: self.id.into(),
            key: self.key.into(),
            value: self.value.to_string(),
            expected,
        }
    }

    fn float(&self) -> Result<f64, ParamError> {
        match *self.value {
            ParamValue::Float(x) => Ok(x),
            ParamValue::Int(i) => Ok(i as f64),
            _ => Err(self.wrong("a number")),
        }
    }

    fn int(&self) -> Result<i64, ParamError> {
        match *self.value {
            ParamValue::Int(i) => Ok(i),
            ParamValue::Float(x) if x.fract() == 0.0 && x.abs() < 9.0e15 => Ok(x as i64),
            _ => Err(self.wrong("an integer")),
        }
    }

    fn text(&self) -> Result<&str, ParamError> {
        match self.value {
            ParamValue::Text(s) => Ok(s),
            _ => Err(self.wrong("a string")),
        }
    }

    /// A rejection by the topology's rules, renamed to `<id>.<key> = value`.
    fn invalid(&self, e: TopologyError) -> ParamError {
        let value = match self.value {
            ParamValue::Text(s) => quoted(s),
            v => v.to_string(),
        };
        ParamError::Invalid(TopologyError {
            key: format!("{}.{}", self.id, self.key),
            value,
            kind: e.kind,
        })
    }
}

impl Topology {
    fn owner(&self, id: &str) -> Result<Owner, ParamError> {
        match id {
            "fabric" => return Ok(Owner::Fabric),
            "cpu_cache" => return Ok(Owner::Cache),
            _ => {}
        }
        self.find(id).map(Owner::Element).ok_or_else(|| {
            let mut known: Vec<String> = self.host_bridges.iter().map(|h| h.id.clone()).collect();
            known.extend(self.switches.iter().map(|s| s.id.clone()));
            known.extend(self.type3.iter().map(|d| d.id.clone()));
            known.extend(self.accelerators.iter().map(|a| a.id.clone()));
            known.extend(RESERVED_IDS.iter().map(|s| s.to_string()));
            ParamError::UnknownId {
                id: id.into(),
                known,
            }
        })
    }

    /// The keys `id` has (an error for an unknown id).
    pub fn param_keys(&self, id: &str) -> Result<Vec<&'static str>, ParamError> {
        Ok(self.owner(id)?.keys())
    }

    /// Current value of `id`'s `key`.
    pub fn param(&self, id: &str, key: &str) -> Result<ParamValue, ParamError> {
        let owner = self.owner(id)?;
        let unknown = || ParamError::UnknownKey {
            id: id.into(),
            key: key.into(),
            what: owner.what(),
            known: owner.keys(),
        };
        if !owner.keys().contains(&key) {
            return Err(unknown());
        }
        let f = &self.fabric;
        let c = &self.cpu_cache;
        let v = match (owner, key) {
            (Owner::Element(e), k) if k.starts_with("link.") => {
                let l = self.link_of(e).ok_or_else(unknown)?;
                link_value(l, &k[5..]).ok_or_else(unknown)?
            }
            (Owner::Element(ElementRef::Type3(d)), k) => {
                let m = &self.type3[d].media;
                match k {
                    "media.read_latency_ns" => ParamValue::Float(m.read_latency_ns),
                    "media.write_latency_ns" => ParamValue::Float(m.write_latency_ns),
                    "media.read_bandwidth_gbps" => ParamValue::Float(m.read_bandwidth_gbps),
                    "media.write_bandwidth_gbps" => ParamValue::Float(m.write_bandwidth_gbps),
                    _ => int(m.queue_depth),
                }
            }
            (Owner::Element(ElementRef::HostBridge(h)), _) => {
                ParamValue::Float(self.host_bridges[h].latency_ns)
            }
            (Owner::Element(ElementRef::Switch(s)), _) => {
                ParamValue::Float(self.switches[s].latency_ns)
            }
            (Owner::Element(ElementRef::Accelerator(a)), k) => {
                let acc = &self.accelerators[a];
                ParamValue::Float(if k == "bar_latency_ns" {
                    acc.bar_latency_ns
                } else {
                    acc.bar_bandwidth_gbps
                })
            }
            (Owner::Fabric, "host_memory_latency_ns") => {
                ParamValue::Float(f.host_memory_latency_ns)
            }
            (Owner::Fabric, "host_memory_bandwidth_gbps") => {
                ParamValue::Float(f.host_memory_bandwidth_gbps)
            }
            (Owner::Fabric, "rc_p2p_latency_ns") => ParamValue::Float(f.rc_p2p_latency_ns),
            (Owner::Fabric, _) => f
                .rc_p2p_bandwidth_gbps
                .map_or(ParamValue::Null, ParamValue::Float),
            (Owner::Cache, "enabled") => ParamValue::Bool(c.enabled),
            (Owner::Cache, "size") => ParamValue::Int(c.size as i64),
            (Owner::Cache, "ways") => int(c.ways),
            (Owner::Cache, "line") => int(c.line),
            (Owner::Cache, _) => ParamValue::Float(c.hit_latency_ns),
        };
        Ok(v)
    }

    /// Every settable parameter, element by element in file order, then
    /// `fabric` and `cpu_cache`.
    pub fn params(&self) -> Vec<Param> {
        let mut ids: Vec<&str> = self.host_bridges.iter().map(|h| h.id.as_str()).collect();
        ids.extend(self.switches.iter().map(|s| s.id.as_str()));
        ids.extend(self.type3.iter().map(|d| d.id.as_str()));
        ids.extend(self.accelerators.iter().map(|a| a.id.as_str()));
        ids.extend(RESERVED_IDS);
        let mut out = Vec::new();
        for id in ids {
            for key in self.param_keys(id).unwrap_or_default() {
                if let Ok(value) = self.param(id, key) {
                    out.push(Param {
                        id: id.into(),
                        key: key.into(),
                        value,
                    });
                }
            }
        }
        out
    }

    /// Check `value` for `id`'s `key` without changing anything.
    pub fn check_param(&self, id: &str, key: &str, value: &ParamValue) -> Result<(), ParamError> {
        self.clone().set_param(id, key, value).map(|_| ())
    }

    /// Set `id`'s `key` to `value` after the topology file's checks; on an
    /// error nothing changes.
    pub(crate) fn set_param(
        &mut self,
        id: &str,
        key: &str,
        value: &ParamValue,
    ) -> Result<Changed, ParamError> {
        self.param(id, key)?;
        let owner = self.owner(id)?;
        let inp = Input { id, key, value };
        let err = |e| inp.invalid(e);
        match owner {
            Owner::Element(e) if key.starts_with("link.") => {
                let field = &key[5..];
                let cur = self.link_of(e).cloned().unwrap_or_default();
                let raw = raw_link(&inp, field, &cur)?;
                let cxl_mem = !matches!(e, ElementRef::Accelerator(_));
                let new = link_params(&format!("{id}.link"), &raw, &cur, cxl_mem).map_err(err)?;
                match e {
                    ElementRef::Switch(s) => self.switches[s].link = new,
                    ElementRef::Type3(d) => self.type3[d].link = new,
                    ElementRef::Accelerator(a) => self.accelerators[a].link = new,
                    ElementRef::HostBridge(_) => {}
                }
                Ok(Changed::Link(e))
            }
            Owner::Element(ElementRef::Type3(d)) => {
                let mut raw = RawMedia::default();
                match key {
                    "media.read_latency_ns" => raw.read_latency_ns = Some(inp.float()?),
                    "media.write_latency_ns" => raw.write_latency_ns = Some(inp.float()?),
                    "media.read_bandwidth_gbps" => raw.read_bandwidth_gbps = Some(inp.float()?),
                    "media.write_bandwidth_gbps" => raw.write_bandwidth_gbps = Some(inp.float()?),
                    _ => raw.queue_depth = Some(inp.int()?),
                }
                let cur = &self.type3[d].media;
                self.type3[d].media =
                    media_params(&format!("{id}.media"), &raw, cur).map_err(err)?;
                Ok(Changed::Media(d))
            }
            Owner::Element(ElementRef::HostBridge(h)) => {
                self.host_bridges[h].latency_ns = latency(key, inp.float()?).map_err(err)?;
                Ok(Changed::Routes)
            }
            Owner::Element(ElementRef::Switch(s)) => {
                self.switches[s].latency_ns = latency(key, inp.float()?).map_err(err)?;
                Ok(Changed::Routes)
            }
            Owner::Element(ElementRef::Accelerator(a)) => {
                let acc = &mut self.accelerators[a];
                if key == "bar_latency_ns" {
                    acc.bar_latency_ns = latency(key, inp.float()?).map_err(err)?;
                } else {
                    acc.bar_bandwidth_gbps = bandwidth(key, inp.float()?).map_err(err)?;
                }
                Ok(Changed::Bar(a))
            }
            Owner::Fabric => {
                let f = &mut self.fabric;
                match key {
                    "host_memory_latency_ns" => {
                        f.host_memory_latency_ns = latency(key, inp.float()?).map_err(err)?;
                        Ok(Changed::HostMemory)
                    }
                    "host_memory_bandwidth_gbps" => {
                        f.host_memory_bandwidth_gbps = bandwidth(key, inp.float()?).map_err(err)?;
                        Ok(Changed::HostMemory)
                    }
                    "rc_p2p_latency_ns" => {
                        f.rc_p2p_latency_ns = latency(key, inp.float()?).map_err(err)?;
                        Ok(Changed::Routes)
                    }
                    _ => {
                        f.rc_p2p_bandwidth_gbps = match value {
                            ParamValue::Null => None,
                            ParamValue::Text(s) if s == "none" => None,
                            _ => Some(bandwidth(key, inp.float()?).map_err(err)?),
                        };
                        Ok(Changed::RcCap)
                    }
                }
            }
            Owner::Cache => {
                let mut raw = RawCpuCache::default();
                match key {
                    "enabled" => match value {
                        ParamValue::Bool(b) => raw.enabled = Some(*b),
                        _ => return Err(inp.wrong("true or false")),
                    },
                    "size" => {
                        raw.size = Some(match value {
                            ParamValue::Text(s) => RawSize::Str(s.clone()),
                            _ => RawSize::Int(inp.int()?),
                        })
                    }
                    "ways" => raw.ways = Some(inp.int()?),
                    "line" => raw.line = Some(inp.int()?),
                    _ => raw.hit_latency_ns = Some(inp.float()?),
                }
                let new = cpu_cache_params("cpu_cache", &raw, &self.cpu_cache).map_err(err)?;
                let rebuild = key != "hit_latency_ns";
                self.cpu_cache = new;
                Ok(Changed::Cache { rebuild })
            }
        }
    }
}

/// A raw link table setting only `field`. Setting the generation pins the
/// current flit mode, so that a mode the new rate cannot carry is rejected
/// rather than silently replaced (which the file's rules do for defaults).
fn raw_link(inp: &Input<'_>, field: &str, cur: &LinkParams) -> Result<RawLink, ParamError> {
    let mut r = RawLink::default();
    match field {
        "gen" => {
            r.gen = Some(inp.int()?);
            r.flit = Some(cur.flit.as_str().into());
        }
        "width" => r.width = Some(inp.int()?),
        "flit" => r.flit = Some(inp.text()?.into()),
        "retimers" => r.retimers = Some(inp.int()?),
        "retimer_latency_ns" => r.retimer_latency_ns = Some(inp.float()?),
        "port_latency_ns" => r.port_latency_ns = Some(inp.float()?),
        "credits" => r.credits = Some(inp.int()?),
        "ber" => r.ber = Some(inp.float()?),
        "max_payload" => r.max_payload = Some(inp.int()?),
        _ => r.max_read_request = Some(inp.int()?),
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topo() -> Topology {
        Topology::from_toml_str(
            r#"
            [[host_bridge]]
            id = "hb0"
            [[switch]]
            id = "sw0"
            port = "hb0.rp0"
            [[type3]]
            id = "mem0"
            port = "sw0.dp0"
            volatile = "256M"
            [[accelerator]]
            id = "gpu0"
            port = "sw0.dp1"
            link = { gen = 4, width = 16, flit = "none" }
            [[window]]
            targets = ["hb0"]
            size = "256M"
            "#,
        )
        .unwrap()
    }

    fn set(t: &mut Topology, id: &str, key: &str, v: ParamValue) -> Result<Changed, String> {
        t.set_param(id, key, &v).map_err(|e| e.to_string())
    }

    #[test]
    fn every_listed_parameter_reads_back() {
        let t = topo();
        let all = t.params();
        // hb0 1, sw0 1 + 10, mem0 10 + 5, gpu0 2 + 10, fabric 4, cpu_cache 5.
        assert_eq!(all.len(), 48);
        for p in &all {
            assert_eq!(t.param(&p.id, &p.key).unwrap(), p.value);
        }
        assert_eq!(
            t.param("sw0", "latency_ns").unwrap(),
            ParamValue::Float(90.0)
        );
        assert_eq!(
            t.param("mem0", "link.flit").unwrap(),
            ParamValue::Text("68B".into())
        );
        assert_eq!(
            t.param("fabric", "rc_p2p_bandwidth_gbps").unwrap(),
            ParamValue::Null
        );
    }

    #[test]
    fn set_applies_and_names_what_changed() {
        let mut t = topo();
        assert_eq!(
            set(&mut t, "sw0", "latency_ns", ParamValue::Int(5000)),
            Ok(Changed::Routes)
        );
        assert_eq!(t.switches[0].latency_ns, 5000.0);
        let mem0 = ElementRef::Type3(0);
        assert_eq!(
            set(&mut t, "mem0", "link.width", ParamValue::Int(1)),
            Ok(Changed::Link(mem0))
        );
        assert_eq!(t.type3[0].link.width, 1);
        assert_eq!(
            set(
                &mut t,
                "mem0",
                "media.read_latency_ns",
                ParamValue::Float(2000.5)
            ),
            Ok(Changed::Media(0))
        );
        assert_eq!(t.type3[0].media.read_latency_ns, 2000.5);
        assert_eq!(
            set(
                &mut t,
                "fabric",
                "rc_p2p_bandwidth_gbps",
                ParamValue::Int(12)
            ),
            Ok(Changed::RcCap)
        );
        assert_eq!(t.fabric.rc_p2p_bandwidth_gbps, Some(12.0));
        set(&mut t, "fabric", "rc_p2p_bandwidth_gbps", ParamValue::Null).unwrap();
        assert_eq!(t.fabric.rc_p2p_bandwidth_gbps, None);
        assert_eq!(
            set(&mut t, "cpu_cache", "hit_latency_ns", ParamValue::Int(5)),
            Ok(Changed::Cache { rebuild: false })
        );
        assert_eq!(
            set(&mut t, "cpu_cache", "size", ParamValue::Text("4M".into())),
            Ok(Changed::Cache { rebuild: true })
        );
        assert_eq!(t.cpu_cache.size, 4 << 20);
        set(&mut t, "gpu0", "link.flit", ParamValue::Text("68B".into())).unwrap();
        assert_eq!(t.accelerators[0].link.flit, super::super::FlitMode::Flit68);
    }

    #[test]
    fn errors_name_id_key_and_value() {
        let mut t = topo();
        let before = t.clone();
        let cases: &[(&str, &str, ParamValue, &str)] = &[
            ("sw0", "latency_ns", ParamValue::Int(-5), "sw0.latency_ns = -5: must not be negative"),
            ("sw0", "latency_ns", ParamValue::Float(2e9), "sw0.latency_ns = 2000000000: out of range: at most 1e9 ns"),
            ("mem0", "link.gen", ParamValue::Int(7), "mem0.link.gen = 7: unsupported PCIe generation (1 to 6)"),
            ("mem0", "link.gen", ParamValue::Int(6), "mem0.link.gen = 6: flit mode 68B cannot run at PCIe gen 6"),
            ("mem0", "link.width", ParamValue::Int(3), "mem0.link.width = 3: unsupported link width (x1, x2, x4, x8, x16)"),
            ("mem0", "link.flit", ParamValue::Text("none".into()), "mem0.link.flit = \"none\": CXL.mem needs a flit mode (68B, 256B or 256B-lopt)"),
            ("mem0", "link.credits", ParamValue::Int(0), "mem0.link.credits = 0: must be greater than zero"),
            ("mem0", "link.ber", ParamValue::Float(0.5), "mem0.link.ber = 0.5: out of range: 0 to 1e-3"),
            ("mem0", "media.read_bandwidth_gbps", ParamValue::Int(0), "mem0.media.read_bandwidth_gbps = 0: must be greater than zero"),
            ("mem0", "media.queue_depth", ParamValue::Int(100000), "mem0.media.queue_depth = 100000: out of range: 1 to 65536"),
            ("cpu_cache", "ways", ParamValue::Int(3), "cpu_cache.ways = 3: out of range: must be 3 ways x 64 B x a power-of-two number of sets"),
            ("cpu_cache", "line", ParamValue::Int(32), "cpu_cache.line = 32: out of range: 64, 128 or 256 (at most the smallest interleave granularity)"),
            ("sw0", "latency_ns", ParamValue::Text("fast".into()), "sw0.latency_ns = \"fast\": expected a number"),
            ("mem0", "link.gen", ParamValue::Float(4.5), "mem0.link.gen = 4.5: expected an integer"),
            ("cpu_cache", "enabled", ParamValue::Int(1), "cpu_cache.enabled = 1: expected true or false"),
            ("mem0", "link.flit", ParamValue::Int(68), "mem0.link.flit = 68: expected a string"),
        ];
        for (id, key, v, want) in cases {
            assert_eq!(set(&mut t, id, key, v.clone()).unwrap_err(), *want);
        }
        assert_eq!(t, before, "a rejected value changes nothing");
        let e = t
            .set_param("sw9", "latency_ns", &ParamValue::Int(1))
            .unwrap_err();
        assert_eq!(e.field(), "id");
        assert_eq!(
            e.to_string(),
            "no element or table with id \"sw9\" (ids: hb0, sw0, mem0, gpu0, fabric, cpu_cache)"
        );
        let e = t
            .set_param("hb0", "link.gen", &ParamValue::Int(4))
            .unwrap_err();
        assert_eq!(e.field(), "key");
        assert_eq!(
            e.to_string(),
            "hb0.link.gen: unknown key for a host bridge (keys: latency_ns)"
        );
    }

    #[test]
    fn reserved_ids_are_rejected_in_files() {
        let e = Topology::from_toml_str("[[host_bridge]]\nid = \"fabric\"\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "host_bridge[0].id = \"fabric\": this id is reserved for the [fabric] table"
        );
    }
}
