//! Guest-visible performance values as plain data: what the ACPI builder
//! puts in HMAT for each host bridge's SRAT generic port, what each device
//! and switch reports through CDAT, and the end-to-end figures the guest
//! kernel should compute for a region (`/sys/bus/cxl/devices/regionN/access*`).
//!
//! The idle latency the engine charges splits exactly into:
//!
//! * generic port (HMAT): the host bridge plus the root port's pipeline share;
//! * per link: flit serialization of the request and response (the kernel
//!   derives its own link term from the negotiated speed and width);
//! * per switch (SSLBIS): the hop latency;
//! * device (DSLBIS): media latency and transfer plus the endpoint port's
//!   pipeline share and retimers on its link.
//!
//! [`path_performance`] returns the components and the engine's own idle
//! latency; a test checks that they agree. [`hmat_localities`] gives the
//! HMAT locality entries (node 0's DRAM and every generic port) already
//! encoded ([`crate::perf_entry`]); the VMM only writes them as bytes.

use crate::engine::{Engine, Op, Source, Target};
use crate::link::capacity::mem_peak_bandwidth;
use crate::link::flit_time_ps;
use crate::perf_entry::{encode_values, DataType};
use crate::route::Hop;
use crate::time::{ns_to_ps, PsPerByte};
use crate::topology::{Attach, ElementRef, FlitMode, Topology};

/// Latency and bandwidth of one element or path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Perf {
    pub read_latency_ps: u64,
    pub write_latency_ps: u64,
    /// MB/s (10^6 bytes/s), as HMAT and CDAT express bandwidth.
    pub read_mbps: u64,
    pub write_mbps: u64,
}

/// A switch's port-to-port figures (SSLBIS).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SwitchPortPerf {
    pub latency_ps: u64,
    pub bandwidth_mbps: u64,
}

/// HMAT values for the generic port of one host bridge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GenericPortPerf {
    /// Host bridge `_UID` (the generic port's device handle refers to it).
    pub uid: u32,
    pub perf: Perf,
}

/// End-to-end view of one device, as the guest should see it.
#[derive(Debug, Clone, PartialEq)]
pub struct PathPerformance {
    pub device: usize,
    /// Idle 64 B read/write latency the engine charges, and the path's
    /// bottleneck bandwidth.
    pub total: Perf,
    /// The components, in path order, whose latencies sum to `total`.
    pub components: Vec<(Hop, Perf)>,
}

fn mbps(bytes_per_sec: f64) -> u64 {
    (bytes_per_sec / 1e6) as u64
}

/// Pipeline share (ps, round trip) of the port at one end of a link.
fn port_share_ps(t: &Topology, e: ElementRef) -> u64 {
    let l = t.link_of(e).cloned().unwrap_or_default();
    // One-way per end is a quarter of the pair's round-trip figure; as in
    // the engine, rounded per direction.
    2 * ns_to_ps(l.port_latency_ns / 4.0)
}

/// What a type-3 device reports about itself (DSLBIS values).
pub fn device_share(t: &Topology, device: usize) -> Perf {
    let d = &t.type3[device];
    let e = ElementRef::Type3(device);
    let retimers = 2 * ns_to_ps(d.link.retimers as f64 * d.link.retimer_latency_ns / 2.0);
    let fixed = port_share_ps(t, e) + retimers;
    let line = |gbps: f64| PsPerByte::from_gbps(gbps).time(64);
    let link_read = mem_peak_bandwidth(&d.link, 1.0);
    let link_write = mem_peak_bandwidth(&d.link, 0.0);
    Perf {
        read_latency_ps: ns_to_ps(d.media.read_latency_ns)
            + line(d.media.read_bandwidth_gbps)
            + fixed,
        write_latency_ps: ns_to_ps(d.media.write_latency_ns)
            + line(d.media.write_bandwidth_gbps)
            + fixed,
        read_mbps: mbps((d.media.read_bandwidth_gbps * 1e9).min(link_read)),
        write_mbps: mbps((d.media.write_bandwidth_gbps * 1e9).min(link_write)),
    }
}

