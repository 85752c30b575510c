//! The tables the guest reads (MADT, SRAT, HMAT, CEDT, the CXL DSDT objects
//! with the QTG _DSM, every device's and switch's CDAT) are byte for byte
//! what the builders they replaced wrote (`legacy_tables`), for every
//! example topology and a few that stress the edges.

use devices::cxl::component::Cdat;
use fabric::topology::Topology;

use crate::cxl::{acpi, plan::plan};
use crate::legacy_tables as legacy;

fn topologies() -> Vec<(String, Topology)> {
    let mut out = vec![("default".to_string(), Topology::default_topology())];
    let dir = format!("{}/../examples", env!("CARGO_MANIFEST_DIR"));
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    names.sort();
    assert!(names.len() >= 3, "examples found: {names:?}");
    for p in names {
        let t = Topology::from_toml_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
        out.push((p.display().to_string(), t));
    }
    let extra = [
        // Two QTG classes: the _DSM compares the read latency.
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
        persistent = "512M"
        media = { read_latency_ns = 400, write_bandwidth_gbps = 3 }
        [[window]]
        id = "near"
        targets = ["hb0"]
        size = "256M"
        qtg = 3
        [[window]]
        id = "far"
        targets = ["hb1"]
        size = "256M"
        restrictions = ["ram", "pmem"]
        qtg = 1
        "#,
        // A 32-port switch (SSLBIS split) with slow and fast links.
        r#"
        [[host_bridge]]
        id = "hb0"
        root_ports = 2
        [[switch]]
        id = "sw0"
        port = "hb0.rp1"
        downstream_ports = 32
        link = { gen = 6, width = 16, flit = "256B" }
        [[type3]]
        id = "m0"
        port = "sw0.dp31"
        persistent = "256M"
        link = { gen = 3, width = 1, retimers = 3 }
        [[type3]]
        id = "m1"
        port = "hb0.rp0"
        volatile = "1G"
        media = { read_latency_ns = 5000, read_bandwidth_gbps = 0.5 }
        [[window]]
        targets = ["hb0"]
        size = "2G"
        restrictions = ["pmem"]
        "#,
    ];
    for (i, text) in extra.iter().enumerate() {
        out.push((format!("extra {i}"), Topology::from_toml_str(text).unwrap()));
    }
    out
}

#[test]
fn acpi_tables_are_byte_identical_to_the_old_builders() {
    for vcpus in [1u8, 2, 4, 255] {
        assert_eq!(
            crate::acpi::madt(vcpus),
            legacy::madt(vcpus),
            "MADT {vcpus}"
        );
    }
    let rams: [&[(u64, u64)]; 2] = [
        &[(0, 0x9fc00), (0x10_0000, 0x3ff0_0000)],
        &[(0, 0x9fc00), (0x10_0000, 0xbff0_0000), (1 << 32, 3 << 30)],
    ];
    for ram in rams {
        assert_eq!(acpi::srat(2, ram, None), legacy::srat(2, ram, None));
    }
    for (name, topo) in topologies() {
        let p = plan(&topo, (0xc100_0000, 0xe000_0000), 1 << 30).unwrap();
        for ram in rams {
            assert_eq!(
                acpi::srat(3, ram, Some(&topo)),
                legacy::srat(3, ram, Some(&topo)),
                "SRAT {name}"
            );
        }
        assert_eq!(acpi::hmat(&topo), legacy::hmat(&topo), "HMAT {name}");
        assert_eq!(
            acpi::cedt(&topo, &p),
            legacy::cedt(&topo, &p),
            "CEDT {name}"
        );
        assert_eq!(
            acpi::dsdt_objects(&topo, &p),
            legacy::dsdt_objects(&topo, &p),
            "DSDT objects {name}"
        );
    }
}

#[test]
fn cdat_is_byte_identical_to_the_old_builders() {
    for (name, topo) in topologies() {
        for d in 0..topo.type3.len() {
            let new = Cdat::from(&fabric::cdat::device_cdat(&topo, d).unwrap());
            assert_eq!(
                new.to_bytes(),
                legacy::type3_cdat(&topo, d).to_bytes(),
                "{name} type3[{d}]"
            );
        }
        for s in 0..topo.switches.len() {
            let new = Cdat::from(&fabric::cdat::switch_cdat(&topo, s).unwrap());
            assert_eq!(
                new.to_bytes(),
                legacy::switch_cdat(&topo, s).to_bytes(),
                "{name} switch[{s}]"
            );
        }
    }
}
