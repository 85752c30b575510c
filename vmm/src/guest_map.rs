//! The whole guest-physical map as one list of named ranges, checked to be
//! disjoint before the VM is built: RAM, the fixed devices of the 32-bit
//! hole, the CXL host bridges' register blocks and the CXL windows. Where
//! each lives is decided in `layout` and `cxl::plan`; this is the check
//! that they never meet, whatever `--memory` and topology say.

use fabric::topology::Topology;

use crate::cxl::plan::CxlPlan;
use crate::layout::*;
use crate::memory::ram_ranges;

/// One range of guest-physical addresses and what it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapItem {
    pub name: String,
    pub start: u64,
    pub size: u64,
}

impl MapItem {
    fn new(name: impl Into<String>, start: u64, size: u64) -> Self {
        MapItem {
            name: name.into(),
            start,
            size,
        }
    }

    /// One past the last address.
    pub fn end(&self) -> u64 {
        self.start.saturating_add(self.size)
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
        .map(|(base, len)| MapItem::new("RAM", base.0, len as u64))
        .collect();
    items.extend([
        MapItem::new("PCI0 MMIO window", PCI_MMIO32_START, PCI0_MMIO_SIZE),
        MapItem::new(
            "CXL PCI MMIO window",
            CXL_MMIO32_START,
            CXL_MMIO32_END - CXL_MMIO32_START,
        ),
        MapItem::new("ECAM", ECAM_START, ECAM_SIZE),
        MapItem::new("CHBCR area", CHBCR_START, CHBCR_AREA_SIZE),
        MapItem::new("IOAPIC", IOAPIC_START, IOAPIC_SIZE),
        MapItem::new("LAPIC/MSI", LAPIC_START, MSI_AREA_SIZE),
        MapItem::new(
            "KVM TSS/identity map",
            KVM_IDENTITY_MAP_START,
            KVM_PRIVATE_SIZE,
        ),
    ]);
    if let Some((topo, plan)) = cxl {
        for (w, wp) in topo.windows.iter().zip(&plan.windows) {
            items.push(MapItem::new(
                format!("CXL window '{}'", w.id),
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
