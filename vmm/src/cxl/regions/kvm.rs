//! The KVM side of the region map: a native region becomes a memory slot
//! over host memory that holds each byte where its device keeps it.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use devices::bus::lock;
use devices::cxl::backing::Type3Backing;
use devices::cxl::component::DecoderState;
use fabric::interleave::DecodeTree;
use kvm_bindings::kvm_userspace_memory_region;
use kvm_ioctls::VmFd;
use vm_memory::{FileOffset, MmapRegion};

use crate::guest_map::guard::SlotClaim;

use super::super::composed::{coalesce, map_budget, ComposedMapping, Piece, PAGE};
use super::mapper::SlotLayer;
use super::tree::WantedRegion;
use super::RegionInfo;
use super::LOG_TARGET;

/// KVM memory slots for regions start here (RAM uses the first few).
const FIRST_REGION_SLOT: u32 = 16;

/// The host memory behind a native region's slot.
enum HostMapping {
    /// One device's backing, 1-way.
    Device(MmapRegion<()>),
    /// Several devices' backings, interleaved.
    Composed(ComposedMapping),
}

impl HostMapping {
    fn as_ptr(&self) -> *mut u8 {
        match self {
            HostMapping::Device(m) => m.as_ptr(),
            HostMapping::Composed(m) => m.as_ptr(),
        }
    }
}

/// A mapped region: its slot, the host mapping KVM uses until the slot is
/// deleted, and the guard's claim on the guest range.
pub struct KvmRegion {
    slot: u32,
    _host: HostMapping,
    _claim: SlotClaim,
}

/// Maps regions as KVM memory slots.
pub struct KvmSlots {
    vm: Arc<VmFd>,
    /// Indexed like the topology's type-3 list.
    backings: Vec<Arc<Type3Backing>>,
    used: Mutex<BTreeSet<u32>>,
    /// Windows (base, size) whose regions the VMM serves on every access
    /// (`trapped` and `timed` mode): never mapped here.
    vmm_served: Vec<(u64, u64)>,
}

impl KvmSlots {
    pub fn new(vm: Arc<VmFd>, backings: Vec<Arc<Type3Backing>>) -> Self {
        // Opens what the budget reads, while this thread may still open
        // files (regions are mapped on vCPU threads).
        map_budget(0);
        Self {
            vm,
            backings,
            used: Mutex::new(BTreeSet::new()),
            vmm_served: Vec::new(),
        }
    }

    /// Regions inside these windows stay unmapped, whatever their shape.
    pub fn serve_in_vmm(mut self, windows: Vec<(u64, u64)>) -> Self {
        self.vmm_served = windows;
        self
    }

    fn served_by_vmm(&self, base: u64, size: u64) -> bool {
        overlaps_any(&self.vmm_served, base, size)
    }

    /// An interleaved region: every granule decoded through the tree and
    /// mapped from the backing that holds it.
    fn composed_mapping(
        &self,
        tree: &DecodeTree,
        base: u64,
        size: u64,
        gran: u64,
    ) -> Option<ComposedMapping> {
        let mut pieces = Vec::with_capacity(usize::try_from(size / gran).ok()?);
        for at in (0..size).step_by(usize::try_from(gran).ok()?) {
            let t = tree.decode(base + at)?;
            let slice = self.backings.get(t.device)?.locate(t.dpa)?;
            if slice.len_to_end < gran {
                return None;
            }
            pieces.push(Piece {
                at,
                file: slice.file,
                offset: slice.offset,
                len: gran,
            });
        }
        let pieces = coalesce(pieces);
        // Leave room for everything else the process maps.
        let budget = map_budget(4096);
        if pieces.len() > budget {
            log::warn!(
                target: LOG_TARGET,
                "region [{base:#x}, +{size:#x}) needs {} host mappings, {budget} left under \
                 vm.max_map_count: serving it trapped (raise it with \
                 `sysctl vm.max_map_count=...` for native speed)",
                pieces.len()
            );
            return None;
        }
        match ComposedMapping::new(size, &pieces) {
            Ok(m) => Some(m),
            Err(e) => {
                log::warn!(
                    target: LOG_TARGET,
                    "region [{base:#x}, +{size:#x}): stitching {} mappings failed: {e}",
                    pieces.len()
                );
                None
            }
        }
    }

