//! One command queue: its registers (`docs/accelerator.md` §3.2), ring
//! pointers, and the completions waiting for their modelled time.

use std::collections::VecDeque;

use fabric::Picos;

use super::command::DESCRIPTOR_SIZE;
use super::error::Status;

/// Largest ring, entries.
pub const MAX_RING: u32 = 4096;
/// log2 of [`MAX_RING`] (CAPS[23:16]).
pub const MAX_RING_LOG2: u32 = 12;
/// Q_BASE bits that read 0 (descriptor alignment).
pub const BASE_MASK: u64 = !(DESCRIPTOR_SIZE as u64 - 1);

pub const CTRL_ENABLE: u32 = 1 << 0;
pub const CTRL_RESET: u32 = 1 << 1;
pub const STATUS_ENABLED: u32 = 1 << 0;
pub const STATUS_HALTED: u32 = 1 << 1;
pub const STATUS_IDLE: u32 = 1 << 2;

/// A command executed but not yet retired: what retiring it does.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Retire {
    /// Modelled completion time.
    pub at: Picos,
    /// Ring index of its descriptor.
    pub index: u32,
    pub opcode: u8,
    pub flags: u8,
    pub status: Status,
    /// The address the error log names (failed commands).
    pub fault_addr: u64,
    /// FENCE: (address, sequence number) to write.
    pub fence: Option<(u64, u64)>,
}

#[derive(Debug, Default, Clone)]
pub struct Queue {
    pub base: u64,
    pub size: u32,
    pub enabled: bool,
    pub halted: bool,
    /// Index after the last retired command.
    pub head: u32,
    /// Last accepted doorbell value.
    pub tail: u32,
    /// Index of the next descriptor to fetch.
    pub fetch: u32,
    pub completed: u32,
    pub errors: u32,
    pub last_seqno: u64,
    pub last_status: u32,
    /// Modelled time the last fetched command completes.
    pub ready: Picos,
    /// Executed commands in ring order, waiting to retire.
    pub pending: VecDeque<Retire>,
}

impl Queue {
    /// A size the ring may have.
    pub fn valid_size(size: u32) -> bool {
        size.is_power_of_two() && (2..=MAX_RING).contains(&size)
    }

    /// Bytes of the ring.
    pub fn ring_bytes(&self) -> u64 {
        u64::from(self.size) * DESCRIPTOR_SIZE as u64
    }

    /// Bus address of ring slot `index`.
    pub fn slot_addr(&self, index: u32) -> u64 {
        self.base
            .wrapping_add(u64::from(index) * DESCRIPTOR_SIZE as u64)
    }

    /// Descriptors from the fetch pointer up to `tail`.
    pub fn to_fetch(&self, tail: u32) -> u32 {
        tail.wrapping_sub(self.fetch) & (self.size.max(1) - 1)
    }

    /// Queue reset (§7): pending completions dropped, pointers and counters
    /// zeroed, enable and halt cleared; base and size kept.
    pub fn reset(&mut self, now: Picos) {
        *self = Queue {
            base: self.base,
            size: self.size,
            ready: now,
            ..Queue::default()
        };
    }

    /// Starts the queue on an empty ring.
    pub fn start(&mut self, now: Picos) {
        self.reset(now);
        self.enabled = true;
    }

    pub fn status(&self) -> u32 {
        let mut s = 0;
        if self.enabled {
            s |= STATUS_ENABLED;
        }
        if self.halted {
            s |= STATUS_HALTED;
        }
        if self.pending.is_empty() {
            s |= STATUS_IDLE;
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_arithmetic_wraps() {
        let q = Queue {
            size: 8,
            fetch: 6,
            base: 0x1000,
            ..Queue::default()
        };
        assert_eq!(q.to_fetch(6), 0);
        assert_eq!(q.to_fetch(7), 1);
        assert_eq!(q.to_fetch(2), 4);
        assert_eq!(q.slot_addr(3), 0x10c0);
        assert_eq!(q.ring_bytes(), 512);
        for (size, ok) in [
            (0, false),
            (1, false),
            (2, true),
            (3, false),
            (4096, true),
            (8192, false),
        ] {
            assert_eq!(Queue::valid_size(size), ok, "{size}");
        }
    }
}
