//! HDM decoder tests: register masks, every commit rule, lock, reset.

use super::*;
use DecoderReg::*;

/// Offset of decoder `n`'s register `reg` from the capability base.
fn decoder_reg(n: usize, reg: DecoderReg) -> u64 {
    DECODER_BLOCK + DECODER_STRIDE * n as u64 + reg as u64
}

/// Decoder registers by name, for tests that drive the block as Linux does.
#[derive(Clone, Copy, Debug)]
#[repr(u64)]
enum DecoderReg {
    BaseLo = BASE_LO,
    BaseHi = BASE_HI,
    SizeLo = SIZE_LO,
    SizeHi = SIZE_HI,
    Control = CONTROL,
    TargetLo = TARGET_LO,
    TargetHi = TARGET_HI,
}

const GIB: u64 = 1 << 30;
const MIB256: u64 = 256 << 20;

fn switch(decoders: u8, targets: u8) -> HdmDecoders {
    HdmDecoders::new(
        HdmConfig {
            decoders,
            target_count: targets,
            ..HdmConfig::default()
        },
        false,
    )
}

fn endpoint(capacity: u64) -> HdmDecoders {
    HdmDecoders::new(
        HdmConfig {
            decoders: 4,
            target_count: 0,
            three_six_twelve: true,
            sixteen_way: true,
            dpa_capacity: capacity,
            ..HdmConfig::default()
        },
        true,
    )
}

/// Linux's setup_hw_decoder(): base hi/lo, size hi/lo, target list or
/// skip hi/lo, then control with IG/IW/type and Commit.
fn program_ctrl(
    h: &mut HdmDecoders,
    n: usize,
    base: u64,
    size: u64,
    tl_or_skip: u64,
    ctrl: u32,
) -> HdmChange {
    h.write(decoder_reg(n, BaseHi), (base >> 32) as u32);
    h.write(decoder_reg(n, BaseLo), base as u32);
    h.write(decoder_reg(n, SizeHi), (size >> 32) as u32);
    h.write(decoder_reg(n, SizeLo), size as u32);
    h.write(decoder_reg(n, TargetHi), (tl_or_skip >> 32) as u32);
    h.write(decoder_reg(n, TargetLo), tl_or_skip as u32);
    h.write(decoder_reg(n, Control), ctrl)
}

/// Control bits Linux writes for `ways` x `gran` with Commit set.
fn commit_ctrl(ways: u8, gran: u32) -> u32 {
    let eiw = u32::from(eiw_from_ways(ways).unwrap());
    let eig = u32::from(eig_from_granularity(gran).unwrap());
    eig | (eiw << 4) | CTRL_TARGET_TYPE_HOST_ONLY | CTRL_COMMIT
}

fn program(
    h: &mut HdmDecoders,
    n: usize,
    base: u64,
    size: u64,
    ways: u8,
    gran: u32,
    tl_or_skip: u64,
) -> HdmChange {
    program_ctrl(h, n, base, size, tl_or_skip, commit_ctrl(ways, gran))
}

fn ctrl(h: &HdmDecoders, n: usize) -> u32 {
    h.read(decoder_reg(n, Control))
}

fn committed_bit(h: &HdmDecoders, n: usize) -> bool {
    ctrl(h, n) & (1 << 10) != 0
}

fn error_bit(h: &HdmDecoders, n: usize) -> bool {
    ctrl(h, n) & (1 << 11) != 0
}

#[test]
fn capability_register_encodes_config() {
    let h = HdmDecoders::new(
        HdmConfig {
            decoders: 8,
            target_count: 4,
            granularity_mask: GranularityCaps::PAGE_ONLY,
            three_six_twelve: true,
            sixteen_way: false,
            dpa_capacity: 0,
        },
        false,
    );
    // count 8 -> 4, targets 4 in [7:4], b9 only, b11.
    assert_eq!(h.read(0), 4 | (4 << 4) | (1 << 9) | (1 << 11));
    assert_eq!(h.len(), 0x10 + 8 * 0x20);

    let one = switch(1, 1);
    assert_eq!(one.read(0) & 0xF, 0, "1 decoder encodes as 0");
    let sixteen = switch(16, 8);
    assert_eq!(sixteen.read(0) & 0xFF, 8 | (8 << 4));
    // 3 decoders are not encodable: rounded up to 4 (encoding 2).
    assert_eq!(switch(3, 1).read(0) & 0xF, 2);
    assert_eq!(switch(0, 1).read(0) & 0xF, 0);
    assert_eq!(switch(200, 200).read(0) & 0xFF, 8 | (8 << 4));
}

