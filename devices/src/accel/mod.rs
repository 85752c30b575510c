//! The GPU-like accelerator of `docs/accelerator.md`: command queues, a DMA
//! engine timed by the fabric model, compute kernels on VRAM.
//!
//! [`Accelerator`] is a state machine the VMM drives through small traits:
//! [`DmaMemory`] (decode and access bus addresses), [`GuestClock`] (guest
//! time), the shared `fabric::Engine` (timing), and the function's MSI-X
//! table and INTx pin ([`Interrupts`]). Register accesses
//! ([`Accelerator::read`]/[`Accelerator::write`]) execute commands at once
//! when a doorbell is rung and book their completion at the modelled time;
//! the VMM calls [`Accelerator::poll`] when [`Accelerator::next_deadline`]
//! has passed to deliver them (writebacks, interrupts).
//!
//! Files: `regs` (BAR0 decode), `queue` (ring state), `command` (descriptor
//! parsing), `exec` (running a command), `dma` (bus access), `kernels`
//! (arithmetic), `error` (codes, log), `vram`, `pci` (the PCI function),
//! `fuzz` (a byte-driven harness for fuzzing and the seeded-random test).

pub mod command;
pub mod dma;
pub mod error;
mod exec;
pub mod fuzz;
pub mod kernels;
mod pci;
pub mod queue;
pub mod regs;
mod vram;

#[cfg(test)]
mod tests;

use std::sync::{Arc, Mutex};

use fabric::{Engine, Picos};

pub use crate::clock::GuestClock;
use crate::pci::{IntxPin, SharedMsix};
pub use dma::{DmaError, DmaMemory, Span};
pub use pci::{build_accelerator, AccelDevice, AccelSpec, BAR_MSIX, BAR_REGS, BAR_VRAM};
pub use vram::{Vram, VramBar};

use command::{parse, DESCRIPTOR_SIZE, FLAG_IRQ, FLAG_STATUS_WB, STATUS_OFFSET};
use dma::{decode_range, read_all, spans, write_small};
use error::{ErrorEntry, ErrorLog, Fault, Status, STATUS_DONE};
use exec::{Exec, Units};
use queue::{Queue, Retire};
use regs::INT_ERROR;

/// The parameters of one accelerator.
#[derive(Debug, Clone, PartialEq)]
pub struct AccelConfig {
    /// Index in the topology's accelerators: its `Source::Accelerator`.
    pub index: usize,
    pub queues: u32,
    pub dma_engines: u32,
    pub vram_size: u64,
    pub compute_gflops: f64,
}

impl AccelConfig {
    pub fn from_topology(a: &fabric::topology::Accelerator, index: usize) -> Self {
        AccelConfig {
            index,
            queues: a.queues,
            dma_engines: a.dma_engines,
            vram_size: a.vram_size,
            compute_gflops: a.compute_gflops,
        }
    }
}

/// Where the device's interrupts go: MSI-X while the guest has it enabled,
/// else the INTx pin (if wired).
pub struct Interrupts {
    msix: SharedMsix,
    intx: Option<Arc<IntxPin>>,
}

impl Interrupts {
    pub fn new(msix: SharedMsix, intx: Option<Arc<IntxPin>>) -> Self {
        Interrupts { msix, intx }
    }

    fn msix_enabled(&self) -> bool {
        self.msix
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .enabled()
    }

    /// An edge on `vector` (dropped while MSI-X is off).
    fn send(&self, vector: u16) {
        let mut t = self.msix.lock().unwrap_or_else(|e| e.into_inner());
        if t.enabled() {
            t.trigger(vector);
        }
    }

    /// The INTx level the causes ask for (held low while MSI-X is on).
    fn set_intx(&self, level: bool) {
        if let Some(pin) = &self.intx {
            pin.set_pending(level && !self.msix_enabled());
        }
    }
}

/// The VMM's completion timer: told, after a register write, when the
/// earliest pending completion is due, so that it can wake up and call
/// [`Accelerator::poll`] then. Called with the device's lock held: an
/// implementation must not take that lock.
pub trait CompletionTimer: Send + Sync {
    fn deadline(&self, at: Picos);
}

/// What the VMM lends the device.
pub struct AccelDeps {
    pub memory: Arc<dyn DmaMemory>,
    pub engine: Arc<Mutex<Engine>>,
    pub clock: Arc<dyn GuestClock>,
}

/// The device state machine (BAR0 and everything behind it).
pub struct Accelerator {
    cfg: AccelConfig,
    deps: AccelDeps,
    irq: Interrupts,
    queues: Vec<Queue>,
    units: Units,
    int_status: u32,
    int_enable: u32,
    log: ErrorLog,
    timer: Option<Arc<dyn CompletionTimer>>,
}

