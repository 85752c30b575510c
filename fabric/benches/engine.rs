//! Criterion bench of the timing engine: simulated transactions per second
//! on the default topology (same scenario as `fabric-bench`).

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use fabric::rng::SplitMix64;
use fabric::{Engine, Op, Source, Target, Topology};

fn bench(c: &mut Criterion) {
    let topo = Topology::default_topology();
    let mut g = c.benchmark_group("engine");
    const BATCH: u64 = 10_000;
    g.throughput(Throughput::Elements(BATCH));
    g.bench_function("host_64B_lines_default_topology", |b| {
        let mut engine = Engine::new(&topo);
        let base = engine.address_map().window_base(0).unwrap_or(0);
        let span = topo.windows[0].size;
        let mut rng = SplitMix64::new(1);
        let mut now = 0u64;
        b.iter(|| {
            for i in 0..BATCH {
                now += rng.next_exp(3300.0) as u64;
                let addr = base + (rng.next_u64() % span) / 64 * 64;
                let op = if i % 3 == 2 { Op::Write } else { Op::Read };
                let c = engine.request(Source::Host, Target::Address(addr), 64, op, now);
                black_box(c.ok());
            }
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
