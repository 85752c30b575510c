//! `fabric::interleave` against an independent brute-force decoder, the
//! Linux / CXL Driver Writers Guide translation vectors, and garbage input.
//!
//! The reference walks a test-side description of the hierarchy with plain
//! division and modulo (and a bit-by-bit XOR parity), hands each device its
//! chunks in HPA order, and gives the k-th chunk of device d the DPA
//! `dpa_base_d + k·G`. It shares no arithmetic with the module.

use std::collections::{HashMap, HashSet};

use fabric::interleave::{
    decode_ways, encode_ways, Arithmetic, DecodeTree, EndpointDecode, Node, PortDecode, RootDecode,
    Target,
};
use fabric::rng::SplitMix64;

const MIB: u64 = 1 << 20;
const SZ_256M: u64 = 256 * MIB;
const GRANULARITIES: [u64; 7] = [256, 512, 1024, 2048, 4096, 8192, 16384];
const ALL_WAYS: [u8; 8] = [1, 2, 3, 4, 6, 8, 12, 16];

/// The hierarchy below a window: ports (host bridges, switches) and devices.
#[derive(Debug, Clone)]
enum Shape {
    Device(usize),
    Port { ways: u8, children: Vec<Shape> },
}

/// One region as the guest would program it.
#[derive(Debug, Clone)]
struct Region {
    window_base: u64,
    window_size: u64,
    base: u64,
    size: u64,
    /// Region granularity: the root's when it interleaves, every endpoint's.
    gran: u64,
    root_gran: u64,
    arithmetic: Arithmetic,
    /// One subtree per root position (host bridges).
    host_bridges: Vec<Shape>,
    /// Per device index.
    dpa_base: Vec<u64>,
    /// Granularity of the pass-through (1-way) ports, which ignore it.
    idle_gran: u64,
}

impl Region {
    fn ways(&self) -> u64 {
        self.host_bridges.iter().map(count_devices).sum()
    }
}

fn count_devices(s: &Shape) -> u64 {
    match s {
        Shape::Device(_) => 1,
        Shape::Port { children, .. } => children.iter().map(count_devices).sum(),
    }
}

fn pow2_part(ways: u64) -> u64 {
    if ways.is_multiple_of(3) {
        ways / 3
    } else {
        ways
    }
}

/// Linux's rule (core/region.c `cxl_port_setup_targets`): a port interleaves
/// at `parent_g × parent_ways`, the root counting with its power-of-two factor
/// only and its granularity taken as the region's. A 1-way port's
/// granularity is irrelevant; it gets `idle` to show that.
fn port_granularity(stride: u64, ways: u8, idle: u64) -> u64 {
    if ways == 1 {
        idle
    } else {
        stride
    }
}

/// Builds the decode tree for `regions`, which all run over the same
/// hierarchy (`regions[0].host_bridges` shape): every port and endpoint gets
/// one decoder per region, in the order of `decoder_order`.
fn build(regions: &[Region], decoder_order: &[usize]) -> DecodeTree {
    let mut tree = DecodeTree::default();
    // Nodes are numbered by a depth-first walk of the first region's shape;
    // every region walks the same shape, so the numbering is shared.
    let mut roots_targets = Vec::new();
    for hb in &regions[0].host_bridges {
        roots_targets.push(alloc_nodes(&mut tree, hb));
    }
    for &r in decoder_order {
        let region = &regions[r];
        let stride = region.gran * pow2_part(region.host_bridges.len() as u64);
        for (hb, &node) in region.host_bridges.iter().zip(&roots_targets) {
            add_decoders(&mut tree, region, hb, node, stride);
        }
    }
    for region in regions {
        tree.roots.push(RootDecode {
            base: region.window_base,
            size: region.window_size,
            ways: region.host_bridges.len() as u8,
            granularity: region.root_gran,
            arithmetic: region.arithmetic.clone(),
            targets: roots_targets.clone(),
        });
    }
    tree
}

fn alloc_nodes(tree: &mut DecodeTree, shape: &Shape) -> usize {
    let index = tree.nodes.len();
    match shape {
        Shape::Device(d) => tree.nodes.push(Node::Endpoint {
            device: *d,
            decoders: Vec::new(),
        }),
        Shape::Port { children, .. } => {
            tree.nodes.push(Node::Port {
                decoders: Vec::new(),
            });
            for c in children {
                alloc_nodes(tree, c);
            }
        }
    }
    index
}

/// Walks `shape` (rooted at node `node`) adding this region's decoders;
/// returns the node index after the subtree.
fn add_decoders(
    tree: &mut DecodeTree,
    region: &Region,
    shape: &Shape,
    node: usize,
    stride: u64,
) -> usize {
    match shape {
        Shape::Device(d) => {
            if let Node::Endpoint { decoders, .. } = &mut tree.nodes[node] {
                decoders.push(EndpointDecode {
                    base: region.base,
                    size: region.size,
                    ways: region.ways() as u8,
                    granularity: region.gran,
                    dpa_base: region.dpa_base[*d],
                });
            }
            node + 1
        }
        Shape::Port { ways, children } => {
            let mut next = node + 1;
            let mut targets = Vec::new();
            for c in children {
                targets.push(next);
                next = add_decoders(tree, region, c, next, stride * u64::from(*ways));
            }
            if let Node::Port { decoders } = &mut tree.nodes[node] {
                decoders.push(PortDecode {
                    base: region.base,
                    size: region.size,
                    ways: *ways,
                    granularity: port_granularity(stride, *ways, region.idle_gran),
                    targets,
                });
            }
            next
        }
    }
}

