//! Poison list, inject and clear.

use std::sync::{Arc, Mutex};

use super::*;

const CAPACITY: u64 = VOLATILE + PERSISTENT;

fn get_input(dpa: u64, units: u64) -> Vec<u8> {
    let mut v = dpa.to_le_bytes().to_vec();
    v.extend_from_slice(&units.to_le_bytes());
    v
}

fn clear_input(dpa: u64, fill: u8) -> Vec<u8> {
    let mut v = dpa.to_le_bytes().to_vec();
    v.extend_from_slice(&[fill; 64]);
    v
}

struct PoisonOut {
    flags: u8,
    overflow_ts: u64,
    /// (dpa, source, length in 64 B units)
    records: Vec<(u64, u8, u32)>,
}

fn get_poison(h: &mut Harness, dpa: u64, units: u64) -> PoisonOut {
    let out = h.ok(OP_GET_POISON, &get_input(dpa, units));
    assert!(out.len() >= 0x20);
    let count = le16(&out, 0x0a) as usize;
    assert_eq!(out.len(), 0x20 + 16 * count);
    assert_eq!(&out[0x0c..0x20], &[0; 20], "reserved");
    let records = out[0x20..]
        .chunks_exact(16)
        .map(|r| {
            let a = le64(r, 0);
            assert_eq!(le32(r, 12), 0, "reserved");
            (a & !0x3f, (a & 7) as u8, le32(r, 8))
        })
        .collect();
    PoisonOut {
        flags: out[0],
        overflow_ts: le64(&out, 2),
        records,
    }
}

fn inject(h: &mut Harness, dpa: u64) -> u16 {
    h.rc(OP_INJECT_POISON, &dpa.to_le_bytes())
}

#[test]
fn inject_then_list() {
    let mut h = Harness::new();
    assert!(get_poison(&mut h, 0, CAPACITY / 64).records.is_empty());
    // One in volatile, one in persistent capacity, injected out of order.
    assert_eq!(inject(&mut h, VOLATILE + 0x1000), RC_SUCCESS);
    assert_eq!(inject(&mut h, 0x40), RC_SUCCESS);
    let p = get_poison(&mut h, 0, CAPACITY / 64);
    assert_eq!(p.records, vec![(0x40, 3, 1), (VOLATILE + 0x1000, 3, 1)]);
    assert_eq!((p.flags, p.overflow_ts), (0, 0));
    // Re-injecting is not an error and adds nothing.
    assert_eq!(inject(&mut h, 0x40), RC_SUCCESS);
    assert_eq!(get_poison(&mut h, 0, CAPACITY / 64).records.len(), 2);
    // The last line of the device can be poisoned.
    assert_eq!(inject(&mut h, CAPACITY - 64), RC_SUCCESS);
}

#[test]
fn list_is_filtered_to_the_query_range() {
    let mut h = Harness::new();
    for dpa in [0x0, 0x40, 0x1000, 0x2000] {
        assert_eq!(inject(&mut h, dpa), RC_SUCCESS);
    }
    let dpas = |p: PoisonOut| p.records.iter().map(|r| r.0).collect::<Vec<_>>();
    assert_eq!(dpas(get_poison(&mut h, 0x40, 1)), vec![0x40]);
    assert_eq!(
        dpas(get_poison(&mut h, 0x40, (0x1000 - 0x40) / 64)),
        vec![0x40]
    );
    assert_eq!(
        dpas(get_poison(&mut h, 0x40, (0x1040 - 0x40) / 64)),
        vec![0x40, 0x1000]
    );
    assert_eq!(dpas(get_poison(&mut h, 0x1040, 0x20)), Vec::<u64>::new());
    assert_eq!(dpas(get_poison(&mut h, 0x80, 0)), Vec::<u64>::new());
}

#[test]
fn more_flag_pages_through_long_lists() {
    let mut h = Harness::new();
    for i in 0..200u64 {
        assert_eq!(inject(&mut h, i * 0x1000), RC_SUCCESS);
    }
    // Linux repeats the same request while More is set.
    let mut all = Vec::new();
    let mut calls = 0;
    loop {
        let p = get_poison(&mut h, 0, CAPACITY / 64);
        calls += 1;
        all.extend(p.records.iter().map(|r| r.0));
        if p.flags & 1 == 0 {
            break;
        }
        assert_eq!(p.records.len(), 126, "(2048 - 32) / 16 per payload");
        assert!(calls < 10);
    }
    assert_eq!(calls, 2);
    assert_eq!(all, (0..200u64).map(|i| i * 0x1000).collect::<Vec<_>>());
    // A different query starts from the beginning.
    let p = get_poison(&mut h, 0, CAPACITY / 64);
    assert_eq!(p.records[0].0, 0);
    let q = get_poison(&mut h, 0x1000, 1);
    assert_eq!((q.flags, q.records.len()), (0, 1));
}

