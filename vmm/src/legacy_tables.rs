//! The ACPI and CDAT builders as they were before the tables moved to
//! `acpi_tables` structures and the performance data to `fabric`, kept only
//! to prove the new builders write the same bytes for every example
//! topology (`byte_identity_tests`). Removed once that holds.

#![allow(dead_code)]

use acpi_tables::aml::{self, AddressSpace, AddressSpaceCacheable};
use acpi_tables::sdt::Sdt;
use acpi_tables::Aml;
use devices::cxl::component::{Cdat, CdatEntry};
use fabric::hmat::{generic_ports, path_performance, Perf};
use fabric::time::ns_to_ps;
use fabric::topology::{ElementRef, Topology, Window};

use crate::acpi::{prt, to_bytes, Encoded, OEM_ID, OEM_REVISION, OEM_TABLE_ID};
use crate::cxl::plan::{CxlPlan, CHBCR_SIZE};
use crate::layout::*;

const HMAT_ENTRY_INVALID: u16 = 0xFFFF;
const HMAT_MEMORY: u8 = 0;
const DSMAS_FLAG_NON_VOLATILE: u8 = 1 << 2;
const DSEMTS_EFI_SPECIFIC_PURPOSE: u8 = 1;
const DSEMTS_EFI_RESERVED: u8 = 2;
const SSLBIS_PORT_USP: u16 = 0x100;
const SSLBIS_MAX_ENTRIES_PER_STRUCT: usize = 13;

/// Latency and bandwidth of a path, in the units Linux reports them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AccessPerf {
    /// Picoseconds, HMAT's latency unit.
    pub read_latency_ps: u64,
    pub write_latency_ps: u64,
    /// MB/s.
    pub read_bandwidth: u64,
    /// MB/s.
    pub write_bandwidth: u64,
}

impl AccessPerf {
    /// The four HMAT data types with their values in HMAT units (ps, MB/s).
    fn hmat_values(self) -> [(u8, u64); 4] {
        [
            (1, self.read_latency_ps),
            (2, self.write_latency_ps),
            (4, self.read_bandwidth),
            (5, self.write_bandwidth),
        ]
    }
}

/// Latency and bandwidth from a switch's upstream port to one downstream
/// port, the `port` number being the DSP's PCIe Link Capabilities port number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SwitchPortPerf {
    pub port: u16,
    pub perf: AccessPerf,
}

/// Picks a power-of-ten base unit so every value fits a 16-bit entry, and the
/// entries. Linux multiplies them back (`cdat_normalize`), refusing products
/// above u32::MAX and treating 0xFFFF as invalid, so entries stay ≤ 0xFFFE.
/// A non-zero value never rounds down to 0 ("no data").
pub fn hmat_encode(values: &[u64]) -> (u64, Vec<u16>) {
    let max = values.iter().copied().max().unwrap_or(0);
    let limit = u64::from(HMAT_ENTRY_INVALID - 1);
    let mut base = 1u64;
    while max / base > limit {
        base = base.saturating_mul(10);
    }
    let entries = values
        .iter()
        .map(|&v| {
            let rounded = v / base + u64::from(v % base >= base.div_ceil(2));
            let e = rounded.clamp(u64::from(v != 0), limit);
            e as u16
        })
        .collect();
    (base, entries)
}

/// A type-3 device's table, as QEMU builds it: per non-empty partition
/// (volatile at DPA 0, then persistent) a DSMAS, read/write latency and
/// bandwidth DSLBIS, and a DSEMTS. Handles count from 0.
pub fn for_type3(volatile_bytes: u64, persistent_bytes: u64, perf: AccessPerf) -> Cdat {
    let mut entries = Vec::new();
    let mut handle = 0u8;
    let partitions = [
        (volatile_bytes, 0, 0, DSEMTS_EFI_SPECIFIC_PURPOSE),
        (
            persistent_bytes,
            volatile_bytes,
            DSMAS_FLAG_NON_VOLATILE,
            DSEMTS_EFI_RESERVED,
        ),
    ];
    for (len, dpa_base, flags, memory_type) in partitions {
        if len == 0 {
            continue;
        }
        entries.push(CdatEntry::Dsmas {
            handle,
            flags,
            dpa_base,
            dpa_len: len,
        });
        for (data_type, value) in perf.hmat_values() {
            let (entry_base_unit, e) = hmat_encode(&[value]);
            entries.push(CdatEntry::Dslbis {
                handle,
                flags: HMAT_MEMORY,
                data_type,
                entry_base_unit,
                entries: [e[0], 0, 0],
            });
        }
        entries.push(CdatEntry::Dsemts {
            handle,
            memory_type,
            dpa_offset: 0,
            dpa_len: len,
        });
        handle += 1;
    }
    Cdat::new(entries)
}

