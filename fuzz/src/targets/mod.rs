//! One module per guest-facing surface.

pub mod accel_queue;
pub mod component;
pub mod config_space;
pub mod doe;
pub mod hdm;
pub mod legacy;
pub mod mailbox;
pub mod msix;
pub mod topology;
pub mod virtio_blk;

/// A sink for MSI-X messages that records nothing.
pub(crate) struct NoMsi;

impl devices::pci::MsiSink for NoMsi {
    fn route(&self, _: u16, _: u64, _: u32) {}
    fn trigger(&self, _: u16) {}
}
