//! CDAT tests: byte layouts computed by hand, and an independent parser
//! that the DOE tests reuse.

use super::*;
use fabric::hmat::{Perf, SwitchPortPerf};
use fabric::perf_entry::DataType;

/// A type-3 device's table as the VMM builds it: the model's data, encoded.
pub(crate) fn type3(volatile: u64, persistent: u64, share: Perf) -> Cdat {
    Cdat::from(&fabric::cdat::type3_cdat(volatile, persistent, &share))
}

/// A switch upstream port's table as the VMM builds it.
pub(crate) fn switch(ports: &[(u16, SwitchPortPerf)]) -> Cdat {
    Cdat::from(&fabric::cdat::switch_ports_cdat(ports))
}

/// A parsed structure, decoded from bytes independently of `to_bytes`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Parsed {
    Dsmas(u8, u8, u64, u64),
    Dslbis(u8, u8, u8, u64, [u16; 3]),
    Sslbis(u8, u64, Vec<(u16, u16, u16)>),
    Dsemts(u8, u8, u64, u64),
}

fn u16_at(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([b[o], b[o + 1]])
}
fn u64_at(b: &[u8], o: usize) -> u64 {
    u64::from_le_bytes(b[o..o + 8].try_into().unwrap())
}

/// Parses a whole table the way Linux does: check length and checksum,
/// then walk structures by their length fields.
pub(crate) fn parse_table(t: &[u8]) -> (u32, Vec<Parsed>) {
    let len = u32::from_le_bytes(t[0..4].try_into().unwrap()) as usize;
    assert_eq!(len, t.len(), "header length");
    assert_eq!(t[4], 1, "revision");
    assert_eq!(t.iter().fold(0u8, |a, b| a.wrapping_add(*b)), 0, "checksum");
    let seq = u32::from_le_bytes(t[12..16].try_into().unwrap());
    let mut out = Vec::new();
    let mut o = 16;
    while o < len {
        out.push(parse_structure(&t[o..]));
        o += usize::from(u16_at(t, o + 2));
    }
    assert_eq!(o, len, "structures end exactly at the table end");
    (seq, out)
}

pub(crate) fn parse_structure(s: &[u8]) -> Parsed {
    let len = usize::from(u16_at(s, 2));
    assert_eq!(s[1], 0, "reserved");
    assert_eq!(len % 4, 0, "whole dwords");
    match s[0] {
        0 => {
            assert_eq!(len, 24);
            Parsed::Dsmas(s[4], s[5], u64_at(s, 8), u64_at(s, 16))
        }
        1 => {
            assert_eq!(len, 24);
            let e = [u16_at(s, 16), u16_at(s, 18), u16_at(s, 20)];
            Parsed::Dslbis(s[4], s[5], s[6], u64_at(s, 8), e)
        }
        4 => {
            assert_eq!(len, 24);
            Parsed::Dsemts(s[4], s[5], u64_at(s, 8), u64_at(s, 16))
        }
        5 => {
            assert!(len > 16 && (len - 16) % 8 == 0, "SSLBIS length {len}");
            let entries = (16..len)
                .step_by(8)
                .map(|o| (u16_at(s, o), u16_at(s, o + 2), u16_at(s, o + 4)))
                .collect();
            Parsed::Sslbis(s[4], u64_at(s, 8), entries)
        }
        t => panic!("unexpected type {t}"),
    }
}

#[test]
fn dsmas_bytes() {
    let e = CdatEntry::Dsmas {
        handle: 3,
        flags: fabric::cdat::DSMAS_NON_VOLATILE,
        dpa_base: 0x1122_3344_5566_7788,
        dpa_len: 0x4000_0000,
    };
    let expected: Vec<u8> = vec![
        0, 0, 24, 0, // type 0, reserved, length 24
        3, 0x04, 0, 0, // handle, flags NV, reserved
        0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11, // base
        0, 0, 0, 0x40, 0, 0, 0, 0, // length 1 GiB
    ];
    assert_eq!(e.to_bytes(), expected);
}

#[test]
fn dslbis_bytes() {
    let e = CdatEntry::Dslbis {
        handle: 1,
        flags: 0,
        data_type: DataType::WriteBandwidth as u8,
        entry_base_unit: 1000,
        entries: [16, 0x0102, 0xA0B0],
    };
    let expected: Vec<u8> = vec![
        1, 0, 24, 0, // type 1, length 24
        1, 0, 5, 0, // handle, flags, data type, reserved
        0xE8, 0x03, 0, 0, 0, 0, 0, 0, // base 1000
        16, 0, 0x02, 0x01, 0xB0, 0xA0, // entries
        0, 0, // reserved
    ];
    assert_eq!(e.to_bytes(), expected);
}

