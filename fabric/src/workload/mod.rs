//! Load generators for bandwidth–latency curves, in the two ways the
//! literature measures them:
//!
//! * **open loop**: Poisson arrivals at an offered rate (CXLMemSim-style
//!   utilisation sweeps);
//! * **closed loop**: `k` generators, each with one request outstanding and
//!   an exponential think time between requests (MLC `--loaded_latency` /
//!   Mess: the x axis is the bandwidth actually achieved);
//! * **loaded latency through the timed front end** ([`loaded_latency`]):
//!   a pointer chaser beside `k` loaders, each access through the CPU cache
//!   model, as a guest on timed memory measures it.

mod loaded;

pub use loaded::{loaded_latency, LoadedLatencyConfig, LoadedLatencyPoint};

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use crate::engine::{Engine, Op, RequestError, Source, Target};
use crate::rng::SplitMix64;
use crate::time::Picos;

/// One point of a bandwidth–latency curve.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoadPoint {
    /// Data moved per second while measuring, GB/s.
    pub bandwidth_gbps: f64,
    /// Mean latency, ns.
    pub mean_ns: f64,
    pub p50_ns: f64,
    pub p99_ns: f64,
}

/// What each generated request does: target, size and op for request `i`.
pub trait Pattern {
    fn next(&mut self, i: u64, rng: &mut SplitMix64) -> (Target, u32, Op);
}

/// 64 B lines over one device's DPA range with a read fraction.
#[derive(Debug, Clone, Copy)]
pub struct LinePattern {
    pub device: usize,
    pub span: u64,
    pub read_fraction: f64,
}

impl Pattern for LinePattern {
    fn next(&mut self, i: u64, rng: &mut SplitMix64) -> (Target, u32, Op) {
        // Alternate deterministically for exact 50/50 mixes, otherwise draw.
        let op = if self.read_fraction == 0.5 {
            if i.is_multiple_of(2) {
                Op::Read
            } else {
                Op::Write
            }
        } else if rng.next_f64() < self.read_fraction {
            Op::Read
        } else {
            Op::Write
        };
        let dpa = (i * 64) % self.span.max(64);
        (
            Target::Type3 {
                device: self.device,
                dpa,
            },
            64,
            op,
        )
    }
}

fn summarize(mut lat: Vec<Picos>, bytes: u64, span_ps: Picos) -> LoadPoint {
    lat.sort_unstable();
    let n = lat.len().max(1);
    let mean = lat.iter().map(|&l| l as f64).sum::<f64>() / n as f64;
    let pct = |p: f64| {
        lat.get(((n as f64 - 1.0) * p) as usize)
            .copied()
            .unwrap_or(0) as f64
    };
    LoadPoint {
        bandwidth_gbps: bytes as f64 / (span_ps.max(1) as f64 * 1e-12) / 1e9,
        mean_ns: mean / 1000.0,
        p50_ns: pct(0.5) / 1000.0,
        p99_ns: pct(0.99) / 1000.0,
    }
}

/// Poisson arrivals at `rate_gbps` of offered data; `n` requests, the first
/// tenth discarded as warm-up.
pub fn open_loop(
    engine: &mut Engine,
    pattern: &mut dyn Pattern,
    rate_gbps: f64,
    n: u64,
    seed: u64,
) -> Result<LoadPoint, RequestError> {
    let mut rng = SplitMix64::new(seed);
    let mut now = 0.0f64;
    let warm = n / 10;
    let (mut lat, mut bytes, mut first, mut last) = (Vec::new(), 0u64, 0, 0);
    for i in 0..n {
        let (target, size, op) = pattern.next(i, &mut rng);
        now += rng.next_exp(size as f64 / (rate_gbps * 1e9) * 1e12);
        let c = engine.request(Source::Host, target, size, op, now as Picos)?;
        if i == warm {
            first = c.issue;
        }
        if i >= warm {
            lat.push(c.latency());
            bytes += size as u64;
            last = last.max(c.complete);
        }
    }
    Ok(summarize(lat, bytes, last.saturating_sub(first)))
}

/// `k` closed-loop generators with exponential think time `think_ns`;
/// `n` requests in all, the first tenth discarded as warm-up.
pub fn closed_loop(
    engine: &mut Engine,
    pattern: &mut dyn Pattern,
    k: usize,
    think_ns: f64,
    n: u64,
    seed: u64,
) -> Result<LoadPoint, RequestError> {
    let mut rng = SplitMix64::new(seed);
    // Min-heap of (next issue time, generator): requests go to the engine in
    // issue-time order, as its FCFS resources expect.
    let mut ready: BinaryHeap<Reverse<(Picos, usize)>> = (0..k.max(1))
        .map(|g| Reverse(((rng.next_exp(think_ns) * 1000.0) as Picos, g)))
        .collect();
    let warm = n / 10;
    let (mut lat, mut bytes, mut first, mut last) = (Vec::new(), 0u64, 0, 0);
    for i in 0..n {
        let Some(Reverse((t, g))) = ready.pop() else {
            break;
        };
        let (target, size, op) = pattern.next(i, &mut rng);
        let c = engine.request(Source::Host, target, size, op, t)?;
        if i == warm {
            first = t;
        }
        if i >= warm {
            lat.push(c.latency());
            bytes += size as u64;
            last = last.max(c.complete);
        }
        let think = (rng.next_exp(think_ns) * 1000.0) as Picos;
        ready.push(Reverse((c.complete + think, g)));
    }
    Ok(summarize(lat, bytes, last.saturating_sub(first)))
}