/// Parity of `hpa & map`, one bit at a time.
fn parity_bitwise(hpa: u64, map: u64) -> u64 {
    let mut p = 0;
    for bit in 0..64 {
        if (map >> bit) & 1 == 1 && (hpa >> bit) & 1 == 1 {
            p ^= 1;
        }
    }
    p
}

/// Root position by the CXL tables, with plain arithmetic.
fn reference_root_position(region: &Region, hpa: u64) -> u64 {
    let ways = region.host_bridges.len() as u64;
    match &region.arithmetic {
        Arithmetic::Modulo => (hpa / region.root_gran) % ways,
        Arithmetic::Xor { xormaps } => {
            let p2 = pow2_part(ways);
            let mut bits = 0;
            let mut k = 0;
            while (1 << bits) < p2 {
                bits += 1;
            }
            let mut position = 0;
            while k < bits {
                position += parity_bitwise(hpa, xormaps[k]) * (1 << k);
                k += 1;
            }
            if ways.is_multiple_of(3) {
                position += ((hpa / region.root_gran / p2) % 3) * p2;
            }
            position
        }
    }
}

/// The device that owns the chunk at `hpa`, walking the shape.
fn reference_device(region: &Region, hpa: u64) -> usize {
    let rw = region.host_bridges.len() as u64;
    let mut shape = &region.host_bridges[reference_root_position(region, hpa) as usize];
    let mut stride = region.gran * pow2_part(rw);
    loop {
        match shape {
            Shape::Device(d) => return *d,
            Shape::Port { ways, children } => {
                let w = u64::from(*ways);
                let g = port_granularity(stride, *ways, region.idle_gran);
                shape = &children[((hpa / g) % w) as usize];
                stride *= w;
            }
        }
    }
}

/// Per region: chunk index (relative to the region base) → expected target
/// of the chunk's first byte.
fn reference_map(region: &Region) -> Vec<Target> {
    let chunks = region.size / region.gran;
    let mut next_k: HashMap<usize, u64> = HashMap::new();
    let mut out = Vec::with_capacity(chunks as usize);
    for c in 0..chunks {
        let hpa = region.base + c * region.gran;
        let d = reference_device(region, hpa);
        let k = next_k.entry(d).or_insert(0);
        out.push(Target {
            device: d,
            dpa: region.dpa_base[d] + *k * region.gran,
        });
        *k += 1;
    }
    out
}

fn pick<T: Copy>(rng: &mut SplitMix64, items: &[T]) -> T {
    items[(rng.next_u64() % items.len() as u64) as usize]
}

fn below(rng: &mut SplitMix64, n: u64) -> u64 {
    rng.next_u64() % n
}

/// A hierarchy of `devices` devices under one host bridge, split into
/// power-of-two port levels of at most 8 ways (Linux's port limit), with
/// optional 1-way pass-through ports (a host bridge with one root port, a
/// switch with one device).
fn gen_subtree(rng: &mut SplitMix64, devices: u64, depth: u32, next_device: &mut usize) -> Shape {
    if devices == 1 {
        if depth == 0 || (depth < 3 && below(rng, 3) == 0) {
            return Shape::Port {
                ways: 1,
                children: vec![gen_subtree(rng, 1, depth + 1, next_device)],
            };
        }
        let d = *next_device;
        *next_device += 1;
        return Shape::Device(d);
    }
    let choices: Vec<u64> = [2u64, 4, 8]
        .into_iter()
        .filter(|w| devices.is_multiple_of(*w))
        .collect();
    let ways = pick(rng, &choices);
    Shape::Port {
        ways: ways as u8,
        children: (0..ways)
            .map(|_| gen_subtree(rng, devices / ways, depth + 1, next_device))
            .collect(),
    }
}

/// Granularity of every interleaving port stays <= 16 KiB for region
/// granularity `g` (Linux refuses layouts that would need more).
fn fits(shape: &Shape, stride: u64) -> bool {
    match shape {
        Shape::Device(_) => true,
        Shape::Port { ways, children } => {
            (*ways == 1 || stride <= 16384)
                && children.iter().all(|c| fits(c, stride * u64::from(*ways)))
        }
    }
}

/// XOR maps for a `ways`-way root at granularity `g`: map i has its lowest
/// set bit at log2(g) + i (the bit the endpoint drops for it) plus random
/// higher bits, the structure the CXIMS maps in cxl_test and the Driver
/// Writers Guide have.
fn gen_xormaps(rng: &mut SplitMix64, ways: u64, g: u64) -> Vec<u64> {
    let shift = g.trailing_zeros();
    let k = pow2_part(ways).trailing_zeros();
    (0..k)
        .map(|i| {
            let own = 1u64 << (shift + i);
            let above = rng.next_u64() & !((own << 1) - 1) & ((1 << 40) - 1);
            // Sparse, like real maps.
            own | (above & rng.next_u64() & rng.next_u64())
        })
        .collect()
}

