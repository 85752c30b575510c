//! Axes: a label, linear or log scale, and the ticks along it.

use serde::Deserialize;

/// One axis of a chart.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct Axis {
    pub label: String,
    /// Log scale (decades); values ≤ 0 sit at the left/bottom edge.
    pub log: bool,
}

/// The mapping of values onto [0, 1] along an axis.
pub(crate) enum Scale {
    /// From 0 (or the smallest value, if negative) to 5 % above the largest.
    Linear { min: f64, max: f64 },
    /// Whole decades around the values.
    Log { min_exp: i32, max_exp: i32 },
}

impl Scale {
    pub(crate) fn fit(axis: &Axis, values: impl IntoIterator<Item = f64>) -> Scale {
        let vals: Vec<f64> = values.into_iter().filter(|v| v.is_finite()).collect();
        if axis.log {
            let pos = vals.iter().copied().filter(|&v| v > 0.0);
            let lo = pos.clone().fold(f64::INFINITY, f64::min);
            let hi = pos.fold(0.0, f64::max);
            if hi <= 0.0 {
                return Scale::Log {
                    min_exp: 0,
                    max_exp: 1,
                };
            }
            let min_exp = lo.log10().floor() as i32;
            let max_exp = (hi.log10().ceil() as i32).max(min_exp + 1);
            return Scale::Log { min_exp, max_exp };
        }
        let lo = vals.iter().copied().fold(0.0, f64::min);
        let hi = vals.iter().copied().fold(1e-9, f64::max) * 1.05;
        Scale::Linear { min: lo, max: hi }
    }

    /// Where `v` lies, 0 at the start of the axis and 1 at its end.
    pub(crate) fn fraction(&self, v: f64) -> f64 {
        match *self {
            Scale::Linear { min, max } => (v - min) / (max - min),
            Scale::Log { min_exp, max_exp } => {
                let l = if v > 0.0 {
                    v.log10()
                } else {
                    f64::from(min_exp)
                };
                ((l - f64::from(min_exp)) / f64::from(max_exp - min_exp)).clamp(0.0, 1.0)
            }
        }
    }

    /// The smallest value on the axis.
    pub(crate) fn min(&self) -> f64 {
        match *self {
            Scale::Linear { min, .. } => min,
            Scale::Log { min_exp, .. } => 10f64.powi(min_exp),
        }
    }

    /// Tick positions and their labels: 6 evenly spaced on a linear axis,
    /// one per decade on a log axis.
    pub(crate) fn ticks(&self) -> Vec<(f64, String)> {
        match *self {
            Scale::Linear { min, max } => (0..=5)
                .map(|i| {
                    let v = min + (max - min) * f64::from(i) / 5.0;
                    (v, format_tick(v, max - min))
                })
                .collect(),
            Scale::Log { min_exp, max_exp } => (min_exp..=max_exp)
                .map(|e| {
                    let v = 10f64.powi(e);
                    (v, format_value(v))
                })
                .collect(),
        }
    }
}

/// A tick label with as many decimals as the axis span needs.
fn format_tick(v: f64, span: f64) -> String {
    if span >= 50.0 {
        format!("{v:.0}")
    } else if span >= 5.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// A value with three significant digits below 100, whole above.
pub(crate) fn format_value(v: f64) -> String {
    let a = v.abs();
    if a >= 100.0 || a == 0.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}
