//! The one check every guest-memory slot passes before KVM hears of it.
//!
//! A KVM memory slot makes host memory directly readable and writable by
//! the guest, so the range it covers is decided by the VMM alone: a slot
//! the guest's registers asked for (a committed HDM decoder, a BAR over
//! device memory such as accelerator VRAM) must lie inside an area meant
//! for it and meet nothing else — no RAM, no firmware tables, no device
//! registers, no other slot. KVM's own EEXIST catches only slot-on-slot
//! overlaps, and only after the fact; this catches all of them first.
//!
//! A slot layer asks [`SlotGuard::claim`] for the range and gets a
//! [`SlotClaim`] that it must hold as long as the slot exists; only the
//! claim's addresses go to KVM. Dropping the claim frees the range. A
//! refusal is logged once per owner and range (the guest may ask again on
//! every decoder change) under the `vmm::guest_map` target.
//!
//! How to guard a new kind of slot (e.g. accelerator VRAM behind a BAR):
//! claim with [`Placement::PciWindow`] when the guest programs the BAR,
//! keep the claim in the mapping record, drop it after the slot is deleted.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::{MapItem, MapKind};

const LOG_TARGET: &str = "vmm::guest_map";
/// KVM maps whole pages.
const PAGE: u64 = 4096;

/// Where a kind of slot may go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// Inside one CXL fixed memory window (regions of committed decoders).
    CxlWindow,
    /// Inside one PCI memory window (device memory behind a BAR).
    PciWindow,
}

impl Placement {
    fn kind(self) -> MapKind {
        match self {
            Placement::CxlWindow => MapKind::CxlWindow,
            Placement::PciWindow => MapKind::PciWindow,
        }
    }
}

/// Why a slot was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("[{start:#x}, +{size:#x}) is empty, wraps or is not page-aligned")]
    Malformed { start: u64, size: u64 },
    #[error("[{start:#x}, {end:#x}) is not inside any {placement:?} area")]
    Outside {
        start: u64,
        end: u64,
        placement: Placement,
    },
    #[error("[{start:#x}, {end:#x}) overlaps {other} [{other_start:#x}, {other_end:#x})")]
    Overlaps {
        start: u64,
        end: u64,
        other: String,
        other_start: u64,
        other_end: u64,
    },
}

struct Live {
    owner: String,
    start: u64,
    end: u64,
}

/// The guest's fixed map and the slots claimed in it.
pub struct SlotGuard {
    map: Vec<MapItem>,
    /// Live claims by id.
    live: Mutex<BTreeMap<u64, Live>>,
    next_id: AtomicU64,
    /// (owner, start, size) already logged as refused.
    logged: Mutex<HashSet<(String, u64, u64)>>,
}

/// A range a slot may cover, held for the slot's life.
pub struct SlotClaim {
    guard: Arc<SlotGuard>,
    id: u64,
    start: u64,
    size: u64,
}

impl SlotClaim {
    /// First guest-physical address of the slot.
    pub fn start(&self) -> u64 {
        self.start
    }

    /// Length of the slot in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }
}

impl fmt::Debug for SlotClaim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SlotClaim[{:#x}, +{:#x})", self.start, self.size)
    }
}

