//! DOE tests: the mailbox driven register by register as Linux's
//! drivers/pci/doe.c and read_cdat_data() drive it.

use super::super::cdat::tests::{parse_structure, parse_table, switch, type3, Parsed};
use super::super::cdat::CdatEntry;
use super::*;
use fabric::hmat::{Perf, SwitchPortPerf};

/// Linux's pci_doe_send_req() + pci_doe_recv_resp(), register by
/// register, returning the payload after the 2-dword header.
fn linux_exchange(doe: &mut Doe, vid: u16, kind: u8, request: &[u32]) -> Result<Vec<u32>, String> {
    let status = doe.read(0x0C);
    if status & 1 != 0 {
        return Err("busy".into());
    }
    if status & 4 != 0 {
        return Err("error before send".into());
    }
    doe.write(0x10, u32::from(vid) | (u32::from(kind) << 16));
    doe.write(0x10, 2 + request.len() as u32);
    for &d in request {
        doe.write(0x10, d);
    }
    doe.write(0x08, 1 << 31);
    // Synchronous: ready at the first poll.
    let status = doe.read(0x0C);
    if status & 4 != 0 {
        return Err("error after go".into());
    }
    if status & (1 << 31) == 0 {
        return Err("no response".into());
    }
    let h1 = doe.read(0x14);
    if h1 != u32::from(vid) | (u32::from(kind) << 16) {
        return Err(format!("wrong protocol {h1:#x}"));
    }
    doe.write(0x14, 0);
    let h2 = doe.read(0x14);
    doe.write(0x14, 0);
    let length = match h2 & 0x3_FFFF {
        0 => 1 << 18,
        n => n as usize,
    };
    if length < 2 {
        return Err("short".into());
    }
    let mut payload = Vec::new();
    for i in 0..length - 2 {
        payload.push(doe.read(0x14));
        if i == length - 3 && doe.read(0x0C) & (1 << 31) == 0 {
            return Err("not ready before last ack".into());
        }
        doe.write(0x14, 0);
    }
    if doe.read(0x0C) & 4 != 0 {
        return Err("error at end".into());
    }
    if doe.read(0x0C) & (1 << 31) != 0 {
        return Err("still ready after the whole object".into());
    }
    Ok(payload)
}

fn cdat_request(handle: u16) -> u32 {
    u32::from(handle) << 16
}

/// Linux's read_cdat_data(): length from handle 0, then every entry until
/// handle 0xFFFF, each response exactly header + entry; reassembled.
fn linux_read_cdat(doe: &mut Doe) -> Vec<u8> {
    let first = linux_exchange(doe, 0x1E98, 2, &[cdat_request(0)]).unwrap();
    let length = first[1] as usize;
    let mut table = Vec::new();
    let mut handle = 0u32;
    loop {
        let rsp = linux_exchange(doe, 0x1E98, 2, &[cdat_request(handle as u16)]).unwrap();
        assert_eq!(rsp[0] & 0xFFFF, 0, "response code and table type");
        let entry: Vec<u8> = rsp[1..].iter().flat_map(|d| d.to_le_bytes()).collect();
        if handle == 0 {
            assert_eq!(entry.len(), 16, "handle 0 is the CDAT header");
        } else {
            let len = u16::from_le_bytes([entry[2], entry[3]]) as usize;
            assert_eq!(entry.len(), len, "response carries exactly the structure");
            assert!(rsp.len() <= 32, "fits Linux 6.1's 32-dword buffer");
        }
        table.extend_from_slice(&entry);
        handle = rsp[0] >> 16;
        if handle == 0xFFFF {
            break;
        }
    }
    assert_eq!(table.len(), length);
    table
}

fn sample_cdat() -> Cdat {
    let mut c = type3(
        1 << 30,
        1 << 29,
        Perf {
            read_latency_ps: 150_000,
            write_latency_ps: 250_000,
            read_mbps: 16_000,
            write_mbps: 16_000,
        },
    );
    c.sequence = 7;
    c
}

#[test]
fn discovery_lists_discovery_then_table_access() {
    let mut doe = Doe::with_cdat(sample_cdat());
    // Linux's pci_doe_cache_protocols(): walk until next index is 0.
    let r0 = linux_exchange(&mut doe, 1, 0, &[0]).unwrap();
    assert_eq!(r0, vec![0x0100_0001]);
    let r1 = linux_exchange(&mut doe, 1, 0, &[1]).unwrap();
    assert_eq!(r1, vec![0x1E98 | (2 << 16)]);
    // A version-2 request (version in [15:8]) gets the same answer.
    let r1v2 = linux_exchange(&mut doe, 1, 0, &[1 | (2 << 8)]).unwrap();
    assert_eq!(r1v2, r1);
    // Past the list: vendor 0xFFFF, and the walk ends.
    let r9 = linux_exchange(&mut doe, 1, 0, &[9]).unwrap();
    assert_eq!(r9, vec![0x00FF_FFFF]);
}

#[test]
fn discovery_with_no_extra_protocols_ends_at_once() {
    let mut doe = Doe::new(vec![]);
    let r = linux_exchange(&mut doe, 1, 0, &[0]).unwrap();
    assert_eq!(r, vec![0x0001]);
}

#[test]
fn cdat_read_entry_by_entry_reassembles_the_table() {
    let cdat = sample_cdat();
    let mut doe = Doe::with_cdat(cdat.clone());
    let table = linux_read_cdat(&mut doe);
    assert_eq!(table, cdat.to_bytes());
    let (seq, structures) = parse_table(&table);
    assert_eq!(seq, 7);
    assert_eq!(structures.len(), 12);
    assert_eq!(structures[0], Parsed::Dsmas(0, 0, 0, 1 << 30));
    assert_eq!(structures[6], Parsed::Dsmas(1, 4, 1 << 30, 1 << 29));
}

