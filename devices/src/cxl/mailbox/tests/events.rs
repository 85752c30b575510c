//! Event logs: records, handles, clearing, overflow, interrupt policy.

use super::*;

/// A recognisable record: byte 0x20 (in the reserved header tail, so the
/// device leaves it alone) carries a tag.
fn record(tag: u8) -> Vec<u8> {
    let mut r = vec![0u8; 128];
    r[..16].copy_from_slice(&GENERAL_MEDIA_EVENT_UUID);
    r[0x20] = tag;
    r[0x40] = tag;
    r
}

struct Records {
    flags: u8,
    overflow_count: u16,
    first_overflow: u64,
    last_overflow: u64,
    /// (handle, tag) per record.
    records: Vec<(u16, u8)>,
}

fn get_records(h: &mut Harness, log: u8) -> Records {
    let out = h.ok(OP_GET_EVENT_RECORDS, &[log]);
    assert!(out.len() >= 0x20);
    let count = le16(&out, 0x14) as usize;
    assert_eq!(
        out.len(),
        0x20 + 128 * count,
        "payload length matches count"
    );
    assert_eq!(out[1], 0);
    assert_eq!(&out[0x16..0x20], &[0; 10]);
    let records = out[0x20..]
        .chunks_exact(128)
        .map(|r| {
            assert_eq!(r[0x10], 128, "record length");
            assert_eq!(r[0x20], r[0x40], "record body intact");
            (le16(r, 0x14), r[0x20])
        })
        .collect();
    Records {
        flags: out[0],
        overflow_count: le16(&out, 2),
        first_overflow: le64(&out, 4),
        last_overflow: le64(&out, 12),
        records,
    }
}

fn clear_input(log: u8, flags: u8, handles: &[u16]) -> Vec<u8> {
    let mut v = vec![log, flags, handles.len() as u8, 0, 0, 0];
    for h in handles {
        v.extend_from_slice(&h.to_le_bytes());
    }
    v
}

#[test]
fn event_status_tracks_non_empty_logs() {
    let mut h = Harness::new();
    assert_eq!(h.r64(DEV_STATUS_REG), 0);
    h.regs.push_event(EventLog::Failure, &record(1)).unwrap();
    assert_eq!(h.r64(DEV_STATUS_REG), 0b0100);
    h.regs
        .push_event(EventLog::Informational, &record(2))
        .unwrap();
    h.regs.push_event(EventLog::Fatal, &record(3)).unwrap();
    assert_eq!(h.r64(DEV_STATUS_REG), 0b1101);
    let handle = get_records(&mut h, 2).records[0].0;
    h.ok(OP_CLEAR_EVENT_RECORDS, &clear_input(2, 0, &[handle]));
    assert_eq!(h.r64(DEV_STATUS_REG), 0b1001);
}

#[test]
fn get_returns_records_oldest_first_with_handles_and_timestamps() {
    let mut h = Harness::new();
    h.ok(OP_SET_TIMESTAMP, &1_000_000u64.to_le_bytes());
    let h1 = h.regs.push_event(EventLog::Warning, &record(0xa1)).unwrap();
    let h2 = h.regs.push_event(EventLog::Warning, &record(0xa2)).unwrap();
    assert_ne!(h1, 0);
    assert_ne!(h1, h2);
    let out = h.ok(OP_GET_EVENT_RECORDS, &[1]);
    let ts = le64(&out, 0x20 + 0x18);
    assert!((1_000_000..2_000_000_000).contains(&ts), "timestamp {ts}");
    let got = get_records(&mut h, 1);
    assert_eq!(got.records, vec![(h1, 0xa1), (h2, 0xa2)]);
    assert_eq!(got.flags, 0, "no overflow, no more");
    // Get does not consume.
    assert_eq!(get_records(&mut h, 1).records.len(), 2);
    // Other logs are empty.
    for log in [0u8, 2, 3] {
        assert!(get_records(&mut h, log).records.is_empty());
    }
}

#[test]
fn more_flag_when_records_exceed_one_payload() {
    let mut h = Harness::new();
    for i in 0..20 {
        h.regs
            .push_event(EventLog::Informational, &record(i))
            .unwrap();
    }
    let first = get_records(&mut h, 0);
    assert_eq!(first.records.len(), 15, "(2048 - 32) / 128");
    assert_eq!(first.flags & 0b10, 0b10, "more records");
    let handles: Vec<u16> = first.records.iter().map(|r| r.0).collect();
    h.ok(OP_CLEAR_EVENT_RECORDS, &clear_input(0, 0, &handles));
    let rest = get_records(&mut h, 0);
    assert_eq!(
        rest.records.iter().map(|r| r.1).collect::<Vec<_>>(),
        (15..20).collect::<Vec<u8>>()
    );
    assert_eq!(rest.flags & 0b10, 0);
}

