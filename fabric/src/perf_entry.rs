//! Latency and bandwidth as the guest reads them from HMAT and CDAT: a
//! 64-bit base unit shared by a table and a 16-bit entry per value, value =
//! entry × base unit, in ps for latencies and MB/s for bandwidths (ACPI 6.5
//! §5.2.28.4, System Locality Latency and Bandwidth Information; CDAT DSLBIS
//! and SSLBIS use the same encoding).
//!
//! Linux multiplies back in `hmat_normalize` (drivers/acpi/numa/hmat.c) and
//! `cdat_normalize` (drivers/cxl/core/cdat.c): an entry of 0 or 0xFFFF means
//! "no data", and a product above `u32::MAX` is treated as overflow and
//! dropped. [`encode_values`] keeps every entry inside that. It is the one
//! encoder for both tables.

/// HMAT data types (ACPI 6.5 Table 5.151), also used by DSLBIS and SSLBIS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum DataType {
    AccessLatency = 0,
    ReadLatency = 1,
    WriteLatency = 2,
    AccessBandwidth = 3,
    ReadBandwidth = 4,
    WriteBandwidth = 5,
}

impl DataType {
    /// Read/write latency and bandwidth, the order HMAT and CDAT list them in.
    pub const READ_WRITE: [DataType; 4] = [
        DataType::ReadLatency,
        DataType::WriteLatency,
        DataType::ReadBandwidth,
        DataType::WriteBandwidth,
    ];

    pub fn is_latency(self) -> bool {
        (self as u8) <= 2
    }
}

/// Largest entry Linux reads as a value (0xFFFF means "no data").
pub const ENTRY_MAX: u16 = 0xFFFE;

/// Encode `values` (ps or MB/s) with one shared base unit: the smallest
/// power of ten in which the largest value, rounded to nearest like every
/// entry, fits [`ENTRY_MAX`]. A non-zero value never encodes as 0 (Linux
/// would read "no data"), and entry × unit never exceeds `u32::MAX` (Linux
/// would discard it as overflow), so values beyond that saturate.
pub fn encode_values(values: &[u64]) -> (u64, Vec<u16>) {
    let limit = u64::from(ENTRY_MAX);
    let ceiling = u64::from(u32::MAX);
    let max = values.iter().map(|&v| v.min(ceiling)).max().unwrap_or(0);
    let nearest = |v: u64, unit: u64| v / unit + u64::from(v % unit >= unit.div_ceil(2));
    let mut unit = 1u64;
    while nearest(max, unit) > limit {
        unit *= 10;
    }
    let entries = values
        .iter()
        .map(|&v| {
            let v = v.min(ceiling);
            // Rounding up can cross u32::MAX, which Linux would drop.
            let e = nearest(v, unit).min(ceiling / unit);
            e.max(u64::from(v != 0)) as u16
        })
        .collect();
    (unit, entries)
}

/// [`encode_values`] for one value: (base unit, entry).
pub fn encode_value(value: u64) -> (u64, u16) {
    let (unit, e) = encode_values(&[value]);
    (unit, e[0])
}

#[cfg(test)]
mod tests;