#[test]
fn each_entry_matches_its_structure() {
    let cdat = sample_cdat();
    let mut doe = Doe::with_cdat(cdat.clone());
    for (i, entry) in cdat.entries.iter().enumerate() {
        let rsp = linux_exchange(&mut doe, 0x1E98, 2, &[cdat_request(i as u16 + 1)]).unwrap();
        let next = if i + 1 == cdat.entries.len() {
            0xFFFF
        } else {
            i as u32 + 2
        };
        assert_eq!(rsp[0], next << 16);
        let bytes: Vec<u8> = rsp[1..].iter().flat_map(|d| d.to_le_bytes()).collect();
        assert_eq!(bytes, entry.to_bytes());
        let reparsed = parse_structure(&bytes);
        if let CdatEntry::Dsmas { handle, .. } = entry {
            assert!(matches!(reparsed, Parsed::Dsmas(h, ..) if h == *handle));
        }
    }
}

#[test]
fn switch_cdat_round_trips() {
    let ports: Vec<(u16, SwitchPortPerf)> = (0..20)
        .map(|port| {
            let perf = SwitchPortPerf {
                latency_ps: (25 + u64::from(port)) * 1000,
                bandwidth_mbps: 64_000,
            };
            (port, perf)
        })
        .collect();
    let cdat = switch(&ports);
    let mut doe = Doe::with_cdat(cdat.clone());
    let table = linux_read_cdat(&mut doe);
    let (_, s) = parse_table(&table);
    assert_eq!(s.len(), 8);
    assert_eq!(table, cdat.to_bytes());
}

#[test]
fn set_cdat_replaces_the_table() {
    let mut doe = Doe::with_cdat(Cdat::default());
    assert_eq!(linux_read_cdat(&mut doe).len(), 16);
    let mut cdat = sample_cdat();
    cdat.sequence = 8;
    doe.set_cdat(&cdat);
    let (seq, s) = parse_table(&linux_read_cdat(&mut doe));
    assert_eq!((seq, s.len()), (8, 12));
}

#[test]
fn bad_requests_are_discarded_silently() {
    let mut doe = Doe::with_cdat(sample_cdat());
    let cases: Vec<Vec<u32>> = vec![
        // Unknown protocol.
        vec![0x1234, 3, 0],
        // Length says 4 but 3 written.
        vec![0x0002_1E98, 4, 0],
        // Length says 2: no payload.
        vec![0x0002_1E98, 2],
        // Handle past the table.
        vec![0x0002_1E98, 3, cdat_request(200)],
        // Unknown request code / table type.
        vec![0x0002_1E98, 3, 1],
        vec![0x0002_1E98, 3, 1 << 8],
        // Discovery needs its index dword.
        vec![0x0000_0001, 2],
    ];
    for req in cases {
        for d in &req {
            doe.write(0x10, *d);
        }
        doe.write(0x08, 1 << 31);
        assert_eq!(doe.read(0x0C), 0, "request {req:x?}");
        assert_eq!(doe.read(0x14), 0);
    }
    // The mailbox still works afterwards.
    assert!(linux_exchange(&mut doe, 1, 0, &[0]).is_ok());
    // Go with nothing written does nothing.
    doe.write(0x08, 1 << 31);
    assert_eq!(doe.read(0x0C), 0);
}

#[test]
fn underflow_sets_error_and_abort_clears_it() {
    let mut doe = Doe::with_cdat(sample_cdat());
    doe.write(0x14, 0);
    assert_eq!(doe.read(0x0C), 4);
    // With Error set, Go is ignored and Linux's send refuses.
    assert_eq!(
        linux_exchange(&mut doe, 1, 0, &[0]),
        Err("error before send".into())
    );
    doe.write(0x08, 1); // abort
    assert_eq!(doe.read(0x0C), 0);
    assert!(linux_exchange(&mut doe, 1, 0, &[0]).is_ok());
}

#[test]
fn abort_drops_a_pending_response() {
    let mut doe = Doe::with_cdat(sample_cdat());
    for d in [0x0002_1E98, 3, 0] {
        doe.write(0x10, d);
    }
    doe.write(0x08, 1 << 31);
    assert_eq!(doe.read(0x0C), 1 << 31);
    doe.write(0x14, 0); // consume one dword
    doe.write(0x08, 1);
    assert_eq!(doe.read(0x0C), 0);
    assert_eq!(doe.read(0x14), 0);
    // A half-written request is dropped too.
    doe.write(0x10, 0x0002_1E98);
    doe.write(0x08, 1);
    assert!(linux_exchange(&mut doe, 0x1E98, 2, &[0]).is_ok());
}

#[test]
fn overlong_request_sets_error() {
    let mut doe = Doe::with_cdat(sample_cdat());
    for _ in 0..=MAX_REQUEST_DWORDS {
        doe.write(0x10, 0xFFFF_FFFF);
    }
    assert_eq!(doe.read(0x0C) & 4, 4);
    doe.write(0x08, 1);
    assert_eq!(doe.read(0x0C), 0);
}

#[test]
fn registers_without_function_read_zero() {
    let mut doe = Doe::with_cdat(sample_cdat());
    for off in [0x00, 0x04, 0x08, 0x10, 0x18, 0x0E, 0xFFFF] {
        assert_eq!(doe.read(off), 0, "offset {off:#x}");
    }
    // Interrupt enable is not supported, so it does not stick.
    doe.write(0x08, 2);
    assert_eq!(doe.read(0x08), 0);
    assert_eq!(doe.read(0x04), 0);
}
