//! A generic PCI function: configuration space, BARs backed by register
//! blocks, configuration-space hooks for capabilities with side effects (DOE),
//! and optional MSI-X. Device models (CXL ports, type-3 devices, ...) are
//! built by configuring one of these.
//!
//! The function does not serve its BARs' accesses: each BAR's device goes on
//! the MMIO bus itself, and a configuration write that moves a BAR or turns
//! memory decode on or off says so in its [`BarChanges`].

use std::sync::{Arc, Mutex};

use super::bars::{BarChanges, BarMapping, BarRange};
use super::config::{CapMasks, ConfigSpace};
use super::intx::IntxPin;
use super::msix::{MsiSink, MsixBar, MsixTable, SharedMsix};
use super::PciDevice;
use crate::BusDevice;

/// Capability IDs.
pub const CAP_ID_PM: u8 = 0x01;
pub const CAP_ID_MSI: u8 = 0x05;
pub const CAP_ID_PCIE: u8 = 0x10;
pub const CAP_ID_MSIX: u8 = 0x11;
pub const EXT_CAP_ID_AER: u16 = 0x0001;
pub const EXT_CAP_ID_DSN: u16 = 0x0003;
pub const EXT_CAP_ID_DVSEC: u16 = 0x0023;
pub const EXT_CAP_ID_DOE: u16 = 0x002e;

const COMMAND_MEMORY: u32 = 1 << 1;
const COMMAND_INTX_DISABLE: u32 = 1 << 10;
const STATUS_INTERRUPT: u32 = 1 << 19;
const REG_COMMAND_STATUS: usize = 1;
/// BAR0..BAR5.
const REG_BARS: std::ops::Range<usize> = 4..10;
const REG_INTERRUPT: usize = 15;

/// Registers inside configuration space whose reads/writes have effects.
pub trait ConfigHook: Send {
    /// `offset` is relative to the hooked range's start, dword aligned.
    fn read(&mut self, offset: u16) -> u32;
    fn write(&mut self, offset: u16, value: u32);
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BarKind {
    Mem32,
    Mem64 { prefetchable: bool },
}

struct Bar {
    index: usize,
    size: u64,
    kind: BarKind,
    /// What the BAR decodes to: a register block, or the MSI-X table.
    device: Arc<dyn BusDevice>,
}

struct Hook {
    start: usize,
    end: usize,
    handler: Box<dyn ConfigHook>,
}

pub struct PciFunction {
    config: ConfigSpace,
    bars: Vec<Bar>,
    hooks: Vec<Hook>,
    msix: Option<(usize, SharedMsix)>,
    /// Register (dword index) of the power-management control/status.
    pm_csr: Option<usize>,
    intx: Option<Arc<IntxPin>>,
}

/// PMCSR PowerState field; D0 and D3hot are the only states offered.
const PM_STATE_MASK: u32 = 0b11;
const PM_STATE_D3HOT: u32 = 0b11;

impl PciFunction {
    pub fn new(config: ConfigSpace) -> Self {
        Self {
            config,
            bars: Vec::new(),
            hooks: Vec::new(),
            msix: None,
            pm_csr: None,
            intx: None,
        }
    }

    /// Adds the PCI Power Management capability (version 3): D0 and D3hot
    /// only, no PME, and No_Soft_Reset set, because nothing is lost in D3hot
    /// (the device keeps its state, as the spec allows). Writes asking for
    /// D1 or D2 are discarded, as the spec requires for unsupported states.
    pub fn add_power_management(&mut self) -> Option<usize> {
        const PMC_VERSION_3: u32 = 0b011;
        const PMCSR_NO_SOFT_RESET: u32 = 1 << 3;
        let mut b = [0u8; 8];
        b[0..4].copy_from_slice(&(PMC_VERSION_3 << 16).to_le_bytes());
        b[4..8].copy_from_slice(&PMCSR_NO_SOFT_RESET.to_le_bytes());
        let off = self
            .config
            .add_capability(CAP_ID_PM, &b, &[(1, PM_STATE_MASK, 0)])?;
        self.pm_csr = Some(off / 4 + 1);
        Some(off)
    }

