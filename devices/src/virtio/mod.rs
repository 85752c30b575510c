//! Virtio devices over the modern virtio-pci transport (Virtio 1.2 §4.1).
//!
//! The transport ([`VirtioPci`]) is a PCI function whose BAR 0 holds the
//! common configuration, ISR status, device configuration and notification
//! structures, found by the driver through vendor-specific capabilities, and
//! whose BAR 4 holds the MSI-X table. It negotiates features, keeps each
//! queue's registers and, when the driver sets DRIVER_OK, checks every
//! enabled queue against guest memory (`virtio_queue::Queue::is_valid`) and
//! hands the queues to the device model ([`VirtioDevice`]).
//!
//! Device models: [`block::Block`] (virtio-blk over a raw file, requests
//! served on the notifying vCPU's thread) and [`fs::Fs`] (virtio-fs, whose
//! rings a vhost-user daemon serves).

pub mod block;
mod common_cfg;
pub mod fs;
mod pci;

#[cfg(test)]
mod testing;

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

pub use pci::{VirtioPci, VIRTIO_BAR_SIZE};

use crate::bus::lock;
use crate::pci::SharedMsix;

/// Guest RAM as the device models see it.
pub type GuestRam = vm_memory::GuestMemoryMmap<()>;

/// The queues a driver set up, as the transport hands them over.
pub type Queues = Vec<virtio_queue::Queue>;

/// Feature bits every device here offers (Virtio 1.2 §6).
pub const VIRTIO_F_VERSION_1: u64 = 1 << virtio_bindings::virtio_config::VIRTIO_F_VERSION_1;
pub const VIRTIO_RING_F_INDIRECT_DESC: u64 = 1 << 28;
pub const VIRTIO_RING_F_EVENT_IDX: u64 = 1 << 29;

/// "No MSI-X vector" (Virtio 1.2 §4.1.5.1.2).
pub const NO_VECTOR: u16 = 0xffff;

/// A device model behind the transport.
pub trait VirtioDevice: Send {
    /// Virtio device ID (Virtio 1.2 §5): 2 is block.
    fn device_type(&self) -> u32;
    /// The largest size of each queue (powers of two).
    fn queue_max_sizes(&self) -> Vec<u16>;
    /// Feature bits offered to the driver.
    fn features(&self) -> u64;
    /// Reads the device-specific configuration at `offset`; bytes past its
    /// end read as zero.
    fn read_config(&self, offset: u64, data: &mut [u8]);
    /// The driver wrote device-specific configuration (ignored by default).
    fn write_config(&mut self, _offset: u64, _data: &[u8]) {}
    /// The driver set DRIVER_OK: `queues` (every queue, valid for guest
    /// memory where enabled) are the device's until [`VirtioDevice::reset`].
    fn activate(&mut self, activation: Activation) -> Result<(), String>;
    /// The driver notified queue `queue` (only after a successful activate).
    /// An error means the driver broke the ring's rules and the device
    /// cannot go on: the transport sets DEVICE_NEEDS_RESET.
    fn notify(&mut self, queue: u16) -> Result<(), String>;
    /// The driver reset the device: stop using the queues.
    fn reset(&mut self);
}

/// What a device gets when the driver sets DRIVER_OK.
pub struct Activation {
    pub mem: GuestRam,
    pub queues: Queues,
    /// Features the driver accepted.
    pub features: u64,
    pub interrupt: Arc<Interrupt>,
}

/// ISR status bits (Virtio 1.2 §4.1.4.5).
pub const ISR_QUEUE: u8 = 1;
pub const ISR_CONFIG: u8 = 2;

/// How a device signals the driver: the ISR status byte, and the MSI-X
/// vector the driver chose for each queue and for configuration changes.
pub struct Interrupt {
    isr: Arc<AtomicU8>,
    msix: SharedMsix,
    config_vector: u16,
    queue_vectors: Vec<u16>,
}

impl Interrupt {
    pub(crate) fn new(
        isr: Arc<AtomicU8>,
        msix: SharedMsix,
        config_vector: u16,
        queue_vectors: Vec<u16>,
    ) -> Self {
        Self {
            isr,
            msix,
            config_vector,
            queue_vectors,
        }
    }

    /// Queue `queue` has new used buffers.
    pub fn signal_queue(&self, queue: u16) {
        let vector = self
            .queue_vectors
            .get(usize::from(queue))
            .copied()
            .unwrap_or(NO_VECTOR);
        self.signal(ISR_QUEUE, vector);
    }

    /// The device configuration (or status) changed.
    pub fn signal_config(&self) {
        self.signal(ISR_CONFIG, self.config_vector);
    }

    fn signal(&self, isr_bit: u8, vector: u16) {
        self.isr.fetch_or(isr_bit, Ordering::AcqRel);
        if vector != NO_VECTOR {
            lock(&self.msix).trigger(vector);
        }
    }
}