/// A random Linux-like layout: ways = root × host bridge × switch levels,
/// 1..16 devices, any supported ways and granularity, modulo or XOR.
fn gen_layout(rng: &mut SplitMix64) -> (u64, u64, Vec<Shape>) {
    loop {
        let region_ways = u64::from(pick(rng, &ALL_WAYS));
        // Root ways: any divisor that leaves a power of two below it.
        let root_choices: Vec<u64> = ALL_WAYS
            .iter()
            .map(|&w| u64::from(w))
            .filter(|w| region_ways % w == 0 && (region_ways / w).is_power_of_two())
            .collect();
        let root_ways = pick(rng, &root_choices);
        let per_hb = region_ways / root_ways;
        let mut next_device = 0;
        let hbs: Vec<Shape> = (0..root_ways)
            .map(|_| gen_subtree(rng, per_hb, 0, &mut next_device))
            .collect();
        let grans: Vec<u64> = GRANULARITIES
            .iter()
            .copied()
            .filter(|&g| hbs.iter().all(|hb| fits(hb, g * pow2_part(root_ways))))
            .collect();
        if grans.is_empty() {
            continue;
        }
        return (root_ways, pick(rng, &grans), hbs);
    }
}

fn gen_region(
    rng: &mut SplitMix64,
    hbs: &[Shape],
    root_ways: u64,
    g: u64,
    window_base: u64,
    xor: bool,
) -> Region {
    let devices = hbs.iter().map(count_devices).sum::<u64>();
    let rows = 1 + below(rng, 48);
    let size = devices * g * rows;
    let window_size = SZ_256M * (1 + below(rng, 4));
    // Linux places regions 256 MiB-aligned; modulo decode must also hold at
    // any granularity-aligned base, XOR only where the interleave set starts
    // on a whole set (Linux's alignment guarantees it).
    let base = if xor || below(rng, 2) == 0 {
        window_base + SZ_256M * below(rng, window_size / SZ_256M)
    } else {
        window_base + g * below(rng, (window_size - size) / g)
    };
    let arithmetic = if xor {
        Arithmetic::Xor {
            xormaps: gen_xormaps(rng, root_ways, g),
        }
    } else {
        Arithmetic::Modulo
    };
    Region {
        window_base,
        window_size,
        base,
        size,
        gran: g,
        root_gran: if root_ways == 1 {
            pick(rng, &GRANULARITIES)
        } else {
            g
        },
        arithmetic,
        host_bridges: hbs.to_vec(),
        dpa_base: (0..devices)
            .map(|_| below(rng, 64) * SZ_256M + below(rng, 4) * g)
            .collect(),
        idle_gran: pick(rng, &GRANULARITIES),
    }
}

fn region_of(regions: &[Region], hpa: u64) -> Option<usize> {
    regions
        .iter()
        .position(|r| hpa >= r.base && hpa - r.base < r.size)
}

/// Checks decode against the reference at chunk starts, chunk ends and a
/// random byte of every chunk, the bijection, and addresses outside.
fn check_tree(rng: &mut SplitMix64, regions: &[Region], tree: &DecodeTree) {
    let references: Vec<Vec<Target>> = regions.iter().map(reference_map).collect();
    for (ri, region) in regions.iter().enumerate() {
        let reference = &references[ri];
        let devices = region.dpa_base.len();
        // The layout itself must be a bijection for the reference to mean
        // anything: each device owns exactly size / (ways·g) chunks.
        let rows = region.size / region.gran / devices as u64;
        let mut owned = vec![0u64; devices];
        for t in reference {
            owned[t.device] += 1;
        }
        assert!(owned.iter().all(|&n| n == rows), "layout {region:?}");

        let mut seen: Vec<HashSet<u64>> = vec![HashSet::new(); devices];
        for (c, want) in reference.iter().enumerate() {
            let start = region.base + c as u64 * region.gran;
            let got = tree.decode(start);
            assert_eq!(
                got,
                Some(*want),
                "region {ri} chunk {c} hpa {start:#x}: {region:?}"
            );
            assert!(seen[want.device].insert(want.dpa));
            for within in [region.gran - 1, below(rng, region.gran)] {
                assert_eq!(
                    tree.decode(start + within),
                    Some(Target {
                        device: want.device,
                        dpa: want.dpa + within,
                    }),
                    "region {ri} chunk {c} +{within}"
                );
            }
        }
        // Bijection: every chunk of every device's decoder range once.
        for (d, dpas) in seen.iter().enumerate() {
            let expect: HashSet<u64> = (0..rows)
                .map(|k| region.dpa_base[d] + k * region.gran)
                .collect();
            assert_eq!(*dpas, expect, "device {d} of region {ri}");
        }
        // Just outside the region, inside or outside the window.
        for hpa in [
            region.base.wrapping_sub(1),
            region.base + region.size,
            region.window_base.wrapping_sub(1),
            region.window_base + region.window_size,
            region.window_base + region.window_size - 1,
        ] {
            if region_of(regions, hpa).is_none() {
                assert_eq!(tree.decode(hpa), None, "{hpa:#x} outside");
            }
        }
    }
    // Random addresses anywhere, and near the windows.
    for _ in 0..200 {
        let hpa = match below(rng, 3) {
            0 => rng.next_u64(),
            1 => rng.next_u64() >> 24,
            _ => {
                let r = &regions[below(rng, regions.len() as u64) as usize];
                r.window_base + below(rng, r.window_size)
            }
        };
        match region_of(regions, hpa) {
            None => assert_eq!(tree.decode(hpa), None, "{hpa:#x}"),
            Some(ri) => {
                let r = &regions[ri];
                let off = hpa - r.base;
                let want = references[ri][(off / r.gran) as usize];
                assert_eq!(
                    tree.decode(hpa),
                    Some(Target {
                        device: want.device,
                        dpa: want.dpa + off % r.gran,
                    })
                );
            }
        }
    }
}

