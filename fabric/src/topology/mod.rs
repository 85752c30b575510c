//! The project's one topology schema: host bridges, root ports, switches,
//! type-3 devices, accelerators and fixed memory windows, each with its
//! timing parameters. The VMM builds the guest's CXL hierarchy from it; the
//! timing engine builds its graph from it.
//!
//! Read it with [`Topology::from_toml_str`]; every accepted topology has
//! passed validation, so consumers can index its vectors freely.
//!
//! ```toml
//! [[host_bridge]]
//! id = "hb0"
//!
//! [[switch]]
//! id = "sw0"
//! port = "hb0.rp0"          # plugs into root port 0 of hb0
//! downstream_ports = 4
//!
//! [[type3]]
//! id = "mem0"
//! port = "sw0.dp0"          # plugs into downstream port 0 of sw0
//! volatile = "256M"
//! serial = 1
//!
//! [[window]]
//! targets = ["hb0"]
//! size = "256M"
//! restrictions = ["ram"]
//! ```

mod display;
pub use display::human_size;
mod error;
mod live;
mod params;
mod raw;
mod validate;

use std::collections::HashMap;

use serde::Serialize;

pub use error::{ErrorKind, TopologyError};
pub(crate) use live::Changed;
pub use live::{Param, ParamError, ParamValue};
pub use params::{
    gen_rate_gtps, CpuCacheParams, FabricParams, FlitMode, LinkParams, MediaParams,
    SUPPORTED_WIDTHS,
};

/// 256 MiB: the alignment of CFMWS windows and of HDM decoder sizes.
pub const SIZE_ALIGN: u64 = 256 << 20;

/// Interleave ways a CFMWS / HDM decoder can express.
pub const SUPPORTED_WAYS: [u32; 8] = [1, 2, 3, 4, 6, 8, 12, 16];

/// The guest physical address space a topology must fit: CXL windows sit
/// above 4 GiB (and above RAM, which only the VMM knows), so every device's
/// capacity, every window and all windows together must fit between 4 GiB
/// and `1 << phys_addr_bits`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct AddressLimits {
    /// CPUID 0x8000_0008 EAX[7:0] of the guest (MAXPHYADDR).
    pub phys_addr_bits: u8,
}

impl AddressLimits {
    /// 46 bits (64 TiB), what recent server CPUs without 5-level paging
    /// report; the VMM passes the real value.
    pub const DEFAULT_PHYS_ADDR_BITS: u8 = 46;

    /// The first address past the guest physical address space.
    pub fn address_space_end(&self) -> u64 {
        1u64.checked_shl(u32::from(self.phys_addr_bits))
            .unwrap_or(u64::MAX)
    }

    /// Bytes between 4 GiB and the end of the address space.
    pub fn window_room(&self) -> u64 {
        self.address_space_end().saturating_sub(WINDOWS_FLOOR)
    }

    /// Why a value is too large, for error messages.
    pub fn describe(&self) -> String {
        format!(
            "beyond what a {}-bit guest physical address space holds above 4 GiB ({})",
            self.phys_addr_bits,
            human_size(self.window_room())
        )
    }
}

impl Default for AddressLimits {
    fn default() -> Self {
        AddressLimits {
            phys_addr_bits: Self::DEFAULT_PHYS_ADDR_BITS,
        }
    }
}

/// CXL windows start at or above this guest physical address.
pub const WINDOWS_FLOOR: u64 = 1 << 32;

/// Where an element's upstream link plugs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Attach {
    /// Root port `port` of host bridge `host_bridge` (index into `host_bridges`).
    RootPort { host_bridge: usize, port: u32 },
    /// Downstream port `port` of switch `switch` (index into `switches`).
    SwitchPort { switch: usize, port: u32 },
}

