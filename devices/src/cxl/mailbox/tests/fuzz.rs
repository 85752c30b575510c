//! Seeded random commands and register writes: the device must never panic,
//! must always complete the doorbell, and must only answer defined codes.

use super::*;

/// xorshift64*: tiny, deterministic, good enough to spread inputs.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// Return codes the device can produce.
const DEFINED_RCS: [u16; 9] = [
    RC_SUCCESS,
    RC_INVALID_INPUT,
    RC_UNSUPPORTED,
    4, // internal error (never expected here, but defined)
    RC_INVALID_HANDLE,
    RC_INVALID_PA,
    RC_POISON_LIMIT,
    RC_INVALID_PAYLOAD_LEN,
    RC_INVALID_LOG,
];

fn random_opcode(rng: &mut Rng) -> u16 {
    match rng.below(4) {
        // Mostly implemented commands, so inputs reach the handlers.
        0..=2 => MailboxCommand::ALL[rng.below(MailboxCommand::ALL.len() as u64) as usize].opcode(),
        _ => rng.next() as u16,
    }
}

/// Inputs biased towards plausible ones: right lengths, small offsets,
/// aligned addresses, current event handles.
fn random_input(rng: &mut Rng, opcode: u16) -> Vec<u8> {
    let len = match rng.below(8) {
        0 => rng.below(2049) as usize,
        1 => 0,
        _ => match opcode {
            0x0100 => 1,
            0x0101 => 6 + 2 * rng.below(4) as usize,
            0x0103 => 4 + rng.below(2) as usize,
            0x0301 | 0x4102 | 0x4301 => 8,
            0x0401 => 0x18,
            0x4101 => 10,
            0x4103 => 8 + rng.below(64) as usize,
            0x4300 => 0x10,
            0x4302 => 0x48,
            _ => rng.below(16) as usize,
        },
    };
    let mut input = rng.bytes(len);
    if rng.below(2) == 0 {
        // Small values in the leading fields hit the in-range paths.
        for b in input.iter_mut().take(16) {
            *b &= 0x3;
        }
        if let Some(b) = input.first_mut() {
            *b &= 0xc0;
        }
    }
    if opcode == 0x0401 && len == 0x18 && rng.below(2) == 0 {
        input[..16].copy_from_slice(&CEL);
    }
    input
}

#[test]
fn random_commands_never_panic_and_always_complete() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut h = Harness::new();
    let mut rcs = std::collections::BTreeMap::new();
    for i in 0..30_000u32 {
        if i % 97 == 0 {
            let log = EventLog::ALL[rng.below(4) as usize];
            let n = rng.below(140) as usize;
            let rec = rng.bytes(n);
            let _ = h.regs.push_event(log, &rec);
        }
        let opcode = random_opcode(&mut rng);
        let input = random_input(&mut rng, opcode);
        // Occasionally lie about the length, including past the payload.
        let len_field = match rng.below(16) {
            0 => rng.below(1 << 21),
            1 => input.len() as u64 + 1,
            _ => input.len() as u64,
        };
        let reply = h.send_with_len(opcode, &input, len_field);
        assert!(
            DEFINED_RCS.contains(&reply.rc),
            "rc {:#x} for {opcode:#06x}",
            reply.rc
        );
        *rcs.entry(reply.rc).or_insert(0u32) += 1;
    }
    // The mix reached both success and the error paths.
    for rc in [
        RC_SUCCESS,
        RC_INVALID_INPUT,
        RC_UNSUPPORTED,
        RC_INVALID_PAYLOAD_LEN,
    ] {
        assert!(
            rcs.get(&rc).copied().unwrap_or(0) > 50,
            "rc {rc:#x}: {rcs:?}"
        );
    }
    assert!(!rcs.contains_key(&4), "no internal errors: {rcs:?}");
}

#[test]
fn random_register_writes_never_panic_and_doorbell_ends_clear() {
    let mut rng = Rng(0x0123_4567_89ab_cdef);
    let mut h = Harness::new();
    for _ in 0..100_000 {
        // Concentrate on the mailbox registers, but cover the whole block.
        let off = match rng.below(4) {
            0 => rng.below(DEVICE_REGS_SIZE + 64),
            1 => MBOX_CTRL_REG + rng.below(8),
            _ => MBOX + rng.below(0x40),
        };
        let width = [1usize, 2, 4, 8, 3][rng.below(5) as usize];
        if rng.below(3) == 0 {
            let mut buf = vec![0u8; width];
            h.regs.read(off, &mut buf);
        } else {
            let data = rng.bytes(width);
            h.regs.write(off, &data);
        }
        assert!(!h.doorbell(), "doorbell left set");
        let rc = (h.r64(MBOX_STATUS_REG) >> 32) as u16;
        assert!(DEFINED_RCS.contains(&rc), "rc {rc:#x}");
        assert_eq!(h.r64(MBOX_BG_REG), 0);
    }
    // Still a working device afterwards.
    assert_eq!(h.ok(OP_IDENTIFY, &[]).len(), 0x43);
    assert_eq!(h.r64(0), 0x0000_0003_0001_0000);
}
