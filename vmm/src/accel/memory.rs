//! Bus addresses as the accelerators' DMA engines see them. With no IOMMU a
//! bus address is a guest physical address, and it can land in three kinds
//! of memory the guest owns: guest RAM, a CXL window (through the decoders
//! the guest committed, to the type-3 device's media), or an accelerator's
//! VRAM BAR where the guest placed it (peer-to-peer, or the device's own).
//! Anything else (MMIO registers, holes, a window range no decoder covers)
//! decodes to nothing, and the device answers with an error status.
//!
//! Every access is decoded again here and bounds-checked against the one
//! memory it lands in, whatever the caller promised, so a hostile
//! descriptor can reach no byte outside what the guest owns.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use devices::accel::{DmaError, DmaMemory, Span, Vram};
use devices::cxl::backing::Type3Backing;
use fabric::Target;
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryRegion};

use crate::cxl::regions::tree::TreeCell;
use crate::memory::GuestMemory;

/// The smallest CXL interleave granule: a decoded run never crosses one
/// without being checked again.
const GRANULE: u64 = 256;

/// One accelerator's VRAM and where its BAR2 decodes now.
pub struct VramWindow {
    vram: Arc<Vram>,
    /// Guest address of BAR2; 0 while it does not decode (memory space off
    /// or BAR unprogrammed: a BAR at 0 never decodes either).
    base: AtomicU64,
}

impl VramWindow {
    pub fn new(vram: Arc<Vram>) -> Self {
        VramWindow {
            vram,
            base: AtomicU64::new(0),
        }
    }

    /// Records where BAR2 decodes (None: nowhere).
    pub fn set_base(&self, base: Option<u64>) {
        self.base.store(base.unwrap_or(0), Ordering::Release);
    }

    /// Offset of `addr` in the VRAM and the bytes left after it.
    fn offset(&self, addr: u64) -> Option<(u64, u64)> {
        let base = self.base.load(Ordering::Acquire);
        let off = addr.checked_sub(base)?;
        (base != 0 && off < self.vram.size()).then(|| (off, self.vram.size() - off))
    }
}

/// The CXL windows and the decoders the guest committed in them.
pub struct CxlMemory {
    /// (base, size) of every CFMWS window.
    pub windows: Vec<(u64, u64)>,
    pub tree: Arc<TreeCell>,
    /// Indexed like the topology's type-3 list.
    pub backings: Vec<Arc<Type3Backing>>,
}

impl CxlMemory {
    /// The device, DPA and bytes (at most `len`) that continue in that
    /// device's media from `hpa`, DPA-contiguously.
    fn decode(&self, hpa: u64, len: u64) -> Option<(usize, u64, u64)> {
        let (wbase, wsize) = *self
            .windows
            .iter()
            .find(|&&(b, s)| hpa >= b && hpa - b < s)?;
        let window_left = wsize - (hpa - wbase);
        let tree = self.tree.get();
        let first = tree.decode(hpa)?;
        let media_left = self
            .backings
            .get(first.device)?
            .locate(first.dpa)?
            .len_to_end;
        let limit = len.min(window_left).min(media_left);
        let mut n = (GRANULE - hpa % GRANULE).min(limit);
        while n < limit {
            match tree.decode(hpa + n) {
                Some(t) if t.device == first.device && t.dpa == first.dpa + n => {
                    n = (n + GRANULE).min(limit);
                }
                _ => break,
            }
        }
        Some((first.device, first.dpa, n))
    }
}

/// Guest memory for the accelerators' DMA, shared by all of them.
pub struct BusMemory {
    ram: GuestMemory,
    cxl: Option<CxlMemory>,
    /// Each accelerator's VRAM with its index in the topology's list;
    /// filled as they are built.
    vram: RwLock<Vec<(usize, Arc<VramWindow>)>>,
}

/// Where one decoded span lies.
enum Place {
    Ram,
    Vram(Arc<VramWindow>, u64),
    Media(usize, u64),
}