/// Two regions (two windows) over one hierarchy, so every port and endpoint
/// holds two decoders and must pick the one whose range covers the HPA.
#[test]
fn random_layouts_match_the_brute_force_reference() {
    let mut rng = SplitMix64::new(0x1eaf_cafe);
    let mut seen_ways = HashSet::new();
    let mut seen_root_ways = HashSet::new();
    let mut seen_xor = 0;
    for case in 0..400 {
        let (root_ways, g, hbs) = gen_layout(&mut rng);
        let xor0 = root_ways != 1 && root_ways != 3 && below(&mut rng, 3) == 0;
        let w0 = SZ_256M * (1 + below(&mut rng, 256));
        let r0 = gen_region(&mut rng, &hbs, root_ways, g, w0, xor0);
        // Second region: same hierarchy, its own window and granularity.
        let grans: Vec<u64> = GRANULARITIES
            .iter()
            .copied()
            .filter(|&g| hbs.iter().all(|hb| fits(hb, g * pow2_part(root_ways))))
            .collect();
        let g1 = pick(&mut rng, &grans);
        let xor1 = root_ways != 1 && root_ways != 3 && below(&mut rng, 3) == 0;
        let w1 = r0.window_base + r0.window_size + SZ_256M * below(&mut rng, 4);
        let r1 = gen_region(&mut rng, &hbs, root_ways, g1, w1, xor1);
        let regions = [r0, r1];
        let order = if case % 2 == 0 { [0, 1] } else { [1, 0] };
        let tree = build(&regions, &order);
        check_tree(&mut rng, &regions, &tree);
        seen_ways.insert(regions[0].ways());
        seen_root_ways.insert(root_ways);
        seen_xor += usize::from(xor0) + usize::from(xor1);
    }
    // The generator reached every supported ways count at both levels.
    for w in ALL_WAYS {
        assert!(
            seen_ways.contains(&u64::from(w)),
            "region ways {w} never generated"
        );
        assert!(
            seen_root_ways.contains(&u64::from(w)),
            "root ways {w} never generated"
        );
    }
    assert!(seen_xor > 50);
}

/// Every byte of small regions: the decode is a bijection from the region
/// onto the devices' decoder ranges.
#[test]
fn small_regions_are_a_bytewise_bijection() {
    let mut rng = SplitMix64::new(7);
    for _ in 0..40 {
        let (root_ways, _, hbs) = gen_layout(&mut rng);
        if !hbs.iter().all(|hb| fits(hb, 256 * pow2_part(root_ways))) {
            continue;
        }
        let xor = root_ways != 1 && root_ways != 3 && below(&mut rng, 2) == 0;
        let mut region = gen_region(&mut rng, &hbs, root_ways, 256, 64 * SZ_256M, xor);
        region.size = region.ways() * 256 * 2;
        let tree = build(std::slice::from_ref(&region), &[0]);
        let mut seen = HashSet::new();
        for hpa in region.base..region.base + region.size {
            let t = tree.decode(hpa).expect("inside the region");
            let off = t.dpa - region.dpa_base[t.device];
            assert!(off < 512, "{t:?}");
            assert!(seen.insert((t.device, t.dpa)), "{t:?} twice");
        }
        assert_eq!(seen.len() as u64, region.size);
    }
}

/// The 2 host bridges × 2 devices example: root 2-way 4 KiB, host bridges
/// 2-way 8 KiB, endpoints 4-way 4 KiB. Linux's `cxl_calc_interleave_pos`
/// comment gives the order mem0, mem2, mem1, mem3 for HB0{mem0, mem1},
/// HB1{mem2, mem3}.
#[test]
fn linux_two_host_bridges_order() {
    let hbs = vec![
        Shape::Port {
            ways: 2,
            children: vec![Shape::Device(0), Shape::Device(1)],
        },
        Shape::Port {
            ways: 2,
            children: vec![Shape::Device(2), Shape::Device(3)],
        },
    ];
    let base = 0x10_0000_0000;
    let region = Region {
        window_base: base,
        window_size: SZ_256M * 4,
        base,
        size: SZ_256M * 4,
        gran: 4096,
        root_gran: 4096,
        arithmetic: Arithmetic::Modulo,
        host_bridges: hbs,
        dpa_base: vec![0; 4],
        idle_gran: 256,
    };
    let tree = build(std::slice::from_ref(&region), &[0]);
    // The decoders are what Linux programs (drivers/cxl/core/region.c: a
    // port interleaves at parent granularity x parent ways).
    match &tree.nodes[0] {
        Node::Port { decoders } => {
            assert_eq!((decoders[0].ways, decoders[0].granularity), (2, 8192))
        }
        n => panic!("{n:?}"),
    }
    let order: Vec<usize> = (0..8)
        .map(|c| tree.decode(base + c * 4096).unwrap().device)
        .collect();
    assert_eq!(order, [0, 2, 1, 3, 0, 2, 1, 3]);
    // Second row of each device: DPA 4 KiB.
    assert_eq!(
        tree.decode(base + 6 * 4096 + 5),
        Some(Target {
            device: 1,
            dpa: 4096 + 5
        })
    );
}

