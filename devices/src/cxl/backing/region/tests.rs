use super::*;
use fabric::interleave::{Arithmetic, DecodeTree, EndpointDecode, Node, RootDecode, Target};

const MIB: u64 = 1 << 20;

/// A window interleaved `ways` ways at `g` straight onto `ways` endpoints,
/// each committed over the whole window from DPA 0: the decode every
/// interleave reduces to at the endpoints.
fn flat_tree(base: u64, size: u64, ways: u8, g: u64) -> DecodeTree {
    DecodeTree {
        roots: vec![RootDecode {
            base,
            size,
            ways,
            granularity: g,
            arithmetic: Arithmetic::Modulo,
            targets: (0..usize::from(ways)).collect(),
        }],
        nodes: (0..usize::from(ways))
            .map(|device| Node::Endpoint {
                device,
                decoders: vec![EndpointDecode {
                    base,
                    size,
                    ways,
                    granularity: g,
                    dpa_base: 0,
                }],
            })
            .collect(),
    }
}

#[test]
fn the_layout_is_the_hdm_decode_for_every_ways_and_granularity() {
    // A base aligned for every row length (g × ways up to 16 KiB × 16 and
    // 16 KiB × 12), as Linux's 256 MiB-aligned regions are.
    let base = 3 << 32;
    for ways in [1u8, 2, 4, 8, 16, 3, 6, 12] {
        for g in (8..=14).map(|s| 1u64 << s) {
            let size = u64::from(ways) * 64 * g;
            let tree = flat_tree(base, size, ways, g);
            let layout = InterleaveLayout {
                ways: u64::from(ways),
                granularity: g,
            };
            // Granule edges and bytes between them, all over the region.
            let offsets = (0..4000u64)
                .map(|k| (k * 4099) % size)
                .chain([0, g - 1, g, size - 1]);
            for r in offsets {
                let Target { device, dpa } = tree.decode(base + r).unwrap();
                let at = format!("{ways}-way x {g} B, region offset {r:#x}");
                assert_eq!(layout.device_offset(r), (device as u64, dpa), "{at}");
                assert_eq!(layout.region_offset(device as u64, dpa), r, "{at}");
            }
        }
    }
}

/// Frees with `fallocate`, as any thread without the VMM's filter may.
struct Fallocate;

impl Reclaim for Fallocate {
    fn punch(&self, file: &File, offset: u64, len: u64) -> io::Result<()> {
        use vmm_sys_util::write_zeroes::PunchHole;
        file.try_clone()?.punch_hole(offset, len)
    }
}

/// A window's memfd of `size` bytes.
fn window(size: u64) -> Arc<File> {
    let f: File = memfd::MemfdOptions::default()
        .create("window-test")
        .unwrap()
        .into_file();
    f.set_len(size).unwrap();
    Arc::new(f)
}

fn gather(
    file: &Arc<File>,
    offset: u64,
    layout: InterleaveLayout,
    share: u64,
    members: Vec<(Arc<Type3Backing>, u64)>,
) -> io::Result<RegionBacking> {
    RegionBacking::gather(
        file.clone(),
        offset,
        layout,
        share,
        members,
        Arc::new(Fallocate),
    )
}

fn volatile(name: &str, size: u64) -> Arc<Type3Backing> {
    Arc::new(Type3Backing::new(name, size, 0, None).unwrap())
}

/// The bytes of a device's own file, bypassing any relocation.
fn own_bytes(b: &Type3Backing, dpa: u64, n: usize) -> Vec<u8> {
    let s = b.locate(dpa).unwrap();
    let mut v = vec![0; n];
    s.file.read_exact_at(&mut v, s.offset).unwrap();
    v
}

/// Bytes at `offset` into the region (not into its file).
fn region_bytes(r: &RegionBacking, offset: u64, n: usize) -> Vec<u8> {
    let mut v = vec![0; n];
    r.file().read_exact_at(&mut v, r.offset() + offset).unwrap();
    v
}

