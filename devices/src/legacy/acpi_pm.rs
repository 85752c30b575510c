//! ACPI fixed-hardware PM1a event and control blocks (not HW-reduced), so a
//! stock kernel's `poweroff` ends in an S5 write to PM1a_CNT.
//!
//! Layout of the I/O block (the FADT points PM1a_EVT_BLK and PM1a_CNT_BLK here):
//!
//! | offset | size | register |
//! |---|---|---|
//! | 0 | 2 | PM1_STS (write 1 to clear) |
//! | 2 | 2 | PM1_EN |
//! | 4 | 2 | PM1_CNT |

use crate::{BusDeviceMut, ExitReason, ExitRequest};

/// Length of the PM1 event block (PM1_STS + PM1_EN).
pub const PM1_EVT_LEN: u8 = 4;
/// Offset of PM1_CNT within the block.
pub const PM1_CNT_OFFSET: u64 = 4;
/// Total I/O length of the block.
pub const PM_IO_LEN: u64 = 6;
/// The sleep type the DSDT's `_S5` package names.
pub const SLP_TYP_S5: u16 = 5;

const SCI_EN: u16 = 1 << 0;
const SLP_TYP_SHIFT: u16 = 10;
const SLP_TYP_MASK: u16 = 0x7 << SLP_TYP_SHIFT;
const SLP_EN: u16 = 1 << 13;
/// PM1_STS bits a guest may have set; we never raise events, but keep the
/// register honest: RW1C over the defined bits.
const PM1_STS_DEFINED: u16 = 0x8f31;
const PM1_EN_DEFINED: u16 = 0x0721;

pub struct AcpiPm {
    exit: ExitRequest,
    pm1_sts: u16,
    pm1_en: u16,
    /// SLP_TYP and other RW bits of PM1_CNT; SCI_EN reads as 1 (no SMI_CMD:
    /// the platform is always in ACPI mode).
    pm1_cnt: u16,
}

impl AcpiPm {
    pub fn new(exit: ExitRequest) -> Self {
        Self {
            exit,
            pm1_sts: 0,
            pm1_en: 0,
            pm1_cnt: SCI_EN,
        }
    }

    fn regs(&self) -> [u8; PM_IO_LEN as usize] {
        let mut b = [0u8; PM_IO_LEN as usize];
        b[0..2].copy_from_slice(&self.pm1_sts.to_le_bytes());
        b[2..4].copy_from_slice(&self.pm1_en.to_le_bytes());
        b[4..6].copy_from_slice(&self.pm1_cnt.to_le_bytes());
        b
    }
}

impl BusDeviceMut for AcpiPm {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let regs = self.regs();
        for (i, d) in data.iter_mut().enumerate() {
            *d = regs.get(offset as usize + i).copied().unwrap_or(0);
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        // Merge the written bytes into a copy of the block, then apply each
        // register's semantics to the bytes that were touched.
        let before = self.regs();
        let mut after = before;
        for (i, &d) in data.iter().enumerate() {
            if let Some(slot) = after.get_mut(offset as usize + i) {
                *slot = d;
            }
        }
        let touched = |lo: usize| {
            (lo..lo + 2).any(|b| b >= offset as usize && b < offset as usize + data.len())
        };
        if touched(0) {
            let w1c = u16::from_le_bytes([after[0], after[1]]) & PM1_STS_DEFINED;
            self.pm1_sts &= !w1c;
        }
        if touched(2) {
            self.pm1_en = u16::from_le_bytes([after[2], after[3]]) & PM1_EN_DEFINED;
        }
        if touched(4) {
            let cnt = u16::from_le_bytes([after[4], after[5]]);
            // SLP_EN is write-only; SCI_EN is fixed at 1.
            self.pm1_cnt = (cnt & !SLP_EN) | SCI_EN;
            if cnt & SLP_EN != 0 && (cnt & SLP_TYP_MASK) >> SLP_TYP_SHIFT == SLP_TYP_S5 {
                self.exit.request(ExitReason::PowerOff);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cnt_write(pm: &mut AcpiPm, v: u16) {
        pm.write(PM1_CNT_OFFSET, &v.to_le_bytes());
    }

    #[test]
    fn s5_write_powers_off_other_sleep_states_do_not() {
        let exit = ExitRequest::new().unwrap();
        let mut pm = AcpiPm::new(exit.clone());
        let mut b = [0u8; 2];
        pm.read(PM1_CNT_OFFSET, &mut b);
        assert_eq!(
            u16::from_le_bytes(b) & SCI_EN,
            SCI_EN,
            "always in ACPI mode"
        );
        // S3 type with SLP_EN: not S5, ignored.
        cnt_write(&mut pm, (3 << SLP_TYP_SHIFT) | SLP_EN);
        assert!(!exit.is_requested());
        // S5 type without SLP_EN: only latches the type.
        cnt_write(&mut pm, SLP_TYP_S5 << SLP_TYP_SHIFT);
        assert!(!exit.is_requested());
        pm.read(PM1_CNT_OFFSET, &mut b);
        assert_eq!(u16::from_le_bytes(b) & SLP_EN, 0, "SLP_EN reads as 0");
        cnt_write(&mut pm, (SLP_TYP_S5 << SLP_TYP_SHIFT) | SLP_EN);
        assert_eq!(exit.reason(), Some(ExitReason::PowerOff));
    }

    #[test]
    fn enable_register_keeps_defined_bits_only() {
        let exit = ExitRequest::new().unwrap();
        let mut pm = AcpiPm::new(exit);
        pm.write(2, &[0xff, 0xff]);
        let mut b = [0u8; 4];
        pm.read(0, &mut b);
        assert_eq!(u16::from_le_bytes([b[2], b[3]]), PM1_EN_DEFINED);
        assert_eq!(u16::from_le_bytes([b[0], b[1]]), 0);
        // A byte write past the block is ignored without panicking.
        pm.write(9, &[1]);
    }
}
