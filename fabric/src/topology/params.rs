//! Per-element timing parameters and their defaults.
//!
//! Every fixed latency in this module is the amount the element adds to an
//! idle read's round trip (load-to-use latency), the unit in which CDAT, HMAT
//! and published measurements quote it. The engine charges half of it on the
//! way down and half on the way up, so a one-way transfer (a posted write)
//! pays half. The defaults and the measurements they rest on are listed in
//! `docs/timing-sources.md`.

use std::fmt;

use serde::{Serialize, Serializer};

/// Link flit mode (the framing the link layer uses).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FlitMode {
    /// No flits: PCIe TLP framing (STP, LCRC, DLLPs). Only for PCIe links.
    None,
    /// CXL 1.1/2.0 68-byte flit: 4 × 16 B slots + CRC + protocol ID.
    Flit68,
    /// CXL 3.x / PCIe 6 256-byte standard flit.
    Flit256,
    /// CXL 3.x 256-byte latency-optimised flit (each 128 B half checked alone).
    Flit256LatencyOpt,
}

impl FlitMode {
    /// Spelling used in TOML.
    pub fn as_str(self) -> &'static str {
        match self {
            FlitMode::None => "none",
            FlitMode::Flit68 => "68B",
            FlitMode::Flit256 => "256B",
            FlitMode::Flit256LatencyOpt => "256B-lopt",
        }
    }

    /// Parse the TOML spelling (case-insensitive).
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "none" | "pcie" => Some(FlitMode::None),
            "68b" | "68" => Some(FlitMode::Flit68),
            "256b" | "256" | "256b-std" => Some(FlitMode::Flit256),
            "256b-lopt"
            | "256b-latency-opt"
            | "256b-latency-optimised"
            | "256b-latency-optimized" => Some(FlitMode::Flit256LatencyOpt),
            _ => None,
        }
    }

    /// Whether CXL.mem can run over this mode (it needs flits).
    pub fn carries_cxl_mem(self) -> bool {
        self != FlitMode::None
    }

    /// Whether a link at PCIe generation `gen` can use this mode.
    ///
    /// 68B flits exist at 8/16/32 GT/s (CXL 1.1/2.0 degrade down to Gen3);
    /// 64 GT/s PAM4 requires 256B flit mode; PCIe flit mode is defined for
    /// every rate from Gen3 on (negotiated), and non-flit framing stops at Gen5.
    pub fn supported_at(self, gen: u8) -> bool {
        match self {
            FlitMode::None => (1..=5).contains(&gen),
            FlitMode::Flit68 => (3..=5).contains(&gen),
            FlitMode::Flit256 | FlitMode::Flit256LatencyOpt => (3..=6).contains(&gen),
        }
    }
}

/// Serialised as its TOML spelling (`"68B"`, `"256B-lopt"`, ...).
impl Serialize for FlitMode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl fmt::Display for FlitMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Transfer rate per lane of PCIe generation `gen`, in GT/s.
pub fn gen_rate_gtps(gen: u8) -> Option<f64> {
    match gen {
        1 => Some(2.5),
        2 => Some(5.0),
        3 => Some(8.0),
        4 => Some(16.0),
        5 => Some(32.0),
        6 => Some(64.0),
        _ => None,
    }
}

/// Link widths PCIe/CXL train to.
pub const SUPPORTED_WIDTHS: [u8; 5] = [1, 2, 4, 8, 16];

/// Parameters of one link (one per attached element: the link between the
/// element's upstream port and the port it plugs into).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LinkParams {
    /// PCIe generation 1–6 (2.5 … 64 GT/s per lane).
    pub gen: u8,
    /// Lanes: 1, 2, 4, 8 or 16.
    pub width: u8,
    /// Framing.
    pub flit: FlitMode,
    /// Retimers on the link.
    pub retimers: u32,
    /// Round-trip latency each retimer adds (30 ns, the Pond/zsim constant).
    pub retimer_latency_ns: f64,
    /// Round-trip latency of the PHY/link-layer pipelines of the link's two
    /// ports, plus propagation. A switch port's share is already inside the
    /// switch's hop latency, so a link with one switch end charges half of
    /// this and a link between two switches none; adding a switch therefore
    /// adds its hop latency plus the added link's serialization and retimers.
    pub port_latency_ns: f64,
    /// Credits per message class the receiver advertises (its queue depth).
    pub credits: u32,
    /// Bit-error rate; each corrupted flit/TLP costs a replay (0 = off).
    pub ber: f64,
    /// PCIe max payload size in bytes (TLP data per write/completion).
    pub max_payload: u32,
    /// PCIe max read request size in bytes.
    pub max_read_request: u32,
}

impl Default for LinkParams {
    fn default() -> Self {
        LinkParams {
            gen: 5,
            width: 8,
            flit: FlitMode::Flit68,
            retimers: 0,
            retimer_latency_ns: 30.0,
            port_latency_ns: 25.0,
            credits: 64,
            ber: 0.0,
            max_payload: 256,
            max_read_request: 512,
        }
    }
}