/// The hierarchy for the Linux translation vectors: `root_ways` host bridges,
/// each with `per_hb` devices; device index = Linux region position
/// (`pos = hb_pos · root_ways + root_pos`, core/region.c).
fn vector_region(root_ways: u64, per_hb: u64, arithmetic: Arithmetic, base: u64) -> Region {
    let hbs = (0..root_ways)
        .map(|hb| Shape::Port {
            ways: per_hb as u8,
            children: (0..per_hb)
                .map(|p| Shape::Device((hb + p * root_ways) as usize))
                .collect(),
        })
        .collect();
    Region {
        window_base: base,
        window_size: 64 * SZ_256M,
        base,
        size: 64 * SZ_256M,
        gran: 256,
        root_gran: 256,
        arithmetic,
        host_bridges: hbs,
        dpa_base: vec![0; (root_ways * per_hb) as usize],
        idle_gran: 256,
    }
}

/// The XOR maps of Linux's tools/testing/cxl/test/cxl_translate.c (HBIG 256).
const DWG_XORMAPS: [u64; 4] = [0x2020900, 0x4041200, 0x1010400, 0x800];

/// "dpa pos hpa" rows from pmem/ndctl test/cxl-translate.sh, which takes the
/// XOR tables from the CXL Driver Writers Guide (sections 2.13.24/25).
const XOR_4R_4H: [(u64, usize, u64); 19] = [
    (248, 0, 248),
    (16, 1, 272),
    (16, 2, 528),
    (32, 3, 800),
    (288, 0, 1056),
    (288, 1, 1312),
    (288, 2, 1568),
    (288, 3, 1824),
    (544, 1, 2080),
    (544, 0, 2336),
    (544, 3, 2592),
    (1040, 2, 4112),
    (1568, 3, 6176),
    (32784, 1, 131088),
    (65552, 2, 262160),
    (98336, 3, 393248),
    (98328, 2, 393496),
    (98352, 2, 393520),
    (443953523, 0, 1775813747),
];

const XOR_8R_4H: [(u64, usize, u64); 22] = [
    (248, 0, 248),
    (16, 1, 272),
    (16, 2, 528),
    (32, 3, 800),
    (272, 1, 2064),
    (528, 2, 4112),
    (800, 3, 6176),
    (16400, 1, 131088),
    (32784, 2, 262160),
    (49184, 3, 393248),
    (49176, 2, 393496),
    (49200, 2, 393520),
    (116520373, 3, 932162229),
    (244690459, 5, 1957525275),
    (292862215, 5, 2342899463),
    (30721158, 4, 245769350),
    (246386959, 4, 1971096847),
    (72701249, 5, 581610561),
    (529382429, 5, 4235060509),
    (191132300, 2, 1529057420),
    (18589081, 1, 148712089),
    (344295715, 7, 2754367011),
];

const XOR_12R_12H: [(u64, usize, u64); 25] = [
    (224, 0, 224),
    (16, 1, 272),
    (16, 2, 528),
    (32, 3, 800),
    (32, 4, 1056),
    (32, 5, 1312),
    (32, 6, 1568),
    (32, 7, 1824),
    (32, 9, 2080),
    (32, 8, 2336),
    (32, 11, 2592),
    (32, 10, 2848),
    (288, 0, 3360),
    (299017087, 7, 3588205439),
    (329210435, 0, 3950524995),
    (151050637, 11, 1812608653),
    (145169214, 2, 1742030654),
    (328998732, 10, 3947985996),
    (159252439, 3, 1911027415),
    (342098916, 5, 4105186020),
    (97970344, 8, 1175645096),
    (214995572, 8, 2579948404),
    (101289661, 7, 1215475645),
    (40424079, 7, 485088911),
    (231458716, 7, 2777503900),
];

fn check_vectors(region: &Region, rows: &[(u64, usize, u64)]) {
    let tree = build(std::slice::from_ref(region), &[0]);
    for &(dpa, pos, hpa) in rows {
        assert_eq!(
            tree.decode(region.base + hpa),
            Some(Target { device: pos, dpa }),
            "hpa offset {hpa}"
        );
    }
}

#[test]
fn driver_writers_guide_xor_tables() {
    let xor = || Arithmetic::Xor {
        xormaps: DWG_XORMAPS.to_vec(),
    };
    // Base 0 as in the tables, and a realistic base that changes neither the
    // map bits (< 2^27) nor the mod-3 term (2^32·3 >> 10 is a multiple of 3).
    for base in [0, 3 << 32] {
        check_vectors(&vector_region(4, 1, xor(), base), &XOR_4R_4H);
        check_vectors(&vector_region(4, 2, xor(), base), &XOR_8R_4H);
        check_vectors(&vector_region(12, 1, xor(), base), &XOR_12R_12H);
    }
}

