//! PCI: configuration space, the root bus, and its two access mechanisms
//! (ECAM in MMIO, and the legacy 0xCF8/0xCFC port pair).

mod config;
mod host_bridge;
mod root;

pub use config::ConfigSpace;
pub use host_bridge::HostBridge;
pub use root::{Bdf, ConfigIo, Ecam, PciRoot, ECAM_BUS_SIZE};

/// A function on the PCI bus, seen through its configuration space.
pub trait PciDevice: Send {
    /// Reads the 32-bit configuration register `reg` (byte offset `reg * 4`).
    fn read_config(&mut self, reg: usize) -> u32;
    /// Writes `data` (1, 2 or 4 bytes) at byte `offset` within register `reg`.
    fn write_config(&mut self, reg: usize, offset: usize, data: &[u8]);
}
