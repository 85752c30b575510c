//! Builds the CXL hierarchy's devices from the plan, puts them on the PCI
//! segment and the MMIO bus, and programs bus numbers, bridge windows and
//! BARs as firmware would, so the guest finds everything already placed.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use devices::cxl::component::{Cdat, ComponentBlock, ComponentKind, ComponentRegisters, HdmConfig};
use devices::cxl::mailbox::{DeviceRegisters, FileLabels, LabelStorage, MemoryLabels};
use devices::cxl::port::{build_port, PortRole};
use devices::cxl::type3::{build_type3, Type3Spec, MSIX_VECTORS};
use devices::pci::{Bdf, InterruptAllocator, IntxPin, LinkParams, PciDevice, PciFunction, PciRoot};
use devices::Bus;
use fabric::topology::{Attach, Topology};

use crate::irq::intx_gsi;

/// Type-3 functions and accelerators signal INTx on INTA#.
pub(crate) const INTA: u8 = 1;

use super::plan::{CxlPlan, FunctionKind, FunctionPlan, CHBCR_SIZE};
use super::regions::DecoderSources;
use devices::cxl::backing::Type3Backing;

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("type3[{index}] ({id}): interrupt vectors: {source}")]
    Interrupts {
        index: usize,
        id: String,
        source: std::io::Error,
    },
    #[error("type3[{index}] ({id}): label storage {path}: {source}")]
    Labels {
        index: usize,
        id: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("placing CHBCR: {0}")]
    Bus(#[from] devices::BusError),
    #[error("type3[{index}] ({id}): memory backing: {source}")]
    Backing {
        index: usize,
        id: String,
        source: std::io::Error,
    },
}

/// Handles the VMM keeps to the built devices: their decoders feed the
/// region map, their backings serve it.
pub struct CxlDevices {
    pub decoders: DecoderSources,
    /// Indexed like the topology's type-3 list.
    pub backings: Vec<Arc<Type3Backing>>,
    /// The type-3 devices' mailbox registers, indexed like the backings
    /// (the control API injects poison and events through them).
    pub registers: Vec<Arc<Mutex<DeviceRegisters>>>,
}

const COMMAND_MEMORY_AND_MASTER: u32 = 0b110;

pub(crate) fn link_params(topo: &Topology, kind: FunctionKind, port_number: u8) -> LinkParams {
    let link = match kind {
        FunctionKind::Type3 { index } => Some(&topo.type3[index].link),
        FunctionKind::Accelerator { index } => Some(&topo.accelerators[index].link),
        FunctionKind::SwitchUpstream { switch } => Some(&topo.switches[switch].link),
        // A port's own link is the one to whatever is plugged into it.
        FunctionKind::RootPort { host_bridge, port } => topo
            .child_at(Attach::RootPort { host_bridge, port })
            .and_then(|c| topo.link_of(c)),
        FunctionKind::SwitchDownstream { switch, port } => topo
            .child_at(Attach::SwitchPort { switch, port })
            .and_then(|c| topo.link_of(c)),
    };
    LinkParams {
        gen: link.map_or(5, |l| l.gen),
        width: link.map_or(16, |l| l.width),
        port_number,
    }
}

fn labels(topo: &Topology, index: usize) -> Result<Box<dyn LabelStorage>, BuildError> {
    let d = &topo.type3[index];
    match &d.persistent_path {
        // Labels of a persistent device persist beside its media file.
        Some(p) => {
            let path = PathBuf::from(format!("{p}.lsa"));
            FileLabels::open(&path, d.lsa)
                .map(|l| Box::new(l) as Box<dyn LabelStorage>)
                .map_err(|source| BuildError::Labels {
                    index,
                    id: d.id.clone(),
                    path,
                    source,
                })
        }
        None => Ok(Box::new(MemoryLabels::new(d.lsa as usize))),
    }
}

/// Writes a dword of config space the way the guest would. The function is
/// not on the segment yet: [`PciRoot::add`] places the BARs it then decodes.
fn cfg_write(f: &mut PciFunction, reg: usize, v: u32) {
    let _ = f.write_config(reg, 0, &v.to_le_bytes());
}