    /// Gives the function an INTx pin: the Interrupt Pin register names it,
    /// Command.Interrupt Disable masks it, Status.Interrupt Status shows it.
    pub fn set_intx(&mut self, pin: Arc<IntxPin>) {
        let reg = self.config.read(REG_INTERRUPT);
        self.config
            .set(REG_INTERRUPT, (reg & !0xff00) | (u32::from(pin.pin()) << 8));
        pin.set_disabled(self.config.read(REG_COMMAND_STATUS) & COMMAND_INTX_DISABLE != 0);
        self.intx = Some(pin);
    }

    /// Walks the capability list from the Capabilities Pointer, as Linux's
    /// pci_find_capability does; the offset of capability `id`.
    pub fn find_capability(&self, id: u8) -> Option<usize> {
        let mut ptr = (self.config.read(13) & 0xfc) as usize;
        // A well-formed list is at most 48 entries long.
        for _ in 0..48 {
            if ptr == 0 {
                return None;
            }
            let hdr = self.config.read(ptr / 4);
            if hdr as u8 == id {
                return Some(ptr);
            }
            ptr = ((hdr >> 8) & 0xfc) as usize;
        }
        None
    }

    /// The PowerState the guest last set (0 = D0, 3 = D3hot).
    pub fn power_state(&self) -> u8 {
        self.pm_csr
            .map_or(0, |r| (self.config.read(r) & PM_STATE_MASK) as u8)
    }

    pub fn config_mut(&mut self) -> &mut ConfigSpace {
        &mut self.config
    }

    /// Adds a memory BAR of `size` bytes (a power of two, >= 4 KiB) at BAR
    /// slot `index` (a 64-bit BAR also takes `index + 1`).
    pub fn add_bar(&mut self, index: usize, size: u64, kind: BarKind, regs: Arc<dyn BusDevice>) {
        self.install_bar(index, size, kind, regs);
    }

    fn install_bar(&mut self, index: usize, size: u64, kind: BarKind, device: Arc<dyn BusDevice>) {
        let size = size.max(4096).next_power_of_two();
        let reg = 4 + index;
        let (type_bits, mask) = match kind {
            BarKind::Mem32 => (0u32, !(size as u32 - 1) & 0xffff_fff0),
            BarKind::Mem64 { prefetchable } => {
                let pf = if prefetchable { 1 << 3 } else { 0 };
                (0b100 | pf, (!(size - 1) as u32) & 0xffff_fff0)
            }
        };
        self.config.set(reg, type_bits);
        self.config.set_masks(reg, mask, 0);
        if let BarKind::Mem64 { .. } = kind {
            self.config.set(reg + 1, 0);
            self.config
                .set_masks(reg + 1, (!(size - 1) >> 32) as u32, 0);
        }
        self.bars.push(Bar {
            index,
            size,
            kind,
            device,
        });
    }

    /// Adds MSI-X with `vectors` entries in its own 64-bit BAR at `bar_index`,
    /// plus the capability. Returns the shared table for raising vectors.
    pub fn add_msix(
        &mut self,
        vectors: u16,
        bar_index: usize,
        sink: Arc<dyn MsiSink>,
    ) -> SharedMsix {
        let table = MsixTable::new(vectors, sink);
        let pba_offset = table.table_size().next_multiple_of(4096);
        let bar_size = pba_offset + table.pba_size().next_multiple_of(4096);
        let n = table.len() as u32;
        let shared = Arc::new(Mutex::new(table));
        let mut body = [0u8; 12];
        body[2..4].copy_from_slice(&((n - 1) as u16).to_le_bytes());
        body[4..8].copy_from_slice(&(bar_index as u32).to_le_bytes());
        body[8..12].copy_from_slice(&(pba_offset as u32 | bar_index as u32).to_le_bytes());
        // Message control: enable (15) and function mask (14) are writable.
        let off = self
            .config
            .add_capability(CAP_ID_MSIX, &body, &[(0, 0xc000_0000, 0)])
            .unwrap_or(0);
        self.install_bar(
            bar_index,
            bar_size,
            BarKind::Mem64 {
                prefetchable: false,
            },
            Arc::new(MsixBar::new(shared.clone(), pba_offset)),
        );
        self.msix = Some((off / 4, shared.clone()));
        shared
    }