/// SSLBIS values of switch `switch` between its upstream port and `port`.
pub fn switch_perf(t: &Topology, switch: usize, port: u32) -> SwitchPortPerf {
    let sw = &t.switches[switch];
    let up = mem_peak_bandwidth(&sw.link, 1.0);
    let down = t
        .child_at(Attach::SwitchPort { switch, port })
        .and_then(|c| t.link_of(c))
        .map_or(up, |l| mem_peak_bandwidth(l, 1.0));
    SwitchPortPerf {
        latency_ps: 2 * ns_to_ps(sw.latency_ns / 2.0),
        bandwidth_mbps: mbps(up.min(down)),
    }
}

/// HMAT generic-port values of every host bridge.
pub fn generic_ports(t: &Topology) -> Vec<GenericPortPerf> {
    t.host_bridges
        .iter()
        .enumerate()
        .map(|(h, hb)| {
            let lat = 2 * ns_to_ps(hb.latency_ns / 2.0);
            // The root ports' links together bound the bridge's bandwidth.
            let (mut rd, mut wr) = (0.0, 0.0);
            for p in 0..hb.root_ports {
                let at = Attach::RootPort {
                    host_bridge: h,
                    port: p,
                };
                if let Some(l) = t.child_at(at).and_then(|c| t.link_of(c)) {
                    rd += mem_peak_bandwidth(l, 1.0);
                    wr += mem_peak_bandwidth(l, 0.0);
                }
            }
            GenericPortPerf {
                uid: hb.uid,
                perf: Perf {
                    read_latency_ps: lat,
                    write_latency_ps: lat,
                    read_mbps: mbps(rd),
                    write_mbps: mbps(wr),
                },
            }
        })
        .collect()
}

/// A target proximity domain of the HMAT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HmatTarget {
    /// Node 0's DRAM, where the CPUs are.
    HostMemory,
    /// The generic port of host bridge `host_bridge` (index into `host_bridges`).
    GenericPort { host_bridge: usize },
}

/// What the HMAT says about each target, in HMAT units (ps, MB/s), from the
/// CPUs' domain: node 0's DRAM first, then each host bridge's generic port.
pub fn hmat_targets(t: &Topology) -> Vec<(HmatTarget, Perf)> {
    let f = &t.fabric;
    let dram_mbps = (f.host_memory_bandwidth_gbps * 1000.0).round() as u64;
    let dram = Perf {
        read_latency_ps: ns_to_ps(f.host_memory_latency_ns),
        write_latency_ps: ns_to_ps(f.host_memory_latency_ns),
        read_mbps: dram_mbps,
        write_mbps: dram_mbps,
    };
    let mut targets = vec![(HmatTarget::HostMemory, dram)];
    for (host_bridge, gp) in generic_ports(t).into_iter().enumerate() {
        let mut perf = gp.perf;
        // 0 means "no data" to Linux, and a generic port without latency
        // makes every device below it fail its QoS calculation.
        perf.read_latency_ps = perf.read_latency_ps.max(1);
        perf.write_latency_ps = perf.write_latency_ps.max(1);
        targets.push((HmatTarget::GenericPort { host_bridge }, perf));
    }
    targets
}

/// One HMAT System Locality Latency and Bandwidth Information structure's
/// data: one initiator (the CPUs), every target of [`hmat_targets`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HmatLocality {
    pub data_type: DataType,
    pub entry_base_unit: u64,
    /// One entry per target, in [`hmat_targets`] order.
    pub entries: Vec<u16>,
}

/// The HMAT's locality data: one structure per data type (read/write
/// latency, read/write bandwidth), each holding every target, because Linux
/// keeps only the last locality structure of each data type.
pub fn hmat_localities(t: &Topology) -> Vec<HmatLocality> {
    let targets = hmat_targets(t);
    DataType::READ_WRITE
        .into_iter()
        .map(|data_type| {
            let values: Vec<u64> = targets
                .iter()
                .map(|(_, p)| crate::cdat::perf_value(p, data_type))
                .collect();
            let (entry_base_unit, entries) = encode_values(&values);
            HmatLocality {
                data_type,
                entry_base_unit,
                entries,
            }
        })
        .collect()
}

