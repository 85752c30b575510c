//! The CXL DVSECs (vendor 0x1E98) a guest driver looks for in config space,
//! with the layouts of CXL 3.1 §8.1; which ones each component needs follows
//! CXL 3.1 Table 8-2 (as QEMU's include/hw/cxl/cxl_pci.h quotes it) and what
//! Linux's drivers/cxl/core/regs.c and pci.c read.

use crate::pci::{add_dvsec, ConfigSpace};

pub const CXL_VENDOR: u16 = 0x1e98;

const ID_DEVICE: u16 = 0;
const ID_PORT_EXTENSIONS: u16 = 3;
const ID_GPF_PORT: u16 = 4;
const ID_GPF_DEVICE: u16 = 5;
const ID_FLEX_BUS: u16 = 7;
const ID_REGISTER_LOCATOR: u16 = 8;

/// Register Locator block identifiers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegisterBlock {
    Component = 1,
    MemoryDevice = 3,
}

/// One Register Locator entry: a register block in a BAR.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LocatorEntry {
    pub bar: u8,
    pub block: RegisterBlock,
    /// Offset within the BAR (64 KiB aligned).
    pub offset: u64,
}

/// Appends `v` little-endian at `off` of `b` (offsets are DVSEC offsets;
/// the body starts at DVSEC offset 0x0A).
fn put(b: &mut [u8], dvsec_off: usize, v: &[u8]) {
    let o = dvsec_off - 0x0a;
    b[o..o + v.len()].copy_from_slice(v);
}

/// DVSEC ID 0, "PCIe DVSEC for CXL Devices", for a type-3 memory device.
///
/// Mem_Enable starts clear and the range registers at zero, so Linux takes
/// its normal HDM-decoder path (it enables decoding itself).
pub fn add_device_dvsec(cs: &mut ConfigSpace, capacity: u64) -> Option<usize> {
    const LEN: usize = 0x3c;
    // Capability: IO capable, Mem capable, Mem HW init, HDM count 1.
    const CAP: u16 = 0x001e;
    // Control: IO enable set (as CXL.io always is), Mem enable writable.
    const CTRL: u16 = 0x0002;
    // Range size low: Memory_Info_Valid, Memory_Active, media type 2
    // (volatile/persistent "CXL memory"), memory class 2.
    const SIZE_LO_FLAGS: u32 = 0x4b;
    let mut b = vec![0u8; LEN - 0x0a];
    put(&mut b, 0x0a, &CAP.to_le_bytes());
    put(&mut b, 0x0c, &CTRL.to_le_bytes());
    put(&mut b, 0x18, &((capacity >> 32) as u32).to_le_bytes());
    put(
        &mut b,
        0x1c,
        &(((capacity as u32) & 0xf000_0000) | SIZE_LO_FLAGS).to_le_bytes(),
    );
    // Dword masks (from the capability header): control (0x0C) Mem_Enable
    // and IO_Enable; status (0x0E) viral status W1C; lock (0x14) b0; range 1
    // base hi (0x20) and lo [31:28] (0x24).
    let masks = [
        (3, 0x0000_0006, 0x4000_0000),
        (5, 0x0000_0001, 0),
        (8, 0xffff_ffff, 0),
        (9, 0xf000_0000, 0),
    ];
    add_dvsec(cs, CXL_VENDOR, 2, ID_DEVICE, &b, &masks)
}

/// DVSEC ID 3, "Extensions DVSEC for Ports" (root ports and switch DSPs).
pub fn add_port_extensions_dvsec(cs: &mut ConfigSpace) -> Option<usize> {
    const LEN: usize = 0x28;
    let b = vec![0u8; LEN - 0x0a];
    // Port control (0x0C): unmask SBR / link disable; alternate bus and
    // memory base/limit registers are plain storage.
    let masks = [
        (3, 0x0000_0003, 0),
        (4, 0x0000_ffff, 0),
        (5, 0xffff_ffff, 0),
        (6, 0xffff_ffff, 0),
        (7, 0xffff_ffff, 0),
        (8, 0xffff_ffff, 0),
    ];
    add_dvsec(cs, CXL_VENDOR, 0, ID_PORT_EXTENSIONS, &b, &masks)
}

/// DVSEC ID 4, "GPF DVSEC for Ports".
pub fn add_gpf_port_dvsec(cs: &mut ConfigSpace) -> Option<usize> {
    let b = vec![0u8; 0x10 - 0x0a];
    // Phase 1 / phase 2 control: timeout base and scale.
    add_dvsec(cs, CXL_VENDOR, 0, ID_GPF_PORT, &b, &[(3, 0x0f0f_0f0f, 0)])
}

/// DVSEC ID 5, "GPF DVSEC for Devices".
pub fn add_gpf_device_dvsec(cs: &mut ConfigSpace) -> Option<usize> {
    let mut b = vec![0u8; 0x10 - 0x0a];
    // Phase 2 duration 1 ms (base 1 ms, scale 0); phase 2 power 0.
    put(&mut b, 0x0a, &0x0001u16.to_le_bytes());
    add_dvsec(cs, CXL_VENDOR, 0, ID_GPF_DEVICE, &b, &[])
}

