//! The common configuration structure of virtio-pci (Virtio 1.2 §4.1.4.3):
//! feature negotiation, device status, and each queue's registers.
//!
//! Accesses must cover a whole field (or one 32-bit half of a 64-bit field,
//! as Linux's `vp_iowrite64_twopart` writes them); other writes are ignored
//! and other reads see the bytes of whichever fields they overlap.

use super::NO_VECTOR;
use virtio_bindings::virtio_config::{
    VIRTIO_CONFIG_S_DRIVER_OK, VIRTIO_CONFIG_S_FEATURES_OK, VIRTIO_F_VERSION_1,
};

/// Size of the structure (up to `queue_reset`).
pub const COMMON_CFG_SIZE: u64 = 0x3c;

const DEVICE_FEATURE_SELECT: u64 = 0x00;
const DEVICE_FEATURE: u64 = 0x04;
const DRIVER_FEATURE_SELECT: u64 = 0x08;
const DRIVER_FEATURE: u64 = 0x0c;
const CONFIG_MSIX_VECTOR: u64 = 0x10;
const NUM_QUEUES: u64 = 0x12;
const DEVICE_STATUS: u64 = 0x14;
const CONFIG_GENERATION: u64 = 0x15;
const QUEUE_SELECT: u64 = 0x16;
const QUEUE_SIZE: u64 = 0x18;
const QUEUE_MSIX_VECTOR: u64 = 0x1a;
const QUEUE_ENABLE: u64 = 0x1c;
const QUEUE_NOTIFY_OFF: u64 = 0x1e;
const QUEUE_DESC: u64 = 0x20;
const QUEUE_DRIVER: u64 = 0x28;
const QUEUE_DEVICE: u64 = 0x30;
/// queue_notif_config_data and queue_reset: features not offered, read 0.
const QUEUE_NOTIF_CONFIG_DATA: u64 = 0x38;
const QUEUE_RESET: u64 = 0x3a;

/// (offset, size) of every field, in order.
const FIELDS: [(u64, u64); 18] = [
    (DEVICE_FEATURE_SELECT, 4),
    (DEVICE_FEATURE, 4),
    (DRIVER_FEATURE_SELECT, 4),
    (DRIVER_FEATURE, 4),
    (CONFIG_MSIX_VECTOR, 2),
    (NUM_QUEUES, 2),
    (DEVICE_STATUS, 1),
    (CONFIG_GENERATION, 1),
    (QUEUE_SELECT, 2),
    (QUEUE_SIZE, 2),
    (QUEUE_MSIX_VECTOR, 2),
    (QUEUE_ENABLE, 2),
    (QUEUE_NOTIFY_OFF, 2),
    (QUEUE_DESC, 8),
    (QUEUE_DRIVER, 8),
    (QUEUE_DEVICE, 8),
    (QUEUE_NOTIF_CONFIG_DATA, 2),
    (QUEUE_RESET, 2),
];

/// One queue's registers as the driver programs them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueRegs {
    pub max_size: u16,
    pub size: u16,
    pub ready: bool,
    pub vector: u16,
    pub desc: u64,
    pub avail: u64,
    pub used: u64,
}

impl QueueRegs {
    fn new(max_size: u16) -> Self {
        Self {
            max_size,
            size: max_size,
            ready: false,
            vector: NO_VECTOR,
            desc: 0,
            avail: 0,
            used: 0,
        }
    }
}

/// What a write to the structure asks of the transport.
#[derive(Debug, PartialEq, Eq)]
pub enum StatusChange {
    None,
    /// Status 0 was written: reset the device.
    Reset,
    /// DRIVER_OK was set (with FEATURES_OK): activate the device.
    DriverOk,
}

pub struct CommonConfig {
    device_features: u64,
    device_feature_select: u32,
    driver_feature_select: u32,
    driver_features: u64,
    status: u8,
    config_generation: u8,
    config_vector: u16,
    queue_select: u16,
    queues: Vec<QueueRegs>,
    /// Entries in the function's MSI-X table: vectors at or above are refused.
    msix_vectors: u16,
}

impl CommonConfig {
    pub fn new(device_features: u64, queue_max_sizes: &[u16], msix_vectors: u16) -> Self {
        Self {
            device_features,
            device_feature_select: 0,
            driver_feature_select: 0,
            driver_features: 0,
            status: 0,
            config_generation: 0,
            config_vector: NO_VECTOR,
            queue_select: 0,
            queues: queue_max_sizes.iter().map(|&m| QueueRegs::new(m)).collect(),
            msix_vectors,
        }
    }

    /// Back to the state after power-on (status 0 written).
    pub fn reset(&mut self) {
        let sizes: Vec<u16> = self.queues.iter().map(|q| q.max_size).collect();
        *self = Self::new(self.device_features, &sizes, self.msix_vectors);
    }

