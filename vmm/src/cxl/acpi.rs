//! ACPI for the CXL hierarchy: CEDT (CHBS per host bridge, CFMWS per
//! window), DSDT objects (an ACPI0016 root bridge per host bridge with _OSC,
//! the ACPI0017 root with its QTG _DSM), the SRAT that turns on ACPI NUMA
//! so the guest makes a node per CFMWS window and names each host bridge's
//! generic port, and the HMAT with the generic ports' performance.
//!
//! Linux adds a generic port's HMAT figures to the CDAT and link terms of
//! each device below it and asks the QTG _DSM for the result's QoS class,
//! which must be the QTG of a CFMWS window or `cxl list` reports
//! `qos_class_mismatch`.

use acpi_tables::aml::{self, AddressSpace, AddressSpaceCacheable};
use acpi_tables::sdt::Sdt;
use acpi_tables::Aml;
use devices::cxl::component::cdat::hmat_encode;
use fabric::hmat::{generic_ports, path_performance, Perf};
use fabric::time::ns_to_ps;
use fabric::topology::{ElementRef, Topology, Window};

use super::plan::{CxlPlan, CHBCR_SIZE};
use crate::acpi::{prt, to_bytes, Encoded, OEM_ID, OEM_REVISION, OEM_TABLE_ID};

const CEDT_CHBS: u8 = 0;
const CEDT_CFMWS: u8 = 1;
/// CHBS CXL version: 1 = CXL 2.0+ host bridge (64 KiB CHBCR).
const CHBS_VERSION_VH: u32 = 1;
/// CFMWS interleave arithmetic: modulo.
const ARITH_MODULO: u8 = 0;

/// The CEDT: a CHBS per host bridge, a CFMWS per window.
pub fn cedt(topo: &Topology, plan: &CxlPlan) -> Vec<u8> {
    let mut t = Sdt::new(*b"CEDT", 36, 1, OEM_ID, OEM_TABLE_ID, OEM_REVISION);
    for hb in &plan.host_bridges {
        let mut s = vec![CEDT_CHBS, 0];
        s.extend(0x20u16.to_le_bytes());
        s.extend(hb.uid.to_le_bytes());
        s.extend(CHBS_VERSION_VH.to_le_bytes());
        s.extend(0u32.to_le_bytes());
        s.extend(hb.chbcr.to_le_bytes());
        s.extend(CHBCR_SIZE.to_le_bytes());
        t.append_slice(&s);
    }
    for (w, wp) in topo.windows.iter().zip(&plan.windows) {
        let len = 0x24 + 4 * w.targets.len();
        let mut s = vec![CEDT_CFMWS, 0];
        s.extend((len as u16).to_le_bytes());
        s.extend(0u32.to_le_bytes());
        s.extend(wp.base.to_le_bytes());
        s.extend(wp.size.to_le_bytes());
        s.push(w.eniw());
        s.push(ARITH_MODULO);
        s.extend(0u16.to_le_bytes());
        s.extend(w.hbig().to_le_bytes());
        s.extend(w.restriction_bits().to_le_bytes());
        s.extend(w.qtg.to_le_bytes());
        for &hb in &w.targets {
            s.extend(topo.host_bridges[hb].uid.to_le_bytes());
        }
        t.append_slice(&s);
    }
    t.as_slice().to_vec()
}

/// Proximity domain of host bridge `index`'s generic port. Linux maps no node
/// to a generic port and numbers the CFMWS windows' own nodes from the
/// highest SRAT-mapped domain (0) up, one per window; a generic port sharing
/// such a number would be taken for that window's node by HMAT code (memory
/// tiering, node online), so the ports come after the windows.
pub fn generic_port_domain(topo: &Topology, index: usize) -> u32 {
    (1 + topo.windows.len() + index) as u32
}

