//! Single-core throughput of the detailed timing engine, as one JSON object.
//!
//! `cargo run --release -p fabric-bench --bin fabric-bench [-- --transactions N]`
//! `cargo run --release -p fabric-bench --bin fabric-bench -- --timed [--transactions N]`
//! (the host cost of one timed guest access, see `timed.rs`)
//!
//! Scenario: the default topology (host bridge → root port → switch → two
//! type-3 devices, x8 Gen5 68B links), the host issuing 64 B accesses to
//! addresses across the whole window (decoded to both devices), two reads per
//! write, Poisson arrivals at 70% of the switch uplink's peak: every access
//! walks the full path (bridge, two links each way with flit packing and
//! credits, switch, media) and queues where the fabric is busy.

mod timed;

use std::time::Instant;

use fabric::link::capacity::mem_peak_bandwidth;
use fabric::rng::SplitMix64;
use fabric::{Engine, Op, Source, Target, Topology};

fn main() {
    let mut n: Option<u64> = None;
    let mut timed = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--transactions" | "-n" => match args.next().and_then(|v| v.parse().ok()) {
                Some(v) => n = Some(v),
                None => {
                    eprintln!("fabric-bench: --transactions needs a count");
                    std::process::exit(2);
                }
            },
            "--timed" => timed = true,
            "--help" | "-h" => {
                println!("usage: fabric-bench [--timed] [--transactions N]");
                return;
            }
            other => {
                eprintln!("fabric-bench: unknown argument {other:?}");
                std::process::exit(2);
            }
        }
    }
    if timed {
        println!("{}", timed::run(n.unwrap_or(1_000_000)));
        return;
    }
    let n = n.unwrap_or(20_000_000);
    let topo = Topology::default_topology();
    let mut engine = Engine::new(&topo);
    let base = engine.address_map().window_base(0).unwrap_or(0);
    let span = topo.windows[0].size;
    let peak = mem_peak_bandwidth(&topo.switches[0].link, 2.0 / 3.0);
    let load = 0.7;
    let mean_gap_ps = 64.0 / (load * peak) * 1e12;

    // Pre-draw the workload so the timed loop measures the engine alone.
    let mut rng = SplitMix64::new(42);
    let chunk = 1 << 20;
    let mut gaps = Vec::with_capacity(chunk);
    let mut addrs = Vec::with_capacity(chunk);
    for _ in 0..chunk {
        gaps.push(rng.next_exp(mean_gap_ps) as u64);
        addrs.push(base + (rng.next_u64() % span) / 64 * 64);
    }

    let mut now = 0u64;
    let mut lat_sum = 0u128;
    let mut last = 0u64;
    let start = Instant::now();
    for i in 0..n {
        let k = (i as usize) & (chunk - 1);
        now += gaps[k];
        let op = if i % 3 == 2 { Op::Write } else { Op::Read };
        match engine.request(Source::Host, Target::Address(addrs[k]), 64, op, now) {
            Ok(c) => {
                lat_sum += c.latency() as u128;
                last = last.max(c.complete);
            }
            Err(e) => {
                eprintln!("fabric-bench: {e}");
                std::process::exit(1);
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let stats = engine.stats();
    println!(
        "{{\"scenario\":\"default topology (hb -> rp -> switch -> 2 type-3, x8 Gen5 68B), host 64 B accesses over the window, 2:1 read:write, Poisson arrivals at 70% of link peak\",\
\"transactions\":{n},\"seconds\":{secs:.4},\"transactions_per_second\":{tps:.0},\
\"simulated_bandwidth_gbps\":{bw:.3},\"mean_latency_ns\":{lat:.2},\"flits\":{flits},\"messages\":{msgs}}}",
        tps = n as f64 / secs,
        bw = (n * 64) as f64 / (last.max(1) as f64 * 1e-12) / 1e9,
        lat = lat_sum as f64 / n.max(1) as f64 / 1000.0,
        flits = stats.flits,
        msgs = stats.messages,
    );
}
