//! Whether an interleaved region's bytes can live in one HPA-ordered
//! backing ([`devices::cxl::backing::RegionBacking`]): the committed
//! decoders must place granule `n` of the region on the device at position
//! `n mod ways`, at row `n / ways` of its share, all the way through.
//!
//! That holds for every region Linux builds, but the guest may program any
//! decoders, so it is proved from the decoders rather than assumed:
//! - every root and port decoder that meets the region covers all of it (so
//!   each access takes the same decoders), uses modulo arithmetic, and its
//!   granularity × ways divides the region's row (granularity × ways of the
//!   endpoints): selecting by the absolute HPA, it then picks the same
//!   target for a granule and for the granule one row further on;
//! - every endpoint decoder that meets it is one of the region's own, with
//!   the region's ways and granularity, so the DPA advances by one granule
//!   per row ([`fabric::interleave`]'s endpoint formula);
//! - the first row decodes to every member once, each at its share's first
//!   DPA.
//!
//! Anything else is left to the per-granule decode (stitched or trapped).

use fabric::interleave::{Arithmetic, DecodeTree, Node};

use super::tree::WantedRegion;

/// Whether `[base, base + size)` meets `[b, b + s)`.
fn meets(base: u64, size: u64, b: u64, s: u64) -> bool {
    base < b.saturating_add(s) && b < base.saturating_add(size)
}

/// Whether `[b, b + s)` holds all of `[base, base + size)`.
fn holds(b: u64, s: u64, base: u64, size: u64) -> bool {
    b <= base && base.saturating_add(size) <= b.saturating_add(s)
}

/// The region's members by interleave position, as (type-3 index, DPA of
/// its share), if its bytes are in HPA order as above.
pub fn interleave_order(tree: &DecodeTree, region: &WantedRegion) -> Option<Vec<(usize, u64)>> {
    let (base, size) = (region.base, region.size);
    let ways = u64::from(region.ways);
    let g = region.granularity;
    let row = g.checked_mul(ways)?;
    if ways == 0 || size == 0 || size % row != 0 || region.endpoints.len() as u64 != ways {
        return None;
    }
    let own = |d: &devices::cxl::component::DecoderState| {
        (d.base, d.size, u64::from(d.ways), u64::from(d.granularity)) == (base, size, ways, g)
    };
    if !region.endpoints.iter().all(|(_, d)| own(d)) {
        return None;
    }
    let divides_row = |w: u8, gran: u64| {
        gran.checked_mul(u64::from(w))
            .is_some_and(|p| p != 0 && row % p == 0)
    };
    for root in tree
        .roots
        .iter()
        .filter(|r| meets(base, size, r.base, r.size))
    {
        if !holds(root.base, root.size, base, size)
            || root.arithmetic != Arithmetic::Modulo
            || !divides_row(root.ways, root.granularity)
        {
            return None;
        }
    }
    for node in &tree.nodes {
        match node {
            Node::Port { decoders } => {
                for d in decoders
                    .iter()
                    .filter(|d| meets(base, size, d.base, d.size))
                {
                    if !holds(d.base, d.size, base, size) || !divides_row(d.ways, d.granularity) {
                        return None;
                    }
                }
            }
            Node::Endpoint { device, decoders } => {
                let theirs = region.endpoints.iter().any(|(t, _)| t == device);
                for d in decoders
                    .iter()
                    .filter(|d| meets(base, size, d.base, d.size))
                {
                    let same =
                        (d.base, d.size, u64::from(d.ways), d.granularity) == (base, size, ways, g);
                    if !theirs || !same {
                        return None;
                    }
                }
            }
        }
    }
    let mut order: Vec<(usize, u64)> = Vec::with_capacity(region.endpoints.len());
    for position in 0..ways {
        let t = tree.decode(base + position * g)?;
        let (_, d) = region.endpoints.iter().find(|(i, _)| *i == t.device)?;
        if t.dpa != d.dpa_base || order.iter().any(|&(i, _)| i == t.device) {
            return None;
        }
        order.push((t.device, t.dpa));
    }
    Some(order)
}

#[cfg(test)]
mod tests {
    use super::super::tree::tests::{decoder, switch4, two_way};
    use super::super::tree::Layout;
    use super::*;
    use devices::cxl::component::DecoderState;

    #[test]
    fn linux_s_two_way_region_is_in_hpa_order() {
        let (topo, plan) = switch4();
        let layout = Layout::new(&topo, &plan);
        let base = plan.windows[0].base;
        let snap = two_way(base);
        let tree = layout.tree(&snap);
        let region = &snap.wanted_regions()[0];
        assert_eq!(interleave_order(&tree, region), Some(vec![(0, 0), (1, 0)]));
        // The switch's targets swapped: device 1 holds granule 0.
        let mut swapped = snap.clone();
        swapped.switches[0].1[0].targets = vec![1, 0];
        let tree = layout.tree(&swapped);
        assert_eq!(interleave_order(&tree, region), Some(vec![(1, 0), (0, 0)]));
        // Every byte of the order agrees with the decode, row after row.
        let order = interleave_order(&tree, region).unwrap();
        for n in [0u64, 1, 2, 3, 1001, 131_071] {
            let hpa = base + n * 4096 + 17;
            let (dev, dpa_base) = order[(n % 2) as usize];
            let t = tree.decode(hpa).unwrap();
            assert_eq!((t.device, t.dpa), (dev, dpa_base + (n / 2) * 4096 + 17));
        }
    }

    #[test]
    fn decoders_that_break_the_row_pattern_leave_it_per_granule() {
        let (topo, plan) = switch4();
        let layout = Layout::new(&topo, &plan);
        let base = plan.windows[0].base;
        let snap = two_way(base);
        let region = snap.wanted_regions()[0].clone();
        // The switch interleaving at 16 KiB under 4 KiB endpoints: device 0
        // takes four granules in a row.
        let mut coarse = snap.clone();
        coarse.switches[0].1[0].granularity = 16384;
        assert_eq!(interleave_order(&layout.tree(&coarse), &region), None);
        // Both switch targets on one device: granule 1 decodes to device 0.
        let mut same = snap.clone();
        same.switches[0].1[0].targets = vec![0, 0];
        assert_eq!(interleave_order(&layout.tree(&same), &region), None);
        // A switch decoder over half the region.
        let mut half = snap.clone();
        half.switches[0].1[0].size /= 2;
        assert_eq!(interleave_order(&layout.tree(&half), &region), None);
        // One endpoint at another granularity.
        let mut mixed = snap.clone();
        mixed.type3[1].1[0].granularity = 8192;
        let region_mixed = mixed.wanted_regions()[0].clone();
        assert_eq!(interleave_order(&layout.tree(&mixed), &region_mixed), None);
        // A device outside the region with a decoder over part of it.
        let mut intruder = snap.clone();
        intruder.type3[2].1 = vec![decoder(0, base, 1 << 20, 1, 4096)];
        assert_eq!(interleave_order(&layout.tree(&intruder), &region), None);
        // A member's share starting at a DPA its decoder does not say.
        let mut shifted = region.clone();
        shifted.endpoints[1].1 = DecoderState {
            dpa_base: 1 << 20,
            ..shifted.endpoints[1].1.clone()
        };
        assert_eq!(interleave_order(&layout.tree(&snap), &shifted), None);
    }
}