    /// Serves config dwords `[start, start + len)` (bytes) from `handler`.
    pub fn add_config_hook(&mut self, start: usize, len: usize, handler: Box<dyn ConfigHook>) {
        self.hooks.push(Hook {
            start,
            end: start + len,
            handler,
        });
    }

    fn hook_for(&mut self, byte: usize) -> Option<(&mut Hook, u16)> {
        self.hooks
            .iter_mut()
            .find(|h| byte >= h.start && byte < h.end)
            .map(|h| {
                let off = (byte - h.start) as u16;
                (h, off)
            })
    }

    fn bar_base(&self, bar: &Bar) -> u64 {
        let lo = u64::from(self.config.read(4 + bar.index) & 0xffff_fff0);
        match bar.kind {
            BarKind::Mem32 => lo,
            BarKind::Mem64 { .. } => lo | (u64::from(self.config.read(5 + bar.index)) << 32),
        }
    }

    /// Memory BARs that currently decode: memory enabled, base programmed.
    pub fn mmio_bars(&self) -> Vec<BarRange> {
        if self.config.read(REG_COMMAND_STATUS) & COMMAND_MEMORY == 0 {
            return Vec::new();
        }
        self.bars
            .iter()
            .map(|b| BarRange {
                index: b.index as u8,
                base: self.bar_base(b),
                size: b.size,
            })
            .filter(|r| r.base != 0)
            .collect()
    }

    /// What changed between the decoding BARs `before` and now.
    fn bar_changes(&self, before: &[BarRange]) -> BarChanges {
        let after = self.mmio_bars();
        let mut changes = BarChanges::default();
        for bar in &self.bars {
            let find = |set: &[BarRange]| {
                set.iter()
                    .find(|r| usize::from(r.index) == bar.index)
                    .copied()
            };
            let (was, now) = (find(before), find(&after));
            if was == now {
                continue;
            }
            changes.removed.extend(was);
            changes.added.extend(now.map(|range| BarMapping {
                range,
                device: bar.device.clone(),
            }));
        }
        changes
    }

    fn write_config_register(&mut self, reg: usize, offset: usize, data: &[u8]) {
        if let Some((hook, off)) = self.hook_for(reg * 4) {
            // Merge partial writes with the register's current value.
            let mut bytes = hook.handler.read(off).to_le_bytes();
            bytes[offset..offset + data.len()].copy_from_slice(data);
            hook.handler.write(off, u32::from_le_bytes(bytes));
            return;
        }
        let before = self.config.read(reg);
        self.config.write(reg, offset, data);
        if let (REG_COMMAND_STATUS, Some(pin)) = (reg, &self.intx) {
            pin.set_disabled(self.config.read(reg) & COMMAND_INTX_DISABLE != 0);
        }
        if Some(reg) == self.pm_csr {
            let state = self.config.read(reg) & PM_STATE_MASK;
            if state != 0 && state != PM_STATE_D3HOT {
                self.config.set(reg, before);
            }
        }
        if let Some((msix_reg, table)) = &self.msix {
            if reg == *msix_reg {
                let ctl = self.config.read(reg) >> 16;
                table
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .set_control(ctl & 0x8000 != 0, ctl & 0x4000 != 0);
            }
        }
    }
}

impl PciDevice for PciFunction {
    fn read_config(&mut self, reg: usize) -> u32 {
        if let Some((hook, off)) = self.hook_for(reg * 4) {
            return hook.handler.read(off);
        }
        let value = self.config.read(reg);
        match &self.intx {
            Some(pin) if reg == REG_COMMAND_STATUS && pin.pending() => value | STATUS_INTERRUPT,
            _ => value,
        }
    }

