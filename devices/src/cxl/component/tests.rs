//! Tests of the whole block through the bus interface, as the guest sees it.

use super::*;

const GIB: u64 = 1 << 30;
/// HDM capability base within the block: 0x1000 + 0x128.
const HDM: u64 = 0x1128;
const RAS: u64 = 0x1080;

fn rd32(c: &mut ComponentRegisters, off: u64) -> u32 {
    let mut b = [0xAAu8; 4];
    c.read(off, &mut b);
    u32::from_le_bytes(b)
}

fn wr32(c: &mut ComponentRegisters, off: u64, v: u32) -> HdmEvents {
    c.write(off, &v.to_le_bytes())
}

fn rd64(c: &mut ComponentRegisters, off: u64) -> u64 {
    let mut b = [0xAAu8; 8];
    c.read(off, &mut b);
    u64::from_le_bytes(b)
}

/// Decoder `n` register at `reg` (0x00 base lo ... 0x18 target hi).
fn dec(n: u64, reg: u64) -> u64 {
    HDM + 0x10 + 0x20 * n + reg
}

/// Array header: ID 1, version 1, cache/mem version 1, `n` entries.
fn array_header(n: u32) -> u32 {
    1 | (1 << 16) | (1 << 20) | (n << 24)
}

fn ras_header() -> u32 {
    2 | (2 << 16) | (0x80 << 20)
}
fn link_header() -> u32 {
    4 | (2 << 16) | (0xD8 << 20)
}
fn hdm_header() -> u32 {
    5 | (1 << 16) | (0x128 << 20)
}

fn endpoint(capacity: u64) -> ComponentRegisters {
    ComponentRegisters::new(
        ComponentKind::Endpoint,
        Some(HdmConfig {
            decoders: 2,
            target_count: 0,
            dpa_capacity: capacity,
            ..HdmConfig::default()
        }),
    )
}

#[test]
fn capability_array_per_kind() {
    let cases = [
        (
            ComponentKind::HostBridge,
            vec![array_header(2), link_header(), hdm_header()],
        ),
        (
            ComponentKind::RootPort,
            vec![array_header(2), ras_header(), link_header()],
        ),
        (
            ComponentKind::SwitchUpstream,
            vec![array_header(3), ras_header(), link_header(), hdm_header()],
        ),
        (
            ComponentKind::SwitchDownstream,
            vec![array_header(2), ras_header(), link_header()],
        ),
        (
            ComponentKind::Endpoint,
            vec![array_header(3), ras_header(), link_header(), hdm_header()],
        ),
    ];
    for (kind, expected) in cases {
        let mut c = ComponentRegisters::new(kind, None);
        assert_eq!(c.kind(), kind);
        let got: Vec<u32> = (0..expected.len() as u64)
            .map(|i| rd32(&mut c, 0x1000 + 4 * i))
            .collect();
        assert_eq!(got, expected, "{kind:?}");
        // The dword after the array is not a header.
        assert_eq!(rd32(&mut c, 0x1000 + 4 * expected.len() as u64), 0);
    }
}

/// Walks the array as Linux's cxl_probe_component_regs() and returns the
/// block offset of each capability ID it finds.
fn probe(c: &mut ComponentRegisters) -> Vec<(u16, u64)> {
    let hdr = rd32(c, 0x1000);
    assert_eq!(hdr & 0xFFFF, 1);
    (1..=u64::from(hdr >> 24))
        .map(|i| {
            let h = rd32(c, 0x1000 + 4 * i);
            ((h & 0xFFFF) as u16, 0x1000 + u64::from(h >> 20))
        })
        .collect()
}

#[test]
fn linux_probe_finds_ras_and_hdm_where_they_answer() {
    let mut c = ComponentRegisters::new(ComponentKind::SwitchUpstream, None);
    let found = probe(&mut c);
    assert_eq!(found, vec![(2, RAS), (4, 0x10D8), (5, HDM)]);
    // RAS answers with its reset mask; HDM with its capability: 4 decoders
    // (encoding 2), 8 targets, both granularity ranges.
    assert_eq!(rd32(&mut c, RAS + 4), 0x0001_CFFF);
    assert_eq!(rd32(&mut c, HDM), 2 | (8 << 4) | (1 << 8) | (1 << 9));

    let mut ep = ComponentRegisters::new(ComponentKind::Endpoint, None);
    // Endpoints advertise 3/6/12 and 16-way like QEMU's type 3.
    assert_eq!(
        rd32(&mut ep, HDM),
        2 | (1 << 8) | (1 << 9) | (1 << 11) | (1 << 12)
    );

    let mut hb = ComponentRegisters::new(ComponentKind::HostBridge, None);
    assert_eq!(probe(&mut hb), vec![(4, 0x10D8), (5, HDM)]);
    assert_eq!(rd32(&mut hb, RAS + 4), 0, "no RAS on a host bridge");
    assert!(hb.ras_mut().is_none());

    let mut rp = ComponentRegisters::new(
        ComponentKind::RootPort,
        Some(HdmConfig::default()), // ignored: ports route by bus number
    );
    assert_eq!(rd32(&mut rp, HDM), 0);
    assert!(rp.committed_decoders().is_empty());
    assert!(!rp.hdm_enabled());
}