/// Firmware-style setup: BARs, bridge buses and windows, decode enabled.
pub(crate) fn program(f: &mut PciFunction, p: &FunctionPlan) {
    for &(bar, addr) in &p.bars {
        cfg_write(f, 4 + bar, addr as u32);
        cfg_write(f, 5 + bar, (addr >> 32) as u32);
    }
    if p.kind.is_bridge() {
        cfg_write(
            f,
            6,
            u32::from(p.bus) | (u32::from(p.secondary) << 8) | (u32::from(p.subordinate) << 16),
        );
        if let Some((base, limit)) = p.window {
            cfg_write(
                f,
                8,
                ((base >> 16) as u32 & 0xfff0) | (((limit >> 16) as u32 & 0xfff0) << 16),
            );
        }
        // Prefetchable window closed (base above limit).
        cfg_write(f, 9, 0x0000_fff0);
        cfg_write(f, 10, 0);
        cfg_write(f, 11, 0);
    }
    cfg_write(f, 1, COMMAND_MEMORY_AND_MASTER);
}

pub fn build(
    topo: &Topology,
    plan: &CxlPlan,
    pci: &mut PciRoot,
    mmio: &Bus,
    irq: &dyn InterruptAllocator,
) -> Result<CxlDevices, BuildError> {
    let mut backings = Vec::new();
    for (index, d) in topo.type3.iter().enumerate() {
        let b = Type3Backing::new(
            &d.id,
            d.volatile,
            d.persistent,
            d.persistent_path.as_deref().map(std::path::Path::new),
        )
        .map_err(|source| BuildError::Backing {
            index,
            id: d.id.clone(),
            source,
        })?;
        backings.push(Arc::new(b));
    }
    let mut devs = CxlDevices {
        decoders: DecoderSources {
            host_bridges: Vec::new(),
            switches: Vec::new(),
            type3: Vec::new(),
        },
        backings,
        registers: Vec::new(),
    };
    let mut registers = Vec::new();
    for (h, hb) in plan.host_bridges.iter().enumerate() {
        let hdm = HdmConfig {
            target_count: topo.host_bridges[h].root_ports.clamp(1, 8) as u8,
            ..HdmConfig::default()
        };
        let chbcr = Arc::new(ComponentBlock::new(ComponentRegisters::new(
            ComponentKind::HostBridge,
            Some(hdm),
        )));
        mmio.insert(chbcr.clone(), hb.chbcr, CHBCR_SIZE)?;
        devs.decoders.host_bridges.push(chbcr);
    }
    for p in &plan.functions {
        let link = link_params(topo, p.kind, p.port_number);
        let mut f = match p.kind {
            FunctionKind::RootPort { .. } => build_port(PortRole::Root, link, None).function,
            FunctionKind::SwitchUpstream { switch } => {
                let n = topo.switches[switch].downstream_ports.min(255) as u8;
                let port = build_port(
                    PortRole::SwitchUpstream {
                        downstream_ports: n,
                    },
                    link,
                    fabric::cdat::switch_cdat(topo, switch).map(|c| Cdat::from(&c)),
                );
                devs.decoders.switches.push((switch, port.component));
                port.function
            }
            FunctionKind::SwitchDownstream { .. } => {
                build_port(PortRole::SwitchDownstream, link, None).function
            }
            FunctionKind::Type3 { index } => {
                let d = &topo.type3[index];
                let dev = build_type3(
                    Type3Spec {
                        volatile_bytes: d.volatile,
                        persistent_bytes: d.persistent,
                        serial: d.serial,
                        lsa: labels(topo, index)?,
                        link,
                        cdat: Cdat::from(
                            &fabric::cdat::device_cdat(topo, index).unwrap_or_default(),
                        ),
                        intx: plan
                            .intx_root_route(p.bus, p.device, INTA)
                            .map(|(slot, pin)| {
                                IntxPin::new(INTA, irq.intx_line(intx_gsi(slot, pin)))
                            }),
                        // Clear Poison's data lands in the device's media.
                        media: Some(devs.backings[index].clone()),
                    },
                    irq.msix_vectors(MSIX_VECTORS)
                        .map_err(|source| BuildError::Interrupts {
                            index,
                            id: d.id.clone(),
                            source,
                        })?,
                );
                devs.decoders.type3.push((index, dev.component.clone()));
                registers.push((index, dev.registers.clone()));
                dev.function
            }
            // Built by `crate::accel`, with the guest memory, region map
            // and timing engine their DMA needs.
            FunctionKind::Accelerator { .. } => continue,
        };
        program(&mut f, p);
        pci.add(Bdf::new(p.bus, p.device, 0), f);
    }
    registers.sort_by_key(|(index, _)| *index);
    devs.registers = registers.into_iter().map(|(_, r)| r).collect();
    Ok(devs)
}
