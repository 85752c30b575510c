//! BAR0: register offsets (`docs/accelerator.md` §3) and the dword-level
//! read/write decode. Accesses are 4 or 8 bytes, naturally aligned; an
//! 8-byte access is two dword accesses, low half first.

use super::command::{opcode, MAX_TRANSFER};
use super::error::ERR_STATUS_VALID;
use super::queue::{Queue, BASE_MASK, CTRL_ENABLE, CTRL_RESET, MAX_RING_LOG2};
use super::Accelerator;

/// BAR0 size.
pub const BAR0_SIZE: u64 = 0x10000;

pub const ID: u64 = 0x000;
pub const VERSION: u64 = 0x004;
pub const CAPS: u64 = 0x008;
pub const OPCODES: u64 = 0x00c;
pub const VRAM_SIZE: u64 = 0x010;
pub const COMPUTE_MOPS: u64 = 0x018;
pub const MAX_TRANSFER_REG: u64 = 0x01c;
pub const RESET: u64 = 0x020;
pub const STATUS: u64 = 0x024;
pub const INT_STATUS: u64 = 0x028;
pub const INT_ENABLE: u64 = 0x02c;
pub const CLOCK: u64 = 0x030;
pub const ERR_STATUS: u64 = 0x040;
pub const ERR_CODE: u64 = 0x044;
pub const ERR_INDEX: u64 = 0x048;
pub const ERR_COUNT: u64 = 0x04c;
pub const ERR_ADDR: u64 = 0x050;
pub const ERR_TIME: u64 = 0x058;

/// Queue `q`'s register block is at `QUEUE_BASE + QUEUE_STRIDE * q`.
pub const QUEUE_BASE: u64 = 0x1000;
pub const QUEUE_STRIDE: u64 = 0x80;
pub const Q_BASE: u64 = 0x00;
pub const Q_SIZE: u64 = 0x08;
pub const Q_CTRL: u64 = 0x0c;
pub const Q_STATUS: u64 = 0x10;
pub const Q_HEAD: u64 = 0x14;
pub const Q_TAIL: u64 = 0x18;
pub const Q_COMPLETED: u64 = 0x1c;
pub const Q_LAST_SEQNO: u64 = 0x20;
pub const Q_ERRORS: u64 = 0x28;
pub const Q_LAST_STATUS: u64 = 0x2c;

/// Queue `q`'s doorbell page is at `DOORBELL_BASE + DOORBELL_STRIDE * q`.
pub const DOORBELL_BASE: u64 = 0x8000;
pub const DOORBELL_STRIDE: u64 = 0x1000;

/// The bytes "cxac".
pub const ID_VALUE: u32 = u32::from_le_bytes(*b"cxac");
/// 1.0.
pub const VERSION_VALUE: u32 = 0x0001_0000;

pub const STATUS_ERROR: u32 = 1 << 0;
pub const STATUS_BUSY: u32 = 1 << 1;
pub const STATUS_HALTED: u32 = 1 << 2;
/// INT_STATUS / INT_ENABLE bit of the error cause.
pub const INT_ERROR: u32 = 1 << 31;

/// Where a BAR0 dword lands.
enum Reg {
    Global(u64),
    Queue(usize, u64),
    Doorbell(usize),
    Nothing,
}

fn locate(offset: u64, queues: usize) -> Reg {
    if offset < QUEUE_BASE {
        return Reg::Global(offset);
    }
    if offset < DOORBELL_BASE {
        let q = ((offset - QUEUE_BASE) / QUEUE_STRIDE) as usize;
        let r = (offset - QUEUE_BASE) % QUEUE_STRIDE;
        return if q < queues {
            Reg::Queue(q, r)
        } else {
            Reg::Nothing
        };
    }
    let q = ((offset - DOORBELL_BASE) / DOORBELL_STRIDE) as usize;
    let r = (offset - DOORBELL_BASE) % DOORBELL_STRIDE;
    if q < queues && r == 0 {
        Reg::Doorbell(q)
    } else {
        Reg::Nothing
    }
}

fn lo(v: u64) -> u32 {
    v as u32
}

fn hi(v: u64) -> u32 {
    (v >> 32) as u32
}

fn set_lo(v: u64, x: u32) -> u64 {
    (v & !0xffff_ffff) | u64::from(x)
}

fn set_hi(v: u64, x: u32) -> u64 {
    (v & 0xffff_ffff) | (u64::from(x) << 32)
}

/// Whether `(offset, len)` is an access the registers answer.
fn well_formed(offset: u64, len: usize) -> bool {
    matches!(len, 4 | 8) && offset.is_multiple_of(len as u64) && offset < BAR0_SIZE
}

impl Accelerator {
    /// A guest read of BAR0. Due completions are retired first.
    pub fn read(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        if !well_formed(offset, data.len()) {
            return;
        }
        let now = self.now();
        self.poll(now);
        for (i, chunk) in data.chunks_mut(4).enumerate() {
            let v = self.read_dword(offset + 4 * i as u64, now);
            chunk.copy_from_slice(&v.to_le_bytes());
        }
    }

