//! Regression pin for engine optimisations: a digest of every completion
//! time, hop time and counter over workloads that exercise each model
//! feature (68B/256B/256B-lopt flit packing, TLP framing on non-flit and flit
//! links, credits, CRC replays, media queues, RC P2P cap, splitting). The
//! digests were recorded from the straightforward engine before it was made
//! fast; an optimisation that changes any timing by a picosecond fails here.
//! The analytic tests say whether the model is right; this says it is
//! unchanged. Update a digest only with a deliberate model change, and say
//! why in the commit.

use fabric::rng::SplitMix64;
use fabric::{Engine, Op, Source, Target, Topology};

/// FNV-1a over 64-bit words.
struct Digest(u64);

impl Digest {
    fn new() -> Self {
        Digest(0xcbf2_9ce4_8422_2325)
    }

    fn add(&mut self, v: u64) {
        for b in v.to_le_bytes() {
            self.0 ^= b as u64;
            self.0 = self.0.wrapping_mul(0x100_0000_01b3);
        }
    }

    fn stats(&mut self, e: &Engine) {
        let s = e.stats();
        for v in [s.requests, s.messages, s.flits, s.replays] {
            self.add(v);
        }
    }
}

fn direct(link: &str, media: &str) -> Topology {
    Topology::from_toml_str(&format!(
        "[fabric]\nseed = 7\n[[host_bridge]]\nid='hb0'\n[[type3]]\nid='m'\nport='hb0.rp0'\nvolatile='1G'\nlink = {{ {link} }}\nmedia = {{ {media} }}\n"
    ))
    .unwrap()
}

/// The `fabric-bench` scenario (decoded host addresses, 2:1 read:write,
/// Poisson arrivals), at a load where queues build up.
fn bench_like(topo: &Topology, n: u64, mean_gap: f64, d: &mut Digest) {
    let mut e = Engine::new(topo);
    let base = e.address_map().window_base(0).unwrap();
    let span = topo.windows[0].size;
    let mut rng = SplitMix64::new(42);
    let mut now = 0u64;
    for i in 0..n {
        now += rng.next_exp(mean_gap) as u64;
        let addr = base + (rng.next_u64() % span) / 64 * 64;
        let op = if i % 3 == 2 { Op::Write } else { Op::Read };
        let c = e
            .request(Source::Host, Target::Address(addr), 64, op, now)
            .unwrap();
        d.add(c.complete);
        d.add(c.route.0 as u64);
    }
    d.stats(&e);
}

/// Mixed sizes and ops to one device, with bursts issued at the same time
/// and CRC errors, through the traced (slow) path.
fn mixed_direct(topo: &Topology, n: u64, d: &mut Digest) {
    let mut e = Engine::new(topo);
    e.enable_trace();
    let mut rng = SplitMix64::new(3);
    let mut now = 0u64;
    for i in 0..n {
        if !rng.next_u64().is_multiple_of(4) {
            now += rng.next_exp(4_000.0) as u64;
        }
        let bytes = [64, 64, 64, 1, 128, 4096][(rng.next_u64() % 6) as usize];
        let op = if rng.next_u64().is_multiple_of(3) {
            Op::Write
        } else {
            Op::Read
        };
        let c = e
            .request(
                Source::Host,
                Target::Type3 {
                    device: 0,
                    dpa: i * 64 % (1 << 30),
                },
                bytes,
                op,
                now,
            )
            .unwrap();
        d.add(c.complete);
    }
    for t in e.trace() {
        d.add(t.complete ^ (t.issue << 1));
    }
    let (c, hops) = e
        .request_breakdown(
            Source::Host,
            Target::Type3 { device: 0, dpa: 0 },
            256,
            Op::Read,
            now,
        )
        .unwrap();
    d.add(c.complete);
    for h in hops {
        d.add(h.leave);
    }
    d.stats(&e);
}

const P2P: &str = r#"
[fabric]
seed = 11
rc_p2p_bandwidth_gbps = 20
[[host_bridge]]
id = "hb0"
root_ports = 3
[[host_bridge]]
id = "hb1"
[[switch]]
id = "sw0"
port = "hb0.rp0"
downstream_ports = 3
link = { gen = 5, width = 16, flit = "68B" }
[[accelerator]]
id = "a0"
port = "sw0.dp0"
link = { gen = 4, width = 16, flit = "none", ber = 1e-7 }
[[accelerator]]
id = "a1"
port = "sw0.dp1"
link = { gen = 5, width = 8, flit = "68B" }
[[accelerator]]
id = "a2"
port = "hb0.rp1"
link = { gen = 6, width = 16, flit = "256B", ber = 1e-7 }
[[accelerator]]
id = "a3"
port = "hb1.rp0"
link = { gen = 4, width = 8, flit = "none" }
[[type3]]
id = "m0"
port = "sw0.dp2"
volatile = "256M"
[[type3]]
id = "m1"
port = "hb0.rp2"
volatile = "256M"
link = { gen = 6, width = 16, flit = "256B-lopt" }
[[window]]
targets = ["hb0"]
size = "512M"
granularity = 4096
"#;