/// ndctl's "Sample Sets": the HPA of a DPA at each position, modulo and XOR.
#[test]
fn ndctl_sample_sets() {
    let xor = || Arithmetic::Xor {
        xormaps: DWG_XORMAPS.to_vec(),
    };
    let sets: [(u64, u64, &[u64], &[u64]); 5] = [
        (4, 0, &[0, 256, 512, 768], &[0, 256, 512, 768]),
        (4, 256, &[1024, 1280, 1536, 1792], &[1024, 1280, 1536, 1792]),
        (
            4,
            2048,
            &[8192, 8448, 8704, 8960],
            &[8192, 8448, 8704, 8960],
        ),
        (
            12,
            0,
            &[
                0, 256, 512, 768, 1024, 1280, 1536, 1792, 2048, 2304, 2560, 2816,
            ],
            &[
                0, 256, 512, 768, 1024, 1280, 1536, 1792, 2304, 2048, 2816, 2560,
            ],
        ),
        (
            12,
            512,
            &[
                6144, 6400, 6656, 6912, 7168, 7424, 7680, 7936, 8192, 8448, 8704, 8960,
            ],
            &[
                6912, 6656, 6400, 6144, 7936, 7680, 7424, 7168, 8192, 8448, 8704, 8960,
            ],
        ),
    ];
    for (ways, dpa, modulo, xor_hpas) in sets {
        let rows = |hpas: &[u64]| -> Vec<(u64, usize, u64)> {
            hpas.iter()
                .enumerate()
                .map(|(pos, &h)| (dpa, pos, h))
                .collect()
        };
        check_vectors(
            &vector_region(ways, 1, Arithmetic::Modulo, 0),
            &rows(modulo),
        );
        check_vectors(&vector_region(ways, 1, xor(), 0), &rows(xor_hpas));
    }
}

/// cxl_test's CEDT (tools/testing/cxl/test/cxl.c): one CXIMS with HBIG 256
/// and maps {0x404100, 0x808200}; the 2-way XOR window (cfmws7) parses one
/// map, a 4-way window both; the 3-way XOR window (cfmws8, 512 B) none.
#[test]
fn cxl_test_cxims_windows() {
    let maps = vec![0x404100, 0x808200];
    let leaf = |d| Shape::Port {
        ways: 1,
        children: vec![Shape::Device(d)],
    };
    let window = |ways: u64, g: u64, arithmetic: Arithmetic| Region {
        window_base: 4 * SZ_256M,
        window_size: 8 * SZ_256M,
        base: 4 * SZ_256M,
        size: 8 * SZ_256M,
        gran: g,
        root_gran: g,
        arithmetic,
        host_bridges: (0..ways as usize).map(leaf).collect(),
        dpa_base: vec![0; ways as usize],
        idle_gran: 256,
    };
    let two = build(
        &[window(
            2,
            256,
            Arithmetic::Xor {
                xormaps: maps.clone(),
            },
        )],
        &[0],
    );
    let base = 4 * SZ_256M;
    for (off, device) in [
        (0, 0),
        (0x100, 1),
        (0x4000, 1),
        (0x4100, 0),
        (0x400000, 1),
        (0x404100, 1),
        (0x200, 0),
        (0x808200, 0),
    ] {
        assert_eq!(tree_device(&two, base + off), Some(device), "{off:#x}");
    }
    let four = build(
        &[window(
            4,
            256,
            Arithmetic::Xor {
                xormaps: maps.clone(),
            },
        )],
        &[0],
    );
    for (off, device) in [
        (0x100, 1),
        (0x200, 2),
        (0x300, 3),
        (0x8000, 2),
        (0x804000, 3),
    ] {
        assert_eq!(tree_device(&four, base + off), Some(device), "{off:#x}");
    }
    // Too few maps for 8 ways: the root is inconsistent.
    let eight = build(&[window(8, 256, Arithmetic::Xor { xormaps: maps })], &[0]);
    assert_eq!(eight.decode(base), None);
    // 3-way XOR uses no maps: (hpa / 512) mod 3 on the absolute address.
    let three = build(&[window(3, 512, Arithmetic::Xor { xormaps: vec![] })], &[0]);
    for c in 0..12u64 {
        assert_eq!(
            tree_device(&three, base + c * 512),
            Some((((base / 512) + c) % 3) as usize)
        );
    }
}

fn tree_device(tree: &DecodeTree, hpa: u64) -> Option<usize> {
    tree.decode(hpa).map(|t| t.device)
}

