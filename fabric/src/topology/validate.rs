//! Raw schema → validated [`Topology`]. Every check reports the TOML key path.

use std::collections::{HashMap, HashSet};

use super::error::{ErrorKind as K, TopologyError as E};
use super::params::{
    gen_rate_gtps, CpuCacheParams, FabricParams, FlitMode, LinkParams, MediaParams,
};
use super::raw::{RawCpuCache, RawFabric, RawLink, RawMedia, RawSize, RawTopology};
use super::{
    Accelerator, Attach, HostBridge, Restrictions, Switch, Topology, Type3, Window, WindowMode,
    ACCEL_MAX_DMA_ENGINES, ACCEL_MAX_QUEUES, ACCEL_MAX_VRAM, ACCEL_MIN_VRAM, SIZE_ALIGN,
    SUPPORTED_WAYS,
};

type R<T> = Result<T, E>;

pub(super) fn validate(raw: RawTopology) -> R<Topology> {
    let fabric = fabric_params(&raw.fabric)?;
    let mut ids = Ids::default();

    if raw.host_bridges.is_empty() {
        return Err(E::new("host_bridge", "[]", K::NoHostBridge));
    }

    let mut host_bridges = Vec::new();
    let mut uids = HashMap::new();
    for (i, h) in raw.host_bridges.iter().enumerate() {
        let key = format!("host_bridge[{i}]");
        ids.add(&format!("{key}.id"), &h.id)?;
        let uid = match h.uid {
            Some(u) => int_in(&format!("{key}.uid"), u, 0, u32::MAX as i64)? as u32,
            // Index + 1, not index: Linux finds a host bridge's generic port
            // in the HMAT by _UID among targets whose handles are all zero
            // for ordinary memory, so _UID 0 would match node 0 instead.
            None => i as u32 + 1,
        };
        if let Some(other) = uids.insert(uid, h.id.clone()) {
            return Err(E::new(
                format!("{key}.uid"),
                uid,
                K::OutOfRange(format!("uid already used by {other}")),
            ));
        }
        let root_ports = match h.root_ports {
            Some(n) => count(&format!("{key}.root_ports"), n, 32)?,
            None => 1,
        };
        let latency_ns = latency(
            &format!("{key}.latency_ns"),
            h.latency_ns.unwrap_or(fabric.host_bridge_latency_ns),
        )?;
        host_bridges.push(HostBridge {
            id: h.id.clone(),
            uid,
            root_ports,
            latency_ns,
        });
    }
    for (i, s) in raw.switches.iter().enumerate() {
        ids.add(&format!("switch[{i}].id"), &s.id)?;
    }
    for (i, d) in raw.type3.iter().enumerate() {
        ids.add(&format!("type3[{i}].id"), &d.id)?;
    }
    for (i, a) in raw.accelerators.iter().enumerate() {
        ids.add(&format!("accelerator[{i}].id"), &a.id)?;
    }

    let hb_index: HashMap<&str, usize> = host_bridges
        .iter()
        .enumerate()
        .map(|(i, h)| (h.id.as_str(), i))
        .collect();
    let mut switches = Vec::new();
    for (i, s) in raw.switches.iter().enumerate() {
        let key = format!("switch[{i}]");
        let downstream_ports = match s.downstream_ports {
            Some(n) => count(&format!("{key}.downstream_ports"), n, 32)?,
            None => 4,
        };
        let latency_ns = latency(
            &format!("{key}.latency_ns"),
            s.latency_ns.unwrap_or(fabric.switch_latency_ns),
        )?;
        let link = link_params(&format!("{key}.link"), &s.link, &fabric.link, true)?;
        switches.push(Switch {
            id: s.id.clone(),
            // Resolved below, once every switch's port count is known.
            attach: Attach::RootPort {
                host_bridge: 0,
                port: 0,
            },
            downstream_ports,
            latency_ns,
            link,
        });
    }
    let sw_index: HashMap<&str, usize> = raw
        .switches
        .iter()
        .enumerate()
        .map(|(i, s)| (s.id.as_str(), i))
        .collect();

    // Resolve every `port = ...` and check each port carries one link.
    let resolver = PortResolver {
        hb_index: &hb_index,
        sw_index: &sw_index,
        host_bridges: &host_bridges,
        switches: &switches,
    };
    let mut used: HashMap<Attach, String> = HashMap::new();
    let mut claim = |key: &str, port_str: &str, owner: &str| -> R<Attach> {
        let at = resolver.resolve(key, port_str)?;
        if let Some(prev) = used.insert(at, owner.to_string()) {
            return Err(E::new(key, quoted(port_str), K::PortInUse(prev)));
        }
        Ok(at)
    };
    let mut sw_attach = Vec::new();
    for (i, s) in raw.switches.iter().enumerate() {
        sw_attach.push(claim(&format!("switch[{i}].port"), &s.port, &s.id)?);
    }
    let mut t3_attach = Vec::new();
    for (i, d) in raw.type3.iter().enumerate() {
        t3_attach.push(claim(&format!("type3[{i}].port"), &d.port, &d.id)?);
    }
    let mut acc_attach = Vec::new();
    for (i, a) in raw.accelerators.iter().enumerate() {
        acc_attach.push(claim(&format!("accelerator[{i}].port"), &a.port, &a.id)?);
    }
    for (s, at) in switches.iter_mut().zip(sw_attach) {
        s.attach = at;
    }
    check_cycles(&raw, &switches)?;

    let mut type3 = Vec::new();
    let explicit_serials: HashSet<u64> = raw
        .type3
        .iter()
        .filter_map(|d| d.serial)
        .filter(|s| *s >= 0)
        .map(|s| s as u64)
        .collect();
    let mut next_auto = 1u64;
    let mut serials: HashMap<u64, String> = HashMap::new();
    for (i, d) in raw.type3.iter().enumerate() {
        let key = format!("type3[{i}]");
        let volatile = aligned_size(&format!("{key}.volatile"), d.volatile.as_ref(), true)?;
        let persistent = aligned_size(&format!("{key}.persistent"), d.persistent.as_ref(), true)?;
        if volatile == 0 && persistent == 0 {
            return Err(E::new(format!("{key}.volatile"), 0, K::NoCapacity));
        }
        // Persistent memory needs a label area for namespaces; default 128 KiB.
        let lsa_default = if persistent > 0 { 128 << 10 } else { 0 };
        let lsa = match &d.lsa {
            Some(s) => size(&format!("{key}.lsa"), s)?,
            None => lsa_default,
        };
        if lsa > (1 << 30) {
            return Err(E::new(
                format!("{key}.lsa"),
                lsa,
                K::OutOfRange("at most 1 GiB".into()),
            ));
        }
        let serial = match d.serial {
            Some(s) => int_in(&format!("{key}.serial"), s, 0, i64::MAX)? as u64,
            None => {
                while explicit_serials.contains(&next_auto) || serials.contains_key(&next_auto) {
                    next_auto += 1;
                }
                next_auto
            }
        };
        if let Some(prev) = serials.insert(serial, d.id.clone()) {
            return Err(E::new(
                format!("{key}.serial"),
                serial,
                K::DuplicateSerial(prev),
            ));
        }
        let link = link_params(&format!("{key}.link"), &d.link, &fabric.link, true)?;
        let media = media_params(&format!("{key}.media"), &d.media, &fabric.media)?;
        type3.push(Type3 {
            id: d.id.clone(),
            attach: t3_attach[i],
            volatile,
            persistent,
            lsa,
            serial,
            persistent_path: d.persistent_path.clone(),
            link,
            media,
        });
    }

    let mut accelerators = Vec::new();
    for (i, a) in raw.accelerators.iter().enumerate() {
        let key = format!("accelerator[{i}]");
        let vram_size = match &a.vram {
            Some(s) => size(&format!("{key}.vram"), s)?,
            None => 256 << 20,
        };
        if !vram_size.is_power_of_two() || !(ACCEL_MIN_VRAM..=ACCEL_MAX_VRAM).contains(&vram_size) {
            return Err(E::new(
                format!("{key}.vram"),
                vram_size,
                K::OutOfRange("a power of two from 2 MiB to 64 GiB".into()),
            ));
        }
        let queues = match a.queues {
            Some(n) => count(&format!("{key}.queues"), n, ACCEL_MAX_QUEUES.into())?,
            None => 4,
        };
        let dma_engines = match a.dma_engines {
            Some(n) => count(
                &format!("{key}.dma_engines"),
                n,
                ACCEL_MAX_DMA_ENGINES.into(),
            )?,
            None => 2,
        };
        accelerators.push(Accelerator {
            id: a.id.clone(),
            attach: acc_attach[i],
            vram_size,
            bar_latency_ns: latency(
                &format!("{key}.bar_latency_ns"),
                a.bar_latency_ns.unwrap_or(100.0),
            )?,
            bar_bandwidth_gbps: bandwidth(
                &format!("{key}.bar_bandwidth_gbps"),
                a.bar_bandwidth_gbps.unwrap_or(500.0),
            )?,
            queues,
            dma_engines,
            // Same range as a bandwidth: positive, finite, at most 1e6.
            compute_gflops: bandwidth(
                &format!("{key}.compute_gflops"),
                a.compute_gflops.unwrap_or(1000.0),
            )?,
            link: link_params(&format!("{key}.link"), &a.link, &fabric.link, false)?,
        });
    }

    let mut windows = Vec::new();
    let mut window_ids = HashSet::new();
    for (i, w) in raw.windows.iter().enumerate() {
        let key = format!("window[{i}]");
        let id = w.id.clone().unwrap_or_else(|| format!("w{i}"));
        if !valid_id(&id) {
            return Err(E::new(format!("{key}.id"), quoted(&id), K::BadId));
        }
        if !window_ids.insert(id.clone()) {
            return Err(E::new(format!("{key}.id"), quoted(&id), K::DuplicateId));
        }
        let mut targets = Vec::new();
        for (j, t) in w.targets.iter().enumerate() {
            let tkey = format!("{key}.targets[{j}]");
            let hb = *hb_index
                .get(t.as_str())
                .ok_or_else(|| E::new(&tkey, quoted(t), K::UnknownId))?;
            if targets.contains(&hb) {
                return Err(E::new(&tkey, quoted(t), K::DuplicateId));
            }
            targets.push(hb);
        }
        if targets.is_empty() {
            return Err(E::new(format!("{key}.targets"), "[]", K::NotPositive));
        }
        let n = targets.len() as u32;
        let ways = match w.ways {
            Some(v) => {
                if v < 0 || !SUPPORTED_WAYS.contains(&(v as u32)) {
                    return Err(E::new(format!("{key}.ways"), v, K::UnsupportedWays));
                }
                v as u32
            }
            None => n,
        };
        if !SUPPORTED_WAYS.contains(&ways) {
            return Err(E::new(format!("{key}.targets"), n, K::UnsupportedWays));
        }
        if ways != n {
            return Err(E::new(
                format!("{key}.ways"),
                ways,
                K::WaysMismatch(ways, n),
            ));
        }
        let granularity = match &w.granularity {
            Some(g) => size(&format!("{key}.granularity"), g)?,
            None => 4096,
        };
        if !(256..=16384).contains(&granularity) || !granularity.is_power_of_two() {
            return Err(E::new(
                format!("{key}.granularity"),
                granularity,
                K::UnsupportedGranularity,
            ));
        }
        let size_v = aligned_size(&format!("{key}.size"), Some(&w.size), false)?;
        if size_v % (SIZE_ALIGN * ways as u64) != 0 {
            return Err(E::new(
                format!("{key}.size"),
                size_v,
                K::OutOfRange(format!("must be a multiple of 256 MiB x {ways} ways")),
            ));
        }
        let restrictions = match &w.restrictions {
            None => Restrictions {
                ram: true,
                pmem: false,
            },
            Some(list) => {
                let mut r = Restrictions::default();
                for (j, s) in list.iter().enumerate() {
                    match s.to_ascii_lowercase().as_str() {
                        "ram" | "volatile" => r.ram = true,
                        "pmem" | "persistent" => r.pmem = true,
                        _ => {
                            return Err(E::new(
                                format!("{key}.restrictions[{j}]"),
                                quoted(s),
                                K::UnknownRestriction,
                            ))
                        }
                    }
                }
                if !r.ram && !r.pmem {
                    return Err(E::new(
                        format!("{key}.restrictions"),
                        "[]",
                        K::UnknownRestriction,
                    ));
                }
                r
            }
        };
        let base = match &w.base {
            Some(b) => Some(aligned_size(&format!("{key}.base"), Some(b), true)?),
            None => None,
        };
        let qtg = match w.qtg {
            Some(q) => int_in(&format!("{key}.qtg"), q, 0, 0xffff)? as u16,
            None => 0,
        };
        windows.push(Window {
            id,
            targets,
            size: size_v,
            ways,
            granularity: granularity as u32,
            restrictions,
            base,
            qtg,
            mode: window_mode(&format!("{key}.mode"), w.mode.as_deref())?,
        });
    }
    for (i, a) in windows.iter().enumerate() {
        for b in windows.iter().skip(i + 1) {
            if let (Some(ab), Some(bb)) = (a.base, b.base) {
                if ab < bb.saturating_add(b.size) && bb < ab.saturating_add(a.size) {
                    return Err(E::new(
                        format!("window[{i}].base"),
                        format!("{ab:#x}"),
                        K::Overlap(format!("{} and {}", a.id, b.id)),
                    ));
                }
            }
        }
    }

    Ok(Topology {
        fabric,
        host_bridges,
        switches,
        type3,
        accelerators,
        windows,
        cpu_cache: cpu_cache_params("cpu_cache", &raw.cpu_cache, &CpuCacheParams::default())?,
    })
}

