//! Pure model of a CXL fabric. No KVM, no guest memory.
//!
//! * [`topology`]: the project's one topology schema (TOML), validated.
//! * [`link`]: per-direction link model (68B/256B flits, TLPs, credits, CRC replay).
//! * [`engine`]: the timing engine: route and completion time of each transaction.
//! * [`decode`]: host physical address → device and DPA.
//! * [`route`]: PCIe/CXL routing, including switch-local peer-to-peer.

#![forbid(unsafe_code)]

pub mod cdat;
pub mod decode;
pub mod engine;
pub mod hmat;
pub mod link;
mod media;
pub mod rng;
pub mod route;
pub mod time;
pub mod topology;
pub mod workload;

pub use engine::{
    Completion, Engine, HopTime, Op, RequestError, RouteId, Source, Stats, Target, TraceEntry,
};
pub use route::{Hop, PathClass, Route};
pub use time::Picos;
pub use topology::{Topology, TopologyError};