/// The root selects on the absolute HPA (spec, QEMU): a 3-way window at
/// 256 MiB starts on position (2^28 / 256) mod 3 = 1, not 0.
#[test]
fn root_position_uses_the_absolute_hpa() {
    let leaf = |d| Shape::Port {
        ways: 1,
        children: vec![Shape::Device(d)],
    };
    let region = Region {
        window_base: SZ_256M,
        window_size: 3 * SZ_256M,
        base: SZ_256M,
        size: 3 * SZ_256M,
        gran: 256,
        root_gran: 256,
        arithmetic: Arithmetic::Modulo,
        host_bridges: (0..3).map(leaf).collect(),
        dpa_base: vec![0; 3],
        idle_gran: 256,
    };
    let tree = build(std::slice::from_ref(&region), &[0]);
    assert_eq!(tree_device(&tree, SZ_256M), Some(1));
    assert_eq!(tree_device(&tree, SZ_256M + 256), Some(2));
    assert_eq!(tree_device(&tree, SZ_256M + 512), Some(0));
    // Each device's first chunk in the decoder is still its DPA 0.
    for c in 0..3 {
        assert_eq!(tree.decode(SZ_256M + c * 256).map(|t| t.dpa), Some(0));
    }
    // For power-of-two ways at 256 MiB-aligned bases the two agree.
    let mut two = region.clone();
    two.host_bridges.truncate(2);
    let tree = build(std::slice::from_ref(&two), &[0]);
    assert_eq!(tree_device(&tree, SZ_256M), Some(0));
}

#[test]
fn three_six_twelve_way_endpoints() {
    // 6 ways at 1 KiB over a 3-way root and 2-way host bridges (Linux: the
    // host bridges interleave at 1 KiB, the root's power-of-two factor 1).
    let hbs: Vec<Shape> = (0..3)
        .map(|hb| Shape::Port {
            ways: 2,
            children: vec![Shape::Device(hb), Shape::Device(hb + 3)],
        })
        .collect();
    let base = 3 << 30; // a multiple of 3 KiB·2
    let region = Region {
        window_base: base,
        window_size: 3 * SZ_256M,
        base,
        size: 6 * 1024 * 100,
        gran: 1024,
        root_gran: 1024,
        arithmetic: Arithmetic::Modulo,
        host_bridges: hbs,
        dpa_base: vec![0; 6],
        idle_gran: 256,
    };
    let tree = build(std::slice::from_ref(&region), &[0]);
    // chunk c: host bridge c mod 3, device below it c mod 2; DPA row c / 6.
    for c in 0..600u64 {
        let hb = (c % 3) as usize;
        let dev = if c % 2 == 0 { hb } else { hb + 3 };
        assert_eq!(
            tree.decode(base + c * 1024 + 3),
            Some(Target {
                device: dev,
                dpa: (c / 6) * 1024 + 3
            }),
            "chunk {c}"
        );
    }
    // 12 ways straight from a 12-way root at 16 KiB.
    let leaf = |d| Shape::Port {
        ways: 1,
        children: vec![Shape::Device(d)],
    };
    let region = Region {
        window_base: 0,
        window_size: 12 * SZ_256M,
        base: 0,
        size: 12 * SZ_256M,
        gran: 16384,
        root_gran: 16384,
        arithmetic: Arithmetic::Modulo,
        host_bridges: (0..12).map(leaf).collect(),
        dpa_base: vec![1 << 40; 12],
        idle_gran: 256,
    };
    let tree = build(std::slice::from_ref(&region), &[0]);
    let last = 12 * SZ_256M - 1;
    assert_eq!(
        tree.decode(last),
        Some(Target {
            device: 11,
            dpa: (1 << 40) + SZ_256M - 1
        })
    );
    assert_eq!(tree.decode(last + 1), None);
}

#[test]
fn encodings_cover_every_supported_ways() {
    for w in ALL_WAYS {
        assert_eq!(encode_ways(w).and_then(decode_ways), Some(w));
    }
    assert_eq!(
        ALL_WAYS.map(|w| encode_ways(w).unwrap()),
        [0, 1, 8, 2, 9, 3, 10, 4]
    );
}

