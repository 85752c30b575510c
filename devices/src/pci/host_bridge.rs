//! The root complex's host bridge, function 00:00.0 of segment 0.

use super::{BarChanges, ConfigSpace, PciDevice};

/// The vendor/device ID rust-vmm VMMs use for a virtual PCIe host bridge.
const VENDOR_INTEL: u16 = 0x8086;
const DEVICE_VIRT_PCIE_HOST: u16 = 0x0d57;
/// Class 06 (bridge), subclass 00 (host bridge), prog-if 00.
const CLASS_HOST_BRIDGE: u32 = 0x06_00_00;

pub struct HostBridge {
    config: ConfigSpace,
}

impl Default for HostBridge {
    fn default() -> Self {
        Self {
            config: ConfigSpace::type0(VENDOR_INTEL, DEVICE_VIRT_PCIE_HOST, CLASS_HOST_BRIDGE, 0),
        }
    }
}

impl PciDevice for HostBridge {
    fn read_config(&mut self, reg: usize) -> u32 {
        self.config.read(reg)
    }

    fn write_config(&mut self, reg: usize, offset: usize, data: &[u8]) -> BarChanges {
        // No BARs: nothing to place.
        self.config.write(reg, offset, data);
        BarChanges::default()
    }
}
