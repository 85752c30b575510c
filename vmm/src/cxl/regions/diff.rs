//! Wanted against installed: which installed regions go, which wanted ones
//! are mapped. Pure; the mapper applies the result.

use super::tree::WantedRegion;
use super::{RegionInfo, RegionMode};

/// What to change to go from the installed regions to the wanted ones.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Diff {
    /// Indices into the installed list, ascending.
    pub remove: Vec<usize>,
    /// Regions to map, lowest base first.
    pub add: Vec<WantedRegion>,
}

/// A native region stays while a region of the same range and ways is still
/// committed (its slot and host mapping are still right). Everything else
/// installed goes: trapped regions are re-evaluated on every change, since
/// the rest of their path may have committed since (Linux commits the
/// endpoints first) and they may now map natively. Complete wanted regions
/// not kept are added.
pub fn diff(installed: &[RegionInfo], wanted: Vec<WantedRegion>) -> Diff {
    let keep = |i: &RegionInfo| {
        i.mode == RegionMode::Native
            && wanted
                .iter()
                .any(|w| w.base == i.base && w.size == i.size && w.ways == i.ways)
    };
    let mut d = Diff::default();
    let mut kept = Vec::new();
    for (n, i) in installed.iter().enumerate() {
        if keep(i) {
            kept.push((i.base, i.size));
        } else {
            d.remove.push(n);
        }
    }
    d.add = wanted
        .into_iter()
        .filter(|w| w.complete() && !kept.contains(&(w.base, w.size)))
        .collect();
    d
}

#[cfg(test)]
mod tests {
    use super::super::tree::tests::decoder;
    use super::*;

    const MIB: u64 = 1 << 20;

    fn wanted(base: u64, ways: u8, committed: usize) -> WantedRegion {
        WantedRegion {
            base,
            size: 256 * MIB * u64::from(ways),
            ways,
            granularity: 4096,
            endpoints: (0..committed)
                .map(|t| (t, decoder(0, base, 256 * MIB * u64::from(ways), ways, 4096)))
                .collect(),
        }
    }

    fn info(w: &WantedRegion, mode: RegionMode) -> RegionInfo {
        RegionInfo {
            base: w.base,
            size: w.size,
            ways: w.ways,
            granularity: w.granularity,
            mode,
        }
    }

    #[test]
    fn native_regions_stay_trapped_ones_are_redone_incomplete_ones_wait() {
        let a = wanted(0x1_0000_0000, 1, 1);
        let b = wanted(0x2_0000_0000, 2, 2);
        let c = wanted(0x3_0000_0000, 4, 3);
        let installed = vec![info(&a, RegionMode::Native), info(&b, RegionMode::Trapped)];
        let d = diff(&installed, vec![a.clone(), b.clone(), c]);
        assert_eq!(d.remove, vec![1], "the trapped region is re-evaluated");
        assert_eq!(d.add, vec![b], "c lacks a way; a stays mapped");
    }

    #[test]
    fn a_reset_or_reshaped_region_goes() {
        let a = wanted(0x1_0000_0000, 1, 1);
        let installed = vec![info(&a, RegionMode::Native)];
        let d = diff(&installed, vec![]);
        assert_eq!((d.remove, d.add), (vec![0], vec![]));
        // Same range, now 2-way (in a bigger window): removed and re-added.
        let reshaped = WantedRegion {
            size: a.size,
            ..wanted(a.base, 2, 2)
        };
        let d = diff(&installed, vec![reshaped.clone()]);
        assert_eq!((d.remove, d.add), (vec![0], vec![reshaped]));
        // Nothing changed: nothing to do.
        let d = diff(&installed, vec![a]);
        assert_eq!(d, Diff::default());
    }
}