/// Inconsistent paths give None rather than a wrong answer.
#[test]
fn inconsistent_paths_decode_to_none() {
    let ep = |device, ways, granularity, dpa_base| Node::Endpoint {
        device,
        decoders: vec![EndpointDecode {
            base: 0,
            size: 1 << 30,
            ways,
            granularity,
            dpa_base,
        }],
    };
    let port = |ways, granularity, targets: Vec<usize>| Node::Port {
        decoders: vec![PortDecode {
            base: 0,
            size: 1 << 30,
            ways,
            granularity,
            targets,
        }],
    };
    let root = |ways, granularity, targets: Vec<usize>| RootDecode {
        base: 0,
        size: 1 << 30,
        ways,
        granularity,
        arithmetic: Arithmetic::Modulo,
        targets,
    };
    let tree = |roots, nodes| DecodeTree { roots, nodes };
    let ok = tree(
        vec![root(1, 256, vec![0])],
        vec![port(1, 256, vec![1]), ep(7, 1, 256, 0)],
    );
    assert_eq!(
        ok.decode(0x1234),
        Some(Target {
            device: 7,
            dpa: 0x1234
        })
    );
    assert_eq!(ok.decode(1 << 30), None);
    // Root ways, granularity, target list, node index.
    for bad in [
        tree(vec![root(5, 256, vec![0; 5])], ok.nodes.clone()),
        tree(vec![root(2, 100, vec![0; 2])], ok.nodes.clone()),
        tree(vec![root(2, 32768, vec![0; 2])], ok.nodes.clone()),
        tree(vec![root(2, 256, vec![0])], ok.nodes.clone()),
        tree(vec![root(1, 256, vec![9])], ok.nodes.clone()),
        tree(vec![root(1, 256, vec![])], ok.nodes.clone()),
    ] {
        assert_eq!(bad.decode(0x100), None, "{bad:?}");
    }
    // Port ways, granularity, targets; endpoint ways, granularity, overflow.
    for nodes in [
        vec![port(7, 256, vec![1; 7]), ep(0, 1, 256, 0)],
        vec![port(1, 0, vec![1]), ep(0, 1, 256, 0)],
        vec![port(2, 256, vec![1]), ep(0, 1, 256, 0)],
        vec![port(1, 256, vec![]), ep(0, 1, 256, 0)],
        vec![port(1, 256, vec![1]), ep(0, 0, 256, 0)],
        vec![port(1, 256, vec![1]), ep(0, 1, 255, 0)],
        vec![port(1, 256, vec![1]), ep(0, 1, 256, u64::MAX)],
        vec![port(1, 256, vec![0])],
        vec![port(1, 256, vec![1]), port(1, 256, vec![0])],
        vec![port(1, 256, vec![1])],
    ] {
        let t = tree(vec![root(1, 256, vec![0])], nodes);
        assert_eq!(t.decode(0x100), None, "{t:?}");
    }
    // XOR needs log2(ways) maps (log2(ways / 3) for 6 and 12).
    let xor = |ways: u8, maps: Vec<u64>| {
        let mut t = tree(
            vec![RootDecode {
                arithmetic: Arithmetic::Xor { xormaps: maps },
                ..root(ways, 256, vec![0; ways as usize])
            }],
            ok.nodes.clone(),
        );
        t.roots[0].size = 1 << 20;
        t.decode(0x100)
    };
    assert_eq!(xor(4, vec![0x100]), None);
    assert!(xor(4, vec![0x100, 0x200]).is_some());
    assert_eq!(xor(12, vec![0x100]), None);
    assert!(xor(12, vec![0x100, 0x200]).is_some());
    assert!(xor(6, vec![0x100]).is_some());
    assert!(xor(3, vec![]).is_some());
    assert!(xor(1, vec![]).is_some());
}

/// Windows at the top of the address space and garbage trees: no panic.
#[test]
fn garbage_never_panics() {
    let mut rng = SplitMix64::new(99);
    let any_u8 = |rng: &mut SplitMix64| rng.next_u64() as u8;
    let edgy = |rng: &mut SplitMix64| match below(rng, 4) {
        0 => rng.next_u64(),
        1 => u64::MAX - below(rng, 1 << 20),
        2 => below(rng, 1 << 16),
        _ => 1 << below(rng, 64),
    };
    for _ in 0..3000 {
        let nodes_n = below(&mut rng, 6) as usize;
        let mut tree = DecodeTree::default();
        for _ in 0..1 + below(&mut rng, 3) {
            let ways = any_u8(&mut rng) % 20;
            let arithmetic = if below(&mut rng, 2) == 0 {
                Arithmetic::Modulo
            } else {
                Arithmetic::Xor {
                    xormaps: (0..below(&mut rng, 5)).map(|_| edgy(&mut rng)).collect(),
                }
            };
            tree.roots.push(RootDecode {
                base: edgy(&mut rng),
                size: edgy(&mut rng),
                ways,
                granularity: pick(&mut rng, &[256, 4096, 16384, 0, 3, 1 << 40]),
                arithmetic,
                targets: (0..below(&mut rng, 20))
                    .map(|_| below(&mut rng, 8) as usize)
                    .collect(),
            });
        }
        for _ in 0..nodes_n {
            let n = if below(&mut rng, 2) == 0 {
                Node::Port {
                    decoders: (0..below(&mut rng, 3))
                        .map(|_| PortDecode {
                            base: edgy(&mut rng),
                            size: edgy(&mut rng),
                            ways: any_u8(&mut rng) % 20,
                            granularity: pick(&mut rng, &[256, 512, 16384, 0, 1 << 63]),
                            targets: (0..below(&mut rng, 20))
                                .map(|_| below(&mut rng, 8) as usize)
                                .collect(),
                        })
                        .collect(),
                }
            } else {
                Node::Endpoint {
                    device: below(&mut rng, 4) as usize,
                    decoders: (0..below(&mut rng, 3))
                        .map(|_| EndpointDecode {
                            base: edgy(&mut rng),
                            size: edgy(&mut rng),
                            ways: any_u8(&mut rng) % 20,
                            granularity: pick(&mut rng, &[256, 2048, 16384, 0, 7]),
                            dpa_base: edgy(&mut rng),
                        })
                        .collect(),
                }
            };
            tree.nodes.push(n);
        }
        for _ in 0..20 {
            let hpa = if below(&mut rng, 2) == 0 {
                let r = &tree.roots[0];
                r.base.wrapping_add(below(&mut rng, r.size.max(1)))
            } else {
                edgy(&mut rng)
            };
            if let Some(t) = tree.decode(hpa) {
                assert!(t.device < 4);
            }
        }
    }
}