/// A CXL host bridge (ACPI0016, one CHBS) with its root ports.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HostBridge {
    pub id: String,
    /// `_UID` and CHBS UID.
    pub uid: u32,
    /// Number of root ports, named `<id>.rp0` …
    pub root_ports: u32,
    /// Round-trip latency of the host bridge / root complex.
    pub latency_ns: f64,
}

/// A CXL switch: one upstream port, `downstream_ports` downstream ports.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Switch {
    pub id: String,
    /// Where its upstream port's link plugs in.
    pub attach: Attach,
    /// Downstream ports, named `<id>.dp0` …
    pub downstream_ports: u32,
    /// Round-trip latency of one crossing, port to port (ports included).
    pub latency_ns: f64,
    /// The link above the switch.
    pub link: LinkParams,
}

/// A type-3 memory expander.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Type3 {
    pub id: String,
    pub attach: Attach,
    /// Volatile capacity in bytes (DPA 0 ..).
    pub volatile: u64,
    /// Persistent capacity in bytes (after the volatile part in DPA).
    pub persistent: u64,
    /// Label storage area in bytes.
    pub lsa: u64,
    /// Device serial number (PCIe DSN).
    pub serial: u64,
    /// File backing the persistent capacity, if given.
    pub persistent_path: Option<String>,
    pub link: LinkParams,
    pub media: MediaParams,
}

/// A PCIe accelerator endpoint (DMA initiator, peer-to-peer target);
/// `docs/accelerator.md` is its device specification.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Accelerator {
    pub id: String,
    pub attach: Attach,
    /// VRAM size in bytes, which is also the size of its memory BAR: a
    /// power of two of at least [`ACCEL_MIN_VRAM`] (TOML `vram`, formerly
    /// `bar_size`, still accepted).
    #[serde(rename = "vram")]
    pub vram_size: u64,
    /// Round-trip latency of the VRAM behind the device's port.
    pub bar_latency_ns: f64,
    /// VRAM bandwidth, GB/s.
    pub bar_bandwidth_gbps: f64,
    /// Command queues, 1 to [`ACCEL_MAX_QUEUES`].
    pub queues: u32,
    /// DMA engines (commands that move data at once), 1 to [`ACCEL_MAX_DMA_ENGINES`].
    pub dma_engines: u32,
    /// Compute throughput of the kernels, 10^9 operations per second.
    pub compute_gflops: f64,
    pub link: LinkParams,
}

/// Smallest VRAM: 2 MiB, so that the VRAM BAR is 2 MiB aligned (huge pages).
pub const ACCEL_MIN_VRAM: u64 = 2 << 20;
/// Largest VRAM the schema admits (64 GiB).
pub const ACCEL_MAX_VRAM: u64 = 64 << 30;
/// Most command queues an accelerator can have (one interrupt cause bit each).
pub const ACCEL_MAX_QUEUES: u32 = 8;
/// Most DMA engines an accelerator can have.
pub const ACCEL_MAX_DMA_ENGINES: u32 = 16;

/// Memory types a window admits (CFMWS restriction bits b2/b3; b1
/// host-only/type-3 is implied).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Restrictions {
    pub ram: bool,
    pub pmem: bool,
}

/// How the VMM serves guest accesses to regions in a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum WindowMode {
    /// Mapped into the guest: DRAM speed, latency only reported (HMAT/CDAT).
    #[default]
    Native,
    /// Every access exits to the VMM, which decodes and serves it.
    Trapped,
    /// Trapped, and each access is charged the fabric model's latency
    /// (behind the `[cpu_cache]` model) in the guest's virtual time.
    Timed,
}

impl WindowMode {
    /// Spelling in TOML and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            WindowMode::Native => "native",
            WindowMode::Trapped => "trapped",
            WindowMode::Timed => "timed",
        }
    }

    /// Parse the TOML / command-line spelling (exact, lower case).
    pub fn parse(s: &str) -> Option<WindowMode> {
        match s {
            "native" => Some(WindowMode::Native),
            "trapped" => Some(WindowMode::Trapped),
            "timed" => Some(WindowMode::Timed),
            _ => None,
        }
    }
}

