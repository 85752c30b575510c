//! A type-3 device's register block (CXL 3.1 8.2.8): capability headers,
//! device status, the primary mailbox with every command (random opcodes,
//! payloads of any length, including longer than the payload area and
//! doorbells rung in every state), memory device status; event records
//! pushed in between.

use devices::cxl::mailbox::{
    DeviceRegisters, EventLog, MemoryLabels, Type3Config, DEVICE_REGS_SIZE, MAILBOX_PAYLOAD_SIZE,
    POISON_LIST_MAX,
};
use devices::BusDeviceMut;

use crate::input::Input;

const MBOX: u64 = 0x88;
const MBOX_CTRL: u64 = MBOX + 0x04;
const MBOX_CMD: u64 = MBOX + 0x08;
const MBOX_STATUS: u64 = MBOX + 0x10;
const MBOX_PAYLOAD: u64 = MBOX + 0x20;

/// Opcodes the device implements (and neighbours), so that random inputs
/// reach the handlers often; any u16 is tried too.
const OPCODES: &[u16] = &[
    0x0001, 0x0100, 0x0101, 0x0102, 0x0103, 0x0200, 0x0300, 0x0301, 0x0400, 0x0401, 0x4000, 0x4100,
    0x4101, 0x4102, 0x4103, 0x4200, 0x4300, 0x4301, 0x4302, 0x4303, 0x4400, 0xcd00,
];

fn device(persistent: bool, lsa: usize) -> DeviceRegisters {
    let mut regs = DeviceRegisters::new(Type3Config {
        volatile_bytes: 256 << 20,
        persistent_bytes: if persistent { 256 << 20 } else { 0 },
        serial: 0x1234,
        lsa: Box::new(MemoryLabels::new(lsa)),
        fw_revision: "fuzz".into(),
    });
    regs.set_interrupt(Box::new(|_| {}));
    regs.set_interrupt_ack(Box::new(|| {}));
    regs.set_media_writer(Box::new(|dpa, data| {
        // The device validated the line: it lies in the capacity.
        assert!(
            dpa % 64 == 0 && data.len() == 64,
            "clear poison at {dpa:#x}"
        );
        Ok(())
    }));
    regs
}

pub fn fuzz_type3_mailbox(data: &[u8]) {
    let mut input = Input::new(data);
    let persistent = input.bool();
    let lsa = input.pick(&[0usize, 64, 4096, 128 << 10]);
    let mut regs = device(persistent, lsa);
    let mut steps = 0;
    while !input.is_empty() && steps < 256 {
        steps += 1;
        match input.range(0, 5) {
            // A whole command as a driver sends it.
            0 | 1 => {
                let opcode = if input.bool() {
                    input.pick(OPCODES)
                } else {
                    input.u16()
                };
                let payload = input.bytes(MAILBOX_PAYLOAD_SIZE + 64);
                // The length field may disagree with what was written.
                let len = if input.range(0, 7) == 0 {
                    input.range(0, 0x1f_ffff)
                } else {
                    payload.len() as u64
                };
                for (i, chunk) in payload.chunks(8).enumerate() {
                    regs.write(MBOX_PAYLOAD + 8 * i as u64, chunk);
                }
                regs.write(MBOX_CMD, &(u64::from(opcode) | (len << 16)).to_le_bytes());
                regs.write(MBOX_CTRL, &(1u32 | (input.u32() & 2)).to_le_bytes());
                // Commands complete within the doorbell write.
                let mut ctrl = [0u8; 4];
                regs.read(MBOX_CTRL, &mut ctrl);
                assert_eq!(
                    ctrl[0] & 1,
                    0,
                    "doorbell still set after opcode {opcode:#x}"
                );
                let mut status = [0u8; 8];
                regs.read(MBOX_STATUS, &mut status);
                let mut out = vec![0u8; 8];
                for i in 0..(MAILBOX_PAYLOAD_SIZE / 8) as u64 {
                    if input.range(0, 63) == 0 {
                        break;
                    }
                    regs.read(MBOX_PAYLOAD + 8 * i, &mut out);
                }
            }
            // Any register, any width, in and past the block.
            2 => {
                let offset = input.range(0, DEVICE_REGS_SIZE + 64);
                let w = input.width();
                let d = input.data(w);
                regs.write(offset, &d);
            }
            3 => {
                let offset = input.range(0, DEVICE_REGS_SIZE + 64);
                let mut d = vec![0u8; input.width()];
                regs.read(offset, &mut d);
            }
            // The VMM or a test adding event records.
            4 => {
                let log = input.pick(&EventLog::ALL);
                let record = input.bytes(160);
                let _ = regs.push_event(log, &record);
            }
            // Ring the doorbell with whatever the command register holds.
            _ => regs.write(MBOX_CTRL, &input.u32().to_le_bytes()),
        }
    }
    // The poison list stays sorted, disjoint and bounded.
    let poison = regs.poison_records();
    assert!(poison.len() <= POISON_LIST_MAX);
    for pair in poison.windows(2) {
        assert!(pair[0].dpa + pair[0].length <= pair[1].dpa, "{poison:?}");
    }
}
