//! The modern virtio-pci transport (Virtio 1.2 §4.1): a PCI function with
//! one register BAR and an MSI-X BAR.
//!
//! BAR 0 (64-bit, 16 KiB) holds, each in a page of its own:
//!
//! | offset | structure | capability `cfg_type` |
//! |---|---|---|
//! | 0x0000 | common configuration | 1 |
//! | 0x1000 | ISR status (read clears) | 3 |
//! | 0x2000 | device-specific configuration | 4 |
//! | 0x3000 | notifications: queue N at 0x3000 + 4·N | 2 |
//!
//! BAR 4 holds the MSI-X table and PBA, one vector per queue plus one for
//! configuration changes (Linux's preferred layout, `vp_find_vqs_msix`).

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use virtio_bindings::virtio_config::VIRTIO_CONFIG_S_NEEDS_RESET;
use virtio_queue::{Queue, QueueT};
use vm_memory::GuestAddress;

use super::common_cfg::{CommonConfig, StatusChange, COMMON_CFG_SIZE};
use super::{Activation, GuestRam, Interrupt, VirtioDevice, VIRTIO_RING_F_EVENT_IDX};
use crate::bus::lock;
use crate::pci::{BarKind, ConfigSpace, MsiSink, PciFunction, SharedMsix};
use crate::BusDevice;

pub const VIRTIO_BAR_SIZE: u64 = 0x4000;
const REGS_BAR: usize = 0;
const MSIX_BAR: usize = 4;
const COMMON_OFFSET: u64 = 0x0000;
const ISR_OFFSET: u64 = 0x1000;
const DEVICE_CFG_OFFSET: u64 = 0x2000;
const NOTIFY_OFFSET: u64 = 0x3000;
const PAGE: u64 = 0x1000;
const NOTIFY_OFF_MULTIPLIER: u32 = 4;

/// PCI IDs (Virtio 1.2 §4.1.2): vendor 0x1AF4, device 0x1040 + device ID.
const VIRTIO_VENDOR: u16 = 0x1af4;
const MODERN_DEVICE_BASE: u16 = 0x1040;
/// Capability ID of a vendor-specific capability, and virtio's cfg_types.
const CAP_ID_VENDOR: u8 = 0x09;
const CFG_COMMON: u8 = 1;
const CFG_NOTIFY: u8 = 2;
const CFG_ISR: u8 = 3;
const CFG_DEVICE: u8 = 4;

/// The device side of one virtio function: registers, queues, device model.
struct Transport {
    common: CommonConfig,
    device: Box<dyn VirtioDevice>,
    mem: GuestRam,
    msix: SharedMsix,
    isr: Arc<AtomicU8>,
    /// The device holds the queues (DRIVER_OK accepted, no reset since).
    active: bool,
    /// The vectors the driver chose at DRIVER_OK, for signalling a failure.
    interrupt: Option<Arc<Interrupt>>,
}

impl Transport {
    fn write_common(&mut self, offset: u64, data: &[u8]) {
        match self.common.write(offset, data) {
            StatusChange::None => {}
            StatusChange::Reset => {
                if self.active {
                    self.device.reset();
                    self.active = false;
                }
                self.interrupt = None;
                self.isr.store(0, Ordering::Release);
            }
            StatusChange::DriverOk => self.activate(),
        }
    }

    /// Builds the enabled queues from their registers, checked against
    /// guest memory, and hands them to the device. A queue outside guest
    /// RAM, or a device that cannot start, sets DEVICE_NEEDS_RESET.
    fn activate(&mut self) {
        let features = self.common.driver_features();
        let mut queues = Vec::new();
        let mut vectors = Vec::new();
        let mut bad = Vec::new();
        for (i, regs) in self.common.queues().iter().enumerate() {
            vectors.push(regs.vector);
            let Ok(mut q) = Queue::new(regs.max_size) else {
                bad.push(i);
                continue;
            };
            if regs.ready {
                let set = q
                    .try_set_size(regs.size)
                    .and_then(|_| q.try_set_desc_table_address(GuestAddress(regs.desc)))
                    .and_then(|_| q.try_set_avail_ring_address(GuestAddress(regs.avail)))
                    .and_then(|_| q.try_set_used_ring_address(GuestAddress(regs.used)));
                q.set_event_idx(features & VIRTIO_RING_F_EVENT_IDX != 0);
                q.set_ready(true);
                if set.is_err() || !q.is_valid(&self.mem) {
                    bad.push(i);
                }
            }
            queues.push(q);
        }
        let interrupt = Arc::new(Interrupt::new(
            self.isr.clone(),
            self.msix.clone(),
            self.common.config_vector(),
            vectors,
        ));
        let result = if bad.is_empty() {
            self.device.activate(Activation {
                mem: self.mem.clone(),
                queues,
                features,
                interrupt: interrupt.clone(),
            })
        } else {
            Err(format!(
                "queues {bad:?} are misaligned or outside guest RAM"
            ))
        };
        match result {
            Ok(()) => self.active = true,
            Err(e) => {
                log::warn!(
                    "virtio device type {}: cannot start: {e}; DEVICE_NEEDS_RESET",
                    self.device.device_type()
                );
                self.common
                    .set_status_bits(VIRTIO_CONFIG_S_NEEDS_RESET as u8);
                interrupt.signal_config();
            }
        }
        self.interrupt = Some(interrupt);
    }

