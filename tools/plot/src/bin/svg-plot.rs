//! Draws one chart described in JSON (see `plot::Chart`) as SVG, for
//! benchmark scripts written in other languages.
//!
//! `svg-plot SPEC.json OUT.svg` (`-` reads standard input / writes standard
//! output).

use std::io::{Read, Write};
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [spec, out] = args.as_slice() else {
        eprintln!("usage: svg-plot SPEC.json OUT.svg   (- for stdin/stdout)");
        return ExitCode::from(2);
    };
    let mut text = String::new();
    let read = if spec == "-" {
        std::io::stdin().read_to_string(&mut text).map(|_| ())
    } else {
        std::fs::read_to_string(spec).map(|t| text = t)
    };
    if let Err(e) = read {
        eprintln!("svg-plot: {spec}: {e}");
        return ExitCode::from(1);
    }
    let chart: plot::Chart = match serde_json::from_str(&text) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("svg-plot: {spec}: not a chart: {e}");
            return ExitCode::from(1);
        }
    };
    let svg = chart.to_svg();
    let written = if out == "-" {
        std::io::stdout().write_all(svg.as_bytes())
    } else {
        std::fs::write(out, svg)
    };
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("svg-plot: {out}: {e}");
            ExitCode::from(1)
        }
    }
}
