//! The TOML schema as serde sees it: every field optional or loosely typed,
//! so that out-of-range values (negative sizes, gen 7, ...) reach
//! validation, which can name the key path; serde alone would report only a
//! line and column.

use serde::Deserialize;

/// A byte count: an integer, or a string with a binary suffix ("256M", "4GiB").
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum RawSize {
    Int(i64),
    Str(String),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTopology {
    #[serde(default)]
    pub fabric: RawFabric,
    #[serde(default, rename = "host_bridge")]
    pub host_bridges: Vec<RawHostBridge>,
    #[serde(default, rename = "switch")]
    pub switches: Vec<RawSwitch>,
    #[serde(default, rename = "type3")]
    pub type3: Vec<RawType3>,
    #[serde(default, rename = "accelerator")]
    pub accelerators: Vec<RawAccelerator>,
    #[serde(default, rename = "window")]
    pub windows: Vec<RawWindow>,
    #[serde(default)]
    pub cpu_cache: RawCpuCache,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFabric {
    pub seed: Option<i64>,
    pub host_memory_latency_ns: Option<f64>,
    pub host_memory_bandwidth_gbps: Option<f64>,
    pub rc_p2p_latency_ns: Option<f64>,
    pub rc_p2p_bandwidth_gbps: Option<f64>,
    pub switch_latency_ns: Option<f64>,
    pub host_bridge_latency_ns: Option<f64>,
    #[serde(default)]
    pub link: RawLink,
    #[serde(default)]
    pub media: RawMedia,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLink {
    pub gen: Option<i64>,
    pub width: Option<i64>,
    pub flit: Option<String>,
    pub retimers: Option<i64>,
    pub retimer_latency_ns: Option<f64>,
    pub port_latency_ns: Option<f64>,
    pub credits: Option<i64>,
    pub ber: Option<f64>,
    pub max_payload: Option<i64>,
    pub max_read_request: Option<i64>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMedia {
    pub read_latency_ns: Option<f64>,
    pub write_latency_ns: Option<f64>,
    pub read_bandwidth_gbps: Option<f64>,
    pub write_bandwidth_gbps: Option<f64>,
    pub queue_depth: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHostBridge {
    pub id: String,
    pub uid: Option<i64>,
    pub root_ports: Option<i64>,
    pub latency_ns: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSwitch {
    pub id: String,
    pub port: String,
    pub downstream_ports: Option<i64>,
    pub latency_ns: Option<f64>,
    #[serde(default)]
    pub link: RawLink,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawType3 {
    pub id: String,
    pub port: String,
    pub volatile: Option<RawSize>,
    pub persistent: Option<RawSize>,
    pub lsa: Option<RawSize>,
    pub serial: Option<i64>,
    /// Backing file for the persistent capacity (kept across runs).
    #[serde(alias = "backing")]
    pub persistent_path: Option<String>,
    #[serde(default)]
    pub link: RawLink,
    #[serde(default)]
    pub media: RawMedia,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAccelerator {
    pub id: String,
    pub port: String,
    /// VRAM (and memory BAR) size; `bar_size` is the older name.
    #[serde(alias = "bar_size")]
    pub vram: Option<RawSize>,
    pub bar_latency_ns: Option<f64>,
    pub bar_bandwidth_gbps: Option<f64>,
    pub queues: Option<i64>,
    pub dma_engines: Option<i64>,
    pub compute_gflops: Option<f64>,
    #[serde(default)]
    pub link: RawLink,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWindow {
    pub id: Option<String>,
    pub targets: Vec<String>,
    pub size: RawSize,
    pub ways: Option<i64>,
    pub granularity: Option<RawSize>,
    pub restrictions: Option<Vec<String>>,
    pub base: Option<RawSize>,
    pub qtg: Option<i64>,
    pub mode: Option<String>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCpuCache {
    pub enabled: Option<bool>,
    pub size: Option<RawSize>,
    pub ways: Option<i64>,
    pub line: Option<i64>,
    pub hit_latency_ns: Option<f64>,
}