#[test]
fn control_write_mask_is_qemus() {
    assert_eq!(CTRL_WRITE_MASK, 0x13FF);
}

#[test]
fn global_control_only_enable_bit_is_writable() {
    let mut h = switch(2, 2);
    assert!(!h.enabled());
    h.write(HDM_GLOBAL_CONTROL, 0xFFFF_FFFF);
    assert_eq!(h.read(HDM_GLOBAL_CONTROL), 0b10);
    assert!(h.enabled());
    h.write(HDM_GLOBAL_CONTROL, 0);
    assert!(!h.enabled());
}

#[test]
fn register_masks_before_commit() {
    let mut h = switch(2, 8);
    h.write(decoder_reg(1, BaseLo), 0xFFFF_FFFF);
    h.write(decoder_reg(1, BaseHi), 0xFFFF_FFFF);
    h.write(decoder_reg(1, SizeLo), 0x1234_5678);
    h.write(decoder_reg(1, SizeHi), 0x9);
    h.write(decoder_reg(1, TargetLo), 0x0403_0201);
    h.write(decoder_reg(1, TargetHi), 0x0807_0605);
    h.write(decoder_reg(1, Control), 0xFFFF_FDFF); // everything but Commit
    assert_eq!(h.read(decoder_reg(1, BaseLo)), 0xF000_0000);
    assert_eq!(h.read(decoder_reg(1, BaseHi)), 0xFFFF_FFFF);
    assert_eq!(h.read(decoder_reg(1, SizeLo)), 0x1000_0000);
    assert_eq!(h.read(decoder_reg(1, SizeHi)), 0x9);
    assert_eq!(h.read(decoder_reg(1, TargetLo)), 0x0403_0201);
    assert_eq!(h.read(decoder_reg(1, TargetHi)), 0x0807_0605);
    // 0x13FF without Commit (b9); Committed/Error cannot be written.
    assert_eq!(ctrl(&h, 1), 0x11FF);
    // The reserved dword at +0x1C and decoder 2 (absent) read 0.
    assert_eq!(h.read(decoder_reg(1, TargetHi) + 4), 0);
    assert_eq!(h.read(decoder_reg(2, BaseHi)), 0);
    assert_eq!(
        h.write(decoder_reg(2, Control), CTRL_COMMIT),
        HdmChange::None
    );
}

#[test]
fn endpoint_skip_is_kept_in_256mib_units() {
    let mut h = endpoint(4 * GIB);
    h.write(decoder_reg(0, TargetLo), 0x1234_5678);
    h.write(decoder_reg(0, TargetHi), 0x1);
    assert_eq!(h.read(decoder_reg(0, TargetLo)), 0x1000_0000);
    assert_eq!(h.read(decoder_reg(0, TargetHi)), 0x1);
}

#[test]
fn switch_commit_reports_state_and_targets() {
    let mut h = switch(4, 4);
    let base = 0x40_0000_0000;
    let change = program(&mut h, 0, base, 4 * GIB, 4, 4096, 0x0D0C_0B0A);
    assert_eq!(change, HdmChange::Committed);
    assert!(committed_bit(&h, 0));
    assert!(!error_bit(&h, 0));
    assert_eq!(
        h.committed(),
        vec![DecoderState {
            index: 0,
            base,
            size: 4 * GIB,
            ways: 4,
            granularity: 4096,
            targets: vec![0x0A, 0x0B, 0x0C, 0x0D],
            dpa_skip: 0,
            dpa_base: 0,
            locked: false,
        }]
    );
    // Commit bit and the other writable fields read back alongside.
    assert_eq!(ctrl(&h, 0), 4 | (2 << 4) | (1 << 9) | (1 << 10) | (1 << 12));
}

