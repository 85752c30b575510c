//! A latency histogram with log-linear buckets: each power-of-two octave is
//! split into 64 equal buckets, so a bucket is at most 1/64 of its lower
//! bound wide and a reported percentile (the bucket's midpoint, clamped to
//! the observed minimum and maximum) is within 0.8 % of a recorded value.
//! Values are picoseconds; buckets cover 0 to 2^44 ps (17.6 s), beyond which
//! values land in the last bucket (the maximum stays exact).
//!
//! Fixed size (2496 counters), no allocation per record, mergeable by adding
//! counters. Serialises as a summary (count, mean, p50/p90/p99/p99.9, min,
//! max in nanoseconds) plus the non-empty buckets.

use serde::ser::{Serialize, SerializeStruct, Serializer};

use crate::time::Picos;

/// Linear buckets per octave (2^6): 1/64 relative width.
const SUB_BITS: u32 = 6;
const SUB: u64 = 1 << SUB_BITS;
/// Highest octave exponent kept (values up to 2^44 ps).
const TOP_BIT: u32 = 43;
const BUCKETS: usize = ((TOP_BIT - SUB_BITS + 2) as usize) * SUB as usize;

/// Latency histogram (see the module documentation).
#[derive(Clone, PartialEq, Eq)]
pub struct LatencyHistogram {
    counts: Box<[u64]>,
    count: u64,
    sum_ps: u128,
    min_ps: Picos,
    max_ps: Picos,
}

impl std::fmt::Debug for LatencyHistogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LatencyHistogram")
            .field("count", &self.count)
            .field("p50_ns", &self.percentile_ns(50.0))
            .field("max_ns", &(self.max_ps as f64 / 1000.0))
            .finish()
    }
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self::new()
    }
}

/// Bucket of a value: exact below 64 ps, then 64 per octave.
#[inline]
fn bucket(v: Picos) -> usize {
    if v < SUB {
        return v as usize;
    }
    let msb = 63 - v.leading_zeros();
    if msb > TOP_BIT {
        return BUCKETS - 1;
    }
    let shift = msb - SUB_BITS;
    ((shift as usize + 1) << SUB_BITS) + ((v >> shift) - SUB) as usize
}

/// Lowest value and width of bucket `i`.
fn bucket_range(i: usize) -> (Picos, Picos) {
    let i = i as u64;
    if i < SUB {
        return (i, 1);
    }
    let shift = (i >> SUB_BITS) - 1;
    let mantissa = SUB + (i & (SUB - 1));
    (mantissa << shift, 1 << shift)
}

impl LatencyHistogram {
    pub fn new() -> Self {
        LatencyHistogram {
            counts: vec![0; BUCKETS].into_boxed_slice(),
            count: 0,
            sum_ps: 0,
            min_ps: Picos::MAX,
            max_ps: 0,
        }
    }

    /// Record one latency in picoseconds.
    #[inline]
    pub fn record_ps(&mut self, ps: Picos) {
        self.counts[bucket(ps)] += 1;
        self.count += 1;
        self.sum_ps += u128::from(ps);
        self.min_ps = self.min_ps.min(ps);
        self.max_ps = self.max_ps.max(ps);
    }

    /// Record one latency in nanoseconds.
    #[inline]
    pub fn record_ns(&mut self, ns: u64) {
        self.record_ps(ns.saturating_mul(1000));
    }

    /// Add `other`'s samples to this one.
    pub fn merge(&mut self, other: &LatencyHistogram) {
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            *a += b;
        }
        self.count += other.count;
        self.sum_ps += other.sum_ps;
        self.min_ps = self.min_ps.min(other.min_ps);
        self.max_ps = self.max_ps.max(other.max_ps);
    }

    /// Forget every sample.
    pub fn clear(&mut self) {
        *self = Self::new();
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    /// Mean in nanoseconds (exact; 0 when empty).
    pub fn mean_ns(&self) -> f64 {
        if self.count == 0 {
            return 0.0;
        }
        self.sum_ps as f64 / self.count as f64 / 1000.0
    }

    /// Smallest sample in nanoseconds (0 when empty).
    pub fn min_ns(&self) -> f64 {
        if self.count == 0 {
            return 0.0;
        }
        self.min_ps as f64 / 1000.0
    }

    /// Largest sample in nanoseconds (exact; 0 when empty).
    pub fn max_ns(&self) -> f64 {
        self.max_ps as f64 / 1000.0
    }

    /// The `p`-th percentile (0 < p <= 100) in nanoseconds: the midpoint of
    /// the bucket holding the sample of rank ceil(p/100 x count), clamped to
    /// the observed range; the first and last ranks are the exact minimum
    /// and maximum. 0 when empty.
    pub fn percentile_ns(&self, p: f64) -> f64 {
        if self.count == 0 {
            return 0.0;
        }
        let rank = ((p / 100.0 * self.count as f64).ceil() as u64).clamp(1, self.count);
        // The extremes are kept exactly.
        if rank == self.count {
            return self.max_ns();
        }
        if rank == 1 {
            return self.min_ns();
        }
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                let (lo, width) = bucket_range(i);
                let mid = lo + width / 2;
                return mid.clamp(self.min_ps, self.max_ps) as f64 / 1000.0;
            }
        }
        self.max_ns()
    }

    /// Non-empty buckets as (lowest value in ns, count), in value order.
    pub fn buckets_ns(&self) -> impl Iterator<Item = (f64, u64)> + '_ {
        self.counts
            .iter()
            .enumerate()
            .filter(|(_, &c)| c > 0)
            .map(|(i, &c)| (bucket_range(i).0 as f64 / 1000.0, c))
    }
}

