//! A harness that drives one accelerator from plain bytes, over fake
//! memory that records every access. [`run_program`] is the entry point for
//! a coverage-guided fuzz target and for the seeded-random test: it checks
//! the device's invariants after every step and panics when one breaks
//! (a panic is what a fuzzer reports). [`command::parse`] is the other
//! entry point, for descriptors alone.
//!
//! [`command::parse`]: super::command::parse

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use fabric::{Engine, Target, Topology};

use super::command::{build, opcode, FLAG_IRQ, FLAG_STATUS_WB};
use super::regs::{self, doorbell, queue_reg};
use super::{
    AccelConfig, AccelDeps, Accelerator, DmaError, DmaMemory, GuestClock, Interrupts, Span,
};
use crate::pci::{IntxLine, IntxPin, MsiSink, MsixTable, SharedMsix};

/// The topology the harness models: `a0` (the device under test) and `a1`
/// below switch `sw0`, `a2` on another root port, type-3 `m0` below `sw0`
/// with a 256 MiB window at the engine's default base.
pub const TOPOLOGY: &str = r#"
[[host_bridge]]
id = "hb0"
root_ports = 2
[[switch]]
id = "sw0"
port = "hb0.rp0"
downstream_ports = 3
link = { gen = 5, width = 16, flit = "68B" }
[[accelerator]]
id = "a0"
port = "sw0.dp0"
vram = "4M"
queues = 4
dma_engines = 2
link = { gen = 4, width = 16, flit = "none" }
[[accelerator]]
id = "a1"
port = "sw0.dp1"
vram = "4M"
link = { gen = 4, width = 16, flit = "none" }
[[accelerator]]
id = "a2"
port = "hb0.rp1"
vram = "4M"
link = { gen = 4, width = 16, flit = "none" }
[[type3]]
id = "m0"
port = "sw0.dp2"
volatile = "256M"
[[window]]
targets = ["hb0"]
size = "256M"
"#;

/// Bus addresses of the harness's memory.
pub const RAM: u64 = 0;
pub const RAM_SIZE: u64 = 16 << 20;
pub const VRAM0: u64 = 0x1_0000_0000;
pub const VRAM1: u64 = 0x2_0000_0000;
pub const VRAM2: u64 = 0x3_0000_0000;
pub const VRAM_BYTES: u64 = 4 << 20;
/// The CXL window (the engine places it at 64 GiB); 4 MiB of it is backed.
pub const CXL: u64 = fabric::engine::DEFAULT_WINDOW_BASE;
pub const CXL_SIZE: u64 = 4 << 20;
/// Memory that decodes but refuses every access (a poisoned range).
pub const BROKEN: u64 = 0x4_0000_0000;
pub const BROKEN_SIZE: u64 = 1 << 20;

struct Region {
    base: u64,
    size: u64,
    target: Target,
    /// Accesses fail (DMA_FAULT) though the range decodes.
    broken: bool,
    bytes: Mutex<Vec<u8>>,
}

/// Memory regions with byte contents; records every access and counts
/// accesses outside what [`DmaMemory::decode`] admits.
pub struct FakeMemory {
    regions: Vec<Region>,
    /// (address, length, is write) of every read and write.
    pub accesses: Mutex<Vec<(u64, usize, bool)>>,
    /// Accesses that did not lie inside one region.
    pub violations: AtomicU64,
    /// While set, host RAM decodes to nothing (to fail fetches and writebacks).
    pub ram_unmapped: AtomicBool,
}

impl FakeMemory {
    pub fn new() -> Self {
        let region = |base, size: u64, target, broken| Region {
            base,
            size,
            target,
            broken,
            bytes: Mutex::new(vec![0; if broken { 0 } else { size as usize }]),
        };
        FakeMemory {
            regions: vec![
                region(RAM, RAM_SIZE, Target::HostMemory, false),
                region(VRAM0, VRAM_BYTES, Target::Accelerator(0), false),
                region(VRAM1, VRAM_BYTES, Target::Accelerator(1), false),
                region(VRAM2, VRAM_BYTES, Target::Accelerator(2), false),
                region(CXL, CXL_SIZE, Target::Address(CXL), false),
                region(BROKEN, BROKEN_SIZE, Target::HostMemory, true),
            ],
            accesses: Mutex::new(Vec::new()),
            violations: AtomicU64::new(0),
            ram_unmapped: AtomicBool::new(false),
        }
    }

    fn region(&self, addr: u64) -> Option<&Region> {
        if self.ram_unmapped.load(Ordering::Relaxed) && addr < RAM + RAM_SIZE {
            return None;
        }
        self.regions
            .iter()
            .find(|r| addr >= r.base && addr - r.base < r.size)
    }

