//! The pictures `--stats FILE.json` writes beside the JSON: each timed
//! window's access latency distribution (`FILE-latency.svg`) and every
//! link's utilisation per direction (`FILE-links.svg`).

use fabric::FabricStats;
use plot::{Axis, Bar, BarChart, BarPanel, LineChart, Segment, Series};

use super::TimedStats;

/// Latency histogram of each timed window: accesses per bucket against
/// latency (log), one line per window.
pub fn latency_svg(timed: &TimedStats) -> String {
    let series = timed
        .windows
        .iter()
        .map(|w| Series {
            name: format!(
                "{} (p50 {:.0} ns, p99 {:.0} ns, {:.0} % hits)",
                w.id,
                w.latency.percentile_ns(50.0),
                w.latency.percentile_ns(99.0),
                100.0 * w.hit_rate()
            ),
            points: w
                .latency
                .buckets_ns()
                .map(|(ns, n)| (ns, n as f64))
                .collect(),
            ..Default::default()
        })
        .collect();
    LineChart {
        title: "Timed memory: guest-visible latency per access".into(),
        x: Axis {
            label: "latency (ns)".into(),
            log: true,
        },
        y: Axis {
            label: "accesses".into(),
            log: true,
        },
        series,
    }
    .to_svg()
}

/// Utilisation of every link direction over the run.
pub fn links_svg(fabric: &FabricStats) -> String {
    let bars = fabric
        .links
        .iter()
        .map(|l| Bar {
            label: format!("{} {}", l.id, l.direction),
            segments: vec![Segment {
                label: "busy".into(),
                value: 100.0 * l.utilisation,
            }],
            note: Some(format!(
                "{:.2} % ({} B, queue mean {:.0} ns)",
                100.0 * l.utilisation,
                l.bytes,
                l.queue_mean_ns
            )),
            ..Default::default()
        })
        .collect();
    BarChart {
        title: "Fabric links: utilisation".into(),
        subtitle: format!("over {:.3} ms of guest time", fabric.span_ps as f64 / 1e9),
        axis: Axis {
            label: "% of the time busy".into(),
            log: false,
        },
        panels: vec![BarPanel {
            title: String::new(),
            bars,
        }],
    }
    .to_svg()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_plot_names_each_window_with_its_percentiles() {
        let mut t = TimedStats::new(vec!["ram".into()]);
        for ns in [200u64, 250, 300, 5000] {
            t.windows[0].record(ns * 1000, false, fabric::Op::Read, true);
        }
        let svg = latency_svg(&t);
        assert!(svg.starts_with("<svg"), "{}", &svg[..40]);
        assert!(svg.contains("ram (p50 2"), "window label with its median");
    }
}