impl BusMemory {
    pub fn new(ram: GuestMemory, cxl: Option<CxlMemory>) -> Self {
        BusMemory {
            ram,
            cxl,
            vram: RwLock::new(Vec::new()),
        }
    }

    /// Adds the VRAM of accelerator `index` (of the topology's list).
    pub fn add_vram(&self, index: usize, w: Arc<VramWindow>) {
        self.vram
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push((index, w));
    }

    /// Where `addr` lies, its fabric target, and the bytes (1..=`len`)
    /// that continue there.
    fn locate(&self, addr: u64, len: u64) -> Result<(Place, Target, u64), DmaError> {
        let len = len.max(1);
        if let Some(r) = self.ram.find_region(GuestAddress(addr)) {
            let end = r.start_addr().0 + r.len();
            return Ok((Place::Ram, Target::HostMemory, len.min(end - addr)));
        }
        let vram = self.vram.read().unwrap_or_else(|e| e.into_inner());
        for (i, w) in vram.iter() {
            if let Some((off, left)) = w.offset(addr) {
                return Ok((
                    Place::Vram(w.clone(), off),
                    Target::Accelerator(*i),
                    len.min(left),
                ));
            }
        }
        drop(vram);
        if let Some((device, dpa, n)) = self.cxl.as_ref().and_then(|c| c.decode(addr, len)) {
            return Ok((Place::Media(device, dpa), Target::Type3 { device, dpa }, n));
        }
        Err(DmaError::Unmapped(addr))
    }

    /// Calls `f(place, offset in buf, bytes)` for each span of an access.
    fn each_span(
        &self,
        addr: u64,
        len: usize,
        mut f: impl FnMut(&Place, usize, usize, u64) -> Result<(), DmaError>,
    ) -> Result<(), DmaError> {
        let mut done = 0usize;
        while done < len {
            let at = addr
                .checked_add(done as u64)
                .ok_or(DmaError::Unmapped(addr))?;
            let (place, _, n) = self.locate(at, (len - done) as u64)?;
            let n = n as usize;
            f(&place, done, n, at)?;
            done += n;
        }
        Ok(())
    }
}

impl DmaMemory for BusMemory {
    fn decode(&self, addr: u64, len: u64) -> Result<Span, DmaError> {
        let (_, target, n) = self.locate(addr, len)?;
        Ok(Span { target, len: n })
    }

    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), DmaError> {
        self.each_span(addr, buf.len(), |place, off, n, at| {
            let part = &mut buf[off..off + n];
            let ok = match place {
                Place::Ram => self.ram.read_slice(part, GuestAddress(at)).is_ok(),
                Place::Vram(w, o) => w.vram.read(*o, part),
                Place::Media(d, dpa) => {
                    self.media(*d)?.read(*dpa, part);
                    true
                }
            };
            ok.then_some(()).ok_or(DmaError::Fault(at))
        })
    }

    fn write(&self, addr: u64, data: &[u8]) -> Result<(), DmaError> {
        // All of it must decode before the first byte lands.
        self.each_span(addr, data.len(), |_, _, _, _| Ok(()))?;
        self.each_span(addr, data.len(), |place, off, n, at| {
            let part = &data[off..off + n];
            let ok = match place {
                Place::Ram => self.ram.write_slice(part, GuestAddress(at)).is_ok(),
                Place::Vram(w, o) => w.vram.write(*o, part),
                Place::Media(d, dpa) => self.media(*d)?.write(*dpa, part).is_ok(),
            };
            ok.then_some(()).ok_or(DmaError::Fault(at))
        })
    }
}

impl BusMemory {
    fn media(&self, device: usize) -> Result<&Type3Backing, DmaError> {
        self.cxl
            .as_ref()
            .and_then(|c| c.backings.get(device))
            .map(|b| b.as_ref())
            .ok_or(DmaError::Fault(0))
    }
}

#[cfg(test)]
mod tests;
