//! Memory BARs on the MMIO bus.
//!
//! A function's BARs are not looked up on each access: when the guest (or
//! firmware) programs a BAR and turns memory decode on, the configuration
//! write reports the change ([`BarChanges`]) and [`BarMap`] registers the
//! BAR's own device (register block, MSI-X table) on the MMIO bus at that
//! address; moving the BAR or turning decode off removes it again. An MMIO
//! access then goes straight to the device, as crosvm's `PciDevice` BAR
//! handling does.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use super::root::Bdf;
use crate::bus::lock;
use crate::{Bus, BusDevice};

/// A memory BAR the guest has placed and enabled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BarRange {
    pub index: u8,
    pub base: u64,
    pub size: u64,
}

/// A decoding BAR and the device that serves it.
#[derive(Clone)]
pub struct BarMapping {
    pub range: BarRange,
    pub device: Arc<dyn BusDevice>,
}

/// How a configuration write changed the memory BARs a function decodes:
/// BARs that stopped decoding (or moved away), and BARs that started (or
/// moved here). Whoever owns the MMIO bus applies it.
#[derive(Default)]
#[must_use = "the MMIO bus follows a function's BARs only if their changes are applied"]
pub struct BarChanges {
    pub removed: Vec<BarRange>,
    pub added: Vec<BarMapping>,
}

impl BarChanges {
    pub fn is_empty(&self) -> bool {
        self.removed.is_empty() && self.added.is_empty()
    }
}

struct Entry {
    range: BarRange,
    device: Arc<dyn BusDevice>,
    /// False while the BAR lies outside every aperture or over another
    /// device: it decodes nothing until it moves, or the other one does.
    on_bus: bool,
}

/// Keeps the MMIO bus in step with the BARs of every function of a segment.
///
/// A BAR decodes only inside an aperture (the host bridges' memory windows;
/// addresses there that no BAR claims read as all ones). Two BARs placed
/// over each other, or over another device, are the guest's mistake
/// (PCI Local Bus 3.0 §6.2.5.1 leaves it undefined): the BAR placed first
/// keeps the range and the other decodes nothing until one of them moves.
pub struct BarMap {
    mmio: Arc<Bus>,
    apertures: Vec<(u64, u64)>,
    /// Every decoding BAR by (function, BAR index). Taken only when a
    /// configuration write changes BARs, never on an MMIO access.
    entries: Mutex<BTreeMap<(Bdf, u8), Entry>>,
}

impl BarMap {
    /// BARs of this segment go on `mmio`, inside `apertures` as (base, size).
    pub fn new(mmio: Arc<Bus>, apertures: Vec<(u64, u64)>) -> Self {
        Self {
            mmio,
            apertures,
            entries: Mutex::new(BTreeMap::new()),
        }
    }

    /// Applies the changes of one function's configuration write.
    pub fn apply(&self, bdf: Bdf, changes: BarChanges) {
        let mut entries = lock(&self.entries);
        let mut freed = false;
        for r in changes.removed {
            if let Some(e) = entries.remove(&(bdf, r.index)) {
                if e.on_bus {
                    freed |= self.mmio.remove(e.range.base, e.range.size).is_ok();
                }
            }
        }
        for m in changes.added {
            let mut e = Entry {
                range: m.range,
                device: m.device,
                on_bus: false,
            };
            e.on_bus = self.place(&e);
            if !e.on_bus {
                log::debug!(
                    "PCI {bdf:?} BAR {} at [{:#x}, +{:#x}) decodes nothing: outside the \
                     PCI windows or over another device",
                    e.range.index,
                    e.range.base,
                    e.range.size
                );
            }
            if let Some(old) = entries.insert((bdf, m.range.index), e) {
                // A function reports a BAR's removal before its new place;
                // one reported twice must not stay on the bus twice.
                if old.on_bus {
                    freed |= self.mmio.remove(old.range.base, old.range.size).is_ok();
                }
            }
        }
        if freed {
            // A range came free: BARs that were refused may fit now.
            for e in entries.values_mut().filter(|e| !e.on_bus) {
                e.on_bus = self.place(e);
            }
        }
    }

    fn place(&self, e: &Entry) -> bool {
        let BarRange { base, size, .. } = e.range;
        let inside = self
            .apertures
            .iter()
            .any(|&(a, len)| base >= a && base.checked_add(size).is_some_and(|end| end <= a + len));
        inside && self.mmio.insert(e.device.clone(), base, size).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fill(u8);
    impl BusDevice for Fill {
        fn read(&self, _offset: u64, data: &mut [u8]) {
            data.fill(self.0);
        }
        fn write(&self, _offset: u64, _data: &[u8]) {}
    }

    fn bar(index: u8, base: u64, fill: u8) -> BarMapping {
        BarMapping {
            range: BarRange {
                index,
                base,
                size: 0x1000,
            },
            device: Arc::new(Fill(fill)),
        }
    }

    fn read(bus: &Bus, addr: u64) -> Option<u8> {
        let mut b = [0u8];
        bus.read(addr, &mut b).then_some(b[0])
    }

    #[test]
    fn bars_follow_moves_and_stay_inside_the_apertures() {
        let bus = Arc::new(Bus::new());
        let map = BarMap::new(bus.clone(), vec![(0x10_0000, 0x10_0000)]);
        let f = Bdf::new(1, 0, 0);
        map.apply(
            f,
            BarChanges {
                removed: vec![],
                added: vec![bar(0, 0x10_0000, 0xa0), bar(2, 0x30_0000, 0xa2)],
            },
        );
        assert_eq!(read(&bus, 0x10_0004), Some(0xa0));
        assert_eq!(read(&bus, 0x30_0004), None, "outside the aperture");
        // BAR 0 moves.
        let moved = bar(0, 0x18_0000, 0xa0);
        map.apply(
            f,
            BarChanges {
                removed: vec![BarRange {
                    index: 0,
                    base: 0x10_0000,
                    size: 0x1000,
                }],
                added: vec![moved],
            },
        );
        assert_eq!(read(&bus, 0x10_0004), None);
        assert_eq!(read(&bus, 0x18_0004), Some(0xa0));
        // Removing BAR 2, which never reached the bus, leaves BAR 0 alone.
        map.apply(
            f,
            BarChanges {
                removed: vec![BarRange {
                    index: 2,
                    base: 0x30_0000,
                    size: 0x1000,
                }],
                added: vec![],
            },
        );
        assert_eq!(read(&bus, 0x18_0004), Some(0xa0));
    }

    #[test]
    fn an_overlapping_bar_decodes_once_the_range_comes_free() {
        let bus = Arc::new(Bus::new());
        let map = BarMap::new(bus.clone(), vec![(0, 1 << 32)]);
        let (a, b) = (Bdf::new(1, 0, 0), Bdf::new(2, 0, 0));
        let add = |f, m| {
            map.apply(
                f,
                BarChanges {
                    removed: vec![],
                    added: vec![m],
                },
            )
        };
        add(a, bar(0, 0x8000, 1));
        add(b, bar(0, 0x8000, 2));
        assert_eq!(read(&bus, 0x8000), Some(1), "the first placed keeps it");
        map.apply(
            a,
            BarChanges {
                removed: vec![BarRange {
                    index: 0,
                    base: 0x8000,
                    size: 0x1000,
                }],
                added: vec![],
            },
        );
        assert_eq!(read(&bus, 0x8000), Some(2));
    }
}
