//! The accelerator's command queues and register block
//! (docs/accelerator.md): byte programs for `devices::accel::fuzz` — queue
//! setups, doorbells, descriptors of every opcode with hostile addresses
//! and lengths, resets, time passing — with the device's invariants checked
//! after every step; then the first 64 bytes alone as one descriptor.

use devices::accel::command::{parse, DESCRIPTOR_SIZE};
use devices::accel::fuzz::run_program;

pub fn fuzz_accel_queue(data: &[u8]) {
    run_program(data);
    if let Some(d) = data.get(..DESCRIPTOR_SIZE) {
        let mut b = [0u8; DESCRIPTOR_SIZE];
        b.copy_from_slice(d);
        let _ = parse(&b);
    }
}
