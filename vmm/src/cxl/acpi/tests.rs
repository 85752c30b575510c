use super::*;
use crate::cxl::plan::plan;
use fabric::hmat::{generic_ports, path_performance, Perf};
use fabric::qtg::{qtg_class_of, qtg_classes, qtg_limits, qtg_ns_limit, QtgClass};
use fabric::time::ns_to_ps;

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
