//! Small SVG charts for the benchmarks, byte-for-byte reproducible (no
//! fonts measured, no randomness): line charts with several series, bar
//! charts (stacked segments, a tick and dots per bar, several panels),
//! histograms; linear or log axes with labels.
//!
//! Every chart type deserialises from JSON, so scripts in other languages
//! draw through the `svg-plot` binary (`svg-plot SPEC.json OUT.svg`).

#![forbid(unsafe_code)]

mod axis;
mod svg;

use serde::Deserialize;

pub use axis::Axis;
use axis::Scale;
use svg::{esc, Svg};

/// Colours for series and segments without one of their own.
pub const PALETTE: [&str; 8] = [
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#9c755f",
];

/// One line of a [`LineChart`].
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct Series {
    pub name: String,
    /// CSS colour; empty: from [`PALETTE`].
    pub color: String,
    pub points: Vec<(f64, f64)>,
}

/// Lines with markers, a legend on the right.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct LineChart {
    pub title: String,
    pub x: Axis,
    pub y: Axis,
    pub series: Vec<Series>,
}

/// One stacked part of a [`Bar`]; parts with the same label share a colour
/// and a legend entry.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct Segment {
    pub label: String,
    pub value: f64,
}

/// A horizontal bar: stacked segments, an optional tick (e.g. a second
/// statistic), dots (e.g. single runs) and a note after its end.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct Bar {
    pub label: String,
    pub segments: Vec<Segment>,
    /// Colour of a one-segment bar; empty: by segment label.
    pub color: String,
    pub tick: Option<f64>,
    pub dots: Vec<f64>,
    /// Text after the bar; None: the total.
    pub note: Option<String>,
}

/// A group of bars with its own axis range and a heading.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct BarPanel {
    pub title: String,
    pub bars: Vec<Bar>,
}

/// Horizontal bars in one or more panels sharing the axis kind.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct BarChart {
    pub title: String,
    pub subtitle: String,
    /// The value axis (its label goes below the chart).
    pub axis: Axis,
    pub panels: Vec<BarPanel>,
}

/// Counts of `values` in `bins` equal bins between their minimum and maximum.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct Histogram {
    pub title: String,
    pub x: Axis,
    pub values: Vec<f64>,
    pub bins: usize,
}

/// Any chart, as the `svg-plot` binary reads it (`{"line": {...}}`,
/// `{"bars": {...}}` or `{"histogram": {...}}`).
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Chart {
    Line(LineChart),
    Bars(BarChart),
    Histogram(Histogram),
}

impl Chart {
    pub fn to_svg(&self) -> String {
        match self {
            Chart::Line(c) => c.to_svg(),
            Chart::Bars(c) => c.to_svg(),
            Chart::Histogram(c) => c.to_svg(),
        }
    }
}

// Plot area of line charts and histograms.
const W: f64 = 720.0;
const H: f64 = 440.0;
const L: f64 = 70.0;
const R: f64 = 180.0;
const T: f64 = 40.0;
const B: f64 = 50.0;

/// Frame, title, axis labels and grid of an x/y chart.
fn frame(out: &mut Svg, title: &str, x: &Axis, xs: &Scale, y: &Axis, ys: &Scale) {
    let (pw, ph) = (W - L - R, H - T - B);
    let mid = (W - R + L) / 2.0;
    out.text(mid, 22.0, "middle", 15, title);
    out.text(mid, H - 12.0, "middle", 12, &x.label);
    out.raw(&format!(
        "<text transform=\"translate(18,{}) rotate(-90)\" text-anchor=\"middle\">{}</text>\n",
        (H - B + T) / 2.0,
        esc(&y.label)
    ));
    out.raw(&format!(
        "<rect x=\"{L}\" y=\"{T}\" width=\"{pw}\" height=\"{ph}\" fill=\"none\" stroke=\"black\"/>\n"
    ));
    for (v, text) in xs.ticks() {
        let px = L + xs.fraction(v) * pw;
        out.raw(&format!(
            "<line x1=\"{px:.1}\" y1=\"{T}\" x2=\"{px:.1}\" y2=\"{}\" stroke=\"#ddd\"/>",
            T + ph
        ));
        out.text(px, T + ph + 16.0, "middle", 12, &text);
    }
    for (v, text) in ys.ticks() {
        let py = T + ph - ys.fraction(v) * ph;
        out.raw(&format!(
            "<line x1=\"{L}\" y1=\"{py:.1}\" x2=\"{}\" y2=\"{py:.1}\" stroke=\"#ddd\"/>",
            L + pw
        ));
        out.text(L - 6.0, py + 4.0, "end", 12, &text);
    }
}

