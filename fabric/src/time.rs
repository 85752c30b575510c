//! Simulated time. All engine times are integer picoseconds: integers keep
//! traces bit-identical across runs and make equality tests exact.

/// A point in, or a span of, simulated time in picoseconds.
pub type Picos = u64;

/// Picoseconds per nanosecond.
pub const PS_PER_NS: u64 = 1000;

/// Nanoseconds (from the schema) to picoseconds, rounded to nearest.
pub fn ns_to_ps(ns: f64) -> Picos {
    (ns * 1000.0).round().max(0.0) as Picos
}

/// Picoseconds to nanoseconds, for reporting.
pub fn ps_to_ns(ps: Picos) -> f64 {
    ps as f64 / 1000.0
}

/// A bandwidth as fixed-point picoseconds per byte (1/1024 ps resolution),
/// so that serialization time is an integer multiply and shift.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PsPerByte(u64);

impl PsPerByte {
    const SHIFT: u32 = 10;

    /// From a rate in bytes per second.
    pub fn from_bytes_per_sec(rate: f64) -> Self {
        PsPerByte((1e12 / rate * (1u64 << Self::SHIFT) as f64).round() as u64)
    }

    /// From GB/s (10^9 bytes per second).
    pub fn from_gbps(gbps: f64) -> Self {
        Self::from_bytes_per_sec(gbps * 1e9)
    }

    /// Time to move `bytes`.
    #[inline]
    pub fn time(self, bytes: u64) -> Picos {
        (bytes * self.0) >> Self::SHIFT
    }

    /// Whole bytes that can be moved in `ps`.
    pub fn bytes_in(self, ps: Picos) -> u64 {
        let bytes = (u128::from(ps) << Self::SHIFT) / u128::from(self.0.max(1));
        bytes.min(u128::from(u64::MAX)) as u64
    }
}
