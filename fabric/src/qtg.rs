//! QoS throttling group (QTG) policy: which CFMWS window's QTG a device's
//! path belongs in. Linux sums a generic port's HMAT figures, the links and
//! the device's CDAT into an estimate of each device's access latency and
//! asks the ACPI0017 QTG _DSM (CXL 3.0 §9.17.3) for the matching QoS class;
//! the answer must be the QTG of a window that can hold the device's memory,
//! or `cxl list` reports `qos_class_mismatch` (drivers/cxl/core/cdat.c).
//!
//! The policy here decides; the VMM only renders it as AML.

use crate::hmat::path_performance;
use crate::topology::{ElementRef, Topology, Window};

/// A QoS throttling group and the read latencies (ps) the model gives the
/// devices that windows of this group can reach.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QtgClass {
    pub qtg: u16,
    pub min_ps: u64,
    pub max_ps: u64,
}

/// The QTG classes that have devices, fastest first.
pub fn qtg_classes(topo: &Topology) -> Vec<QtgClass> {
    let mut classes: Vec<QtgClass> = Vec::new();
    for (d, dev) in topo.type3.iter().enumerate() {
        let hb = topo.host_bridge_of(ElementRef::Type3(d));
        let Some(path) = path_performance(topo, d) else {
            continue;
        };
        let ps = path.total.read_latency_ps;
        let reaches = |w: &&Window| {
            w.targets.contains(&hb)
                && ((w.restrictions.ram && dev.volatile > 0)
                    || (w.restrictions.pmem && dev.persistent > 0))
        };
        for w in topo.windows.iter().filter(reaches) {
            match classes.iter_mut().find(|c| c.qtg == w.qtg) {
                Some(c) => {
                    c.min_ps = c.min_ps.min(ps);
                    c.max_ps = c.max_ps.max(ps);
                }
                None => classes.push(QtgClass {
                    qtg: w.qtg,
                    min_ps: ps,
                    max_ps: ps,
                }),
            }
        }
    }
    classes.sort_by_key(|c| (c.min_ps, c.max_ps, c.qtg));
    classes
}

/// Read-latency limits (ps, inclusive) between consecutive classes: a query
/// at or below `limits[k]` (and above `limits[k - 1]`) belongs to class k,
/// above every limit to the last class. Midway, so that the guest's own
/// estimate of a path (its link terms are not the model's) lands in the
/// right class.
pub fn qtg_limits(classes: &[QtgClass]) -> Vec<u64> {
    classes
        .windows(2)
        .map(|p| p[0].max_ps.midpoint(p[1].min_ps))
        .collect()
}

/// The largest _DSM read latency taken to be in ns rather than ps. Linux
/// 6.12 sends ps (133000 for a path its sysfs shows as 133 ns); a kernel
/// sending ns would send 1000 times less. The split is the geometric mean of
/// the slowest class in ns and the fastest in ps, so an estimate within a
/// factor of sqrt(1000 × fastest / slowest) of the model reads right.
pub fn qtg_ns_limit(classes: &[QtgClass]) -> u64 {
    let fastest_ps = classes.iter().map(|c| c.min_ps).min().unwrap_or(0);
    let slowest_ns = classes
        .iter()
        .map(|c| c.max_ps)
        .max()
        .unwrap_or(0)
        .div_ceil(1000);
    (slowest_ns.saturating_mul(fastest_ps))
        .isqrt()
        .max(slowest_ns)
}

/// Which class the QTG _DSM puts a read latency in, `ps_or_ns` in either
/// unit.
pub fn qtg_class_of(classes: &[QtgClass], ps_or_ns: u64) -> usize {
    let ps = if ps_or_ns <= qtg_ns_limit(classes) {
        ps_or_ns.saturating_mul(1000)
    } else {
        ps_or_ns
    };
    let limits = qtg_limits(classes);
    limits.iter().position(|&l| ps <= l).unwrap_or(limits.len())
}

/// Everything the QTG _DSM answers with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QtgPolicy {
    /// Classes with devices, fastest first.
    pub classes: Vec<QtgClass>,
    /// Every window's QTG, ascending, without repeats (`[0]` without windows).
    pub qtgs: Vec<u16>,
}

impl QtgPolicy {
    pub fn new(topo: &Topology) -> Self {
        let mut qtgs: Vec<u16> = topo.windows.iter().map(|w| w.qtg).collect();
        qtgs.sort_unstable();
        qtgs.dedup();
        if qtgs.is_empty() {
            qtgs.push(0);
        }
        QtgPolicy {
            classes: qtg_classes(topo),
            qtgs,
        }
    }

    /// The largest QTG id (the answer's first element).
    pub fn max_qtg(&self) -> u16 {
        self.qtgs.iter().copied().max().unwrap_or(0)
    }

    /// The QTG ids suited to a path of class `qtg`, best first: `qtg`, then
    /// the others ascending. Linux takes the first.
    pub fn answer(&self, qtg: u16) -> Vec<u16> {
        let mut ids = vec![qtg];
        ids.extend(self.qtgs.iter().copied().filter(|&q| q != qtg));
        ids
    }

    /// With at most one class the input does not matter: the one QTG to
    /// answer. None when the read latency picks among several classes.
    pub fn fixed_qtg(&self) -> Option<u16> {
        match self.classes.as_slice() {
            [] => Some(self.qtgs[0]),
            [c] => Some(c.qtg),
            _ => None,
        }
    }

    /// Class limits, see [`qtg_limits`].
    pub fn limits(&self) -> Vec<u64> {
        qtg_limits(&self.classes)
    }

    /// See [`qtg_ns_limit`].
    pub fn ns_limit(&self) -> u64 {
        qtg_ns_limit(&self.classes)
    }

    /// The QTG the _DSM answers first for a read latency in ps or ns.
    pub fn qtg_for(&self, ps_or_ns: u64) -> u16 {
        match self.fixed_qtg() {
            Some(q) => q,
            None => self.classes[qtg_class_of(&self.classes, ps_or_ns)].qtg,
        }
    }
}

#[cfg(test)]
mod tests;
