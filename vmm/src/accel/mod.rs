//! The accelerators of the topology (`docs/accelerator.md`) on the guest's
//! path: each one's PCI function placed where the plan put it, BARs
//! programmed as firmware would (BAR0 registers and BAR4 MSI-X go on the
//! MMIO bus through the segment, BAR2 VRAM too), interrupts through KVM,
//! DMA through [`memory::BusMemory`] and the shared timing engine, guest
//! time from [`clock`], completions delivered by [`timer`].

pub mod clock;
mod function;
pub mod memory;
pub mod timer;
mod vram_slot;

#[cfg(test)]
mod tests;

use std::sync::{Arc, Mutex};

use devices::accel::{build_accelerator, AccelConfig, AccelDeps, AccelSpec, Accelerator};
use devices::clock::GuestClock;
use devices::pci::{Bdf, InterruptAllocator, IntxPin, PciRoot};
use fabric::topology::Topology;
use fabric::Engine;
use kvm_ioctls::VmFd;

use crate::cxl::build::{link_params, program, INTA};
use crate::cxl::plan::{CxlPlan, FunctionKind};
use crate::guest_map::guard::SlotGuard;
use crate::irq::intx_gsi;
use clock::MachineClock;
use function::AccelFunction;
use memory::{BusMemory, VramWindow};
use timer::CompletionThread;
use vram_slot::{vram_slot, VramSlot};

#[derive(Debug, thiserror::Error)]
pub enum AccelError {
    #[error("accelerator[{index}] ({id}): {what}: {source}")]
    Device {
        index: usize,
        id: String,
        what: &'static str,
        source: std::io::Error,
    },
    #[error("accelerator completion timer: {0}")]
    Timer(std::io::Error),
}

/// The built accelerators; dropping this stops their completion timer.
pub struct Accelerators {
    pub devices: Vec<Arc<Mutex<Accelerator>>>,
    /// Kept for the machine's lifetime: joined when the machine ends.
    _timer: CompletionThread,
}

/// What the accelerators get from the machine.
pub struct AccelMachine {
    pub vm: Arc<VmFd>,
    /// Where VRAM slots may go.
    pub guard: Arc<SlotGuard>,
    /// Where BARs decode (base, size): the PCI windows.
    pub apertures: Vec<(u64, u64)>,
    /// Guest RAM and the CXL windows (VRAM is added by [`build`]).
    pub memory: Arc<BusMemory>,
    /// The machine's one timing engine.
    pub engine: Arc<Mutex<Engine>>,
    /// Guest time: host time, or the virtual clock once it is bound.
    pub clock: Arc<MachineClock>,
    /// Huge-page advice for the VRAM mapping.
    pub memory_backing: crate::memory_backing::MemoryBacking,
}

/// Builds every accelerator of `topo` at its place in `plan`, adds it to
/// the segment, and starts the completion timer. `memory` must already know
/// guest RAM and the CXL windows; the VRAM of each device is added to it
/// here, before any device can run a command.
pub fn build(
    topo: &Topology,
    plan: &CxlPlan,
    pci: &mut PciRoot,
    irq: &dyn InterruptAllocator,
    machine: AccelMachine,
) -> Result<Accelerators, AccelError> {
    let AccelMachine {
        vm,
        guard,
        apertures,
        memory,
        engine,
        clock,
        memory_backing,
    } = machine;
    let mut devices = Vec::new();
    for p in &plan.functions {
        let FunctionKind::Accelerator { index } = p.kind else {
            continue;
        };
        let a = &topo.accelerators[index];
        let err = |what, source| AccelError::Device {
            index,
            id: a.id.clone(),
            what,
            source,
        };
        let config = AccelConfig::from_topology(a, index);
        // As many as `build_accelerator` gives the MSI-X table.
        let vectors = config.queues as u16 + 1;
        let msi = irq
            .msix_vectors(vectors)
            .map_err(|e| err("interrupt vectors", e))?;
        let spec = AccelSpec {
            config,
            name: a.id.clone(),
            link: link_params(topo, p.kind, p.port_number),
            intx: plan
                .intx_root_route(p.bus, p.device, INTA)
                .map(|(slot, pin)| IntxPin::new(INTA, irq.intx_line(intx_gsi(slot, pin)))),
        };
        let deps = AccelDeps {
            memory: memory.clone(),
            engine: engine.clone(),
            clock: clock.clone() as Arc<dyn GuestClock>,
        };
        let dev = build_accelerator(spec, msi, deps).map_err(|e| err("VRAM", e))?;
        let window = Arc::new(VramWindow::new(dev.vram.clone()));
        memory.add_vram(index, window.clone());
        let slot = vram_slot(index)
            .map(|s| {
                VramSlot::new(
                    vm.clone(),
                    guard.clone(),
                    format!("{} VRAM", a.id),
                    s,
                    &dev.vram,
                    memory_backing,
                )
            })
            .transpose()
            .map_err(|e| err("mapping VRAM", e))?;
        let mut f = dev.function;
        program(&mut f, p);
        let f = AccelFunction::new(f, window, slot, apertures.clone());
        pci.add(Bdf::new(p.bus, p.device, 0), f);
        devices.push(dev.regs);
    }
    let timer = CompletionThread::spawn(devices.clone(), clock).map_err(AccelError::Timer)?;
    Ok(Accelerators {
        devices,
        _timer: timer,
    })
}
