//! Exact HPA → (device, DPA) decode through the HDM decoders the guest
//! actually committed.
//!
//! [`crate::decode`] models the layout Linux would build for a whole window;
//! this module instead follows a [`DecodeTree`] the VMM builds from the
//! programmed registers: the CFMWS windows at the root ([`RootDecode`]), then
//! the host-bridge and switch-upstream-port decoders ([`PortDecode`]), then the
//! endpoint decoders ([`EndpointDecode`]). Every level has its own ways and
//! granularity, exactly as the guest wrote them, so any layout the hardware
//! would accept decodes the way the hardware would decode it.
//!
//! Arithmetic (CXL 3.1 §8.2.4.20 HDM decoders and Table 9-22 for XOR, the
//! CEDT's CFMWS/CXIMS; Linux `drivers/cxl/acpi.c` and `core/region.c`):
//!
//! * Target selection, at the root (modulo) and at every port, uses the
//!   **absolute** HPA: `position = (hpa >> log2(g)) mod ways`. For 3/6/12 ways
//!   the spec writes this as `HPA[IG+8+k-1:IG+8] + 2^k · (HPA[51:IG+8+k] mod 3)`
//!   (with `ways = 3·2^k`), which is the same number. QEMU's CFMWS and HDM
//!   target lookups use the absolute HPA too. Linux allocates regions at
//!   256 MiB-aligned bases, so for power-of-two ways absolute and
//!   window-relative offsets select the same target; they differ only for a
//!   3/6/12-way window whose base is not a multiple of `3·g·2^k`, and there
//!   the hardware (and so this module) follows the absolute address.
//! * XOR root arithmetic (CXIMS): bit `i` of the position is the parity of
//!   `hpa & xormaps[i]` for the `k` power-of-two position bits; for 6/12 ways
//!   the remaining factor is `((hpa >> (log2 g + k)) mod 3) << k`, as in the
//!   spec's table. Linux parses exactly `log2(ways)` (or `log2(ways/3)`) maps
//!   from the CXIMS whose HBIG matches the window, so fewer maps than that is
//!   an inconsistent path here. 1- and 3-way windows use no maps.
//! * Endpoint: with `off = hpa − base`, power-of-two ways
//!   `dpa_off = (off & (g−1)) | ((off >> (log2 g + log2 ways)) << log2 g)`;
//!   3/6/12 ways `dpa_off = (off & (g−1)) | (((off >> (log2 g + k)) / 3) << log2 g)`;
//!   `dpa = dpa_base + dpa_off`, where `dpa_base` is what the VMM computed for
//!   this decoder (skip plus the sizes of the lower decoders, volatile first).
//!
//! Linux programs a region so that each port's granularity is
//! `parent_g × parent_ways` (the root counts with its power-of-two factor
//! only) and every endpoint gets the region's ways and granularity; e.g. a
//! 4-way 4 KiB region over two host bridges with two devices each is root
//! 2-way 4 KiB, host bridges 2-way 8 KiB, endpoints 4-way 4 KiB. The decode
//! does not rely on that: it applies each decoder as programmed.
//!
//! Addresses are taken as below 2^52 (the spec's `HPA[51:…]`); nothing
//! panics on any input: an address no window or decoder covers, or a path
//! that is inconsistent (bad ways or granularity, a target index past the
//! target list or the node table, too few XOR maps, a loop between ports,
//! a DPA past `u64::MAX`) decodes to `None`.

/// How a CFMWS window picks its host bridge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Arithmetic {
    /// `(hpa / granularity) mod ways` on the absolute HPA.
    Modulo,
    /// CXIMS XOR maps, one per power-of-two position bit (map `i` gives bit `i`).
    Xor { xormaps: Vec<u64> },
}

/// A CXL fixed memory window (CFMWS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootDecode {
    pub base: u64,
    pub size: u64,
    pub ways: u8,
    /// Host bridge interleave granularity in bytes (256 .. 16 KiB).
    pub granularity: u64,
    pub arithmetic: Arithmetic,
    /// Node index for each interleave position.
    pub targets: Vec<usize>,
}

/// A committed host-bridge or switch-upstream-port HDM decoder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortDecode {
    pub base: u64,
    pub size: u64,
    pub ways: u8,
    pub granularity: u64,
    /// Node index for each interleave position (the target list, resolved).
    pub targets: Vec<usize>,
}

/// A committed endpoint (type-3 device) HDM decoder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointDecode {
    pub base: u64,
    pub size: u64,
    pub ways: u8,
    pub granularity: u64,
    /// DPA of the decoder's first byte: skip plus the lower decoders' share.
    pub dpa_base: u64,
}

