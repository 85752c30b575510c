//! MLC-style loaded latency through the timed front end: one pointer
//! chaser plus `k` loaders, each a guest thread with one access in flight
//! (a vCPU waits for each timed access), every access going through the
//! CPU cache model and the fabric exactly as [`Engine::timed_access`]
//! charges the guest. The chaser's latency against the bandwidth the
//! loaders draw is the curve a guest tool measures on timed memory, so the
//! two can be compared point by point.
//!
//! * Chaser: 8-byte loads following a random cyclic permutation of the
//!   lines of its buffer (Sattolo's algorithm, seeded), `chase_think_ns`
//!   of guest work between loads.
//! * Loader i: `access_bytes` loads (or stores, by `loader_read_fraction`)
//!   walking its own slice of the load buffer with `loader_stride`, then
//!   guest work of `delay_ns` on average (MLC's injection delay), drawn
//!   from an exponential distribution as in [`super::closed_loop`]: with
//!   fixed delays the deterministic generators fall into lock-step and
//!   never queue behind each other below saturation.
//! * Generators are served in guest-time order, as the engine's
//!   first-come-first-served resources expect. The first tenth of the
//!   chaser's loads warms the cache and queues and is not measured.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use serde::Serialize;

use crate::engine::{Engine, Op, RequestError, Target};
use crate::histogram::LatencyHistogram;
use crate::rng::SplitMix64;
use crate::time::Picos;

/// One loaded-latency measurement.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LoadedLatencyConfig {
    /// Chaser buffer: base HPA (in a CXL window) and bytes.
    pub chase_base: u64,
    pub chase_bytes: u64,
    /// Loaders' buffer, split evenly among them.
    pub load_base: u64,
    pub load_bytes: u64,
    pub loaders: usize,
    /// Mean guest time between a loader's accesses (exponential; 0: none).
    pub delay_ns: f64,
    /// Guest time between the chaser's loads.
    pub chase_think_ns: f64,
    /// Bytes per loader access (1 to 64) and the step between them.
    pub access_bytes: u32,
    pub loader_stride: u64,
    /// Fraction of loader accesses that are loads (the rest stores),
    /// spread evenly (0.5: every other access).
    pub loader_read_fraction: f64,
    /// Chaser loads measured (after a tenth as many for warm-up).
    pub chase_loads: u64,
    pub seed: u64,
}

impl LoadedLatencyConfig {
    /// Chaser over `chase_bytes` at `base`, loaders over the next
    /// `load_bytes`, 8-byte accesses, one load per line, reads only.
    pub fn new(base: u64, chase_bytes: u64, load_bytes: u64, loaders: usize) -> Self {
        LoadedLatencyConfig {
            chase_base: base,
            chase_bytes,
            load_base: base + chase_bytes,
            load_bytes,
            loaders,
            delay_ns: 0.0,
            chase_think_ns: 0.0,
            access_bytes: 8,
            loader_stride: 64,
            loader_read_fraction: 1.0,
            chase_loads: 20_000,
            seed: 1,
        }
    }
}

/// What a measurement found.
#[derive(Debug, Clone, Serialize)]
pub struct LoadedLatencyPoint {
    pub loaders: usize,
    pub delay_ns: f64,
    /// The chaser's load latency as the guest sees it.
    pub chase: LatencyHistogram,
    /// Fabric data (device reads + writes) per second of guest time while
    /// measuring, GB/s.
    pub fabric_gbps: f64,
    /// Bytes the loaders accessed per second of guest time, GB/s.
    pub loader_gbps: f64,
    /// Cache hit rate over the measurement.
    pub cache_hit_rate: f64,
}

/// A random cyclic permutation of `n` (next[i] = the line after line i).
fn cycle(n: u64, rng: &mut SplitMix64) -> Vec<u64> {
    let mut order: Vec<u64> = (0..n).collect();
    // Sattolo: a single cycle through every line.
    for i in (1..order.len()).rev() {
        let j = (rng.next_u64() % i as u64) as usize;
        order.swap(i, j);
    }
    let mut next = vec![0; n as usize];
    for w in 0..order.len() {
        next[order[w] as usize] = order[(w + 1) % order.len()];
    }
    next
}

