//! The shape of the tables: structure order, handles, and values that read
//! back as the figures they encode.

use super::*;

fn read(entry: u16, unit: u64) -> u64 {
    u64::from(entry) * unit
}

#[test]
fn type3_table_lists_each_partition_in_qemu_order() {
    let share = Perf {
        read_latency_ps: 150_000,
        write_latency_ps: 250_000,
        read_mbps: 16_000,
        write_mbps: 12_000,
    };
    let gib = 1u64 << 30;
    let c = type3_cdat(2 * gib, gib, &share);
    let kinds: Vec<&str> = c
        .structures
        .iter()
        .map(|s| match s {
            Structure::Dsmas(_) => "dsmas",
            Structure::Dslbis(_) => "dslbis",
            Structure::Dsemts(_) => "dsemts",
            Structure::Sslbis(_) => "sslbis",
        })
        .collect();
    let one = ["dsmas", "dslbis", "dslbis", "dslbis", "dslbis", "dsemts"];
    assert_eq!(kinds, [one, one].concat());
    let dsmas: Vec<&Dsmas> = c.dsmas().collect();
    assert_eq!(
        (
            dsmas[0].handle,
            dsmas[0].flags,
            dsmas[0].dpa_base,
            dsmas[0].dpa_length
        ),
        (0, 0, 0, 2 * gib)
    );
    assert_eq!(
        (
            dsmas[1].handle,
            dsmas[1].flags,
            dsmas[1].dpa_base,
            dsmas[1].dpa_length
        ),
        (1, DSMAS_NON_VOLATILE, 2 * gib, gib)
    );
    for h in 0..2u8 {
        let got: Vec<(DataType, u64)> = c
            .dslbis()
            .filter(|d| d.handle == h)
            .map(|d| (d.data_type, read(d.entries[0], d.entry_base_unit)))
            .collect();
        assert_eq!(
            got,
            [
                (DataType::ReadLatency, 150_000),
                (DataType::WriteLatency, 250_000),
                (DataType::ReadBandwidth, 16_000),
                (DataType::WriteBandwidth, 12_000),
            ]
        );
    }
    let types: Vec<(u8, u8, u64)> = c
        .structures
        .iter()
        .filter_map(|s| match s {
            Structure::Dsemts(d) => Some((d.handle, d.memory_type, d.dpa_length)),
            _ => None,
        })
        .collect();
    assert_eq!(
        types,
        [
            (0, DSEMTS_EFI_SPECIFIC_PURPOSE, 2 * gib),
            (1, DSEMTS_EFI_RESERVED, gib)
        ]
    );
}

#[test]
fn type3_table_with_only_persistent_memory_starts_at_dpa_zero() {
    let c = type3_cdat(0, 1 << 28, &Perf::default());
    let dsmas: Vec<&Dsmas> = c.dsmas().collect();
    assert_eq!(dsmas.len(), 1);
    assert_eq!(
        (dsmas[0].handle, dsmas[0].flags, dsmas[0].dpa_base),
        (0, DSMAS_NON_VOLATILE, 0)
    );
    assert!(type3_cdat(0, 0, &Perf::default()).structures.is_empty());
}

#[test]
fn switch_tables_cover_every_port_once() {
    let t = crate::Topology::from_toml_str(
        "[[host_bridge]]\nid='h'\n[[switch]]\nid='s'\nport='h.rp0'\ndownstream_ports=32\n",
    )
    .unwrap();
    let c = switch_cdat(&t, 0).unwrap();
    // One logical table per data type; splitting for the guest's DOE buffer
    // is the encoder's job (devices::cxl::component::cdat).
    let types: Vec<DataType> = c.sslbis().map(|s| s.data_type).collect();
    assert_eq!(types, DataType::READ_WRITE);
    for s in c.sslbis() {
        let ports: Vec<(u16, u16)> = s.entries.iter().map(|e| (e.port_x, e.port_y)).collect();
        let expected: Vec<(u16, u16)> = (0..32).map(|p| (SSLBIS_UPSTREAM_PORT, p)).collect();
        assert_eq!(ports, expected);
        assert!(s
            .entries
            .iter()
            .all(|e| e.value != 0 && e.value <= ENTRY_MAX));
    }
}

#[test]
fn switch_entries_share_a_unit_per_data_type() {
    let port = |lat_ns: u64, mbps: u64| SwitchPortPerf {
        latency_ps: lat_ns * 1000,
        bandwidth_mbps: mbps,
    };
    let c = switch_ports_cdat(&[(0, port(20, 32_000)), (3, port(40, 64_000))]);
    /// (data type, base unit, (port, entry) pairs) of one SSLBIS.
    type Table = (DataType, u64, Vec<(u16, u16)>);
    let got: Vec<Table> = c
        .sslbis()
        .map(|s| {
            let e = s.entries.iter().map(|e| (e.port_y, e.value)).collect();
            (s.data_type, s.entry_base_unit, e)
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (DataType::ReadLatency, 1, vec![(0, 20_000), (3, 40_000)]),
            (DataType::WriteLatency, 1, vec![(0, 20_000), (3, 40_000)]),
            (DataType::ReadBandwidth, 1, vec![(0, 32_000), (3, 64_000)]),
            (DataType::WriteBandwidth, 1, vec![(0, 32_000), (3, 64_000)]),
        ]
    );
    assert!(switch_ports_cdat(&[]).structures.is_empty());
}