/// DMA, peer-to-peer and accelerator-to-memory traffic of many sizes.
fn p2p(n: u64, d: &mut Digest) {
    let t = Topology::from_toml_str(P2P).unwrap();
    let mut e = Engine::new(&t);
    let base = e.address_map().window_base(0).unwrap();
    let mut rng = SplitMix64::new(5);
    let mut now = 0u64;
    for _ in 0..n {
        now += rng.next_exp(20_000.0) as u64;
        let src = match rng.next_u64() % 5 {
            4 => Source::Host,
            a => Source::Accelerator(a as usize),
        };
        let target = match rng.next_u64() % 5 {
            0 => Target::HostMemory,
            1 => Target::Type3 {
                device: (rng.next_u64() % 2) as usize,
                dpa: rng.next_u64() % (256 << 20) / 64 * 64,
            },
            2 => Target::Address(base + rng.next_u64() % (512 << 20)),
            a => Target::Accelerator(((a + rng.next_u64()) % 4) as usize),
        };
        let bytes = [4, 64, 200, 256, 1000, 4096, 16384][(rng.next_u64() % 7) as usize];
        let op = if rng.next_u64().is_multiple_of(2) {
            Op::Write
        } else {
            Op::Read
        };
        match e.request(src, target, bytes, op, now) {
            Ok(c) => {
                d.add(c.complete);
                d.add(c.route.0 as u64);
            }
            Err(err) => d.add(err.to_string().len() as u64),
        }
    }
    for (s, tg) in [
        (Source::Accelerator(0), Target::Accelerator(1)),
        (Source::Accelerator(0), Target::Accelerator(3)),
        (Source::Accelerator(2), Target::HostMemory),
        (Source::Accelerator(1), Target::Type3 { device: 1, dpa: 0 }),
    ] {
        for op in [Op::Read, Op::Write] {
            let (c, hops) = e.request_breakdown(s, tg, 1024, op, now).unwrap();
            d.add(c.complete);
            for h in hops {
                d.add(h.leave);
            }
            d.add(e.idle_latency(s, tg, 512, op).unwrap());
        }
    }
    d.stats(&e);
}

fn check(name: &str, d: Digest, expected: u64) {
    assert_eq!(
        d.0, expected,
        "{name}: digest {:#018x}, expected {expected:#018x}: the engine's timing changed",
        d.0
    );
}

#[test]
fn bench_scenario_unchanged() {
    let topo = Topology::default_topology();
    let mut d = Digest::new();
    // 70% load (as fabric-bench) and overload (gap below the service time).
    bench_like(&topo, 200_000, 3_300.0, &mut d);
    bench_like(&topo, 100_000, 1_500.0, &mut d);
    check("bench", d, 0xd2fd_23ef_c12d_8ee6);
}

#[test]
fn flit_modes_unchanged() {
    let mut d = Digest::new();
    for link in [
        "gen = 5, width = 8, flit = '68B', ber = 1e-6",
        "gen = 6, width = 16, flit = '256B', ber = 1e-6",
        "gen = 6, width = 16, flit = '256B-lopt', ber = 1e-6, credits = 8",
        "gen = 5, width = 4, flit = '68B', retimers = 2, credits = 4",
    ] {
        mixed_direct(&direct(link, "queue_depth = 8"), 30_000, &mut d);
    }
    check("flit modes", d, 0xb6f2_0a5f_7d78_459c);
}

#[test]
fn pcie_and_p2p_unchanged() {
    let mut d = Digest::new();
    p2p(30_000, &mut d);
    check("p2p", d, 0x7096_f40d_310c_f7cd);
}

/// The compiled CXL.mem path (used by `request`) against the general stage
/// walk (used by `request_breakdown`, which records per-hop times): the
/// same sequence on two engines must complete identically.
#[test]
fn compiled_path_matches_stage_walk() {
    let chain = |flit: &str, ber: &str| {
        format!(
            "[fabric]\nseed = 3\n[[host_bridge]]\nid='h'\n[[switch]]\nid='s0'\nport='h.rp0'\nlink={{gen=5,width=8,flit='{flit}'{ber}}}\n[[switch]]\nid='s1'\nport='s0.dp0'\nlatency_ns=0\n[[type3]]\nid='a'\nport='s1.dp0'\nvolatile='256M'\nlink={{gen=5,width=4,flit='68B',credits=4{ber}}}\n[[type3]]\nid='b'\nport='s0.dp1'\nvolatile='256M'\nmedia={{queue_depth=2}}\n"
        )
    };
    let topos = [
        chain("256B", ""),
        chain("256B-lopt", ", ber=1e-6"),
        chain("68B", ", ber=1e-6"),
    ]
    .map(|text| Topology::from_toml_str(&text).unwrap());
    let narrow = direct("gen = 4, width = 2, flit = '68B', credits = 2", "");
    for t in topos.iter().chain([&narrow]) {
        let (mut fast, mut walk) = (Engine::new(t), Engine::new(t));
        let mut rng = SplitMix64::new(9);
        let mut now = 0u64;
        for i in 0..20_000u64 {
            now += rng.next_exp(3_000.0) as u64;
            let target = Target::Type3 {
                device: (rng.next_u64() % t.type3.len() as u64) as usize,
                dpa: i * 64 % (256 << 20),
            };
            let bytes = [64, 64, 64, 128, 512][(rng.next_u64() % 5) as usize];
            let op = if rng.next_u64().is_multiple_of(3) {
                Op::Write
            } else {
                Op::Read
            };
            let a = fast.request(Source::Host, target, bytes, op, now).unwrap();
            let (b, _) = walk
                .request_breakdown(Source::Host, target, bytes, op, now)
                .unwrap();
            assert_eq!(a, b, "request {i} on\n{t}");
        }
        assert_eq!(fast.stats(), walk.stats());
    }
}