#[test]
fn link_capability_reads_zero_and_ignores_writes() {
    let mut c = ComponentRegisters::new(ComponentKind::Endpoint, None);
    for off in LINK_RANGE.step_by(4) {
        wr32(&mut c, 0x1000 + off, 0xFFFF_FFFF);
        assert_eq!(rd32(&mut c, 0x1000 + off), 0);
    }
    // Writes to the header array are ignored too.
    wr32(&mut c, 0x1000, 0);
    assert_eq!(rd32(&mut c, 0x1000), array_header(3));
}

#[test]
fn ras_through_the_bus() {
    let mut c = ComponentRegisters::new(ComponentKind::Endpoint, None);
    c.ras_mut().unwrap().inject_uncorrectable(1 << 4);
    assert_eq!(rd32(&mut c, RAS), 1 << 4);
    assert_eq!(rd32(&mut c, RAS + 0x14), 0x200 | 4);
    wr32(&mut c, RAS, 1 << 4);
    assert_eq!(rd32(&mut c, RAS), 0);
    wr32(&mut c, RAS + 0x10, 0);
    assert_eq!(rd32(&mut c, RAS + 0x10), 0);
}

#[test]
fn other_areas_and_widths_read_zero() {
    let mut c = ComponentRegisters::new(ComponentKind::Endpoint, None);
    for off in [0, 0x0FFC, 0x2000, 0xE000, 0xFFFC, 0x10000, u64::MAX - 3] {
        assert_eq!(rd32(&mut c, off), 0, "offset {off:#x}");
    }
    // Only whole, aligned dwords and qwords reach registers.
    for width in [1usize, 2, 3, 5, 6, 7, 16] {
        let mut b = vec![0xAAu8; width];
        c.read(0x1000, &mut b);
        assert!(b.iter().all(|x| *x == 0), "width {width}");
    }
    assert_eq!(rd32(&mut c, 0x1002), 0, "misaligned dword");
    assert_eq!(rd64(&mut c, 0x1004), 0, "misaligned qword");
    // An aligned qword reads two dwords, low first.
    let expected = u64::from(array_header(3)) | (u64::from(ras_header()) << 32);
    assert_eq!(rd64(&mut c, 0x1000), expected);
    // Odd-width writes are ignored.
    c.write(dec(0, 0x08), &[0xFF]);
    c.write(dec(0, 0x08), &[0xFF, 0xFF]);
    c.write(dec(0, 0x0A), &[0xFF, 0xFF]);
    assert_eq!(rd32(&mut c, dec(0, 0x08)), 0);
}

#[test]
fn qword_writes_program_base_and_size() {
    let mut c = endpoint(4 * GIB);
    let base: u64 = 0x0000_0012_3000_0000;
    c.write(dec(0, 0x00), &base.to_le_bytes());
    c.write(dec(0, 0x08), &(2 * GIB).to_le_bytes());
    assert_eq!(rd64(&mut c, dec(0, 0x00)), base);
    assert_eq!(rd32(&mut c, dec(0, 0x04)), 0x12);
    assert_eq!(rd64(&mut c, dec(0, 0x08)), 2 * GIB);
    wr32(&mut c, dec(0, 0x10), (1 << 9) | (1 << 12));
    let d = c.committed_decoders();
    assert_eq!(d.len(), 1);
    assert_eq!(
        (d[0].base, d[0].size, d[0].ways, d[0].granularity),
        (base, 2 * GIB, 1, 256)
    );
}

