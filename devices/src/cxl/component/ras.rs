//! CXL RAS capability (CXL 3.1 §8.2.4.17): error status, mask and severity
//! registers that Linux's cxl_pci/cxl_port read and clear when AER reports a
//! CXL protocol error (drivers/cxl/core/pci.c `cxl_handle_ras`).
//!
//! Nothing in the VMM raises errors yet except through [`RasCapability::inject_uncorrectable`]
//! and [`RasCapability::inject_correctable`], so status reads 0 until then.

/// Bytes the capability occupies (Linux maps `CXL_RAS_CAPABILITY_LENGTH`).
pub const RAS_CAPABILITY_LEN: u64 = 0x58;

const UNCORRECTABLE_STATUS: u64 = 0x00;
const UNCORRECTABLE_MASK: u64 = 0x04;
const UNCORRECTABLE_SEVERITY: u64 = 0x08;
const CORRECTABLE_STATUS: u64 = 0x0C;
const CORRECTABLE_MASK: u64 = 0x10;
const CAP_CONTROL: u64 = 0x14;
/// Header log: 16 dwords up to the end of the capability.
const HEADER_LOG: u64 = 0x18;
const HEADER_LOG_DWORDS: usize = 16;

/// Uncorrectable error bits defined by CXL 2.0+: 11:0 and 16:14 (12 and 13
/// are reserved). Status, mask and severity all use this set.
pub const UNCORRECTABLE_BITS: u32 = 0x0001_CFFF;
/// Correctable error bits 6:0.
pub const CORRECTABLE_BITS: u32 = 0x7F;
/// Cap/control [5:0]: First Error Pointer, a bit index into the
/// uncorrectable status.
const FIRST_ERROR_POINTER_MASK: u32 = 0x3F;
/// Cap/control b9: Multiple Header Recording Capability, which QEMU notes CXL
/// switches and devices must set.
const MULTIPLE_HEADER_RECORDING: u32 = 1 << 9;

/// The RAS capability's registers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RasCapability {
    uncorrectable_status: u32,
    uncorrectable_mask: u32,
    uncorrectable_severity: u32,
    correctable_status: u32,
    correctable_mask: u32,
    first_error_pointer: u32,
    header_log: [u32; HEADER_LOG_DWORDS],
}

impl Default for RasCapability {
    fn default() -> Self {
        Self::new()
    }
}

impl RasCapability {
    /// Reset state: no errors, every error masked, every uncorrectable error
    /// fatal (the spec's defaults, as QEMU sets them).
    pub fn new() -> Self {
        Self {
            uncorrectable_status: 0,
            uncorrectable_mask: UNCORRECTABLE_BITS,
            uncorrectable_severity: UNCORRECTABLE_BITS,
            correctable_status: 0,
            correctable_mask: CORRECTABLE_BITS,
            first_error_pointer: 0,
            header_log: [0; HEADER_LOG_DWORDS],
        }
    }

    /// Reads the dword at `offset` (dword-aligned, from the capability base).
    pub fn read(&self, offset: u64) -> u32 {
        match offset {
            UNCORRECTABLE_STATUS => self.uncorrectable_status,
            UNCORRECTABLE_MASK => self.uncorrectable_mask,
            UNCORRECTABLE_SEVERITY => self.uncorrectable_severity,
            CORRECTABLE_STATUS => self.correctable_status,
            CORRECTABLE_MASK => self.correctable_mask,
            CAP_CONTROL => self.first_error_pointer | MULTIPLE_HEADER_RECORDING,
            HEADER_LOG..RAS_CAPABILITY_LEN => {
                let i = ((offset - HEADER_LOG) / 4) as usize;
                self.header_log.get(i).copied().unwrap_or(0)
            }
            _ => 0,
        }
    }

    /// Writes the dword at `offset`: status registers are write-1-to-clear,
    /// masks and severity are read-write on the defined bits, the rest is
    /// read-only.
    pub fn write(&mut self, offset: u64, value: u32) {
        match offset {
            UNCORRECTABLE_STATUS => {
                self.uncorrectable_status &= !(value & UNCORRECTABLE_BITS);
                self.update_first_error_pointer();
            }
            UNCORRECTABLE_MASK => self.uncorrectable_mask = value & UNCORRECTABLE_BITS,
            UNCORRECTABLE_SEVERITY => self.uncorrectable_severity = value & UNCORRECTABLE_BITS,
            CORRECTABLE_STATUS => self.correctable_status &= !(value & CORRECTABLE_BITS),
            CORRECTABLE_MASK => self.correctable_mask = value & CORRECTABLE_BITS,
            _ => {}
        }
    }