#[derive(Default)]
struct Ids {
    seen: HashSet<String>,
}

impl Ids {
    fn add(&mut self, key: &str, id: &str) -> R<()> {
        if !valid_id(id) {
            return Err(E::new(key, quoted(id), K::BadId));
        }
        if RESERVED_IDS.contains(&id) {
            return Err(E::new(key, quoted(id), K::ReservedId(id.into())));
        }
        if !self.seen.insert(id.to_string()) {
            return Err(E::new(key, quoted(id), K::DuplicateId));
        }
        Ok(())
    }
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

pub(super) fn quoted(s: &str) -> String {
    format!("{s:?}")
}

struct PortResolver<'a> {
    hb_index: &'a HashMap<&'a str, usize>,
    sw_index: &'a HashMap<&'a str, usize>,
    host_bridges: &'a [HostBridge],
    switches: &'a [Switch],
}

impl PortResolver<'_> {
    fn resolve(&self, key: &str, s: &str) -> R<Attach> {
        let bad = || E::new(key, quoted(s), K::BadPortRef);
        let (owner, port) = s.rsplit_once('.').ok_or_else(bad)?;
        let (kind, num) = port.split_at(port.len().min(2));
        let index: u32 = num.parse().map_err(|_| bad())?;
        match kind {
            "rp" => {
                let hb = *self
                    .hb_index
                    .get(owner)
                    .ok_or_else(|| E::new(key, quoted(s), K::UnknownId))?;
                let n = self.host_bridges[hb].root_ports;
                if index >= n {
                    return Err(E::new(key, quoted(s), K::PortOverflow(owner.into(), n)));
                }
                Ok(Attach::RootPort {
                    host_bridge: hb,
                    port: index,
                })
            }
            "dp" => {
                let sw = *self
                    .sw_index
                    .get(owner)
                    .ok_or_else(|| E::new(key, quoted(s), K::UnknownId))?;
                let n = self.switches[sw].downstream_ports;
                if index >= n {
                    return Err(E::new(key, quoted(s), K::PortOverflow(owner.into(), n)));
                }
                Ok(Attach::SwitchPort {
                    switch: sw,
                    port: index,
                })
            }
            _ => Err(bad()),
        }
    }
}

