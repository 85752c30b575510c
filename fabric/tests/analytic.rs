//! The model against values computed here from first principles (slot
//! counts, line rates), never against numbers copied from a run.

use fabric::link::capacity::mem_peak_bandwidth;
use fabric::workload::{closed_loop, LinePattern};
use fabric::{Engine, Hop, Op, PathClass, Source, Target, Topology};

/// Bytes per second per direction of PCIe gen5 lanes after 128b/130b.
fn gen5_raw(width: f64) -> f64 {
    32e9 * width / 8.0 * 128.0 / 130.0
}

/// One type-3 device on one root port; media made fast unless `media` says.
fn direct(link: &str, media: &str) -> Topology {
    Topology::from_toml_str(&format!(
        "[[host_bridge]]\nid='hb0'\n[[type3]]\nid='m'\nport='hb0.rp0'\nvolatile='1G'\nlink = {{ {link} }}\nmedia = {{ {media} }}\n"
    ))
    .unwrap()
}

const FAST_MEDIA: &str =
    "read_bandwidth_gbps = 1000, write_bandwidth_gbps = 1000, queue_depth = 1024";

/// Saturated data bandwidth in GB/s: `n` lines issued at once, ops cycling
/// through `mix`.
fn saturate(t: &Topology, mix: &[Op], n: u64) -> f64 {
    let mut e = Engine::new(t);
    let mut last = 0;
    for i in 0..n {
        let op = mix[i as usize % mix.len()];
        let c = e
            .request(
                Source::Host,
                Target::Type3 {
                    device: 0,
                    dpa: i * 64 % (1 << 30),
                },
                64,
                op,
                0,
            )
            .unwrap();
        last = last.max(c.complete);
    }
    (n * 64) as f64 / (last as f64 * 1e-12) / 1e9
}

fn within(measured: f64, expected: f64, tol: f64) -> bool {
    (measured - expected).abs() <= expected * tol
}

#[test]
fn x8_gen5_68b_bandwidth_matches_slot_arithmetic() {
    let t = direct("gen = 5, width = 8, flit = '68B'", FAST_MEDIA);
    // A slot is 16 B of a 68 B flit: 17 wire bytes. Read-only is upstream
    // bound: 4 data slots + 1/3 of a DRS header slot per line. Write-only is
    // downstream bound: RwD header + 4 data slots. 50/50 is downstream bound:
    // Req (1 slot) + RwD (5 slots) per two lines.
    let raw = gen5_raw(8.0);
    let read = raw * 64.0 / ((4.0 + 1.0 / 3.0) * 17.0) / 1e9;
    let write = raw * 64.0 / (5.0 * 17.0) / 1e9;
    let mixed = raw * 128.0 / (6.0 * 17.0) / 1e9;
    let r = saturate(&t, &[Op::Read], 200_000);
    let w = saturate(&t, &[Op::Write], 200_000);
    let m = saturate(&t, &[Op::Read, Op::Write], 200_000);
    assert!(within(r, read, 0.01), "read {r} vs {read}");
    assert!(within(w, write, 0.01), "write {w} vs {write}");
    assert!(within(m, mixed, 0.01), "mixed {m} vs {mixed}");
    // The targets of docs/timing-sources.md (the Mess CXL curves), ±5%.
    assert!(within(r, 27.4, 0.05), "read {r}");
    assert!(within(w, 23.7, 0.05), "write {w}");
    assert!(within(m, 39.5, 0.05), "mixed {m}");
    // The closed form used for CDAT agrees too.
    let l = &t.type3[0].link;
    assert!(within(mem_peak_bandwidth(l, 1.0) / 1e9, read, 0.001));
    assert!(within(mem_peak_bandwidth(l, 0.0) / 1e9, write, 0.001));
    assert!(within(mem_peak_bandwidth(l, 0.5) / 1e9, mixed, 0.001));
}