    /// The device cannot go on with what the driver gave it: it drops the
    /// queues and asks for a reset (DEVICE_NEEDS_RESET, a configuration
    /// change interrupt), as Virtio 1.2 §2.1.2 lets a device do.
    fn fail(&mut self, why: &str) {
        log::warn!(
            "virtio device type {}: {why}; DEVICE_NEEDS_RESET",
            self.device.device_type()
        );
        self.device.reset();
        self.active = false;
        self.common
            .set_status_bits(VIRTIO_CONFIG_S_NEEDS_RESET as u8);
        if let Some(i) = &self.interrupt {
            i.signal_config();
        }
    }
}

/// BAR 0 on the MMIO bus.
struct VirtioBar {
    transport: Mutex<Transport>,
    /// Shared with the transport's interrupts; read without its lock.
    isr: Arc<AtomicU8>,
}

impl BusDevice for VirtioBar {
    fn read(&self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        let (page, at) = (offset & !(PAGE - 1), offset & (PAGE - 1));
        match page {
            COMMON_OFFSET => lock(&self.transport).common.read(at, data),
            ISR_OFFSET if at == 0 && !data.is_empty() => {
                // Reading ISR status acknowledges it (§4.1.4.5).
                data[0] = self.isr.swap(0, Ordering::AcqRel);
            }
            DEVICE_CFG_OFFSET => lock(&self.transport).device.read_config(at, data),
            _ => {}
        }
    }

    fn write(&self, offset: u64, data: &[u8]) {
        let (page, at) = (offset & !(PAGE - 1), offset & (PAGE - 1));
        let mut t = lock(&self.transport);
        match page {
            COMMON_OFFSET => t.write_common(at, data),
            DEVICE_CFG_OFFSET => t.device.write_config(at, data),
            NOTIFY_OFFSET if at % u64::from(NOTIFY_OFF_MULTIPLIER) == 0 => {
                let queue = at / u64::from(NOTIFY_OFF_MULTIPLIER);
                if t.active && (queue as usize) < t.common.queues().len() {
                    if let Err(e) = t.device.notify(queue as u16) {
                        t.fail(&e);
                    }
                }
            }
            _ => {}
        }
    }
}

/// A virtio_pci_cap (§4.1.4): where one structure lies in which BAR.
fn virtio_cap(cfg_type: u8, offset: u64, length: u64, extra: &[u8]) -> Vec<u8> {
    let mut b = vec![0u8; 16];
    b[2] = (16 + extra.len()) as u8;
    b[3] = cfg_type;
    b[4] = REGS_BAR as u8;
    b[8..12].copy_from_slice(&(offset as u32).to_le_bytes());
    b[12..16].copy_from_slice(&(length as u32).to_le_bytes());
    b.extend_from_slice(extra);
    b
}

/// A virtio device as a PCI function, ready to join the segment.
pub struct VirtioPci {
    pub function: PciFunction,
    pub msix: SharedMsix,
}

impl VirtioPci {
    /// MSI-X vectors the function of `device` has: one per queue and one
    /// for configuration changes (the `msi` sink given to [`VirtioPci::new`]
    /// must serve that many).
    pub fn msix_vectors(device: &dyn VirtioDevice) -> u16 {
        u16::try_from(device.queue_max_sizes().len() + 1).unwrap_or(u16::MAX)
    }

    /// Wraps `device` in a transport whose queues live in `mem`, with
    /// PCI class code `class` and MSI-X vectors delivered through `msi`.
    pub fn new(
        device: Box<dyn VirtioDevice>,
        mem: GuestRam,
        class: u32,
        msi: Arc<dyn MsiSink>,
    ) -> Self {
        let device_type = device.device_type();
        let pci_device = MODERN_DEVICE_BASE.wrapping_add(device_type as u16);
        let mut config = ConfigSpace::type0(VIRTIO_VENDOR, pci_device, class, 1);
        // Subsystem vendor and ID (reg 11): the virtio vendor and device type.
        config.set(11, u32::from(VIRTIO_VENDOR) | (device_type << 16));
        let caps = [
            virtio_cap(CFG_COMMON, COMMON_OFFSET, COMMON_CFG_SIZE, &[]),
            virtio_cap(CFG_ISR, ISR_OFFSET, 1, &[]),
            virtio_cap(CFG_DEVICE, DEVICE_CFG_OFFSET, PAGE, &[]),
            virtio_cap(
                CFG_NOTIFY,
                NOTIFY_OFFSET,
                PAGE,
                &NOTIFY_OFF_MULTIPLIER.to_le_bytes(),
            ),
        ];
        for cap in &caps {
            let _ = config.add_capability(CAP_ID_VENDOR, cap, &[]);
        }
        let queue_sizes = device.queue_max_sizes();
        let vectors = Self::msix_vectors(device.as_ref());
        let mut function = PciFunction::new(config);
        let msix = function.add_msix(vectors, MSIX_BAR, msi);
        let isr = Arc::new(AtomicU8::new(0));
        let transport = Transport {
            common: CommonConfig::new(device.features(), &queue_sizes, vectors),
            device,
            mem,
            msix: msix.clone(),
            isr: isr.clone(),
            active: false,
            interrupt: None,
        };
        function.add_bar(
            REGS_BAR,
            VIRTIO_BAR_SIZE,
            BarKind::Mem64 {
                prefetchable: false,
            },
            Arc::new(VirtioBar {
                transport: Mutex::new(transport),
                isr,
            }),
        );
        Self { function, msix }
    }
}

#[cfg(test)]
#[path = "pci_tests.rs"]
mod tests;
