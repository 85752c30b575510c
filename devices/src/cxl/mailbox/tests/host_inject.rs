//! Host-side injection (the control API) seen through the guest's commands.

use super::*;

#[test]
fn host_poison_shows_in_the_poison_list_and_clears() {
    let mut h = Harness::new();
    assert_eq!(h.regs.host_inject_poison(0x1000, 128), Ok(2));
    assert_eq!(
        h.regs.host_inject_poison(0x1000, 1),
        Ok(0),
        "already poisoned"
    );
    let list = h.ok(
        OP_GET_POISON,
        &[&0u64.to_le_bytes()[..], &(VOLATILE / 64).to_le_bytes()].concat(),
    );
    // Output: flags, rsvd, overflow ts, count at 0x0a, records from 0x20.
    // One record per 64 B line, as Inject Poison makes them.
    assert_eq!(le16(&list, 0x0a), 2);
    assert_eq!(le64(&list, 0x20) & !63, 0x1000);
    assert_eq!(le64(&list, 0x30) & !63, 0x1040);
    assert_eq!(le32(&list, 0x28), 1, "length in 64 B units");
    assert_eq!(h.regs.host_clear_poison(0x1000), Ok(()));
    assert_eq!(
        h.regs.host_clear_poison(0x1001),
        Err(ReturnCode::InvalidInput)
    );
    assert_eq!(
        h.regs.host_inject_poison(VOLATILE + PERSISTENT, 64),
        Err(ReturnCode::InvalidPhysicalAddress)
    );
}

#[test]
fn host_events_land_in_the_informational_log_and_interrupt() {
    let mut h = Harness::new();
    h.ok(OP_SET_EVT_INT_POLICY, &[1, 1, 1, 1]);
    h.take_irqs();
    h.regs
        .host_inject_event(HostEvent::Dram { dpa: 0x2000 })
        .unwrap();
    h.regs.host_inject_event(HostEvent::MemoryModule).unwrap();
    assert_eq!(h.take_irqs(), vec![EVENT_MSIX_VECTOR_BASE; 2]);
    let recs = h.ok(OP_GET_EVENT_RECORDS, &[0]);
    assert_eq!(le16(&recs, 0x14), 2, "two records");
    assert_eq!(recs[0x20], 0x60, "DRAM event UUID first byte");
    assert_eq!(recs[0xa0], 0xfe, "memory module UUID first byte");
    assert!(h
        .regs
        .host_inject_event(HostEvent::GeneralMedia { dpa: 1 << 40 })
        .is_err());
}