#[test]
fn x16_doubles_x8() {
    let x8 = direct("gen = 5, width = 8", FAST_MEDIA);
    let x16 = direct("gen = 5, width = 16", FAST_MEDIA);
    for mix in [&[Op::Read][..], &[Op::Write], &[Op::Read, Op::Write]] {
        let a = saturate(&x8, mix, 100_000);
        let b = saturate(&x16, mix, 200_000);
        assert!(within(b, 2.0 * a, 0.02), "{mix:?}: x16 {b} vs 2 x {a}");
    }
}

#[test]
fn mixed_traffic_beats_read_only_on_default_device() {
    // Default media (64 GB/s shared) and default x8 Gen5 link: the link is
    // full duplex, so a mix uses both directions.
    let t = direct("", "");
    let r = saturate(&t, &[Op::Read], 100_000);
    let m = saturate(&t, &[Op::Read, Op::Write], 100_000);
    assert!(m > r * 1.3, "mixed {m} read {r}");
}

#[test]
fn media_bandwidth_limits_when_slower_than_link() {
    let t = direct("", "read_bandwidth_gbps = 10");
    let r = saturate(&t, &[Op::Read], 50_000);
    assert!(within(r, 10.0, 0.01), "{r}");
}

fn flit68_ps(width: f64) -> u64 {
    (68.0 / gen5_raw(width) * 1e12).round() as u64
}

/// Switches chained: hb0.rp0 -> s1 -> s2 ... -> device.
fn chain(switches: usize, sw_latency: f64) -> Topology {
    let mut s = String::from("[[host_bridge]]\nid='hb0'\n");
    let mut port = "hb0.rp0".to_string();
    for i in 0..switches {
        s += &format!(
            "[[switch]]\nid='s{i}'\nport='{port}'\ndownstream_ports=1\nlatency_ns={sw_latency}\n"
        );
        port = format!("s{i}.dp0");
    }
    s += &format!("[[type3]]\nid='m'\nport='{port}'\nvolatile='256M'\n");
    Topology::from_toml_str(&s).unwrap()
}

fn idle_read(t: &Topology) -> u64 {
    Engine::new(t)
        .idle_latency(
            Source::Host,
            Target::Type3 { device: 0, dpa: 0 },
            64,
            Op::Read,
        )
        .unwrap()
}

#[test]
fn idle_latency_from_components() {
    // Host bridge 60 + both port pipelines 25 + media 70 + 64 B at 64 GB/s
    // (1 ns) + one Req flit down + two DRS flits up (header + 3 data, 1 data).
    let t = chain(0, 90.0);
    let expected = 60_000 + 25_000 + 70_000 + 1_000 + 3 * flit68_ps(8.0);
    assert_eq!(idle_read(&t), expected);
}

#[test]
fn each_switch_hop_adds_its_latency() {
    // An added switch adds its hop latency plus store-and-forward of the
    // request flit and the two response flits on the one link it adds
    // (its ports' pipelines are inside the hop latency).
    let per_hop = 90_000 + 3 * flit68_ps(8.0);
    let base = idle_read(&chain(0, 90.0));
    for n in 1..=4 {
        assert_eq!(
            idle_read(&chain(n, 90.0)),
            base + n as u64 * per_hop,
            "{n} switches"
        );
    }
    // Changing only the configured hop latency moves idle latency by exactly that.
    for (lat, hops) in [(0.0, 1), (190.0, 1), (250.0, 3)] {
        let d = idle_read(&chain(hops, lat)) as i64 - idle_read(&chain(hops, 90.0)) as i64;
        assert_eq!(
            d,
            hops as i64 * ((lat * 1000.0) as i64 - 90_000),
            "{lat} ns x {hops}"
        );
    }
    // A retimer adds exactly its 30 ns round trip.
    let plain = direct("", "");
    let retimed = direct("retimers = 1", "");
    assert_eq!(idle_read(&retimed) - idle_read(&plain), 30_000);
}