/// DVSEC ID 7, "Flex Bus Port": CXL.io + CXL.mem, 68B flit mode, trained.
pub fn add_flex_bus_dvsec(cs: &mut ConfigSpace) -> Option<usize> {
    const IO_MEM_68B: u16 = 0x0026;
    let mut b = vec![0u8; 0x20 - 0x0a];
    put(&mut b, 0x0a, &IO_MEM_68B.to_le_bytes());
    put(&mut b, 0x0c, &IO_MEM_68B.to_le_bytes());
    put(&mut b, 0x0e, &IO_MEM_68B.to_le_bytes());
    // Control (0x0C) is writable for the enables the capability offers.
    add_dvsec(cs, CXL_VENDOR, 2, ID_FLEX_BUS, &b, &[(3, 0x0000_0026, 0)])
}

/// DVSEC ID 8, "Register Locator".
pub fn add_register_locator(cs: &mut ConfigSpace, entries: &[LocatorEntry]) -> Option<usize> {
    let mut b = vec![0u8; 0x0c - 0x0a + 8 * entries.len()];
    for (i, e) in entries.iter().enumerate() {
        let lo = u32::from(e.bar & 7) | ((e.block as u32) << 8) | ((e.offset as u32) & 0xffff_0000);
        let hi = (e.offset >> 32) as u32;
        put(&mut b, 0x0c + 8 * i, &lo.to_le_bytes());
        put(&mut b, 0x10 + 8 * i, &hi.to_le_bytes());
    }
    add_dvsec(cs, CXL_VENDOR, 0, ID_REGISTER_LOCATOR, &b, &[])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dvsec_id(cs: &ConfigSpace, off: usize) -> u16 {
        (cs.read(off / 4 + 2) & 0xffff) as u16
    }

    #[test]
    fn device_dvsec_matches_what_cxl_pci_reads() {
        let mut cs = ConfigSpace::type0(0x8086, 0x0d93, 0x05_02_10, 0);
        let off = add_device_dvsec(&mut cs, 0x3000_0000 + (1 << 32)).unwrap();
        let r = off / 4;
        assert_eq!(dvsec_id(&cs, off), 0);
        assert_eq!(cs.read(r + 1), 0x1e98 | (2 << 16) | (0x3c << 20));
        let cap = cs.read(r + 2) >> 16;
        assert_ne!(cap & 0x4, 0, "Mem_Capable");
        assert_eq!((cap >> 4) & 3, 1, "HDM_Count");
        // Control: Mem_Enable (b2) writable, starts clear.
        assert_eq!(cs.read(r + 3) & 0x4, 0);
        cs.write(r + 3, 0, &[0x06, 0]);
        assert_eq!(cs.read(r + 3) & 0xffff, 0x6);
        cs.write(r + 3, 0, &[0xff, 0xff]);
        assert_eq!(cs.read(r + 3) & 0xffff, 0x6, "only IO/Mem enable writable");
        // Range 1 size: hi, lo with valid+active.
        assert_eq!(cs.read(r + 6), 1);
        assert_eq!(cs.read(r + 7), 0x3000_0000 | 0x4b);
        assert_eq!(cs.read(r + 7) & 3, 3, "info valid, memory active");
        // Range 1 base registers start at zero.
        assert_eq!((cs.read(r + 8), cs.read(r + 9)), (0, 0));
    }

    #[test]
    fn register_locator_entries() {
        let mut cs = ConfigSpace::type0(1, 2, 0, 0);
        let off = add_register_locator(
            &mut cs,
            &[
                LocatorEntry {
                    bar: 0,
                    block: RegisterBlock::Component,
                    offset: 0,
                },
                LocatorEntry {
                    bar: 2,
                    block: RegisterBlock::MemoryDevice,
                    offset: 0x1_0001_0000,
                },
            ],
        )
        .unwrap();
        let r = off / 4;
        assert_eq!(dvsec_id(&cs, off), 8);
        assert_eq!(
            cs.read(r + 1) >> 20,
            0x0c + 16,
            "length covers both entries"
        );
        assert_eq!(cs.read(r + 3), 0x0000_0100);
        assert_eq!(cs.read(r + 4), 0);
        assert_eq!(cs.read(r + 5), 0x0001_0302);
        assert_eq!(cs.read(r + 6), 1);
    }

    #[test]
    fn port_dvsecs_chain_in_order() {
        let mut cs = ConfigSpace::type1(0x8086, 0x7075, 0);
        let a = add_port_extensions_dvsec(&mut cs).unwrap();
        let b = add_gpf_port_dvsec(&mut cs).unwrap();
        let c = add_flex_bus_dvsec(&mut cs).unwrap();
        assert_eq!(
            [dvsec_id(&cs, a), dvsec_id(&cs, b), dvsec_id(&cs, c)],
            [3, 4, 7]
        );
        assert_eq!(
            cs.read(c / 4 + 3) >> 16,
            0x26,
            "flex bus status: IO, Mem, 68B"
        );
        assert_eq!(cs.read(a / 4) >> 20, b as u32);
    }
}