impl LineChart {
    pub fn to_svg(&self) -> String {
        let mut out = Svg::new(W, H, 12);
        let xs = Scale::fit(
            &self.x,
            self.series
                .iter()
                .flat_map(|s| s.points.iter().map(|p| p.0)),
        );
        let ys = Scale::fit(
            &self.y,
            self.series
                .iter()
                .flat_map(|s| s.points.iter().map(|p| p.1)),
        );
        frame(&mut out, &self.title, &self.x, &xs, &self.y, &ys);
        let (pw, ph) = (W - L - R, H - T - B);
        for (i, s) in self.series.iter().enumerate() {
            let color = pick(&s.color, i);
            let pts: Vec<(f64, f64)> = s
                .points
                .iter()
                .map(|&(x, y)| (L + xs.fraction(x) * pw, T + ph - ys.fraction(y) * ph))
                .collect();
            let line: Vec<String> = pts.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
            out.raw(&format!(
                "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" points=\"{}\"/>\n",
                line.join(" ")
            ));
            for (x, y) in &pts {
                out.raw(&format!(
                    "<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"2.5\" fill=\"{color}\"/>\n"
                ));
            }
            let ly = T + 10.0 + 18.0 * i as f64;
            out.raw(&format!(
                "<rect x=\"{}\" y=\"{ly}\" width=\"12\" height=\"3\" fill=\"{color}\"/>",
                W - R + 12.0
            ));
            out.text(W - R + 28.0, ly + 5.0, "start", 12, &s.name);
        }
        out.finish()
    }
}

impl Histogram {
    pub fn to_svg(&self) -> String {
        let bins = self.bins.max(1);
        let lo = self.values.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = self
            .values
            .iter()
            .copied()
            .fold(f64::NEG_INFINITY, f64::max);
        let (lo, hi) = if lo.is_finite() && hi > lo {
            (lo, hi)
        } else {
            (0.0, 1.0)
        };
        let width = (hi - lo) / bins as f64;
        let mut counts = vec![0u64; bins];
        for &v in &self.values {
            let i = (((v - lo) / width) as usize).min(bins - 1);
            counts[i] += 1;
        }
        let count_axis = Axis {
            label: "count".into(),
            log: false,
        };
        let x_axis = Axis {
            log: false,
            ..self.x.clone()
        };
        let xs = Scale::fit(&x_axis, [lo, hi]);
        let ys = Scale::fit(&count_axis, counts.iter().map(|&c| c as f64));
        let mut out = Svg::new(W, H, 12);
        frame(&mut out, &self.title, &x_axis, &xs, &count_axis, &ys);
        let (pw, ph) = (W - L - R, H - T - B);
        for (i, &c) in counts.iter().enumerate() {
            let x0 = L + xs.fraction(lo + width * i as f64) * pw;
            let x1 = L + xs.fraction(lo + width * (i + 1) as f64) * pw;
            let h = ys.fraction(c as f64) * ph;
            out.raw(&format!(
                "<rect x=\"{x0:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{h:.1}\" fill=\"{}\" stroke=\"white\"/>\n",
                T + ph - h,
                x1 - x0,
                PALETTE[0]
            ));
        }
        out.finish()
    }
}

