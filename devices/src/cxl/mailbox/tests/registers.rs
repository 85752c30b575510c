//! Register layout, reset values, access widths and the doorbell protocol.

use super::*;

#[test]
fn capability_array_reset_values() {
    let mut h = Harness::new();
    let array = h.r64(0);
    assert_eq!(array & 0xffff, 0, "capabilities array id");
    assert_eq!((array >> 16) & 0xff, 1, "version");
    assert_eq!((array >> 32) & 0xffff, 3, "count");
    assert_eq!(array, 0x0000_0003_0001_0000);

    // (id, offset, length) per header, as Linux's cxl_probe_device_regs
    // reads them: readl at +0, +4, +8.
    let expect = [(1u32, 0x80u32, 8u32), (2, 0x88, 0x820), (0x4000, 0x8a8, 8)];
    for (i, (id, off, len)) in expect.into_iter().enumerate() {
        let base = 0x10 * (i as u64 + 1);
        assert_eq!(h.r32(base) & 0xffff, id, "cap {i} id");
        assert_eq!(h.r32(base + 4), off, "cap {i} offset");
        assert_eq!(h.r32(base + 8), len, "cap {i} length");
        assert_eq!(h.r32(base + 12), 0, "cap {i} reserved");
    }
    // Versions: device status 2, mailbox 1, memdev 1 (QEMU's).
    assert_eq!((h.r32(0x10) >> 16) & 0xff, 2);
    assert_eq!((h.r32(0x20) >> 16) & 0xff, 1);
    assert_eq!((h.r32(0x30) >> 16) & 0xff, 1);
}

#[test]
fn status_and_mailbox_reset_values() {
    let mut h = Harness::new();
    assert_eq!(h.r64(DEV_STATUS_REG), 0, "no events");
    let memdev = h.r64(MEMDEV_STATUS_REG);
    assert_eq!((memdev >> 2) & 3, 1, "media ready");
    assert_eq!(memdev & (1 << 4), 1 << 4, "mailbox ready");
    assert_eq!(memdev & 0b11, 0, "no fatal error, no FW halt");
    assert_eq!((memdev >> 5) & 7, 0, "no reset needed");

    let caps = h.r32(MBOX_CAPS_REG);
    assert_eq!(caps & 0x1f, 11, "log2 payload size");
    assert_eq!(caps & (1 << 5), 1 << 5, "doorbell interrupt capable");
    assert_eq!(caps & (1 << 6), 0, "no background interrupt");
    assert_eq!((caps >> 7) & 0xf, u32::from(MAILBOX_MSIX_VECTOR));
    assert_eq!(h.r32(MBOX_CTRL_REG), 0);
    assert_eq!(h.r64(MBOX_CMD_REG), 0);
    assert_eq!(h.r64(MBOX_STATUS_REG), 0);
    assert_eq!(h.r64(MBOX_BG_REG), 0);
    assert_eq!(h.read_payload(2048), vec![0u8; 2048]);
}

#[test]
fn read_only_registers_ignore_writes_of_every_width() {
    let mut h = Harness::new();
    // Everything outside command, control and payload.
    let ro: Vec<u64> = (0..MBOX_CTRL_REG)
        .chain(MBOX_STATUS_REG..MBOX_PAYLOAD_REG)
        .chain(MEMDEV_STATUS_REG..DEVICE_REGS_SIZE)
        .collect();
    let before: Vec<u8> = ro.iter().map(|&o| h.r8(o)).collect();
    for &o in &ro {
        for width in [1usize, 2, 4, 8] {
            if o % width as u64 == 0 && ro.contains(&(o + width as u64 - 1)) {
                h.regs.write(o, &vec![0xff; width]);
            }
        }
    }
    let after: Vec<u8> = ro.iter().map(|&o| h.r8(o)).collect();
    assert_eq!(before, after);
    assert_eq!(h.r64(0), 0x0000_0003_0001_0000);
}