#[test]
fn drain_like_linux_until_empty() {
    let mut h = Harness::new();
    for i in 0..EVENT_LOG_CAPACITY as u8 {
        h.regs.push_event(EventLog::Fatal, &record(i)).unwrap();
    }
    let mut seen = Vec::new();
    loop {
        let r = get_records(&mut h, 3);
        if r.records.is_empty() {
            break;
        }
        let handles: Vec<u16> = r.records.iter().map(|x| x.0).collect();
        seen.extend(r.records.iter().map(|x| x.1));
        h.ok(OP_CLEAR_EVENT_RECORDS, &clear_input(3, 0, &handles));
    }
    assert_eq!(seen, (0..EVENT_LOG_CAPACITY as u8).collect::<Vec<_>>());
    assert_eq!(h.r64(DEV_STATUS_REG), 0);
}

#[test]
fn clear_with_bad_handles_is_invalid_handle_and_clears_nothing() {
    let mut h = Harness::new();
    let hs: Vec<u16> = (0..3)
        .map(|i| h.regs.push_event(EventLog::Warning, &record(i)).unwrap())
        .collect();
    let cases: [&[u16]; 5] = [
        &[hs[1]],                       // skips the oldest
        &[hs[0], hs[2]],                // gap
        &[hs[1], hs[0]],                // not in temporal order
        &[0],                           // handle 0 is never valid
        &[hs[0], hs[1], hs[2], 0x7777], // more handles than records
    ];
    for handles in cases {
        let rc = h.rc(OP_CLEAR_EVENT_RECORDS, &clear_input(1, 0, handles));
        assert_eq!(rc, RC_INVALID_HANDLE, "{handles:?}");
        assert_eq!(get_records(&mut h, 1).records.len(), 3, "nothing cleared");
    }
    // The valid prefix clears.
    h.ok(OP_CLEAR_EVENT_RECORDS, &clear_input(1, 0, &hs[..2]));
    assert_eq!(get_records(&mut h, 1).records, vec![(hs[2], 2)]);
    // Zero handles is a no-op.
    h.ok(OP_CLEAR_EVENT_RECORDS, &clear_input(1, 0, &[]));
    assert_eq!(get_records(&mut h, 1).records.len(), 1);
}

#[test]
fn malformed_event_commands() {
    let mut h = Harness::new();
    h.regs.push_event(EventLog::Warning, &record(1)).unwrap();
    assert_eq!(
        h.rc(OP_GET_EVENT_RECORDS, &[4]),
        RC_INVALID_INPUT,
        "dynamic capacity log"
    );
    assert_eq!(h.rc(OP_GET_EVENT_RECORDS, &[0xff]), RC_INVALID_INPUT);
    assert_eq!(h.rc(OP_GET_EVENT_RECORDS, &[]), RC_INVALID_PAYLOAD_LEN);
    assert_eq!(h.rc(OP_GET_EVENT_RECORDS, &[0, 0]), RC_INVALID_PAYLOAD_LEN);
    assert_eq!(
        h.rc(OP_CLEAR_EVENT_RECORDS, &clear_input(4, 0, &[1])),
        RC_INVALID_INPUT
    );
    // Handle count says 2 but only one handle follows.
    let mut short = clear_input(1, 0, &[1]);
    short[2] = 2;
    assert_eq!(h.rc(OP_CLEAR_EVENT_RECORDS, &short), RC_INVALID_PAYLOAD_LEN);
    assert_eq!(
        h.rc(OP_CLEAR_EVENT_RECORDS, &[1, 0, 0, 0, 0]),
        RC_INVALID_PAYLOAD_LEN
    );
    // Trailing bytes after the handle list are tolerated.
    let mut long = clear_input(1, 0, &[1]);
    long.extend_from_slice(&[0; 4]);
    assert_eq!(h.rc(OP_CLEAR_EVENT_RECORDS, &long), RC_SUCCESS);
    assert_eq!(h.r64(DEV_STATUS_REG), 0);
    // Clear All without an overflow is invalid input.
    h.regs.push_event(EventLog::Warning, &record(2)).unwrap();
    assert_eq!(
        h.rc(OP_CLEAR_EVENT_RECORDS, &clear_input(1, 1, &[])),
        RC_INVALID_INPUT
    );
    assert_eq!(get_records(&mut h, 1).records.len(), 1);
}