#[test]
fn latency_flat_then_cliff_under_load() {
    let t = direct("", "");
    let idle = idle_read(&t) as f64 / 1000.0;
    let peak = gen5_raw(8.0) * 64.0 / ((4.0 + 1.0 / 3.0) * 17.0) / 1e9;
    let mut saw_cliff = false;
    for k in [8, 32, 48, 64, 72, 80, 96, 128, 256, 384] {
        let mut e = Engine::new(&t);
        let mut p = LinePattern {
            device: 0,
            span: 1 << 30,
            read_fraction: 1.0,
        };
        let pt = closed_loop(&mut e, &mut p, k, 20.0, 100_000, 11).unwrap();
        let load = pt.bandwidth_gbps / peak;
        assert!(load <= 1.001, "k {k}: {load} of peak");
        if load <= 0.80 {
            assert!(
                pt.mean_ns <= 1.15 * idle,
                "k {k}: {} ns at {load}",
                pt.mean_ns
            );
        }
        if pt.mean_ns >= 3.0 * idle {
            // The cliff only appears once the link is saturated.
            assert!(
                load >= 0.98,
                "k {k}: {}x idle at only {load}",
                pt.mean_ns / idle
            );
            saw_cliff = true;
        }
    }
    assert!(saw_cliff, "no point reached 3x idle latency");
}

#[test]
fn lopt_flit_consumes_first_half_early() {
    let std = direct("gen = 6, width = 16, flit = '256B'", "");
    let lopt = direct("gen = 6, width = 16, flit = '256B-lopt'", "");
    // Flit time at x16 Gen6: 256 B / (64 GT/s x 16 / 8) = 2 ns. The Req
    // (slot 0) and the DRS (header + data in slots 0-4) both sit in the
    // first half, so each direction saves half a flit.
    let flit = 256.0 / (64e9 * 16.0 / 8.0) * 1e12;
    assert_eq!(idle_read(&std) - idle_read(&lopt), flit as u64);
}

#[test]
fn flit256_throughput_near_slot_bound() {
    for flit in ["256B", "256B-lopt"] {
        let t = direct(&format!("gen = 6, width = 16, flit = '{flit}'"), FAST_MEDIA);
        let l = &t.type3[0].link;
        for (mix, r) in [
            (&[Op::Read][..], 1.0),
            (&[Op::Write], 0.0),
            (&[Op::Read, Op::Write], 0.5),
        ] {
            let bound = mem_peak_bandwidth(l, r) / 1e9;
            let got = saturate(&t, mix, 100_000);
            assert!(
                got <= bound * 1.001 && got >= bound * 0.85,
                "{flit} {mix:?}: {got} vs {bound}"
            );
        }
    }
}

const P2P: &str = r#"
[[host_bridge]]
id = "hb0"
root_ports = 2
[[host_bridge]]
id = "hb1"
[[switch]]
id = "sw0"
port = "hb0.rp0"
downstream_ports = 2
[[accelerator]]
id = "a0"
port = "sw0.dp0"
link = { gen = 4, width = 16, flit = "none" }
[[accelerator]]
id = "a1"
port = "sw0.dp1"
link = { gen = 4, width = 16, flit = "none" }
[[accelerator]]
id = "a2"
port = "hb0.rp1"
link = { gen = 4, width = 16, flit = "none" }
[[accelerator]]
id = "a3"
port = "hb1.rp0"
link = { gen = 4, width = 16, flit = "none" }
"#;

#[test]
fn p2p_switch_local_beats_root_complex() {
    let t = Topology::from_toml_str(P2P).unwrap();
    let mut e = Engine::new(&t);
    let mut lat = Vec::new();
    for (peer, class) in [
        (1, PathClass::SwitchLocal { switches: 1 }),
        (2, PathClass::SameHostBridge),
        (3, PathClass::CrossHostBridge),
    ] {
        let l = e
            .idle_latency(
                Source::Accelerator(0),
                Target::Accelerator(peer),
                4096,
                Op::Write,
            )
            .unwrap();
        let rid = e
            .resolve(Source::Accelerator(0), Target::Accelerator(peer))
            .unwrap();
        let route = e.route(rid);
        assert_eq!(route.class, class);
        let through_hb = route.hops.iter().any(|h| matches!(h, Hop::HostBridge(_)));
        assert_eq!(through_hb, peer != 1, "{route}");
        lat.push(l);
    }
    assert!(lat[0] < lat[1] && lat[1] < lat[2], "{lat:?}");
}

