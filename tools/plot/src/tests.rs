use super::*;

fn count(svg: &str, needle: &str) -> usize {
    svg.matches(needle).count()
}

#[test]
fn line_chart_draws_every_series_and_point() {
    let c = LineChart {
        title: "t <1>".into(),
        x: Axis {
            label: "x".into(),
            log: false,
        },
        y: Axis {
            label: "y".into(),
            log: false,
        },
        series: vec![
            Series {
                name: "a".into(),
                color: "#123456".into(),
                points: vec![(0.0, 1.0), (1.0, 2.0), (2.0, 4.0)],
            },
            Series {
                name: "b".into(),
                color: String::new(),
                points: vec![(0.0, 3.0), (2.0, 1.0)],
            },
        ],
    };
    let svg = c.to_svg();
    assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
    assert_eq!(count(&svg, "<polyline"), 2);
    assert_eq!(count(&svg, "<circle"), 5);
    assert!(svg.contains("stroke=\"#123456\""));
    assert!(svg.contains(PALETTE[1]), "second series takes the palette");
    assert!(svg.contains("t &lt;1&gt;"), "text escaped");
    // The highest point sits at the top of the plot minus the 5 % headroom.
    let top = T + (H - T - B) * (1.0 - 4.0 / (4.0 * 1.05));
    assert!(svg.contains(&format!(",{top:.1}\"")) || svg.contains(&format!(",{top:.1} ")));
    assert_eq!(c.to_svg(), svg, "reproducible");
}

#[test]
fn log_axis_has_a_tick_per_decade() {
    let s = axis::Scale::fit(
        &Axis {
            label: String::new(),
            log: true,
        },
        [3.0, 40_000.0],
    );
    let ticks: Vec<String> = s.ticks().into_iter().map(|t| t.1).collect();
    assert_eq!(ticks, ["1.00", "10.0", "100", "1000", "10000", "100000"]);
    assert_eq!(s.fraction(1.0), 0.0);
    assert_eq!(s.fraction(100_000.0), 1.0);
    assert!((s.fraction(1000.0) - 0.6).abs() < 1e-12);
}

#[test]
fn bars_stack_segments_and_share_legend_colours() {
    let seg = |l: &str, v| Segment {
        label: l.into(),
        value: v,
    };
    let c = BarChart {
        title: "hops".into(),
        axis: Axis {
            label: "ns".into(),
            log: false,
        },
        panels: vec![BarPanel {
            title: String::new(),
            bars: vec![
                Bar {
                    label: "direct".into(),
                    segments: vec![seg("link", 10.0), seg("media", 70.0)],
                    ..Bar::default()
                },
                Bar {
                    label: "switch".into(),
                    segments: vec![seg("link", 10.0), seg("switch", 90.0), seg("media", 70.0)],
                    tick: Some(100.0),
                    dots: vec![160.0, 175.0],
                    ..Bar::default()
                },
            ],
        }],
        ..BarChart::default()
    };
    let svg = c.to_svg();
    assert_eq!(count(&svg, "<title>"), 5);
    // "media" has one colour in both bars: the legend's third.
    assert_eq!(
        count(
            &svg,
            &format!("fill=\"{}\" stroke=\"white\"><title>media", PALETTE[1])
        ),
        2
    );
    assert_eq!(count(&svg, "<circle"), 2);
    assert!(svg.contains(">170</text>"), "total after the bar");
}

#[test]
fn histogram_counts_every_value_once() {
    let h = Histogram {
        title: "h".into(),
        x: Axis::default(),
        values: vec![1.0, 1.1, 1.2, 5.0, 9.9, 10.0],
        bins: 3,
    };
    let svg = h.to_svg();
    assert_eq!(count(&svg, "stroke=\"white\"/>"), 3);
}

#[test]
fn charts_read_from_json() {
    let spec = r##"{"bars": {"title": "boot", "axis": {"label": "ms", "log": true},
        "panels": [{"bars": [{"label": "cxlvmm", "segments": [{"label": "median", "value": 5400}],
        "color": "#2b7bb9", "dots": [5300, 5600]}]}]}}"##;
    let c: Chart = serde_json::from_str(spec).unwrap();
    let svg = c.to_svg();
    assert!(svg.contains("#2b7bb9") && svg.contains(">ms</text>"));
    assert!(serde_json::from_str::<Chart>(r#"{"pie": {}}"#).is_err());
}