    /// The region and offset holding all of `[addr, addr + len)`.
    fn inside(&self, addr: u64, len: usize, write: bool) -> Result<(&Region, usize), DmaError> {
        self.accesses.lock().unwrap().push((addr, len, write));
        let r = self.region(addr).filter(|r| {
            addr.checked_add(len as u64)
                .is_some_and(|end| end <= r.base + r.size)
        });
        match r {
            Some(r) if r.broken => Err(DmaError::Fault(addr)),
            Some(r) => Ok((r, (addr - r.base) as usize)),
            None => {
                self.violations.fetch_add(1, Ordering::Relaxed);
                Err(DmaError::Unmapped(addr))
            }
        }
    }

    /// Test access, not recorded.
    pub fn peek(&self, addr: u64, len: usize) -> Vec<u8> {
        let r = self.region(addr).expect("peek inside a region");
        let off = (addr - r.base) as usize;
        r.bytes.lock().unwrap()[off..off + len].to_vec()
    }

    /// Test access, not recorded.
    pub fn poke(&self, addr: u64, data: &[u8]) {
        assert!(
            self.try_poke(addr, data),
            "poke at {addr:#x} inside a region"
        );
    }

    /// Test access, not recorded; false if the range is not all in one region.
    pub fn try_poke(&self, addr: u64, data: &[u8]) -> bool {
        let Some(r) = self.region(addr).filter(|r| !r.broken) else {
            return false;
        };
        let off = (addr - r.base) as usize;
        match r.bytes.lock().unwrap().get_mut(off..off + data.len()) {
            Some(b) => {
                b.copy_from_slice(data);
                true
            }
            None => false,
        }
    }

    /// Writes recorded so far that overlap `[addr, addr + len)`.
    pub fn writes_to(&self, addr: u64, len: u64) -> usize {
        self.accesses
            .lock()
            .unwrap()
            .iter()
            .filter(|&&(a, n, w)| w && a < addr + len && addr < a + n as u64)
            .count()
    }
}

impl Default for FakeMemory {
    fn default() -> Self {
        Self::new()
    }
}

impl DmaMemory for FakeMemory {
    fn decode(&self, addr: u64, len: u64) -> Result<Span, DmaError> {
        let r = self.region(addr).ok_or(DmaError::Unmapped(addr))?;
        let target = match r.target {
            Target::Address(_) => Target::Address(addr),
            t => t,
        };
        Ok(Span {
            target,
            len: len.min(r.base + r.size - addr),
        })
    }

    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), DmaError> {
        let (r, off) = self.inside(addr, buf.len(), false)?;
        buf.copy_from_slice(&r.bytes.lock().unwrap()[off..off + buf.len()]);
        Ok(())
    }

    fn write(&self, addr: u64, data: &[u8]) -> Result<(), DmaError> {
        let (r, off) = self.inside(addr, data.len(), true)?;
        r.bytes.lock().unwrap()[off..off + data.len()].copy_from_slice(data);
        Ok(())
    }
}

/// A clock the test moves by hand.
#[derive(Default)]
pub struct FakeClock(pub AtomicU64);

