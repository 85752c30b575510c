//! Checks of single values: numbers in range, byte sizes.

use super::super::error::{ErrorKind as K, TopologyError as E};
use super::super::raw::RawSize;
use super::super::SIZE_ALIGN;
use super::R;

pub(in crate::topology) fn quoted(s: &str) -> String {
    format!("{s:?}")
}

pub(in crate::topology) fn latency(key: &str, v: f64) -> R<f64> {
    if !v.is_finite() {
        return Err(E::new(key, v, K::NotFinite));
    }
    if v < 0.0 {
        return Err(E::new(key, v, K::Negative));
    }
    // Beyond a second is a typo, and keeps picosecond arithmetic in range.
    if v > 1e9 {
        return Err(E::new(key, v, K::OutOfRange("at most 1e9 ns".into())));
    }
    Ok(v)
}

pub(in crate::topology) fn bandwidth(key: &str, v: f64) -> R<f64> {
    if !v.is_finite() {
        return Err(E::new(key, v, K::NotFinite));
    }
    if v <= 0.0 {
        return Err(E::new(key, v, K::NotPositive));
    }
    if v > 1e6 {
        return Err(E::new(key, v, K::OutOfRange("at most 1e6 GB/s".into())));
    }
    Ok(v)
}

/// A count in 1..=max.
pub(in crate::topology) fn count(key: &str, v: i64, max: i64) -> R<u32> {
    if v <= 0 {
        return Err(E::new(key, v, K::NotPositive));
    }
    int_in(key, v, 1, max).map(|v| v as u32)
}

pub(in crate::topology) fn int_in(key: &str, v: i64, min: i64, max: i64) -> R<i64> {
    if v < min {
        return Err(E::new(
            key,
            v,
            if min == 0 {
                K::Negative
            } else {
                K::OutOfRange(format!("{min} to {max}"))
            },
        ));
    }
    if v > max {
        return Err(E::new(key, v, K::OutOfRange(format!("{min} to {max}"))));
    }
    Ok(v)
}

/// Parse a byte size: integer or "<n>[K|M|G|T][i][B]" (binary multiples).
pub(crate) fn parse_size(s: &str) -> Option<u64> {
    let t = s.trim();
    let digits_end = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, suffix) = t.split_at(digits_end);
    let n: u64 = num.parse().ok()?;
    let shift = match suffix.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => return None,
    };
    n.checked_mul(1u64 << shift)
}

pub(in crate::topology) fn size(key: &str, s: &RawSize) -> R<u64> {
    match s {
        RawSize::Int(v) if *v < 0 => Err(E::new(key, v, K::Negative)),
        RawSize::Int(v) => Ok(*v as u64),
        RawSize::Str(t) => parse_size(t).ok_or_else(|| E::new(key, quoted(t), K::BadSize)),
    }
}

/// How a size appears in an error: as written.
pub(in crate::topology) fn shown(s: Option<&RawSize>, v: u64) -> String {
    match s {
        Some(RawSize::Str(t)) => quoted(t),
        _ => v.to_string(),
    }
}

/// A size that must be a multiple of 256 MiB (`zero_ok`: 0 allowed; absent = 0).
pub(in crate::topology) fn aligned_size(key: &str, s: Option<&RawSize>, zero_ok: bool) -> R<u64> {
    let v = match s {
        Some(s) => size(key, s)?,
        None => 0,
    };
    if v == 0 && !zero_ok {
        return Err(E::new(key, shown(s, v), K::NotPositive));
    }
    if v % SIZE_ALIGN != 0 {
        return Err(E::new(key, shown(s, v), K::NotAligned));
    }
    Ok(v)
}