/// Serialised as its TOML spelling.
impl Serialize for WindowMode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl std::fmt::Display for WindowMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A CXL fixed memory window (one CFMWS).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Window {
    pub id: String,
    /// Host bridge indices, one per interleave way, in interleave order.
    pub targets: Vec<usize>,
    /// Size in bytes, a multiple of 256 MiB × ways.
    pub size: u64,
    /// Interleave ways (= targets.len()).
    pub ways: u32,
    /// Host bridge interleave granularity in bytes.
    pub granularity: u32,
    /// Serialised as `ram` and `pmem` beside the other fields.
    #[serde(flatten)]
    pub restrictions: Restrictions,
    /// Fixed base HPA if the file gives one; else the VMM places it.
    pub base: Option<u64>,
    /// QoS throttling group.
    pub qtg: u16,
    /// How regions in this window are served (`mode`, default native).
    pub mode: WindowMode,
}

impl Window {
    /// CFMWS restriction bits: host-only (b1) plus volatile (b2) / persistent (b3).
    pub fn restriction_bits(&self) -> u16 {
        let mut bits = 1 << 1;
        if self.restrictions.ram {
            bits |= 1 << 2;
        }
        if self.restrictions.pmem {
            bits |= 1 << 3;
        }
        bits
    }

    /// CFMWS ENIW encoding of `ways` (0..4 → 1..16, 8/9/10 → 3/6/12).
    pub fn eniw(&self) -> u8 {
        match self.ways {
            1 => 0,
            2 => 1,
            4 => 2,
            8 => 3,
            16 => 4,
            3 => 8,
            6 => 9,
            12 => 10,
            // Validation admits only the ways above.
            _ => 0,
        }
    }

    /// CFMWS HBIG encoding of the granularity (256 << n).
    pub fn hbig(&self) -> u32 {
        self.granularity.trailing_zeros().saturating_sub(8)
    }

    /// Alignment of the window's base when the VMM places it: 256 MiB per
    /// interleave way. Linux (drivers/cxl/acpi.c, `cxl_acpi_cfmws_verify`)
    /// needs 256 MiB; a multiple of the ways keeps every way's share of an
    /// aligned window (the size is 256 MiB x ways already) aligned too.
    pub fn base_align(&self) -> u64 {
        SIZE_ALIGN * u64::from(self.ways.max(1))
    }
}

/// A validated topology.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Topology {
    pub fabric: FabricParams,
    pub host_bridges: Vec<HostBridge>,
    pub switches: Vec<Switch>,
    pub type3: Vec<Type3>,
    pub accelerators: Vec<Accelerator>,
    pub windows: Vec<Window>,
    /// The cache modelled in front of timed memory (`[cpu_cache]`).
    pub cpu_cache: CpuCacheParams,
    /// The address space the topology was validated for.
    pub limits: AddressLimits,
}

/// A reference to any element of a topology, by kind and index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ElementRef {
    HostBridge(usize),
    Switch(usize),
    Type3(usize),
    Accelerator(usize),
}

impl Topology {
    /// Parse and validate a TOML topology for the default address space
    /// ([`AddressLimits::default`]).
    pub fn from_toml_str(text: &str) -> Result<Topology, TopologyError> {
        Self::from_toml_str_for(text, AddressLimits::default())
    }

    /// Parse and validate a TOML topology for a guest with `limits`.
    pub fn from_toml_str_for(text: &str, limits: AddressLimits) -> Result<Topology, TopologyError> {
        let raw: raw::RawTopology = toml::from_str(text).map_err(|e| syntax_error(text, &e))?;
        validate::validate(&raw, limits)
    }

