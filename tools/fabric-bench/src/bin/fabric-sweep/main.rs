//! Bandwidth–latency curves and a per-hop latency breakdown, as SVG and CSV.
//!
//! `cargo run --release -p fabric-bench --bin fabric-sweep [-- OUT_DIR]`
//! (default `build/plots/`). Writes:
//!
//! * `bandwidth-latency.svg/.csv`: x8 Gen5 68B direct-attached device, closed
//!   loop (MLC/Mess-style, 1…512 generators) for read-only, write-only and
//!   50/50, plus an open-loop Poisson read sweep;
//! * `hop-latency.svg/.csv`: idle 64 B read latency split per hop for a
//!   direct-attached device and behind one and two switches.
//!
//! `fabric-sweep --loaded-latency [--topology FILE] [--loaders K]
//! [--delays NS,NS,...] [--chase-loads N] [--chase-think-ns NS] [OUT_DIR]` writes only
//! `loaded-latency.svg/.csv/.json` instead (see `loaded.rs`).

mod loaded;

use std::fmt::Write as _;
use std::path::PathBuf;

use fabric::link::capacity::mem_peak_bandwidth;
use fabric::workload::{closed_loop, open_loop, LinePattern};
use fabric::{Engine, Hop, Op, Source, Target, Topology};
use plot::{Axis, Bar, BarChart, BarPanel, LineChart, Segment, Series};

fn topo(switches: usize) -> Topology {
    let mut s = String::from("[[host_bridge]]\nid='hb0'\n");
    let mut port = "hb0.rp0".to_string();
    for i in 0..switches {
        s += &format!("[[switch]]\nid='sw{i}'\nport='{port}'\ndownstream_ports=1\n");
        port = format!("sw{i}.dp0");
    }
    s += &format!("[[type3]]\nid='mem0'\nport='{port}'\nvolatile='1G'\n");
    match Topology::from_toml_str(&s) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("fabric-sweep: {e}");
            std::process::exit(1);
        }
    }
}

fn hop_name(h: &Hop, t: &Topology) -> String {
    match h {
        Hop::HostBridge(_) => "host bridge".into(),
        Hop::RootComplex => "root complex".into(),
        Hop::Switch(_) => "switch".into(),
        Hop::Link { element, dir } => {
            format!("link {} {:?}", t.id_of(*element), dir).to_lowercase()
        }
        Hop::Media(_) => "media".into(),
        Hop::HostMemory => "host memory".into(),
        Hop::Bar(_) => "bar".into(),
    }
}

fn usage() -> ! {
    eprintln!(
        "usage: fabric-sweep [OUT_DIR]\n       fabric-sweep --loaded-latency [--topology FILE] \
         [--loaders K] [--delays NS,NS,...] [--chase-loads N] [--chase-think-ns NS] [OUT_DIR]"
    );
    std::process::exit(2)
}