#[test]
fn overflow_is_counted_reported_and_cleared() {
    let mut h = Harness::new();
    h.ok(OP_SET_TIMESTAMP, &1_000u64.to_le_bytes());
    for i in 0..EVENT_LOG_CAPACITY as u8 {
        h.regs.push_event(EventLog::Failure, &record(i)).unwrap();
    }
    assert_eq!(get_records(&mut h, 2).flags & 1, 0);
    for _ in 0..3 {
        assert_eq!(
            h.regs.push_event(EventLog::Failure, &record(0xee)),
            Err(EventError::LogFull(EventLog::Failure))
        );
    }
    let r = get_records(&mut h, 2);
    assert_eq!(r.flags & 1, 1, "overflow flag");
    assert_eq!(r.overflow_count, 3);
    assert!(r.first_overflow >= 1_000 && r.last_overflow >= r.first_overflow);
    assert!(
        r.records.iter().all(|x| x.1 != 0xee),
        "overflowed records dropped"
    );

    // Clear All is allowed now, takes a zero handle count, and resets.
    assert_eq!(
        h.rc(
            OP_CLEAR_EVENT_RECORDS,
            &clear_input(2, 1, &[r.records[0].0])
        ),
        RC_INVALID_INPUT
    );
    h.ok(OP_CLEAR_EVENT_RECORDS, &clear_input(2, 1, &[]));
    let r = get_records(&mut h, 2);
    assert!(r.records.is_empty());
    assert_eq!((r.flags, r.overflow_count, r.first_overflow), (0, 0, 0));
    assert_eq!(h.r64(DEV_STATUS_REG), 0);
}

#[test]
fn oversized_records_are_refused() {
    let mut h = Harness::new();
    assert_eq!(
        h.regs.push_event(EventLog::Fatal, &[0; 129]),
        Err(EventError::RecordTooLong(129))
    );
    assert_eq!(h.r64(DEV_STATUS_REG), 0);
}

#[test]
fn interrupt_policy_get_set() {
    let mut h = Harness::new();
    assert_eq!(h.ok(OP_GET_EVT_INT_POLICY, &[]), vec![0; 4]);
    // Linux sets MSI/MSI-X (1) on all four, message numbers left 0.
    h.ok(OP_SET_EVT_INT_POLICY, &[1, 1, 1, 1]);
    let p = h.ok(OP_GET_EVT_INT_POLICY, &[]);
    assert_eq!(p.len(), 4);
    for (i, s) in p.iter().enumerate() {
        assert_eq!(s & 3, 1, "log {i} mode");
        assert_eq!(
            u16::from(s >> 4),
            EVENT_MSIX_VECTOR_BASE + i as u16,
            "log {i} msgnum"
        );
    }
    // The 5-byte form (with a DCD setting) is accepted too; host message
    // numbers are ignored.
    h.ok(OP_SET_EVT_INT_POLICY, &[0xf0, 0x01, 0x00, 0x31, 0x01]);
    let p = h.ok(OP_GET_EVT_INT_POLICY, &[]);
    assert_eq!(p, vec![0, 0x21, 0, 0x41]);
    // FW interrupts and the reserved mode are rejected, and change nothing.
    assert_eq!(h.rc(OP_SET_EVT_INT_POLICY, &[2, 0, 0, 0]), RC_INVALID_INPUT);
    assert_eq!(h.rc(OP_SET_EVT_INT_POLICY, &[0, 0, 0, 3]), RC_INVALID_INPUT);
    assert_eq!(h.ok(OP_GET_EVT_INT_POLICY, &[]), p);
    for len in [0usize, 3, 6] {
        assert_eq!(
            h.rc(OP_SET_EVT_INT_POLICY, &vec![1; len]),
            RC_INVALID_PAYLOAD_LEN
        );
    }
    assert_eq!(h.rc(OP_GET_EVT_INT_POLICY, &[0]), RC_INVALID_PAYLOAD_LEN);
}

#[test]
fn events_interrupt_on_their_vector_only_when_enabled() {
    let mut h = Harness::new();
    h.regs.push_event(EventLog::Warning, &record(1)).unwrap();
    assert!(h.take_irqs().is_empty(), "interrupts off by default");
    h.ok(OP_SET_EVT_INT_POLICY, &[0, 1, 0, 1]);
    h.regs.push_event(EventLog::Warning, &record(2)).unwrap();
    h.regs
        .push_event(EventLog::Informational, &record(3))
        .unwrap();
    h.regs.push_event(EventLog::Fatal, &record(4)).unwrap();
    assert_eq!(
        h.take_irqs(),
        vec![
            EventLog::Warning.msix_vector(),
            EventLog::Fatal.msix_vector()
        ]
    );
    assert_eq!(EventLog::Warning.msix_vector(), 2);
    assert!(MSIX_VECTORS_USED > EventLog::Fatal.msix_vector());
}