#[test]
fn pcie_posted_write_efficiency() {
    // Gen4 x16, non-flit: 256 B payload + 16 B header + 8 B framing per TLP.
    let t = Topology::from_toml_str(P2P).unwrap();
    let mut e = Engine::new(&t);
    let n = 2000u64;
    let mut last = 0;
    for _ in 0..n {
        let c = e
            .request(
                Source::Accelerator(2),
                Target::HostMemory,
                64 << 10,
                Op::Write,
                0,
            )
            .unwrap();
        last = last.max(c.complete);
    }
    let got = (n * (64 << 10)) as f64 / (last as f64 * 1e-12);
    let expected = 16e9 * 16.0 / 8.0 * 128.0 / 130.0 * 256.0 / (256.0 + 24.0);
    assert!(within(got, expected, 0.01), "{got} vs {expected}");
}

#[test]
fn window_decode_interleaves_host_bridges() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/two-host-bridges.toml"
    ))
    .unwrap();
    let t = Topology::from_toml_str(&text).unwrap();
    let e = Engine::with_layout(&t, 0, 0x40_0000_0000);
    let m = e.address_map();
    let base = 0x40_0000_0000;
    let d = |a| m.decode(a).map(|d| (d.device, d.dpa));
    assert_eq!(d(base), Ok((0, 0)));
    assert_eq!(d(base + 4095), Ok((0, 4095)));
    assert_eq!(d(base + 4096), Ok((1, 0)));
    assert_eq!(d(base + 2 * 4096 + 8), Ok((0, 4096 + 8)));
    assert!(m.decode(base + (512 << 20)).is_err());
    assert!(m.decode(base - 1).is_err());
}

fn mixed_trace(seed: u64) -> (Vec<fabric::TraceEntry>, u64) {
    let t = direct("ber = 1e-6", "");
    let mut e = Engine::with_seed(&t, seed);
    e.enable_trace();
    let mut rng = fabric::rng::SplitMix64::new(99);
    let mut now = 0u64;
    for i in 0..20_000u64 {
        now += (rng.next_exp(3_000.0)) as u64;
        let op = if rng.next_u64().is_multiple_of(3) {
            Op::Write
        } else {
            Op::Read
        };
        e.request(
            Source::Host,
            Target::Type3 {
                device: 0,
                dpa: i * 64,
            },
            64,
            op,
            now,
        )
        .unwrap();
    }
    (e.trace().to_vec(), e.stats().replays)
}

#[test]
fn same_seed_same_trace() {
    let (a, replays) = mixed_trace(5);
    let (b, _) = mixed_trace(5);
    assert!(
        replays > 0,
        "BER 1e-6 over 544-bit flits must cause replays"
    );
    assert_eq!(a, b);
    let (c, _) = mixed_trace(6);
    assert_ne!(a, c, "a different seed must change the CRC errors");
}

#[test]
fn crc_replays_follow_ber() {
    // Per-flit error probability 1 - (1 - BER)^544; flits counted by the engine.
    let t = direct("ber = 1e-5", "");
    let mut e = Engine::with_seed(&t, 1);
    for i in 0..50_000u64 {
        e.request(
            Source::Host,
            Target::Type3 {
                device: 0,
                dpa: i * 64,
            },
            64,
            Op::Read,
            i * 20_000,
        )
        .unwrap();
    }
    let s = e.stats();
    let p = 1.0 - (1.0f64 - 1e-5).powi(544);
    let expected = s.flits as f64 * p;
    let got = s.replays as f64;
    // ~1,000 expected events: 4 sigma is about 13%.
    assert!(within(got, expected, 0.13), "{got} replays vs {expected}");
}
