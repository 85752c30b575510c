//! The whole guest-physical map as one list of named ranges, checked to be
//! disjoint before the VM is built: RAM, the fixed devices of the 32-bit
//! hole, the CXL host bridges' register blocks and the CXL windows. Where
//! each lives is decided in `layout` and `cxl::plan`; this is the check
//! that they never meet, whatever `--memory` and topology say.

use fabric::topology::Topology;

use crate::cxl::plan::CxlPlan;
use crate::layout::*;
use crate::memory::ram_ranges;

pub mod guard;

/// What a range of the map is, as far as memory slots care.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapKind {
    /// Guest RAM (with the firmware tables in it): KVM slots of its own.
    Ram,
    /// A PCI memory window: BARs are placed in it.
    PciWindow,
    /// Registers of a fixed device (ECAM, CHBCRs, IOAPIC, LAPIC/MSI) or
    /// pages KVM keeps for itself.
    Device,
    /// A CXL fixed memory window (CFMWS): committed regions go in it.
    CxlWindow,
}

/// One range of guest-physical addresses and what it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapItem {
    pub name: String,
    pub kind: MapKind,
    pub start: u64,
    pub size: u64,
}

impl MapItem {
    pub fn new(name: impl Into<String>, kind: MapKind, start: u64, size: u64) -> Self {
        MapItem {
            name: name.into(),
            kind,
            start,
            size,
        }
    }

    /// One past the last address.
    pub fn end(&self) -> u64 {
        self.start.saturating_add(self.size)
    }

    /// Whether `[start, end)` shares an address with this item.
    pub fn overlaps(&self, start: u64, end: u64) -> bool {
        start < self.end() && self.start < end
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "guest memory map: {} [{:#x}, {:#x}) overlaps {} [{:#x}, {:#x})",
    a.name, a.start, a.end(), b.name, b.start, b.end()
)]
pub struct MapOverlap {
    pub a: MapItem,
    pub b: MapItem,
}

/// Every top-level range of the guest's physical address space, sorted by
/// address. Nested ranges (BARs in a bridge window, a CHBCR in the CHBCR
/// area) are not listed: their parents are.
pub fn guest_map(
    mem_size: u64,
    cxl: Option<(&Topology, &CxlPlan)>,
) -> Result<Vec<MapItem>, MapOverlap> {
    let mut items: Vec<MapItem> = ram_ranges(mem_size)
        .into_iter()
        .map(|(base, len)| MapItem::new("RAM", MapKind::Ram, base.0, len as u64))
        .collect();
    items.extend([
        MapItem::new(
            "PCI0 MMIO window",
            MapKind::PciWindow,
            PCI_MMIO32_START,
            PCI0_MMIO_SIZE,
        ),
        MapItem::new(
            "CXL PCI MMIO window",
            MapKind::PciWindow,
            CXL_MMIO32_START,
            CXL_MMIO32_END - CXL_MMIO32_START,
        ),
        MapItem::new("ECAM", MapKind::Device, ECAM_START, ECAM_SIZE),
        MapItem::new("CHBCR area", MapKind::Device, CHBCR_START, CHBCR_AREA_SIZE),
        MapItem::new("IOAPIC", MapKind::Device, IOAPIC_START, IOAPIC_SIZE),
        MapItem::new("LAPIC/MSI", MapKind::Device, LAPIC_START, MSI_AREA_SIZE),
        MapItem::new(
            "KVM TSS/identity map",
            MapKind::Device,
            KVM_IDENTITY_MAP_START,
            KVM_PRIVATE_SIZE,
        ),
    ]);
    if let Some((topo, plan)) = cxl {
        for (w, wp) in topo.windows.iter().zip(&plan.windows) {
            items.push(MapItem::new(
                format!("CXL window '{}'", w.id),
                MapKind::CxlWindow,
                wp.base,
                wp.size,
            ));
        }
    }
    items.sort_by_key(|i| (i.start, i.size));
    if let Some(pair) = items.windows(2).find(|p| p[0].end() > p[1].start) {
        return Err(MapOverlap {
            a: pair[0].clone(),
            b: pair[1].clone(),
        });
    }
    Ok(items)
}

#[cfg(test)]
mod tests;