    /// Records uncorrectable errors (status bits; undefined bits are dropped).
    /// The first error since status was last clean becomes the First Error
    /// Pointer.
    pub fn inject_uncorrectable(&mut self, bits: u32) {
        let bits = bits & UNCORRECTABLE_BITS;
        if bits == 0 {
            return;
        }
        if self.uncorrectable_status == 0 {
            self.first_error_pointer = bits.trailing_zeros() & FIRST_ERROR_POINTER_MASK;
        }
        self.uncorrectable_status |= bits;
    }

    /// Records correctable errors (status bits; undefined bits are dropped).
    pub fn inject_correctable(&mut self, bits: u32) {
        self.correctable_status |= bits & CORRECTABLE_BITS;
    }

    /// Once the guest clears the error the pointer names, it moves to the
    /// lowest error still pending, so software handling several errors in turn
    /// always finds a set bit there (QEMU does the same).
    fn update_first_error_pointer(&mut self) {
        let pending = self.uncorrectable_status;
        if pending & (1 << self.first_error_pointer) == 0 {
            self.first_error_pointer = if pending == 0 {
                0
            } else {
                pending.trailing_zeros()
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// GENMASK(16, 14) | GENMASK(11, 0), written out bit by bit.
    fn linux_uncorrectable_mask() -> u32 {
        let mut m = 0;
        for b in (0..=11).chain(14..=16) {
            m |= 1u32 << b;
        }
        m
    }

    #[test]
    fn reset_values() {
        let ras = RasCapability::new();
        let expected = [
            (0x00, 0),
            (0x04, linux_uncorrectable_mask()),
            (0x08, linux_uncorrectable_mask()),
            (0x0C, 0),
            (0x10, 0x7F),
            (0x14, 0x200),
        ];
        for (off, v) in expected {
            assert_eq!(ras.read(off), v, "offset {off:#x}");
        }
        for off in (0x18..0x58).step_by(4) {
            assert_eq!(ras.read(off), 0, "header log {off:#x}");
        }
        assert_eq!(ras.read(0x58), 0);
    }

    #[test]
    fn masks_and_severity_are_rw_on_defined_bits_only() {
        let mut ras = RasCapability::new();
        for off in [0x04, 0x08] {
            ras.write(off, 0xFFFF_FFFF);
            assert_eq!(ras.read(off), 0x0001_CFFF);
            ras.write(off, 0);
            assert_eq!(ras.read(off), 0);
            // Linux with native AER unmasks 16:14 and 11:0 but keeps b8.
            ras.write(off, 1 << 8);
            assert_eq!(ras.read(off), 1 << 8);
        }
        ras.write(0x10, 0xFFFF_FFFF);
        assert_eq!(ras.read(0x10), 0x7F);
        ras.write(0x10, 0x05);
        assert_eq!(ras.read(0x10), 0x05);
    }

    #[test]
    fn status_registers_are_write_one_to_clear() {
        let mut ras = RasCapability::new();
        ras.inject_uncorrectable((1 << 3) | (1 << 15) | (1 << 13)); // 13 reserved
        assert_eq!(ras.read(0x00), (1 << 3) | (1 << 15));
        // Writing zeros clears nothing; writing the value back clears it.
        ras.write(0x00, 0);
        assert_eq!(ras.read(0x00), (1 << 3) | (1 << 15));
        ras.write(0x00, 1 << 15);
        assert_eq!(ras.read(0x00), 1 << 3);
        ras.write(0x00, 0xFFFF_FFFF);
        assert_eq!(ras.read(0x00), 0);

        ras.inject_correctable(0xFF);
        assert_eq!(ras.read(0x0C), 0x7F);
        ras.write(0x0C, 0x01);
        assert_eq!(ras.read(0x0C), 0x7E);
        ras.write(0x0C, 0x7E);
        assert_eq!(ras.read(0x0C), 0);
    }

    #[test]
    fn first_error_pointer_tracks_the_first_pending_error() {
        let mut ras = RasCapability::new();
        ras.inject_uncorrectable(1 << 5);
        ras.inject_uncorrectable(1 << 2);
        // The first error recorded, not the lowest bit.
        assert_eq!(ras.read(0x14) & 0x3F, 5);
        ras.write(0x00, 1 << 2); // clearing another error keeps the pointer
        assert_eq!(ras.read(0x14) & 0x3F, 5);
        ras.inject_uncorrectable((1 << 2) | (1 << 14));
        ras.write(0x00, 1 << 5);
        assert_eq!(ras.read(0x14) & 0x3F, 2);
        ras.write(0x00, 1 << 2);
        assert_eq!(ras.read(0x14) & 0x3F, 14);
        ras.write(0x00, 1 << 14);
        assert_eq!(ras.read(0x14), 0x200);
    }

    #[test]
    fn read_only_registers_ignore_writes() {
        let mut ras = RasCapability::new();
        let before = ras.clone();
        for off in (0x14..0x60).step_by(4) {
            ras.write(off, 0xFFFF_FFFF);
        }
        assert_eq!(ras, before);
    }
}
