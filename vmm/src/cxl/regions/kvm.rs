//! The KVM side of the region map: a native region becomes a memory slot
//! over host memory that holds its bytes: the device's own backing (1-way),
//! the window's memfd into which a volatile interleave's bytes were
//! gathered in HPA order ([`super::gathered`]), or, for persistent media,
//! a range stitched from every device's file, granule by granule.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use devices::bus::lock;
use devices::cxl::backing::{InterleaveLayout, RegionBacking, Type3Backing};
use devices::cxl::component::DecoderState;
use fabric::interleave::DecodeTree;
use kvm_bindings::kvm_userspace_memory_region;
use kvm_ioctls::VmFd;
use vm_memory::{FileOffset, MmapRegion};

use crate::guest_map::guard::SlotClaim;
use crate::memory_backing::MemoryBacking;

use super::super::composed::{coalesce, map_budget, ComposedMapping, Piece, PAGE};
use super::gathered::GatherMedia;
use super::mapper::SlotLayer;
use super::order::interleave_order;
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
    /// A volatile interleave gathered into its window's memfd, mapped
    /// there by `media`; dropping `region` moves the bytes back.
    Gathered {
        host: *mut u8,
        _region: RegionBacking,
        _media: Arc<GatherMedia>,
    },
}

// SAFETY: the pointer of `Gathered` is into `media`'s mapping, which the
// variant keeps alive; nothing in it is tied to a thread.
unsafe impl Send for HostMapping {}

impl HostMapping {
    fn as_ptr(&self) -> *mut u8 {
        match self {
            HostMapping::Device(m) => m.as_ptr(),
            HostMapping::Composed(m) => m.as_ptr(),
            HostMapping::Gathered { host, .. } => *host,
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
    /// Where volatile interleaves are gathered; None: they are stitched.
    gather: Option<Arc<GatherMedia>>,
    /// Huge-page advice for the device memory put in slots.
    memory: MemoryBacking,
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
            gather: None,
            memory: MemoryBacking::Anon,
        }
    }

    /// How device memory mapped into slots is advised (before `gather_in`,
    /// which maps the windows).
    pub fn memory_backing(mut self, memory: MemoryBacking) -> Self {
        self.memory = memory;
        self
    }

    /// Regions inside these windows stay unmapped, whatever their shape.
    pub fn serve_in_vmm(mut self, windows: Vec<(u64, u64)>) -> Self {
        self.vmm_served = windows;
        self
    }

    /// Volatile interleaves in these windows (those not served by the VMM)
    /// are gathered into one memfd per window, made here (on a thread that
    /// may still create files). Without it (or should that fail, logged)
    /// they are stitched, granule by granule.
    pub fn gather_in(mut self, windows: &[(u64, u64)]) -> Self {
        let native: Vec<(u64, u64)> = windows
            .iter()
            .copied()
            .filter(|&(b, s)| !self.served_by_vmm(b, s))
            .collect();
        match GatherMedia::new(&native, &self.backings, self.memory) {
            Ok(media) => self.gather = Some(Arc::new(media)),
            Err(e) => log::warn!(
                target: LOG_TARGET,
                "no window memfds ({e}): interleaved volatile regions will be stitched, \
                 one host mapping per granule"
            ),
        }
        self
    }

    /// A volatile interleave whose decoders keep HPA order, its bytes
    /// gathered into its window's memfd. `None` where that does not apply
    /// (persistent media, an irregular decode, no window memfd); `Some(None)`
    /// where it applies but failed (logged): the region is trapped.
    fn gathered_mapping(
        &self,
        tree: &DecodeTree,
        region: &WantedRegion,
    ) -> Option<Option<HostMapping>> {
        let media = self.gather.as_ref()?;
        let order = interleave_order(tree, region)?;
        let share = region.size / u64::from(region.ways);
        let members: Vec<(Arc<Type3Backing>, u64)> = order
            .iter()
            .map(|&(t, dpa)| Some((self.backings.get(t)?.clone(), dpa)))
            .collect::<Option<_>>()?;
        let volatile = |(b, dpa): &(Arc<Type3Backing>, u64)| {
            b.locate(*dpa)
                .is_some_and(|s| !s.persistent && s.len_to_end >= share)
        };
        if !members.iter().all(volatile) {
            return None;
        }
        let range = media.range(region.base, region.size)?;
        let layout = InterleaveLayout {
            ways: u64::from(region.ways),
            granularity: region.granularity,
        };
        let reclaim: Arc<dyn devices::cxl::backing::Reclaim> = media.clone();
        match RegionBacking::gather(range.file, range.offset, layout, share, members, reclaim) {
            Ok(backing) => {
                log::info!(
                    target: LOG_TARGET,
                    "region [{:#x}, +{:#x}): {}-way volatile interleave gathered into one host \
                     mapping of its window's memfd",
                    region.base,
                    region.size,
                    region.ways
                );
                Some(Some(HostMapping::Gathered {
                    host: range.host,
                    _region: backing,
                    _media: media.clone(),
                }))
            }
            Err(e) => {
                log::warn!(
                    target: LOG_TARGET,
                    "region [{:#x}, +{:#x}): gathering its bytes failed: {e}; serving it trapped",
                    region.base,
                    region.size
                );
                Some(None)
            }
        }
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
            let backing = self.backings.get(t.device)?;
            let slice = backing.locate(t.dpa)?;
            if slice.len_to_end < gran || backing.relocated_within(t.dpa, gran) {
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
        if slice.len_to_end < size || backing.relocated_within(d.dpa_base, size) {
            return None;
        }
        let persistent = slice.persistent;
        let file = slice.file.try_clone().ok()?;
        let map = MmapRegion::from_file(
            FileOffset::new(file, slice.offset),
            usize::try_from(size).ok()?,
        )
        .ok()?;
        // Persistent media stays on its file as the page cache has it.
        if !persistent {
            self.memory.advise_shared(map.as_ptr(), map.size());
        }
        Some(map)
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
            match self.gathered_mapping(tree, region) {
                Some(gathered) => gathered?,
                None => HostMapping::Composed(self.composed_mapping(
                    tree,
                    base,
                    size,
                    region.granularity,
                )?),
            }
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