#[test]
fn linux_enumeration_then_commit_and_reset_report_events() {
    let mut c = ComponentRegisters::new(
        ComponentKind::SwitchUpstream,
        Some(HdmConfig {
            decoders: 2,
            target_count: 4,
            granularity_mask: GranularityCaps::PAGE_ONLY,
            ..HdmConfig::default()
        }),
    );
    let mut events = Vec::new();
    let mut wr = |c: &mut ComponentRegisters, off, v| events.extend(wr32(c, off, v).iter());

    // init_hdm_decoder(): read everything, then set b12 on uncommitted ones.
    for n in 0..2 {
        let ctrl = rd32(&mut c, dec(n, 0x10));
        assert_eq!(ctrl & (1 << 10), 0);
        wr(&mut c, dec(n, 0x10), ctrl | (1 << 12));
        assert_eq!(rd32(&mut c, dec(n, 0x10)), 1 << 12);
    }
    // Global enable as cxl_hdm_decode_init() sets it.
    wr(&mut c, HDM + 4, 2);
    assert!(c.hdm_enabled());

    // setup_hw_decoder() for a 2-way 4 KiB region on ports 5 and 9.
    let base = 0x10_0000_0000u64;
    wr(&mut c, dec(0, 0x04), (base >> 32) as u32);
    wr(&mut c, dec(0, 0x00), base as u32);
    wr(&mut c, dec(0, 0x0C), 0);
    wr(&mut c, dec(0, 0x08), (2 * GIB) as u32);
    wr(&mut c, dec(0, 0x18), 0);
    wr(&mut c, dec(0, 0x14), 0x0905);
    let ctrl = rd32(&mut c, dec(0, 0x10));
    wr(&mut c, dec(0, 0x10), ctrl | 4 | (1 << 4) | (1 << 9));
    // cxld_await_commit() sees Committed on its first read.
    let ctrl = rd32(&mut c, dec(0, 0x10));
    assert_eq!(ctrl & (3 << 10), 1 << 10);
    assert_eq!(
        c.committed_decoders(),
        vec![DecoderState {
            index: 0,
            base,
            size: 2 * GIB,
            ways: 2,
            granularity: 4096,
            targets: vec![5, 9],
            dpa_skip: 0,
            dpa_base: 0,
            locked: false,
        }]
    );

    // A failed commit (256 B granularity is not advertised) is no event.
    wr(&mut c, dec(1, 0x00), 0);
    wr(&mut c, dec(1, 0x08), GIB as u32);
    wr(&mut c, dec(1, 0x14), 0x0905);
    wr(&mut c, dec(1, 0x10), (1 << 4) | (1 << 9) | (1 << 12));
    assert_eq!(rd32(&mut c, dec(1, 0x10)) & (3 << 10), 1 << 11);
    assert!(matches!(
        c.commit_error(1),
        Some(CommitError::GranularityNotSupported { .. })
    ));
    // cxld_await_commit() clears Commit on error.
    let ctrl = rd32(&mut c, dec(1, 0x10));
    wr(&mut c, dec(1, 0x10), ctrl & !(1 << 9));
    assert_eq!(rd32(&mut c, dec(1, 0x10)) & (3 << 10), 0);
    assert_eq!(c.commit_error(1), None);

    // cxl_decoder_reset() on decoder 0.
    let ctrl = rd32(&mut c, dec(0, 0x10));
    wr(&mut c, dec(0, 0x10), ctrl & !(1 << 9));
    for reg in [0x0C, 0x08, 0x04, 0x00] {
        wr(&mut c, dec(0, reg), 0);
    }
    assert!(c.committed_decoders().is_empty());
    assert_eq!(
        events,
        vec![
            HdmEvent::Committed { decoder: 0 },
            HdmEvent::Reset { decoder: 0 }
        ]
    );
    assert_eq!(rd64(&mut c, dec(0, 0x00)), 0);
}

#[test]
fn one_event_per_qword_write_that_commits() {
    let mut c = endpoint(4 * GIB);
    wr32(&mut c, dec(0, 0x08), GIB as u32);
    // Control (low dword) and DPA skip (high dword... of the qword at +0x10
    // that spans control and skip low): commit happens, skip write is then
    // ignored because the decoder is read-only.
    let qword = u64::from((1u32 << 9) | (1 << 12)) | (0xF000_0000u64 << 32);
    let events = c.write(dec(0, 0x10), &qword.to_le_bytes());
    assert_eq!(
        events.iter().collect::<Vec<_>>(),
        vec![HdmEvent::Committed { decoder: 0 }]
    );
    assert_eq!(rd32(&mut c, dec(0, 0x14)), 0);
    assert_eq!(c.committed_decoders()[0].dpa_skip, 0);
}

#[test]
fn endpoint_without_capacity_cannot_commit() {
    let mut c = ComponentRegisters::new(ComponentKind::Endpoint, None);
    wr32(&mut c, dec(0, 0x08), 0x1000_0000);
    wr32(&mut c, dec(0, 0x10), 1 << 9);
    assert!(c.committed_decoders().is_empty());
    assert!(matches!(
        c.commit_error(0),
        Some(CommitError::DpaBeyondCapacity { capacity: 0, .. })
    ));
}