/// One decoding component of the hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    /// Host bridge or switch: routes to a child node.
    Port { decoders: Vec<PortDecode> },
    /// Type-3 device `device`: translates to a DPA.
    Endpoint {
        device: usize,
        decoders: Vec<EndpointDecode>,
    },
}

/// The committed decoders of the whole CXL hierarchy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DecodeTree {
    pub roots: Vec<RootDecode>,
    pub nodes: Vec<Node>,
}

/// A decoded access.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    pub device: usize,
    pub dpa: u64,
}

/// More port levels than any real hierarchy has (root → host bridge → a few
/// switches → endpoint); a longer walk can only be a loop in the tree.
const MAX_HOPS: usize = 32;

impl DecodeTree {
    /// The device and DPA that serve `hpa`, or `None` when no window or
    /// decoder covers it or the path is inconsistent.
    pub fn decode(&self, hpa: u64) -> Option<Target> {
        let root = self.roots.iter().find(|r| covers(r.base, r.size, hpa))?;
        let position = match &root.arithmetic {
            Arithmetic::Modulo => modulo_position(hpa, root.ways, root.granularity)?,
            Arithmetic::Xor { xormaps } => xor_position(hpa, root.ways, root.granularity, xormaps)?,
        };
        let mut node = *root.targets.get(position)?;
        for _ in 0..MAX_HOPS {
            match self.nodes.get(node)? {
                Node::Port { decoders } => {
                    let d = decoders.iter().find(|d| covers(d.base, d.size, hpa))?;
                    let position = modulo_position(hpa, d.ways, d.granularity)?;
                    node = *d.targets.get(position)?;
                }
                Node::Endpoint { device, decoders } => {
                    let d = decoders.iter().find(|d| covers(d.base, d.size, hpa))?;
                    let offset = dpa_offset(hpa - d.base, d.ways, d.granularity)?;
                    return Some(Target {
                        device: *device,
                        dpa: d.dpa_base.checked_add(offset)?,
                    });
                }
            }
        }
        None
    }
}

/// Encoded interleave ways (HDM IW, CFMWS ENIW) for `ways`.
pub fn encode_ways(ways: u8) -> Option<u8> {
    match ways {
        1 => Some(0),
        2 => Some(1),
        4 => Some(2),
        8 => Some(3),
        16 => Some(4),
        3 => Some(8),
        6 => Some(9),
        12 => Some(10),
        _ => None,
    }
}

/// Ways for an encoded IW / ENIW value.
pub fn decode_ways(eiw: u8) -> Option<u8> {
    match eiw {
        0..=4 => Some(1 << eiw),
        8 => Some(3),
        9 => Some(6),
        10 => Some(12),
        _ => None,
    }
}

/// Encoded granularity (HDM IG, CFMWS HBIG): 256 B << n for n = 0..=6.
pub fn encode_granularity(granularity: u64) -> Option<u8> {
    granularity_shift(granularity).map(|s| (s - 8) as u8)
}

/// Granularity in bytes for an encoded IG / HBIG value.
pub fn decode_granularity(eig: u8) -> Option<u64> {
    (eig <= 6).then(|| 256u64 << eig)
}

/// `[base, base + size)` contains `hpa`, written so that no base or size
/// (even one whose end passes `u64::MAX`) can overflow.
#[inline]
fn covers(base: u64, size: u64, hpa: u64) -> bool {
    hpa >= base && hpa - base < size
}

/// log2 of a valid granularity (256 B .. 16 KiB, a power of two).
#[inline]
fn granularity_shift(granularity: u64) -> Option<u32> {
    (granularity.is_power_of_two() && (256..=16384).contains(&granularity))
        .then(|| granularity.trailing_zeros())
}

/// `ways = 2^k` or `3·2^k`: returns `(k, has the factor 3)`.
#[inline]
fn split_ways(ways: u8) -> Option<(u32, bool)> {
    match ways {
        1 | 2 | 4 | 8 | 16 => Some((ways.trailing_zeros(), false)),
        3 | 6 | 12 => Some(((ways / 3).trailing_zeros(), true)),
        _ => None,
    }
}

#[inline]
fn modulo_position(hpa: u64, ways: u8, granularity: u64) -> Option<usize> {
    let shift = granularity_shift(granularity)?;
    let (k, three) = split_ways(ways)?;
    let chunk = hpa >> shift;
    let position = if three {
        // Same value as the spec's low-bits + 2^k·(high mod 3) split.
        chunk % u64::from(ways)
    } else {
        chunk & ((1 << k) - 1)
    };
    Some(position as usize)
}