#[test]
fn target_list_uses_one_byte_per_way_in_position_order() {
    let mut h = switch(1, 8);
    let tl = u64::from_le_bytes([7, 6, 5, 4, 3, 2, 1, 0]);
    program(&mut h, 0, 0, 8 * MIB256, 8, 256, tl);
    assert_eq!(h.committed()[0].targets, vec![7, 6, 5, 4, 3, 2, 1, 0]);
    let mut h = switch(1, 8);
    program(&mut h, 0, 0, 2 * MIB256, 2, 256, tl);
    assert_eq!(h.committed()[0].targets, vec![7, 6]);
}

#[test]
fn out_of_order_commit_fails() {
    let mut h = switch(4, 1);
    assert_eq!(program(&mut h, 1, 0, GIB, 1, 256, 0), HdmChange::None);
    assert!(error_bit(&h, 1));
    assert!(!committed_bit(&h, 1));
    assert_eq!(
        h.commit_error(1),
        Some(CommitError::OutOfOrder {
            index: 1,
            missing: 0
        })
    );
    assert!(h.committed().is_empty());
    // In order it works.
    program(&mut h, 0, 0, GIB, 1, 256, 0);
    h.write(decoder_reg(1, Control), 0); // Linux clears Commit after an error
    assert!(!error_bit(&h, 1));
    assert_eq!(
        program(&mut h, 1, GIB, GIB, 1, 256, 0),
        HdmChange::Committed
    );
    assert_eq!(h.committed().len(), 2);
}

#[test]
fn zero_size_commit_fails() {
    let mut h = switch(1, 1);
    assert_eq!(program(&mut h, 0, GIB, 0, 1, 256, 0), HdmChange::None);
    assert!(error_bit(&h, 0));
    assert_eq!(h.commit_error(0), Some(CommitError::ZeroSize));
}

#[test]
fn misaligned_values_are_masked_and_refused_if_present() {
    // Through the registers a misaligned base cannot even be written...
    let mut h = switch(1, 1);
    h.write(decoder_reg(0, BaseLo), 0x1000_1000);
    assert_eq!(h.read(decoder_reg(0, BaseLo)), 0x1000_0000);
    // ...and if the latched value ever were misaligned, commit refuses it.
    let mut h = switch(1, 1);
    h.decoders[0].base_lo = 0x1000_1000;
    h.decoders[0].size_lo = 0x1000_0000;
    h.write(decoder_reg(0, Control), CTRL_COMMIT);
    assert_eq!(
        h.commit_error(0),
        Some(CommitError::Misaligned {
            base: 0x1000_1000,
            size: MIB256
        })
    );
    assert!(error_bit(&h, 0));
}

#[test]
fn range_that_wraps_fails() {
    let mut h = switch(1, 1);
    assert_eq!(
        program(&mut h, 0, 0xFFFF_FFFF_F000_0000, GIB, 1, 256, 0),
        HdmChange::None
    );
    assert!(matches!(
        h.commit_error(0),
        Some(CommitError::RangeWraps { .. })
    ));
}

#[test]
fn overlap_with_committed_decoder_fails() {
    let mut h = switch(2, 1);
    program(&mut h, 0, 4 * GIB, 2 * GIB, 1, 256, 0);
    // [5 GiB, 6 GiB) lies inside [4 GiB, 6 GiB).
    assert_eq!(program(&mut h, 1, 5 * GIB, GIB, 1, 256, 0), HdmChange::None);
    assert_eq!(h.commit_error(1), Some(CommitError::Overlap { other: 0 }));
    // Adjacent is fine, below as well as above.
    h.write(decoder_reg(1, Control), 0);
    assert_eq!(
        program(&mut h, 1, 3 * GIB, GIB, 1, 256, 0),
        HdmChange::Committed
    );
}

#[test]
fn undefined_ways_encoding_fails() {
    let mut h = switch(1, 8);
    h.write(decoder_reg(0, SizeLo), 0x1000_0000);
    h.write(decoder_reg(0, Control), (5 << 4) | CTRL_COMMIT);
    assert_eq!(h.commit_error(0), Some(CommitError::BadWays { eiw: 5 }));
    h.write(decoder_reg(0, Control), 0);
    h.write(decoder_reg(0, Control), (0xB << 4) | CTRL_COMMIT);
    assert_eq!(h.commit_error(0), Some(CommitError::BadWays { eiw: 0xB }));
}

