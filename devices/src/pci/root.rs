//! The PCI segment: functions by bus/device/function, reached through ECAM
//! (MMIO, the full 4 KiB per function) or the legacy 0xCF8/0xCFC ports
//! (first 256 bytes only).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use super::PciDevice;
use crate::BusDevice;

/// ECAM bytes per bus: 32 devices x 8 functions x 4 KiB.
pub const ECAM_BUS_SIZE: u64 = 1 << 20;

/// A bus/device/function address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Bdf(pub u16);

impl Bdf {
    pub fn new(bus: u8, dev: u8, func: u8) -> Self {
        Bdf((u16::from(bus) << 8) | (u16::from(dev & 0x1f) << 3) | u16::from(func & 7))
    }
}

/// A function on the bus, shared between the bus and whoever built it.
pub type SharedPciDevice = Arc<Mutex<dyn PciDevice>>;

/// All functions of the segment. Absent functions read as all ones, which is
/// how the guest learns that nothing is there.
#[derive(Default)]
pub struct PciRoot {
    functions: BTreeMap<Bdf, Arc<Mutex<dyn PciDevice>>>,
}

impl PciRoot {
    pub fn add(&mut self, bdf: Bdf, dev: Arc<Mutex<dyn PciDevice>>) {
        self.functions.insert(bdf, dev);
    }

    fn read(&self, bdf: Bdf, reg: usize) -> u32 {
        match self.functions.get(&bdf) {
            Some(d) => d.lock().unwrap_or_else(|e| e.into_inner()).read_config(reg),
            None => 0xffff_ffff,
        }
    }

    fn write(&self, bdf: Bdf, reg: usize, offset: usize, data: &[u8]) {
        if let Some(d) = self.functions.get(&bdf) {
            d.lock()
                .unwrap_or_else(|e| e.into_inner())
                .write_config(reg, offset, data);
        }
    }
}

impl PciRoot {
    /// The function and BAR decoding guest-physical `addr`, if any.
    fn bar_at(&self, addr: u64) -> Option<(&SharedPciDevice, u8, u64)> {
        self.functions.values().find_map(|f| {
            let bars = f.lock().unwrap_or_else(|e| e.into_inner()).mmio_bars();
            bars.into_iter()
                .find(|b| addr >= b.base && addr - b.base < b.size)
                .map(|b| (f, b.index, addr - b.base))
        })
    }
}

/// Routes MMIO in a PCI memory window to whichever function's BAR decodes
/// it, following BARs wherever the guest moves them. The device sits on the
/// MMIO bus at `base`, so offsets are turned back into addresses.
pub struct PciMmio {
    root: Arc<PciRoot>,
    base: u64,
}

impl PciMmio {
    pub fn new(root: Arc<PciRoot>, base: u64) -> Self {
        Self { root, base }
    }
}

impl BusDevice for PciMmio {
    fn read(&self, offset: u64, data: &mut [u8]) {
        match self.root.bar_at(self.base + offset) {
            Some((f, bar, off)) => f
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .bar_read(bar, off, data),
            None => data.fill(0xff),
        }
    }

    fn write(&self, offset: u64, data: &[u8]) {
        if let Some((f, bar, off)) = self.root.bar_at(self.base + offset) {
            f.lock()
                .unwrap_or_else(|e| e.into_inner())
                .bar_write(bar, off, data);
        }
    }
}

/// Copies the bytes of `value` that an access at `offset` of width `data.len()` sees.
fn extract(value: u32, offset: usize, data: &mut [u8]) {
    let bytes = value.to_le_bytes();
    for (i, d) in data.iter_mut().enumerate() {
        *d = bytes.get(offset + i).copied().unwrap_or(0xff);
    }
}

/// ECAM window: offset = bus << 20 | dev << 15 | fn << 12 | register.
pub struct Ecam {
    root: Arc<PciRoot>,
}

impl Ecam {
    pub fn new(root: Arc<PciRoot>) -> Self {
        Self { root }
    }

    fn decode(offset: u64, len: usize) -> Option<(Bdf, usize, usize)> {
        let in_reg = (offset & 3) as usize;
        // Accesses must be naturally aligned and not cross a dword.
        if !matches!(len, 1 | 2 | 4) || !in_reg.is_multiple_of(len) {
            return None;
        }
        let bdf = Bdf(u16::try_from(offset >> 12).ok()?);
        Some((bdf, ((offset & 0xfff) >> 2) as usize, in_reg))
    }
}

