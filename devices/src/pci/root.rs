//! The PCI segment: functions by bus/device/function, reached through ECAM
//! (MMIO, the full 4 KiB per function) or the legacy 0xCF8/0xCFC ports
//! (first 256 bytes only). Neither takes a lock of its own beyond the
//! addressed function's.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use super::{BarChanges, BarMap, PciDevice};
use crate::bus::lock;
use crate::{Bus, BusDevice};

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

/// All functions of the segment. Absent functions read as all ones, which is
/// how the guest learns that nothing is there.
///
/// Each function has a lock of its own, so configuration accesses to
/// different functions never wait for each other. A write that moves a BAR
/// is applied to the MMIO bus while the function's lock is still held, so
/// the bus always follows the function's last write.
pub struct PciRoot {
    functions: BTreeMap<Bdf, Mutex<Box<dyn PciDevice>>>,
    bars: BarMap,
}

impl PciRoot {
    /// An empty segment whose functions' BARs go on `mmio`, decoding inside
    /// `apertures` (base, size): the host bridges' memory windows.
    pub fn new(mmio: Arc<Bus>, apertures: Vec<(u64, u64)>) -> Self {
        Self {
            functions: BTreeMap::new(),
            bars: BarMap::new(mmio, apertures),
        }
    }

    /// Adds a function; BARs it already decodes (programmed as firmware
    /// would) go on the MMIO bus now.
    pub fn add(&mut self, bdf: Bdf, dev: impl PciDevice + 'static) {
        self.bars.apply(
            bdf,
            BarChanges {
                removed: Vec::new(),
                added: dev.decoding_bars(),
            },
        );
        self.functions.insert(bdf, Mutex::new(Box::new(dev)));
    }

    fn read(&self, bdf: Bdf, reg: usize) -> u32 {
        match self.functions.get(&bdf) {
            Some(d) => lock(d).read_config(reg),
            None => 0xffff_ffff,
        }
    }

    fn write(&self, bdf: Bdf, reg: usize, offset: usize, data: &[u8]) {
        if let Some(d) = self.functions.get(&bdf) {
            let mut f = lock(d);
            let changes = f.write_config(reg, offset, data);
            if !changes.is_empty() {
                self.bars.apply(bdf, changes);
            }
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
        let mut r = PciRoot::new(Arc::new(Bus::new()), Vec::new());
        r.add(Bdf::new(0, 0, 0), HostBridge::default());
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

    /// A register block that answers with its own tag.
    struct Tag(u8);
    impl BusDevice for Tag {
        fn read(&self, _offset: u64, data: &mut [u8]) {
            data.fill(self.0);
        }
        fn write(&self, _offset: u64, _data: &[u8]) {}
    }

    fn endpoint(tag: u8) -> crate::pci::PciFunction {
        let mut f = crate::pci::PciFunction::new(crate::pci::ConfigSpace::type0(1, 2, 0, 0));
        let kind = crate::pci::BarKind::Mem64 {
            prefetchable: false,
        };
        f.add_bar(0, 0x1000, kind, Arc::new(Tag(tag)));
        f
    }

    const WINDOW: (u64, u64) = (0xc000_0000, 0x1000_0000);

    fn ecam_wr32(ecam: &Ecam, bdf: Bdf, reg: u64, v: u32) {
        ecam.write((u64::from(bdf.0) << 12) | (reg * 4), &v.to_le_bytes());
    }

    fn mmio_byte(bus: &Bus, addr: u64) -> Option<u8> {
        let mut b = [0u8];
        bus.read(addr, &mut b).then_some(b[0])
    }

    #[test]
    fn bars_programmed_through_ecam_go_on_the_bus_and_follow_moves() {
        let mmio = Arc::new(Bus::new());
        let mut root = PciRoot::new(mmio.clone(), vec![WINDOW]);
        let (a, b) = (Bdf::new(1, 0, 0), Bdf::new(2, 0, 0));
        root.add(a, endpoint(0xa));
        // Programmed before it joins the segment, as firmware does.
        let mut fb = endpoint(0xb);
        for (reg, v) in [(4, 0xc001_0000u32), (5, 0), (1, 2)] {
            let _ = fb.write_config(reg, 0, &v.to_le_bytes());
        }
        root.add(b, fb);
        let ecam = Ecam::new(Arc::new(root));
        assert_eq!(mmio_byte(&mmio, 0xc001_0010), Some(0xb), "firmware's BAR");

        // Sizing with decode off places nothing.
        ecam_wr32(&ecam, a, 4, 0xffff_ffff);
        ecam_wr32(&ecam, a, 5, 0xffff_ffff);
        let mut d = [0u8; 4];
        ecam.read((u64::from(a.0) << 12) | 16, &mut d);
        assert_eq!(u32::from_le_bytes(d), 0xffff_f004);
        ecam_wr32(&ecam, a, 4, 0xc000_0000);
        ecam_wr32(&ecam, a, 5, 0);
        assert_eq!(mmio_byte(&mmio, 0xc000_0000), None, "decode still off");
        ecam_wr32(&ecam, a, 1, 2);
        assert_eq!(mmio_byte(&mmio, 0xc000_0ffc), Some(0xa));
        // Moving it: the old place floats (the vCPU reads all ones there).
        ecam_wr32(&ecam, a, 4, 0xc002_0000);
        assert_eq!(mmio_byte(&mmio, 0xc000_0000), None);
        assert_eq!(mmio_byte(&mmio, 0xc002_0000), Some(0xa));
        // Onto b's BAR: b keeps it; once b moves away, a decodes there.
        ecam_wr32(&ecam, a, 4, 0xc001_0000);
        assert_eq!(mmio_byte(&mmio, 0xc001_0000), Some(0xb));
        assert_eq!(mmio_byte(&mmio, 0xc002_0000), None);
        ecam_wr32(&ecam, b, 4, 0xc003_0000);
        assert_eq!(mmio_byte(&mmio, 0xc001_0000), Some(0xa));
        assert_eq!(mmio_byte(&mmio, 0xc003_0000), Some(0xb));
        // Outside the PCI window nothing decodes (the high dword moves it
        // above 4 GiB); memory decode off removes it.
        ecam_wr32(&ecam, b, 5, 1);
        assert_eq!(mmio_byte(&mmio, 0x1_c003_0000), None);
        ecam_wr32(&ecam, b, 5, 0);
        assert_eq!(mmio_byte(&mmio, 0xc003_0000), Some(0xb));
        ecam_wr32(&ecam, a, 1, 0);
        assert_eq!(mmio_byte(&mmio, 0xc001_0000), None);
    }
}