/// The SRAT: every vCPU and all RAM in proximity domain 0, and with a CXL
/// hierarchy a Generic Port Affinity structure per host bridge, which is
/// how Linux finds each bridge's HMAT performance (its "generic port").
/// CXL windows are left out on purpose: Linux then gives each CFMWS window a
/// node of its own.
pub fn srat(vcpus: u8, ram: &[(u64, u64)], topo: Option<&Topology>) -> Vec<u8> {
    const TYPE_LAPIC: u8 = 0;
    const TYPE_MEMORY: u8 = 1;
    const TYPE_GENERIC_PORT: u8 = 6;
    const HANDLE_ACPI: u8 = 0;
    const ENABLED: u32 = 1;
    let mut t = Sdt::new(*b"SRAT", 48, 3, OEM_ID, OEM_TABLE_ID, OEM_REVISION);
    // The first reserved dword must be 1 (for backward compatibility).
    t.write_u32(36, 1);
    for cpu in 0..vcpus {
        let mut s = vec![TYPE_LAPIC, 16, 0, cpu];
        s.extend(ENABLED.to_le_bytes());
        s.extend([0u8; 8]); // SAPIC EID, proximity [31:8], clock domain
        t.append_slice(&s);
    }
    for &(base, len) in ram {
        let mut s = vec![TYPE_MEMORY, 40];
        s.extend(0u32.to_le_bytes()); // proximity domain
        s.extend(0u16.to_le_bytes());
        s.extend(base.to_le_bytes());
        s.extend(len.to_le_bytes());
        s.extend(0u32.to_le_bytes());
        s.extend(ENABLED.to_le_bytes());
        s.extend(0u64.to_le_bytes());
        t.append_slice(&s);
    }
    if let Some(topo) = topo {
        for (i, hb) in topo.host_bridges.iter().enumerate() {
            // Linux looks a generic port up by _UID among all its HMAT
            // targets, memory domains (whose handles are all zero) first.
            if hb.uid == 0 {
                log::warn!(
                    "host bridge '{}' has _UID 0: Linux (up to at least 6.12) cannot find its \
                     generic port, so devices below it get no QoS class and their regions \
                     show qos_class_mismatch; give it a non-zero uid",
                    hb.id
                );
            }
            // ACPI 6.5 5.2.16.7: the ACPI device handle is the _HID (8
            // bytes) and the _UID as an integer (4 bytes, which Linux
            // compares with the bridge's _UID), 4 bytes reserved.
            let mut s = vec![TYPE_GENERIC_PORT, 32, 0, HANDLE_ACPI];
            s.extend(generic_port_domain(topo, i).to_le_bytes());
            s.extend(*b"ACPI0016");
            s.extend(hb.uid.to_le_bytes());
            s.extend([0u8; 4]);
            s.extend(ENABLED.to_le_bytes());
            s.extend(0u32.to_le_bytes());
            t.append_slice(&s);
        }
    }
    t.as_slice().to_vec()
}

const HMAT_PROXIMITY: u16 = 0;
const HMAT_LOCALITY: u16 = 1;
/// HMAT locality data types (read/write latency, read/write bandwidth).
const HMAT_READ_LATENCY: u8 = 1;
const HMAT_WRITE_LATENCY: u8 = 2;
const HMAT_READ_BANDWIDTH: u8 = 4;
const HMAT_WRITE_BANDWIDTH: u8 = 5;

/// `perf`'s figure for an HMAT data type, in HMAT units (ps, MB/s).
fn hmat_value(perf: &Perf, data_type: u8) -> u64 {
    match data_type {
        HMAT_READ_LATENCY => perf.read_latency_ps,
        HMAT_WRITE_LATENCY => perf.write_latency_ps,
        HMAT_READ_BANDWIDTH => perf.read_mbps,
        _ => perf.write_mbps,
    }
}

/// What the HMAT says about one target domain, in HMAT units (ps, MB/s).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HmatTarget {
    pub domain: u32,
    pub perf: Perf,
}

/// The HMAT targets: node 0's DRAM, then each host bridge's generic port.
pub fn hmat_targets(topo: &Topology) -> Vec<HmatTarget> {
    let f = &topo.fabric;
    let dram = Perf {
        read_latency_ps: ns_to_ps(f.host_memory_latency_ns),
        write_latency_ps: ns_to_ps(f.host_memory_latency_ns),
        read_mbps: (f.host_memory_bandwidth_gbps * 1000.0).round() as u64,
        write_mbps: (f.host_memory_bandwidth_gbps * 1000.0).round() as u64,
    };
    let mut targets = vec![HmatTarget {
        domain: 0,
        perf: dram,
    }];
    for (i, gp) in generic_ports(topo).into_iter().enumerate() {
        let mut perf = gp.perf;
        // 0 means "no data" to Linux, and a generic port without latency
        // makes every device below it fail its QoS calculation.
        perf.read_latency_ps = perf.read_latency_ps.max(1);
        perf.write_latency_ps = perf.write_latency_ps.max(1);
        targets.push(HmatTarget {
            domain: generic_port_domain(topo, i),
            perf,
        });
    }
    targets
}