impl Accelerator {
    pub fn new(cfg: AccelConfig, deps: AccelDeps, irq: Interrupts) -> Self {
        let now = deps.clock.now_ps();
        let n = cfg.queues.clamp(1, fabric::topology::ACCEL_MAX_QUEUES) as usize;
        let units = Units::new(cfg.dma_engines, now);
        let cfg = AccelConfig {
            queues: n as u32,
            ..cfg
        };
        Accelerator {
            cfg,
            deps,
            irq,
            queues: vec![Queue::default(); n],
            units,
            int_status: 0,
            int_enable: 0,
            log: ErrorLog::default(),
            timer: None,
        }
    }

    /// The timer that delivers this device's completions.
    pub fn set_timer(&mut self, timer: Arc<dyn CompletionTimer>) {
        self.timer = Some(timer);
    }

    /// Tells the timer when the next completion is due, if one is pending.
    fn arm_timer(&self) {
        if let (Some(t), Some(at)) = (&self.timer, self.next_deadline()) {
            t.deadline(at);
        }
    }

    pub fn config(&self) -> &AccelConfig {
        &self.cfg
    }

    fn now(&self) -> Picos {
        self.deps.clock.now_ps()
    }

    /// The MSI-X vector of the error cause.
    pub fn error_vector(&self) -> u16 {
        self.queues.len() as u16
    }

    /// When the next completion is due (None: nothing pending).
    pub fn next_deadline(&self) -> Option<Picos> {
        self.queues
            .iter()
            .filter_map(|q| q.pending.front().map(|r| r.at))
            .min()
    }

    /// When the last completion booked so far is due (None: nothing
    /// pending).
    pub fn last_deadline(&self) -> Option<Picos> {
        self.queues
            .iter()
            .filter_map(|q| q.pending.back().map(|r| r.at))
            .max()
    }

    /// Retires every completion due at `now`, in time order.
    pub fn poll(&mut self, now: Picos) {
        loop {
            let next = self
                .queues
                .iter()
                .enumerate()
                .filter_map(|(i, q)| q.pending.front().map(|r| (r.at, i)))
                .filter(|&(at, _)| at <= now)
                .min();
            let Some((_, q)) = next else { break };
            if let Some(r) = self.queues[q].pending.pop_front() {
                self.retire(q, r);
            }
        }
    }

    /// §5.3: writebacks, pointers, error log, interrupt.
    fn retire(&mut self, q: usize, r: Retire) {
        let mem = self.deps.memory.clone();
        let mut faults = Vec::new();
        let queue = &mut self.queues[q];
        if let Some((addr, seqno)) = r.fence {
            queue.last_seqno = seqno;
            if write_small(mem.as_ref(), addr, &seqno.to_le_bytes()).is_err() {
                faults.push(addr);
            }
        }
        let code = u32::from(r.status.code());
        if r.flags & FLAG_STATUS_WB != 0 {
            let addr = queue.slot_addr(r.index).wrapping_add(STATUS_OFFSET);
            if write_small(mem.as_ref(), addr, &(STATUS_DONE | code).to_le_bytes()).is_err() {
                faults.push(addr);
            }
        }
        queue.head = (r.index + 1) & (queue.size.max(1) - 1);
        queue.completed = queue.completed.wrapping_add(1);
        queue.last_status = code;
        if r.status != Status::Ok {
            queue.errors = queue.errors.wrapping_add(1);
        }
        for addr in faults {
            self.error(
                Status::WritebackFault,
                q,
                Some(r.opcode),
                Some(r.index),
                addr,
                r.at,
            );
        }
        if r.status != Status::Ok {
            self.error(
                r.status,
                q,
                Some(r.opcode),
                Some(r.index),
                r.fault_addr,
                r.at,
            );
        }
        if r.flags & FLAG_IRQ != 0 {
            self.latch(1 << q);
        }
    }

    /// Logs an error and raises its cause.
    fn error(
        &mut self,
        status: Status,
        q: usize,
        opcode: Option<u8>,
        index: Option<u32>,
        addr: u64,
        time: Picos,
    ) {
        self.log.record(ErrorEntry {
            status,
            queue: Some(q as u8),
            opcode,
            index,
            addr,
            time,
        });
        self.latch(INT_ERROR);
    }

    fn int_mask(&self) -> u32 {
        ((1u32 << self.queues.len()) - 1) | INT_ERROR
    }

    /// Latches causes; enabled ones send their vector.
    fn latch(&mut self, bits: u32) {
        self.int_status |= bits;
        let fire = bits & self.int_enable;
        for b in 0..32 {
            if fire & (1 << b) != 0 {
                let v = if 1 << b == INT_ERROR {
                    self.error_vector()
                } else {
                    b as u16
                };
                self.irq.send(v);
            }
        }
        self.update_intx();
    }

    fn update_intx(&self) {
        self.irq.set_intx(self.int_status & self.int_enable != 0);
    }

