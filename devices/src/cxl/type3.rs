//! A CXL type-3 memory expander as a PCIe endpoint: the config space Linux's
//! cxl_pci expects (class 05/02/10, PCIe, MSI-X, DSN, the device DVSECs, the
//! register locator, DOE serving CDAT, AER), BAR0 = component registers with
//! HDM decoders, BAR2 = device registers with the mailbox, BAR4 = MSI-X.

use std::sync::{Arc, Mutex};

use super::backing::Type3Backing;
use super::component::{
    Cdat, ComponentBlock, ComponentKind, ComponentRegisters, Doe, HdmConfig, COMPONENT_REGS_SIZE,
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
    /// The CDAT the device serves over DOE (from `fabric::cdat::device_cdat`).
    pub cdat: Cdat,
    /// INTA#, used while MSI-X is off (None: no INTx pin).
    pub intx: Option<Arc<IntxPin>>,
    /// The device's media: Clear Poison writes its data there (None: the
    /// data is dropped, the poison still clears).
    pub media: Option<Arc<Type3Backing>>,
}

pub struct Type3Device {
    pub function: PciFunction,
    pub component: Arc<ComponentBlock>,
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
        let cdat = spec.cdat;
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
    let component = Arc::new(ComponentBlock::new(ComponentRegisters::new(
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
    if let Some(media) = spec.media {
        regs.set_media_writer(Box::new(move |dpa, data| media.write(dpa, data)));
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cxl::mailbox::MemoryLabels;
    use crate::pci::MsiSink;
    use crate::BusDeviceMut;

    struct NoMsi;
    impl MsiSink for NoMsi {
        fn route(&self, _: u16, _: u64, _: u32) {}
        fn trigger(&self, _: u16) {}
    }

    // Mailbox registers (CXL 3.1 8.2.8.4) at the primary mailbox, 0x88.
    const MBOX_CTRL: u64 = 0x88 + 0x04;
    const MBOX_CMD: u64 = 0x88 + 0x08;
    const MBOX_STATUS: u64 = 0x88 + 0x10;
    const MBOX_PAYLOAD: u64 = 0x88 + 0x20;
    const OP_INJECT_POISON: u64 = 0x4301;
    const OP_CLEAR_POISON: u64 = 0x4302;

    /// Runs one mailbox command; returns its return code.
    fn command(regs: &mut DeviceRegisters, opcode: u64, payload: &[u8]) -> u64 {
        regs.write(MBOX_PAYLOAD, payload);
        let cmd = opcode | ((payload.len() as u64) << 16);
        regs.write(MBOX_CMD, &cmd.to_le_bytes());
        regs.write(MBOX_CTRL, &1u32.to_le_bytes());
        let mut status = [0u8; 8];
        regs.read(MBOX_STATUS, &mut status);
        (u64::from_le_bytes(status) >> 32) & 0xffff
    }

    #[test]
    fn clear_poison_writes_its_data_to_the_backing() {
        const VOLATILE: u64 = 256 << 20;
        let media = Arc::new(Type3Backing::new("t", VOLATILE, 256 << 20, None).unwrap());
        let dev = build_type3(
            Type3Spec {
                volatile_bytes: VOLATILE,
                persistent_bytes: 256 << 20,
                serial: 7,
                lsa: Box::new(MemoryLabels::new(4096)),
                link: LinkParams {
                    gen: 5,
                    width: 8,
                    port_number: 0,
                },
                cdat: Cdat::default(),
                intx: None,
                media: Some(media.clone()),
            },
            Arc::new(NoMsi),
        );
        let mut regs = dev.registers.lock().unwrap();
        // A line in each partition: poisoned, then cleared with new data.
        for dpa in [0x1000u64, VOLATILE + 0x40] {
            assert_eq!(command(&mut regs, OP_INJECT_POISON, &dpa.to_le_bytes()), 0);
            let mut clear = dpa.to_le_bytes().to_vec();
            clear.extend([0x5a; 64]);
            assert_eq!(command(&mut regs, OP_CLEAR_POISON, &clear), 0);
            let mut line = [0u8; 66];
            media.read(dpa - 1, &mut line);
            assert_eq!(line[0], 0, "the byte before is untouched");
            assert_eq!(&line[1..65], &[0x5a; 64], "DPA {dpa:#x}");
            assert_eq!(line[65], 0, "the byte after is untouched");
        }
        assert!(regs.poison_records().is_empty());
    }
}
