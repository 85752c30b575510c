//! The accelerator as a PCIe function (`docs/accelerator.md` §1): identity,
//! PCIe and PM capabilities, BAR0 registers, BAR2 VRAM, BAR4 MSI-X, INTA#.

use std::io;
use std::sync::{Arc, Mutex};

use super::{AccelConfig, AccelDeps, Accelerator, Interrupts, Vram, VramBar};
use crate::pci::{
    add_pcie_capability, BarKind, ConfigSpace, IntxPin, LinkParams, MsiSink, PciFunction, PortType,
    SharedMsix,
};

/// From the range QEMU's PCI ID list leaves for experimental devices
/// (`1af4:10f0`–`10ff`); see the spec for why.
pub const VENDOR: u16 = 0x1af4;
pub const DEVICE: u16 = 0x10f0;
pub const REVISION: u8 = 1;
/// Base class 12h: processing accelerator.
pub const CLASS_PROCESSING_ACCELERATOR: u32 = 0x12_00_00;

pub const BAR_REGS: usize = 0;
pub const BAR_VRAM: usize = 2;
pub const BAR_MSIX: usize = 4;

pub struct AccelSpec {
    pub config: AccelConfig,
    /// Name for the VRAM memfd.
    pub name: String,
    pub link: LinkParams,
    /// INTA#, used while MSI-X is off (None: no INTx pin).
    pub intx: Option<Arc<IntxPin>>,
}

pub struct AccelDevice {
    pub function: PciFunction,
    pub regs: Arc<Mutex<Accelerator>>,
    /// The VRAM the VMM maps at BAR2.
    pub vram: Arc<Vram>,
    pub msix: SharedMsix,
}

/// Builds the function and its device model; `msi` receives the MSI-X
/// vectors (one per queue, then the error vector).
pub fn build_accelerator(
    spec: AccelSpec,
    msi: Arc<dyn MsiSink>,
    deps: AccelDeps,
) -> io::Result<AccelDevice> {
    let vram = Arc::new(Vram::new(&spec.name, spec.config.vram_size)?);
    let mut cs = ConfigSpace::type0(VENDOR, DEVICE, CLASS_PROCESSING_ACCELERATOR, REVISION);
    add_pcie_capability(&mut cs, PortType::Endpoint, spec.link);
    let mut f = PciFunction::new(cs);
    f.add_power_management();
    let vectors = spec.config.queues as u16 + 1;
    let msix = f.add_msix(vectors, BAR_MSIX, msi);
    if let Some(pin) = &spec.intx {
        f.set_intx(pin.clone());
    }
    let regs = Arc::new(Mutex::new(Accelerator::new(
        spec.config,
        deps,
        Interrupts::new(msix.clone(), spec.intx),
    )));
    f.add_bar(
        BAR_REGS,
        super::regs::BAR0_SIZE,
        BarKind::Mem64 {
            prefetchable: false,
        },
        regs.clone(),
    );
    f.add_bar(
        BAR_VRAM,
        vram.size(),
        BarKind::Mem64 { prefetchable: true },
        Arc::new(VramBar(vram.clone())),
    );
    Ok(AccelDevice {
        function: f,
        regs,
        vram,
        msix,
    })
}
