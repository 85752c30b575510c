//! The bus: address ranges mapped to devices.
//!
//! A device sees accesses as `(offset into its range, data)`; it never learns the
//! absolute address, so the same model can sit anywhere in the map.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// A device on a port-I/O or MMIO bus.
///
/// Reads fill `data` (whose length is the access width); writes carry the bytes
/// the guest wrote, little-endian. A device must answer any offset and width
/// within its range without panicking: unimplemented registers read as all ones
/// or zero (per the device's hardware) and ignore writes.
pub trait BusDevice: Send {
    fn read(&mut self, offset: u64, data: &mut [u8]);
    fn write(&mut self, offset: u64, data: &[u8]);
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BusError {
    #[error("bus range [{base:#x}, +{len:#x}) overlaps an existing device")]
    Overlap { base: u64, len: u64 },
    #[error("bus range at {base:#x} has zero length or wraps around")]
    BadRange { base: u64 },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Range {
    base: u64,
    len: u64,
}

/// Maps disjoint address ranges to devices.
#[derive(Default, Clone)]
pub struct Bus {
    devices: BTreeMap<Range, Arc<Mutex<dyn BusDevice>>>,
}

impl Bus {
    pub fn new() -> Self {
        Self::default()
    }

    /// Places `device` at `[base, base + len)`.
    pub fn insert(
        &mut self,
        device: Arc<Mutex<dyn BusDevice>>,
        base: u64,
        len: u64,
    ) -> Result<(), BusError> {
        if len == 0 || base.checked_add(len).is_none() {
            return Err(BusError::BadRange { base });
        }
        let end = base + len;
        let overlaps = self
            .devices
            .keys()
            .any(|r| base < r.base + r.len && r.base < end);
        if overlaps {
            return Err(BusError::Overlap { base, len });
        }
        self.devices.insert(Range { base, len }, device);
        Ok(())
    }

    fn resolve(&self, addr: u64, width: usize) -> Option<(u64, &Arc<Mutex<dyn BusDevice>>)> {
        let (range, dev) = self
            .devices
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
        Some((offset, dev))
    }

    /// Dispatches a read. Returns false when no device claims the address, in
    /// which case `data` is left for the caller to fill (open bus).
    pub fn read(&self, addr: u64, data: &mut [u8]) -> bool {
        match self.resolve(addr, data.len()) {
            Some((offset, dev)) => {
                lock(dev).read(offset, data);
                true
            }
            None => false,
        }
    }

    /// Dispatches a write. Returns false when no device claims the address.
    pub fn write(&self, addr: u64, data: &[u8]) -> bool {
        match self.resolve(addr, data.len()) {
            Some((offset, dev)) => {
                lock(dev).write(offset, data);
                true
            }
            None => false,
        }
    }
}

/// Locks a device, recovering from a poisoned lock: a device that panicked on
/// another vCPU thread has already taken the VM down; do not cascade panics.
fn lock(dev: &Arc<Mutex<dyn BusDevice>>) -> std::sync::MutexGuard<'_, dyn BusDevice + 'static> {
    dev.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Echo(u8);
    impl BusDevice for Echo {
        fn read(&mut self, offset: u64, data: &mut [u8]) {
            data.fill(self.0.wrapping_add(offset as u8));
        }
        fn write(&mut self, _offset: u64, data: &[u8]) {
            self.0 = data[0];
        }
    }

    #[test]
    fn dispatches_by_range_and_offset() {
        let mut bus = Bus::new();
        bus.insert(Arc::new(Mutex::new(Echo(10))), 0x100, 8)
            .unwrap();
        bus.insert(Arc::new(Mutex::new(Echo(50))), 0x108, 8)
            .unwrap();
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
        let mut bus = Bus::new();
        bus.insert(Arc::new(Mutex::new(Echo(0))), 0x100, 8).unwrap();
        assert_eq!(
            bus.insert(Arc::new(Mutex::new(Echo(0))), 0x104, 8),
            Err(BusError::Overlap {
                base: 0x104,
                len: 8
            })
        );
        assert!(bus
            .insert(Arc::new(Mutex::new(Echo(0))), u64::MAX, 2)
            .is_err());
        let mut b = [0u8; 4];
        // Starts inside, ends past the device: nobody claims it.
        assert!(!bus.read(0x106, &mut b));
        assert!(!bus.read(0xff, &mut b[..1]));
        assert!(!bus.read(0x108, &mut b[..1]));
    }
}