    /// Sets DEVICE_NEEDS_RESET (or any status bit) on the device's side.
    pub fn set_status_bits(&mut self, bits: u8) {
        self.status |= bits;
    }

    pub fn driver_features(&self) -> u64 {
        self.driver_features
    }

    pub fn config_vector(&self) -> u16 {
        self.config_vector
    }

    pub fn queues(&self) -> &[QueueRegs] {
        &self.queues
    }

    fn selected(&self) -> Option<&QueueRegs> {
        self.queues.get(usize::from(self.queue_select))
    }

    fn value(&self, field: u64) -> u64 {
        let q = self.selected();
        let qv = |f: fn(&QueueRegs) -> u64| q.map(f).unwrap_or(0);
        match field {
            DEVICE_FEATURE_SELECT => u64::from(self.device_feature_select),
            DEVICE_FEATURE => match self.device_feature_select {
                0 => self.device_features & 0xffff_ffff,
                1 => self.device_features >> 32,
                _ => 0,
            },
            DRIVER_FEATURE_SELECT => u64::from(self.driver_feature_select),
            DRIVER_FEATURE => match self.driver_feature_select {
                0 => self.driver_features & 0xffff_ffff,
                1 => self.driver_features >> 32,
                _ => 0,
            },
            CONFIG_MSIX_VECTOR => u64::from(self.config_vector),
            NUM_QUEUES => self.queues.len() as u64,
            DEVICE_STATUS => u64::from(self.status),
            CONFIG_GENERATION => u64::from(self.config_generation),
            QUEUE_SELECT => u64::from(self.queue_select),
            // A queue that does not exist reads as size 0 (§4.1.4.3.2).
            QUEUE_SIZE => qv(|q| u64::from(q.size)),
            QUEUE_MSIX_VECTOR => q.map_or(u64::from(NO_VECTOR), |q| u64::from(q.vector)),
            QUEUE_ENABLE => qv(|q| u64::from(q.ready)),
            // Each queue notifies at its own index (see the notify capability).
            QUEUE_NOTIFY_OFF => q.map_or(0, |_| u64::from(self.queue_select)),
            QUEUE_DESC => qv(|q| q.desc),
            QUEUE_DRIVER => qv(|q| q.avail),
            QUEUE_DEVICE => qv(|q| q.used),
            _ => 0,
        }
    }

    pub fn read(&self, offset: u64, data: &mut [u8]) {
        for (i, b) in data.iter_mut().enumerate() {
            let at = offset.saturating_add(i as u64);
            *b = match FIELDS.iter().find(|&&(o, s)| at >= o && at < o + s) {
                Some(&(o, _)) => (self.value(o) >> (8 * (at - o))) as u8,
                None => 0,
            };
        }
    }

    /// Applies a driver write; says whether the device must be reset or
    /// activated.
    pub fn write(&mut self, offset: u64, data: &[u8]) -> StatusChange {
        let Some(&(field, size)) = FIELDS.iter().find(|&&(o, s)| o <= offset && offset < o + s)
        else {
            return StatusChange::None;
        };
        let len = data.len() as u64;
        let whole = offset == field && len == size;
        let half = size == 8 && len == 4 && (offset - field).is_multiple_of(4);
        if !(whole || half) || offset - field + len > size {
            return StatusChange::None;
        }
        let mut v = 0u64;
        for (i, b) in data.iter().enumerate() {
            v |= u64::from(*b) << (8 * i);
        }
        match field {
            DEVICE_FEATURE_SELECT => self.device_feature_select = v as u32,
            DRIVER_FEATURE_SELECT => self.driver_feature_select = v as u32,
            DRIVER_FEATURE => self.write_driver_features(v),
            CONFIG_MSIX_VECTOR => self.config_vector = self.checked_vector(v as u16),
            DEVICE_STATUS => return self.write_status(v as u8),
            QUEUE_SELECT => self.queue_select = v as u16,
            QUEUE_DESC | QUEUE_DRIVER | QUEUE_DEVICE => {
                let shift = 8 * (offset - field);
                let mask = 0xffff_ffff_ffff_ffffu64 >> (64 - 8 * len) << shift;
                self.with_queue(|q| {
                    let r = match field {
                        QUEUE_DESC => &mut q.desc,
                        QUEUE_DRIVER => &mut q.avail,
                        _ => &mut q.used,
                    };
                    *r = (*r & !mask) | ((v << shift) & mask);
                });
            }
            QUEUE_SIZE => {
                let size = v as u16;
                self.with_queue(|q| {
                    if size.is_power_of_two() && size <= q.max_size {
                        q.size = size;
                    }
                });
            }
            QUEUE_MSIX_VECTOR => {
                let vector = self.checked_vector(v as u16);
                self.with_queue(|q| q.vector = vector);
            }
            // Only 1 may be written (§4.1.4.3.2); 0 is ignored.
            QUEUE_ENABLE if v == 1 => self.with_queue(|q| q.ready = true),
            _ => {}
        }
        StatusChange::None
    }

