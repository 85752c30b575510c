//! A function's configuration space with per-bit write semantics, and the
//! builders for its capability lists.

/// Size of PCIe extended configuration space.
pub const CONFIG_SPACE_SIZE: usize = 4096;
const REGS: usize = CONFIG_SPACE_SIZE / 4;
/// Where the standard capability list starts, and where extended ones start.
const FIRST_CAP: usize = 0x40;
const FIRST_EXT_CAP: usize = 0x100;
const STATUS_CAP_LIST: u32 = 1 << 20;
/// Header type register values.
const HEADER_TYPE0: u32 = 0x00;
const HEADER_TYPE1: u32 = 0x01;

/// Per-register masks for a capability body, as (dword index within the
/// capability, read/write mask, write-1-to-clear mask).
pub type CapMasks<'a> = &'a [(usize, u32, u32)];

/// 4 KiB of registers, each with a read/write mask and a write-1-to-clear
/// mask. Bits in neither mask are read-only: guest writes do not change them.
pub struct ConfigSpace {
    regs: Box<[u32; REGS]>,
    rw: Box<[u32; REGS]>,
    w1c: Box<[u32; REGS]>,
    /// Byte offset of the last standard / extended capability, for chaining.
    last_cap: Option<usize>,
    last_ext_cap: Option<usize>,
    next_cap: usize,
    next_ext_cap: usize,
}

impl Default for ConfigSpace {
    fn default() -> Self {
        Self {
            regs: Box::new([0; REGS]),
            rw: Box::new([0; REGS]),
            w1c: Box::new([0; REGS]),
            last_cap: None,
            last_ext_cap: None,
            next_cap: FIRST_CAP,
            next_ext_cap: FIRST_EXT_CAP,
        }
    }
}

impl ConfigSpace {
    fn header(vendor: u16, device: u16, class: u32, revision: u8, header_type: u32) -> Self {
        let mut cs = Self::default();
        cs.regs[0] = u32::from(vendor) | (u32::from(device) << 16);
        cs.regs[2] = (class << 8) | u32::from(revision);
        cs.regs[3] = header_type << 16;
        // Command register: I/O, memory, bus master, parity, SERR, INTx disable.
        cs.rw[1] = 0x0000_0547;
        // Status: the error bits are write-1-to-clear.
        cs.w1c[1] = 0xf900_0000;
        // Cache line size and latency timer are plain storage.
        cs.rw[3] = 0x0000_ffff;
        // Interrupt line is storage for the OS.
        cs.rw[15] = 0x0000_00ff;
        cs
    }

    /// A type-0 (endpoint) header with the given identity.
    pub fn type0(vendor: u16, device: u16, class: u32, revision: u8) -> Self {
        Self::header(vendor, device, class, revision, HEADER_TYPE0)
    }

    /// A type-1 (PCI-to-PCI bridge) header: bus numbers and memory windows
    /// are writable; no I/O window (it reads as absent); the prefetchable
    /// window is 64-bit.
    pub fn type1(vendor: u16, device: u16, revision: u8) -> Self {
        const CLASS_PCI_BRIDGE: u32 = 0x06_04_00;
        let mut cs = Self::header(vendor, device, CLASS_PCI_BRIDGE, revision, HEADER_TYPE1);
        cs.rw[6] = 0x00ff_ffff; // primary, secondary, subordinate bus
        cs.w1c[7] = 0xf900_0000; // secondary status
        cs.rw[8] = 0xfff0_fff0; // memory base / limit
        cs.regs[9] = 0x0001_0001; // prefetchable base/limit: 64-bit
        cs.rw[9] = 0xfff0_fff0;
        cs.rw[10] = 0xffff_ffff; // prefetchable base upper 32
        cs.rw[11] = 0xffff_ffff; // prefetchable limit upper 32
                                 // Interrupt line, and bridge control (parity, SERR, secondary bus reset).
        cs.rw[15] = 0x0043_00ff;
        cs
    }

    /// Sets a register's value without regard to masks (device-side update).
    pub fn set(&mut self, reg: usize, value: u32) {
        if let Some(r) = self.regs.get_mut(reg) {
            *r = value;
        }
    }

    /// Sets a register's read/write and write-1-to-clear masks.
    pub fn set_masks(&mut self, reg: usize, rw: u32, w1c: u32) {
        if reg < REGS {
            self.rw[reg] = rw;
            self.w1c[reg] = w1c;
        }
    }

    pub fn read(&self, reg: usize) -> u32 {
        self.regs.get(reg).copied().unwrap_or(0xffff_ffff)
    }

    /// Applies a guest write of `data` at byte `offset` within `reg`.
    pub fn write(&mut self, reg: usize, offset: usize, data: &[u8]) {
        if reg >= REGS || offset + data.len() > 4 || data.is_empty() {
            return;
        }
        let mut value = 0u32;
        let mut lanes = 0u32;
        for (i, b) in data.iter().enumerate() {
            value |= u32::from(*b) << (8 * (offset + i));
            lanes |= 0xff << (8 * (offset + i));
        }
        let rw = self.rw[reg] & lanes;
        let w1c = self.w1c[reg] & lanes & value;
        self.regs[reg] = (self.regs[reg] & !rw & !w1c) | (value & rw);
    }