impl Serialize for LatencyHistogram {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("LatencyHistogram", 10)?;
        st.serialize_field("count", &self.count)?;
        st.serialize_field("mean_ns", &self.mean_ns())?;
        st.serialize_field("min_ns", &self.min_ns())?;
        st.serialize_field("p50_ns", &self.percentile_ns(50.0))?;
        st.serialize_field("p90_ns", &self.percentile_ns(90.0))?;
        st.serialize_field("p99_ns", &self.percentile_ns(99.0))?;
        st.serialize_field("p999_ns", &self.percentile_ns(99.9))?;
        st.serialize_field("max_ns", &self.max_ns())?;
        let buckets: Vec<(f64, u64)> = self.buckets_ns().collect();
        st.serialize_field("buckets_ns", &buckets)?;
        st.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SplitMix64;

    #[test]
    fn buckets_tile_the_range() {
        let mut next = 0;
        for i in 0..BUCKETS {
            let (lo, w) = bucket_range(i);
            assert_eq!(lo, next, "bucket {i} starts where {} ended", i.max(1) - 1);
            assert_eq!(bucket(lo), i);
            assert_eq!(bucket(lo + w - 1), i);
            // Relative width at most 1/64.
            assert!(w == 1 || w * 64 <= lo, "bucket {i}: {lo} + {w}");
            next = lo + w;
        }
        assert!(next >= 1 << 44);
        assert_eq!(bucket(u64::MAX), BUCKETS - 1);
    }

    /// Exact percentile by the same rank rule.
    fn exact(sorted: &[u64], p: f64) -> f64 {
        let rank = ((p / 100.0 * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
        sorted[rank - 1] as f64 / 1000.0
    }

    #[test]
    fn percentiles_within_two_percent_from_1ns_to_10s() {
        let mut rng = SplitMix64::new(9);
        let mut h = LatencyHistogram::new();
        let mut v = Vec::new();
        for _ in 0..200_000 {
            // Log-uniform over 1 ns .. 10 s.
            let ps = (1e3 * 10f64.powf(rng.next_f64() * 10.0)) as u64;
            h.record_ps(ps);
            v.push(ps);
        }
        v.sort_unstable();
        for p in [1.0, 10.0, 50.0, 90.0, 99.0, 99.9, 99.99] {
            let (got, want) = (h.percentile_ns(p), exact(&v, p));
            assert!(
                (got - want).abs() <= 0.02 * want,
                "p{p}: {got} vs exact {want}"
            );
        }
        assert_eq!(h.max_ns(), *v.last().unwrap() as f64 / 1000.0);
        assert_eq!(h.percentile_ns(100.0), h.max_ns());
        let mean = v.iter().map(|&x| x as f64).sum::<f64>() / v.len() as f64 / 1000.0;
        assert!((h.mean_ns() - mean).abs() <= 1e-9 * mean);
    }

    #[test]
    fn constant_samples_report_exactly() {
        let mut h = LatencyHistogram::new();
        for _ in 0..10 {
            h.record_ns(5_000);
        }
        assert_eq!(h.percentile_ns(50.0), 5_000.0);
        assert_eq!(h.percentile_ns(99.9), 5_000.0);
        assert_eq!(h.mean_ns(), 5_000.0);
    }

    #[test]
    fn merge_equals_recording_everything_in_one() {
        let mut rng = SplitMix64::new(4);
        let (mut a, mut b, mut all) = (
            LatencyHistogram::new(),
            LatencyHistogram::new(),
            LatencyHistogram::new(),
        );
        for i in 0..10_000 {
            let ps = rng.next_u64() % 50_000_000;
            if i % 3 == 0 { &mut a } else { &mut b }.record_ps(ps);
            all.record_ps(ps);
        }
        a.merge(&b);
        assert!(a == all);
    }

    #[test]
    fn empty_histogram_serialises_zeros() {
        let h = LatencyHistogram::new();
        assert_eq!(h.percentile_ns(99.0), 0.0);
        assert_eq!(h.mean_ns(), 0.0);
        let json = serde_json::to_string(&h).unwrap();
        assert!(
            json.starts_with(r#"{"count":0,"mean_ns":0.0,"min_ns":0.0,"p50_ns":0.0"#),
            "{json}"
        );
        assert!(json.ends_with(r#""buckets_ns":[]}"#), "{json}");
    }

    #[test]
    fn serialises_summary_and_buckets() {
        let mut h = LatencyHistogram::new();
        h.record_ns(100);
        h.record_ns(100);
        h.record_ns(3_000);
        let v: serde_json::Value = serde_json::to_value(&h).unwrap();
        assert_eq!(v["count"], 3);
        let p50 = v["p50_ns"].as_f64().unwrap();
        assert!((p50 - 100.0).abs() <= 1.0, "{p50}");
        assert_eq!(v["max_ns"], 3000.0);
        let b = v["buckets_ns"].as_array().unwrap();
        assert_eq!(b.len(), 2);
        assert_eq!(b[0][1], 2);
    }
}