    /// A 1-way region maps the device's backing file directly, after
    /// checking that the decode tree agrees at both ends.
    fn device_mapping(
        &self,
        tree: &DecodeTree,
        base: u64,
        size: u64,
        ep: &(usize, DecoderState),
    ) -> Option<MmapRegion<()>> {
        let (t, d) = ep;
        let first = tree.decode(base)?;
        let last = tree.decode(base + size - 1)?;
        if first.device != *t || last.device != *t || last.dpa != first.dpa + size - 1 {
            return None;
        }
        let backing = self.backings.get(*t)?;
        let slice = backing.locate(d.dpa_base)?;
        if slice.len_to_end < size {
            return None;
        }
        let file = slice.file.try_clone().ok()?;
        MmapRegion::from_file(
            FileOffset::new(file, slice.offset),
            usize::try_from(size).ok()?,
        )
        .ok()
    }

    /// A slot over exactly the claimed range; `mapping` must be that long.
    fn add_slot(&self, claim: &SlotClaim, mapping: &HostMapping) -> Option<u32> {
        let (base, size) = (claim.start(), claim.size());
        let mut used = lock(&self.used);
        let slot = (FIRST_REGION_SLOT..).find(|s| !used.contains(s))?;
        let region = kvm_userspace_memory_region {
            slot,
            guest_phys_addr: base,
            memory_size: size,
            userspace_addr: mapping.as_ptr() as u64,
            flags: 0,
        };
        // SAFETY: `mapping` is a live shared mapping of `size` bytes that the
        // KvmRegion record keeps until the slot is removed, and the guard's
        // claim (kept as long) puts the range inside a CXL window, clear of
        // RAM, devices and every other slot.
        match unsafe { self.vm.set_user_memory_region(region) } {
            Ok(()) => {
                used.insert(slot);
                Some(slot)
            }
            Err(e) => {
                log::warn!(
                    target: LOG_TARGET,
                    "KVM refused a memory slot for region [{base:#x}, +{size:#x}): {e}; \
                     serving it trapped"
                );
                None
            }
        }
    }
}

impl SlotLayer for KvmSlots {
    type Mapping = KvmRegion;

    fn map(&self, tree: &DecodeTree, region: &WantedRegion, claim: SlotClaim) -> Option<KvmRegion> {
        let (base, size) = (claim.start(), claim.size());
        if self.served_by_vmm(base, size) {
            return None;
        }
        if (base, size) != (region.base, region.size) {
            return None;
        }
        let host = if region.ways == 1 {
            HostMapping::Device(self.device_mapping(tree, base, size, region.endpoints.first()?)?)
        } else if region.granularity >= PAGE {
            HostMapping::Composed(self.composed_mapping(tree, base, size, region.granularity)?)
        } else {
            return None;
        };
        let slot = self.add_slot(&claim, &host)?;
        Some(KvmRegion {
            slot,
            _host: host,
            _claim: claim,
        })
    }

    fn unmap(&self, info: &RegionInfo, mapping: KvmRegion) {
        let region = kvm_userspace_memory_region {
            slot: mapping.slot,
            guest_phys_addr: info.base,
            memory_size: 0,
            userspace_addr: 0,
            flags: 0,
        };
        // SAFETY: deleting a slot (size 0) maps nothing; the host mapping is
        // dropped (below) only after KVM stopped using it.
        match unsafe { self.vm.set_user_memory_region(region) } {
            Ok(()) => {
                lock(&self.used).remove(&mapping.slot);
            }
            Err(e) => {
                // KVM may still map the host memory: keep it (and the slot
                // number) for the life of the process.
                let slot = mapping.slot;
                log::warn!(target: LOG_TARGET, "removing region slot {slot}: {e}");
                std::mem::forget(mapping);
            }
        }
    }
}

/// Whether [base, base + size) overlaps any of the (base, size) ranges.
fn overlaps_any(ranges: &[(u64, u64)], base: u64, size: u64) -> bool {
    ranges
        .iter()
        .any(|&(b, s)| base < b.saturating_add(s) && b < base.saturating_add(size))
}

#[cfg(test)]
mod tests {
    use super::overlaps_any;

    #[test]
    fn a_region_touching_a_vmm_served_window_is_never_mapped() {
        let served = [(0x1_0000_0000, 0x1000_0000), (0x2_0000_0000, 0x1000_0000)];
        assert!(overlaps_any(&served, 0x1_0000_0000, 0x1000_0000));
        assert!(overlaps_any(&served, 0x1_0fff_f000, 0x2000));
        assert!(overlaps_any(&served, 0x2_0800_0000, 0x1000));
        // Right next to a window, on either side: not inside it.
        assert!(!overlaps_any(&served, 0x1_1000_0000, 0x1000_0000));
        assert!(!overlaps_any(&served, 0x0_f000_0000, 0x1000_0000));
        assert!(!overlaps_any(&[], 0x1_0000_0000, 0x1000));
        assert!(!overlaps_any(&served, u64::MAX - 0xfff, 0x1000));
    }
}
