//! Status codes (`docs/accelerator.md` §8) and the error log (§3.3).

use fabric::Picos;

/// A command's completion status, or a queue error. The value is the code
/// the guest reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum Status {
    Ok = 0x00,
    BadOpcode = 0x01,
    BadFlags = 0x02,
    Unmapped = 0x03,
    Length = 0x04,
    Alignment = 0x05,
    NotVram = 0x06,
    Overlap = 0x07,
    Dimension = 0x08,
    DmaFault = 0x09,
    QueueConfig = 0x100,
    TailRange = 0x101,
    RingFetch = 0x102,
    DoorbellIgnored = 0x103,
    WritebackFault = 0x104,
}

impl Status {
    pub fn code(self) -> u16 {
        self as u16
    }
}

/// Bit 31 of a written-back status dword: the command has retired.
pub const STATUS_DONE: u32 = 1 << 31;

/// A rejected command: why, and the address (or value) at fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fault {
    pub status: Status,
    pub addr: u64,
}

impl Fault {
    pub fn new(status: Status, addr: u64) -> Self {
        Fault { status, addr }
    }
}

/// One logged error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorEntry {
    pub status: Status,
    pub queue: Option<u8>,
    pub opcode: Option<u8>,
    pub index: Option<u32>,
    pub addr: u64,
    pub time: Picos,
}

/// Holds the first error until the driver clears it; counts the rest.
#[derive(Debug, Default, Clone)]
pub struct ErrorLog {
    entry: Option<ErrorEntry>,
    overflow: bool,
    count: u32,
}

pub const ERR_STATUS_VALID: u32 = 1 << 0;
pub const ERR_STATUS_OVERFLOW: u32 = 1 << 1;

impl ErrorLog {
    pub fn record(&mut self, e: ErrorEntry) {
        self.count = self.count.saturating_add(1);
        if self.entry.is_some() {
            self.overflow = true;
        } else {
            self.entry = Some(e);
        }
    }

    /// ERR_STATUS.VALID written with 1.
    pub fn clear(&mut self) {
        self.entry = None;
        self.overflow = false;
    }

    pub fn valid(&self) -> bool {
        self.entry.is_some()
    }

    pub fn status_reg(&self) -> u32 {
        let mut v = 0;
        if self.entry.is_some() {
            v |= ERR_STATUS_VALID;
        }
        if self.overflow {
            v |= ERR_STATUS_OVERFLOW;
        }
        v
    }

    /// ERR_CODE: code [15:0], queue [23:16], opcode [31:24] (0xff: none).
    pub fn code_reg(&self) -> u32 {
        self.entry.map_or(0, |e| {
            u32::from(e.status.code())
                | (u32::from(e.queue.unwrap_or(0xff)) << 16)
                | (u32::from(e.opcode.unwrap_or(0xff)) << 24)
        })
    }

    pub fn index_reg(&self) -> u32 {
        self.entry.map_or(0, |e| e.index.unwrap_or(u32::MAX))
    }

    pub fn count(&self) -> u32 {
        self.count
    }

    pub fn addr(&self) -> u64 {
        self.entry.map_or(0, |e| e.addr)
    }

    pub fn time(&self) -> Picos {
        self.entry.map_or(0, |e| e.time)
    }

    pub fn entry(&self) -> Option<ErrorEntry> {
        self.entry
    }
}