#[test]
fn unknown_offsets_read_zero() {
    let mut h = Harness::new();
    for off in (0x40..0x80)
        .chain(0x8b0..DEVICE_REGS_SIZE)
        .chain([DEVICE_REGS_SIZE, u64::MAX - 3])
    {
        assert_eq!(h.r32(off), 0, "offset {off:#x}");
    }
    // An access running off the end of the address space reads 0 past it.
    let mut b = [0xaau8; 8];
    h.regs.read(u64::MAX - 1, &mut b);
    assert_eq!(b, [0; 8]);
}

#[test]
fn every_offset_and_width_is_answered_without_panic() {
    let mut h = Harness::new();
    let widths = [0usize, 1, 2, 3, 4, 5, 7, 8, 16];
    for off in 0..DEVICE_REGS_SIZE + 16 {
        for &w in &widths {
            let mut buf = vec![0u8; w];
            h.regs.read(off, &mut buf);
            // Writing back what was read may ring the doorbell with whatever
            // command is there; that must complete too.
            let pattern: Vec<u8> = (0..w).map(|i| (off as u8).wrapping_add(i as u8)).collect();
            h.regs.write(off, &pattern);
            assert!(!h.doorbell(), "doorbell left set at {off:#x} width {w}");
        }
    }
    for off in [u64::MAX, u64::MAX - 7, 1 << 63] {
        let mut buf = [0u8; 8];
        h.regs.read(off, &mut buf);
        h.regs.write(off, &[0xff; 8]);
    }
}

#[test]
fn command_register_merges_partial_writes_and_masks_reserved_bits() {
    let mut h = Harness::new();
    h.w64(MBOX_CMD_REG, u64::MAX);
    assert_eq!(h.r64(MBOX_CMD_REG), 0x1f_ffff_ffff, "only [36:0] writable");
    h.w64(MBOX_CMD_REG, 0);
    for (i, b) in 0x0000_0012_3456_4102u64.to_le_bytes().iter().enumerate() {
        h.w8(MBOX_CMD_REG + i as u64, *b);
    }
    assert_eq!(h.r64(MBOX_CMD_REG), 0x12_3456_4102);
    h.w32(MBOX_CMD_REG + 4, 0);
    assert_eq!(h.r32(MBOX_CMD_REG), 0x3456_4102);
    assert_eq!(h.r64(MBOX_CMD_REG), 0x3456_4102);
}

#[test]
fn payload_accepts_mixed_widths() {
    let mut h = Harness::new();
    h.w64(MBOX_PAYLOAD_REG, 0x0807_0605_0403_0201);
    h.w32(MBOX_PAYLOAD_REG + 8, 0x0c0b_0a09);
    h.regs.write(MBOX_PAYLOAD_REG + 12, &[0x0d, 0x0e]);
    h.w8(MBOX_PAYLOAD_REG + 14, 0x0f);
    // Unaligned qword straddling two payload qwords.
    h.w64(MBOX_PAYLOAD_REG + 2045 - 8, u64::MAX);
    let p = h.read_payload(2048);
    assert_eq!(&p[..15], &(1..=15).collect::<Vec<u8>>()[..]);
    assert_eq!(&p[2037..2045], &[0xff; 8]);
    assert_eq!(p[2045], 0);
    // The last payload byte and the one after (memdev status) are distinct.
    h.w8(MBOX_PAYLOAD_REG + 2047, 0x5a);
    assert_eq!(h.r8(MBOX_PAYLOAD_REG + 2047), 0x5a);
    assert_eq!(h.r8(MEMDEV_STATUS_REG), 0x14);
}

#[test]
fn doorbell_executes_once_and_clears() {
    let mut h = Harness::new();
    let out = h.ok(OP_GET_TIMESTAMP, &[]);
    assert_eq!(out.len(), 8);
    // Writing 0 to the doorbell does nothing; writing 1 runs the command in
    // the command register again (here: Identify with length 0).
    h.w64(MBOX_CMD_REG, u64::from(OP_IDENTIFY));
    h.w32(MBOX_CTRL_REG, 0);
    assert_eq!(h.r64(MBOX_CMD_REG) >> 16, 0, "not executed by a 0 write");
    h.w8(MBOX_CTRL_REG, 1);
    assert!(!h.doorbell());
    assert_eq!(h.r64(MBOX_CMD_REG), u64::from(OP_IDENTIFY) | (0x43 << 16));
    assert_eq!(h.r64(MBOX_STATUS_REG), 0);
}

