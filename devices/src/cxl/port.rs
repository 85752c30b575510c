//! CXL ports as PCIe bridges: root ports on a host bridge's root bus, and a
//! switch's upstream and downstream ports. Each carries the port DVSECs, a
//! register locator pointing BAR0 at its component registers (HDM decoders on
//! upstream ports), MSI for its PCIe services, and — on upstream ports — DOE
//! serving the switch's CDAT (SSLBIS).

use std::sync::Arc;

use super::component::{
    Cdat, ComponentBlock, ComponentKind, ComponentRegisters, Doe, HdmConfig, COMPONENT_REGS_SIZE,
};
use super::dvsec::{self, LocatorEntry, RegisterBlock};
use super::DoeHook;
use crate::pci::{
    add_aer, add_msi_capability, add_pcie_capability, BarKind, ConfigSpace, LinkParams,
    PciFunction, PortType, EXT_CAP_ID_DOE,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortRole {
    Root,
    SwitchUpstream { downstream_ports: u8 },
    SwitchDownstream,
}

pub struct PortDevice {
    pub function: PciFunction,
    pub component: Arc<ComponentBlock>,
}

/// IDs of QEMU's cxl-rp, cxl-upstream and cxl-downstream.
fn ids(role: PortRole) -> (u16, u16) {
    match role {
        PortRole::Root => (0x8086, 0x7075),
        PortRole::SwitchUpstream { .. } => (0x19e5, 0xa128),
        PortRole::SwitchDownstream => (0x19e5, 0xa129),
    }
}

pub fn build_port(role: PortRole, link: LinkParams, cdat: Option<Cdat>) -> PortDevice {
    let (vendor, device) = ids(role);
    let mut cs = ConfigSpace::type1(vendor, device, 0);
    let (pcie_type, kind) = match role {
        PortRole::Root => (PortType::RootPort, ComponentKind::RootPort),
        PortRole::SwitchUpstream { .. } => {
            (PortType::SwitchUpstream, ComponentKind::SwitchUpstream)
        }
        PortRole::SwitchDownstream => (PortType::SwitchDownstream, ComponentKind::SwitchDownstream),
    };
    add_pcie_capability(&mut cs, pcie_type, link);
    add_msi_capability(&mut cs);
    // Extensions and GPF DVSECs belong to root ports and downstream ports.
    if !matches!(role, PortRole::SwitchUpstream { .. }) {
        dvsec::add_port_extensions_dvsec(&mut cs);
        dvsec::add_gpf_port_dvsec(&mut cs);
    }
    dvsec::add_flex_bus_dvsec(&mut cs);
    dvsec::add_register_locator(
        &mut cs,
        &[LocatorEntry {
            bar: 0,
            block: RegisterBlock::Component,
            offset: 0,
        }],
    );
    let doe_off = match (&cdat, role) {
        (Some(_), PortRole::SwitchUpstream { .. }) => cs.reserve_ext_capability(
            EXT_CAP_ID_DOE,
            1,
            usize::from(super::component::doe::DOE_CAP_SIZE),
        ),
        _ => None,
    };
    if role == PortRole::Root {
        add_aer(&mut cs);
    }

    let mut f = PciFunction::new(cs);
    f.add_power_management();
    if let (Some(off), Some(cdat)) = (doe_off, cdat) {
        f.add_config_hook(
            off + 4,
            usize::from(super::component::doe::DOE_CAP_SIZE) - 4,
            Box::new(DoeHook(Doe::with_cdat(cdat))),
        );
    }
    let hdm = match role {
        PortRole::SwitchUpstream { downstream_ports } => Some(HdmConfig {
            target_count: downstream_ports.clamp(1, 8),
            ..HdmConfig::default()
        }),
        _ => None,
    };
    let component = Arc::new(ComponentBlock::new(ComponentRegisters::new(kind, hdm)));
    f.add_bar(
        0,
        COMPONENT_REGS_SIZE,
        BarKind::Mem64 {
            prefetchable: false,
        },
        component.clone(),
    );
    PortDevice {
        function: f,
        component,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pci::{CAP_ID_MSI, CAP_ID_PCIE, CAP_ID_PM};

    #[test]
    fn every_port_has_pcie_msi_and_power_management_capabilities() {
        for role in [
            PortRole::Root,
            PortRole::SwitchUpstream {
                downstream_ports: 4,
            },
            PortRole::SwitchDownstream,
        ] {
            let link = LinkParams {
                gen: 5,
                width: 16,
                port_number: 0,
            };
            let f = build_port(role, link, None).function;
            for id in [CAP_ID_PCIE, CAP_ID_MSI, CAP_ID_PM] {
                assert!(
                    f.find_capability(id).is_some(),
                    "{role:?}: capability {id:#x}"
                );
            }
        }
    }
}