#[test]
fn sslbis_bytes() {
    let e = CdatEntry::Sslbis {
        data_type: DataType::ReadLatency as u8,
        entry_base_unit: 10,
        entries: vec![(0x100, 2, 150), (0x100, 7, 0xFFFE)],
    };
    let expected: Vec<u8> = vec![
        5, 0, 32, 0, // type 5, length 16 + 2 * 8
        1, 0, 0, 0, // data type, reserved
        10, 0, 0, 0, 0, 0, 0, 0, // base
        0x00, 0x01, 2, 0, 150, 0, 0, 0, // USP -> port 2
        0x00, 0x01, 7, 0, 0xFE, 0xFF, 0, 0, // USP -> port 7
    ];
    assert_eq!(e.to_bytes(), expected);
}

#[test]
fn dsemts_bytes() {
    let e = CdatEntry::Dsemts {
        handle: 0,
        memory_type: fabric::cdat::DSEMTS_EFI_SPECIFIC_PURPOSE,
        dpa_offset: 0x10,
        dpa_len: 0x2_0000_0000,
    };
    let expected: Vec<u8> = vec![
        4, 0, 24, 0, // type 4, length 24
        0, 1, 0, 0, // handle, EFI type, reserved
        0x10, 0, 0, 0, 0, 0, 0, 0, // offset
        0, 0, 0, 0, 2, 0, 0, 0, // length 8 GiB
    ];
    assert_eq!(e.to_bytes(), expected);
}

#[test]
fn header_has_length_revision_checksum_and_sequence() {
    let mut cdat = Cdat::new(vec![CdatEntry::Dsmas {
        handle: 0,
        flags: 0,
        dpa_base: 0,
        dpa_len: 0x1000_0000,
    }]);
    cdat.sequence = 0x0A0B_0C0D;
    let t = cdat.to_bytes();
    assert_eq!(t.len(), 16 + 24);
    assert_eq!(&t[0..4], &[40, 0, 0, 0]);
    assert_eq!(t[4], 1);
    assert_eq!(&t[6..12], &[0; 6]);
    assert_eq!(&t[12..16], &[0x0D, 0x0C, 0x0B, 0x0A]);
    // Checksum: 0 minus the sum of every other byte.
    let others: u32 = t
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 5)
        .map(|(_, b)| u32::from(*b))
        .sum();
    assert_eq!(u32::from(t[5]), (256 - others % 256) % 256);
    assert_eq!(t.iter().fold(0u8, |a, b| a.wrapping_add(*b)), 0);
}

#[test]
fn empty_table_is_just_a_valid_header() {
    let t = Cdat::default().to_bytes();
    assert_eq!(t.len(), 16);
    assert_eq!(parse_table(&t), (0, vec![]));
}

#[test]
fn type3_table_describes_both_partitions() {
    let perf = Perf {
        read_latency_ps: 150_000,
        write_latency_ps: 250_000,
        read_mbps: 16_000,
        write_mbps: 12_000,
    };
    let gib = 1u64 << 30;
    let cdat = type3(2 * gib, gib, perf);
    let (seq, s) = parse_table(&cdat.to_bytes());
    assert_eq!(seq, 0);
    let dslbis = |h: u8| {
        vec![
            Parsed::Dslbis(h, 0, 1, 10, [15_000, 0, 0]),
            Parsed::Dslbis(h, 0, 2, 10, [25_000, 0, 0]),
            Parsed::Dslbis(h, 0, 4, 1, [16_000, 0, 0]),
            Parsed::Dslbis(h, 0, 5, 1, [12_000, 0, 0]),
        ]
    };
    let mut expected = vec![Parsed::Dsmas(0, 0, 0, 2 * gib)];
    expected.extend(dslbis(0));
    expected.push(Parsed::Dsemts(0, 1, 0, 2 * gib));
    expected.push(Parsed::Dsmas(1, 0x04, 2 * gib, gib));
    expected.extend(dslbis(1));
    expected.push(Parsed::Dsemts(1, 2, 0, gib));
    assert_eq!(s, expected);
}