    /// Applies `f` to the selected queue while the driver may still
    /// configure it: before it is enabled and before DRIVER_OK.
    fn with_queue(&mut self, f: impl FnOnce(&mut QueueRegs)) {
        let live = self.status & VIRTIO_CONFIG_S_DRIVER_OK as u8 != 0;
        if let Some(q) = self.queues.get_mut(usize::from(self.queue_select)) {
            if !q.ready && !live {
                f(q);
            }
        }
    }

    /// A vector the function does not have reads back as NO_VECTOR, which
    /// is how the driver learns the mapping failed (§4.1.5.1.2).
    fn checked_vector(&self, v: u16) -> u16 {
        if v < self.msix_vectors {
            v
        } else {
            NO_VECTOR
        }
    }

    fn write_driver_features(&mut self, v: u64) {
        // No new features once FEATURES_OK is set (§3.1.1).
        if self.status & VIRTIO_CONFIG_S_FEATURES_OK as u8 != 0 {
            return;
        }
        match self.driver_feature_select {
            0 => self.driver_features = (self.driver_features & !0xffff_ffff) | (v & 0xffff_ffff),
            1 => self.driver_features = (self.driver_features & 0xffff_ffff) | (v << 32),
            _ => {}
        }
    }

    fn write_status(&mut self, v: u8) -> StatusChange {
        if v == 0 {
            self.reset();
            return StatusChange::Reset;
        }
        let old = self.status;
        // The driver only ever adds bits short of a reset.
        let mut new = old | v;
        let features_ok = VIRTIO_CONFIG_S_FEATURES_OK as u8;
        if new & features_ok != 0 && old & features_ok == 0 {
            // Accept only features offered, and only a modern driver:
            // FEATURES_OK then does not read back (§3.1.1 step 6).
            let version_1 = 1u64 << VIRTIO_F_VERSION_1;
            let offered = self.driver_features & !self.device_features == 0;
            if !offered || self.driver_features & version_1 == 0 {
                new &= !features_ok;
            }
        }
        let driver_ok = VIRTIO_CONFIG_S_DRIVER_OK as u8;
        if new & driver_ok != 0 && new & features_ok == 0 {
            new &= !driver_ok;
        }
        self.status = new;
        if new & driver_ok != 0 && old & driver_ok == 0 {
            StatusChange::DriverOk
        } else {
            StatusChange::None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rd(c: &CommonConfig, off: u64, len: usize) -> u64 {
        let mut b = [0u8; 8];
        c.read(off, &mut b[..len]);
        u64::from_le_bytes(b)
    }

    fn wr(c: &mut CommonConfig, off: u64, len: usize, v: u64) -> StatusChange {
        c.write(off, &v.to_le_bytes()[..len])
    }

    const FEATURES: u64 = (1 << 32) | (1 << 9) | (1 << 29);

    #[test]
    fn features_are_negotiated_as_linux_does() {
        let mut c = CommonConfig::new(FEATURES, &[256], 2);
        assert_eq!(rd(&c, NUM_QUEUES, 2), 1);
        wr(&mut c, DEVICE_FEATURE_SELECT, 4, 1);
        assert_eq!(rd(&c, DEVICE_FEATURE, 4), 1, "VERSION_1 in the high half");
        wr(&mut c, DEVICE_FEATURE_SELECT, 4, 0);
        assert_eq!(rd(&c, DEVICE_FEATURE, 4), (1 << 9) | (1 << 29));
        wr(&mut c, DEVICE_STATUS, 1, 1 | 2);
        wr(&mut c, DRIVER_FEATURE_SELECT, 4, 0);
        wr(&mut c, DRIVER_FEATURE, 4, 1 << 9);
        wr(&mut c, DRIVER_FEATURE_SELECT, 4, 1);
        wr(&mut c, DRIVER_FEATURE, 4, 1);
        assert_eq!(wr(&mut c, DEVICE_STATUS, 1, 1 | 2 | 8), StatusChange::None);
        assert_eq!(rd(&c, DEVICE_STATUS, 1), 0xb, "FEATURES_OK reads back");
        assert_eq!(c.driver_features(), (1 << 32) | (1 << 9));
        // Too late to change features.
        wr(&mut c, DRIVER_FEATURE_SELECT, 4, 0);
        wr(&mut c, DRIVER_FEATURE, 4, 0);
        assert_eq!(c.driver_features(), (1 << 32) | (1 << 9));
        assert_eq!(wr(&mut c, DEVICE_STATUS, 1, 0xf), StatusChange::DriverOk);
        assert_eq!(wr(&mut c, DEVICE_STATUS, 1, 0xf), StatusChange::None);
        assert_eq!(wr(&mut c, DEVICE_STATUS, 1, 0), StatusChange::Reset);
        assert_eq!(rd(&c, DEVICE_STATUS, 1), 0);
        assert_eq!(c.driver_features(), 0);
    }

    #[test]
    fn features_not_offered_or_a_legacy_driver_leave_features_ok_clear() {
        let mut c = CommonConfig::new(FEATURES, &[256], 2);
        wr(&mut c, DRIVER_FEATURE, 4, 1 << 9); // no VERSION_1
        wr(&mut c, DEVICE_STATUS, 1, 0xb);
        assert_eq!(rd(&c, DEVICE_STATUS, 1), 0x3);
        assert_eq!(wr(&mut c, DEVICE_STATUS, 1, 0xf), StatusChange::None);
        assert_eq!(
            rd(&c, DEVICE_STATUS, 1),
            0x3,
            "no DRIVER_OK without FEATURES_OK"
        );
        wr(&mut c, DEVICE_STATUS, 1, 0);
        wr(&mut c, DRIVER_FEATURE, 4, 1 << 5); // not offered
        wr(&mut c, DRIVER_FEATURE_SELECT, 4, 1);
        wr(&mut c, DRIVER_FEATURE, 4, 1);
        wr(&mut c, DEVICE_STATUS, 1, 0xb);
        assert_eq!(rd(&c, DEVICE_STATUS, 1), 0x3);
    }

    #[test]
    fn queue_registers_checked_and_frozen_once_enabled() {
        let mut c = CommonConfig::new(FEATURES, &[256, 128], 3);
        wr(&mut c, QUEUE_SELECT, 2, 1);
        assert_eq!(rd(&c, QUEUE_SIZE, 2), 128);
        assert_eq!(rd(&c, QUEUE_NOTIFY_OFF, 2), 1);
        wr(&mut c, QUEUE_SIZE, 2, 100); // not a power of two
        assert_eq!(rd(&c, QUEUE_SIZE, 2), 128);
        wr(&mut c, QUEUE_SIZE, 2, 512); // above the maximum
        assert_eq!(rd(&c, QUEUE_SIZE, 2), 128);
        wr(&mut c, QUEUE_SIZE, 2, 64);
        wr(&mut c, QUEUE_DESC, 4, 0x1000);
        wr(&mut c, QUEUE_DESC + 4, 4, 0x2);
        wr(&mut c, QUEUE_DRIVER, 8, 0x3000);
        wr(&mut c, QUEUE_DEVICE + 1, 2, 0xffff); // not a field: ignored
        wr(&mut c, QUEUE_MSIX_VECTOR, 2, 2);
        assert_eq!(rd(&c, QUEUE_MSIX_VECTOR, 2), 2);
        wr(&mut c, QUEUE_MSIX_VECTOR, 2, 3); // the table has 3 entries
        assert_eq!(rd(&c, QUEUE_MSIX_VECTOR, 2), u64::from(NO_VECTOR));
        wr(&mut c, CONFIG_MSIX_VECTOR, 2, 0);
        assert_eq!(c.config_vector(), 0);
        wr(&mut c, QUEUE_ENABLE, 2, 0);
        assert_eq!(rd(&c, QUEUE_ENABLE, 2), 0);
        wr(&mut c, QUEUE_ENABLE, 2, 1);
        wr(&mut c, QUEUE_SIZE, 2, 32); // enabled: frozen
        let q = c.queues()[1];
        assert_eq!(
            (q.size, q.ready, q.desc, q.avail, q.used),
            (64, true, 0x2_0000_1000, 0x3000, 0)
        );
        assert_eq!(rd(&c, QUEUE_DESC + 4, 4), 2, "high half reads alone");
        // A queue that does not exist.
        wr(&mut c, QUEUE_SELECT, 2, 7);
        assert_eq!(rd(&c, QUEUE_SIZE, 2), 0);
        wr(&mut c, QUEUE_ENABLE, 2, 1);
        assert_eq!(rd(&c, QUEUE_MSIX_VECTOR, 2), u64::from(NO_VECTOR));
        // Odd widths and offsets past the end neither panic nor change state.
        let mut big = [0u8; 64];
        c.read(0x30, &mut big);
        assert!(c.write(0x3b, &[1, 2, 3]) == StatusChange::None);
        assert!(c.write(u64::MAX, &[1]) == StatusChange::None);
        c.read(u64::MAX - 1, &mut big[..4]);
    }
}