    /// Appends a standard capability: `body` is the capability from its
    /// first byte (ID and next pointer are filled in); `masks` index dwords
    /// within it. Returns its byte offset, or None if the 256-byte space is full.
    pub fn add_capability(&mut self, id: u8, body: &[u8], masks: CapMasks) -> Option<usize> {
        let len = body.len().max(2).next_multiple_of(4);
        let off = self.next_cap;
        if off + len > FIRST_EXT_CAP {
            return None;
        }
        self.copy_in(off, body);
        self.set_byte(off, id);
        self.set_byte(off + 1, 0);
        match self.last_cap {
            Some(prev) => self.set_byte(prev + 1, off as u8),
            None => {
                self.set_byte(0x34, off as u8);
                self.regs[1] |= STATUS_CAP_LIST;
            }
        }
        self.apply_masks(off, masks);
        self.last_cap = Some(off);
        self.next_cap = off + len;
        Some(off)
    }

    /// Appends an extended capability (offset 0x100+): `body` starts after
    /// the 4-byte header, `masks` index dwords from the header. Returns the
    /// byte offset of the header.
    pub fn add_ext_capability(
        &mut self,
        id: u16,
        version: u8,
        body: &[u8],
        masks: CapMasks,
    ) -> Option<usize> {
        let len = (4 + body.len()).next_multiple_of(4);
        let off = self.next_ext_cap;
        if off + len > CONFIG_SPACE_SIZE {
            return None;
        }
        self.regs[off / 4] = u32::from(id) | (u32::from(version & 0xf) << 16);
        self.copy_in(off + 4, body);
        if let Some(prev) = self.last_ext_cap {
            let r = prev / 4;
            self.regs[r] = (self.regs[r] & 0x000f_ffff) | ((off as u32) << 20);
        }
        self.apply_masks(off, masks);
        self.last_ext_cap = Some(off);
        self.next_ext_cap = off + len;
        Some(off)
    }

    /// Reserves `len` bytes of extended space for a capability whose
    /// registers are served elsewhere (a hook), chaining its header.
    pub fn reserve_ext_capability(&mut self, id: u16, version: u8, len: usize) -> Option<usize> {
        self.add_ext_capability(id, version, &vec![0u8; len.saturating_sub(4)], &[])
    }

    fn apply_masks(&mut self, off: usize, masks: CapMasks) {
        for &(dw, rw, w1c) in masks {
            self.set_masks(off / 4 + dw, rw, w1c);
        }
    }

    fn set_byte(&mut self, off: usize, v: u8) {
        let (r, s) = (off / 4, (off % 4) * 8);
        self.regs[r] = (self.regs[r] & !(0xff << s)) | (u32::from(v) << s);
    }

    fn copy_in(&mut self, off: usize, bytes: &[u8]) {
        for (i, b) in bytes.iter().enumerate() {
            self.set_byte(off + i, *b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_registers_are_read_only_and_status_is_w1c() {
        let mut cs = ConfigSpace::type0(0x8086, 0x0d57, 0x06_00_00, 1);
        cs.write(0, 0, &[0, 0, 0, 0]);
        assert_eq!(cs.read(0), 0x0d57_8086);
        cs.set(1, 0x4000_0000); // a device raised "signaled system error"
        cs.write(1, 2, &[0x00, 0x40]); // guest clears it
        assert_eq!(cs.read(1) >> 16, 0);
        cs.write(1, 0, &[0xff, 0xff]);
        assert_eq!(cs.read(1) & 0xffff, 0x0547);
        // Out of range and malformed writes are ignored.
        cs.write(REGS, 0, &[1]);
        cs.write(3, 3, &[1, 2]);
        assert_eq!(cs.read(REGS), 0xffff_ffff);
    }

    #[test]
    fn capability_lists_chain() {
        let mut cs = ConfigSpace::type0(1, 2, 0, 0);
        let a = cs
            .add_capability(0x10, &[0; 0x3c], &[(2, 0xffff, 0)])
            .unwrap();
        let b = cs.add_capability(0x05, &[0; 0x18], &[]).unwrap();
        assert_eq!((a, b), (0x40, 0x7c));
        assert_eq!(cs.read(0x34 / 4) & 0xff, 0x40);
        assert_ne!(cs.read(1) & STATUS_CAP_LIST, 0);
        assert_eq!(cs.read(a / 4) & 0xffff, 0x7c10);
        assert_eq!(cs.read(b / 4) & 0xffff, 0x0005);
        // The mask applies to dword 2 of the first capability.
        cs.write(a / 4 + 2, 0, &[0xff, 0xff, 0xff, 0xff]);
        assert_eq!(cs.read(a / 4 + 2), 0xffff);

        let x = cs
            .add_ext_capability(0x3, 1, &[1, 2, 3, 4, 5, 6, 7, 8], &[])
            .unwrap();
        let y = cs.add_ext_capability(0x23, 1, &[0; 8], &[]).unwrap();
        assert_eq!((x, y), (0x100, 0x10c));
        assert_eq!(cs.read(0x40), 0x10c1_0003);
        assert_eq!(cs.read(0x41), 0x0403_0201);
        assert_eq!(cs.read(0x43), 0x0001_0023);
        // Full space is refused, not overrun.
        assert!(cs.add_ext_capability(1, 1, &[0; 4000], &[]).is_none());
    }

    #[test]
    fn bridge_windows_are_writable_and_sized() {
        let mut cs = ConfigSpace::type1(0x8086, 0x7075, 0);
        assert_eq!((cs.read(3) >> 16) & 0x7f, 1);
        cs.write(6, 0, &[0, 1, 4, 0]);
        assert_eq!(cs.read(6), 0x0004_0100);
        cs.write(8, 0, &[0xff; 4]);
        assert_eq!(cs.read(8), 0xfff0_fff0);
        cs.write(9, 0, &[0; 4]);
        assert_eq!(
            cs.read(9) & 0x000f_000f,
            0x0001_0001,
            "64-bit prefetch window"
        );
    }
}