/// A switch upstream port's table: one SSLBIS per data type (read/write
/// latency, read/write bandwidth) with an (USP, DSP) entry per downstream
/// port, split so no structure exceeds what Linux 6.1 reads in one go.
pub fn for_switch_upstream(ports: &[SwitchPortPerf]) -> Cdat {
    let mut entries = Vec::new();
    for kind in 0..4 {
        let data_type = ports.first().map_or(1, |p| p.perf.hmat_values()[kind].0);
        let values: Vec<u64> = ports.iter().map(|p| p.perf.hmat_values()[kind].1).collect();
        let (entry_base_unit, encoded) = hmat_encode(&values);
        let pairs: Vec<(u16, u16, u16)> = ports
            .iter()
            .zip(encoded)
            .map(|(p, v)| (SSLBIS_PORT_USP, p.port, v))
            .collect();
        for chunk in pairs.chunks(SSLBIS_MAX_ENTRIES_PER_STRUCT) {
            entries.push(CdatEntry::Sslbis {
                data_type,
                entry_base_unit,
                entries: chunk.to_vec(),
            });
        }
    }
    Cdat::new(entries)
}

/// DSLBIS values: the device's own share of a host access (media, its
/// port and retimers), from the fabric model, the same numbers HMAT and the
/// timing engine use, so the guest's sum along the path matches the model.
fn media_perf(topo: &Topology, index: usize) -> AccessPerf {
    let p = fabric::hmat::device_share(topo, index);
    AccessPerf {
        read_latency_ps: p.read_latency_ps,
        write_latency_ps: p.write_latency_ps,
        read_bandwidth: p.read_mbps,
        write_bandwidth: p.write_mbps,
    }
}

/// SSLBIS values of each downstream port, from the fabric model.
pub fn switch_cdat(topo: &Topology, switch: usize) -> Cdat {
    let ports: Vec<SwitchPortPerf> = (0..topo.switches[switch].downstream_ports)
        .map(|p| {
            let s = fabric::hmat::switch_perf(topo, switch, p);
            SwitchPortPerf {
                port: p as u16,
                perf: AccessPerf {
                    read_latency_ps: s.latency_ps,
                    write_latency_ps: s.latency_ps,
                    read_bandwidth: s.bandwidth_mbps,
                    write_bandwidth: s.bandwidth_mbps,
                },
            }
        })
        .collect();
    for_switch_upstream(&ports)
}

pub fn type3_cdat(topo: &Topology, index: usize) -> Cdat {
    let d = &topo.type3[index];
    for_type3(d.volatile, d.persistent, media_perf(topo, index))
}

pub fn madt(vcpus: u8) -> Vec<u8> {
    const PCAT_COMPAT: u32 = 1;
    const TYPE_LAPIC: u8 = 0;
    const TYPE_IOAPIC: u8 = 1;
    const TYPE_ISO: u8 = 2;
    let mut t = Sdt::new(*b"APIC", 44, 5, OEM_ID, OEM_TABLE_ID, OEM_REVISION);
    t.write_u32(36, LAPIC_START as u32);
    t.write_u32(40, PCAT_COMPAT);
    for cpu in 0..vcpus {
        // uid, APIC ID, flags = enabled.
        t.append_slice(&[TYPE_LAPIC, 8, cpu, cpu, 1, 0, 0, 0]);
    }
    let mut ioapic = vec![TYPE_IOAPIC, 12, vcpus, 0];
    ioapic.extend((IOAPIC_START as u32).to_le_bytes());
    ioapic.extend(0u32.to_le_bytes()); // GSI base
    t.append_slice(&ioapic);
    // SCI: ISA IRQ 9 -> GSI 9, level triggered, active high (flags 0x000d).
    let mut iso = vec![TYPE_ISO, 10, 0, IRQ_SCI as u8];
    iso.extend(IRQ_SCI.to_le_bytes());
    iso.extend(0x000du16.to_le_bytes());
    t.append_slice(&iso);
    t.as_slice().to_vec()
}

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