impl LinkParams {
    /// Raw signalling rate per direction in bytes/s after line encoding
    /// (8b/10b for Gen1–2, 128b/130b for Gen3–5 and for flit mode below 64
    /// GT/s, none (1b/1b PAM4) at Gen6). Flit overhead is not removed here.
    pub fn encoded_bytes_per_sec(&self) -> f64 {
        let rate = gen_rate_gtps(self.gen).unwrap_or(32.0) * 1e9;
        let enc = match self.gen {
            1 | 2 => 8.0 / 10.0,
            6 => 1.0,
            _ => 128.0 / 130.0,
        };
        rate * self.width as f64 * enc / 8.0
    }

    /// Fixed one-way latency of the link (half its round-trip contribution)
    /// when `port_ends` of its two ports are not switch ports.
    pub fn one_way_fixed_ns(&self, port_ends: u32) -> f64 {
        let ports = self.port_latency_ns * port_ends.min(2) as f64 / 2.0;
        (ports + self.retimers as f64 * self.retimer_latency_ns) / 2.0
    }
}

impl fmt::Display for LinkParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "gen{} x{} {}", self.gen, self.width, self.flit)?;
        if self.retimers > 0 {
            write!(f, " {} retimer(s)", self.retimers)?;
        }
        Ok(())
    }
}

/// Media (the memory behind a type-3 device's controller).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MediaParams {
    /// Fixed access latency of a read inside the device (controller + DRAM).
    pub read_latency_ns: f64,
    /// Fixed latency until a write is acknowledged (NDR sent).
    pub write_latency_ns: f64,
    /// Sustained read bandwidth, GB/s (10^9 bytes/s).
    pub read_bandwidth_gbps: f64,
    /// Sustained write bandwidth, GB/s.
    pub write_bandwidth_gbps: f64,
    /// Requests the device accepts before it back-pressures (SimCXL uses 48).
    pub queue_depth: u32,
}

impl Default for MediaParams {
    fn default() -> Self {
        // Two DDR5-4800 channels sustain roughly 64 GB/s; with the other
        // defaults a direct-attached device reads in ~162 ns idle, behind a
        // switch ~259 ns (docs/timing-sources.md, docs/performance.md).
        MediaParams {
            read_latency_ns: 70.0,
            write_latency_ns: 70.0,
            read_bandwidth_gbps: 64.0,
            write_bandwidth_gbps: 64.0,
            queue_depth: 48,
        }
    }
}

/// Fabric-wide parameters (`[fabric]` table).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FabricParams {
    /// Seed for every random choice the model makes (CRC errors).
    pub seed: u64,
    /// Latency of host DRAM as seen by a DMA that reaches the root complex.
    pub host_memory_latency_ns: f64,
    /// Host DRAM bandwidth available to DMA, GB/s.
    pub host_memory_bandwidth_gbps: f64,
    /// Extra round-trip latency of peer-to-peer forwarding inside the root
    /// complex (between root ports or host bridges).
    pub rc_p2p_latency_ns: f64,
    /// Cap on root-complex P2P forwarding bandwidth, GB/s (None = link rate).
    pub rc_p2p_bandwidth_gbps: Option<f64>,
    /// Link defaults applied to every link that does not override them.
    pub link: LinkParams,
    /// Media defaults applied to every type-3 device that does not override them.
    pub media: MediaParams,
    /// Default round-trip latency of a switch crossing (90 ns, XConn class).
    pub switch_latency_ns: f64,
    /// Default round-trip latency of a host bridge / root complex.
    pub host_bridge_latency_ns: f64,
}

impl Default for FabricParams {
    fn default() -> Self {
        FabricParams {
            seed: 0,
            host_memory_latency_ns: 90.0,
            host_memory_bandwidth_gbps: 100.0,
            rc_p2p_latency_ns: 150.0,
            rc_p2p_bandwidth_gbps: None,
            link: LinkParams::default(),
            media: MediaParams::default(),
            switch_latency_ns: 90.0,
            host_bridge_latency_ns: 60.0,
        }
    }
}

/// The host CPU cache modelled in front of timed memory (`[cpu_cache]`).
///
/// Timed memory is not mapped into the guest, so the host's real caches
/// never hold it: without a model every load would be a fabric read. The
/// model is the guest's whole cache hierarchy for timed memory, one shared
/// set-associative cache ([`crate::cache::Cache`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CpuCacheParams {
    /// Off: every load is a fabric read and every store a fabric write.
    pub enabled: bool,
    /// Capacity in bytes (`ways` x `line` x a power-of-two number of sets).
    pub size: u64,
    /// Associativity, 1 to 64.
    pub ways: u32,
    /// Line size in bytes: 64, 128 or 256 (never more than the smallest
    /// interleave granularity, so a line always lies on one device).
    pub line: u32,
    /// What a hit costs the guest.
    pub hit_latency_ns: f64,
}

impl Default for CpuCacheParams {
    fn default() -> Self {
        // 1 MiB keeps the default small enough that a pointer chase over a
        // few MiB of timed memory (affordable at one VM exit per access)
        // sees the fabric; 16 ways and 64 B lines are the common server
        // figures; 20 ns is a round figure between L2 and LLC hit latency.
        CpuCacheParams {
            enabled: true,
            size: 1 << 20,
            ways: 16,
            line: 64,
            hit_latency_ns: 20.0,
        }
    }
}

impl CpuCacheParams {
    /// Number of sets (size / (ways x line)).
    pub fn sets(&self) -> u64 {
        self.size / (u64::from(self.ways) * u64::from(self.line)).max(1)
    }
}
