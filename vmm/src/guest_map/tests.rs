//! Every `--memory` size users pick against every example topology (and a
//! few shapes the examples lack): the map is disjoint, and e820, SRAT and
//! CEDT describe exactly what was placed.

use fabric::topology::Topology;

use super::*;
use crate::cxl::acpi::{cedt, srat};
use crate::cxl::plan::{plan, FunctionKind, BAR_SLOT, CHBCR_SIZE};
use crate::memory::{e820_map, ram_end, E820Entry, E820_RAM, E820_RESERVED};

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;
const SIZES: [u64; 10] = [
    256 * MIB,
    512 * MIB,
    GIB,
    1536 * MIB,
    2 * GIB,
    3 * GIB,
    3584 * MIB,
    4 * GIB,
    6 * GIB,
    16 * GIB,
];

/// Three host bridges, one 3-way window (768 MiB alignment) and one 1-way
/// window per bridge: more CHBCRs and bigger windows than the examples.
const THREE_HOST_BRIDGES: &str = r#"
[[host_bridge]]
id = "hb0"
[[host_bridge]]
id = "hb1"
[[host_bridge]]
id = "hb2"
[[type3]]
id = "m0"
port = "hb0.rp0"
volatile = "1G"
[[type3]]
id = "m1"
port = "hb1.rp0"
volatile = "1G"
[[type3]]
id = "m2"
port = "hb2.rp0"
volatile = "1G"
[[window]]
id = "small"
targets = ["hb0"]
size = "256M"
[[window]]
id = "x3"
targets = ["hb0", "hb1", "hb2"]
size = "3G"
[[window]]
id = "hb1-only"
targets = ["hb1"]
size = "1G"
"#;

/// A window at a fixed base (above 16 GiB of RAM) between placed ones.
const FIXED_BASE: &str = r#"
[[host_bridge]]
id = "hb0"
[[type3]]
id = "m0"
port = "hb0.rp0"
volatile = "512M"
[[window]]
id = "placed"
targets = ["hb0"]
size = "512M"
[[window]]
id = "fixed"
targets = ["hb0"]
size = "256M"
base = "32G"
[[window]]
id = "after"
targets = ["hb0"]
size = "512M"
"#;