/// A switch whose chain of parents never reaches a root port is in a cycle.
fn check_cycles(raw: &RawTopology, switches: &[Switch]) -> R<()> {
    for start in 0..switches.len() {
        let mut chain = vec![start];
        let mut cur = start;
        while let Attach::SwitchPort { switch, .. } = switches[cur].attach {
            if chain.contains(&switch) {
                let names: Vec<&str> = chain
                    .iter()
                    .chain(std::iter::once(&switch))
                    .map(|&i| switches[i].id.as_str())
                    .collect();
                return Err(E::new(
                    format!("switch[{start}].port"),
                    quoted(&raw.switches[start].port),
                    K::Cycle(names.join(" -> ")),
                ));
            }
            chain.push(switch);
            cur = switch;
        }
    }
    Ok(())
}

fn fabric_params(f: &RawFabric) -> R<FabricParams> {
    let d = FabricParams::default();
    let link = link_params("fabric.link", &f.link, &d.link, false)?;
    let media = media_params("fabric.media", &f.media, &d.media)?;
    Ok(FabricParams {
        seed: match f.seed {
            // Seeds are bit patterns; negative TOML integers wrap deliberately.
            Some(s) => s as u64,
            None => d.seed,
        },
        host_memory_latency_ns: latency(
            "fabric.host_memory_latency_ns",
            f.host_memory_latency_ns.unwrap_or(d.host_memory_latency_ns),
        )?,
        host_memory_bandwidth_gbps: bandwidth(
            "fabric.host_memory_bandwidth_gbps",
            f.host_memory_bandwidth_gbps
                .unwrap_or(d.host_memory_bandwidth_gbps),
        )?,
        rc_p2p_latency_ns: latency(
            "fabric.rc_p2p_latency_ns",
            f.rc_p2p_latency_ns.unwrap_or(d.rc_p2p_latency_ns),
        )?,
        rc_p2p_bandwidth_gbps: match f.rc_p2p_bandwidth_gbps {
            Some(b) => Some(bandwidth("fabric.rc_p2p_bandwidth_gbps", b)?),
            None => None,
        },
        link,
        media,
        switch_latency_ns: latency(
            "fabric.switch_latency_ns",
            f.switch_latency_ns.unwrap_or(d.switch_latency_ns),
        )?,
        host_bridge_latency_ns: latency(
            "fabric.host_bridge_latency_ns",
            f.host_bridge_latency_ns.unwrap_or(d.host_bridge_latency_ns),
        )?,
    })
}

