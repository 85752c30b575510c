//! GET_LSA / SET_LSA through the mailbox, in memory and file-backed.

use super::*;

fn get_lsa_input(offset: u32, length: u32) -> Vec<u8> {
    let mut v = offset.to_le_bytes().to_vec();
    v.extend_from_slice(&length.to_le_bytes());
    v
}

fn set_lsa_input(offset: u32, data: &[u8]) -> Vec<u8> {
    // {offset, reserved, data}; the reserved dword must be ignored.
    let mut v = offset.to_le_bytes().to_vec();
    v.extend_from_slice(&0xdead_beefu32.to_le_bytes());
    v.extend_from_slice(data);
    v
}

/// Writes labels in payload-sized chunks and reads them back in other
/// chunk sizes, as `cxl write-labels` / `read-labels` do.
fn round_trip(h: &mut Harness, data: &[u8]) {
    for (i, chunk) in data.chunks(2040).enumerate() {
        let off = (i * 2040) as u32;
        assert_eq!(h.rc(OP_SET_LSA, &set_lsa_input(off, chunk)), RC_SUCCESS);
    }
    let mut back = Vec::new();
    for off in (0..data.len()).step_by(1000) {
        let len = (data.len() - off).min(1000) as u32;
        back.extend(h.ok(OP_GET_LSA, &get_lsa_input(off as u32, len)));
    }
    assert_eq!(back, data);
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

#[test]
fn lsa_round_trip_in_memory() {
    let mut h = Harness::new();
    assert_eq!(h.ok(OP_GET_LSA, &get_lsa_input(0, 16)), vec![0u8; 16]);
    round_trip(&mut h, &pattern(LSA_SIZE, 7));
    // A small write in the middle changes only its bytes.
    h.ok(OP_SET_LSA, &set_lsa_input(100, b"label!"));
    let got = h.ok(OP_GET_LSA, &get_lsa_input(98, 10));
    let base = pattern(LSA_SIZE, 7);
    assert_eq!(&got[..2], &base[98..100]);
    assert_eq!(&got[2..8], b"label!");
    assert_eq!(&got[8..], &base[106..108]);
    // Empty write and read are fine.
    assert_eq!(
        h.rc(OP_SET_LSA, &set_lsa_input(LSA_SIZE as u32, &[])),
        RC_SUCCESS
    );
    assert!(h
        .ok(OP_GET_LSA, &get_lsa_input(LSA_SIZE as u32, 0))
        .is_empty());
}

#[test]
fn lsa_accesses_past_the_end_are_invalid_input() {
    let mut h = Harness::new();
    let size = LSA_SIZE as u32;
    assert_eq!(h.rc(OP_GET_LSA, &get_lsa_input(size, 1)), RC_INVALID_INPUT);
    assert_eq!(
        h.rc(OP_GET_LSA, &get_lsa_input(size - 8, 9)),
        RC_INVALID_INPUT
    );
    assert_eq!(
        h.rc(OP_GET_LSA, &get_lsa_input(u32::MAX, u32::MAX)),
        RC_INVALID_INPUT
    );
    assert_eq!(
        h.rc(OP_GET_LSA, &get_lsa_input(size + 1, 0)),
        RC_INVALID_INPUT
    );
    // Within the LSA but more than one payload can carry.
    assert_eq!(h.rc(OP_GET_LSA, &get_lsa_input(0, 2049)), RC_INVALID_INPUT);
    assert_eq!(
        h.rc(OP_SET_LSA, &set_lsa_input(size - 3, &[1; 4])),
        RC_INVALID_INPUT
    );
    assert_eq!(
        h.rc(OP_SET_LSA, &set_lsa_input(u32::MAX, &[1])),
        RC_INVALID_INPUT
    );
    // Nothing was written by the failed set.
    assert_eq!(h.ok(OP_GET_LSA, &get_lsa_input(size - 3, 3)), vec![0; 3]);
    // Malformed lengths.
    assert_eq!(h.rc(OP_GET_LSA, &[0; 7]), RC_INVALID_PAYLOAD_LEN);
    assert_eq!(h.rc(OP_GET_LSA, &[0; 9]), RC_INVALID_PAYLOAD_LEN);
    assert_eq!(h.rc(OP_SET_LSA, &[0; 7]), RC_INVALID_PAYLOAD_LEN);
}

#[test]
fn device_without_lsa_rejects_label_access() {
    let mut h = Harness::with_config(config(Box::new(MemoryLabels::new(0))));
    assert!(h.ok(OP_GET_LSA, &get_lsa_input(0, 0)).is_empty());
    assert_eq!(h.rc(OP_GET_LSA, &get_lsa_input(0, 1)), RC_INVALID_INPUT);
    assert_eq!(h.rc(OP_SET_LSA, &set_lsa_input(0, &[1])), RC_INVALID_INPUT);
}

/// Labels that always fail, to check I/O errors become Internal Error.
struct BrokenLabels;

impl LabelStorage for BrokenLabels {
    fn size(&self) -> u64 {
        64
    }
    fn read(&mut self, _: u64, _: &mut [u8]) -> std::io::Result<()> {
        Err(std::io::Error::other("disk gone"))
    }
    fn write(&mut self, _: u64, _: &[u8]) -> std::io::Result<()> {
        Err(std::io::Error::other("disk gone"))
    }
}

#[test]
fn lsa_io_errors_are_internal_errors() {
    let mut h = Harness::with_config(config(Box::new(BrokenLabels)));
    assert_eq!(h.rc(OP_GET_LSA, &get_lsa_input(0, 4)), 4);
    assert_eq!(h.rc(OP_SET_LSA, &set_lsa_input(0, &[1])), 4);
}

#[test]
fn file_backed_labels_survive_a_device_restart() {
    let path = TempPath::new("mbox-lsa");
    let data = pattern(LSA_SIZE, 99);
    {
        let lsa = FileLabels::open(&path.0, LSA_SIZE as u64).unwrap();
        let mut h = Harness::with_config(config(Box::new(lsa)));
        round_trip(&mut h, &data);
    }
    assert_eq!(
        std::fs::read(&path.0).unwrap(),
        data,
        "file holds the labels"
    );
    // A new device (VMM restart) on the same file reads them back.
    let lsa = FileLabels::open(&path.0, LSA_SIZE as u64).unwrap();
    let mut h = Harness::with_config(config(Box::new(lsa)));
    let id = h.ok(OP_IDENTIFY, &[]);
    assert_eq!(le32(&id, 0x38), LSA_SIZE as u32);
    let mut back = Vec::new();
    for off in (0..LSA_SIZE).step_by(2048) {
        back.extend(h.ok(OP_GET_LSA, &get_lsa_input(off as u32, 2048)));
    }
    assert_eq!(back, data);
}