impl GuestClock for FakeClock {
    fn now_ps(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Records MSI-X triggers by vector.
#[derive(Default)]
pub struct MsiRecorder(pub Mutex<Vec<u16>>);

impl MsiSink for MsiRecorder {
    fn route(&self, _: u16, _: u64, _: u32) {}
    fn trigger(&self, vector: u16) {
        self.0.lock().unwrap().push(vector);
    }
}

/// Records the levels driven on the INTx line.
#[derive(Default)]
pub struct LineRecorder(pub Mutex<Vec<bool>>);

impl IntxLine for LineRecorder {
    fn set_level(&self, asserted: bool) {
        self.0.lock().unwrap().push(asserted);
    }
}

/// One accelerator (`a0`) wired to fakes.
pub struct Harness {
    pub dev: Accelerator,
    pub mem: Arc<FakeMemory>,
    pub clock: Arc<FakeClock>,
    pub engine: Arc<Mutex<Engine>>,
    pub msi: Arc<MsiRecorder>,
    pub msix: SharedMsix,
    pub line: Arc<LineRecorder>,
    pub pin: Arc<IntxPin>,
}

impl Harness {
    pub fn new() -> Self {
        let topo = Topology::from_toml_str(TOPOLOGY).expect("harness topology");
        let mem = Arc::new(FakeMemory::new());
        let clock = Arc::new(FakeClock::default());
        let engine = Arc::new(Mutex::new(Engine::new(&topo)));
        let msi = Arc::new(MsiRecorder::default());
        let cfg = AccelConfig::from_topology(&topo.accelerators[0], 0);
        let msix = Arc::new(Mutex::new(MsixTable::new(
            cfg.queues as u16 + 1,
            msi.clone(),
        )));
        let line = Arc::new(LineRecorder::default());
        let pin = IntxPin::new(1, line.clone());
        let deps = AccelDeps {
            memory: mem.clone(),
            engine: engine.clone(),
            clock: clock.clone(),
        };
        let dev = Accelerator::new(cfg, deps, Interrupts::new(msix.clone(), Some(pin.clone())));
        Harness {
            dev,
            mem,
            clock,
            engine,
            msi,
            msix,
            line,
            pin,
        }
    }

    pub fn read32(&mut self, offset: u64) -> u32 {
        let mut b = [0u8; 4];
        self.dev.read(offset, &mut b);
        u32::from_le_bytes(b)
    }

    pub fn read64(&mut self, offset: u64) -> u64 {
        let mut b = [0u8; 8];
        self.dev.read(offset, &mut b);
        u64::from_le_bytes(b)
    }

    pub fn write32(&mut self, offset: u64, v: u32) {
        self.dev.write(offset, &v.to_le_bytes());
    }

    pub fn write64(&mut self, offset: u64, v: u64) {
        self.dev.write(offset, &v.to_le_bytes());
    }

    pub fn now(&self) -> u64 {
        self.clock.0.load(Ordering::Relaxed)
    }

    /// Moves guest time to `t` (never back) and polls, as the VMM's timer does.
    pub fn advance_to(&mut self, t: u64) {
        let t = t.max(self.now());
        self.clock.0.store(t, Ordering::Relaxed);
        self.dev.poll(t);
    }

    /// Runs until nothing is pending.
    pub fn settle(&mut self) {
        while let Some(t) = self.dev.next_deadline() {
            self.advance_to(t);
        }
    }

    /// MSI-X on, every vector unmasked, every cause enabled.
    pub fn enable_msix(&mut self) {
        let mut t = self.msix.lock().unwrap();
        for v in 0..t.len() as u64 {
            t.write_table(v * 16 + 12, &0u32.to_le_bytes());
        }
        t.set_control(true, false);
        drop(t);
        self.write32(regs::INT_ENABLE, u32::MAX);
    }

    /// Queue `q` on a ring of `size` entries at `base`, enabled.
    pub fn setup_queue(&mut self, q: usize, base: u64, size: u32) {
        self.write64(queue_reg(q, regs::Q_BASE), base);
        self.write32(queue_reg(q, regs::Q_SIZE), size);
        self.write32(queue_reg(q, regs::Q_CTRL), 1);
    }

    /// Writes descriptors at queue `q`'s tail and rings its doorbell.
    pub fn submit(&mut self, q: usize, descriptors: &[[u8; 64]]) {
        let base = self.read64(queue_reg(q, regs::Q_BASE));
        let size = self.read32(queue_reg(q, regs::Q_SIZE)).max(1);
        let mut tail = self.read32(queue_reg(q, regs::Q_TAIL));
        for d in descriptors {
            // A ring the program pointed anywhere may not take the bytes.
            self.mem
                .try_poke(base.wrapping_add(u64::from(tail) * 64), d);
            tail = (tail + 1) % size;
        }
        self.write32(doorbell(q), tail);
    }

    /// The invariants every step must keep (panics when one breaks).
    pub fn check_invariants(&self) {
        assert_eq!(
            self.mem.violations.load(Ordering::Relaxed),
            0,
            "an access outside decoded memory"
        );
        for (i, q) in self.dev.queues.iter().enumerate() {
            let size = q.size.max(1);
            if q.enabled {
                assert!(
                    q.head < size && q.tail < size && q.fetch < size,
                    "queue {i}: {q:?}"
                );
            }
            let mut last = 0;
            for r in &q.pending {
                assert!(r.at >= last, "queue {i} retires out of order");
                last = r.at;
            }
        }
        let level = self.dev.int_status & self.dev.int_enable != 0;
        let msix = self.msix.lock().unwrap().enabled();
        assert_eq!(self.pin.pending(), level && !msix, "INTx level");
    }
}

impl Default for Harness {
    fn default() -> Self {
        Self::new()
    }
}

/// Addresses worth aiming at: every region's start and end, a hole.
const INTERESTING: [u64; 12] = [
    RAM,
    RAM + 0x10_0000,
    RAM + RAM_SIZE - 64,
    VRAM0,
    VRAM0 + VRAM_BYTES - 64,
    VRAM1,
    VRAM2 + 0x1000,
    CXL,
    CXL + CXL_SIZE - 64,
    BROKEN,
    0x8000_0000,
    u64::MAX - 7,
];

/// Reads bytes as a little program for [`Harness`]; every step is followed
/// by [`Harness::check_invariants`]. Unknown or truncated steps end it.
pub fn run_program(data: &[u8]) -> Harness {
    let mut h = Harness::new();
    // Start from a working device so that random bytes reach the commands:
    // queues 0 and 1 on rings in host RAM, 2 and 3 in VRAM; the first byte
    // says whether MSI-X is on.
    if data.first().is_some_and(|b| b & 1 == 1) {
        h.enable_msix();
    }
    for q in 0..4 {
        let base = if q < 2 { RAM + 0x1_0000 } else { VRAM0 };
        h.setup_queue(q, base + q as u64 * 0x1000, 16);
    }
    let mut it = data.iter().copied();
    let mut next = move || it.next();
    let word = |n: &mut dyn FnMut() -> Option<u8>, bytes: usize| -> Option<u64> {
        let mut v = 0u64;
        for i in 0..bytes {
            v |= u64::from(n()?) << (8 * i);
        }
        Some(v)
    };
    while let Some(op) = next() {
        let q = usize::from(op >> 4) % 4;
        let step: Option<()> = (|| {
            match op & 0x0f {
                0 => {
                    let off = word(&mut next, 2)? & !3;
                    let v = word(&mut next, 4)? as u32;
                    h.write32(off, v);
                }
                1 => {
                    let off = word(&mut next, 2)?;
                    h.read32(off);
                }
                2 | 11 => {
                    let pick = usize::from(next()?);
                    let base = if pick % 2 == 0 { RAM } else { VRAM0 };
                    let size = 2u32 << (pick % 5);
                    h.setup_queue(q, base + (pick as u64) * 0x1000, size);
                }
                3 => {
                    let mut d = [0u8; 64];
                    for b in d.iter_mut() {
                        *b = next()?;
                    }
                    h.submit(q, &[d]);
                }
                4 | 12 | 13 => {
                    let d = structured(&mut next)?;
                    h.submit(q, &[d]);
                }
                5 | 14 => {
                    let dt = word(&mut next, 3)? * 1000;
                    let t = h.now() + dt;
                    h.advance_to(t);
                }
                6 => {
                    // Mostly in range of the harness's rings, sometimes not.
                    let tail = u32::from(next()? % 40);
                    h.write32(doorbell(q), tail);
                }
                // Rare: a device reset disables every queue.
                7 if next()? < 32 => h.write32(regs::RESET, 1),
                7 => {}
                8 => h.enable_msix(),
                9 => {
                    // Rare: host RAM vanishes (fetches and writebacks fail).
                    let gone = next()? < 16;
                    h.mem.ram_unmapped.store(gone, Ordering::Relaxed);
                }
                10 => {
                    let off = word(&mut next, 2)?;
                    let v = word(&mut next, 8)?;
                    h.dev.write(off, &v.to_le_bytes());
                }
                _ => h.pin.set_disabled(next()? & 1 == 1),
            }
            Some(())
        })();
        h.check_invariants();
        if step.is_none() {
            break;
        }
    }
    h.mem.ram_unmapped.store(false, Ordering::Relaxed);
    h.dev.poll(u64::MAX);
    assert_eq!(h.dev.next_deadline(), None, "everything retires");
    h.check_invariants();
    h
}

/// A descriptor of a random opcode with operands near interesting
/// addresses and small sizes, so that commands get past the checks.
fn structured(next: &mut dyn FnMut() -> Option<u8>) -> Option<[u8; 64]> {
    let mut addr = || -> Option<u64> {
        let base = INTERESTING[usize::from(next()?) % INTERESTING.len()];
        Some(base.wrapping_add(u64::from(next()?) * 4))
    };
    let (a, b, c) = (addr()?, addr()?, addr()?);
    let flags = next()? & (FLAG_IRQ | FLAG_STATUS_WB);
    let n = u64::from(next()?) + 1;
    let d = match next()? % 10 {
        0 => build::nop(flags),
        1 => build::copy(flags, a, b, n * 61),
        2 => build::fill(flags, a, n * 4, 0xa5a5_0000 | n as u32),
        3 => build::fence(flags, a & !7, n),
        4 => build::timestamp(flags, a & !7),
        5 => build::saxpy(flags, a, b, n, 0.5),
        6 => build::sum_f32(flags, a, b, n),
        7 => build::crc32c(flags, a, b, n * 3),
        8 => build::gemm(flags, a, b, c, n as u32 % 9 + 1, 3, 5),
        _ => {
            let mut d = build::nop(flags);
            d[0] = opcode::GEMM + 1 + (n as u8 % 100);
            d
        }
    };
    Some(d)
}