#[test]
fn bytes_written_one_way_move_to_their_hpa_and_back() {
    let devs: Vec<_> = (0..4)
        .map(|i| volatile(&format!("m{i}"), 8 * MIB))
        .collect();
    let layout = InterleaveLayout {
        ways: 4,
        granularity: 4096,
    };
    // Shares from DPA 2 MiB, 4 MiB each; a tag per device and place.
    let (dpa_base, share) = (2 * MIB, 4 * MIB);
    let tag = |d: usize, x: u64| format!("dev{d}@{x:#x}").into_bytes();
    let places = [64u64, 4096 - 3, 5 * 4096 + 100, share - 16];
    for (d, b) in devs.iter().enumerate() {
        for x in places {
            b.write(dpa_base + x, &tag(d, x)).unwrap();
        }
        b.write(0x100, b"outside").unwrap();
    }
    let members = devs.iter().map(|b| (b.clone(), dpa_base)).collect();
    // The region 256 MiB into its window's file.
    let file = window(512 * MIB);
    let region = gather(&file, 256 * MIB, layout, share, members).unwrap();
    assert_eq!(region.size(), 16 * MIB);
    for (d, b) in devs.iter().enumerate() {
        for x in places {
            let t = tag(d, x);
            // Where the HPA order puts it, granule by granule (the tag at
            // 4096 - 3 spills into the device's next granule, 4 granules on).
            let mut got = Vec::new();
            for (i, _) in t.iter().enumerate() {
                let r = layout.region_offset(d as u64, x + i as u64);
                got.extend(region_bytes(&region, r, 1));
            }
            assert_eq!(got, t, "dev{d} at {x:#x} in the region");
            // Reads by DPA follow the bytes; the device's file gave them up.
            let mut back = vec![0; t.len()];
            b.read(dpa_base + x, &mut back);
            assert_eq!(back, t);
            assert_eq!(own_bytes(b, dpa_base + x, t.len()), vec![0; t.len()]);
        }
        assert_eq!(own_bytes(b, 0x100, 7), b"outside", "outside the share");
        assert!(b.relocated_within(dpa_base + share - 1, 1));
        assert!(!b.relocated_within(0, dpa_base));
    }
    // A write by DPA while gathered lands at its HPA, one straddling the
    // share's start half in each place.
    devs[2].write(dpa_base + 8 * 4096, b"mailbox").unwrap();
    assert_eq!(
        region_bytes(&region, layout.region_offset(2, 8 * 4096), 7),
        b"mailbox"
    );
    devs[1].write(dpa_base - 4, b"edge-str").unwrap();
    assert_eq!(own_bytes(&devs[1], dpa_base - 4, 4), b"edge");
    assert_eq!(region_bytes(&region, 4096, 4), b"-str");
    let mut edge = [0u8; 8];
    devs[1].read(dpa_base - 4, &mut edge);
    assert_eq!(&edge, b"edge-str");
    // And a write by HPA (the guest's store) is read back by DPA.
    region
        .file()
        .write_all_at(b"guest", 256 * MIB + 3 * 4096 * 4 + 3 * 4096)
        .unwrap();
    let mut g = [0u8; 5];
    devs[3].read(dpa_base + 3 * 4096, &mut g);
    assert_eq!(&g, b"guest");
    drop(region);
    // Torn down: everything is back in the devices' own files.
    for (d, b) in devs.iter().enumerate() {
        assert!(!b.relocated_within(0, 8 * MIB));
        for x in places {
            let t = tag(d, x);
            assert_eq!(own_bytes(b, dpa_base + x, t.len()), t);
        }
    }
    assert_eq!(own_bytes(&devs[2], dpa_base + 8 * 4096, 7), b"mailbox");
    assert_eq!(own_bytes(&devs[1], dpa_base - 4, 8), b"edge-str");
    assert_eq!(own_bytes(&devs[3], dpa_base + 3 * 4096, 5), b"guest");
    // And the window holds nothing any more.
    assert_eq!(file.try_clone().unwrap().seek_data(0).unwrap(), None);
}

#[test]
fn a_fresh_region_moves_nothing_and_holds_no_memory() {
    let devs: Vec<_> = (0..2)
        .map(|i| volatile(&format!("f{i}"), 1 << 30))
        .collect();
    let layout = InterleaveLayout {
        ways: 2,
        granularity: 256,
    };
    let members = devs.iter().map(|b| (b.clone(), 0)).collect();
    let region = gather(&window(2 << 30), 0, layout, 1 << 30, members).unwrap();
    assert_eq!(
        region.file().try_clone().unwrap().seek_data(0).unwrap(),
        None
    );
    // Zeros written through a device do not populate the region either.
    devs[0].write(0, &[0; 64]).unwrap();
    drop(region);
    for b in &devs {
        let s = b.locate(0).unwrap();
        assert_eq!(s.file.try_clone().unwrap().seek_data(0).unwrap(), None);
    }
}

#[test]
fn persistent_shares_duplicates_and_held_ranges_are_refused() {
    let layout = InterleaveLayout {
        ways: 2,
        granularity: 4096,
    };
    let a = volatile("a", 4 * MIB);
    let p = Arc::new(Type3Backing::new("p", MIB, 4 * MIB, None).unwrap());
    let file = window(4 * MIB);
    let refused = |m: Vec<(Arc<Type3Backing>, u64)>| {
        gather(&file, 0, layout, MIB, m).unwrap_err().to_string()
    };
    assert!(refused(vec![(a.clone(), 0), (p.clone(), MIB)]).contains("volatile"));
    assert!(refused(vec![(a.clone(), 0), (p.clone(), 512 << 10)]).contains("volatile"));
    assert!(refused(vec![(a.clone(), 0), (a.clone(), MIB)]).contains("twice"));
    assert!(refused(vec![(a.clone(), 0)]).contains("1 members for 2 ways"));
    let held = gather(&file, 0, layout, MIB, vec![(a.clone(), 0), (p.clone(), 0)]).unwrap();
    let b = volatile("b", 4 * MIB);
    assert!(refused(vec![(a.clone(), 0), (b.clone(), 0)]).contains("another region"));
    drop(held);
    // A region that would run past the end of its file.
    let past = gather(&file, 3 * MIB, layout, MIB, vec![(a, 0), (b, 0)]);
    assert!(past.unwrap_err().to_string().contains("shorter"));
}