#[test]
fn type3_table_with_only_persistent_memory_starts_at_dpa_zero() {
    let cdat = type3(0, 1 << 28, Perf::default());
    let (_, s) = parse_table(&cdat.to_bytes());
    assert_eq!(s.len(), 6);
    assert_eq!(s[0], Parsed::Dsmas(0, 0x04, 0, 1 << 28));
    assert_eq!(s[5], Parsed::Dsemts(0, 2, 0, 1 << 28));
    assert!(type3(0, 0, Perf::default()).entries.is_empty());
}

#[test]
fn switch_table_has_one_sslbis_per_data_type() {
    let port = |lat_ns: u64, mbps: u64| SwitchPortPerf {
        latency_ps: lat_ns * 1000,
        bandwidth_mbps: mbps,
    };
    let ports = [(0, port(20, 32_000)), (3, port(40, 64_000))];
    let (_, s) = parse_table(&switch(&ports).to_bytes());
    let lat = vec![(0x100, 0, 20_000), (0x100, 3, 40_000)];
    let bw = vec![(0x100, 0, 32_000), (0x100, 3, 64_000)];
    assert_eq!(
        s,
        vec![
            Parsed::Sslbis(1, 1, lat.clone()),
            Parsed::Sslbis(2, 1, lat),
            Parsed::Sslbis(4, 1, bw.clone()),
            Parsed::Sslbis(5, 1, bw),
        ]
    );
}

#[test]
fn switch_table_splits_many_ports_into_small_structures() {
    let ports: Vec<(u16, SwitchPortPerf)> = (0..30)
        .map(|port| {
            let perf = SwitchPortPerf {
                latency_ps: 10_000,
                bandwidth_mbps: 1000,
            };
            (port, perf)
        })
        .collect();
    let cdat = switch(&ports);
    // 30 ports -> 13 + 13 + 4 entries, for each of 4 data types.
    assert_eq!(cdat.entries.len(), 12);
    for s in cdat.structures() {
        assert!(s.len() <= 31 * 4, "structure of {} bytes", s.len());
    }
    let (_, parsed) = parse_table(&cdat.to_bytes());
    let ports_seen: Vec<u16> = parsed[..3]
        .iter()
        .flat_map(|p| match p {
            Parsed::Sslbis(1, _, e) => e.iter().map(|t| t.1).collect::<Vec<_>>(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(ports_seen, (0..30).collect::<Vec<u16>>());
}

#[test]
fn oversized_sslbis_is_truncated_not_corrupted() {
    let e = CdatEntry::Sslbis {
        data_type: 0,
        entry_base_unit: 1,
        entries: vec![(1, 2, 3); 10_000],
    };
    let b = e.to_bytes();
    assert_eq!(usize::from(u16::from_le_bytes([b[2], b[3]])), b.len());
    assert!(b.len() <= usize::from(u16::MAX));
}

#[test]
fn fabric_model_tables_convert() {
    use fabric::cdat as model;
    let m = model::Cdat {
        structures: vec![
            model::Structure::Dsmas(model::Dsmas {
                handle: 0,
                flags: 1 << 2,
                dpa_base: 0x1000_0000,
                dpa_length: 0x2000_0000,
            }),
            model::Structure::Dslbis(model::Dslbis {
                handle: 0,
                data_type: DataType::ReadLatency,
                entry_base_unit: 10,
                entries: [0xFFFF, 0, 0],
            }),
            model::Structure::Dsemts(model::Dsemts {
                handle: 0,
                memory_type: 2,
                dpa_offset: 0,
                dpa_length: 0x2000_0000,
            }),
            model::Structure::Sslbis(model::Sslbis {
                data_type: DataType::AccessBandwidth,
                entry_base_unit: 1,
                entries: (0..14)
                    .map(|p| model::Sslbe {
                        port_x: 0x100,
                        port_y: p,
                        value: 100 + p,
                    })
                    .collect(),
            }),
        ],
    };
    let (_, s) = parse_table(&Cdat::from(&m).to_bytes());
    let entries = |r: std::ops::Range<u16>| r.map(|p| (0x100, p, 100 + p)).collect();
    assert_eq!(
        s,
        vec![
            Parsed::Dsmas(0, 4, 0x1000_0000, 0x2000_0000),
            Parsed::Dslbis(0, 0, 1, 10, [0xFFFE, 0, 0]),
            Parsed::Dsemts(0, 2, 0, 0x2000_0000),
            Parsed::Sslbis(3, 1, entries(0..13)),
            Parsed::Sslbis(3, 1, entries(13..14)),
        ]
    );
}