pub(super) fn link_params(key: &str, r: &RawLink, d: &LinkParams, cxl_mem: bool) -> R<LinkParams> {
    let gen = match r.gen {
        Some(g) => {
            if gen_rate_gtps(u8::try_from(g).unwrap_or(0)).is_none() {
                return Err(E::new(format!("{key}.gen"), g, K::UnsupportedGen));
            }
            g as u8
        }
        None => d.gen,
    };
    let width = match r.width {
        Some(w) => {
            let ok = u8::try_from(w)
                .map(|w| super::SUPPORTED_WIDTHS.contains(&w))
                .unwrap_or(false);
            if !ok {
                return Err(E::new(format!("{key}.width"), w, K::UnsupportedWidth));
            }
            w as u8
        }
        None => d.width,
    };
    let (flit, flit_key, flit_val) = match &r.flit {
        Some(s) => (
            FlitMode::parse(s)
                .ok_or_else(|| E::new(format!("{key}.flit"), quoted(s), K::UnknownFlitMode))?,
            format!("{key}.flit"),
            quoted(s),
        ),
        None => {
            // A default flit mode that cannot run at an overridden gen is
            // picked for the gen instead of rejected: the user never wrote it.
            let f = if d.flit.supported_at(gen) {
                d.flit
            } else if gen == 6 {
                FlitMode::Flit256
            } else if gen <= 2 {
                FlitMode::None
            } else {
                FlitMode::Flit68
            };
            (f, format!("{key}.gen"), gen.to_string())
        }
    };
    if !flit.supported_at(gen) {
        return Err(E::new(
            flit_key,
            flit_val,
            K::FlitModeVsGen(flit.to_string(), gen),
        ));
    }
    if cxl_mem && !flit.carries_cxl_mem() {
        return Err(E::new(flit_key, flit_val, K::NeedsFlits));
    }
    let retimers = match r.retimers {
        Some(n) => int_in(&format!("{key}.retimers"), n, 0, 8)? as u32,
        None => d.retimers,
    };
    let credits = match r.credits {
        Some(n) => count(&format!("{key}.credits"), n, 4096)?,
        None => d.credits,
    };
    let ber = match r.ber {
        Some(b) => {
            if !b.is_finite() {
                return Err(E::new(format!("{key}.ber"), b, K::NotFinite));
            }
            if !(0.0..=1e-3).contains(&b) {
                return Err(E::new(
                    format!("{key}.ber"),
                    b,
                    K::OutOfRange("0 to 1e-3".into()),
                ));
            }
            b
        }
        None => d.ber,
    };
    let pow2 = |k: &str, v: Option<i64>, def: u32| -> R<u32> {
        match v {
            None => Ok(def),
            Some(v) if (128..=4096).contains(&v) && (v as u64).is_power_of_two() => Ok(v as u32),
            Some(v) => Err(E::new(
                format!("{key}.{k}"),
                v,
                K::OutOfRange("a power of two from 128 to 4096".into()),
            )),
        }
    };
    Ok(LinkParams {
        gen,
        width,
        flit,
        retimers,
        retimer_latency_ns: latency(
            &format!("{key}.retimer_latency_ns"),
            r.retimer_latency_ns.unwrap_or(d.retimer_latency_ns),
        )?,
        port_latency_ns: latency(
            &format!("{key}.port_latency_ns"),
            r.port_latency_ns.unwrap_or(d.port_latency_ns),
        )?,
        credits,
        ber,
        max_payload: pow2("max_payload", r.max_payload, d.max_payload)?,
        max_read_request: pow2("max_read_request", r.max_read_request, d.max_read_request)?,
    })
}