    /// The built-in topology used when no file is given: one host bridge →
    /// root port → switch (2 downstream ports) → two 256 MiB volatile type-3
    /// devices, one 512 MiB ram window over the host bridge.
    pub fn default_topology() -> Topology {
        // Parsing a constant keeps the default and the schema in step; the
        // test suite checks that it validates.
        Topology::from_toml_str(DEFAULT_TOPOLOGY_TOML).unwrap_or_else(|_| Topology::empty())
    }

    fn empty() -> Topology {
        Topology {
            fabric: FabricParams::default(),
            host_bridges: Vec::new(),
            switches: Vec::new(),
            type3: Vec::new(),
            accelerators: Vec::new(),
            windows: Vec::new(),
            cpu_cache: CpuCacheParams::default(),
            limits: AddressLimits::default(),
        }
    }

    /// Look an element up by id.
    pub fn find(&self, id: &str) -> Option<ElementRef> {
        if let Some(i) = self.host_bridges.iter().position(|h| h.id == id) {
            return Some(ElementRef::HostBridge(i));
        }
        if let Some(i) = self.switches.iter().position(|s| s.id == id) {
            return Some(ElementRef::Switch(i));
        }
        if let Some(i) = self.type3.iter().position(|d| d.id == id) {
            return Some(ElementRef::Type3(i));
        }
        self.accelerators
            .iter()
            .position(|a| a.id == id)
            .map(ElementRef::Accelerator)
    }

    /// Id of an element.
    pub fn id_of(&self, e: ElementRef) -> &str {
        match e {
            ElementRef::HostBridge(i) => &self.host_bridges[i].id,
            ElementRef::Switch(i) => &self.switches[i].id,
            ElementRef::Type3(i) => &self.type3[i].id,
            ElementRef::Accelerator(i) => &self.accelerators[i].id,
        }
    }

    /// Where an element plugs in (None for host bridges).
    pub fn attach_of(&self, e: ElementRef) -> Option<Attach> {
        match e {
            ElementRef::HostBridge(_) => None,
            ElementRef::Switch(i) => Some(self.switches[i].attach),
            ElementRef::Type3(i) => Some(self.type3[i].attach),
            ElementRef::Accelerator(i) => Some(self.accelerators[i].attach),
        }
    }

    /// The link above an element (None for host bridges).
    pub fn link_of(&self, e: ElementRef) -> Option<&LinkParams> {
        match e {
            ElementRef::HostBridge(_) => None,
            ElementRef::Switch(i) => Some(&self.switches[i].link),
            ElementRef::Type3(i) => Some(&self.type3[i].link),
            ElementRef::Accelerator(i) => Some(&self.accelerators[i].link),
        }
    }

    /// The element plugged into a port, if any.
    pub fn child_at(&self, attach: Attach) -> Option<ElementRef> {
        let s = self
            .switches
            .iter()
            .position(|s| s.attach == attach)
            .map(ElementRef::Switch);
        let t = || {
            self.type3
                .iter()
                .position(|d| d.attach == attach)
                .map(ElementRef::Type3)
        };
        let a = || {
            self.accelerators
                .iter()
                .position(|d| d.attach == attach)
                .map(ElementRef::Accelerator)
        };
        s.or_else(t).or_else(a)
    }

    /// The host bridge an element sits under.
    pub fn host_bridge_of(&self, e: ElementRef) -> usize {
        let mut cur = e;
        // Validation rejected cycles, so the walk ends within the element count.
        for _ in 0..=self.switches.len() + 1 {
            match cur {
                ElementRef::HostBridge(h) => return h,
                other => match self.attach_of(other) {
                    Some(Attach::RootPort { host_bridge, .. }) => return host_bridge,
                    Some(Attach::SwitchPort { switch, .. }) => cur = ElementRef::Switch(switch),
                    None => return 0,
                },
            }
        }
        0
    }