/// Tiny deterministic generator (xorshift64*).
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

#[test]
fn fuzzed_accesses_never_panic_and_keep_invariants() {
    let kinds = [
        ComponentKind::HostBridge,
        ComponentKind::RootPort,
        ComponentKind::SwitchUpstream,
        ComponentKind::SwitchDownstream,
        ComponentKind::Endpoint,
    ];
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    for (k, kind) in kinds.iter().enumerate() {
        let config = HdmConfig {
            decoders: 1 + (k as u8 * 3) % 16,
            target_count: 1 + k as u8,
            granularity_mask: GranularityCaps::ALL,
            three_six_twelve: k % 2 == 0,
            sixteen_way: true,
            dpa_capacity: 64 * GIB,
        };
        let mut c = ComponentRegisters::new(*kind, Some(config));
        let mut changes = 0usize;
        let header: Vec<u32> = (0..4).map(|i| rd32(&mut c, 0x1000 + 4 * i)).collect();
        for _ in 0..200_000 {
            let r = rng.next();
            // Mostly aligned HDM registers, sometimes anywhere at all.
            let offset = match r % 8 {
                0 => rng.next(),
                1 => rng.next() % 0x10010,
                2 | 3 => 0x1000 + rng.next() % 0x1000,
                _ => HDM + 4 * (rng.next() % 0x88),
            };
            let width = match rng.next() % 10 {
                0..=4 => 4,
                5 | 6 => 8,
                _ => (rng.next() % 10) as usize,
            };
            // Values biased toward plausible decoder programming: aligned
            // addresses, and controls with defined ways and granularity,
            // Commit set or clear.
            let value = match rng.next() % 5 {
                0 => rng.next(),
                1 => rng.next() & 0xF000_0000,
                2 | 3 => {
                    let eiw = [0, 1, 2, 3, 4, 8, 9, 10][(rng.next() % 8) as usize];
                    (rng.next() % 7) | (eiw << 4) | (rng.next() & 0x1300)
                }
                _ => rng.next() & 0x3,
            };
            if rng.next().is_multiple_of(2) {
                let mut buf = vec![0u8; width];
                c.read(offset, &mut buf);
            } else {
                let bytes = value.to_le_bytes();
                let data: Vec<u8> = bytes.iter().copied().cycle().take(width).collect();
                changes += c.write(offset, &data).iter().count();
            }
        }
        // The fuzz reached the commit logic (and its invariants below mean
        // something) wherever there are decoders.
        let has_hdm = matches!(
            kind,
            ComponentKind::HostBridge | ComponentKind::SwitchUpstream | ComponentKind::Endpoint
        );
        assert_eq!(changes > 0, has_hdm, "{kind:?}");
        // The header array is read-only.
        let after: Vec<u32> = (0..4).map(|i| rd32(&mut c, 0x1000 + 4 * i)).collect();
        assert_eq!(header, after, "{kind:?}");
        // Whatever got committed is consistent.
        let committed = c.committed_decoders();
        for (i, a) in committed.iter().enumerate() {
            assert!(a.size > 0 && a.base % (256 << 20) == 0 && a.size % (256 << 20) == 0);
            assert!(a.base.checked_add(a.size).is_some());
            assert!(committed[..i]
                .iter()
                .all(|b| a.base >= b.base + b.size || b.base >= a.base + a.size));
            if *kind == ComponentKind::Endpoint {
                assert!(a.dpa_base + a.dpa_len() <= 64 * GIB);
                assert!(a.targets.is_empty());
            } else {
                assert_eq!(a.targets.len(), usize::from(a.ways));
            }
        }
        // Reported in index order, each index once.
        assert!(committed.windows(2).all(|w| w[0].index < w[1].index));
    }
}

#[test]
fn fuzzed_doe_never_panics() {
    let cdat = Cdat::from(&fabric::cdat::type3_cdat(
        GIB,
        GIB,
        &fabric::hmat::Perf::default(),
    ));
    let mut doe = Doe::with_cdat(cdat);
    let mut rng = XorShift(12345);
    for _ in 0..200_000 {
        let offset = match rng.next() % 4 {
            0 => rng.next() as u16,
            _ => (rng.next() % 8) as u16 * 4,
        };
        let value = match rng.next() % 5 {
            0 => rng.next() as u32,
            1 => 0x0002_1E98,
            2 => 3,
            3 => 1 << 31,
            _ => ((rng.next() % 16) as u32) << 16,
        };
        if rng.next().is_multiple_of(2) {
            doe.read(offset);
        } else {
            doe.write(offset, value);
        }
    }
}
