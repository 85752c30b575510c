//! The accelerator's PCI function as the segment holds it: the function
//! itself, plus what follows its VRAM BAR after every configuration write:
//! the DMA decode (peers and the device itself reach VRAM at the address
//! the guest gave it) and the KVM slot that maps VRAM there.

use std::sync::Arc;

use devices::accel::BAR_VRAM;
use devices::pci::{BarChanges, BarMapping, PciDevice, PciFunction};

use super::memory::VramWindow;
use super::vram_slot::VramSlot;

pub struct AccelFunction {
    function: PciFunction,
    vram: Arc<VramWindow>,
    slot: Option<VramSlot>,
    /// Where BARs decode (base, size): the PCI windows, as on the bus.
    apertures: Vec<(u64, u64)>,
}

impl AccelFunction {
    pub fn new(
        function: PciFunction,
        vram: Arc<VramWindow>,
        slot: Option<VramSlot>,
        apertures: Vec<(u64, u64)>,
    ) -> Self {
        let mut f = AccelFunction {
            function,
            vram,
            slot,
            apertures,
        };
        f.track_vram();
        f
    }

    /// Where BAR2 decodes now: memory space on, programmed, and wholly
    /// inside a PCI window (elsewhere it decodes nothing, as on the bus).
    fn vram_base(&self) -> Option<u64> {
        let bar = self
            .function
            .mmio_bars()
            .into_iter()
            .find(|b| usize::from(b.index) == BAR_VRAM)?;
        let end = bar.base.checked_add(bar.size)?;
        self.apertures
            .iter()
            .any(|&(a, len)| bar.base >= a && end <= a + len)
            .then_some(bar.base)
    }

    fn track_vram(&mut self) {
        let base = self.vram_base();
        self.vram.set_base(base);
        if let Some(s) = &mut self.slot {
            s.place(base);
        }
    }
}

impl PciDevice for AccelFunction {
    fn read_config(&mut self, reg: usize) -> u32 {
        self.function.read_config(reg)
    }

    fn write_config(&mut self, reg: usize, offset: usize, data: &[u8]) -> BarChanges {
        let changes = self.function.write_config(reg, offset, data);
        if !changes.is_empty() {
            self.track_vram();
        }
        changes
    }

    fn decoding_bars(&self) -> Vec<BarMapping> {
        self.function.decoding_bars()
    }
}
