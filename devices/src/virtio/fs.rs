//! virtio-fs (Virtio 1.2 §5.11): the guest's FUSE requests go to a daemon
//! outside cxlvmm (vhost-user, `virtiofsd`) that reads and writes the
//! rings itself; this device only tells the driver what the file system is
//! called and how many queues it has, and hands the queues to a
//! [`RingBackend`] when the driver starts it.
//!
//! Queues (§5.11.2): 0 is the high-priority queue (FUSE_INTERRUPT,
//! FUSE_FORGET), 1..=N the request queues. Configuration (§5.11.4): `tag`
//! (36 bytes, NUL-padded, what `mount -t virtiofs TAG` names) and
//! `num_request_queues` (le32). No notification queue and no DAX window
//! are offered.

use virtio_queue::QueueT;

use super::{Activation, VirtioDevice, VIRTIO_F_VERSION_1};

/// virtio device ID of a file-system device (§5).
const VIRTIO_ID_FS: u32 = 26;
/// The longest tag the configuration holds (§5.11.4).
pub const TAG_LEN: usize = 36;
/// Entries per queue; what QEMU's vhost-user-fs-pci offers at most, and
/// what virtiofsd accepts.
const QUEUE_SIZE: u16 = 1024;
/// PCI class: mass storage, other (as QEMU gives vhost-user-fs-pci).
pub const CLASS_STORAGE_OTHER: u32 = 0x01_80_00;

/// Whoever serves the rings: a vhost-user backend in cxlvmm, a fake in tests.
pub trait RingBackend: Send {
    /// Virtio feature bits the backend can serve (the device offers these
    /// and VERSION_1 at most).
    fn features(&self) -> u64;
    /// The driver set DRIVER_OK: start serving `activation`'s ready queues.
    fn start(&mut self, activation: Activation) -> Result<(), String>;
    /// The driver notified `queue`.
    fn kick(&mut self, queue: u16) -> Result<(), String>;
    /// The driver reset the device: stop touching the rings.
    fn stop(&mut self);
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TagError {
    #[error("tag {0:?}: empty")]
    Empty(String),
    #[error("tag {0:?}: longer than {TAG_LEN} bytes")]
    TooLong(String),
    #[error("tag {0:?}: contains a NUL, comma or whitespace")]
    BadChar(String),
}

/// Checks a tag as the guest will need to type it after `mount -t virtiofs`.
pub fn check_tag(tag: &str) -> Result<(), TagError> {
    if tag.is_empty() {
        return Err(TagError::Empty(tag.into()));
    }
    if tag.len() > TAG_LEN {
        return Err(TagError::TooLong(tag.into()));
    }
    if tag
        .chars()
        .any(|c| c == '\0' || c == ',' || c.is_whitespace())
    {
        return Err(TagError::BadChar(tag.into()));
    }
    Ok(())
}

pub struct Fs {
    config: [u8; TAG_LEN + 4],
    request_queues: u16,
    backend: Box<dyn RingBackend>,
    started: bool,
}

impl Fs {
    /// A file system named `tag` (checked with [`check_tag`]) with
    /// `request_queues` request queues served by `backend`.
    pub fn new(
        tag: &str,
        request_queues: u16,
        backend: Box<dyn RingBackend>,
    ) -> Result<Self, TagError> {
        check_tag(tag)?;
        let mut config = [0u8; TAG_LEN + 4];
        config[..tag.len()].copy_from_slice(tag.as_bytes());
        config[TAG_LEN..].copy_from_slice(&u32::from(request_queues).to_le_bytes());
        Ok(Self {
            config,
            request_queues: request_queues.max(1),
            backend,
            started: false,
        })
    }
}

impl VirtioDevice for Fs {
    fn device_type(&self) -> u32 {
        VIRTIO_ID_FS
    }

    fn queue_max_sizes(&self) -> Vec<u16> {
        vec![QUEUE_SIZE; 1 + usize::from(self.request_queues)]
    }

    fn features(&self) -> u64 {
        VIRTIO_F_VERSION_1
            | (self.backend.features()
                & (super::VIRTIO_RING_F_EVENT_IDX | super::VIRTIO_RING_F_INDIRECT_DESC))
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        for (i, d) in data.iter_mut().enumerate() {
            *d = usize::try_from(offset)
                .ok()
                .and_then(|o| o.checked_add(i))
                .and_then(|at| self.config.get(at))
                .copied()
                .unwrap_or(0);
        }
    }

    fn activate(&mut self, a: Activation) -> Result<(), String> {
        // Linux's virtio_fs enables every queue it finds; one not enabled
        // is a driver this device does not know how to serve.
        if let Some(i) = a.queues.iter().position(|q| !q.ready()) {
            return Err(format!("queue {i} was not enabled"));
        }
        self.backend.start(a)?;
        self.started = true;
        Ok(())
    }

    fn notify(&mut self, queue: u16) -> Result<(), String> {
        if !self.started {
            return Ok(());
        }
        if usize::from(queue) > usize::from(self.request_queues) {
            // A notification for a queue that does not exist is ignored,
            // as a write to an unused doorbell would be.
            return Ok(());
        }
        self.backend.kick(queue)
    }

    fn reset(&mut self) {
        if self.started {
            self.backend.stop();
            self.started = false;
        }
    }
}

#[cfg(test)]
#[path = "fs_tests.rs"]
mod tests;