/// Run one point on `engine` (its cache and queues carry over between
/// calls: use a fresh engine per point for independent points). Accesses
/// go to `Target::Address`, decoded by the model.
pub fn loaded_latency(
    engine: &mut Engine,
    cfg: &LoadedLatencyConfig,
) -> Result<LoadedLatencyPoint, RequestError> {
    let mut rng = SplitMix64::new(cfg.seed);
    let lines = (cfg.chase_bytes / 64).max(1);
    let next = cycle(lines, &mut rng);
    let slice = (cfg.load_bytes / cfg.loaders.max(1) as u64).max(cfg.loader_stride.max(1));
    let think = (cfg.chase_think_ns * 1000.0) as Picos;
    let stride = cfg.loader_stride.max(1);
    // Generator 0 is the chaser; its position is a line, the loaders' a
    // byte offset in their slice.
    let mut pos = vec![0u64; cfg.loaders + 1];
    let mut issued = vec![0u64; cfg.loaders + 1];
    let mut ready: BinaryHeap<Reverse<(Picos, usize)>> =
        (0..=cfg.loaders).map(|g| Reverse((0, g))).collect();
    let warm = cfg.chase_loads / 10;
    let mut chase = LatencyHistogram::new();
    let (mut start, mut end) = (None, 0);
    let mut loader_bytes = 0u64;
    let mut before = None;
    while let Some(Reverse((t, g))) = ready.pop() {
        let (hpa, op) = if g == 0 {
            (cfg.chase_base + pos[0] * 64, Op::Read)
        } else {
            let base = cfg.load_base + (g as u64 - 1) * slice;
            let i = issued[g];
            // Loads and stores spread evenly: access i is a store when the
            // running count of stores due passes an integer.
            let w = 1.0 - cfg.loader_read_fraction;
            let store = ((i + 1) as f64 * w).floor() > (i as f64 * w).floor();
            let op = if store { Op::Write } else { Op::Read };
            (base + pos[g] % slice, op)
        };
        let a = engine.timed_access(hpa, cfg.access_bytes, op, t, Target::Address)?;
        issued[g] += 1;
        if g == 0 {
            if issued[0] == warm + 1 {
                start = Some(t);
                before = Some(engine.fabric_stats(t));
            }
            if issued[0] > warm {
                chase.record_ps(a.latency());
                end = a.complete;
            }
            if issued[0] >= warm + cfg.chase_loads {
                break;
            }
            pos[0] = next[pos[0] as usize];
            ready.push(Reverse((a.complete + think, 0)));
        } else {
            if start.is_some() {
                loader_bytes += u64::from(cfg.access_bytes);
            }
            pos[g] += stride;
            let delay = if cfg.delay_ns > 0.0 {
                (rng.next_exp(cfg.delay_ns) * 1000.0) as Picos
            } else {
                0
            };
            ready.push(Reverse((a.complete + delay, g)));
        }
    }
    let start = start.unwrap_or(0);
    let span = end.saturating_sub(start).max(1);
    let after = engine.fabric_stats(end);
    let d = after.since(before.as_ref().unwrap_or(&after));
    let fabric_bytes: u64 = d.devices.iter().map(|x| x.read_bytes + x.write_bytes).sum();
    let gbps = |b: u64| b as f64 / (span as f64 * 1e-12) / 1e9;
    Ok(LoadedLatencyPoint {
        loaders: cfg.loaders,
        delay_ns: cfg.delay_ns,
        chase,
        fabric_gbps: gbps(fabric_bytes),
        loader_gbps: gbps(loader_bytes),
        cache_hit_rate: d.cpu_cache_hit_rate,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Source, Topology};

    /// One x1 Gen3 device: slow enough that a few loaders fill the link.
    fn slow() -> (Topology, u64) {
        let t = Topology::from_toml_str(
            "[[host_bridge]]\nid='hb0'\n[[type3]]\nid='m'\nport='hb0.rp0'\nvolatile='1G'\n\
             link={gen=3,width=1}\n[[window]]\ntargets=['hb0']\nsize='1G'\nmode='timed'\n",
        )
        .unwrap();
        let base = Engine::new(&t).address_map().window_base(0).unwrap();
        (t, base)
    }

    #[test]
    fn cycle_visits_every_line_once() {
        let next = cycle(1000, &mut SplitMix64::new(3));
        let mut seen = vec![false; 1000];
        let mut at = 0;
        for _ in 0..1000 {
            assert!(!seen[at as usize]);
            seen[at as usize] = true;
            at = next[at as usize];
        }
        assert_eq!(at, 0);
    }

    #[test]
    fn idle_chase_measures_the_idle_latency_and_load_raises_it() {
        let (t, base) = slow();
        let cfg = LoadedLatencyConfig {
            chase_loads: 5_000,
            delay_ns: 20.0,
            ..LoadedLatencyConfig::new(base, 16 << 20, 64 << 20, 0)
        };
        let mut e = Engine::new(&t);
        let idle = e
            .idle_latency(Source::Host, Target::Address(base), 64, Op::Read)
            .unwrap() as f64
            / 1000.0;
        let p0 = loaded_latency(&mut e, &cfg).unwrap();
        // 16 MiB through a 1 MiB cache: nearly every load misses, at the
        // idle latency.
        assert!(p0.cache_hit_rate < 0.1, "{}", p0.cache_hit_rate);
        let p50 = p0.chase.percentile_ns(50.0);
        assert!((p50 - idle).abs() < 0.01 * idle, "{p50} vs {idle}");
        let mut last = p0.chase.mean_ns();
        let mut last_bw = p0.fabric_gbps;
        for k in [2, 8] {
            let mut e = Engine::new(&t);
            let p = loaded_latency(
                &mut e,
                &LoadedLatencyConfig {
                    loaders: k,
                    ..cfg.clone()
                },
            )
            .unwrap();
            assert!(
                p.chase.mean_ns() > last,
                "{k} loaders: {} <= {last}",
                p.chase.mean_ns()
            );
            assert!(p.fabric_gbps > last_bw);
            last = p.chase.mean_ns();
            last_bw = p.fabric_gbps;
        }
        // x1 Gen3 68B reads peak at 8 GT/s / 8 x 128/130 x 64/73.67 B.
        let peak = 8e9 / 8.0 * 128.0 / 130.0 * 64.0 / (4.0 * 17.0 + 17.0 / 3.0) / 1e9;
        assert!(last_bw < peak * 1.01, "{last_bw} vs peak {peak}");
        assert!(
            last_bw > peak * 0.7,
            "8 loaders fill the x1 link: {last_bw} of {peak}"
        );
    }

    #[test]
    fn deterministic() {
        let (t, base) = slow();
        let cfg = LoadedLatencyConfig {
            chase_loads: 2_000,
            loader_read_fraction: 0.5,
            delay_ns: 100.0,
            ..LoadedLatencyConfig::new(base, 4 << 20, 8 << 20, 3)
        };
        let a = loaded_latency(&mut Engine::new(&t), &cfg).unwrap();
        let b = loaded_latency(&mut Engine::new(&t), &cfg).unwrap();
        assert!(a.chase == b.chase);
        assert_eq!(a.fabric_gbps, b.fabric_gbps);
    }
}
