//! virtio-blk behind the virtio-pci transport (Virtio 1.2 §4.1, §5.2): any
//! register access to BAR 0 and the MSI-X BAR, driver setups with sane or
//! hostile ring addresses, and guest RAM scribbled with descriptors (loops,
//! indirect tables, buffers outside RAM, lengths that overflow), available
//! entries and request headers, with notifications in between.

use std::path::PathBuf;
use std::sync::Arc;

use devices::pci::{PciDevice, PciFunction};
use devices::virtio::block::{Block, CLASS_STORAGE_OTHER};
use devices::virtio::{GuestRam, VirtioPci};
use devices::BusDevice;
use vm_memory::{Bytes, GuestAddress};

use crate::input::Input;
use crate::targets::NoMsi;

const RAM: u64 = 0x1_0000;
const DISK: usize = 16 << 10;
const BAR0: u64 = 0xc000_0000;
const MSIX_BAR: u64 = 0xc000_8000;
/// Queue 0's rings when the driver sets them up sanely (queue size 16).
const DESC: u64 = 0x1000;
const AVAIL: u64 = 0x2000;
const USED: u64 = 0x3000;
const HEADERS: u64 = 0x4000;
const STATUS: u64 = 0x5000;
const DATA: u64 = 0x8000;
const STATUS_REG: u64 = 0x14;
const DRIVER_OK: u8 = 4;
const FEATURES_OK: u8 = 8;

/// One image file per fuzzing thread, rewritten for every input.
fn image() -> PathBuf {
    let path = std::env::temp_dir().join(format!(
        "cxlvmm-fuzz-virtio-blk-{}-{:?}.img",
        std::process::id(),
        std::thread::current().id()
    ));
    std::fs::write(&path, vec![0x5a; DISK]).expect("write the fuzz image");
    path
}

fn program(f: &mut PciFunction) {
    for (reg, v) in [
        (4, BAR0 as u32),
        (5, 0),
        (8, MSIX_BAR as u32),
        (9, 0),
        (1, 0b110),
    ] {
        let _ = f.write_config(reg, 0, &v.to_le_bytes());
    }
}

/// An address: mostly where the rings and buffers are, sometimes anywhere.
fn address(input: &mut Input) -> u64 {
    match input.range(0, 3) {
        0 => input.u64(),
        1 => RAM - input.range(0, 64),
        _ => input.range(0, RAM - 1) & !0xf,
    }
}

fn write_desc(mem: &GuestRam, table: u64, i: u64, input: &mut Input) {
    let mut d = address(input).to_le_bytes().to_vec();
    let len = input.pick(&[16u32, 1, 512, 4096, 0, u32::MAX, 48]);
    d.extend_from_slice(&len.to_le_bytes());
    d.extend_from_slice(&(input.range(0, 7) as u16).to_le_bytes());
    d.extend_from_slice(&(input.range(0, 18) as u16).to_le_bytes());
    let _ = mem.write_slice(&d, GuestAddress(table.wrapping_add(16 * i)));
}