/// The HMAT (revision 2: latencies in ps, bandwidths in MB/s), from the CPU
/// domain 0 to node 0's memory and to every generic port.
///
/// Linux keeps only the last locality structure of each data type to rank
/// initiators, so each data type gets one structure holding every target.
/// Node 0 gets a Memory Proximity Domain Attributes structure naming its
/// CPUs; the generic ports must not: a port with an attached initiator gets
/// no generic-port figures at all.
pub fn hmat(topo: &Topology) -> Vec<u8> {
    const INITIATOR_VALID: u16 = 1;
    let mut t = Sdt::new(*b"HMAT", 40, 2, OEM_ID, OEM_TABLE_ID, OEM_REVISION);
    let mut s = Vec::with_capacity(40);
    s.extend(HMAT_PROXIMITY.to_le_bytes());
    s.extend(0u16.to_le_bytes());
    s.extend(40u32.to_le_bytes());
    s.extend(INITIATOR_VALID.to_le_bytes());
    s.extend(0u16.to_le_bytes());
    s.extend(0u32.to_le_bytes()); // initiator domain
    s.extend(0u32.to_le_bytes()); // memory domain
    s.resize(40, 0);
    t.append_slice(&s);

    let targets = hmat_targets(topo);
    for data_type in [
        HMAT_READ_LATENCY,
        HMAT_WRITE_LATENCY,
        HMAT_READ_BANDWIDTH,
        HMAT_WRITE_BANDWIDTH,
    ] {
        let values: Vec<u64> = targets
            .iter()
            .map(|t| hmat_value(&t.perf, data_type))
            .collect();
        let (base, entries) = hmat_encode(&values);
        // Padded so the next structure stays 4-byte aligned; Linux only
        // needs the length to cover the lists and entries.
        let len = (32 + 4 + 4 * targets.len() + 2 * entries.len()).next_multiple_of(4);
        let mut s = Vec::with_capacity(len);
        s.extend(HMAT_LOCALITY.to_le_bytes());
        s.extend(0u16.to_le_bytes());
        s.extend((len as u32).to_le_bytes());
        s.push(0); // flags: memory (not a memory-side cache level)
        s.push(data_type);
        s.extend([0u8; 2]); // minimum transfer size, reserved
        s.extend(1u32.to_le_bytes()); // initiator domains
        s.extend((targets.len() as u32).to_le_bytes());
        s.extend(0u32.to_le_bytes());
        s.extend(base.to_le_bytes());
        s.extend(0u32.to_le_bytes()); // the initiator: CPU domain 0
        for t in &targets {
            s.extend(t.domain.to_le_bytes());
        }
        for e in entries {
            s.extend(e.to_le_bytes());
        }
        s.resize(len, 0);
        t.append_slice(&s);
    }
    t.as_slice().to_vec()
}

const UUID_QTG_DSM: &str = "F365F9A6-A7DE-4071-A66A-B40C0B4F8E52";

/// A QoS throttling group and the read latencies (ps) the model gives the
/// devices that windows of this group can reach: Linux asks the QTG _DSM
/// with its own estimate of such a latency, summed over the device's path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QtgClass {
    pub qtg: u16,
    pub min_ps: u64,
    pub max_ps: u64,
}

/// The QTG classes that have devices, fastest first.
pub fn qtg_classes(topo: &Topology) -> Vec<QtgClass> {
    let mut classes: Vec<QtgClass> = Vec::new();
    for (d, dev) in topo.type3.iter().enumerate() {
        let hb = topo.host_bridge_of(ElementRef::Type3(d));
        let Some(path) = path_performance(topo, d) else {
            continue;
        };
        let ps = path.total.read_latency_ps;
        let reaches = |w: &&Window| {
            w.targets.contains(&hb)
                && ((w.restrictions.ram && dev.volatile > 0)
                    || (w.restrictions.pmem && dev.persistent > 0))
        };
        for w in topo.windows.iter().filter(reaches) {
            match classes.iter_mut().find(|c| c.qtg == w.qtg) {
                Some(c) => {
                    c.min_ps = c.min_ps.min(ps);
                    c.max_ps = c.max_ps.max(ps);
                }
                None => classes.push(QtgClass {
                    qtg: w.qtg,
                    min_ps: ps,
                    max_ps: ps,
                }),
            }
        }
    }
    classes.sort_by_key(|c| (c.min_ps, c.max_ps, c.qtg));
    classes
}

/// Read-latency limits (ps, inclusive) between consecutive classes: a query
/// at or below `limits[k]` (and above `limits[k - 1]`) belongs to class k,
/// above every limit to the last class. Midway, so that the guest's own
/// estimate of a path (its link terms are not the model's) lands in the
/// right class.
pub fn qtg_limits(classes: &[QtgClass]) -> Vec<u64> {
    classes
        .windows(2)
        .map(|p| p[0].max_ps.midpoint(p[1].min_ps))
        .collect()
}

/// The largest _DSM read latency taken to be in ns rather than ps. Linux
/// 6.12 sends ps (133000 for a path its sysfs shows as 133 ns); a kernel
/// sending ns would send 1000 times less. The split is the geometric mean of
/// the slowest class in ns and the fastest in ps, so an estimate within a
/// factor of sqrt(1000 × fastest / slowest) of the model reads right.
pub fn qtg_ns_limit(classes: &[QtgClass]) -> u64 {
    let fastest_ps = classes.iter().map(|c| c.min_ps).min().unwrap_or(0);
    let slowest_ns = classes
        .iter()
        .map(|c| c.max_ps)
        .max()
        .unwrap_or(0)
        .div_ceil(1000);
    (slowest_ns.saturating_mul(fastest_ps))
        .isqrt()
        .max(slowest_ns)
}

