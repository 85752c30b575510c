//! A CXL type-3 memory expander as a PCIe endpoint: the config space Linux's
//! cxl_pci expects (class 05/02/10, PCIe, MSI-X, DSN, the device DVSECs, the
//! register locator, DOE serving CDAT, AER), BAR0 = component registers with
//! HDM decoders, BAR2 = device registers with the mailbox, BAR4 = MSI-X.

use std::sync::{Arc, Mutex};

use super::component::{
    AccessPerf, Cdat, ComponentKind, ComponentRegisters, Doe, HdmConfig, COMPONENT_REGS_SIZE,
};
use super::dvsec::{self, LocatorEntry, RegisterBlock};
use super::mailbox::{DeviceRegisters, LabelStorage, Type3Config, DEVICE_REGS_SIZE};
use super::DoeHook;
use crate::pci::{
    add_aer, add_dsn, add_pcie_capability, BarKind, ConfigSpace, IntxPin, LinkParams, MsiSink,
    PciFunction, PortType, SharedMsix, EXT_CAP_ID_DOE,
};

/// IDs QEMU's cxl-type3 uses; tools and docs know them.
const VENDOR: u16 = 0x8086;
const DEVICE: u16 = 0x0d93;
/// Class 05 (memory controller), subclass 02 (CXL), prog-if 0x10 (CXL 2.0 memory device).
const CLASS_CXL_MEMORY: u32 = 0x05_02_10;
/// Mailbox on vector 0, four event logs on 1-4; a few spare.
/// MSI-X vectors each type-3 function exposes.
pub const MSIX_VECTORS: u16 = 8;

pub const BAR_COMPONENT: usize = 0;
pub const BAR_DEVICE_REGS: usize = 2;
pub const BAR_MSIX: usize = 4;

pub struct Type3Spec {
    pub volatile_bytes: u64,
    pub persistent_bytes: u64,
    pub serial: u64,
    pub lsa: Box<dyn LabelStorage>,
    pub link: LinkParams,
    /// What CDAT reports for the device's own media.
    pub perf: AccessPerf,
    /// INTA#, used while MSI-X is off (None: no INTx pin).
    pub intx: Option<Arc<IntxPin>>,
}

pub struct Type3Device {
    pub function: PciFunction,
    pub component: Arc<Mutex<ComponentRegisters>>,
    pub registers: Arc<Mutex<DeviceRegisters>>,
    pub msix: SharedMsix,
}

pub fn build_type3(spec: Type3Spec, msi: Arc<dyn MsiSink>) -> Type3Device {
    let capacity = spec.volatile_bytes + spec.persistent_bytes;
    let mut cs = ConfigSpace::type0(VENDOR, DEVICE, CLASS_CXL_MEMORY, 0);
    add_pcie_capability(&mut cs, PortType::Endpoint, spec.link);
    add_dsn(&mut cs, spec.serial);
    dvsec::add_device_dvsec(&mut cs, capacity);
    dvsec::add_gpf_device_dvsec(&mut cs);
    dvsec::add_flex_bus_dvsec(&mut cs);
    dvsec::add_register_locator(
        &mut cs,
        &[
            LocatorEntry {
                bar: BAR_COMPONENT as u8,
                block: RegisterBlock::Component,
                offset: 0,
            },
            LocatorEntry {
                bar: BAR_DEVICE_REGS as u8,
                block: RegisterBlock::MemoryDevice,
                offset: 0,
            },
        ],
    );
    let doe_off = cs.reserve_ext_capability(
        EXT_CAP_ID_DOE,
        1,
        usize::from(super::component::doe::DOE_CAP_SIZE),
    );
    add_aer(&mut cs);

    let mut f = PciFunction::new(cs);
    f.add_power_management();
    let msix = f.add_msix(MSIX_VECTORS, BAR_MSIX, msi);
    if let Some(off) = doe_off {
        let cdat = Cdat::for_type3(spec.volatile_bytes, spec.persistent_bytes, spec.perf);
        f.add_config_hook(
            off + 4,
            usize::from(super::component::doe::DOE_CAP_SIZE) - 4,
            Box::new(DoeHook(Doe::with_cdat(cdat))),
        );
    }

    let hdm = HdmConfig {
        target_count: 0,
        dpa_capacity: capacity,
        three_six_twelve: true,
        sixteen_way: true,
        ..HdmConfig::default()
    };
    let component = Arc::new(Mutex::new(ComponentRegisters::new(
        ComponentKind::Endpoint,
        Some(hdm),
    )));
    f.add_bar(
        BAR_COMPONENT,
        COMPONENT_REGS_SIZE,
        BarKind::Mem64 {
            prefetchable: false,
        },
        component.clone(),
    );

    let mut regs = DeviceRegisters::new(Type3Config {
        volatile_bytes: spec.volatile_bytes,
        persistent_bytes: spec.persistent_bytes,
        serial: spec.serial,
        lsa: spec.lsa,
        fw_revision: format!("cxlvmm {}", env!("CARGO_PKG_VERSION")),
    });
    // MSI-X when the host enabled it; otherwise INTA#, held until the host
    // next writes the mailbox control register.
    let intx = spec.intx.clone();
    if let Some(pin) = &intx {
        f.set_intx(pin.clone());
        let pin = pin.clone();
        regs.set_interrupt_ack(Box::new(move || pin.set_pending(false)));
    }
    let irq = msix.clone();
    regs.set_interrupt(Box::new(move |v| {
        let mut table = irq.lock().unwrap_or_else(|e| e.into_inner());
        match &intx {
            Some(pin) if !table.enabled() => pin.set_pending(true),
            _ => table.trigger(v),
        }
    }));
    let registers = Arc::new(Mutex::new(regs));
    f.add_bar(
        BAR_DEVICE_REGS,
        DEVICE_REGS_SIZE,
        BarKind::Mem64 {
            prefetchable: false,
        },
        registers.clone(),
    );

    Type3Device {
        function: f,
        component,
        registers,
        msix,
    }
}