fn main() -> std::io::Result<()> {
    let mut out = None;
    let mut loaded_mode = false;
    let mut opts = loaded::Options {
        topology: None,
        loaders: 4,
        delays_ns: vec![10.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0],
        chase_loads: 20_000,
        chase_think_ns: 0.0,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| usage());
        match a.as_str() {
            "--loaded-latency" => loaded_mode = true,
            "--topology" => opts.topology = Some(value()),
            "--loaders" => opts.loaders = value().parse().unwrap_or_else(|_| usage()),
            "--chase-loads" => opts.chase_loads = value().parse().unwrap_or_else(|_| usage()),
            "--chase-think-ns" => {
                opts.chase_think_ns = value()
                    .parse()
                    .ok()
                    .filter(|t: &f64| t.is_finite() && *t >= 0.0)
                    .unwrap_or_else(|| usage())
            }
            "--delays" => {
                opts.delays_ns = value()
                    .split(',')
                    .map(|d| d.trim().parse().unwrap_or_else(|_| usage()))
                    .collect()
            }
            "--help" | "-h" => usage(),
            s if s.starts_with('-') => usage(),
            _ if out.is_none() => out = Some(a),
            _ => usage(),
        }
    }
    let out = PathBuf::from(out.unwrap_or_else(|| "build/plots".to_string()));
    std::fs::create_dir_all(&out)?;
    if loaded_mode {
        if opts.delays_ns.is_empty() {
            usage();
        }
        return loaded::run(&opts, &out);
    }
    let t = topo(0);
    let link = &t.type3[0].link;
    let mut csv =
        String::from("curve,generators_or_offered_gbps,bandwidth_gbps,mean_ns,p50_ns,p99_ns\n");
    let mut series = Vec::new();
    let ks = [
        1, 4, 8, 16, 24, 32, 40, 48, 56, 64, 72, 80, 88, 96, 128, 192, 256, 384, 512,
    ];
    for (name, rf, color) in [
        ("read 100%", 1.0, plot::PALETTE[0]),
        ("write 100%", 0.0, plot::PALETTE[2]),
        ("read 50% / write 50%", 0.5, plot::PALETTE[4]),
    ] {
        let mut pts = Vec::new();
        for &k in &ks {
            let mut e = Engine::new(&t);
            let mut p = LinePattern {
                device: 0,
                span: 1 << 30,
                read_fraction: rf,
            };
            let pt =
                closed_loop(&mut e, &mut p, k, 20.0, 100_000, 1).map_err(std::io::Error::other)?;
            let _ = writeln!(
                csv,
                "closed {name},{k},{:.3},{:.2},{:.2},{:.2}",
                pt.bandwidth_gbps, pt.mean_ns, pt.p50_ns, pt.p99_ns
            );
            pts.push((pt.bandwidth_gbps, pt.mean_ns));
        }
        series.push(Series {
            name: format!("{name} (closed loop)"),
            color: color.into(),
            points: pts,
        });
    }
    let peak = mem_peak_bandwidth(link, 1.0) / 1e9;
    let mut pts = Vec::new();
    for rho in [
        0.1, 0.3, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.93, 0.95, 0.97, 0.98, 0.99,
    ] {
        let mut e = Engine::new(&t);
        let mut p = LinePattern {
            device: 0,
            span: 1 << 30,
            read_fraction: 1.0,
        };
        let pt =
            open_loop(&mut e, &mut p, rho * peak, 200_000, 2).map_err(std::io::Error::other)?;
        let _ = writeln!(
            csv,
            "open read 100%,{:.3},{:.3},{:.2},{:.2},{:.2}",
            rho * peak,
            pt.bandwidth_gbps,
            pt.mean_ns,
            pt.p50_ns,
            pt.p99_ns
        );
        pts.push((pt.bandwidth_gbps, pt.mean_ns));
    }
    series.push(Series {
        name: "read 100% (open loop)".into(),
        color: plot::PALETTE[1].into(),
        points: pts,
    });
    std::fs::write(out.join("bandwidth-latency.csv"), &csv)?;
    std::fs::write(
        out.join("bandwidth-latency.svg"),
        LineChart {
            title: "x8 Gen5 68B type-3, direct attach: bandwidth vs latency".into(),
            x: Axis {
                label: "achieved bandwidth (GB/s)".into(),
                log: false,
            },
            y: Axis {
                label: "mean latency (ns)".into(),
                log: false,
            },
            series,
        }
        .to_svg(),
    )?;

    let mut rows = Vec::new();
    let mut hcsv = String::from("topology,hop,ns\n");
    for n in 0..=2 {
        let t = topo(n);
        let mut e = Engine::new(&t);
        let (_, times) = e
            .request_breakdown(
                Source::Host,
                Target::Type3 { device: 0, dpa: 0 },
                64,
                Op::Read,
                0,
            )
            .map_err(std::io::Error::other)?;
        let name = match n {
            0 => "direct".to_string(),
            1 => "1 switch".to_string(),
            _ => format!("{n} switches"),
        };
        let mut prev = 0;
        let mut segments = Vec::new();
        for ht in times {
            let ns = (ht.leave - prev) as f64 / 1000.0;
            prev = ht.leave;
            let label = hop_name(&ht.hop, &t);
            let _ = writeln!(hcsv, "{name},{label},{ns:.3}");
            segments.push(Segment { label, value: ns });
        }
        rows.push(Bar {
            label: name,
            segments,
            ..Bar::default()
        });
    }
    std::fs::write(out.join("hop-latency.csv"), &hcsv)?;
    std::fs::write(
        out.join("hop-latency.svg"),
        BarChart {
            title: "idle 64 B read latency per hop (defaults: x8 Gen5 68B, 90 ns switch)".into(),
            axis: Axis {
                label: "nanoseconds, in path order (down, media, up)".into(),
                log: false,
            },
            panels: vec![BarPanel {
                title: String::new(),
                bars: rows,
            }],
            ..BarChart::default()
        }
        .to_svg(),
    )?;
    println!("wrote {}", out.display());
    Ok(())
}