/// Components and totals for host accesses to `device`.
pub fn path_performance(t: &Topology, device: usize) -> Option<PathPerformance> {
    t.type3.get(device)?;
    let mut engine = Engine::with_seed(t, 0);
    let tgt = Target::Type3 { device, dpa: 0 };
    let rid = engine.resolve(Source::Host, tgt).ok()?;
    let read = engine.idle_latency(Source::Host, tgt, 64, Op::Read).ok()?;
    let write = engine.idle_latency(Source::Host, tgt, 64, Op::Write).ok()?;
    let route = engine.route(rid).clone();
    let hb = t.host_bridge_of(ElementRef::Type3(device));
    let gp = generic_ports(t)[hb].perf;
    let mut comps = Vec::new();
    let mut total = Perf {
        read_latency_ps: 0,
        write_latency_ps: 0,
        read_mbps: u64::MAX,
        write_mbps: u64::MAX,
    };
    let mut add = |hop: Hop, p: Perf, total: &mut Perf| {
        total.read_latency_ps += p.read_latency_ps;
        total.write_latency_ps += p.write_latency_ps;
        total.read_mbps = total.read_mbps.min(p.read_mbps);
        total.write_mbps = total.write_mbps.min(p.write_mbps);
        comps.push((hop, p));
    };
    for hop in route.fwd_hops() {
        match *hop {
            Hop::HostBridge(_) => add(*hop, gp, &mut total),
            Hop::Switch(s) => {
                let port = t.attach_of(next_below(&route, hop)).and_then(|a| match a {
                    Attach::SwitchPort { port, .. } => Some(port),
                    _ => None,
                });
                let sp = switch_perf(t, s, port.unwrap_or(0));
                let p = Perf {
                    read_latency_ps: sp.latency_ps,
                    write_latency_ps: sp.latency_ps,
                    read_mbps: sp.bandwidth_mbps,
                    write_mbps: sp.bandwidth_mbps,
                };
                add(*hop, p, &mut total);
            }
            Hop::Link { element, .. } => {
                let l = t.link_of(element).cloned().unwrap_or_default();
                let flit = flit_time_ps(&l).unwrap_or(0);
                // Idle serialization, request down + response up. 68B: Req 1
                // flit, DRS/RwD (header + 4 data slots) 2 flits, NDR 1. 256B:
                // every one of them fits one flit. Latency-optimised: each
                // sits in the first half, usable after half a flit.
                let flits_x2 = match l.flit {
                    FlitMode::Flit68 => 6,
                    FlitMode::Flit256 => 4,
                    FlitMode::Flit256LatencyOpt => 2,
                    FlitMode::None => 0,
                };
                let ser = flits_x2 * flit / 2;
                // The root port's pipeline share is charged with its link.
                let rp = match t.attach_of(element) {
                    Some(Attach::RootPort { .. }) => port_share_ps(t, element),
                    _ => 0,
                };
                let p = Perf {
                    read_latency_ps: ser + rp,
                    write_latency_ps: ser + rp,
                    read_mbps: mbps(mem_peak_bandwidth(&l, 1.0)),
                    write_mbps: mbps(mem_peak_bandwidth(&l, 0.0)),
                };
                add(*hop, p, &mut total);
            }
            _ => {}
        }
    }
    add(Hop::Media(device), device_share(t, device), &mut total);
    Some(PathPerformance {
        device,
        total: Perf {
            read_latency_ps: read,
            write_latency_ps: write,
            ..total
        },
        components: comps,
    })
}

/// The element whose link follows `hop` on the way down.
fn next_below(route: &crate::route::Route, hop: &Hop) -> ElementRef {
    let hops = route.fwd_hops();
    let i = hops.iter().position(|h| h == hop).unwrap_or(0);
    hops[i + 1..]
        .iter()
        .find_map(|h| match h {
            Hop::Link { element, .. } => Some(*element),
            _ => None,
        })
        .unwrap_or(ElementRef::HostBridge(0))
}
