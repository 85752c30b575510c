//! Logs/CEL, identify, partitions, timestamp, health, firmware info, and
//! input-length checking across the command set.

use std::collections::BTreeMap;

use super::*;

fn get_log(h: &mut Harness, uuid: &[u8; 16], offset: u32, length: u32) -> Reply {
    let mut input = uuid.to_vec();
    input.extend_from_slice(&offset.to_le_bytes());
    input.extend_from_slice(&length.to_le_bytes());
    h.send(OP_GET_LOG, &input)
}

/// Reads the whole CEL the way cxl_enumerate_cmds does and decodes it into
/// opcode -> effects.
fn read_cel(h: &mut Harness) -> BTreeMap<u16, u16> {
    let gsl = h.ok(OP_GET_SUPPORTED_LOGS, &[]);
    assert_eq!(gsl.len(), 0x1c);
    assert_eq!(le16(&gsl, 0), 1, "one supported log");
    assert_eq!(&gsl[2..8], &[0; 6], "reserved");
    assert_eq!(&gsl[8..24], &CEL);
    let size = le32(&gsl, 24);
    assert_eq!(size % 4, 0);

    let r = get_log(h, &CEL, 0, size);
    assert_eq!(r.rc, RC_SUCCESS);
    assert_eq!(r.out.len(), size as usize);
    let mut cel = BTreeMap::new();
    for e in r.out.chunks_exact(4) {
        let prev = cel.insert(le16(e, 0), le16(e, 2));
        assert!(prev.is_none(), "opcode listed twice");
    }
    cel
}

#[test]
fn cel_lists_exactly_the_commands_the_dispatcher_answers() {
    let mut h = Harness::new();
    let cel = read_cel(&mut h);
    // Every opcode through the real doorbell path: the ones not answering
    // Unsupported must be exactly those in the CEL.
    let mut answered = Vec::new();
    for op in 0..=u16::MAX {
        if h.rc(op, &[]) != RC_UNSUPPORTED {
            answered.push(op);
        }
    }
    assert_eq!(answered, cel.keys().copied().collect::<Vec<_>>());
    let expect = [
        0x0100, 0x0101, 0x0102, 0x0103, 0x0200, 0x0300, 0x0301, 0x0400, 0x0401, 0x4000, 0x4100,
        0x4101, 0x4102, 0x4103, 0x4200, 0x4300, 0x4301, 0x4302,
    ];
    assert_eq!(answered, expect);
}

#[test]
fn cel_effects_match_the_commands() {
    let mut h = Harness::new();
    let cel = read_cel(&mut h);
    // Bits: 0 cold-reset config change, 1 immediate config, 2 immediate
    // data, 3 immediate policy, 4 immediate log, 6 background.
    let changes: BTreeMap<u16, u16> = [
        (OP_CLEAR_EVENT_RECORDS, 1 << 4),
        (OP_SET_EVT_INT_POLICY, 1 << 1),
        (OP_SET_TIMESTAMP, 1 << 3),
        (OP_SET_PARTITION_INFO, 0b111),
        (OP_SET_LSA, 0b110),
        (OP_INJECT_POISON, (1 << 2) | (1 << 4)),
        (OP_CLEAR_POISON, 1 << 2),
    ]
    .into_iter()
    .collect();
    for (op, eff) in &cel {
        assert_eq!(
            *eff,
            changes.get(op).copied().unwrap_or(0),
            "effects of {op:#06x}"
        );
        assert_eq!(eff & (1 << 6), 0, "nothing runs in the background");
    }
    // The device's own table agrees with what it reports.
    for c in MailboxCommand::ALL {
        assert_eq!(cel.get(&c.opcode()), Some(&c.effects()));
        assert_eq!(MailboxCommand::from_opcode(c.opcode()), Some(c));
    }
}

#[test]
fn get_log_honours_offset_and_length() {
    let mut h = Harness::new();
    let full = get_log(&mut h, &CEL, 0, 18 * 4).out;
    let part = get_log(&mut h, &CEL, 6, 10);
    assert_eq!(part.rc, RC_SUCCESS);
    assert_eq!(part.out, &full[6..16]);
    // Up to the very end, and an empty read at the end.
    assert_eq!(get_log(&mut h, &CEL, 68, 4).out, &full[68..]);
    let empty = get_log(&mut h, &CEL, 72, 0);
    assert_eq!((empty.rc, empty.out.len()), (RC_SUCCESS, 0));
}