#[inline]
fn xor_position(hpa: u64, ways: u8, granularity: u64, xormaps: &[u64]) -> Option<usize> {
    let shift = granularity_shift(granularity)?;
    let (k, three) = split_ways(ways)?;
    let maps = xormaps.get(..k as usize)?;
    let mut position = 0u64;
    for (i, map) in maps.iter().enumerate() {
        position |= u64::from((hpa & map).count_ones() & 1) << i;
    }
    if three {
        position |= ((hpa >> (shift + k)) % 3) << k;
    }
    Some(position as usize)
}

/// DPA offset of `offset` (HPA minus the decoder base) in an endpoint
/// decoder: the chunk's row among `ways` chunks, then the byte in the chunk.
#[inline]
fn dpa_offset(offset: u64, ways: u8, granularity: u64) -> Option<u64> {
    let shift = granularity_shift(granularity)?;
    let (k, three) = split_ways(ways)?;
    let row = if three {
        (offset >> (shift + k)) / 3
    } else {
        offset >> (shift + k)
    };
    // row << shift <= offset, so this cannot overflow.
    Some((offset & (granularity - 1)) | (row << shift))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ways_encoding_round_trips() {
        for ways in 0..=u8::MAX {
            match encode_ways(ways) {
                Some(eiw) => assert_eq!(decode_ways(eiw), Some(ways)),
                None => assert!(![1, 2, 3, 4, 6, 8, 12, 16].contains(&ways), "{ways}"),
            }
        }
        for eiw in 0..=u8::MAX {
            if let Some(ways) = decode_ways(eiw) {
                assert_eq!(encode_ways(ways), Some(eiw));
            } else {
                assert!(!matches!(eiw, 0..=4 | 8..=10), "{eiw}");
            }
        }
        assert_eq!(encode_ways(12), Some(10));
        assert_eq!(decode_ways(9), Some(6));
    }

    #[test]
    fn granularity_encoding_round_trips() {
        for eig in 0..=u8::MAX {
            match decode_granularity(eig) {
                Some(g) => assert_eq!(encode_granularity(g), Some(eig)),
                None => assert!(eig > 6),
            }
        }
        assert_eq!(encode_granularity(16384), Some(6));
        for bad in [0, 1, 128, 255, 257, 384, 32768, u64::MAX] {
            assert_eq!(encode_granularity(bad), None, "{bad}");
        }
    }

    #[test]
    fn spec_split_equals_plain_modulo_for_3_6_12() {
        // HPA[IG+8+k-1:IG+8] + 2^k * (HPA[51:IG+8+k] mod 3) == chunk mod ways.
        for ways in [3u8, 6, 12] {
            let (k, _) = split_ways(ways).unwrap();
            for chunk in 0..10_000u64 {
                let hpa = chunk << 8;
                let spec = (chunk & ((1 << k) - 1)) + ((chunk >> k) % 3) * (1 << k);
                assert_eq!(modulo_position(hpa, ways, 256), Some(spec as usize));
            }
        }
    }

    #[test]
    fn endpoint_offsets_match_the_reference_formulas() {
        // Power of two: DPAoff = low | ((off >> (IG+8+IW)) << (IG+8)).
        assert_eq!(dpa_offset(0x1234, 1, 256), Some(0x1234));
        assert_eq!(dpa_offset(4 * 4096 + 17, 4, 4096), Some(4096 + 17));
        assert_eq!(dpa_offset(3 * 4096 + 17, 4, 4096), Some(17));
        // 3/6/12: DPAoff = low | (((off >> (IG+IW)) / 3) << (IG+8)), IW = 8 + k.
        assert_eq!(dpa_offset(3 * 256 + 5, 3, 256), Some(256 + 5));
        assert_eq!(dpa_offset(11 * 512 + 5, 12, 512), Some(5));
        assert_eq!(dpa_offset(12 * 512 + 5, 12, 512), Some(512 + 5));
        assert_eq!(
            dpa_offset(u64::MAX, 3, 16384).map(|d| d < u64::MAX),
            Some(true)
        );
        assert_eq!(dpa_offset(0, 5, 256), None);
        assert_eq!(dpa_offset(0, 2, 512 + 1), None);
    }

    #[test]
    fn covers_never_overflows() {
        assert!(covers(u64::MAX - 1, u64::MAX, u64::MAX));
        assert!(!covers(u64::MAX, 0, u64::MAX));
        assert!(!covers(10, 5, 9));
        assert!(covers(10, 5, 14));
        assert!(!covers(10, 5, 15));
    }
}