pub(super) fn media_params(key: &str, r: &RawMedia, d: &MediaParams) -> R<MediaParams> {
    Ok(MediaParams {
        read_latency_ns: latency(
            &format!("{key}.read_latency_ns"),
            r.read_latency_ns.unwrap_or(d.read_latency_ns),
        )?,
        write_latency_ns: latency(
            &format!("{key}.write_latency_ns"),
            r.write_latency_ns.unwrap_or(d.write_latency_ns),
        )?,
        read_bandwidth_gbps: bandwidth(
            &format!("{key}.read_bandwidth_gbps"),
            r.read_bandwidth_gbps.unwrap_or(d.read_bandwidth_gbps),
        )?,
        write_bandwidth_gbps: bandwidth(
            &format!("{key}.write_bandwidth_gbps"),
            r.write_bandwidth_gbps.unwrap_or(d.write_bandwidth_gbps),
        )?,
        queue_depth: match r.queue_depth {
            Some(q) => count(&format!("{key}.queue_depth"), q, 65536)?,
            None => d.queue_depth,
        },
    })
}

pub(super) fn latency(key: &str, v: f64) -> R<f64> {
    if !v.is_finite() {
        return Err(E::new(key, v, K::NotFinite));
    }
    if v < 0.0 {
        return Err(E::new(key, v, K::Negative));
    }
    // Beyond a second is a typo, and keeps picosecond arithmetic in range.
    if v > 1e9 {
        return Err(E::new(key, v, K::OutOfRange("at most 1e9 ns".into())));
    }
    Ok(v)
}

