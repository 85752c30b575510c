//! VRAM as guest memory: while BAR2 decodes, the VRAM memfd is a KVM
//! memory slot at the BAR's address, so CPU loads and stores through the
//! BAR run at native speed (`docs/accelerator.md` §4) on the same pages the
//! device's DMA and kernels use. Where KVM refuses the slot (the guest put
//! the BAR over other memory) the BAR stays served by traps (`VramBar`).

use std::sync::Arc;

use devices::accel::Vram;
use kvm_bindings::kvm_userspace_memory_region;
use kvm_ioctls::VmFd;
use vm_memory::{FileOffset, MmapRegion};

use crate::guest_map::guard::{Placement, SlotClaim, SlotGuard};

const LOG_TARGET: &str = "vmm::accel";

/// KVM slots for VRAM: after guest RAM's (0 and 1), below the CXL
/// regions' (`cxl::regions::kvm`, from 16). Accelerators past the twelfth
/// keep their VRAM BAR served by traps.
const FIRST_VRAM_SLOT: u32 = 4;
const VRAM_SLOTS: u32 = 12;

/// The KVM slot of accelerator `index`'s VRAM, if it has one.
pub fn vram_slot(index: usize) -> Option<u32> {
    u32::try_from(index)
        .ok()
        .filter(|&i| i < VRAM_SLOTS)
        .map(|i| FIRST_VRAM_SLOT + i)
}

pub struct VramSlot {
    vm: Arc<VmFd>,
    /// Every slot is claimed here first: inside a PCI window, clear of RAM,
    /// devices and other slots, whatever the guest wrote into BAR2.
    guard: Arc<SlotGuard>,
    /// Held while the slot is mapped.
    claim: Option<SlotClaim>,
    owner: String,
    slot: u32,
    /// The whole VRAM, mapped shared once; KVM uses it while `at` is Some.
    /// None once given up (leaked) because KVM would not let go of it.
    map: Option<MmapRegion<()>>,
    at: Option<u64>,
}

impl VramSlot {
    pub fn new(
        vm: Arc<VmFd>,
        guard: Arc<SlotGuard>,
        owner: String,
        slot: u32,
        vram: &Vram,
        memory: crate::memory_backing::MemoryBacking,
    ) -> std::io::Result<Self> {
        let file = vram.file().try_clone()?;
        let size = usize::try_from(vram.size()).map_err(std::io::Error::other)?;
        let map = MmapRegion::from_file(FileOffset::new(file, 0), size)
            .map_err(|e| std::io::Error::other(format!("mapping VRAM: {e}")))?;
        memory.advise_shared(map.as_ptr(), map.size());
        Ok(VramSlot {
            vm,
            guard,
            claim: None,
            owner,
            slot,
            map: Some(map),
            at: None,
        })
    }

    fn set(&self, base: u64, size: u64) -> Result<(), kvm_ioctls::Error> {
        let Some(map) = &self.map else {
            return Err(kvm_ioctls::Error::new(libc::EBADF));
        };
        let region = kvm_userspace_memory_region {
            slot: self.slot,
            guest_phys_addr: base,
            memory_size: size,
            userspace_addr: map.as_ptr() as u64,
            flags: 0,
        };
        // SAFETY: `map` is a live shared mapping of the whole VRAM that this
        // record owns; it is unmapped only after the slot was deleted (if
        // deleting fails it is leaked, never unmapped). KVM refuses a slot
        // that overlaps another.
        unsafe { self.vm.set_user_memory_region(region) }
    }

    /// Maps VRAM at `base` (None: unmaps it).
    pub fn place(&mut self, base: Option<u64>) {
        if self.at == base {
            return;
        }
        if self.at.take().is_some() {
            if let Err(e) = self.set(0, 0) {
                // KVM may still map the pages: keep them for the life of
                // the process, and use this slot no more.
                log::warn!(target: LOG_TARGET, "removing VRAM slot {}: {e}", self.slot);
                std::mem::forget(self.map.take());
                std::mem::forget(self.claim.take());
                return;
            }
            self.claim = None;
        }
        let Some(size) = self.map.as_ref().map(|m| m.size() as u64) else {
            return;
        };
        if let Some(b) = base {
            let Ok(claim) = self.guard.claim(&self.owner, b, size, Placement::PciWindow) else {
                // The guard logged why; the BAR stays served by traps.
                return;
            };
            match self.set(b, size) {
                Ok(()) => {
                    self.at = Some(b);
                    self.claim = Some(claim);
                }
                Err(e) => log::warn!(
                    target: LOG_TARGET,
                    "KVM refused VRAM slot {} at {b:#x}: {e}; the BAR is served by traps",
                    self.slot
                ),
            }
        }
    }
}

impl Drop for VramSlot {
    fn drop(&mut self) {
        self.place(None);
    }
}