#[test]
fn unadvertised_ways_fail() {
    // A switch without 3/6/12 support.
    let mut h = switch(1, 8);
    assert_eq!(program(&mut h, 0, 0, 3 * GIB, 3, 256, 0), HdmChange::None);
    assert_eq!(
        h.commit_error(0),
        Some(CommitError::WaysNotSupported { ways: 3 })
    );
    // More ways than the decoder has targets.
    let mut h = switch(1, 2);
    assert_eq!(program(&mut h, 0, 0, GIB, 4, 256, 0), HdmChange::None);
    assert_eq!(
        h.commit_error(0),
        Some(CommitError::TooManyWays {
            ways: 4,
            target_count: 2
        })
    );
    // An endpoint without 16-way support.
    let mut h = HdmDecoders::new(
        HdmConfig {
            dpa_capacity: 16 * GIB,
            ..HdmConfig::default()
        },
        true,
    );
    assert_eq!(
        program(&mut h, 0, 0, 16 * MIB256, 16, 256, 0),
        HdmChange::None
    );
    assert_eq!(
        h.commit_error(0),
        Some(CommitError::WaysNotSupported { ways: 16 })
    );
}

#[test]
fn undefined_granularity_encoding_fails() {
    let mut h = switch(1, 1);
    h.write(decoder_reg(0, SizeLo), 0x1000_0000);
    h.write(decoder_reg(0, Control), 7 | CTRL_COMMIT);
    assert_eq!(
        h.commit_error(0),
        Some(CommitError::BadGranularity { eig: 7 })
    );
}

#[test]
fn granularity_outside_advertised_bits_fails() {
    let page_only = HdmConfig {
        decoders: 1,
        target_count: 8,
        granularity_mask: GranularityCaps::PAGE_ONLY,
        ..HdmConfig::default()
    };
    // 2 ways at 256 B select on HPA bit 8: not advertised.
    let mut h = HdmDecoders::new(page_only, false);
    assert_eq!(program(&mut h, 0, 0, GIB, 2, 256, 0x0100), HdmChange::None);
    assert_eq!(
        h.commit_error(0),
        Some(CommitError::GranularityNotSupported {
            ways: 2,
            granularity: 256,
            bits: 1 << 8
        })
    );
    // 4 ways at 4 KiB select on bits 13:12: fine.
    let mut h = HdmDecoders::new(page_only, false);
    assert_eq!(program(&mut h, 0, 0, GIB, 4, 4096, 0), HdmChange::Committed);
    // 8 ways at 8 KiB need bits 15:13; 15 is never advertised.
    let mut h = HdmDecoders::new(page_only, false);
    assert_eq!(program(&mut h, 0, 0, 2 * GIB, 8, 8192, 0), HdmChange::None);
    assert!(matches!(
        h.commit_error(0),
        Some(CommitError::GranularityNotSupported { bits: 0xE000, .. })
    ));
    // 1 way uses no selector bits, so any granularity commits.
    let mut h = HdmDecoders::new(page_only, false);
    assert_eq!(program(&mut h, 0, 0, GIB, 1, 256, 0), HdmChange::Committed);
    // 2 ways at 2 KiB select on bit 11: fine with 11:8 only.
    let small_only = HdmConfig {
        granularity_mask: GranularityCaps {
            addr_11_8: true,
            addr_14_12: false,
        },
        ..page_only
    };
    let mut h = HdmDecoders::new(small_only, false);
    assert_eq!(program(&mut h, 0, 0, GIB, 2, 2048, 0), HdmChange::Committed);
    let mut h = HdmDecoders::new(small_only, false);
    assert_eq!(program(&mut h, 0, 0, GIB, 2, 4096, 0), HdmChange::None);
}