pub(super) fn bandwidth(key: &str, v: f64) -> R<f64> {
    if !v.is_finite() {
        return Err(E::new(key, v, K::NotFinite));
    }
    if v <= 0.0 {
        return Err(E::new(key, v, K::NotPositive));
    }
    if v > 1e6 {
        return Err(E::new(key, v, K::OutOfRange("at most 1e6 GB/s".into())));
    }
    Ok(v)
}

/// A count in 1..=max.
fn count(key: &str, v: i64, max: i64) -> R<u32> {
    if v <= 0 {
        return Err(E::new(key, v, K::NotPositive));
    }
    int_in(key, v, 1, max).map(|v| v as u32)
}

fn int_in(key: &str, v: i64, min: i64, max: i64) -> R<i64> {
    if v < min {
        return Err(E::new(
            key,
            v,
            if min == 0 {
                K::Negative
            } else {
                K::OutOfRange(format!("{min} to {max}"))
            },
        ));
    }
    if v > max {
        return Err(E::new(key, v, K::OutOfRange(format!("{min} to {max}"))));
    }
    Ok(v)
}

/// Parse a byte size: integer or "<n>[K|M|G|T][i][B]" (binary multiples).
pub(crate) fn parse_size(s: &str) -> Option<u64> {
    let t = s.trim();
    let digits_end = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, suffix) = t.split_at(digits_end);
    let n: u64 = num.parse().ok()?;
    let shift = match suffix.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => return None,
    };
    n.checked_mul(1u64 << shift)
}