    /// Device reset (§7).
    pub fn reset(&mut self) {
        let now = self.now();
        for q in &mut self.queues {
            *q = Queue {
                ready: now,
                ..Queue::default()
            };
        }
        self.units = Units::new(self.cfg.dma_engines, now);
        self.int_status = 0;
        self.int_enable = 0;
        self.log = ErrorLog::default();
        self.update_intx();
    }

    /// `Q_CTRL.ENABLE` 0 → 1.
    fn enable(&mut self, q: usize) {
        let now = self.now();
        let queue = &self.queues[q];
        if !Queue::valid_size(queue.size) {
            let size = u64::from(queue.size);
            return self.error(Status::QueueConfig, q, None, None, size, now);
        }
        let (base, bytes) = (queue.base, queue.ring_bytes());
        if decode_range(self.deps.memory.as_ref(), base, bytes).is_err() {
            return self.error(Status::QueueConfig, q, None, None, base, now);
        }
        self.queues[q].start(now);
    }

    /// A write of `tail` to queue `q`'s doorbell: fetch and execute.
    fn doorbell(&mut self, q: usize, tail: u32) {
        let now = self.now();
        let queue = &self.queues[q];
        if !queue.enabled || queue.halted {
            let tail = u64::from(tail);
            return self.error(Status::DoorbellIgnored, q, None, None, tail, now);
        }
        if tail >= queue.size {
            self.queues[q].halted = true;
            let tail = u64::from(tail);
            return self.error(Status::TailRange, q, None, None, tail, now);
        }
        let n = queue.to_fetch(tail);
        self.queues[q].tail = tail;
        if n == 0 {
            return;
        }
        // The commands run now, on the host, at the host's speed; their
        // completions are booked at the modelled time. With a virtual clock
        // the guest must not see the host's work, on any vCPU.
        self.deps.clock.stop_others();
        let (ring, fetch_done) = match self.fetch(q, n, now) {
            Ok(r) => r,
            Err(f) => {
                self.queues[q].halted = true;
                let index = Some(self.queues[q].fetch);
                return self.error(Status::RingFetch, q, None, index, f.addr, now);
            }
        };
        let Accelerator {
            cfg,
            deps,
            queues,
            units,
            ..
        } = self;
        let exec = Exec {
            mem: deps.memory.as_ref(),
            engine: &deps.engine,
            me: cfg.index,
            compute_gflops: cfg.compute_gflops,
        };
        let queue = &mut queues[q];
        let mask = queue.size - 1;
        for (i, bytes) in ring.chunks_exact(DESCRIPTOR_SIZE).enumerate() {
            let index = (queue.fetch + i as u32) & mask;
            let mut raw = [0u8; DESCRIPTOR_SIZE];
            raw.copy_from_slice(bytes);
            let d = parse(&raw);
            let earliest = queue.ready.max(fetch_done);
            let outcome = d.command.and_then(|c| exec.run(&c, earliest, units));
            let retire = match outcome {
                Ok(done) => Retire {
                    at: done.at,
                    index,
                    opcode: d.opcode,
                    flags: d.flags,
                    status: Status::Ok,
                    fault_addr: 0,
                    fence: done.fence,
                },
                Err(f) => Retire {
                    at: earliest,
                    index,
                    opcode: d.opcode,
                    flags: d.flags,
                    status: f.status,
                    fault_addr: f.addr,
                    fence: None,
                },
            };
            queue.ready = retire.at;
            queue.pending.push_back(retire);
        }
        queue.fetch = tail;
        self.poll(now);
    }

    /// Reads `n` descriptors from the fetch pointer (one DMA read per
    /// contiguous run); returns them and when the last arrived.
    fn fetch(&self, q: usize, n: u32, now: Picos) -> Result<(Vec<u8>, Picos), Fault> {
        let queue = &self.queues[q];
        let first = n.min(queue.size - queue.fetch);
        let mem = self.deps.memory.as_ref();
        let slot = DESCRIPTOR_SIZE as u64;
        let mut pieces = decode_range(mem, queue.slot_addr(queue.fetch), u64::from(first) * slot)?;
        if first < n {
            pieces.extend(decode_range(mem, queue.base, u64::from(n - first) * slot)?);
        }
        let bytes = read_all(mem, &pieces)?;
        let mut engine = self.deps.engine.lock().unwrap_or_else(|e| e.into_inner());
        let done = fabric::dma::read(&mut engine, self.cfg.index, &spans(&pieces), now)
            .map_err(|_| Fault::new(Status::RingFetch, queue.slot_addr(queue.fetch)))?;
        Ok((bytes, done))
    }
}

impl crate::BusDeviceMut for Accelerator {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        Accelerator::read(self, offset, data)
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        Accelerator::write(self, offset, data)
    }
}
