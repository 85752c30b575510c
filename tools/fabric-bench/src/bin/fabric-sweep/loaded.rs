//! `fabric-sweep --loaded-latency`: the model's loaded-latency curve for a
//! topology, as a guest on timed memory would measure it (one chaser plus
//! k loaders, every access through the CPU cache model and the fabric;
//! `fabric::workload::loaded_latency`), to set beside the curve the guest
//! tool measures on the same topology.
//!
//! Two series: `k` loaders with the injection delay swept (MLC
//! `--loaded_latency` style), and 0..=k loaders at the smallest delay.
//! Delays are exponential with the given mean; the default sweep starts at
//! 10 ns because with no delay at all the deterministic generators fall
//! into lock-step below saturation and never queue behind each other.
//! Without `--topology` the topology is one x1 Gen3 68B device (a link a
//! few vCPUs can saturate) with a 1 GiB timed window. The first timed
//! window (else the first window) holds the buffers: 8 MiB chased, the
//! rest of up to 64 MiB loaded. `--chase-think-ns` puts guest time between
//! the chaser's loads (0 by default).

use std::fmt::Write as _;
use std::path::Path;

use fabric::topology::WindowMode;
use fabric::workload::{loaded_latency, LoadedLatencyConfig, LoadedLatencyPoint};
use fabric::{Engine, Topology};

use plot::{Axis, LineChart, Series};

const SLOW_X1: &str = "\
[[host_bridge]]\nid = 'hb0'\n\
[[type3]]\nid = 'mem0'\nport = 'hb0.rp0'\nvolatile = '1G'\nlink = { gen = 3, width = 1 }\n\
[[window]]\nid = 'timed'\ntargets = ['hb0']\nsize = '1G'\nmode = 'timed'\n";

pub struct Options {
    pub topology: Option<String>,
    pub loaders: usize,
    pub delays_ns: Vec<f64>,
    pub chase_loads: u64,
    /// Guest time between the chaser's loads.
    pub chase_think_ns: f64,
}

fn point(
    topo: &Topology,
    window: usize,
    loaders: usize,
    delay: f64,
    opts: &Options,
) -> LoadedLatencyPoint {
    let mut e = Engine::new(topo);
    let base = e.address_map().window_base(window).unwrap_or(0);
    let size = topo.windows[window].size;
    let chase = (8u64 << 20).min(size / 2);
    let load = (64u64 << 20).min(size - chase);
    let cfg = LoadedLatencyConfig {
        delay_ns: delay,
        chase_loads: opts.chase_loads,
        chase_think_ns: opts.chase_think_ns,
        ..LoadedLatencyConfig::new(base, chase, load, loaders)
    };
    match loaded_latency(&mut e, &cfg) {
        Ok(p) => p,
        Err(err) => {
            eprintln!("fabric-sweep: {err}");
            std::process::exit(1);
        }
    }
}

pub fn run(opts: &Options, out: &Path) -> std::io::Result<()> {
    let (text, name) = match &opts.topology {
        Some(path) => (std::fs::read_to_string(path)?, path.clone()),
        None => (
            SLOW_X1.to_string(),
            "built-in x1 Gen3 68B device".to_string(),
        ),
    };
    let topo = Topology::from_toml_str(&text)
        .map_err(|e| std::io::Error::other(format!("{name}: {e}")))?;
    if topo.windows.is_empty() || topo.type3.is_empty() {
        return Err(std::io::Error::other(format!(
            "{name}: needs a window and a type-3 device"
        )));
    }
    let window = topo
        .windows
        .iter()
        .position(|w| w.mode == WindowMode::Timed)
        .unwrap_or(0);
    let mut csv = String::from(
        "series,loaders,delay_ns,chase_mean_ns,chase_p50_ns,chase_p99_ns,fabric_gbps,loader_gbps,cache_hit_rate\n",
    );
    let mut all = Vec::new();
    let mut series = Vec::new();
    let min_delay = opts.delays_ns.iter().copied().fold(f64::INFINITY, f64::min);
    // (label, colour, (loaders, delay) per point)
    type Run = (&'static str, &'static str, Vec<(usize, f64)>);
    let runs: [Run; 2] = [
        (
            "delay sweep",
            "#4e79a7",
            opts.delays_ns.iter().map(|&d| (opts.loaders, d)).collect(),
        ),
        (
            "loader sweep",
            "#e15759",
            (0..=opts.loaders).map(|k| (k, min_delay)).collect(),
        ),
    ];
    for (label, color, pts) in runs {
        let mut xy = Vec::new();
        for (k, d) in pts {
            let p = point(&topo, window, k, d, opts);
            let _ = writeln!(
                csv,
                "{label},{k},{d},{:.2},{:.2},{:.2},{:.4},{:.4},{:.4}",
                p.chase.mean_ns(),
                p.chase.percentile_ns(50.0),
                p.chase.percentile_ns(99.0),
                p.fabric_gbps,
                p.loader_gbps,
                p.cache_hit_rate
            );
            xy.push((p.fabric_gbps, p.chase.mean_ns()));
            all.push(p);
        }
        let name = if label == "delay sweep" {
            format!("{} loaders, delay swept", opts.loaders)
        } else {
            format!("0..{} loaders, delay {min_delay} ns", opts.loaders)
        };
        series.push(Series {
            name,
            color: color.into(),
            points: xy,
        });
    }
    std::fs::write(out.join("loaded-latency.csv"), &csv)?;
    let json = serde_json::json!({ "topology": name, "points": all });
    std::fs::write(out.join("loaded-latency.json"), json.to_string())?;
    std::fs::write(
        out.join("loaded-latency.svg"),
        LineChart {
            title: format!("loaded latency through the timed front end ({name})"),
            x: Axis {
                label: "fabric bandwidth (GB/s)".into(),
                log: false,
            },
            y: Axis {
                label: "chaser mean latency (ns)".into(),
                log: false,
            },
            series,
        }
        .to_svg(),
    )?;
    print!("{csv}");
    Ok(())
}