#[test]
fn selector_bits_follow_linux_formula() {
    // Independently: eiw < 8 -> GENMASK(eiw + eig + 7, eig + 8);
    // eiw > 8 -> GENMASK(eiw + eig - 1, eig + 8); eiw 0 or 8 -> none.
    fn genmask(h: u32, l: u32) -> u64 {
        ((1u64 << (h - l + 1)) - 1) << l
    }
    for eig in 0..=6u8 {
        let g = u32::from(eig);
        assert_eq!(selector_bits(0, eig), 0);
        assert_eq!(selector_bits(8, eig), 0);
        for eiw in 1..=4u8 {
            let w = u32::from(eiw);
            assert_eq!(selector_bits(eiw, eig), genmask(w + g + 7, g + 8));
        }
        for eiw in 9..=10u8 {
            let w = u32::from(eiw);
            assert_eq!(selector_bits(eiw, eig), genmask(w + g - 1, g + 8));
        }
    }
}

#[test]
fn encodings_round_trip() {
    for ways in [1u8, 2, 3, 4, 6, 8, 12, 16] {
        assert_eq!(ways_from_eiw(eiw_from_ways(ways).unwrap()), Some(ways));
    }
    for bad in [0u8, 5, 7, 9, 10, 32] {
        assert_eq!(eiw_from_ways(bad), None);
    }
    for eiw in [5u8, 6, 7, 11, 15] {
        assert_eq!(ways_from_eiw(eiw), None);
    }
    for eig in 0..=6u8 {
        assert_eq!(
            eig_from_granularity(granularity_from_eig(eig).unwrap()),
            Some(eig)
        );
    }
    assert_eq!(granularity_from_eig(7), None);
    assert_eq!(eig_from_granularity(128), None);
    assert_eq!(eig_from_granularity(768), None);
    assert_eq!(eig_from_granularity(32768), None);
}

#[test]
fn endpoint_dpa_is_allocated_in_decoder_order() {
    let mut h = endpoint(4 * GIB);
    // Decoder 0: 2 GiB HPA, 2 ways -> 1 GiB of DPA at 0.
    assert_eq!(
        program(&mut h, 0, 0x1_0000_0000, 2 * GIB, 2, 4096, 0),
        HdmChange::Committed
    );
    // Decoder 1: skip 512 MiB, 1 GiB 1-way -> DPA [1.5 GiB, 2.5 GiB).
    assert_eq!(
        program(&mut h, 1, 0x2_0000_0000, GIB, 1, 256, 2 * MIB256),
        HdmChange::Committed
    );
    let c = h.committed();
    assert_eq!((c[0].dpa_base, c[0].dpa_len()), (0, GIB));
    assert_eq!(c[0].targets, Vec::<u8>::new());
    assert_eq!(
        (c[1].dpa_skip, c[1].dpa_base, c[1].dpa_len()),
        (512 << 20, 3 * (GIB / 2), GIB)
    );
    // Decoder 2: 2 GiB 1-way would end at 4.5 GiB > 4 GiB.
    assert_eq!(
        program(&mut h, 2, 0x3_0000_0000, 2 * GIB, 1, 256, 0),
        HdmChange::None
    );
    assert_eq!(
        h.commit_error(2),
        Some(CommitError::DpaBeyondCapacity {
            end: 9 * (GIB / 2),
            capacity: 4 * GIB
        })
    );
    // Exactly to the end fits.
    h.write(decoder_reg(2, Control), 0);
    assert_eq!(
        program(&mut h, 2, 0x3_0000_0000, 3 * (GIB / 2), 1, 256, 0),
        HdmChange::Committed
    );
}

#[test]
fn endpoint_size_must_split_evenly_across_ways() {
    let mut h = endpoint(16 * GIB);
    // 3 ways over 512 MiB leaves 170.67 MiB per device.
    assert_eq!(
        program(&mut h, 0, 0, 2 * MIB256, 3, 256, 0),
        HdmChange::None
    );
    assert_eq!(
        h.commit_error(0),
        Some(CommitError::SizeNotMultipleOfWays {
            size: 2 * MIB256,
            ways: 3
        })
    );
    h.write(decoder_reg(0, Control), 0);
    assert_eq!(
        program(&mut h, 0, 0, 3 * MIB256, 3, 256, 0),
        HdmChange::Committed
    );
    assert_eq!(h.committed()[0].dpa_len(), MIB256);
}

#[test]
fn endpoint_with_zero_capacity_never_commits() {
    let mut h = endpoint(0);
    assert_eq!(program(&mut h, 0, 0, MIB256, 1, 256, 0), HdmChange::None);
    assert!(matches!(
        h.commit_error(0),
        Some(CommitError::DpaBeyondCapacity { .. })
    ));
}

