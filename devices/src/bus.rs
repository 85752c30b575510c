//! The bus: address ranges mapped to devices.
//!
//! A device sees accesses as `(offset into its range, data)`; it never learns the
//! absolute address, so the same model can sit anywhere in the map.
//!
//! Every vCPU dispatches through the same bus at once, so the bus takes no
//! lock that one device's access could hold up another's: the range map is
//! behind a read-write lock that is held only to find the device (and taken
//! for writing only when a range is added, moved or removed, e.g. when the
//! guest programs a BAR), and each device brings whatever locking it needs
//! itself. Devices with state wrap it in a [`Mutex`] through
//! [`BusDeviceMut`], so each has a lock of its own.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};

/// A device on a port-I/O or MMIO bus, shared by every vCPU.
///
/// Reads fill `data` (whose length is the access width); writes carry the bytes
/// the guest wrote, little-endian. A device must answer any offset and width
/// within its range without panicking: unimplemented registers read as all ones
/// or zero (per the device's hardware) and ignore writes.
pub trait BusDevice: Send + Sync {
    fn read(&self, offset: u64, data: &mut [u8]);
    fn write(&self, offset: u64, data: &[u8]);
}

/// Device logic that needs exclusive access to its state. `Mutex<T>` is a
/// [`BusDevice`], so such a device gets a lock of its own on the bus.
pub trait BusDeviceMut: Send {
    fn read(&mut self, offset: u64, data: &mut [u8]);
    fn write(&mut self, offset: u64, data: &[u8]);
}

impl<T: BusDeviceMut + ?Sized> BusDevice for Mutex<T> {
    fn read(&self, offset: u64, data: &mut [u8]) {
        lock(self).read(offset, data)
    }

    fn write(&self, offset: u64, data: &[u8]) {
        lock(self).write(offset, data)
    }
}