pub fn fuzz_virtio_blk(data: &[u8]) {
    let mut input = Input::new(data);
    let path = image();
    let read_only = input.bool();
    let Ok(block) = Block::open(&path, read_only, "fuzz") else {
        return;
    };
    let mem = GuestRam::from_ranges(&[(GuestAddress(0), RAM as usize)]).expect("guest RAM");
    let mut pci = VirtioPci::new(
        Box::new(block),
        mem.clone(),
        CLASS_STORAGE_OTHER,
        Arc::new(NoMsi),
    );
    program(&mut pci.function);
    let bars = pci.function.decoding_bars();
    let bar = |index: u8| {
        bars.iter()
            .find(|b| b.range.index == index)
            .map(|b| b.device.clone())
            .expect("BAR decodes")
    };
    let (regs, msix): (Arc<dyn BusDevice>, Arc<dyn BusDevice>) = (bar(0), bar(4));
    let wr = |off: u64, len: usize, v: u64| regs.write(off, &v.to_le_bytes()[..len]);
    let status = || {
        let mut b = [0u8];
        regs.read(STATUS_REG, &mut b);
        b[0]
    };
    let mut steps = 0;
    while !input.is_empty() && steps < 256 {
        steps += 1;
        match input.range(0, 9) {
            // A driver's setup of queue 0, with sane or hostile addresses.
            0 => {
                wr(STATUS_REG, 1, 0);
                wr(STATUS_REG, 1, 3);
                for half in 0..2u64 {
                    wr(0x08, 4, half);
                    // VERSION_1 is bit 32: the high half.
                    let v = if input.bool() {
                        input.u32()
                    } else {
                        half as u32
                    };
                    wr(0x0c, 4, u64::from(v));
                }
                wr(STATUS_REG, 1, 0xb);
                wr(0x16, 2, 0);
                wr(0x18, 2, input.pick(&[16u64, 16, 16, 8, 256, 3]));
                let sane = input.range(0, 3) != 0;
                for (off, addr) in [(0x20, DESC), (0x28, AVAIL), (0x30, USED)] {
                    wr(off, 8, if sane { addr } else { address(&mut input) });
                }
                wr(0x1c, 2, 1);
                wr(STATUS_REG, 1, 0xf);
            }
            // Any register access to BAR 0.
            1 => {
                let (common, any) = (input.range(0, 0x40), input.range(0, 0x4010));
                let off = input.pick(&[common, any, 0x3000]);
                let w = input.width();
                if input.bool() {
                    regs.write(off, &input.data(w));
                } else {
                    let mut b = vec![0u8; w];
                    regs.read(off, &mut b);
                }
            }
            // A descriptor in the ring's table or in an indirect one.
            2 => {
                let table = if input.bool() {
                    DESC
                } else {
                    address(&mut input)
                };
                let i = input.range(0, 17);
                write_desc(&mem, table, i, &mut input);
            }
            // Available entries and index.
            3 => {
                let idx = mem.read_obj::<u16>(GuestAddress(AVAIL + 2)).unwrap_or(0);
                let head = input.pick(&[0u16, 1, 2, 15, 16, 300]);
                let _ = mem.write_obj(head, GuestAddress(AVAIL + 4 + 2 * u64::from(idx % 16)));
                let next = if input.bool() {
                    idx.wrapping_add(1)
                } else {
                    input.u16()
                };
                let _ = mem.write_obj(next, GuestAddress(AVAIL + 2));
            }
            // A request header: type, sector.
            4 => {
                let at = address(&mut input);
                let kind = input.pick(&[0u32, 1, 4, 8, 11, 13, 0xdead]);
                let any = input.u64();
                let sector = input.pick(&[0u64, 1, 31, 32, u64::MAX / 512, any]);
                let _ = mem.write_obj(kind, GuestAddress(at));
                let _ = mem.write_obj(sector, GuestAddress(at.wrapping_add(8)));
            }
            // Raw bytes anywhere in RAM.
            5 => {
                let at = input.range(0, RAM - 1);
                let bytes = input.bytes(64);
                let _ = mem.write_slice(&bytes, GuestAddress(at));
            }
            // MSI-X table and PBA.
            6 => {
                let off = input.range(0, 0x2010);
                let w = input.width();
                msix.write(off, &input.data(w));
            }
            // A whole request at head h (header, data, status), mostly well
            // formed, made available and notified.
            7 => {
                let h = input.range(0, 12);
                let header = HEADERS + 16 * h;
                let kind = input.pick(&[0u32, 1, 1, 4, 8, 0xdead]);
                let sector = input.range(0, (DISK as u64 / 512) + 2);
                let _ = mem.write_obj(kind, GuestAddress(header));
                let _ = mem.write_obj(sector, GuestAddress(header + 8));
                let data_len = input.pick(&[512u32, 1024, 100, 0]);
                let write = if kind == 0 { 2 } else { 0 };
                let mut chain = vec![(header, 16u32, 0u16), (DATA, data_len, write)];
                chain.push((STATUS + h, 1, 2));
                if input.range(0, 7) == 0 {
                    let i = input.range(0, 2) as usize;
                    chain[i].2 ^= input.range(1, 7) as u16;
                }
                for (i, (addr, len, flags)) in chain.iter().enumerate() {
                    let i = i as u64;
                    let more = if i < 2 { 1 } else { 0 };
                    let mut d = addr.to_le_bytes().to_vec();
                    d.extend_from_slice(&len.to_le_bytes());
                    d.extend_from_slice(&(flags | more).to_le_bytes());
                    d.extend_from_slice(&((h + i + 1) as u16).to_le_bytes());
                    let _ = mem.write_slice(&d, GuestAddress(DESC + 16 * (h + i)));
                }
                let idx = mem.read_obj::<u16>(GuestAddress(AVAIL + 2)).unwrap_or(0);
                let _ = mem.write_obj(h as u16, GuestAddress(AVAIL + 4 + 2 * u64::from(idx % 16)));
                let _ = mem.write_obj(idx.wrapping_add(1), GuestAddress(AVAIL + 2));
                wr(0x3000, 2, 0);
            }
            _ => wr(0x3000 + 4 * input.range(0, 2), 2, 0),
        }
        let s = status();
        assert!(
            s & DRIVER_OK == 0 || s & FEATURES_OK != 0,
            "DRIVER_OK without FEATURES_OK: status {s:#x}"
        );
    }
    drop(pci);
    let len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    assert_eq!(len, DISK as u64, "the image never changes size");
    let _ = std::fs::remove_file(&path);
}