#[test]
fn inject_validates_alignment_and_range() {
    let mut h = Harness::new();
    assert_eq!(inject(&mut h, 0x41), RC_INVALID_INPUT);
    assert_eq!(inject(&mut h, 0x20), RC_INVALID_INPUT);
    assert_eq!(inject(&mut h, CAPACITY), RC_INVALID_PA);
    assert_eq!(inject(&mut h, u64::MAX - 63), RC_INVALID_PA);
    assert!(get_poison(&mut h, 0, CAPACITY / 64).records.is_empty());
    assert_eq!(h.rc(OP_INJECT_POISON, &[0; 7]), RC_INVALID_PAYLOAD_LEN);
}

#[test]
fn get_poison_validates_its_range() {
    let mut h = Harness::new();
    assert_eq!(h.rc(OP_GET_POISON, &get_input(0x10, 1)), RC_INVALID_INPUT);
    assert_eq!(
        h.rc(OP_GET_POISON, &get_input(0, CAPACITY / 64 + 1)),
        RC_INVALID_PA
    );
    assert_eq!(h.rc(OP_GET_POISON, &get_input(CAPACITY, 1)), RC_INVALID_PA);
    assert_eq!(
        h.rc(OP_GET_POISON, &get_input(0x40, u64::MAX)),
        RC_INVALID_INPUT
    );
    assert_eq!(
        h.rc(OP_GET_POISON, &get_input(u64::MAX - 63, 2)),
        RC_INVALID_INPUT
    );
}

#[test]
fn inject_limit() {
    let mut h = Harness::new();
    for i in 0..POISON_LIST_MAX as u64 {
        assert_eq!(inject(&mut h, i * 64), RC_SUCCESS);
    }
    assert_eq!(inject(&mut h, 0x10_0000), RC_POISON_LIMIT);
    // Already-poisoned lines still succeed at the limit.
    assert_eq!(inject(&mut h, 0), RC_SUCCESS);
    assert_eq!(h.regs.poison_records().len(), POISON_LIST_MAX);
}

#[test]
fn inject_logs_a_general_media_event() {
    let mut h = Harness::new();
    h.ok(OP_SET_EVT_INT_POLICY, &[1, 0, 0, 0]);
    assert_eq!(inject(&mut h, VOLATILE + 0x80), RC_SUCCESS);
    assert_eq!(h.take_irqs(), vec![EventLog::Informational.msix_vector()]);
    assert_eq!(h.r64(DEV_STATUS_REG), 1);
    let out = h.ok(OP_GET_EVENT_RECORDS, &[0]);
    assert_eq!(le16(&out, 0x14), 1);
    let rec = &out[0x20..0xa0];
    assert_eq!(&rec[..16], &GENERAL_MEDIA_EVENT_UUID);
    assert_eq!(rec[0x11] & 3, 0, "informational severity");
    assert_eq!(
        le64(rec, 0x30),
        VOLATILE + 0x80,
        "persistent DPA, volatile bit clear"
    );
    assert_eq!(rec[0x3a], 4, "transaction: host inject poison");
    // A volatile DPA sets the volatile bit; re-injecting logs nothing.
    inject(&mut h, 0x80);
    inject(&mut h, 0x80);
    let out = h.ok(OP_GET_EVENT_RECORDS, &[0]);
    assert_eq!(le16(&out, 0x14), 2);
    assert_eq!(le64(&out[0xa0..], 0x30), 0x81);
}

#[test]
fn clear_removes_and_writes_the_data() {
    let mut h = Harness::new();
    let written = Arc::new(Mutex::new(Vec::new()));
    let w = written.clone();
    h.regs.set_media_writer(Box::new(move |dpa, data| {
        w.lock().unwrap().push((dpa, data.to_vec()));
        Ok(())
    }));
    inject(&mut h, 0x1000);
    inject(&mut h, 0x2000);
    h.ok(OP_CLEAR_POISON, &clear_input(0x1000, 0xab));
    assert_eq!(
        get_poison(&mut h, 0, CAPACITY / 64).records,
        vec![(0x2000, 3, 1)]
    );
    assert_eq!(*written.lock().unwrap(), vec![(0x1000, vec![0xab; 64])]);
    // Clearing a clean line is fine and still writes the data.
    h.ok(OP_CLEAR_POISON, &clear_input(0x3000, 0));
    assert_eq!(written.lock().unwrap().len(), 2);
    assert_eq!(h.regs.poison_records().len(), 1);
}

#[test]
fn clear_validates_and_keeps_poison_when_the_write_fails() {
    let mut h = Harness::new();
    inject(&mut h, 0x1000);
    assert_eq!(
        h.rc(OP_CLEAR_POISON, &clear_input(0x1001, 0)),
        RC_INVALID_INPUT
    );
    assert_eq!(
        h.rc(OP_CLEAR_POISON, &clear_input(CAPACITY, 0)),
        RC_INVALID_PA
    );
    assert_eq!(h.rc(OP_CLEAR_POISON, &[0; 0x47]), RC_INVALID_PAYLOAD_LEN);
    h.regs
        .set_media_writer(Box::new(|_, _| Err(std::io::Error::other("backing gone"))));
    assert_eq!(h.rc(OP_CLEAR_POISON, &clear_input(0x1000, 0)), 4);
    assert_eq!(h.regs.poison_records().len(), 1);
}
