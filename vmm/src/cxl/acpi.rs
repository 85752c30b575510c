//! ACPI for the CXL hierarchy: CEDT (CHBS per host bridge, CFMWS per
//! window), DSDT objects (an ACPI0016 root bridge per host bridge with _OSC,
//! the ACPI0017 root with its QTG _DSM), and the SRAT that turns on ACPI NUMA
//! so the guest makes a node per CFMWS window.

use acpi_tables::aml::{self, AddressSpace, AddressSpaceCacheable};
use acpi_tables::sdt::Sdt;
use acpi_tables::Aml;
use fabric::topology::Topology;

use super::plan::{CxlPlan, CHBCR_SIZE};
use crate::acpi::{to_bytes, OEM_ID, OEM_REVISION, OEM_TABLE_ID};

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

/// The SRAT: every vCPU and all RAM in proximity domain 0. CXL windows are
/// left out on purpose: Linux then gives each CFMWS window a node of its own.
pub fn srat(vcpus: u8, ram: &[(u64, u64)]) -> Vec<u8> {
    const TYPE_LAPIC: u8 = 0;
    const TYPE_MEMORY: u8 = 1;
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
    t.as_slice().to_vec()
}

const UUID_QTG_DSM: &str = "F365F9A6-A7DE-4071-A66A-B40C0B4F8E52";

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
                &osc,
            ],
        )));
    }
    // QTG _DSM: function 0 lists function 1; function 1 answers "the
    // windows' QoS throttling groups", best first.
    let mut qtgs: Vec<u16> = topo.windows.iter().map(|w| w.qtg).collect();
    qtgs.sort_unstable();
    qtgs.dedup();
    if qtgs.is_empty() {
        qtgs.push(0);
    }
    let max_qtg = u32::from(*qtgs.iter().max().unwrap_or(&0));
    let ids: Vec<u32> = qtgs.iter().map(|&q| u32::from(q)).collect();
    let id_refs: Vec<&dyn Aml> = ids.iter().map(|v| v as &dyn Aml).collect();
    let id_pkg = aml::Package::new(id_refs);
    let answer = aml::Package::new(vec![&max_qtg, &id_pkg]);
    let uuid = aml::Uuid::new(UUID_QTG_DSM);
    let funcs = aml::BufferData::new(vec![0x03]);
    let none = aml::BufferData::new(vec![0x00]);
    let f0 = aml::Equal::new(&aml::Arg(2), &aml::ZERO);
    let f1 = aml::Equal::new(&aml::Arg(2), &aml::ONE);
    let ret_funcs = aml::Return::new(&funcs);
    let ret_answer = aml::Return::new(&answer);
    let if_f0 = aml::If::new(&f0, vec![&ret_funcs]);
    let if_f1 = aml::If::new(&f1, vec![&ret_answer]);
    let is_qtg = aml::Equal::new(&aml::Arg(0), &uuid);
    let if_uuid = aml::If::new(&is_qtg, vec![&if_f0, &if_f1]);
    let ret_none = aml::Return::new(&none);
    let dsm = aml::Method::new("_DSM".into(), 4, true, vec![&if_uuid, &ret_none]);
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
        let t = srat(2, &[(0, 0x9fc00), (0x100000, 0x3ff00000)]);
        assert!(checksum_ok(&t));
        assert_eq!(t.len(), 48 + 2 * 16 + 2 * 40);
        assert_eq!(u32::from_le_bytes(t[36..40].try_into().unwrap()), 1);
        assert_eq!((t[48], t[49], t[51]), (0, 16, 0));
        assert_eq!((t[64], t[65], t[67]), (0, 16, 1));
        let m = &t[80..120];
        assert_eq!((m[0], m[1]), (1, 40));
        assert_eq!(u64::from_le_bytes(m[8..16].try_into().unwrap()), 0);
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
