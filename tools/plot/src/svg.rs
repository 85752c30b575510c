//! The SVG text itself.

use std::fmt::Write;

/// Escapes text for SVG content and attributes.
pub(crate) fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// An SVG document being written: white background, sans-serif.
pub(crate) struct Svg(String);

impl Svg {
    pub(crate) fn new(width: f64, height: f64, font_size: u32) -> Svg {
        Svg(format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" \
font-family=\"sans-serif\" font-size=\"{font_size}\">\n\
<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
        ))
    }

    pub(crate) fn raw(&mut self, s: &str) {
        self.0.push_str(s);
    }

    /// Text at (x, y) anchored "start", "middle" or "end".
    pub(crate) fn text(&mut self, x: f64, y: f64, anchor: &str, size: u32, text: &str) {
        let _ = writeln!(
            self.0,
            "<text x=\"{x:.1}\" y=\"{y:.1}\" text-anchor=\"{anchor}\" font-size=\"{size}\">{}</text>",
            esc(text)
        );
    }

    pub(crate) fn finish(mut self) -> String {
        self.0.push_str("</svg>\n");
        self.0
    }
}