fn topologies() -> Vec<(String, Topology)> {
    let mut out = Vec::new();
    let dir = format!("{}/../examples", env!("CARGO_MANIFEST_DIR"));
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    names.sort();
    for p in names {
        let t = Topology::from_toml_str(&std::fs::read_to_string(&p).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        out.push((p.file_name().unwrap().to_string_lossy().into_owned(), t));
    }
    assert!(out.len() >= 3, "examples found: {out:?}");
    out.push(("default".into(), Topology::default_topology()));
    for (name, text) in [
        ("three-host-bridges", THREE_HOST_BRIDGES),
        ("fixed-base", FIXED_BASE),
    ] {
        out.push((name.into(), Topology::from_toml_str(text).unwrap()));
    }
    out
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

/// (base, length) of each SRAT Memory Affinity structure.
fn srat_memory(t: &[u8]) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let mut off = 48;
    while off < t.len() {
        let len = t[off + 1] as usize;
        if t[off] == 1 {
            out.push((u64_at(t, off + 8), u64_at(t, off + 16)));
        }
        off += len;
    }
    out
}

/// CHBS (uid, base, length) and CFMWS (base, size) of a CEDT.
type Chbs = (u32, u64, u64);
fn cedt_parse(t: &[u8]) -> (Vec<Chbs>, Vec<(u64, u64)>) {
    let (mut chbs, mut cfmws) = (Vec::new(), Vec::new());
    let mut off = 36;
    while off < t.len() {
        let len = u16_at(t, off + 2) as usize;
        let s = &t[off..off + len];
        match s[0] {
            0 => chbs.push((u32_at(s, 4), u64_at(s, 0x10), u64_at(s, 0x18))),
            1 => cfmws.push((u64_at(s, 8), u64_at(s, 0x10))),
            x => panic!("CEDT structure type {x}"),
        }
        off += len;
    }
    (chbs, cfmws)
}

fn overlaps(a: (u64, u64), b: (u64, u64)) -> bool {
    a.0 < b.0 + b.1 && b.0 < a.0 + a.1
}

fn check_one(name: &str, size: u64, topo: &Topology) {
    let what = format!("{name} with --memory {} MiB", size / MIB);
    let p = plan(topo, (CXL_MMIO32_START, CXL_MMIO32_END), ram_end(size))
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    let map = guest_map(size, Some((topo, &p))).unwrap_or_else(|e| panic!("{what}: {e}"));
    let non_ram: Vec<&MapItem> = map.iter().filter(|i| i.name != "RAM").collect();

    // Windows: above 4 GiB and RAM, aligned to 256 MiB x ways (Linux
    // needs 256 MiB), inside the address space, where CEDT says.
    for (w, wp) in topo.windows.iter().zip(&p.windows) {
        assert!(
            wp.base >= HIGH_RAM_START && wp.base >= ram_end(size),
            "{what}: {wp:?}"
        );
        assert_eq!(
            wp.base % ((256 * MIB) * u64::from(w.ways)),
            0,
            "{what}: {}",
            w.id
        );
        assert!(wp.base + wp.size <= topo.limits.address_space_end());
        assert!(p.high_end >= wp.base + wp.size);
    }
    assert!(crate::layout::pci_mmio64_start(p.high_end) >= p.high_end);

    // CHBCRs: one 64 KiB block per host bridge inside the CHBCR area.
    for (i, hb) in p.host_bridges.iter().enumerate() {
        assert!(hb.chbcr >= CHBCR_START && hb.chbcr + CHBCR_SIZE <= CHBCR_START + CHBCR_AREA_SIZE);
        assert_eq!(hb.chbcr % CHBCR_SIZE, 0);
        for other in &p.host_bridges[i + 1..] {
            assert_ne!(hb.chbcr, other.chbcr);
            assert!(
                hb.mmio.1 < other.mmio.0 || other.mmio.1 < hb.mmio.0,
                "{what}"
            );
        }
        // Each host bridge's bus window sits in the CXL share of the hole.
        assert!(
            hb.mmio.0 >= CXL_MMIO32_START && hb.mmio.1 < CXL_MMIO32_END,
            "{what}"
        );
    }
    // BARs: inside the window of the bridge above them (or their host
    // bridge's), bridge windows inside theirs.
    for f in &p.functions {
        let parent = p
            .functions
            .iter()
            .find(|b| b.kind.is_bridge() && b.secondary == f.bus)
            .map(|b| b.window.unwrap())
            .or_else(|| {
                p.host_bridges
                    .iter()
                    .find(|hb| hb.root_bus == f.bus)
                    .map(|hb| hb.mmio)
            })
            .unwrap_or_else(|| panic!("{what}: no parent for {f:?}"));
        for &(_, a) in &f.bars {
            assert!(
                a >= parent.0 && a + BAR_SLOT - 1 <= parent.1,
                "{what}: {f:?}"
            );
        }
        if let (true, Some(w)) = (f.kind.is_bridge(), f.window) {
            assert!(w.0 >= parent.0 && w.1 <= parent.1, "{what}: {f:?}");
        }
        if let FunctionKind::Type3 { .. } = f.kind {
            assert_eq!(f.bars.len(), 3);
        }
    }

    // e820: sorted and disjoint; its RAM lies in RAM slots and meets no
    // device; all RAM is there but the EBDA..1 MiB hole; ECAM reserved.
    let e820 = e820_map(size);
    for pair in e820.windows(2) {
        assert!(
            pair[0].addr + pair[0].size <= pair[1].addr,
            "{what}: {e820:?}"
        );
    }
    let ram: Vec<&E820Entry> = e820.iter().filter(|e| e.kind == E820_RAM).collect();
    for e in &ram {
        assert!(
            map.iter()
                .any(|i| i.name == "RAM" && e.addr >= i.start && e.addr + e.size <= i.end()),
            "{what}: {e:?}"
        );
        for i in &non_ram {
            assert!(
                !overlaps((e.addr, e.size), (i.start, i.size)),
                "{what}: {e:?} vs {i:?}"
            );
        }
    }
    let total: u64 = ram.iter().map(|e| e.size).sum();
    assert_eq!(total, size - (HIMEM_START - EBDA_START), "{what}");
    let reserved: Vec<(u64, u64)> = e820
        .iter()
        .filter(|e| e.kind == E820_RESERVED)
        .map(|e| (e.addr, e.size))
        .collect();
    assert_eq!(reserved, vec![(ECAM_START, ECAM_SIZE)], "{what}");

    // SRAT: the same RAM as e820.
    let ram_pairs: Vec<(u64, u64)> = ram.iter().map(|e| (e.addr, e.size)).collect();
    assert_eq!(
        srat_memory(&srat(2, &ram_pairs, Some(topo))),
        ram_pairs,
        "{what}"
    );

    // CEDT: the CHBCRs and windows as placed.
    let (chbs, cfmws) = cedt_parse(&cedt(topo, &p));
    let want_chbs: Vec<Chbs> = p
        .host_bridges
        .iter()
        .map(|hb| (hb.uid, hb.chbcr, CHBCR_SIZE))
        .collect();
    assert_eq!(chbs, want_chbs, "{what}");
    let want_cfmws = p.window_ranges();
    assert_eq!(cfmws, want_cfmws, "{what}");
}

#[test]
fn every_memory_size_with_every_topology_is_disjoint_and_described() {
    let topos = topologies();
    let mut checked = 0;
    for (name, topo) in &topos {
        for &size in &SIZES {
            check_one(name, size, topo);
            checked += 1;
        }
    }
    assert_eq!(checked, SIZES.len() * topos.len());
}

#[test]
fn windows_sit_right_above_four_gib_or_ram() {
    let t = Topology::from_toml_str(THREE_HOST_BRIDGES).unwrap();
    let p = plan(&t, (CXL_MMIO32_START, CXL_MMIO32_END), ram_end(GIB)).unwrap();
    // 256M at 4G; the 3-way window at the next multiple of 768M (4.5G);
    // the last right after it.
    let bases: Vec<u64> = p.windows.iter().map(|w| w.base).collect();
    assert_eq!(
        bases,
        vec![4 * GIB, 4 * GIB + 512 * MIB, 7 * GIB + 512 * MIB]
    );
    let p = plan(&t, (CXL_MMIO32_START, CXL_MMIO32_END), ram_end(6 * GIB)).unwrap();
    assert_eq!(p.windows[0].base, ram_end(6 * GIB));
    assert_eq!(p.windows[0].base, 7 * GIB);
}

#[test]
fn a_fixed_base_below_ram_is_refused_with_its_window() {
    let t = Topology::from_toml_str(FIXED_BASE).unwrap();
    // 40 GiB of RAM ends at 41 GiB, above the window fixed at 32 GiB.
    let e = plan(&t, (CXL_MMIO32_START, CXL_MMIO32_END), ram_end(40 * GIB)).unwrap_err();
    assert!(e.to_string().contains("window 'fixed'"), "{e}");
    assert!(e.to_string().contains("above 4 GiB"), "{e}");
}

#[test]
fn windows_past_the_address_space_are_refused() {
    let text =
        "[[host_bridge]]\nid = 'hb0'\n[[window]]\nid = 'big'\ntargets = ['hb0']\nsize = '32G'\n";
    // 36 bits: 64 GiB. The window fits above 4 GiB, but not above 40 GiB
    // of RAM (which ends at 41 GiB).
    let limits = fabric::topology::AddressLimits { phys_addr_bits: 36 };
    let t = Topology::from_toml_str_for(text, limits).unwrap();
    plan(&t, (CXL_MMIO32_START, CXL_MMIO32_END), ram_end(GIB)).unwrap();
    let e = plan(&t, (CXL_MMIO32_START, CXL_MMIO32_END), ram_end(40 * GIB)).unwrap_err();
    assert!(
        e.to_string().contains("window 'big'") && e.to_string().contains("36-bit"),
        "{e}"
    );
}

#[test]
fn an_overlap_names_both_items() {
    let items = guest_map(GIB, None).unwrap();
    assert!(items.iter().any(|i| i.name == "ECAM"));
    let t = Topology::from_toml_str(FIXED_BASE).unwrap();
    let mut p = plan(&t, (CXL_MMIO32_START, CXL_MMIO32_END), ram_end(GIB)).unwrap();
    p.windows[0].base = ECAM_START;
    let e = guest_map(GIB, Some((&t, &p))).unwrap_err();
    assert_eq!(e.a.name, "ECAM");
    assert_eq!(e.b.name, "CXL window 'placed'");
    assert!(e
        .to_string()
        .starts_with("guest memory map: ECAM [0xe0000000, 0xf0000000) overlaps"));
}