/// Which class the QTG _DSM puts a read latency in, `ps_or_ns` in either
/// unit: the decision the AML makes, for tests.
pub fn qtg_class_of(classes: &[QtgClass], ps_or_ns: u64) -> usize {
    let ps = if ps_or_ns <= qtg_ns_limit(classes) {
        ps_or_ns.saturating_mul(1000)
    } else {
        ps_or_ns
    };
    let limits = qtg_limits(classes);
    limits.iter().position(|&l| ps <= l).unwrap_or(limits.len())
}

/// `Return (Package { max, Package { ids } })`, the QTG _DSM's answer.
fn qtg_answer(max: u32, ids: &[u32]) -> Encoded {
    let refs: Vec<&dyn Aml> = ids.iter().map(|v| v as &dyn Aml).collect();
    let pkg = aml::Package::new(refs);
    Encoded(to_bytes(&aml::Return::new(&aml::Package::new(vec![
        &max, &pkg,
    ]))))
}

/// AML leaving the _DSM input's read latency, in ps, in Local0.
///
/// Linux 6.12 passes Arg3 as a Package of four Integers (read and write
/// latency, read and write bandwidth); early Linux patches passed a Package
/// holding one 16-byte Buffer of those four DWORDs. ToInteger of the first
/// element, masked to 32 bits, is the read latency either way (a Buffer
/// converts little-endian from its first bytes); a bare Buffer in Arg3 is
/// taken as that element. Values up to `ns_limit` are ns and scaled to ps.
fn read_latency_ps_to_local0(ns_limit: u64) -> Vec<u8> {
    const BUFFER_TYPE: u8 = 3;
    let first = aml::Index::new(&aml::ZERO, &aml::Arg(3), &aml::ZERO);
    let deref = aml::DeRefOf::new(&first);
    let arg3_type = aml::ObjectType::new(&aml::Arg(3));
    let is_buffer = aml::Equal::new(&arg3_type, &BUFFER_TYPE);
    let whole = aml::Store::new(&aml::Local(1), &aml::Arg(3));
    let element = aml::Store::new(&aml::Local(1), &deref);
    let as_int = aml::ToInteger::new(&aml::ZERO, &aml::Local(1));
    let low = aml::And::new(&aml::Local(0), &as_int, &0xffff_ffffu32);
    let is_ns = aml::LessEqual::new(&aml::Local(0), &ns_limit);
    let to_ps = aml::Multiply::new(&aml::Local(0), &aml::Local(0), &1000u32);
    [
        to_bytes(&aml::If::new(&is_buffer, vec![&whole])),
        to_bytes(&aml::Else::new(vec![&element])),
        to_bytes(&low),
        to_bytes(&aml::If::new(&is_ns, vec![&to_ps])),
    ]
    .concat()
}

/// The ACPI0017 QTG _DSM (CXL 3.0 9.17.3). Function 1 gets the latency and
/// bandwidth Linux estimates for a device's path and answers the QTG ids
/// suited to it, best first; Linux takes the first as the device's
/// qos_class and expects a CFMWS window with that QTG. With one class that
/// is the only answer; with several, the read latency picks the class (the
/// windows' QTGs are latency classes of the devices below them) and the
/// other QTGs follow in ascending order.
fn qtg_dsm(topo: &Topology) -> Encoded {
    let mut all: Vec<u32> = topo.windows.iter().map(|w| u32::from(w.qtg)).collect();
    all.sort_unstable();
    all.dedup();
    if all.is_empty() {
        all.push(0);
    }
    let max = all.iter().copied().max().unwrap_or(0);
    let classes = qtg_classes(topo);
    let answer_for = |qtg: u32| {
        let mut ids = vec![qtg];
        ids.extend(all.iter().copied().filter(|&q| q != qtg));
        qtg_answer(max, &ids)
    };
    let f1_body: Encoded = match classes.as_slice() {
        [] | [_] => answer_for(classes.first().map_or(all[0], |c| u32::from(c.qtg))),
        _ => {
            let mut body = read_latency_ps_to_local0(qtg_ns_limit(&classes));
            for (c, &limit) in classes.iter().zip(&qtg_limits(&classes)) {
                let answer = answer_for(u32::from(c.qtg));
                let le = aml::LessEqual::new(&aml::Local(0), &limit);
                body.extend(to_bytes(&aml::If::new(&le, vec![&answer])));
            }
            let last = classes.last().map_or(all[0], |c| u32::from(c.qtg));
            body.extend(answer_for(last).0);
            Encoded(body)
        }
    };
    let uuid = aml::Uuid::new(UUID_QTG_DSM);
    let funcs = aml::BufferData::new(vec![0x03]);
    let none = aml::BufferData::new(vec![0x00]);
    let f0 = aml::Equal::new(&aml::Arg(2), &aml::ZERO);
    let f1 = aml::Equal::new(&aml::Arg(2), &aml::ONE);
    let ret_funcs = aml::Return::new(&funcs);
    let if_f0 = aml::If::new(&f0, vec![&ret_funcs]);
    let if_f1 = aml::If::new(&f1, vec![&f1_body]);
    let is_qtg = aml::Equal::new(&aml::Arg(0), &uuid);
    let if_uuid = aml::If::new(&is_qtg, vec![&if_f0, &if_f1]);
    let ret_none = aml::Return::new(&none);
    let body = Encoded([to_bytes(&if_uuid), to_bytes(&ret_none)].concat());
    Encoded(to_bytes(&aml::Method::new(
        "_DSM".into(),
        4,
        true,
        vec![&body],
    )))
}

