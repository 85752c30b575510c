//! A function's configuration space with per-bit write semantics.

/// Size of PCIe extended configuration space.
pub const CONFIG_SPACE_SIZE: usize = 4096;
const REGS: usize = CONFIG_SPACE_SIZE / 4;

/// 4 KiB of registers, each with a read/write mask and a write-1-to-clear
/// mask. Bits in neither mask are read-only: guest writes do not change them.
pub struct ConfigSpace {
    regs: Box<[u32; REGS]>,
    rw: Box<[u32; REGS]>,
    w1c: Box<[u32; REGS]>,
}

impl Default for ConfigSpace {
    fn default() -> Self {
        Self {
            regs: Box::new([0; REGS]),
            rw: Box::new([0; REGS]),
            w1c: Box::new([0; REGS]),
        }
    }
}

impl ConfigSpace {
    /// A type-0 header with the given identity. Everything else reads as zero.
    pub fn type0(vendor: u16, device: u16, class: u32, revision: u8) -> Self {
        let mut cs = Self::default();
        cs.regs[0] = u32::from(vendor) | (u32::from(device) << 16);
        cs.regs[2] = (class << 8) | u32::from(revision);
        // Command register: memory, I/O, bus master, parity, SERR, INTx disable.
        cs.rw[1] = 0x0000_0547;
        // Status: the error bits are write-1-to-clear.
        cs.w1c[1] = 0xf900_0000;
        // Cache line size and latency timer are plain storage.
        cs.rw[3] = 0x0000_ffff;
        cs
    }

    /// Sets a register's value without regard to masks (device-side update).
    pub fn set(&mut self, reg: usize, value: u32) {
        if let Some(r) = self.regs.get_mut(reg) {
            *r = value;
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
}
