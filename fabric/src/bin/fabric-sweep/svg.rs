//! Just enough SVG for line charts and stacked bars: no plotting crate, so
//! the output is byte-for-byte reproducible.

use std::fmt::Write;

pub struct Series {
    pub name: String,
    pub color: &'static str,
    pub points: Vec<(f64, f64)>,
}

const W: f64 = 720.0;
const H: f64 = 440.0;
const L: f64 = 70.0;
const R: f64 = 180.0;
const T: f64 = 40.0;
const B: f64 = 50.0;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn header(out: &mut String, title: &str, xlabel: &str, ylabel: &str) {
    let _ = write!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" font-family=\"sans-serif\" font-size=\"12\">\n\
<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
<text x=\"{}\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">{}</text>\n\
<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n\
<text transform=\"translate(18,{}) rotate(-90)\" text-anchor=\"middle\">{}</text>\n",
        (W - R + L) / 2.0,
        esc(title),
        (W - R + L) / 2.0,
        H - 12.0,
        esc(xlabel),
        (H - B + T) / 2.0,
        esc(ylabel)
    );
}

fn axes(out: &mut String, xmax: f64, ymax: f64) {
    let (pw, ph) = (W - L - R, H - T - B);
    let _ = writeln!(
        out,
        "<rect x=\"{L}\" y=\"{T}\" width=\"{pw}\" height=\"{ph}\" fill=\"none\" stroke=\"black\"/>"
    );
    for i in 0..=5 {
        let f = i as f64 / 5.0;
        let x = L + f * pw;
        let y = T + ph - f * ph;
        let _ = writeln!(
            out,
            "<line x1=\"{x}\" y1=\"{T}\" x2=\"{x}\" y2=\"{}\" stroke=\"#ddd\"/>\
<text x=\"{x}\" y=\"{}\" text-anchor=\"middle\">{:.1}</text>\
<line x1=\"{L}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\" stroke=\"#ddd\"/>\
<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{:.0}</text>",
            T + ph,
            T + ph + 16.0,
            f * xmax,
            L + pw,
            L - 6.0,
            y + 4.0,
            f * ymax
        );
    }
}

/// Line chart of several series.
pub fn line_chart(title: &str, xlabel: &str, ylabel: &str, series: &[Series]) -> String {
    let mut out = String::new();
    header(&mut out, title, xlabel, ylabel);
    let xmax = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .fold(1e-9, f64::max)
        * 1.05;
    let ymax = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .fold(1e-9, f64::max)
        * 1.05;
    axes(&mut out, xmax, ymax);
    let (pw, ph) = (W - L - R, H - T - B);
    for (i, s) in series.iter().enumerate() {
        let pts: Vec<String> = s
            .points
            .iter()
            .map(|(x, y)| format!("{:.1},{:.1}", L + x / xmax * pw, T + ph - y / ymax * ph))
            .collect();
        let _ = writeln!(
            out,
            "<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"2\" points=\"{}\"/>",
            s.color,
            pts.join(" ")
        );
        for p in &pts {
            let (x, y) = p.split_once(',').unwrap_or(("0", "0"));
            let _ = writeln!(
                out,
                "<circle cx=\"{x}\" cy=\"{y}\" r=\"2.5\" fill=\"{}\"/>",
                s.color
            );
        }
        let ly = T + 10.0 + 18.0 * i as f64;
        let _ = writeln!(
            out,
            "<rect x=\"{}\" y=\"{}\" width=\"12\" height=\"3\" fill=\"{}\"/><text x=\"{}\" y=\"{}\">{}</text>",
            W - R + 12.0,
            ly,
            s.color,
            W - R + 28.0,
            ly + 5.0,
            esc(&s.name)
        );
    }
    out.push_str("</svg>\n");
    out
}

/// Horizontal stacked bars: one bar per row, segments (label, value).
pub fn stacked_bars(title: &str, xlabel: &str, rows: &[(String, Vec<(String, f64)>)]) -> String {
    const COLORS: [&str; 8] = [
        "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#9c755f",
    ];
    let mut out = String::new();
    let h = T + B + 50.0 * rows.len() as f64 + 60.0;
    let _ = write!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"11\">\n\
<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
<text x=\"{}\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">{}</text>\n",
        W / 2.0,
        esc(title)
    );
    let total_max = rows
        .iter()
        .map(|r| r.1.iter().map(|s| s.1).sum::<f64>())
        .fold(1e-9, f64::max);
    let left = 130.0;
    let pw = W - left - 30.0;
    let mut legend: Vec<String> = Vec::new();
    for (i, (name, segs)) in rows.iter().enumerate() {
        let y = T + 50.0 * i as f64;
        let _ = writeln!(
            out,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>",
            left - 6.0,
            y + 20.0,
            esc(name)
        );
        let mut x = left;
        for (label, v) in segs {
            let idx = match legend.iter().position(|l| l == label) {
                Some(p) => p,
                None => {
                    legend.push(label.clone());
                    legend.len() - 1
                }
            };
            let w = v / total_max * pw;
            let _ = writeln!(
                out,
                "<rect x=\"{x:.1}\" y=\"{y}\" width=\"{w:.1}\" height=\"30\" fill=\"{}\" stroke=\"white\"><title>{}: {v:.1} ns</title></rect>",
                COLORS[idx % COLORS.len()],
                esc(label)
            );
            x += w;
        }
        let total: f64 = segs.iter().map(|s| s.1).sum();
        let _ = writeln!(
            out,
            "<text x=\"{:.1}\" y=\"{}\">{total:.1} ns</text>",
            (x + 4.0).min(W - 60.0),
            y + 20.0
        );
    }
    let ly = T + 50.0 * rows.len() as f64 + 10.0;
    for (i, l) in legend.iter().enumerate() {
        let x = 20.0 + 115.0 * (i % 6) as f64;
        let y = ly + 18.0 * (i / 6) as f64;
        let _ = writeln!(
            out,
            "<rect x=\"{x}\" y=\"{y}\" width=\"10\" height=\"10\" fill=\"{}\"/><text x=\"{}\" y=\"{}\">{}</text>",
            COLORS[i % COLORS.len()],
            x + 14.0,
            y + 9.0,
            esc(l)
        );
    }
    let _ = writeln!(
        out,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
        W / 2.0,
        h - 8.0,
        esc(xlabel)
    );
    out.push_str("</svg>\n");
    out
}