/// DSDT objects for the hierarchy (to append inside the DSDT body).
pub fn dsdt_objects(topo: &Topology, plan: &CxlPlan) -> Vec<u8> {
    let mut body = Vec::new();
    for (i, hb) in plan.host_bridges.iter().enumerate() {
        let path = format!("_SB_.CX{i:02X}");
        let buses = AddressSpace::new_bus_number(u16::from(hb.root_bus), u16::from(hb.last_bus));
        let mmio = AddressSpace::new_memory(
            AddressSpaceCacheable::NotCacheable,
            true,
            hb.mmio.0 as u32,
            hb.mmio.1 as u32,
            None,
        );
        let crs = aml::ResourceTemplate::new(vec![&buses, &mmio]);
        let (pnp0a08, pnp0a03) = (aml::EISAName::new("PNP0A08"), aml::EISAName::new("PNP0A03"));
        let cid = aml::Package::new(vec![&pnp0a08, &pnp0a03]);
        // _OSC: grant whatever the OS asks for, under the PCI and the CXL
        // UUIDs alike (returning the capabilities buffer unchanged).
        let ret_arg3 = aml::Return::new(&aml::Arg(3));
        let osc = aml::Method::new("_OSC".into(), 4, false, vec![&ret_arg3]);
        let prt = Encoded(prt());
        body.extend(to_bytes(&aml::Device::new(
            path.as_str().into(),
            vec![
                &aml::Name::new("_HID".into(), &"ACPI0016"),
                &aml::Name::new("_CID".into(), &cid),
                &aml::Name::new("_ADR".into(), &aml::ZERO),
                &aml::Name::new("_SEG".into(), &aml::ZERO),
                &aml::Name::new("_UID".into(), &hb.uid),
                &aml::Name::new("_BBN".into(), &u32::from(hb.root_bus)),
                &aml::Name::new("_CRS".into(), &crs),
                &prt,
                &osc,
            ],
        )));
    }
    let dsm = qtg_dsm(topo);
    let ret_sta = aml::Return::new(&0x0bu8);
    let sta = aml::Method::new("_STA".into(), 0, false, vec![&ret_sta]);
    body.extend(to_bytes(&aml::Device::new(
        "_SB_.CXLM".into(),
        vec![&aml::Name::new("_HID".into(), &"ACPI0017"), &sta, &dsm],
    )));
    body
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cxl::plan::plan;

    fn load(name: &str) -> Topology {
        let path = format!("{}/../examples/{name}", env!("CARGO_MANIFEST_DIR"));
        Topology::from_toml_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    fn checksum_ok(t: &[u8]) -> bool {
        t.iter().fold(0u8, |a, b| a.wrapping_add(*b)) == 0
    }

    #[test]
    fn cedt_has_chbs_per_bridge_and_cfmws_per_window() {
        let topo = load("two-host-bridges.toml");
        let p = plan(&topo, (0xc100_0000, 0xe000_0000), 1 << 30).unwrap();
        let t = cedt(&topo, &p);
        assert!(checksum_ok(&t));
        assert_eq!(
            u32::from_le_bytes(t[4..8].try_into().unwrap()) as usize,
            t.len()
        );
        let mut off = 36;
        let mut chbs = Vec::new();
        let mut cfmws = Vec::new();
        while off < t.len() {
            let len = u16::from_le_bytes([t[off + 2], t[off + 3]]) as usize;
            let s = &t[off..off + len];
            let u32_at = |o: usize| u32::from_le_bytes(s[o..o + 4].try_into().unwrap());
            let u64_at = |o: usize| u64::from_le_bytes(s[o..o + 8].try_into().unwrap());
            match s[0] {
                0 => {
                    assert_eq!(len, 0x20);
                    assert_eq!(u32_at(8), 1, "CXL 2.0 host bridge");
                    assert_eq!(u64_at(0x18), 0x10000, "CHBCR length for v1");
                    chbs.push((u32_at(4), u64_at(0x10)));
                }
                1 => {
                    let ways = match s[0x18] {
                        0 => 1,
                        1 => 2,
                        2 => 4,
                        n => panic!("eniw {n}"),
                    };
                    assert_eq!(len, 0x24 + 4 * ways);
                    let targets: Vec<u32> = (0..ways).map(|i| u32_at(0x24 + 4 * i)).collect();
                    cfmws.push((u64_at(8), u64_at(0x10), ways, u32_at(0x1c), targets));
                }
                x => panic!("unexpected CEDT structure {x}"),
            }
            off += len;
        }
        assert_eq!(chbs.len(), 2);
        assert_eq!(chbs[0].1, p.host_bridges[0].chbcr);
        assert_eq!(cfmws.len(), topo.windows.len());
        let (base, size, ways, _hbig, targets) = &cfmws[0];
        assert_eq!((*base, *size), (p.windows[0].base, p.windows[0].size));
        assert_eq!(*ways, 2);
        assert_eq!(
            targets,
            &vec![chbs[0].0, chbs[1].0],
            "targets are CHBS UIDs"
        );
    }

    #[test]
    fn srat_lists_cpus_and_ram_in_node_0() {
        let t = srat(2, &[(0, 0x9fc00), (0x100000, 0x3ff00000)], None);
        assert!(checksum_ok(&t));
        assert_eq!(t.len(), 48 + 2 * 16 + 2 * 40);
        assert_eq!(u32::from_le_bytes(t[36..40].try_into().unwrap()), 1);
        assert_eq!((t[48], t[49], t[51]), (0, 16, 0));
        assert_eq!((t[64], t[65], t[67]), (0, 16, 1));
        let m = &t[80..120];
        assert_eq!((m[0], m[1]), (1, 40));
        assert_eq!(u64::from_le_bytes(m[8..16].try_into().unwrap()), 0);
    }

    fn u16_at(b: &[u8], o: usize) -> u16 {
        u16::from_le_bytes(b[o..o + 2].try_into().unwrap())
    }
    fn u32_at(b: &[u8], o: usize) -> u32 {
        u32::from_le_bytes(b[o..o + 4].try_into().unwrap())
    }
    fn u64_at(b: &[u8], o: usize) -> u64 {
        u64::from_le_bytes(b[o..o + 8].try_into().unwrap())
    }

    /// Splits an ACPI table into its structures; `len_at` is the length
    /// field's offset and width (SRAT: byte 1, HMAT: dword at 4).
    fn structures(t: &[u8], header: usize, hmat_style: bool) -> Vec<&[u8]> {
        assert!(checksum_ok(t), "checksum");
        assert_eq!(u32_at(t, 4) as usize, t.len(), "table length");
        let mut out = Vec::new();
        let mut off = header;
        while off < t.len() {
            let len = if hmat_style {
                u32_at(t, off + 4) as usize
            } else {
                t[off + 1] as usize
            };
            assert!(len > 0 && off + len <= t.len(), "structure at {off}");
            out.push(&t[off..off + len]);
            off += len;
        }
        out
    }

    #[test]
    fn srat_has_a_generic_port_per_host_bridge_after_the_window_nodes() {
        let mut topo = load("two-host-bridges.toml");
        topo.host_bridges[1].uid = 0x1234_5678;
        let t = srat(1, &[(0, 0x9fc00)], Some(&topo));
        let gps: Vec<&[u8]> = structures(&t, 48, false)
            .into_iter()
            .filter(|s| s[0] == 6)
            .collect();
        assert_eq!(gps.len(), 2);
        let mut domains = Vec::new();
        for (gp, hb) in gps.iter().zip(&topo.host_bridges) {
            assert_eq!(gp.len(), 32);
            assert_eq!(gp[2], 0, "reserved");
            assert_eq!(gp[3], 0, "ACPI device handle");
            assert_eq!(&gp[8..16], b"ACPI0016");
            assert_eq!(u32_at(gp, 16), hb.uid, "_UID, as Linux reads it");
            assert_eq!(&gp[20..24], &[0; 4]);
            assert_eq!(u32_at(gp, 24) & 1, 1, "enabled");
            assert_eq!(u32_at(gp, 28), 0);
            domains.push(u32_at(gp, 4));
        }
        // Linux numbers the window nodes 1..=windows; node 0 is RAM.
        let windows = topo.windows.len() as u32;
        assert!(domains.iter().all(|&d| d > windows), "{domains:?}");
        assert_ne!(domains[0], domains[1]);
        // Without CXL the table is unchanged.
        assert!(!structures(&srat(1, &[(0, 0x9fc00)], None), 48, false)
            .iter()
            .any(|s| s[0] == 6));
    }

    /// Decodes the HMAT independently: the initiator-domain-0 value of each
    /// (data type, target domain) in Linux's units after its own arithmetic
    /// (entry × base; latencies ps), and the proximity structures.
    /// (initiator domain, memory domain, flags) of a proximity structure.
    type Proximity = (u32, u32, u16);
    /// (data type, target domain, entry × base, base) of a locality entry.
    type Locality = (u8, u32, u64, u64);

    fn parse_hmat(t: &[u8]) -> (Vec<Proximity>, Vec<Locality>) {
        assert_eq!(&t[0..4], b"HMAT");
        assert_eq!(t[8], 2, "revision 2: latencies in ps");
        let mut prox = Vec::new();
        let mut values = Vec::new();
        for s in structures(t, 40, true) {
            match u16_at(s, 0) {
                0 => {
                    assert_eq!(s.len(), 40);
                    prox.push((u32_at(s, 12), u32_at(s, 16), u16_at(s, 8)));
                }
                1 => {
                    assert_eq!(s.len() % 4, 0, "aligned");
                    assert_eq!(s[8] & 0xf, 0, "memory hierarchy");
                    let (ni, nt) = (u32_at(s, 12) as usize, u32_at(s, 16) as usize);
                    assert!(s.len() >= 32 + 4 * ni + 4 * nt + 2 * ni * nt);
                    let base = u64_at(s, 24);
                    let inits: Vec<u32> = (0..ni).map(|i| u32_at(s, 32 + 4 * i)).collect();
                    assert_eq!(inits, vec![0], "the CPUs' domain");
                    let tgt = 32 + 4 * ni;
                    let ent = tgt + 4 * nt;
                    for j in 0..nt {
                        let e = u16_at(s, ent + 2 * j);
                        assert!(e != 0 && e != 0xffff, "valid entry");
                        let v = base * u64::from(e);
                        assert!(v <= u64::from(u32::MAX), "within Linux's u32");
                        values.push((s[9], u32_at(s, tgt + 4 * j), v, base));
                    }
                }
                x => panic!("unexpected HMAT structure {x}"),
            }
        }
        (prox, values)
    }

    #[test]
    fn hmat_gives_dram_and_every_generic_port_the_fabric_values() {
        for name in ["direct.toml", "two-host-bridges.toml", "switch-4.toml"] {
            let topo = load(name);
            let (prox, values) = parse_hmat(&hmat(&topo));
            // Only node 0 names its CPUs: a generic port with an attached
            // initiator would get no generic-port figures from Linux.
            assert_eq!(prox, vec![(0, 0, 1)], "{name}");
            let f = &topo.fabric;
            let mut expected = vec![(
                0,
                Perf {
                    read_latency_ps: ns_to_ps(f.host_memory_latency_ns),
                    write_latency_ps: ns_to_ps(f.host_memory_latency_ns),
                    read_mbps: (f.host_memory_bandwidth_gbps * 1000.0) as u64,
                    write_mbps: (f.host_memory_bandwidth_gbps * 1000.0) as u64,
                },
            )];
            for (i, gp) in generic_ports(&topo).iter().enumerate() {
                assert_eq!(gp.uid, topo.host_bridges[i].uid);
                expected.push((generic_port_domain(&topo, i), gp.perf));
            }
            // One structure per data type, each with every target.
            assert_eq!(values.len(), 4 * expected.len(), "{name}");
            for (data_type, domain, got, base) in values {
                let (_, p) = expected.iter().find(|(d, _)| *d == domain).unwrap();
                let want = match data_type {
                    1 => p.read_latency_ps,
                    2 => p.write_latency_ps,
                    4 => p.read_mbps,
                    5 => p.write_mbps,
                    x => panic!("data type {x}"),
                };
                // Entries share a base unit, picked so the largest fits 16
                // bits; each is the nearest multiple of it.
                assert!(
                    got.abs_diff(want) * 2 <= base,
                    "{name} type {data_type} domain {domain}: {got} vs {want} (base {base})"
                );
                if data_type <= 2 {
                    // What Linux keeps: whole ns, rounded up.
                    assert_eq!(got.div_ceil(1000), want.div_ceil(1000), "{name}");
                }
            }
        }
    }

    #[test]
    fn one_qtg_class_answers_its_qtg_for_any_input() {
        let topo = load("direct.toml");
        let classes = qtg_classes(&topo);
        assert_eq!(classes.len(), 1);
        assert_eq!(classes[0].qtg, 0);
        let total = path_performance(&topo, 0).unwrap().total;
        assert_eq!(classes[0].min_ps, total.read_latency_ps);
        assert!(qtg_limits(&classes).is_empty());
        assert_eq!(qtg_class_of(&classes, 133_000), 0);
        // Function 1 is an unconditional Return(Package{0, Package{0}}).
        let aml = to_bytes(&qtg_dsm(&topo));
        let answer = to_bytes(&aml::Return::new(&aml::Package::new(vec![
            &0u32,
            &aml::Package::new(vec![&0u32]),
        ])));
        assert!(aml.windows(answer.len()).any(|w| w == answer.as_slice()));
        let element0 = to_bytes(&aml::Index::new(&aml::ZERO, &aml::Arg(3), &aml::ZERO));
        assert!(
            !aml.windows(element0.len())
                .any(|w| w == element0.as_slice()),
            "the input is not consulted"
        );
    }

    #[test]
    fn several_qtg_classes_split_on_read_latency() {
        // hb0's device sits right below its root port; hb1's behind a
        // switch with slow media: two latency classes, QTG 3 and QTG 1.
        let topo = Topology::from_toml_str(
            r#"
            [[host_bridge]]
            id = "hb0"
            [[host_bridge]]
            id = "hb1"
            [[switch]]
            id = "sw0"
            port = "hb1.rp0"
            downstream_ports = 1
            [[type3]]
            id = "fast"
            port = "hb0.rp0"
            volatile = "256M"
            [[type3]]
            id = "slow"
            port = "sw0.dp0"
            volatile = "256M"
            media = { read_latency_ns = 400 }
            [[window]]
            id = "near"
            targets = ["hb0"]
            size = "256M"
            qtg = 3
            [[window]]
            id = "far"
            targets = ["hb1"]
            size = "256M"
            qtg = 1
            "#,
        )
        .unwrap();
        let classes = qtg_classes(&topo);
        let ps = |d| path_performance(&topo, d).unwrap().total.read_latency_ps;
        let (fast, slow) = (ps(0), ps(1));
        assert!(fast < slow);
        assert_eq!(
            classes,
            vec![
                QtgClass {
                    qtg: 3,
                    min_ps: fast,
                    max_ps: fast
                },
                QtgClass {
                    qtg: 1,
                    min_ps: slow,
                    max_ps: slow
                },
            ]
        );
        let limits = qtg_limits(&classes);
        assert_eq!(limits, vec![(fast + slow) / 2]);
        // Either unit, and estimates off the model by a fair margin (Linux's
        // link terms are its own), land in the right class.
        for (latency_ps, class) in [(fast, 0), (fast * 4 / 5, 0), (slow, 1), (slow * 9 / 10, 1)] {
            assert_eq!(qtg_class_of(&classes, latency_ps), class, "{latency_ps} ps");
            assert_eq!(
                qtg_class_of(&classes, latency_ps / 1000),
                class,
                "{latency_ps} ps in ns"
            );
        }
        // The AML: the ns-to-ps step, then the limit; QTG 3 first at or
        // below it, QTG 1 first above it (max QTG 3 in both).
        let aml = to_bytes(&qtg_dsm(&topo));
        let ns_limit = qtg_ns_limit(&classes);
        assert!(
            ns_limit > slow / 1000 * 2 && ns_limit < fast / 2,
            "{ns_limit}"
        );
        let near = to_bytes(&aml::Return::new(&aml::Package::new(vec![
            &3u32,
            &aml::Package::new(vec![&3u32, &1u32]),
        ])));
        let far = to_bytes(&aml::Return::new(&aml::Package::new(vec![
            &3u32,
            &aml::Package::new(vec![&1u32, &3u32]),
        ])));
        let at = |needle: &[u8]| aml.windows(needle.len()).position(|w| w == needle);
        let unit = to_bytes(&aml::LessEqual::new(&aml::Local(0), &ns_limit));
        let le = to_bytes(&aml::LessEqual::new(&aml::Local(0), &limits[0]));
        let order = [at(&unit), at(&le), at(&near), at(&far)].map(Option::unwrap);
        assert!(order.is_sorted(), "{order:?}");
    }

    #[test]
    fn dsdt_objects_name_every_host_bridge_and_the_root() {
        let topo = load("two-host-bridges.toml");
        let p = plan(&topo, (0xc100_0000, 0xe000_0000), 1 << 30).unwrap();
        let aml = dsdt_objects(&topo, &p);
        let count = |needle: &[u8]| aml.windows(needle.len()).filter(|w| *w == needle).count();
        assert_eq!(count(b"ACPI0016"), 2);
        assert_eq!(count(b"ACPI0017"), 1);
        assert_eq!(count(b"_OSC"), 2);
        assert_eq!(count(b"_DSM"), 1);
    }
}