impl Drop for SlotClaim {
    fn drop(&mut self) {
        lock(&self.guard.live).remove(&self.id);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl SlotGuard {
    /// A guard over `map`, the whole fixed guest map (`guest_map`'s list).
    pub fn new(map: Vec<MapItem>) -> Arc<Self> {
        Arc::new(Self {
            map,
            live: Mutex::default(),
            next_id: AtomicU64::new(1),
            logged: Mutex::default(),
        })
    }

    /// Claims `[start, +size)` for `owner` (named in refusals), or says why
    /// not (and logs it, the first time).
    pub fn claim(
        self: &Arc<Self>,
        owner: &str,
        start: u64,
        size: u64,
        placement: Placement,
    ) -> Result<SlotClaim, Refusal> {
        let mut live = lock(&self.live);
        match self.check(&live, start, size, placement) {
            Ok(end) => {
                let id = self.next_id.fetch_add(1, Ordering::Relaxed);
                live.insert(
                    id,
                    Live {
                        owner: owner.to_string(),
                        start,
                        end,
                    },
                );
                Ok(SlotClaim {
                    guard: self.clone(),
                    id,
                    start,
                    size,
                })
            }
            Err(refusal) => {
                drop(live);
                if lock(&self.logged).insert((owner.to_string(), start, size)) {
                    log::warn!(
                        target: LOG_TARGET,
                        "refused a memory slot for {owner}: {refusal}"
                    );
                }
                Err(refusal)
            }
        }
    }

    /// The live claims, as (owner, start, end), lowest first.
    pub fn claims(&self) -> Vec<(String, u64, u64)> {
        let mut v: Vec<_> = lock(&self.live)
            .values()
            .map(|l| (l.owner.clone(), l.start, l.end))
            .collect();
        v.sort_by_key(|c| c.1);
        v
    }

    fn check(
        &self,
        live: &BTreeMap<u64, Live>,
        start: u64,
        size: u64,
        placement: Placement,
    ) -> Result<u64, Refusal> {
        let end = start
            .checked_add(size)
            .filter(|_| size > 0 && start.is_multiple_of(PAGE) && size.is_multiple_of(PAGE))
            .ok_or(Refusal::Malformed { start, size })?;
        let container = self
            .map
            .iter()
            .position(|i| i.kind == placement.kind() && i.start <= start && end <= i.end())
            .ok_or(Refusal::Outside {
                start,
                end,
                placement,
            })?;
        let overlaps = |other: String, other_start: u64, other_end: u64| Refusal::Overlaps {
            start,
            end,
            other,
            other_start,
            other_end,
        };
        // The map is checked disjoint, so only a broken map could make
        // another item meet the container's range; checked all the same.
        if let Some(i) = self
            .map
            .iter()
            .enumerate()
            .find(|(n, i)| *n != container && i.overlaps(start, end))
            .map(|(_, i)| i)
        {
            return Err(overlaps(i.name.clone(), i.start, i.end()));
        }
        if let Some(l) = live.values().find(|l| start < l.end && l.start < end) {
            return Err(overlaps(format!("the slot of {}", l.owner), l.start, l.end));
        }
        Ok(end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    fn guard() -> Arc<SlotGuard> {
        SlotGuard::new(vec![
            MapItem::new("RAM", MapKind::Ram, 0, 2 * GIB),
            MapItem::new("PCI", MapKind::PciWindow, 3 * GIB, 256 << 20),
            MapItem::new("ECAM", MapKind::Device, 3 * GIB + (256 << 20), 256 << 20),
            MapItem::new("CXL window 'w0'", MapKind::CxlWindow, 4 * GIB, 2 * GIB),
            MapItem::new("CXL window 'w1'", MapKind::CxlWindow, 6 * GIB, GIB),
        ])
    }

    #[test]
    fn a_slot_inside_a_window_is_claimed_and_freed_with_its_claim() {
        let g = guard();
        let c = g.claim("r0", 4 * GIB, GIB, Placement::CxlWindow).unwrap();
        assert_eq!((c.start(), c.size()), (4 * GIB, GIB));
        assert_eq!(g.claims(), vec![("r0".into(), 4 * GIB, 5 * GIB)]);
        // The same range again, or one overlapping it, is refused while held.
        let e = g
            .claim("r1", 5 * GIB - 4096, 8192, Placement::CxlWindow)
            .unwrap_err();
        assert!(e.to_string().contains("overlaps the slot of r0"), "{e}");
        drop(c);
        assert!(g.claims().is_empty());
        g.claim("r1", 5 * GIB - 4096, 8192, Placement::CxlWindow)
            .unwrap();
    }

    #[test]
    fn slots_outside_their_area_or_across_two_are_refused() {
        let g = guard();
        let outside = |s, n, p| g.claim("x", s, n, p).unwrap_err();
        // Over RAM, over ECAM, past the last window, across two windows.
        for (s, n) in [
            (0, 4096),
            (GIB, GIB),
            (3 * GIB + (256 << 20), 4096),
            (7 * GIB, GIB),
            (6 * GIB - 4096, 8192),
            (4 * GIB - 4096, 8192),
        ] {
            assert!(
                matches!(outside(s, n, Placement::CxlWindow), Refusal::Outside { .. }),
                "[{s:#x}, +{n:#x})"
            );
        }
        // A window is no place for a BAR, nor a PCI window for a region.
        assert!(matches!(
            outside(4 * GIB, 4096, Placement::PciWindow),
            Refusal::Outside { .. }
        ));
        assert!(matches!(
            outside(3 * GIB, 4096, Placement::CxlWindow),
            Refusal::Outside { .. }
        ));
        g.claim("bar", 3 * GIB, 4096, Placement::PciWindow).unwrap();
    }

    #[test]
    fn empty_wrapping_and_unaligned_slots_are_refused() {
        let g = guard();
        for (s, n) in [
            (4 * GIB, 0),
            (u64::MAX - 4095, 8192),
            (4 * GIB + 256, 4096),
            (4 * GIB, 256),
        ] {
            assert_eq!(
                g.claim("x", s, n, Placement::CxlWindow).unwrap_err(),
                Refusal::Malformed { start: s, size: n }
            );
        }
    }

    #[test]
    fn a_broken_map_still_cannot_put_a_slot_over_ram() {
        // RAM inside a window's range: the window contains the slot, and
        // the check of every other item still refuses it.
        let g = SlotGuard::new(vec![
            MapItem::new("w", MapKind::CxlWindow, 0, 4 * GIB),
            MapItem::new("RAM", MapKind::Ram, GIB, GIB),
        ]);
        let e = g.claim("r", GIB, 4096, Placement::CxlWindow).unwrap_err();
        assert!(e.to_string().contains("overlaps RAM"), "{e}");
        g.claim("r", 2 * GIB, 4096, Placement::CxlWindow).unwrap();
    }
}
