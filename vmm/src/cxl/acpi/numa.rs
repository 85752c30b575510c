//! SRAT and HMAT: the tables that make the guest build NUMA nodes for the
//! CXL windows and find each host bridge's generic-port performance.
//!
//! The table headers are `acpi_tables::sdt::Sdt`; the structures come from
//! `acpi_tables` where its 0.2 release writes them right (SRAT Memory
//! Affinity, HMAT Memory Proximity Domain Attributes). The rest is built here,
//! because in that release:
//! * `srat::SRAT` writes revision 1 and has no Processor Local APIC Affinity
//!   (type 0) or Generic Port Affinity (type 6) structure, and its structure
//!   list cannot be extended. Linux reads only 8 bits of a memory affinity's
//!   proximity domain from a revision-1 SRAT (`acpi_numa_memory_affinity_init`,
//!   drivers/acpi/numa/srat.c), and the generic ports are the whole point.
//! * `hmat::HMAT` writes revision 1, for which Linux divides every entry ×
//!   base by 10 instead of reading latencies in ps (`hmat_normalize`,
//!   drivers/acpi/numa/hmat.c); and `hmat::SystemLocality` neither pads its
//!   length to 4 bytes (ours keeps every structure aligned) nor indexes
//!   entries right for more than one initiator (`set_entry_value` multiplies
//!   the initiator index by the initiator count, not the target count).

use acpi_tables::hmat::MemoryProximityDomain;
use acpi_tables::sdt::Sdt;
use acpi_tables::srat::MemoryAffinity;
use fabric::hmat::{hmat_localities, hmat_targets, HmatTarget};
use fabric::topology::Topology;

use super::generic_port_domain;
use crate::acpi::{to_bytes, OEM_ID, OEM_REVISION, OEM_TABLE_ID};

/// The SRAT: every vCPU and all RAM in proximity domain 0, and with a CXL
/// hierarchy a Generic Port Affinity structure per host bridge, which is
/// how Linux finds each bridge's HMAT performance (its "generic port").
/// CXL windows are left out on purpose: Linux then gives each CFMWS window a
/// node of its own (`acpi_parse_cfmws`, drivers/acpi/numa/srat.c).
pub fn srat(vcpus: u8, ram: &[(u64, u64)], topo: Option<&Topology>) -> Vec<u8> {
    const TYPE_LAPIC: u8 = 0;
    const TYPE_GENERIC_PORT: u8 = 6;
    const HANDLE_ACPI: u8 = 0;
    const ENABLED: u32 = 1;
    // Revision 3: ACPI 6.x, 32-bit proximity domains.
    let mut t = Sdt::new(*b"SRAT", 48, 3, OEM_ID, OEM_TABLE_ID, OEM_REVISION);
    // The first reserved dword must be 1 (for backward compatibility).
    t.write_u32(36, 1);
    for cpu in 0..vcpus {
        // Processor Local APIC/SAPIC Affinity (ACPI 6.5 §5.2.16.1): domain
        // bits [7:0], APIC ID, flags, SAPIC EID, domain [31:8], clock domain.
        let mut s = vec![TYPE_LAPIC, 16, 0, cpu];
        s.extend(ENABLED.to_le_bytes());
        s.extend([0u8; 8]);
        t.append_slice(&s);
    }
    for &(base, len) in ram {
        t.append_slice(&to_bytes(&MemoryAffinity::new(0, base, len).enabled()));
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

const HMAT_LOCALITY: u16 = 1;

/// The proximity domain of an HMAT target.
fn domain(topo: &Topology, target: HmatTarget) -> u32 {
    match target {
        HmatTarget::HostMemory => 0,
        HmatTarget::GenericPort { host_bridge } => generic_port_domain(topo, host_bridge),
    }
}

/// The HMAT (revision 2: latencies in ps, bandwidths in MB/s), from the CPU
/// domain 0 to node 0's memory and to every generic port; the values are
/// the fabric model's ([`fabric::hmat::hmat_localities`]).
///
/// Node 0 gets a Memory Proximity Domain Attributes structure naming its
/// CPUs; the generic ports must not: a port with an attached initiator gets
/// no generic-port figures at all.
pub fn hmat(topo: &Topology) -> Vec<u8> {
    let mut t = Sdt::new(*b"HMAT", 40, 2, OEM_ID, OEM_TABLE_ID, OEM_REVISION);
    t.append_slice(&to_bytes(&MemoryProximityDomain::new(0, 0)));
    let domains: Vec<u32> = hmat_targets(topo)
        .into_iter()
        .map(|(target, _)| domain(topo, target))
        .collect();
    for l in hmat_localities(topo) {
        // System Locality Latency and Bandwidth Information (ACPI 6.5
        // §5.2.28.4), one initiator. Padded so the next structure stays
        // 4-byte aligned; Linux only needs the length to cover the lists
        // and entries.
        let len = (32 + 4 + 4 * domains.len() + 2 * l.entries.len()).next_multiple_of(4);
        let mut s = Vec::with_capacity(len);
        s.extend(HMAT_LOCALITY.to_le_bytes());
        s.extend(0u16.to_le_bytes());
        s.extend((len as u32).to_le_bytes());
        s.push(0); // flags: memory (not a memory-side cache level)
        s.push(l.data_type as u8);
        s.extend([0u8; 2]); // minimum transfer size, reserved
        s.extend(1u32.to_le_bytes()); // initiator domains
        s.extend((domains.len() as u32).to_le_bytes());
        s.extend(0u32.to_le_bytes());
        s.extend(l.entry_base_unit.to_le_bytes());
        s.extend(0u32.to_le_bytes()); // the initiator: CPU domain 0
        for d in &domains {
            s.extend(d.to_le_bytes());
        }
        for e in &l.entries {
            s.extend(e.to_le_bytes());
        }
        s.resize(len, 0);
        t.append_slice(&s);
    }
    t.as_slice().to_vec()
}