#[test]
fn write_covering_control_and_command_uses_the_new_command() {
    let mut h = Harness::new();
    // 8-byte write at control: low dword = doorbell, high dword = command
    // register low dword (opcode Identify, length 0).
    let v = 1u64 | (u64::from(OP_IDENTIFY) << 32);
    h.w64(MBOX_CTRL_REG, v);
    assert!(!h.doorbell());
    assert_eq!(h.r64(MBOX_CMD_REG), u64::from(OP_IDENTIFY) | (0x43 << 16));
}

#[test]
fn mailbox_is_frozen_while_the_doorbell_is_set() {
    let mut h = Harness::new();
    h.write_payload(&7u64.to_le_bytes());
    h.w64(MBOX_CMD_REG, u64::from(OP_INJECT_POISON) | (8 << 16));
    h.regs.hold_doorbell(true);
    h.w32(MBOX_CTRL_REG, 1);
    assert!(h.doorbell(), "held doorbell reads set");

    // Host misbehaves: new command, new payload, doorbell again, control
    // bits. None of it may land or run anything.
    h.w64(MBOX_CMD_REG, u64::from(OP_IDENTIFY));
    h.w64(MBOX_PAYLOAD_REG, 0x40);
    h.w32(MBOX_CTRL_REG, 0b11);
    h.w32(MBOX_CTRL_REG, 0);
    assert_eq!(h.r64(MBOX_CMD_REG), u64::from(OP_INJECT_POISON) | (8 << 16));
    assert_eq!(h.r64(MBOX_PAYLOAD_REG), 7);
    assert_eq!(h.r32(MBOX_CTRL_REG), 1, "control unchanged while busy");
    assert!(h.regs.poison_records().is_empty(), "nothing executed yet");

    // Completion: the original command ran exactly once (DPA 7 is
    // misaligned -> Invalid Input), and the mailbox is open again.
    h.regs.hold_doorbell(false);
    assert!(!h.doorbell());
    assert_eq!(h.r64(MBOX_STATUS_REG) >> 32, u64::from(RC_INVALID_INPUT));
    assert_eq!(h.r64(MBOX_CMD_REG), u64::from(OP_INJECT_POISON));
    assert!(h.regs.poison_records().is_empty());
    assert_eq!(h.rc(OP_INJECT_POISON, &0x40u64.to_le_bytes()), RC_SUCCESS);
    assert_eq!(h.regs.poison_records().len(), 1);
}

#[test]
fn doorbell_interrupt_fires_only_when_enabled() {
    let mut h = Harness::new();
    h.ok(OP_GET_TIMESTAMP, &[]);
    assert!(h.take_irqs().is_empty());

    h.w64(MBOX_CMD_REG, u64::from(OP_GET_TIMESTAMP));
    h.w32(MBOX_CTRL_REG, 0b11);
    assert!(!h.doorbell());
    assert_eq!(
        h.r32(MBOX_CTRL_REG),
        0b10,
        "irq enable kept, doorbell clear"
    );
    assert_eq!(h.take_irqs(), vec![MAILBOX_MSIX_VECTOR]);

    // Background-interrupt enable (b2) is not writable without the
    // capability.
    h.w32(MBOX_CTRL_REG, 0b100);
    assert_eq!(h.r32(MBOX_CTRL_REG), 0);
}

#[test]
fn default_device_has_no_interrupt_sink() {
    let mut regs = DeviceRegisters::new(config(Box::new(MemoryLabels::new(0))));
    regs.write(MBOX_CMD_REG, &u64::from(OP_GET_TIMESTAMP).to_le_bytes());
    regs.write(MBOX_CTRL_REG, &3u32.to_le_bytes());
    let mut ctrl = [0u8; 4];
    regs.read(MBOX_CTRL_REG, &mut ctrl);
    assert_eq!(u32::from_le_bytes(ctrl) & 1, 0);
    assert_eq!(regs.serial(), 0x1234_5678_9abc_def0);
}