#[test]
fn get_log_rejects_bad_ranges_uuids_and_lengths() {
    let mut h = Harness::new();
    assert_eq!(get_log(&mut h, &CEL, 0, 73).rc, RC_INVALID_INPUT);
    assert_eq!(get_log(&mut h, &CEL, 72, 1).rc, RC_INVALID_INPUT);
    assert_eq!(get_log(&mut h, &CEL, 73, 0).rc, RC_INVALID_INPUT);
    assert_eq!(get_log(&mut h, &CEL, u32::MAX, 2).rc, RC_INVALID_INPUT);
    assert_eq!(get_log(&mut h, &CEL, 0, 4096).rc, RC_INVALID_INPUT);
    let mut vendor = CEL;
    vendor[15] ^= 1;
    assert_eq!(get_log(&mut h, &vendor, 0, 4).rc, RC_INVALID_LOG);
    let mut input = CEL.to_vec();
    input.extend_from_slice(&[0; 7]);
    assert_eq!(h.rc(OP_GET_LOG, &input), RC_INVALID_PAYLOAD_LEN);
    input.extend_from_slice(&[0; 2]);
    assert_eq!(h.rc(OP_GET_LOG, &input), RC_INVALID_PAYLOAD_LEN);
    assert_eq!(h.rc(OP_GET_SUPPORTED_LOGS, &[0]), RC_INVALID_PAYLOAD_LEN);
}

#[test]
fn identify_reports_capacities_lsa_and_limits() {
    let mut h = Harness::new();
    let id = h.ok(OP_IDENTIFY, &[]);
    assert_eq!(id.len(), 0x43);
    let mut fw = [0u8; 16];
    fw[..FW_REV.len()].copy_from_slice(FW_REV.as_bytes());
    assert_eq!(&id[..16], &fw);
    assert_eq!(le64(&id, 0x10), 3, "total: 768 MiB in 256 MiB units");
    assert_eq!(le64(&id, 0x18), 1, "volatile");
    assert_eq!(le64(&id, 0x20), 2, "persistent");
    assert_eq!(le64(&id, 0x28), 0, "partition alignment");
    for i in 0..4 {
        assert_eq!(
            le16(&id, 0x30 + 2 * i),
            EVENT_LOG_CAPACITY as u16,
            "event log {i}"
        );
    }
    assert_eq!(le32(&id, 0x38), LSA_SIZE as u32);
    let poison_max = u32::from(id[0x3c]) | u32::from(id[0x3d]) << 8 | u32::from(id[0x3e]) << 16;
    assert_eq!(poison_max, POISON_LIST_MAX as u32);
    assert_eq!(le16(&id, 0x3f), POISON_LIST_MAX as u16, "inject limit");
    assert_eq!((id[0x41], id[0x42]), (0, 0), "poison and QoS caps");
}

#[test]
fn identify_truncates_a_long_fw_revision() {
    let mut cfg = config(Box::new(MemoryLabels::new(0)));
    cfg.fw_revision = "0123456789abcdefXYZ".into();
    cfg.persistent_bytes = 0;
    cfg.volatile_bytes = 4 << 30;
    let mut h = Harness::with_config(cfg);
    let id = h.ok(OP_IDENTIFY, &[]);
    assert_eq!(&id[..16], b"0123456789abcdef");
    assert_eq!(
        (le64(&id, 0x10), le64(&id, 0x18), le64(&id, 0x20)),
        (16, 16, 0)
    );
    assert_eq!(le32(&id, 0x38), 0, "no LSA");
}

#[test]
fn partition_info_and_set_partition() {
    let mut h = Harness::new();
    let p = h.ok(OP_GET_PARTITION_INFO, &[]);
    assert_eq!(p.len(), 0x20);
    assert_eq!(
        (le64(&p, 0), le64(&p, 8)),
        (1, 2),
        "active volatile/persistent"
    );
    assert_eq!((le64(&p, 0x10), le64(&p, 0x18)), (0, 0), "nothing pending");

    // Nothing is partitionable: only a zero volatile share is valid, in the
    // spec's 9-byte form or Linux's 0x0a.
    assert_eq!(h.rc(OP_SET_PARTITION_INFO, &[0; 9]), RC_SUCCESS);
    assert_eq!(h.rc(OP_SET_PARTITION_INFO, &[0; 10]), RC_SUCCESS);
    let mut one = [0u8; 10];
    one[0] = 1;
    assert_eq!(h.rc(OP_SET_PARTITION_INFO, &one), RC_INVALID_INPUT);
    one[8] = 1; // immediate
    assert_eq!(h.rc(OP_SET_PARTITION_INFO, &one), RC_INVALID_INPUT);
    assert_eq!(h.rc(OP_SET_PARTITION_INFO, &[0; 8]), RC_INVALID_PAYLOAD_LEN);
    assert_eq!(
        h.rc(OP_SET_PARTITION_INFO, &[0; 11]),
        RC_INVALID_PAYLOAD_LEN
    );
    assert_eq!(h.ok(OP_GET_PARTITION_INFO, &[]), p, "unchanged");
}

