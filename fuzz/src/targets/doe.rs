//! DOE mailboxes (PCIe 6.0 6.30) serving CDAT (CXL 3.1 8.1.11): discovery
//! and table-access requests, well formed or not, Go and Abort at any time,
//! reads of the read mailbox past the response, for a type-3 device's and
//! a switch's CDAT.

use devices::cxl::component::{Cdat, Doe};
use fabric::cdat::{switch_ports_cdat, type3_cdat};
use fabric::hmat::{Perf, SwitchPortPerf};

use crate::input::Input;

const CONTROL: u16 = 0x08;
const STATUS: u16 = 0x0c;
const WRITE_MAILBOX: u16 = 0x10;
const READ_MAILBOX: u16 = 0x14;
const GO: u32 = 1 << 31;

fn perf(input: &mut Input) -> Perf {
    Perf {
        read_latency_ps: input.u64() % 10_000_000,
        write_latency_ps: input.u64() % 10_000_000,
        read_mbps: input.u64() % 1_000_000,
        write_mbps: input.u64() % 1_000_000,
    }
}

pub fn fuzz_doe_cdat(data: &[u8]) {
    let mut input = Input::new(data);
    let cdat = if input.bool() {
        let vol = input.range(0, 4) << 28;
        let pers = input.range(0, 4) << 28;
        Cdat::from(&type3_cdat(vol, pers, &perf(&mut input)))
    } else {
        let ports: Vec<(u16, SwitchPortPerf)> = (0..input.range(0, 32))
            .map(|p| {
                let perf = SwitchPortPerf {
                    latency_ps: input.u64() % 10_000_000,
                    bandwidth_mbps: input.u64() % 1_000_000,
                };
                (p as u16, perf)
            })
            .collect();
        Cdat::from(&switch_ports_cdat(&ports))
    };
    let mut doe = Doe::with_cdat(cdat);
    let mut steps = 0;
    while !input.is_empty() && steps < 512 {
        steps += 1;
        match input.range(0, 5) {
            // A request: header 1 (vendor, type), header 2 (length), body.
            0 => {
                let kind = input.pick(&[0u32, 2, 1, 0xff]);
                let vendor = input.pick(&[0x0001u32, 0x1e98, 0xffff]);
                let body: Vec<u32> = (0..input.range(0, 4)).map(|_| input.u32()).collect();
                let len = if input.bool() {
                    2 + body.len() as u32
                } else {
                    input.u32()
                };
                doe.write(WRITE_MAILBOX, vendor | (kind << 16));
                doe.write(WRITE_MAILBOX, len);
                for b in body {
                    doe.write(WRITE_MAILBOX, b);
                }
                doe.write(CONTROL, GO);
            }
            // Read the response the way Linux does: read, then ack.
            1 => {
                for _ in 0..input.range(0, 64) {
                    let _ = doe.read(STATUS);
                    let _ = doe.read(READ_MAILBOX);
                    doe.write(READ_MAILBOX, 0);
                }
            }
            2 => doe.write(CONTROL, input.u32()),
            3 => {
                let offset = input.range(0, 0x20) as u16;
                doe.write(offset, input.u32());
            }
            _ => {
                let offset = input.range(0, 0x20) as u16;
                let _ = doe.read(offset);
            }
        }
    }
}
