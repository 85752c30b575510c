use super::*;
use crate::cxl::regions::tree::tests::{switch4, two_way};
use crate::cxl::regions::tree::Layout;

const MIB: u64 = 1 << 20;

fn ram(size: u64) -> GuestMemory {
    GuestMemory::from_ranges(&[(GuestAddress(0), size as usize)]).unwrap()
}

#[test]
fn guest_ram_decodes_to_host_memory_up_to_its_end_and_no_further() {
    let m = BusMemory::new(ram(MIB), None);
    let s = m.decode(0x1000, 0x2000).unwrap();
    assert_eq!((s.target, s.len), (Target::HostMemory, 0x2000));
    let s = m.decode(MIB - 0x100, 0x1000).unwrap();
    assert_eq!(s.len, 0x100, "stops at the end of RAM");
    assert_eq!(m.decode(MIB, 4), Err(DmaError::Unmapped(MIB)));
    assert_eq!(m.decode(u64::MAX, 4), Err(DmaError::Unmapped(u64::MAX)));
    m.write(0x10, b"abcd").unwrap();
    let mut b = [0u8; 4];
    m.read(0x10, &mut b).unwrap();
    assert_eq!(&b, b"abcd");
    // A write that runs past RAM writes nothing.
    let before = {
        let mut b = [0u8; 8];
        m.read(MIB - 8, &mut b).unwrap();
        b
    };
    assert_eq!(m.write(MIB - 8, &[0x5a; 16]), Err(DmaError::Unmapped(MIB)));
    let mut after = [0u8; 8];
    m.read(MIB - 8, &mut after).unwrap();
    assert_eq!(after, before);
    let mut big = [0u8; 16];
    assert!(m.read(MIB - 8, &mut big).is_err());
}

#[test]
fn vram_decodes_only_where_its_bar_is_and_only_inside_it() {
    let m = BusMemory::new(ram(MIB), None);
    let vram = Arc::new(Vram::new("dmatest", 2 * MIB).unwrap());
    let w = Arc::new(VramWindow::new(vram.clone()));
    m.add_vram(3, w.clone());
    let bar = 0xc800_0000;
    assert!(m.decode(bar, 4).is_err(), "BAR not decoding yet");
    w.set_base(Some(bar));
    let s = m.decode(bar + 0x100, 4 * MIB).unwrap();
    assert_eq!(s.target, Target::Accelerator(3));
    assert_eq!(s.len, 2 * MIB - 0x100, "stops at the end of VRAM");
    assert!(m.decode(bar + 2 * MIB, 4).is_err());
    m.write(bar + 8, &[1, 2, 3, 4]).unwrap();
    let mut b = [0u8; 4];
    assert!(vram.read(8, &mut b));
    assert_eq!(b, [1, 2, 3, 4]);
    // From RAM into VRAM across the boundary is two spans, both served.
    w.set_base(Some(MIB));
    m.write(MIB - 2, &[9, 8, 7, 6]).unwrap();
    assert!(vram.read(0, &mut b));
    assert_eq!(b[..2], [7, 6]);
    w.set_base(None);
    assert!(m.decode(MIB, 4).is_err(), "memory space turned off");
}

#[test]
fn cxl_windows_decode_through_the_committed_decoders_granule_by_granule() {
    let (topo, plan) = switch4();
    let base = plan.windows[0].base;
    let tree = Arc::new(TreeCell::default());
    tree.set(Layout::new(&topo, &plan).tree(&two_way(base)));
    let backings: Vec<_> = (0..4)
        .map(|i| Arc::new(Type3Backing::new(&format!("dma{i}"), 256 * MIB, 0, None).unwrap()))
        .collect();
    let windows = plan.window_ranges();
    let m = BusMemory::new(
        ram(MIB),
        Some(CxlMemory {
            windows,
            tree,
            backings: backings.clone(),
        }),
    );
    // 2-way at 4 KiB: the first granule is device 0's, the next device 1's.
    let s = m.decode(base, 64 * 1024).unwrap();
    assert_eq!(s.target, Target::Type3 { device: 0, dpa: 0 });
    assert_eq!(s.len, 4096);
    let s = m.decode(base + 4096 + 16, 64 * 1024).unwrap();
    assert_eq!(s.target, Target::Type3 { device: 1, dpa: 16 });
    assert_eq!(s.len, 4096 - 16);
    let data: Vec<u8> = (1..=16).collect();
    m.write(base + 4096 - 8, &data).unwrap();
    let mut dev = [0u8; 8];
    backings[0].read(4096 - 8, &mut dev);
    assert_eq!(dev, [1, 2, 3, 4, 5, 6, 7, 8]);
    backings[1].read(0, &mut dev);
    assert_eq!(dev, [9, 10, 11, 12, 13, 14, 15, 16]);
    // Past the 512 MiB region, inside the window: nothing.
    let past = base + 512 * MIB;
    assert_eq!(m.decode(past, 4), Err(DmaError::Unmapped(past)));
    assert!(m.write(past - 4, &[0; 8]).is_err());
}
