//! `fabric-bench --timed`: the host cost of one timed guest access, as the
//! VMM pays it outside the exit: lock the shared engine, decode the address
//! through the committed HDM decoders (`interleave::DecodeTree`), run the
//! cache model and the fabric engine (`Engine::timed_access`), record the
//! latency in a histogram. Scenarios on the default topology (two devices
//! 2-way interleaved at 4 KiB below one switch, 1 MiB 16-way cache):
//!
//! * `chase_4MiB_loads`: a dependent random chase over 4 MiB, 8-byte loads:
//!   nearly every access misses (decode + cache + one engine request);
//! * `chase_4MiB_stores`: the same with stores: a fill and a dirty
//!   write-back per access (two engine requests);
//! * `loop_64KiB_loads`: a cache-resident loop: hits only;
//! * `chase_4MiB_uncached`: cache off, one engine request per access.
//!
//! Each access is timed alone (Instant before and after, the pair's own
//! cost reported as `timer_overhead_ns` and not subtracted) for the
//! percentiles; `mean_ns` is the whole loop's time over its accesses, and
//! `batch_median_ns` the median over batches of 1024 accesses of each
//! batch's time per access (robust to the preemptions a shared machine
//! adds to the mean).

use std::sync::Mutex;
use std::time::Instant;

use fabric::interleave::{Arithmetic, DecodeTree, EndpointDecode, Node, PortDecode, RootDecode};
use fabric::rng::SplitMix64;
use fabric::{Engine, LatencyHistogram, Op, ParamValue, Target, Topology};

/// The decoders Linux commits for the default topology's window: root
/// 1-way to hb0, hb0 1-way to sw0, sw0 2-way 4 KiB to the two devices.
fn decode_tree(base: u64, size: u64) -> DecodeTree {
    let port = |targets: Vec<usize>, ways: u8| PortDecode {
        base,
        size,
        ways,
        granularity: 4096,
        targets,
    };
    let endpoint = |device| Node::Endpoint {
        device,
        decoders: vec![EndpointDecode {
            base,
            size,
            ways: 2,
            granularity: 4096,
            dpa_base: 0,
        }],
    };
    DecodeTree {
        roots: vec![RootDecode {
            base,
            size,
            ways: 1,
            granularity: 4096,
            arithmetic: Arithmetic::Modulo,
            targets: vec![0],
        }],
        nodes: vec![
            Node::Port {
                decoders: vec![port(vec![1], 1)],
            },
            Node::Port {
                decoders: vec![port(vec![2, 3], 2)],
            },
            endpoint(0),
            endpoint(1),
        ],
    }
}

struct Scenario {
    name: &'static str,
    lines: u64,
    op: Op,
    cache: bool,
}

/// Line order of a random single cycle over `n` lines.
fn chase(n: u64, seed: u64) -> Vec<u64> {
    let mut v: Vec<u64> = (0..n).collect();
    let mut rng = SplitMix64::new(seed);
    for i in (1..v.len()).rev() {
        let j = (rng.next_u64() % i as u64) as usize;
        v.swap(i, j);
    }
    v
}

fn timer_overhead_ns() -> f64 {
    let mut h = LatencyHistogram::new();
    for _ in 0..100_000 {
        let t = Instant::now();
        h.record_ns(t.elapsed().as_nanos() as u64);
    }
    h.percentile_ns(50.0)
}

pub fn run(n: u64) -> String {
    let topo = Topology::default_topology();
    let scenarios = [
        Scenario {
            name: "chase_4MiB_loads",
            lines: (4 << 20) / 64,
            op: Op::Read,
            cache: true,
        },
        Scenario {
            name: "chase_4MiB_stores",
            lines: (4 << 20) / 64,
            op: Op::Write,
            cache: true,
        },
        Scenario {
            name: "loop_64KiB_loads",
            lines: (64 << 10) / 64,
            op: Op::Read,
            cache: true,
        },
        Scenario {
            name: "chase_4MiB_uncached",
            lines: (4 << 20) / 64,
            op: Op::Read,
            cache: false,
        },
    ];
    let mut out = Vec::new();
    for s in &scenarios {
        let mut engine = Engine::new(&topo);
        if !s.cache {
            let off = ParamValue::Bool(false);
            if let Err(e) = engine.set_param("cpu_cache", "enabled", &off) {
                eprintln!("fabric-bench: {e}");
                std::process::exit(1);
            }
        }
        let base = engine.address_map().window_base(0).unwrap_or(0);
        let tree = decode_tree(base, topo.windows[0].size);
        let order = chase(s.lines, 7);
        let engine = Mutex::new(engine);
        let mut guest = LatencyHistogram::new();
        let mut host = LatencyHistogram::new();
        let mut now = 0u64;
        let one = |i: u64, now: &mut u64, guest: &mut LatencyHistogram| {
            let hpa = base + order[(i % s.lines) as usize] * 64 + 8;
            let decode = |line: u64| match tree.decode(line) {
                Some(t) => Target::Type3 {
                    device: t.device,
                    dpa: t.dpa,
                },
                None => Target::Address(line),
            };
            let mut e = engine.lock().unwrap_or_else(|p| p.into_inner());
            match e.timed_access(hpa, 8, s.op, *now, decode) {
                Ok(a) => {
                    guest.record_ps(a.latency());
                    // One nanosecond of guest work between accesses.
                    *now = a.complete + 1000;
                }
                Err(err) => {
                    eprintln!("fabric-bench: {err}");
                    std::process::exit(1);
                }
            }
        };
        // Warm-up pass (fills the cache for the resident loop), then the
        // loop timed as a whole, then each access timed alone.
        for i in 0..s.lines {
            one(i, &mut now, &mut guest);
        }
        let mut batches = LatencyHistogram::new();
        let start = Instant::now();
        for b in 0..n.div_ceil(1024) {
            let t = Instant::now();
            let end = ((b + 1) * 1024).min(n);
            for i in b * 1024..end {
                one(i, &mut now, &mut guest);
            }
            batches.record_ps(t.elapsed().as_nanos() as u64 * 1000 / (end - b * 1024));
        }
        let mean_ns = start.elapsed().as_nanos() as f64 / n.max(1) as f64;
        for i in 0..n {
            let t = Instant::now();
            one(i, &mut now, &mut guest);
            host.record_ns(t.elapsed().as_nanos() as u64);
        }
        let stats = engine
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .fabric_stats(now);
        out.push(format!(
            "{{\"name\":\"{}\",\"accesses\":{n},\"mean_ns\":{mean_ns:.1},\"batch_median_ns\":{:.1},\"p50_ns\":{:.1},\"p99_ns\":{:.1},\"p999_ns\":{:.1},\"max_ns\":{:.1},\"cache_hit_rate\":{:.4},\"guest_latency_p50_ns\":{:.1}}}",
            s.name,
            batches.percentile_ns(50.0),
            host.percentile_ns(50.0),
            host.percentile_ns(99.0),
            host.percentile_ns(99.9),
            host.max_ns(),
            stats.cpu_cache_hit_rate,
            guest.percentile_ns(50.0),
        ));
    }
    format!(
        "{{\"bench\":\"timed access: lock + HDM decode + cache model + engine + histogram, per guest access\",\"topology\":\"default (hb -> switch -> 2 type-3, 2-way 4 KiB, x8 Gen5 68B), cache 1 MiB 16-way 64 B\",\"timer_overhead_ns\":{:.1},\"scenarios\":[{}]}}",
        timer_overhead_ns(),
        out.join(",")
    )
}