pub(super) fn size(key: &str, s: &RawSize) -> R<u64> {
    match s {
        RawSize::Int(v) if *v < 0 => Err(E::new(key, v, K::Negative)),
        RawSize::Int(v) => Ok(*v as u64),
        RawSize::Str(t) => parse_size(t).ok_or_else(|| E::new(key, quoted(t), K::BadSize)),
    }
}

/// A size that must be a multiple of 256 MiB (`zero_ok`: 0 allowed; absent = 0).
fn aligned_size(key: &str, s: Option<&RawSize>, zero_ok: bool) -> R<u64> {
    let v = match s {
        Some(s) => size(key, s)?,
        None => 0,
    };
    let shown = || match s {
        Some(RawSize::Str(t)) => quoted(t),
        _ => v.to_string(),
    };
    if v == 0 && !zero_ok {
        return Err(E::new(key, shown(), K::NotPositive));
    }
    if v % SIZE_ALIGN != 0 {
        return Err(E::new(key, shown(), K::NotAligned));
    }
    Ok(v)
}

/// Ids that name the topology's tables rather than elements (the control
/// API addresses `[fabric]` and `[cpu_cache]` parameters by these).
pub(super) const RESERVED_IDS: [&str; 2] = ["fabric", "cpu_cache"];

fn window_mode(key: &str, v: Option<&str>) -> R<WindowMode> {
    match v {
        None => Ok(WindowMode::Native),
        Some(s) => WindowMode::parse(s).ok_or_else(|| E::new(key, quoted(s), K::UnknownMemoryMode)),
    }
}

/// `[cpu_cache]` over `d` (the defaults, or the current values when one
/// parameter changes at run time).
pub(super) fn cpu_cache_params(
    key: &str,
    r: &RawCpuCache,
    d: &CpuCacheParams,
) -> R<CpuCacheParams> {
    let ways = match r.ways {
        Some(w) => int_in(&format!("{key}.ways"), w, 1, 64)? as u32,
        None => d.ways,
    };
    let line = match r.line {
        Some(l) if [64, 128, 256].contains(&l) => l as u32,
        Some(l) => {
            return Err(E::new(
                format!("{key}.line"),
                l,
                K::OutOfRange(
                    "64, 128 or 256 (at most the smallest interleave granularity)".into(),
                ),
            ))
        }
        None => d.line,
    };
    let size = match &r.size {
        Some(s) => size(&format!("{key}.size"), s)?,
        None => d.size,
    };
    let shown = || match &r.size {
        Some(RawSize::Str(t)) => quoted(t),
        _ => size.to_string(),
    };
    // The model keeps 16 bytes per line: 256 MiB of cache is 64 MiB of model.
    if size == 0 || size > 256 << 20 {
        return Err(E::new(
            format!("{key}.size"),
            shown(),
            K::OutOfRange("1 line to 256 MiB".into()),
        ));
    }
    let set_bytes = u64::from(ways) * u64::from(line);
    if size % set_bytes != 0 || !(size / set_bytes).is_power_of_two() {
        // Name the key the user wrote (size first, then ways, then line).
        let (k, v) = match (r.size.is_some(), r.ways, r.line) {
            (false, Some(w), _) => ("ways", w.to_string()),
            (false, None, Some(l)) => ("line", l.to_string()),
            _ => ("size", shown()),
        };
        return Err(E::new(
            format!("{key}.{k}"),
            v,
            K::OutOfRange(format!(
                "must be {ways} ways x {line} B x a power-of-two number of sets"
            )),
        ));
    }
    Ok(CpuCacheParams {
        enabled: r.enabled.unwrap_or(d.enabled),
        size,
        ways,
        line,
        hit_latency_ns: latency(
            &format!("{key}.hit_latency_ns"),
            r.hit_latency_ns.unwrap_or(d.hit_latency_ns),
        )?,
    })
}