#[test]
fn timestamp_is_zero_until_set_then_runs() {
    let mut h = Harness::new();
    assert_eq!(le64(&h.ok(OP_GET_TIMESTAMP, &[]), 0), 0);
    let t0 = 1_700_000_000_000_000_000u64;
    assert!(h.ok(OP_SET_TIMESTAMP, &t0.to_le_bytes()).is_empty());
    let a = le64(&h.ok(OP_GET_TIMESTAMP, &[]), 0);
    std::thread::sleep(std::time::Duration::from_millis(20));
    let b = le64(&h.ok(OP_GET_TIMESTAMP, &[]), 0);
    assert!(a >= t0 && a < t0 + 5_000_000_000, "a = {a}");
    assert!(b >= a + 20_000_000, "advanced by {} ns", b - a);
    assert!(b < t0 + 10_000_000_000);

    assert_eq!(h.rc(OP_SET_TIMESTAMP, &[0; 7]), RC_INVALID_PAYLOAD_LEN);
    assert_eq!(h.rc(OP_SET_TIMESTAMP, &[0; 9]), RC_INVALID_PAYLOAD_LEN);
    assert_eq!(h.rc(OP_GET_TIMESTAMP, &[0; 8]), RC_INVALID_PAYLOAD_LEN);
    // Setting again rebases the clock.
    h.ok(OP_SET_TIMESTAMP, &5u64.to_le_bytes());
    assert!(le64(&h.ok(OP_GET_TIMESTAMP, &[]), 0) < 1_000_000_000);
}

#[test]
fn health_info_layout() {
    let mut h = Harness::new();
    let hi = h.ok(OP_GET_HEALTH_INFO, &[]);
    assert_eq!(hi.len(), 0x12);
    assert_eq!(
        &hi[..4],
        &[0, 0, 0, 0],
        "health, media, additional, life used"
    );
    assert_eq!(le16(&hi, 4), 0x7fff, "temperature not implemented");
    assert_eq!((le32(&hi, 6), le32(&hi, 10), le32(&hi, 14)), (0, 0, 0));
}

#[test]
fn fw_info_layout() {
    let mut h = Harness::new();
    let fw = h.ok(OP_GET_FW_INFO, &[]);
    assert_eq!(fw.len(), 0x50);
    assert_eq!(fw[0], 2, "slots supported");
    assert_eq!(fw[1] & 7, 1, "active slot");
    assert_eq!((fw[1] >> 3) & 7, 0, "nothing staged");
    assert_eq!(fw[2], 0, "no online activation");
    assert_eq!(&fw[3..0x10], &[0; 13]);
    assert_eq!(&fw[0x10..0x10 + FW_REV.len()], FW_REV.as_bytes());
    assert!(fw[0x10 + FW_REV.len()..].iter().all(|&b| b == 0));
}

#[test]
fn fixed_length_commands_reject_every_other_length() {
    let mut h = Harness::new();
    // (opcode, accepted input lengths) for the fixed-size commands.
    let fixed: &[(u16, &[usize])] = &[
        (OP_GET_EVENT_RECORDS, &[1]),
        (OP_GET_EVT_INT_POLICY, &[0]),
        (OP_SET_EVT_INT_POLICY, &[4, 5]),
        (OP_GET_FW_INFO, &[0]),
        (OP_GET_TIMESTAMP, &[0]),
        (OP_SET_TIMESTAMP, &[8]),
        (OP_GET_SUPPORTED_LOGS, &[0]),
        (OP_GET_LOG, &[0x18]),
        (OP_IDENTIFY, &[0]),
        (OP_GET_PARTITION_INFO, &[0]),
        (OP_SET_PARTITION_INFO, &[9, 10]),
        (OP_GET_LSA, &[8]),
        (OP_GET_HEALTH_INFO, &[0]),
        (OP_GET_POISON, &[0x10]),
        (OP_INJECT_POISON, &[8]),
        (OP_CLEAR_POISON, &[0x48]),
    ];
    for &(op, ok) in fixed {
        for len in [
            0usize, 1, 3, 4, 5, 7, 8, 9, 10, 0x10, 0x17, 0x18, 0x19, 0x47, 0x48, 0x49, 2048,
        ] {
            let rc = h.rc(op, &vec![0u8; len]);
            if ok.contains(&len) {
                assert_ne!(rc, RC_INVALID_PAYLOAD_LEN, "{op:#06x} len {len}");
            } else {
                assert_eq!(rc, RC_INVALID_PAYLOAD_LEN, "{op:#06x} len {len}");
            }
        }
    }
    // Variable-sized ones need at least their header.
    for len in 0..6 {
        assert_eq!(
            h.rc(OP_CLEAR_EVENT_RECORDS, &vec![0; len]),
            RC_INVALID_PAYLOAD_LEN
        );
    }
    for len in 0..8 {
        assert_eq!(h.rc(OP_SET_LSA, &vec![0; len]), RC_INVALID_PAYLOAD_LEN);
    }
}