    /// A guest write to BAR0. Due completions are retired first.
    pub fn write(&mut self, offset: u64, data: &[u8]) {
        if !well_formed(offset, data.len()) {
            return;
        }
        let now = self.now();
        self.poll(now);
        for (i, chunk) in data.chunks(4).enumerate() {
            let v = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
            self.write_dword(offset + 4 * i as u64, v);
        }
        // A doorbell may have booked completions.
        self.arm_timer();
    }

    fn read_dword(&self, offset: u64, now: u64) -> u32 {
        match locate(offset, self.queues.len()) {
            Reg::Global(r) => self.read_global(r, now),
            Reg::Queue(q, r) => read_queue(&self.queues[q], r),
            Reg::Doorbell(q) => self.queues[q].tail,
            Reg::Nothing => 0,
        }
    }

    fn read_global(&self, r: u64, now: u64) -> u32 {
        let cfg = &self.cfg;
        match r {
            ID => ID_VALUE,
            VERSION => VERSION_VALUE,
            CAPS => cfg.queues | (cfg.dma_engines << 8) | (MAX_RING_LOG2 << 16),
            OPCODES => opcode::IMPLEMENTED,
            VRAM_SIZE => lo(cfg.vram_size),
            0x014 => hi(cfg.vram_size),
            COMPUTE_MOPS => (cfg.compute_gflops * 1000.0).round().min(u32::MAX as f64) as u32,
            MAX_TRANSFER_REG => MAX_TRANSFER as u32,
            STATUS => self.status(),
            INT_STATUS => self.int_status,
            INT_ENABLE => self.int_enable,
            CLOCK => lo(now),
            0x034 => hi(now),
            ERR_STATUS => self.log.status_reg(),
            ERR_CODE => self.log.code_reg(),
            ERR_INDEX => self.log.index_reg(),
            ERR_COUNT => self.log.count(),
            ERR_ADDR => lo(self.log.addr()),
            0x054 => hi(self.log.addr()),
            ERR_TIME => lo(self.log.time()),
            0x05c => hi(self.log.time()),
            _ => 0,
        }
    }

    fn status(&self) -> u32 {
        let mut s = 0;
        if self.log.valid() {
            s |= STATUS_ERROR;
        }
        if self.queues.iter().any(|q| !q.pending.is_empty()) {
            s |= STATUS_BUSY;
        }
        if self.queues.iter().any(|q| q.halted) {
            s |= STATUS_HALTED;
        }
        s
    }

    fn write_dword(&mut self, offset: u64, v: u32) {
        match locate(offset, self.queues.len()) {
            Reg::Global(r) => self.write_global(r, v),
            Reg::Queue(q, r) => self.write_queue(q, r, v),
            Reg::Doorbell(q) => self.doorbell(q, v),
            Reg::Nothing => {}
        }
    }

    fn write_global(&mut self, r: u64, v: u32) {
        match r {
            RESET if v & 1 != 0 => self.reset(),
            INT_STATUS => {
                self.int_status &= !v;
                self.update_intx();
            }
            INT_ENABLE => {
                self.int_enable = v & self.int_mask();
                self.update_intx();
            }
            ERR_STATUS if v & ERR_STATUS_VALID != 0 => self.log.clear(),
            _ => {}
        }
    }

    fn write_queue(&mut self, q: usize, r: u64, v: u32) {
        let now = self.now();
        let queue = &mut self.queues[q];
        match r {
            Q_BASE if !queue.enabled => queue.base = set_lo(queue.base, v) & BASE_MASK,
            0x04 if !queue.enabled => queue.base = set_hi(queue.base, v),
            Q_SIZE if !queue.enabled => queue.size = v,
            Q_CTRL => {
                if v & CTRL_RESET != 0 {
                    queue.reset(now);
                } else if v & CTRL_ENABLE != 0 && !queue.enabled {
                    self.enable(q);
                } else if v & CTRL_ENABLE == 0 && queue.enabled {
                    queue.reset(now);
                }
            }
            _ => {}
        }
    }
}

fn read_queue(q: &Queue, r: u64) -> u32 {
    match r {
        Q_BASE => lo(q.base),
        0x04 => hi(q.base),
        Q_SIZE => q.size,
        Q_CTRL => u32::from(q.enabled) * CTRL_ENABLE,
        Q_STATUS => q.status(),
        Q_HEAD => q.head,
        Q_TAIL => q.tail,
        Q_COMPLETED => q.completed,
        Q_LAST_SEQNO => lo(q.last_seqno),
        0x24 => hi(q.last_seqno),
        Q_ERRORS => q.errors,
        Q_LAST_STATUS => q.last_status,
        _ => 0,
    }
}

/// Offset of queue `q`'s register `r`.
pub fn queue_reg(q: usize, r: u64) -> u64 {
    QUEUE_BASE + QUEUE_STRIDE * q as u64 + r
}

/// Offset of queue `q`'s doorbell.
pub fn doorbell(q: usize) -> u64 {
    DOORBELL_BASE + DOORBELL_STRIDE * q as u64
}
