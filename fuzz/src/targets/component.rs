//! Whole component register blocks of every kind (host bridge, root port,
//! switch ports, endpoint): RAS, link, HDM and everything around them, at
//! any offset and width, in and past the 64 KiB block.

use devices::cxl::component::{ComponentKind, ComponentRegisters, COMPONENT_REGS_SIZE};

use crate::input::Input;

pub fn fuzz_component_registers(data: &[u8]) {
    let mut input = Input::new(data);
    let kind = input.pick(&[
        ComponentKind::HostBridge,
        ComponentKind::RootPort,
        ComponentKind::SwitchUpstream,
        ComponentKind::SwitchDownstream,
        ComponentKind::Endpoint,
    ]);
    let mut regs = ComponentRegisters::new(kind, None);
    let mut steps = 0;
    while !input.is_empty() && steps < 256 {
        steps += 1;
        // Mostly the CXL.cache/mem area (0x1000..0x2000), where the
        // capabilities are.
        let offset = if input.range(0, 3) > 0 {
            0x1000 + input.range(0, 0x1000)
        } else {
            input.range(0, COMPONENT_REGS_SIZE + 16)
        };
        let w = input.width();
        if input.bool() {
            let d = input.data(w);
            regs.write(offset, &d);
        } else {
            let mut d = vec![0u8; w];
            regs.read(offset, &mut d);
        }
        // Error injection (as the VMM does) between guest accesses.
        if input.range(0, 15) == 0 {
            let bits = input.u32();
            if let Some(ras) = regs.ras_mut() {
                if bits & 1 == 0 {
                    ras.inject_uncorrectable(bits);
                } else {
                    ras.inject_correctable(bits);
                }
            }
        }
    }
    let _ = regs.committed_decoders();
    let _ = regs.hdm_enabled();
}