impl BusDevice for Ecam {
    fn read(&self, offset: u64, data: &mut [u8]) {
        match Self::decode(offset, data.len()) {
            Some((bdf, reg, in_reg)) => extract(self.root.read(bdf, reg), in_reg, data),
            None => data.fill(0xff),
        }
    }

    fn write(&self, offset: u64, data: &[u8]) {
        if let Some((bdf, reg, in_reg)) = Self::decode(offset, data.len()) {
            self.root.write(bdf, reg, in_reg, data);
        }
    }
}

/// Configuration mechanism #1: CONFIG_ADDRESS at 0xCF8, CONFIG_DATA at 0xCFC.
/// The device occupies 8 ports starting at 0xCF8. The address latch is one
/// register shared by every CPU, as on a real chipset (the OS serialises the
/// two-step access itself, Linux with `pci_config_lock`); the data access
/// takes only the addressed function's lock.
pub struct ConfigIo {
    root: Arc<PciRoot>,
    address: AtomicU32,
}

const ENABLE: u32 = 1 << 31;

impl ConfigIo {
    pub fn new(root: Arc<PciRoot>) -> Self {
        Self {
            root,
            address: AtomicU32::new(0),
        }
    }

    fn target(&self) -> Option<(Bdf, usize)> {
        let address = self.address.load(Ordering::Acquire);
        if address & ENABLE == 0 {
            return None;
        }
        let bdf = Bdf(((address >> 8) & 0xffff) as u16);
        Some((bdf, ((address & 0xfc) >> 2) as usize))
    }
}

impl BusDevice for ConfigIo {
    fn read(&self, offset: u64, data: &mut [u8]) {
        match (offset, data.len()) {
            (0, 4) => data.copy_from_slice(&self.address.load(Ordering::Acquire).to_le_bytes()),
            (4..=7, _) => match self.target() {
                Some((bdf, reg)) => extract(self.root.read(bdf, reg), offset as usize - 4, data),
                None => data.fill(0xff),
            },
            _ => data.fill(0xff),
        }
    }

    fn write(&self, offset: u64, data: &[u8]) {
        match (offset, data.len()) {
            (0, 4) => {
                let mut b = [0u8; 4];
                b.copy_from_slice(data);
                // Bits 30:24 are reserved and 1:0 are always zero.
                self.address
                    .store(u32::from_le_bytes(b) & 0x80ff_fffc, Ordering::Release);
            }
            (4..=7, _) => {
                let in_reg = offset as usize - 4;
                if in_reg + data.len() <= 4 {
                    if let Some((bdf, reg)) = self.target() {
                        self.root.write(bdf, reg, in_reg, data);
                    }
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pci::HostBridge;

    fn root() -> Arc<PciRoot> {
        let mut r = PciRoot::default();
        r.add(
            Bdf::new(0, 0, 0),
            Arc::new(Mutex::new(HostBridge::default())),
        );
        Arc::new(r)
    }

    #[test]
    fn ecam_reads_ids_and_absent_functions_float_high() {
        let ecam = Ecam::new(root());
        let mut d = [0u8; 4];
        ecam.read(0, &mut d);
        assert_eq!(u32::from_le_bytes(d), 0x0d57_8086);
        let mut w = [0u8; 2];
        ecam.read(2, &mut w);
        assert_eq!(u16::from_le_bytes(w), 0x0d57);
        ecam.read(1 << 15, &mut d); // device 1
        assert_eq!(u32::from_le_bytes(d), 0xffff_ffff);
        ecam.read(1, &mut w); // misaligned
        assert_eq!(w, [0xff, 0xff]);
        ecam.read(0xb << 20, &mut d); // bus 11
        assert_eq!(u32::from_le_bytes(d), 0xffff_ffff);
    }

    #[test]
    fn cf8_mechanism_matches_ecam() {
        let io = ConfigIo::new(root());
        io.write(0, &0x8000_0008u32.to_le_bytes()); // 00:00.0 reg 2 (class)
        let mut d = [0u8; 4];
        io.read(4, &mut d);
        assert_eq!(u32::from_le_bytes(d) >> 8, 0x06_00_00);
        let mut b = [0u8; 1];
        io.read(7, &mut b);
        assert_eq!(b[0], 0x06);
        io.write(0, &0x0000_0000u32.to_le_bytes()); // enable bit clear
        io.read(4, &mut d);
        assert_eq!(u32::from_le_bytes(d), 0xffff_ffff);
    }
}
