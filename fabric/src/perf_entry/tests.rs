//! Entry encoding against Linux's reading of it (drivers/cxl/core/cdat.c
//! `cdat_normalize`, drivers/acpi/numa/hmat.c `hmat_normalize`).

use super::*;

/// What Linux makes of an entry: 0 ("no data") for 0, 0xFFFF, or a product
/// that does not fit its u32.
fn linux_value(entry: u16, base: u64) -> u64 {
    if entry == 0 || entry == 0xFFFF || base > u64::from(u32::MAX / u32::from(entry)) {
        return 0;
    }
    u64::from(entry) * base
}

/// Values around every power-of-ten boundary of the unit choice, and some
/// pseudo-random ones.
fn samples() -> Vec<u64> {
    let mut v = vec![
        0, 1, 2, 9, 65_533, 65_534, 65_535, 65_536, 655_344, 655_345, 655_349,
    ];
    let mut p = 1u64;
    while p < u64::MAX / 65_535 {
        v.extend([p - 1, p, p + 1, 65_534 * p, 65_534 * p + p / 2, 65_535 * p]);
        p *= 10;
    }
    let mut x = 0x1234_5678_9abc_def0u64;
    for _ in 0..1000 {
        x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        v.push(x >> (x % 40 + 20));
    }
    v.extend([u64::from(u32::MAX), u64::from(u32::MAX) + 1, u64::MAX]);
    v
}

#[test]
fn single_values_encode_exactly_or_to_nearest() {
    assert_eq!(encode_value(0), (1, 0));
    assert_eq!(encode_value(1), (1, 1));
    assert_eq!(encode_value(65_534), (1, 65_534));
    // 0xFFFF would read as "no data": move to the next unit.
    assert_eq!(encode_value(65_535), (10, 6_554));
    assert_eq!(encode_value(83_500), (10, 8_350));
    assert_eq!(encode_value(655_344), (10, 65_534));
    // Rounds to 65_535 in tens, so hundreds.
    assert_eq!(encode_value(655_345), (100, 6_553));
    assert_eq!(encode_value(655_350), (100, 6_554));
}

#[test]
fn every_value_reads_back_within_half_a_unit() {
    for v in samples() {
        let (unit, e) = encode_value(v);
        let read = linux_value(e, unit);
        assert_ne!(e, 0xFFFF, "{v}");
        assert_eq!(read == 0, v == 0, "{v} -> {e} x {unit}");
        // The smallest unit that fits.
        if unit > 1 {
            let (v, smaller) = (v.min(u64::from(u32::MAX)), unit / 10);
            let nearest = v / smaller + u64::from(v % smaller >= smaller.div_ceil(2));
            assert!(nearest > u64::from(ENTRY_MAX), "{v}: unit {unit}");
        }
        if v <= u64::from(u32::MAX) - unit {
            assert!(read.abs_diff(v) <= unit / 2, "{v} -> {read}");
        } else {
            // Saturates at the largest value Linux accepts.
            assert!(read <= u64::from(u32::MAX) && read + unit > u64::from(u32::MAX));
        }
    }
}

#[test]
fn shared_unit_never_drops_small_values() {
    let (unit, e) = encode_values(&[1_000_000_000, 1, 49_999, 50_000, 0]);
    assert_eq!(unit, 100_000);
    assert_eq!(e, vec![10_000, 1, 1, 1, 0]);
    for v in samples() {
        let (unit, e) = encode_values(&[v, 1]);
        assert!(linux_value(e[1], unit) > 0, "{v}");
        assert_eq!(linux_value(e[0], unit) > 0, v > 0, "{v}");
    }
}
