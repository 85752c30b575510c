//! PCI: configuration space, the root bus, and its two access mechanisms
//! (ECAM in MMIO, and the legacy 0xCF8/0xCFC port pair); functions' memory
//! BARs are placed on the MMIO bus as the guest programs them.

mod bars;
mod config;
mod function;
mod host_bridge;
mod intx;
mod msix;
mod pcie_cap;
mod root;

pub use bars::{BarChanges, BarMap, BarMapping, BarRange};
pub use config::{CapMasks, ConfigSpace};
pub use function::{
    add_dvsec, BarKind, ConfigHook, PciFunction, CAP_ID_MSI, CAP_ID_PCIE, CAP_ID_PM,
    EXT_CAP_ID_AER, EXT_CAP_ID_DOE, EXT_CAP_ID_DSN, EXT_CAP_ID_DVSEC,
};
pub use host_bridge::HostBridge;
pub use intx::{IntxLine, IntxPin};
pub use msix::{MsiSink, MsixBar, MsixTable, SharedMsix};
pub use pcie_cap::{
    add_aer, add_dsn, add_msi_capability, add_pcie_capability, LinkParams, PortType,
};
pub use root::{Bdf, ConfigIo, Ecam, PciRoot, ECAM_BUS_SIZE};

/// Gives functions their interrupt resources (the VMM implements it with KVM).
pub trait InterruptAllocator {
    /// A group of `vectors` MSI-X vectors of one function's own.
    fn msix_vectors(&self, vectors: u16) -> std::io::Result<std::sync::Arc<dyn MsiSink>>;
    /// The interrupt controller input `gsi`, as an INTx line (shared lines
    /// are wired-OR: asserted while any pin on them is).
    fn intx_line(&self, gsi: u32) -> std::sync::Arc<dyn IntxLine>;
}

/// A function on the PCI bus, seen through its configuration space.
pub trait PciDevice: Send {
    /// Reads the 32-bit configuration register `reg` (byte offset `reg * 4`).
    fn read_config(&mut self, reg: usize) -> u32;
    /// Writes `data` (1, 2 or 4 bytes) at byte `offset` within register `reg`,
    /// and says which memory BARs started or stopped decoding because of it.
    fn write_config(&mut self, reg: usize, offset: usize, data: &[u8]) -> BarChanges;
    /// Memory BARs decoding now, each with the device that serves it.
    fn decoding_bars(&self) -> Vec<BarMapping> {
        Vec::new()
    }
}
