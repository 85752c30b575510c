//! A test driver: guest RAM, split rings written byte by byte as the
//! spec lays them out (Virtio 1.2 §2.7), and the virtio-pci registers
//! programmed the way Linux's virtio_pci_modern does.

use std::sync::{Arc, Mutex};

use vm_memory::{Bytes, GuestAddress};

use super::{GuestRam, VirtioPci};
use crate::pci::{MsiSink, PciDevice};
use crate::BusDevice;

pub const VRING_DESC_F_NEXT: u16 = 1;
pub const VRING_DESC_F_WRITE: u16 = 2;
pub const VRING_DESC_F_INDIRECT: u16 = 4;

pub fn ram(size: usize) -> GuestRam {
    GuestRam::from_ranges(&[(GuestAddress(0), size)]).unwrap()
}

/// Records every MSI-X vector triggered.
#[derive(Default)]
pub struct MsiLog(pub Mutex<Vec<u16>>);
impl MsiSink for MsiLog {
    fn route(&self, _: u16, _: u64, _: u32) {}
    fn trigger(&self, vector: u16) {
        self.0.lock().unwrap().push(vector);
    }
}

/// A split virtqueue in guest memory.
pub struct Ring {
    pub mem: GuestRam,
    pub size: u16,
    pub desc: u64,
    pub avail: u64,
    pub used: u64,
    avail_idx: u16,
}

impl Ring {
    /// A ring of `size` entries whose structures start at `base`.
    pub fn new(mem: &GuestRam, base: u64, size: u16) -> Self {
        let desc = base;
        let avail = desc + 16 * u64::from(size);
        let used = (avail + 6 + 2 * u64::from(size)).next_multiple_of(4);
        Self {
            mem: mem.clone(),
            size,
            desc,
            avail,
            used,
            avail_idx: 0,
        }
    }

    pub fn set_desc(&self, i: u16, addr: u64, len: u32, flags: u16, next: u16) {
        write_desc(&self.mem, self.desc, i, addr, len, flags, next);
    }

    /// Makes chain `head` available.
    pub fn push(&mut self, head: u16) {
        let slot = self.avail + 4 + 2 * u64::from(self.avail_idx % self.size);
        self.mem.write_obj(head, GuestAddress(slot)).unwrap();
        self.avail_idx = self.avail_idx.wrapping_add(1);
        self.mem
            .write_obj(self.avail_idx, GuestAddress(self.avail + 2))
            .unwrap();
    }

    pub fn used_idx(&self) -> u16 {
        self.mem.read_obj(GuestAddress(self.used + 2)).unwrap()
    }

    /// Used element `n`: (descriptor id, bytes written).
    pub fn used_elem(&self, n: u16) -> (u32, u32) {
        let at = self.used + 4 + 8 * u64::from(n % self.size);
        (
            self.mem.read_obj(GuestAddress(at)).unwrap(),
            self.mem.read_obj(GuestAddress(at + 4)).unwrap(),
        )
    }
}

/// Writes descriptor `i` of the table at `table` (direct or indirect).
pub fn write_desc(mem: &GuestRam, table: u64, i: u16, addr: u64, len: u32, flags: u16, next: u16) {
    let at = table + 16 * u64::from(i);
    mem.write_obj(addr, GuestAddress(at)).unwrap();
    mem.write_obj(len, GuestAddress(at + 8)).unwrap();
    mem.write_obj(flags, GuestAddress(at + 12)).unwrap();
    mem.write_obj(next, GuestAddress(at + 14)).unwrap();
}

/// Drives a [`VirtioPci`] through its BAR 0 as Linux's driver does.
pub struct Driver {
    pub bar: Arc<dyn BusDevice>,
    pub pci: VirtioPci,
}

const BAR0_BASE: u64 = 0xc000_0000;

impl Driver {
    pub fn new(mut pci: VirtioPci) -> Self {
        for (reg, v) in [(4, BAR0_BASE as u32), (5, 0), (1, 0b110)] {
            let _ = pci.function.write_config(reg, 0, &v.to_le_bytes());
        }
        let bar = pci
            .function
            .decoding_bars()
            .into_iter()
            .find(|b| b.range.index == 0)
            .expect("BAR 0 decodes")
            .device;
        Self { bar, pci }
    }

    pub fn read(&self, offset: u64, len: usize) -> u64 {
        let mut b = [0u8; 8];
        self.bar.read(offset, &mut b[..len]);
        u64::from_le_bytes(b)
    }

    pub fn write(&self, offset: u64, len: usize, v: u64) {
        self.bar.write(offset, &v.to_le_bytes()[..len]);
    }

    pub fn status(&self) -> u8 {
        self.read(0x14, 1) as u8
    }

    /// ACKNOWLEDGE, DRIVER, the features, FEATURES_OK; true if accepted.
    pub fn negotiate(&self, features: u64) -> bool {
        self.write(0x14, 1, 0);
        self.write(0x14, 1, 1 | 2);
        for half in 0..2u64 {
            self.write(0x08, 4, half);
            self.write(0x0c, 4, (features >> (32 * half)) & 0xffff_ffff);
        }
        self.write(0x14, 1, 1 | 2 | 8);
        self.status() & 8 != 0
    }

    /// The device's offered features.
    pub fn device_features(&self) -> u64 {
        self.write(0x00, 4, 0);
        let lo = self.read(0x04, 4);
        self.write(0x00, 4, 1);
        lo | (self.read(0x04, 4) << 32)
    }

    /// Programs queue `q` from `ring` and enables it, with MSI-X vector `vector`.
    pub fn setup_queue(&self, q: u16, ring: &Ring, vector: u16) {
        self.write(0x16, 2, u64::from(q));
        self.write(0x18, 2, u64::from(ring.size));
        self.write(0x1a, 2, u64::from(vector));
        for (off, addr) in [(0x20, ring.desc), (0x28, ring.avail), (0x30, ring.used)] {
            self.write(off, 4, addr & 0xffff_ffff);
            self.write(off + 4, 4, addr >> 32);
        }
        self.write(0x1c, 2, 1);
    }

    pub fn driver_ok(&self) {
        let s = u64::from(self.status());
        self.write(0x14, 1, s | 4);
    }

    pub fn notify(&self, q: u16) {
        self.write(0x3000 + 4 * u64::from(q), 2, u64::from(q));
    }

    /// Enables MSI-X in the function's capability, every vector unmasked.
    pub fn enable_msix(&mut self) {
        let cap = self.pci.function.find_capability(0x11).unwrap();
        let _ = self
            .pci
            .function
            .write_config(cap / 4, 2, &0x8000u16.to_le_bytes());
        let mut t = self.pci.msix.lock().unwrap();
        for v in 0..t.len() as u64 {
            t.write_table(v * 16 + 12, &0u32.to_le_bytes());
        }
    }
}
