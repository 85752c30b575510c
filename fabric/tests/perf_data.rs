//! CDAT / HMAT values agree with what the engine charges.

use fabric::cdat::{device_cdat, switch_cdat, ENTRY_MAX, SSLBIS_UPSTREAM_PORT};
use fabric::hmat::{generic_ports, hmat_localities, hmat_targets, path_performance, HmatTarget};
use fabric::perf_entry::DataType;
use fabric::Topology;

fn example(name: &str) -> Topology {
    let path = format!("{}/../examples/{name}", env!("CARGO_MANIFEST_DIR"));
    Topology::from_toml_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn components_sum_to_engine_idle_latency() {
    let mut topos = vec![Topology::default_topology()];
    for name in ["direct.toml", "two-host-bridges.toml", "switch-4.toml"] {
        topos.push(example(name));
    }
    topos.push(
        Topology::from_toml_str(
            "[[host_bridge]]\nid='h'\n[[switch]]\nid='s'\nport='h.rp0'\nlink={gen=6,width=16,flit='256B-lopt'}\n[[type3]]\nid='m'\nport='s.dp0'\nvolatile='256M'\nlink={gen=6,width=16,flit='256B',retimers=2}\n",
        )
        .unwrap(),
    );
    for t in &topos {
        for d in 0..t.type3.len() {
            let p = path_performance(t, d).unwrap();
            let rd: u64 = p.components.iter().map(|c| c.1.read_latency_ps).sum();
            let wr: u64 = p.components.iter().map(|c| c.1.write_latency_ps).sum();
            assert_eq!(
                rd, p.total.read_latency_ps,
                "read, device {d}: {:?}",
                p.components
            );
            assert_eq!(wr, p.total.write_latency_ps, "write, device {d}");
        }
    }
}

#[test]
fn device_cdat_describes_partitions() {
    let t = example("direct.toml");
    let c = device_cdat(&t, 0).unwrap();
    let dsmas: Vec<_> = c.dsmas().collect();
    assert_eq!(dsmas.len(), 2);
    assert_eq!(
        (dsmas[0].dpa_base, dsmas[0].dpa_length, dsmas[0].flags),
        (0, 256 << 20, 0)
    );
    assert_eq!((dsmas[1].dpa_base, dsmas[1].flags), (256 << 20, 4));
    // Default media: 70 ns + 64 B at 64 GB/s (1 ns) + endpoint port share
    // (half of the 25 ns pair figure: 6.25 ns each way) = 83.5 ns.
    let rl = c
        .dslbis()
        .find(|s| s.handle == 0 && s.data_type == DataType::ReadLatency)
        .unwrap();
    assert_eq!(rl.entries[0] as u64 * rl.entry_base_unit, 83_500);
    // Bandwidth: media 64 GB/s is above the x8 Gen5 read peak (27.37 GB/s).
    let rb = c
        .dslbis()
        .find(|s| s.handle == 0 && s.data_type == DataType::ReadBandwidth)
        .unwrap();
    let mbps = rb.entries[0] as u64 * rb.entry_base_unit;
    assert!((27_300..=27_400).contains(&mbps), "{mbps}");
    // Each partition has exactly one DSLBIS per data type, every entry a
    // value Linux accepts (not 0, not 0xFFFF "no data").
    for h in 0..2u8 {
        let mut types: Vec<DataType> = c
            .dslbis()
            .filter(|s| s.handle == h)
            .map(|s| s.data_type)
            .collect();
        types.sort_by_key(|t| *t as u8);
        assert_eq!(
            types,
            [
                DataType::ReadLatency,
                DataType::WriteLatency,
                DataType::ReadBandwidth,
                DataType::WriteBandwidth
            ]
        );
    }
    assert!(c
        .dslbis()
        .all(|s| s.entries[0] != 0 && s.entries[0] <= ENTRY_MAX && s.entries[1..] == [0, 0]));
}

#[test]
fn switch_cdat_has_every_downstream_port() {
    let t = example("switch-4.toml");
    let c = switch_cdat(&t, 0).unwrap();
    let tables: Vec<_> = c.sslbis().collect();
    let types: Vec<DataType> = tables.iter().map(|s| s.data_type).collect();
    assert_eq!(types, DataType::READ_WRITE);
    for s in &tables {
        assert_eq!(s.entries.len(), 4);
        for (i, e) in s.entries.iter().enumerate() {
            assert_eq!((e.port_x, e.port_y), (SSLBIS_UPSTREAM_PORT, i as u16));
            if s.data_type.is_latency() {
                assert_eq!(e.value as u64 * s.entry_base_unit, 90_000);
            }
        }
    }
}

#[test]
fn generic_port_per_host_bridge() {
    let t = example("two-host-bridges.toml");
    let g = generic_ports(&t);
    assert_eq!(g.len(), 2);
    assert_eq!(g[1].uid, 2);
    assert_eq!(g[0].perf.read_latency_ps, 60_000);
}

#[test]
fn hmat_has_dram_then_every_generic_port_with_one_unit_per_data_type() {
    let t = example("two-host-bridges.toml");
    let targets = hmat_targets(&t);
    let kinds: Vec<HmatTarget> = targets.iter().map(|x| x.0).collect();
    assert_eq!(
        kinds,
        [
            HmatTarget::HostMemory,
            HmatTarget::GenericPort { host_bridge: 0 },
            HmatTarget::GenericPort { host_bridge: 1 }
        ]
    );
    assert_eq!(targets[0].1.read_latency_ps, 90_000);
    assert_eq!(targets[0].1.read_mbps, 100_000);
    let loc = hmat_localities(&t);
    let types: Vec<DataType> = loc.iter().map(|l| l.data_type).collect();
    assert_eq!(types, DataType::READ_WRITE);
    for l in &loc {
        assert_eq!(l.entries.len(), targets.len());
        for (e, (_, p)) in l.entries.iter().zip(&targets) {
            let want = fabric::cdat::perf_value(p, l.data_type);
            let got = u64::from(*e) * l.entry_base_unit;
            assert!(
                got.abs_diff(want) * 2 <= l.entry_base_unit,
                "{got} vs {want}"
            );
            assert!(*e != 0 && *e <= ENTRY_MAX);
        }
    }
}
