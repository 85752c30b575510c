//! Configuration space of every function kind the guest finds: type-3
//! device, root port, switch upstream and downstream port, host bridge;
//! accesses as ECAM delivers them (1, 2 or 4 bytes, naturally aligned,
//! anywhere in the 4 KiB), so BARs move, bridge windows and bus numbers
//! change, capabilities (MSI, MSI-X, PM, PCIe, DOE, DVSECs) are poked;
//! then accesses to whatever BARs the function decodes. The BARs moved and
//! placed as each write reports them must be the ones the function decodes.

use std::sync::Arc;

use devices::cxl::component::Cdat;
use devices::cxl::mailbox::MemoryLabels;
use devices::cxl::port::{build_port, PortRole};
use devices::cxl::type3::{build_type3, Type3Spec};
use devices::pci::{BarMapping, BarRange, HostBridge, LinkParams, PciDevice};

use super::NoMsi;
use crate::input::Input;

const LINK: LinkParams = LinkParams {
    gen: 5,
    width: 8,
    port_number: 1,
};

fn function(kind: u64) -> Box<dyn PciDevice> {
    match kind {
        0 => Box::new(
            build_type3(
                Type3Spec {
                    volatile_bytes: 256 << 20,
                    persistent_bytes: 256 << 20,
                    serial: 9,
                    lsa: Box::new(MemoryLabels::new(4096)),
                    link: LINK,
                    cdat: Cdat::default(),
                    intx: None,
                    media: None,
                },
                Arc::new(NoMsi),
            )
            .function,
        ),
        1 => Box::new(build_port(PortRole::Root, LINK, None).function),
        2 => Box::new(
            build_port(
                PortRole::SwitchUpstream {
                    downstream_ports: 4,
                },
                LINK,
                Some(Cdat::default()),
            )
            .function,
        ),
        3 => Box::new(build_port(PortRole::SwitchDownstream, LINK, None).function),
        _ => Box::new(HostBridge::default()),
    }
}

pub fn fuzz_config_space(data: &[u8]) {
    let mut input = Input::new(data);
    let mut f = function(input.range(0, 4));
    // The decoding BARs, as the MMIO bus would follow them.
    let mut bars: Vec<BarMapping> = f.decoding_bars();
    let mut steps = 0;
    while !input.is_empty() && steps < 256 {
        steps += 1;
        match input.range(0, 5) {
            0..=2 => {
                // Often the header (BARs, command, bridge windows).
                let reg = if input.bool() {
                    input.range(0, 15) as usize
                } else {
                    input.range(0, 1023) as usize
                };
                let len = input.pick(&[1usize, 2, 4]);
                let offset = input.range(0, 3) as usize / len * len;
                let d = input.data(len);
                let changes = f.write_config(reg, offset, &d);
                for r in &changes.removed {
                    let at = bars.iter().position(|b| b.range == *r);
                    bars.remove(at.expect("a BAR that was not placed moved away"));
                }
                bars.extend(changes.added);
                let mut followed: Vec<BarRange> = bars.iter().map(|b| b.range).collect();
                let mut decoding: Vec<BarRange> =
                    f.decoding_bars().iter().map(|b| b.range).collect();
                followed.sort_by_key(|r| r.index);
                decoding.sort_by_key(|r| r.index);
                assert_eq!(followed, decoding, "reported BAR changes lost track");
            }
            3 => {
                let _ = f.read_config(input.range(0, 1023) as usize);
            }
            // What the bus would route to a decoded BAR.
            4 => {
                if bars.is_empty() {
                    continue;
                }
                let bar = &bars[input.range(0, bars.len() as u64 - 1) as usize];
                let offset = input.range(0, bar.range.size.saturating_sub(1));
                let w = input.pick(&[1usize, 2, 4, 8]);
                let d = input.data(w);
                bar.device.write(offset, &d);
            }
            _ => {
                if bars.is_empty() {
                    continue;
                }
                let bar = &bars[input.range(0, bars.len() as u64 - 1) as usize];
                let offset = input.range(0, bar.range.size.saturating_sub(1));
                let mut d = vec![0u8; input.pick(&[1usize, 2, 4, 8])];
                bar.device.read(offset, &mut d);
            }
        }
    }
}