    /// Type-3 devices below host bridge `hb`, in tree (depth-first) order.
    pub fn type3_under(&self, hb: usize) -> Vec<usize> {
        let mut out = Vec::new();
        if let Some(h) = self.host_bridges.get(hb) {
            // One pass over the elements instead of a `child_at` scan per
            // port: the decode map calls this for every window whenever an
            // engine is built, and `check --json` builds one per device.
            let children = self.children();
            for p in 0..h.root_ports {
                let at = Attach::RootPort {
                    host_bridge: hb,
                    port: p,
                };
                self.collect_type3(&children, at, &mut out);
            }
        }
        out
    }

    /// Every occupied port and what is plugged into it, with the same
    /// precedence as [`Topology::child_at`] (validation refuses two
    /// elements on one port anyway).
    fn children(&self) -> HashMap<Attach, ElementRef> {
        let mut map = HashMap::new();
        let switches =
            (self.switches.iter().enumerate()).map(|(i, s)| (s.attach, ElementRef::Switch(i)));
        let t3 = (self.type3.iter().enumerate()).map(|(i, d)| (d.attach, ElementRef::Type3(i)));
        let acc = (self.accelerators.iter().enumerate())
            .map(|(i, a)| (a.attach, ElementRef::Accelerator(i)));
        for (at, e) in switches.chain(t3).chain(acc) {
            map.entry(at).or_insert(e);
        }
        map
    }

    fn collect_type3(
        &self,
        children: &HashMap<Attach, ElementRef>,
        at: Attach,
        out: &mut Vec<usize>,
    ) {
        match children.get(&at) {
            Some(&ElementRef::Type3(i)) => out.push(i),
            Some(&ElementRef::Switch(s)) => {
                for p in 0..self.switches[s].downstream_ports {
                    let port = Attach::SwitchPort { switch: s, port: p };
                    self.collect_type3(children, port, out);
                }
            }
            _ => {}
        }
    }

    /// Bases for all windows: the given ones, the others in file order from
    /// `first_base` up, each at the lowest multiple of its alignment
    /// ([`Window::base_align`]) that is not below the previous placed
    /// window's end and overlaps no window with a given base.
    pub fn window_bases(&self, first_base: u64) -> Vec<u64> {
        let fixed: Vec<(u64, u64)> = self
            .windows
            .iter()
            .filter_map(|w| w.base.map(|b| (b, b.saturating_add(w.size))))
            .collect();
        let mut next = first_base;
        self.windows
            .iter()
            .map(|w| match w.base {
                Some(b) => b,
                None => {
                    let align = w.base_align();
                    let mut b = next.div_ceil(align).saturating_mul(align);
                    // Each step moves past one fixed window (the bound only
                    // matters once addresses saturate).
                    for _ in 0..=fixed.len() {
                        let Some(&(_, end)) = fixed
                            .iter()
                            .find(|&&(fb, fe)| b < fe && fb < b.saturating_add(w.size))
                        else {
                            break;
                        };
                        b = end.div_ceil(align).saturating_mul(align);
                    }
                    next = b.saturating_add(w.size);
                    b
                }
            })
            .collect()
    }
}

/// The default topology as TOML (also what `Topology::default_topology` parses).
pub const DEFAULT_TOPOLOGY_TOML: &str = r#"
[[host_bridge]]
id = "hb0"

[[switch]]
id = "sw0"
port = "hb0.rp0"
downstream_ports = 2

[[type3]]
id = "mem0"
port = "sw0.dp0"
volatile = "256M"
serial = 1

[[type3]]
id = "mem1"
port = "sw0.dp1"
volatile = "256M"
serial = 2

[[window]]
id = "w0"
targets = ["hb0"]
size = "512M"
restrictions = ["ram"]
"#;

fn syntax_error(text: &str, e: &toml::de::Error) -> TopologyError {
    let place = match e.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let col = before.len() - before.rfind('\n').map_or(0, |p| p + 1) + 1;
            format!("line {line}, column {col}")
        }
        None => "?".to_string(),
    };
    TopologyError::new(
        "(toml)",
        place,
        ErrorKind::Syntax(e.message().trim().to_string()),
    )
}
