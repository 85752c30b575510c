//! HDM decoder programming and commit sequences (CXL 3.1 8.2.4.20) on the
//! three kinds that decode: host bridge, switch upstream port, endpoint.
//! Mostly well-formed sequences (base, size, targets or DPA skip, then
//! control with Commit), with bases outside any sane range, zero and
//! misaligned sizes, reserved IW/IG encodings, out-of-order commits,
//! Lock-On-Commit and resets; after every step the committed decoders must
//! satisfy what a commit promises.

use devices::cxl::component::hdm::HDM_ALIGN;
use devices::cxl::component::{
    ComponentKind, ComponentRegisters, DecoderState, HdmConfig, HdmEvent, HdmEvents,
};

use crate::input::Input;

/// The HDM capability's registers inside the component block: CXL.cache/mem
/// area at 0x1000, HDM capability at 0x128 in it (devices' caps layout).
const HDM: u64 = 0x1000 + 0x128;
const GLOBAL_CONTROL: u64 = HDM + 0x04;
const DECODER: u64 = HDM + 0x10;
const STRIDE: u64 = 0x20;

/// Commits minus resets the block reported for one write.
fn balance(events: HdmEvents) -> i64 {
    events
        .iter()
        .map(|e| match e {
            HdmEvent::Committed { .. } => 1,
            HdmEvent::Reset { .. } => -1,
        })
        .sum()
}

fn write32(regs: &mut ComponentRegisters, net: &mut i64, offset: u64, v: u32) {
    *net += balance(regs.write(offset, &v.to_le_bytes()));
}

fn check(kind: ComponentKind, capacity: u64, decoders: &[DecoderState]) {
    let mut dpa_end = 0u64;
    for d in decoders {
        assert!(d.size > 0 && d.size % HDM_ALIGN == 0, "{d:?}");
        assert_eq!(d.base % HDM_ALIGN, 0, "{d:?}");
        assert!(d.base.checked_add(d.size).is_some(), "{d:?}");
        assert!([1, 2, 3, 4, 6, 8, 12, 16].contains(&d.ways), "{d:?}");
        assert!(d.granularity.is_power_of_two() && (256..=16384).contains(&d.granularity));
        // Committed ranges are disjoint (the model, like QEMU's, lets a
        // decoder sit below a lower-numbered one).
        for o in decoders.iter().filter(|o| o.index != d.index) {
            assert!(
                d.base + d.size <= o.base || o.base + o.size <= d.base,
                "{decoders:?}"
            );
        }
        if kind == ComponentKind::Endpoint {
            // Each way maps whole 256 MiB units of the device (ports may
            // split a range unevenly; their endpoints' decoders may not).
            assert_eq!(d.size % (HDM_ALIGN * u64::from(d.ways)), 0, "{d:?}");
            assert!(d.dpa_base >= dpa_end, "{decoders:?}");
            dpa_end = d.dpa_base + d.dpa_len();
            assert!(dpa_end <= capacity, "DPA past the capacity: {decoders:?}");
        } else {
            assert_eq!(d.targets.len(), usize::from(d.ways), "{d:?}");
        }
    }
}

pub fn fuzz_hdm_decoders(data: &[u8]) {
    let mut input = Input::new(data);
    let kind = input.pick(&[
        ComponentKind::HostBridge,
        ComponentKind::SwitchUpstream,
        ComponentKind::Endpoint,
    ]);
    let capacity = input.range(0, 8) * HDM_ALIGN;
    let cfg = HdmConfig {
        decoders: input.pick(&[1, 2, 4, 10, 16, 0, 3]),
        target_count: input.pick(&[0, 1, 2, 4, 8, 9]),
        three_six_twelve: input.bool(),
        sixteen_way: input.bool(),
        dpa_capacity: capacity,
        ..HdmConfig::default()
    };
    let mut regs = ComponentRegisters::new(kind, Some(cfg));
    // Commits minus resets reported so far: the region mapper's view.
    let mut net = 0i64;
    let mut steps = 0;
    while !input.is_empty() && steps < 128 {
        steps += 1;
        match input.range(0, 6) {
            // Program one decoder and commit it (or not).
            0..=3 => {
                let n = input.range(0, 17);
                let reg = DECODER + n * STRIDE;
                let unit = |input: &mut Input| -> u64 {
                    match input.range(0, 3) {
                        0 => input.u64(),
                        _ => input.range(0, 64) * HDM_ALIGN,
                    }
                };
                let base = unit(&mut input);
                let size = unit(&mut input);
                write32(&mut regs, &mut net, reg, base as u32);
                write32(&mut regs, &mut net, reg + 4, (base >> 32) as u32);
                write32(&mut regs, &mut net, reg + 8, size as u32);
                write32(&mut regs, &mut net, reg + 0xc, (size >> 32) as u32);
                let target = input.u64();
                write32(&mut regs, &mut net, reg + 0x14, target as u32);
                write32(&mut regs, &mut net, reg + 0x18, (target >> 32) as u32);
                // IG [3:0], IW [7:4] (reserved values included), lock, commit.
                let control = (input.u32() & 0xff)
                    | if input.bool() { 1 << 8 } else { 0 }
                    | if input.range(0, 3) > 0 { 1 << 9 } else { 0 };
                write32(&mut regs, &mut net, reg + 0x10, control);
            }
            4 => write32(&mut regs, &mut net, GLOBAL_CONTROL, input.u32()),
            5 => {
                let offset = input.range(0, 0x10000 + 16);
                let w = input.width();
                let d = input.data(w);
                net += balance(regs.write(offset, &d));
            }
            _ => {
                let offset = input.range(0, 0x10000 + 16);
                let mut d = vec![0u8; input.width()];
                regs.read(offset, &mut d);
            }
        }
        let committed = regs.committed_decoders();
        check(kind, capacity, &committed);
        assert_eq!(net, committed.len() as i64, "events and decoders disagree");
    }
}