/// Locks a device, recovering from a poisoned lock: a device that panicked on
/// another vCPU thread has already taken the VM down; do not cascade panics.
pub fn lock<T: ?Sized>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BusError {
    #[error("bus range [{base:#x}, +{len:#x}) overlaps an existing device")]
    Overlap { base: u64, len: u64 },
    #[error("bus range at {base:#x} has zero length or wraps around")]
    BadRange { base: u64 },
    #[error("no device at bus range [{base:#x}, +{len:#x})")]
    NotFound { base: u64, len: u64 },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Range {
    base: u64,
    len: u64,
}

/// Maps disjoint address ranges to devices; ranges may be added and removed
/// while other threads dispatch.
#[derive(Default)]
pub struct Bus {
    devices: RwLock<BTreeMap<Range, Arc<dyn BusDevice>>>,
}

impl Bus {
    pub fn new() -> Self {
        Self::default()
    }

    /// Places `device` at `[base, base + len)`.
    pub fn insert(&self, device: Arc<dyn BusDevice>, base: u64, len: u64) -> Result<(), BusError> {
        if len == 0 || base.checked_add(len).is_none() {
            return Err(BusError::BadRange { base });
        }
        let end = base + len;
        let mut devices = self.devices.write().unwrap_or_else(|e| e.into_inner());
        // Only the nearest range at or below `end` can overlap: ranges are
        // disjoint, so any lower one ends before it starts.
        let overlaps = devices
            .range(..Range { base: end, len: 0 })
            .next_back()
            .is_some_and(|(r, _)| r.base + r.len > base);
        if overlaps {
            return Err(BusError::Overlap { base, len });
        }
        devices.insert(Range { base, len }, device);
        Ok(())
    }

    /// Removes the device placed at exactly `[base, base + len)`.
    pub fn remove(&self, base: u64, len: u64) -> Result<Arc<dyn BusDevice>, BusError> {
        self.devices
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&Range { base, len })
            .ok_or(BusError::NotFound { base, len })
    }

    /// The device decoding `[addr, addr + width)` and the offset into it.
    /// The map's lock is released before the caller touches the device, so a
    /// device access may itself change the map (a config write moving a BAR).
    fn resolve(&self, addr: u64, width: usize) -> Option<(u64, Arc<dyn BusDevice>)> {
        let devices = self.devices.read().unwrap_or_else(|e| e.into_inner());
        let (range, dev) = devices
            .range(
                ..=Range {
                    base: addr,
                    len: u64::MAX,
                },
            )
            .next_back()?;
        let offset = addr - range.base;
        // The whole access must fall inside the device's range.
        if offset.checked_add(width as u64)? > range.len {
            return None;
        }
        Some((offset, dev.clone()))
    }

    /// Dispatches a read. Returns false when no device claims the address, in
    /// which case `data` is left for the caller to fill (open bus).
    pub fn read(&self, addr: u64, data: &mut [u8]) -> bool {
        match self.resolve(addr, data.len()) {
            Some((offset, dev)) => {
                dev.read(offset, data);
                true
            }
            None => false,
        }
    }

    /// Dispatches a write. Returns false when no device claims the address.
    pub fn write(&self, addr: u64, data: &[u8]) -> bool {
        match self.resolve(addr, data.len()) {
            Some((offset, dev)) => {
                dev.write(offset, data);
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Echo(u8);
    impl BusDeviceMut for Echo {
        fn read(&mut self, offset: u64, data: &mut [u8]) {
            data.fill(self.0.wrapping_add(offset as u8));
        }
        fn write(&mut self, _offset: u64, data: &[u8]) {
            self.0 = data[0];
        }
    }

    fn echo(v: u8) -> Arc<dyn BusDevice> {
        Arc::new(Mutex::new(Echo(v)))
    }

    #[test]
    fn dispatches_by_range_and_offset() {
        let bus = Bus::new();
        bus.insert(echo(10), 0x100, 8).unwrap();
        bus.insert(echo(50), 0x108, 8).unwrap();
        let mut b = [0u8; 1];
        assert!(bus.read(0x103, &mut b));
        assert_eq!(b[0], 13);
        assert!(bus.read(0x108, &mut b));
        assert_eq!(b[0], 50);
        assert!(bus.write(0x10a, &[7]));
        assert!(bus.read(0x109, &mut b));
        assert_eq!(b[0], 8);
    }

    #[test]
    fn rejects_overlap_and_straddling_access() {
        let bus = Bus::new();
        bus.insert(echo(0), 0x100, 8).unwrap();
        assert_eq!(
            bus.insert(echo(0), 0x104, 8),
            Err(BusError::Overlap {
                base: 0x104,
                len: 8
            })
        );
        // Overlapping from below, and enclosing.
        assert!(bus.insert(echo(0), 0xfc, 8).is_err());
        assert!(bus.insert(echo(0), 0x80, 0x100).is_err());
        assert!(bus.insert(echo(0), u64::MAX, 2).is_err());
        assert!(bus.insert(echo(0), 0x200, 0).is_err());
        // Touching on either side is fine.
        bus.insert(echo(0), 0xf8, 8).unwrap();
        bus.insert(echo(0), 0x108, 8).unwrap();
        let mut b = [0u8; 4];
        // Starts inside, ends past the device: nobody claims it.
        assert!(!bus.read(0x10e, &mut b));
        assert!(!bus.read(0xf7, &mut b[..1]));
        assert!(!bus.read(0x110, &mut b[..1]));
    }

    #[test]
    fn removed_ranges_stop_decoding_and_can_be_reused() {
        let bus = Bus::new();
        bus.insert(echo(1), 0x1000, 0x100).unwrap();
        assert_eq!(
            bus.remove(0x1000, 0x80).err(),
            Some(BusError::NotFound {
                base: 0x1000,
                len: 0x80
            }),
            "only an exact range is removed"
        );
        let mut b = [0u8; 1];
        assert!(bus.read(0x1010, &mut b));
        bus.remove(0x1000, 0x100).unwrap();
        assert!(!bus.read(0x1010, &mut b));
        bus.insert(echo(2), 0x1080, 0x100).unwrap();
        assert!(bus.read(0x1080, &mut b));
        assert_eq!(b[0], 2);
    }

    /// A device that moves itself on the bus when written, as a BAR does
    /// when its function's config space is written through ECAM.
    struct Mover {
        bus: std::sync::Weak<Bus>,
    }
    impl BusDevice for Mover {
        fn read(&self, _offset: u64, data: &mut [u8]) {
            data.fill(0x5a);
        }
        fn write(&self, _offset: u64, _data: &[u8]) {
            let bus = self.bus.upgrade().unwrap();
            let me = bus.remove(0x100, 0x10).unwrap();
            bus.insert(me, 0x200, 0x10).unwrap();
        }
    }

    #[test]
    fn a_device_may_change_the_map_from_inside_an_access() {
        let bus = Arc::new(Bus::new());
        bus.insert(
            Arc::new(Mover {
                bus: Arc::downgrade(&bus),
            }),
            0x100,
            0x10,
        )
        .unwrap();
        assert!(bus.write(0x104, &[1]));
        let mut b = [0u8; 1];
        assert!(!bus.read(0x104, &mut b));
        assert!(bus.read(0x204, &mut b));
        assert_eq!(b[0], 0x5a);
    }
}
