//! MMIO dispatch cost per access through the bus, for a BAR register among
//! the BARs of 40 CXL type-3 functions (the shape of a large topology).
//!
//! `cargo bench -p devices --bench mmio_dispatch [-- --accesses N]`
//! prints one JSON object: nanoseconds per 4-byte read of the Memory Device
//! Status register (BAR2) for the last function, for all 40 in turn, and with
//! several threads each reading its own function at once (what vCPUs do).

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use devices::cxl::component::Cdat;
use devices::cxl::mailbox::MemoryLabels;
use devices::cxl::type3::{build_type3, Type3Spec, BAR_DEVICE_REGS};
use devices::pci::{Bdf, LinkParams, MsiSink, PciDevice, PciFunction, PciRoot};
use devices::Bus;

const FUNCTIONS: usize = 40;
const WINDOW: u64 = 0xc000_0000;
const WINDOW_SIZE: u64 = 0x2000_0000;
/// Each function's three 64-bit BARs (0, 2, 4) get a 64 KiB slot each.
const FUNCTION_STRIDE: u64 = 0x3_0000;
/// Memory Device Status: a plain register read, no side effects.
const MEMDEV_STATUS: u64 = 0x8a8;

struct NoMsi;
impl MsiSink for NoMsi {
    fn route(&self, _: u16, _: u64, _: u32) {}
    fn trigger(&self, _: u16) {}
}

fn bar_base(function: usize, bar: usize) -> u64 {
    WINDOW + 0x100_0000 + function as u64 * FUNCTION_STRIDE + (bar as u64 / 2) * 0x1_0000
}

fn type3(i: usize) -> PciFunction {
    let mut f = build_type3(
        Type3Spec {
            volatile_bytes: 256 << 20,
            persistent_bytes: 0,
            serial: 0x3000 + i as u64,
            lsa: Box::new(MemoryLabels::new(0)),
            link: LinkParams {
                gen: 5,
                width: 16,
                port_number: 0,
            },
            cdat: Cdat::default(),
            intx: None,
            media: None,
        },
        Arc::new(NoMsi),
    )
    .function;
    // Program the BARs and enable memory decode, as firmware does.
    for bar in [0, 2, 4] {
        let at = bar_base(i, bar);
        let _ = f.write_config(4 + bar, 0, &(at as u32).to_le_bytes());
        let _ = f.write_config(5 + bar, 0, &((at >> 32) as u32).to_le_bytes());
    }
    let _ = f.write_config(1, 0, &0b110u32.to_le_bytes());
    f
}

/// The MMIO bus with 40 type-3 functions' BARs decoding (each BAR its own
/// entry on the bus, placed when the function joined the segment).
fn machine() -> Arc<Bus> {
    let bus = Arc::new(Bus::new());
    let mut root = PciRoot::new(bus.clone(), vec![(WINDOW, WINDOW_SIZE)]);
    for i in 0..FUNCTIONS {
        root.add(Bdf::new(1 + i as u8, 0, 0), type3(i));
    }
    bus
}

fn status_addr(function: usize) -> u64 {
    bar_base(function, BAR_DEVICE_REGS) + MEMDEV_STATUS
}

/// Nanoseconds per access over `n` reads cycling through `addrs`.
fn time_reads(bus: &Bus, addrs: &[u64], n: usize) -> f64 {
    let mut data = [0u8; 4];
    let start = Instant::now();
    for i in 0..n {
        let claimed = bus.read(addrs[i % addrs.len()], &mut data);
        black_box((claimed, &data));
    }
    start.elapsed().as_nanos() as f64 / n as f64
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let accesses = args
        .iter()
        .position(|a| a == "--accesses")
        .and_then(|i| args.get(i + 1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(2_000_000usize);
    const RUNS: usize = 5;
    let bus = machine();

    // Every function answers at its own BAR: the register reads back the
    // same value everywhere, so check that something decoded it.
    for f in 0..FUNCTIONS {
        let mut d = [0u8; 4];
        assert!(
            bus.read(status_addr(f), &mut d),
            "function {f} BAR2 not decoded"
        );
    }

    let last = [status_addr(FUNCTIONS - 1)];
    let all: Vec<u64> = (0..FUNCTIONS).map(status_addr).collect();
    let mut results = Vec::new();
    let mut case = |name: &str, threads: usize, ns: f64| {
        results.push(format!(
            "{{\"case\":\"{name}\",\"threads\":{threads},\"ns_per_access\":{ns:.1}}}"
        ));
    };
    case(
        "last-function",
        1,
        median(
            (0..RUNS)
                .map(|_| time_reads(&bus, &last, accesses))
                .collect(),
        ),
    );
    case(
        "round-robin",
        1,
        median(
            (0..RUNS)
                .map(|_| time_reads(&bus, &all, accesses))
                .collect(),
        ),
    );
    for threads in [2, 4] {
        // Each thread reads its own function (as vCPUs driving different
        // devices do); the figure is wall time per access of one thread.
        let runs = (0..RUNS)
            .map(|_| {
                let per_thread: Vec<f64> = std::thread::scope(|s| {
                    let handles: Vec<_> = (0..threads)
                        .map(|t| {
                            let bus = bus.clone();
                            s.spawn(move || {
                                time_reads(&bus, &[status_addr(FUNCTIONS - 1 - t)], accesses)
                            })
                        })
                        .collect();
                    handles.into_iter().map(|h| h.join().unwrap()).collect()
                });
                per_thread.iter().sum::<f64>() / threads as f64
            })
            .collect();
        case("own-function-per-thread", threads, median(runs));
    }
    println!(
        "{{\"bench\":\"mmio_dispatch\",\"functions\":{FUNCTIONS},\"accesses\":{accesses},\"runs\":{RUNS},\"statistic\":\"median\",\"results\":[{}]}}",
        results.join(",")
    );
}