#[test]
fn committed_registers_are_read_only() {
    let mut h = switch(2, 2);
    program(&mut h, 0, GIB, GIB, 2, 256, 0x0201);
    let before: Vec<u32> = (0..0x20).step_by(4).map(|r| h.read(0x10 + r)).collect();
    for reg in [BaseLo, BaseHi, SizeLo, SizeHi, TargetLo, TargetHi] {
        assert_eq!(h.write(decoder_reg(0, reg), 0xDEAD_BEEF), HdmChange::None);
    }
    // A control write that keeps Commit set changes nothing either.
    assert_eq!(h.write(decoder_reg(0, Control), 0x13FF), HdmChange::None);
    let after: Vec<u32> = (0..0x20).step_by(4).map(|r| h.read(0x10 + r)).collect();
    assert_eq!(before, after);
    assert_eq!(h.committed()[0].targets, vec![1, 2]);
}

#[test]
fn clearing_commit_uncommits_an_unlocked_decoder() {
    let mut h = switch(2, 1);
    program(&mut h, 0, GIB, GIB, 1, 256, 0);
    let c = ctrl(&h, 0);
    // Linux's cxl_decoder_reset(): ctrl & ~Commit, then zero size/base.
    assert_eq!(
        h.write(decoder_reg(0, Control), c & !CTRL_COMMIT),
        HdmChange::Uncommitted
    );
    assert!(!committed_bit(&h, 0));
    assert!(h.committed().is_empty());
    h.write(decoder_reg(0, SizeLo), 0);
    h.write(decoder_reg(0, BaseLo), 0);
    assert_eq!(h.read(decoder_reg(0, SizeLo)), 0);
    assert_eq!(h.read(decoder_reg(0, BaseLo)), 0);
    // And it can be committed again with new values.
    assert_eq!(
        program(&mut h, 0, 2 * GIB, GIB, 1, 256, 0),
        HdmChange::Committed
    );
    assert_eq!(h.committed()[0].base, 2 * GIB);
}

#[test]
fn lock_on_commit_freezes_the_decoder() {
    let mut h = switch(2, 1);
    let change = program_ctrl(
        &mut h,
        0,
        GIB,
        GIB,
        0,
        commit_ctrl(1, 256) | CTRL_LOCK_ON_COMMIT,
    );
    assert_eq!(change, HdmChange::Committed);
    assert!(h.committed()[0].locked);
    let c = ctrl(&h, 0);
    assert_eq!(h.write(decoder_reg(0, Control), 0), HdmChange::None);
    assert_eq!(ctrl(&h, 0), c);
    h.write(decoder_reg(0, BaseLo), 0);
    assert_eq!(h.read(decoder_reg(0, BaseHi)), 0);
    assert_eq!(h.read(decoder_reg(0, BaseLo)), 0x4000_0000);
    assert_eq!(h.committed().len(), 1);
    // Other decoders stay programmable.
    assert_eq!(
        program(&mut h, 1, 2 * GIB, GIB, 1, 256, 0),
        HdmChange::Committed
    );
}

#[test]
fn commit_needs_a_zero_to_one_edge_and_error_clears_with_commit() {
    let mut h = switch(1, 1);
    assert_eq!(program(&mut h, 0, 0, 0, 1, 256, 0), HdmChange::None);
    assert!(error_bit(&h, 0));
    // Fixing the size while Commit stays 1 does not retry the commit.
    h.write(decoder_reg(0, SizeLo), 0x1000_0000);
    assert_eq!(
        h.write(decoder_reg(0, Control), CTRL_COMMIT),
        HdmChange::None
    );
    assert!(error_bit(&h, 0));
    assert!(!committed_bit(&h, 0));
    // Commit 0 clears Error; Commit 1 then commits.
    h.write(decoder_reg(0, Control), 0);
    assert!(!error_bit(&h, 0));
    assert_eq!(h.commit_error(0), None);
    assert_eq!(
        h.write(decoder_reg(0, Control), CTRL_COMMIT),
        HdmChange::Committed
    );
    assert!(committed_bit(&h, 0));
}