#[test]
fn payload_length_beyond_the_payload_area_is_rejected() {
    let mut h = Harness::new();
    for len in [2049u64, 0x1000, 0x1f_ffff] {
        let r = h.send_with_len(OP_SET_LSA, &[0; 16], len);
        assert_eq!(r.rc, RC_INVALID_PAYLOAD_LEN, "length {len:#x}");
    }
    // Exactly the payload size is fine.
    let mut full = vec![0u8; 2048];
    full[8..].fill(0x5c);
    assert_eq!(h.rc(OP_SET_LSA, &full), RC_SUCCESS);
}

#[test]
fn unknown_opcodes_are_unsupported_with_no_output() {
    let mut h = Harness::new();
    for op in [
        0x0000u16, 0x0001, 0x0201, 0x4400, 0x4500, 0x4800, 0xc000, 0xffff,
    ] {
        let r = h.send(op, &[1, 2, 3]);
        assert_eq!(r.rc, RC_UNSUPPORTED, "opcode {op:#06x}");
        assert!(r.out.is_empty());
    }
}

/// Two vCPUs that do not serialise ring the same doorbell, as the hostile
/// end-to-end guest makes them: one IDENTIFY (no payload), one GET_LSA
/// (8 bytes). Each access takes the device's lock (the MMIO bus holds a
/// `Mutex<DeviceRegisters>`), and a command runs inside the ringing write,
/// so no CPU ever sees the doorbell set; a command may run with the other
/// CPU's length or take the other one's output as its input, and is then
/// answered with an error code, never left hanging.
#[test]
fn two_cpus_racing_on_one_doorbell_always_get_an_answer() {
    use crate::BusDevice;
    let dev = Arc::new(Mutex::new(
        Harness::new().regs, // interrupt sink and all, as built for the guest
    ));
    let r32 = |d: &Mutex<DeviceRegisters>, off: u64| {
        let mut b = [0u8; 4];
        BusDevice::read(d, off, &mut b);
        u32::from_le_bytes(b)
    };
    let cpu = |op: u16, len: u64, payload: Option<[u8; 8]>| {
        let dev = dev.clone();
        std::thread::spawn(move || {
            let mut codes = std::collections::BTreeMap::new();
            for _ in 0..2000 {
                if let Some(p) = payload {
                    BusDevice::write(&*dev, MBOX_PAYLOAD_REG, &p);
                }
                BusDevice::write(
                    &*dev,
                    MBOX_CMD_REG,
                    &(u64::from(op) | (len << 16)).to_le_bytes(),
                );
                BusDevice::write(&*dev, MBOX_CTRL_REG, &1u32.to_le_bytes());
                assert_eq!(r32(&dev, MBOX_CTRL_REG) & 1, 0, "doorbell still set");
                let rc = (r32(&dev, MBOX_STATUS_REG + 4) & 0xffff) as u16;
                *codes.entry(rc).or_insert(0u32) += 1;
            }
            codes
        })
    };
    let mut lsa_input = [0u8; 8];
    lsa_input[4..].copy_from_slice(&0x40u32.to_le_bytes());
    let a = cpu(OP_IDENTIFY, 0, None);
    let b = cpu(OP_GET_LSA, 8, Some(lsa_input));
    for (name, t) in [("IDENTIFY", a), ("GET_LSA", b)] {
        let codes = t.join().expect("no panic on either CPU");
        assert_eq!(
            codes.values().sum::<u32>(),
            2000,
            "{name}: every command answered"
        );
        for rc in codes.keys() {
            assert!(
                [RC_SUCCESS, RC_INVALID_INPUT, RC_INVALID_PAYLOAD_LEN].contains(rc),
                "{name}: return code {rc:#x} ({codes:?})"
            );
        }
    }
    // The mailbox is open for the next command.
    BusDevice::write(&*dev, MBOX_CMD_REG, &u64::from(OP_IDENTIFY).to_le_bytes());
    BusDevice::write(&*dev, MBOX_CTRL_REG, &1u32.to_le_bytes());
    assert_eq!(
        r32(&dev, MBOX_STATUS_REG + 4) & 0xffff,
        u32::from(RC_SUCCESS)
    );
    assert_eq!(
        r32(&dev, MBOX_CMD_REG) >> 16,
        0x43,
        "IDENTIFY output length"
    );
}
