//! Pure model of a CXL fabric. No KVM, no guest memory.
//!
//! One topology file ([`Topology`], TOML) describes host bridges, root
//! ports, switches, type-3 devices, accelerators and CXL fixed memory
//! windows, with timing parameters for every element. The VMM builds the
//! guest's CXL hierarchy from it; the [`Engine`] charges each transaction
//! the time the fabric would take: host bridge, per-link flit packing or TLP
//! framing and serialization, credits, switch hops, media, queueing behind
//! earlier transactions, optional CRC replays. [`cdat`] and [`hmat`] turn
//! the same parameters into the values the guest reads, so the kernel's
//! access coordinates agree with what the engine enforces.
//!
//! ```
//! use fabric::{Engine, Op, Source, Target, Topology};
//!
//! let topo = Topology::from_toml_str(r#"
//!     [[host_bridge]]
//!     id = "hb0"
//!
//!     [[switch]]
//!     id = "sw0"
//!     port = "hb0.rp0"
//!     downstream_ports = 2
//!
//!     [[type3]]
//!     id = "mem0"
//!     port = "sw0.dp0"
//!     volatile = "256M"
//!     link = { gen = 5, width = 8, flit = "68B" }
//!
//!     [[window]]
//!     targets = ["hb0"]
//!     size = "256M"
//! "#).expect("valid topology");
//! println!("{topo}"); // indented tree, as `cxlvmm check` prints it
//!
//! // Windows start at 64 GiB unless placed otherwise (Engine::with_layout).
//! let mut engine = Engine::new(&topo);
//! let base = engine.address_map().window_base(0).unwrap();
//!
//! // Two reads issued at t = 0 ps: the second queues behind the first on
//! // the links, so it completes later. Times are picoseconds.
//! let a = engine.request(Source::Host, Target::Address(base), 64, Op::Read, 0).unwrap();
//! let b = engine.request(Source::Host, Target::Address(base + 64), 64, Op::Read, 0).unwrap();
//! assert!(b.complete > a.complete);
//! // Idle read: 60 ns bridge + 90 ns switch + 25 ns ports + 71 ns media
//! // + 6 flits of 2.158 ns on the two x8 Gen5 links.
//! assert_eq!(a.latency(), 258_948);
//! println!("route: {}", engine.route(a.route));
//! ```
//!
//! Modules:
//! * [`topology`]: the schema, validation (errors name the TOML key) and tree printer.
//! * [`engine`]: [`Engine::request`]: route and completion time of a transaction.
//! * [`link`]: per-direction link model (68B/256B flits, TLPs, credits, CRC replay).
//! * [`route`]: PCIe/CXL routing, including switch-local peer-to-peer.
//! * [`decode`]: host physical address → device and DPA.
//! * [`dma`]: how an accelerator's DMA transfer is cut and booked; per-path figures.
//! * [`cdat`], [`hmat`], [`qtg`]: guest-visible performance data (CDAT
//!   structures, HMAT entries, QoS classes), encoded by [`perf_entry`].
//! * [`workload`]: open- and closed-loop load generators for curves.
//! * [`cache`], [`timed`]: the CPU cache model and the timed front end
//!   ([`Engine::timed_access`]): a guest access to timed memory in, its
//!   latency and fabric transactions out.
//! * [`histogram`]: [`LatencyHistogram`] for latency reports.

#![forbid(unsafe_code)]

pub mod cache;
pub mod cdat;
pub mod control;
pub mod decode;
pub mod dma;
pub mod engine;
pub mod histogram;
pub mod hmat;
pub mod interleave;
pub mod link;
mod media;
pub mod perf_entry;
pub mod qtg;
pub mod rng;
pub mod route;
pub mod time;
pub mod timed;
pub mod topology;
pub mod workload;

pub use cache::{Cache, CacheOutcome, CacheStats, LineOutcome};
pub use engine::{
    Completion, DeviceStats, DmaBytes, DmaStats, Engine, FabricStats, HopTime, LinkStats, Op,
    RequestError, RouteId, Source, Stats, Target, TimedStats, TraceEntry,
};
pub use histogram::LatencyHistogram;
pub use route::{Hop, PathClass, Route};
pub use time::Picos;
pub use timed::{TimedAccess, Transaction, TxnKind};
pub use topology::{Param, ParamError, ParamValue};
pub use topology::{Topology, TopologyError};