impl BarChart {
    pub fn to_svg(&self) -> String {
        const WIDTH: f64 = 760.0;
        const LEFT: f64 = 130.0;
        const RIGHT: f64 = 90.0;
        const BAR: f64 = 20.0;
        const GAP: f64 = 8.0;
        let head = if self.subtitle.is_empty() { 40.0 } else { 58.0 };
        let panel_h = |p: &BarPanel| 24.0 + p.bars.len() as f64 * (BAR + GAP);
        let mut legend: Vec<String> = Vec::new();
        for b in self.panels.iter().flat_map(|p| &p.bars) {
            if b.segments.len() > 1 {
                for s in &b.segments {
                    if !legend.contains(&s.label) {
                        legend.push(s.label.clone());
                    }
                }
            }
        }
        let legend_h = if legend.is_empty() {
            0.0
        } else {
            18.0 * legend.len().div_ceil(5) as f64 + 10.0
        };
        let height =
            head + self.panels.iter().map(|p| panel_h(p) + 12.0).sum::<f64>() + legend_h + 30.0;
        let mut out = Svg::new(WIDTH, height, 12);
        out.text(10.0, 22.0, "start", 15, &self.title);
        if !self.subtitle.is_empty() {
            out.raw(&format!(
                "<text x=\"10\" y=\"40\" fill=\"#555\">{}</text>\n",
                esc(&self.subtitle)
            ));
        }
        let pw = WIDTH - LEFT - RIGHT;
        let mut y0 = head;
        for p in &self.panels {
            let values = p.bars.iter().flat_map(|b| {
                let total: f64 = b.segments.iter().map(|s| s.value).sum();
                std::iter::once(total)
                    .chain(b.tick)
                    .chain(b.dots.iter().copied())
            });
            let scale = Scale::fit(&self.axis, values);
            if !p.title.is_empty() {
                out.raw(&format!(
                    "<text x=\"10\" y=\"{}\" font-weight=\"bold\">{}</text>\n",
                    y0 + 12.0,
                    esc(&p.title)
                ));
            }
            let x = |v: f64| LEFT + scale.fraction(v) * pw;
            let bottom = y0 + panel_h(p) - 4.0;
            for (v, text) in scale.ticks() {
                out.raw(&format!(
                    "<line x1=\"{:.1}\" y1=\"{}\" x2=\"{:.1}\" y2=\"{bottom}\" stroke=\"#ddd\"/>",
                    x(v),
                    y0 + 18.0,
                    x(v)
                ));
                out.raw(&format!(
                    "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\" fill=\"#666\">{}</text>\n",
                    x(v),
                    y0 + 14.0,
                    esc(&text)
                ));
            }
            for (i, b) in p.bars.iter().enumerate() {
                let y = y0 + 22.0 + i as f64 * (BAR + GAP);
                out.text(10.0, y + BAR * 0.75, "start", 12, &b.label);
                let mut start = 0.0;
                let mut end = x(0.0_f64.max(scale.min()));
                for (k, s) in b.segments.iter().enumerate() {
                    let color = if b.segments.len() == 1 && !b.color.is_empty() {
                        b.color.clone()
                    } else {
                        let at = legend.iter().position(|l| *l == s.label).unwrap_or(k);
                        pick(&b.color, at)
                    };
                    let (a, z) = (x(start), x(start + s.value));
                    out.raw(&format!(
                        "<rect x=\"{a:.1}\" y=\"{y}\" width=\"{:.1}\" height=\"{BAR}\" fill=\"{color}\" stroke=\"white\"><title>{}: {}</title></rect>\n",
                        (z - a).max(0.0),
                        esc(&s.label),
                        axis::format_value(s.value)
                    ));
                    start += s.value;
                    end = z;
                }
                if let Some(t) = b.tick {
                    out.raw(&format!(
                        "<line x1=\"{:.1}\" y1=\"{}\" x2=\"{:.1}\" y2=\"{}\" stroke=\"black\" stroke-width=\"2\"/>\n",
                        x(t),
                        y - 2.0,
                        x(t),
                        y + BAR + 2.0
                    ));
                    end = end.max(x(t));
                }
                for &d in &b.dots {
                    out.raw(&format!(
                        "<circle cx=\"{:.1}\" cy=\"{}\" r=\"2.5\" fill=\"black\" fill-opacity=\"0.6\"/>\n",
                        x(d),
                        y + BAR / 2.0
                    ));
                    end = end.max(x(d));
                }
                let note = b.note.clone().unwrap_or_else(|| axis::format_value(start));
                out.text(
                    (end + 6.0).min(WIDTH - 60.0),
                    y + BAR * 0.75,
                    "start",
                    12,
                    &note,
                );
            }
            y0 += panel_h(p) + 12.0;
        }
        for (i, l) in legend.iter().enumerate() {
            let lx = 20.0 + 145.0 * (i % 5) as f64;
            let ly = y0 + 18.0 * (i / 5) as f64;
            out.raw(&format!(
                "<rect x=\"{lx}\" y=\"{ly}\" width=\"10\" height=\"10\" fill=\"{}\"/>",
                PALETTE[i % PALETTE.len()]
            ));
            out.text(lx + 14.0, ly + 9.0, "start", 11, l);
        }
        out.text(WIDTH / 2.0, height - 8.0, "middle", 12, &self.axis.label);
        out.finish()
    }
}

fn pick(color: &str, i: usize) -> String {
    if color.is_empty() {
        PALETTE[i % PALETTE.len()].to_string()
    } else {
        color.to_string()
    }
}

#[cfg(test)]
mod tests;
