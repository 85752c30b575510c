//! Raw schema → validated [`Topology`]. Every check reports the TOML key path.
//!
//! One section per element kind, run in a fixed order over a shared
//! [`Context`] that holds what later sections need from earlier ones
//! (fabric defaults, host bridge and switch indices, where each element
//! plugs in). The order decides which error a file with several mistakes
//! reports first, and tests pin it: fabric, host bridges, every id, switch
//! parameters, port references (and cycles), type-3 devices, accelerators,
//! windows, `[cpu_cache]`. A new schema field belongs in its element's section file.

mod accelerator;
mod context;
mod cpu_cache;
mod fabric;
mod host_bridge;
mod ports;
mod switch;
mod type3;
mod values;
mod window;

use super::error::TopologyError;
use super::params::CpuCacheParams;
use super::raw::RawTopology;
use super::{AddressLimits, Topology};

// What the control API (`live`) reuses to check one changed parameter.
pub(super) use cpu_cache::{cpu_cache_params, RESERVED_IDS};
pub(super) use fabric::{link_params, media_params};
pub(super) use values::{bandwidth, latency, quoted};

use context::Context;

type R<T> = Result<T, TopologyError>;

pub(super) fn validate(raw: &RawTopology, limits: AddressLimits) -> R<Topology> {
    let mut cx = Context::new(raw, limits, fabric::fabric_params(&raw.fabric)?);
    host_bridge::host_bridges(&mut cx)?;
    cx.register_other_ids()?;
    switch::switches(&mut cx)?;
    ports::attach_all(&mut cx)?;
    let type3 = type3::type3_devices(&cx)?;
    let accelerators = accelerator::accelerators(&cx)?;
    let windows = window::windows(&cx)?;
    Ok(Topology {
        fabric: cx.fabric,
        host_bridges: cx.host_bridges,
        switches: cx.switches,
        type3,
        accelerators,
        windows,
        cpu_cache: cpu_cache::cpu_cache_params(
            "cpu_cache",
            &raw.cpu_cache,
            &CpuCacheParams::default(),
        )?,
        limits,
    })
}