    fn write_config(&mut self, reg: usize, offset: usize, data: &[u8]) -> BarChanges {
        if offset + data.len() > 4 || data.is_empty() {
            return BarChanges::default();
        }
        // Only Command (memory enable) and the BARs themselves move BARs.
        if reg != REG_COMMAND_STATUS && !REG_BARS.contains(&reg) {
            self.write_config_register(reg, offset, data);
            return BarChanges::default();
        }
        let before = self.mmio_bars();
        self.write_config_register(reg, offset, data);
        self.bar_changes(&before)
    }

    fn decoding_bars(&self) -> Vec<BarMapping> {
        let ranges = self.mmio_bars();
        self.bars
            .iter()
            .filter_map(|b| {
                let range = ranges.iter().find(|r| usize::from(r.index) == b.index)?;
                Some(BarMapping {
                    range: *range,
                    device: b.device.clone(),
                })
            })
            .collect()
    }
}

/// Adds a DVSEC (extended capability 0x23) for vendor `vendor`: `body`
/// starts at DVSEC offset 0x0A (after header 2), masks index dwords from the
/// capability header. Returns the capability offset.
pub fn add_dvsec(
    config: &mut ConfigSpace,
    vendor: u16,
    revision: u8,
    dvsec_id: u16,
    body: &[u8],
    masks: CapMasks,
) -> Option<usize> {
    let len = 0x0a + body.len();
    let mut b = vec![0u8; len - 4];
    let header1 = u32::from(vendor) | (u32::from(revision & 0xf) << 16) | ((len as u32) << 20);
    b[0..4].copy_from_slice(&header1.to_le_bytes());
    b[4..6].copy_from_slice(&dvsec_id.to_le_bytes());
    b[6..].copy_from_slice(body);
    config.add_ext_capability(EXT_CAP_ID_DVSEC, 1, &b, masks)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pci::msix::MsiSink;

    struct Scratch([u8; 64]);
    impl crate::BusDeviceMut for Scratch {
        fn read(&mut self, offset: u64, data: &mut [u8]) {
            for (i, d) in data.iter_mut().enumerate() {
                *d = self.0.get(offset as usize + i).copied().unwrap_or(0);
            }
        }
        fn write(&mut self, offset: u64, data: &[u8]) {
            for (i, d) in data.iter().enumerate() {
                if let Some(s) = self.0.get_mut(offset as usize + i) {
                    *s = *d;
                }
            }
        }
    }

    struct NoSink;
    impl MsiSink for NoSink {
        fn route(&self, _: u16, _: u64, _: u32) {}
        fn trigger(&self, _: u16) {}
    }

    fn wr32(f: &mut PciFunction, reg: usize, v: u32) -> BarChanges {
        f.write_config(reg, 0, &v.to_le_bytes())
    }

    fn ranges(m: &[BarMapping]) -> Vec<BarRange> {
        m.iter().map(|m| m.range).collect()
    }

    #[test]
    fn bar_sizing_placement_and_decode_like_linux_does() {
        let mut f = PciFunction::new(ConfigSpace::type0(0x8086, 0x0d93, 0x05_02_10, 0));
        f.add_bar(
            0,
            0x10000,
            BarKind::Mem64 {
                prefetchable: false,
            },
            Arc::new(Mutex::new(Scratch([7; 64]))),
        );
        // Linux sizes a BAR by writing all ones and reading back.
        assert!(wr32(&mut f, 4, 0xffff_ffff).is_empty());
        assert!(wr32(&mut f, 5, 0xffff_ffff).is_empty());
        assert_eq!(
            f.read_config(4),
            0xffff_0004,
            "64 KiB, 64-bit, non-prefetchable"
        );
        assert_eq!(f.read_config(5), 0xffff_ffff);
        assert!(wr32(&mut f, 4, 0xc000_0000).is_empty());
        assert!(wr32(&mut f, 5, 0x0000_0001).is_empty());
        assert!(f.mmio_bars().is_empty(), "memory decoding still off");
        let placed = BarRange {
            index: 0,
            base: 0x1_c000_0000,
            size: 0x10000,
        };
        let on = wr32(&mut f, 1, COMMAND_MEMORY);
        assert_eq!(on.removed, vec![]);
        assert_eq!(ranges(&on.added), vec![placed], "memory enable places it");
        assert_eq!(f.mmio_bars(), vec![placed]);
        let mut d = [0u8; 4];
        on.added[0].device.read(8, &mut d);
        assert_eq!(d, [7; 4], "the BAR's own device serves it");
        assert_eq!(ranges(&f.decoding_bars()), vec![placed]);

        // Rewriting the same address changes nothing; moving it does.
        assert!(wr32(&mut f, 4, 0xc000_0000).is_empty());
        let moved = wr32(&mut f, 5, 0x0000_0002);
        assert_eq!(moved.removed, vec![placed]);
        let placed = BarRange {
            base: 0x2_c000_0000,
            ..placed
        };
        assert_eq!(ranges(&moved.added), vec![placed]);
        // Other registers (even in the command dword) leave BARs alone.
        assert!(wr32(&mut f, 3, 0xffff_ffff).is_empty());
        assert!(f.write_config(1, 1, &[0x04]).is_empty(), "INTx disable");
        let off = f.write_config(1, 0, &[0]);
        assert_eq!((off.removed, off.added.len()), (vec![placed], 0));
        assert!(f.decoding_bars().is_empty());
    }

    #[test]
    fn intx_pin_register_status_and_disable_as_uio_pci_generic_uses_them() {
        use crate::pci::intx::tests::LineRecorder;
        let mut f = PciFunction::new(ConfigSpace::type0(0x8086, 0x0d93, 0x05_02_10, 0));
        assert_eq!(f.read_config(15) & 0xff00, 0, "no pin before one is wired");
        let line = Arc::new(LineRecorder::default());
        let pin = IntxPin::new(1, line.clone());
        f.set_intx(pin.clone());
        assert!(wr32(&mut f, 15, 0xffff_ff2b).is_empty());
        assert_eq!(
            f.read_config(15),
            0x0000_012b,
            "line RW, pin INTA# read-only"
        );
        pin.set_pending(true);
        assert_ne!(f.read_config(1) & STATUS_INTERRUPT, 0);
        // pci_check_and_mask_intx: set Interrupt Disable while pending.
        assert!(f.write_config(1, 1, &[0x04]).is_empty());
        assert_eq!(
            f.read_config(1) & COMMAND_INTX_DISABLE,
            COMMAND_INTX_DISABLE
        );
        assert_ne!(
            f.read_config(1) & STATUS_INTERRUPT,
            0,
            "status still shows it"
        );
        // Status is read-only: writing ones there does not clear it.
        assert!(wr32(&mut f, 1, 0xffff_0000 | COMMAND_INTX_DISABLE).is_empty());
        assert_ne!(f.read_config(1) & STATUS_INTERRUPT, 0);
        assert!(f.write_config(1, 1, &[0x00]).is_empty()); // unmask: pending, so it fires again
        pin.set_pending(false);
        assert_eq!(f.read_config(1) & STATUS_INTERRUPT, 0);
        assert_eq!(*line.0.lock().unwrap(), vec![true, false, true, false]);
    }

    #[test]
    fn power_management_offers_d0_and_d3hot_only() {
        let mut f = PciFunction::new(ConfigSpace::type0(0x8086, 0x0d93, 0x05_02_10, 0));
        f.add_power_management().unwrap();
        let pm = f
            .find_capability(CAP_ID_PM)
            .expect("PM capability in the list");
        assert_ne!(f.read_config(1) & (1 << 20), 0, "status: capabilities list");
        let pmc = f.read_config(pm / 4) >> 16;
        assert_eq!(pmc & 0b111, 3, "version 3");
        assert_eq!(pmc & 0xfe00, 0, "no D1/D2, no PME");
        let csr = pm / 4 + 1;
        assert_eq!(f.read_config(csr), 1 << 3, "D0, No_Soft_Reset");
        assert!(wr32(&mut f, csr, 0xffff_ffff).is_empty());
        assert_eq!(
            f.read_config(csr),
            (1 << 3) | 3,
            "D3hot; PME_En/status read-only 0"
        );
        assert_eq!(f.power_state(), 3);
        assert!(f.write_config(csr, 0, &[1]).is_empty()); // D1: unsupported, discarded
        assert_eq!(f.power_state(), 3);
        assert!(f.write_config(csr, 0, &[0]).is_empty());
        assert_eq!(f.power_state(), 0);
        assert!(f.write_config(csr, 0, &[2]).is_empty()); // D2: unsupported, discarded
        assert_eq!(f.read_config(csr), 1 << 3);
    }

    #[test]
    fn msix_capability_and_table_bar() {
        let mut f = PciFunction::new(ConfigSpace::type0(1, 2, 0, 0));
        let table = f.add_msix(6, 4, Arc::new(NoSink));
        let cap = f.read_config(0x40 / 4);
        assert_eq!(cap & 0xff, u32::from(CAP_ID_MSIX));
        assert_eq!(cap >> 16, 5, "table size N-1");
        assert_eq!(f.read_config(0x44 / 4), 4, "table in BAR 4 at 0");
        assert_eq!(f.read_config(0x48 / 4), 0x1000 | 4, "PBA in BAR 4 at 4 KiB");
        assert!(wr32(&mut f, 0x40 / 4, 0x8000_0000).is_empty());
        assert!(table.lock().unwrap().len() == 6);
        assert!(wr32(&mut f, 8, 0xffff_ffff).is_empty());
        assert_eq!(f.read_config(8), 0xffff_e004, "8 KiB BAR");

        // Table and PBA are one device on the bus, at the BAR.
        assert!(wr32(&mut f, 8, 0xd000_0000).is_empty());
        assert!(wr32(&mut f, 9, 0).is_empty());
        let on = wr32(&mut f, 1, COMMAND_MEMORY);
        let bar = &on.added[0];
        assert_eq!(
            bar.range,
            BarRange {
                index: 4,
                base: 0xd000_0000,
                size: 0x2000
            }
        );
        bar.device.write(16 + 8, &0x41u32.to_le_bytes()); // vector 1 data
        let mut d = [0u8; 4];
        bar.device.read(16 + 8, &mut d);
        assert_eq!(u32::from_le_bytes(d), 0x41);
        table.lock().unwrap().trigger(1); // enabled, vector masked: pends
        let mut pba = [0u8; 8];
        bar.device.read(0x1000, &mut pba);
        assert_eq!(pba, [0b10, 0, 0, 0, 0, 0, 0, 0]);
        bar.device.write(0x1000, &[0; 8]);
        bar.device.read(0x1000, &mut pba);
        assert_eq!(pba[0], 0b10, "the PBA is read-only");
    }

    struct Counter(u32);
    impl ConfigHook for Counter {
        fn read(&mut self, offset: u16) -> u32 {
            self.0 + u32::from(offset)
        }
        fn write(&mut self, _offset: u16, value: u32) {
            self.0 = value;
        }
    }

    #[test]
    fn hooks_serve_their_range_and_merge_partial_writes() {
        let mut f = PciFunction::new(ConfigSpace::type0(1, 2, 0, 0));
        f.add_config_hook(0x104, 8, Box::new(Counter(0x100)));
        assert_eq!(f.read_config(0x41), 0x100);
        assert_eq!(f.read_config(0x42), 0x104);
        assert!(f.write_config(0x41, 1, &[0x22]).is_empty());
        assert_eq!(f.read_config(0x41), 0x2200);
        assert_eq!(f.read_config(0x43), 0, "outside the hook: plain config");
    }

    #[test]
    fn dvsec_header_layout() {
        let mut cs = ConfigSpace::type0(1, 2, 0, 0);
        let off = add_dvsec(&mut cs, 0x1e98, 1, 8, &[0; 0x24 - 0x0a], &[]).unwrap();
        assert_eq!(cs.read(off / 4) & 0xffff, 0x23);
        assert_eq!(cs.read(off / 4 + 1), 0x1e98 | (1 << 16) | (0x24 << 20));
        assert_eq!(cs.read(off / 4 + 2) & 0xffff, 8);
    }
}
