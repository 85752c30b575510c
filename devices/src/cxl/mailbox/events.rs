//! The four event logs (informational, warning, failure, fatal) and the
//! commands that read, clear and configure them (CXL 3.1 §8.2.9.2).
//!
//! Records are opaque 128-byte blobs to the device except for the common
//! header fields it owns: the handle and the timestamp, stamped on insertion.

use std::collections::VecDeque;

use super::commands::ReturnCode;
use super::payload::{u16_at, u8_at, Out};
use super::MAILBOX_PAYLOAD_SIZE;

/// Size of one event record (common header 0x30 + 0x50 of record data).
pub const EVENT_RECORD_SIZE: usize = 128;
/// Records each log holds before further ones only count as overflow; this
/// is what IDENTIFY reports as the event log sizes.
pub const EVENT_LOG_CAPACITY: usize = 32;
/// First MSI-X vector used for event interrupts; log `n` uses base + n. The
/// mailbox uses vector 0 (see `MAILBOX_MSIX_VECTOR`).
pub const EVENT_MSIX_VECTOR_BASE: u16 = 1;

/// General Media Event record UUID (fbcd0a77-c260-417f-85a9-088b1621eba6),
/// payload byte order.
pub const GENERAL_MEDIA_EVENT_UUID: [u8; 16] = [
    0xfb, 0xcd, 0x0a, 0x77, 0xc2, 0x60, 0x41, 0x7f, 0x85, 0xa9, 0x08, 0x8b, 0x16, 0x21, 0xeb, 0xa6,
];

/// Common record header fields (CXL 3.1 Table 8-42).
const RECORD_LENGTH: usize = 0x10;
const RECORD_HANDLE: usize = 0x14;
const RECORD_TIMESTAMP: usize = 0x18;

/// Get Event Records output header (Table 8-52) and flags.
const GET_HEADER_SIZE: usize = 0x20;
const FLAG_OVERFLOW: u8 = 1 << 0;
const FLAG_MORE_RECORDS: u8 = 1 << 1;
const MAX_RECORDS_PER_GET: usize = (MAILBOX_PAYLOAD_SIZE - GET_HEADER_SIZE) / EVENT_RECORD_SIZE;

/// Clear Event Records input: log, flags, count, 3 reserved, then handles.
const CLEAR_HEADER_SIZE: usize = 6;
const CLEAR_ALL: u8 = 1 << 0;

/// Event Interrupt Settings: mode in [1:0], message number in [7:4].
const INT_MODE_MASK: u8 = 0x3;
const INT_MODE_NONE: u8 = 0;
const INT_MODE_MSI: u8 = 1;

/// One of the four event logs; the discriminant is the Event Log id used in
/// payloads and the bit in the Event Status register.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum EventLog {
    Informational = 0,
    Warning = 1,
    Failure = 2,
    Fatal = 3,
}

impl EventLog {
    pub const ALL: [EventLog; 4] = [
        EventLog::Informational,
        EventLog::Warning,
        EventLog::Failure,
        EventLog::Fatal,
    ];

    pub fn from_id(id: u8) -> Option<Self> {
        Self::ALL.get(usize::from(id)).copied()
    }

    /// The MSI-X vector this log's interrupt uses once the host enables it.
    pub fn msix_vector(self) -> u16 {
        EVENT_MSIX_VECTOR_BASE + self as u16
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EventError {
    #[error("event record is {0} bytes; at most {EVENT_RECORD_SIZE} fit")]
    RecordTooLong(usize),
    #[error("{0:?} event log is full; the record was counted as an overflow")]
    LogFull(EventLog),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Overflow {
    count: u16,
    first: u64,
    last: u64,
}

#[derive(Debug)]
struct Log {
    records: VecDeque<[u8; EVENT_RECORD_SIZE]>,
    next_handle: u16,
    overflow: Option<Overflow>,
    msi_enabled: bool,
}

impl Log {
    fn new() -> Self {
        Self {
            records: VecDeque::with_capacity(EVENT_LOG_CAPACITY),
            next_handle: 1,
            overflow: None,
            msi_enabled: false,
        }
    }

    fn handle(record: &[u8; EVENT_RECORD_SIZE]) -> u16 {
        u16::from_le_bytes([record[RECORD_HANDLE], record[RECORD_HANDLE + 1]])
    }

    /// A handle that is non-zero (0 is never valid) and not held by a record
    /// still in the log, so wrapping after 65535 events stays unambiguous.
    fn allocate_handle(&mut self) -> u16 {
        loop {
            let h = self.next_handle;
            self.next_handle = self.next_handle.wrapping_add(1);
            if h != 0 && !self.records.iter().any(|r| Self::handle(r) == h) {
                return h;
            }
        }
    }
}

#[derive(Debug)]
pub(crate) struct EventLogs {
    logs: [Log; 4],
}

impl EventLogs {
    pub(crate) fn new() -> Self {
        Self {
            logs: [Log::new(), Log::new(), Log::new(), Log::new()],
        }
    }

    fn log_mut(&mut self, log: EventLog) -> &mut Log {
        &mut self.logs[log as usize]
    }

    /// Appends `record` (zero-padded to 128 bytes) to `log`, stamping its
    /// handle and timestamp. Returns the handle.
    pub(crate) fn push(
        &mut self,
        log: EventLog,
        record: &[u8],
        now: u64,
    ) -> Result<u16, EventError> {
        if record.len() > EVENT_RECORD_SIZE {
            return Err(EventError::RecordTooLong(record.len()));
        }
        let l = self.log_mut(log);
        if l.records.len() >= EVENT_LOG_CAPACITY {
            let o = l.overflow.get_or_insert(Overflow {
                count: 0,
                first: now,
                last: now,
            });
            o.count = o.count.saturating_add(1);
            o.last = now;
            return Err(EventError::LogFull(log));
        }
        let mut rec = [0u8; EVENT_RECORD_SIZE];
        rec[..record.len()].copy_from_slice(record);
        if rec[RECORD_LENGTH] == 0 {
            rec[RECORD_LENGTH] = EVENT_RECORD_SIZE as u8;
        }
        let handle = l.allocate_handle();
        rec[RECORD_HANDLE..RECORD_HANDLE + 2].copy_from_slice(&handle.to_le_bytes());
        rec[RECORD_TIMESTAMP..RECORD_TIMESTAMP + 8].copy_from_slice(&now.to_le_bytes());
        l.records.push_back(rec);
        Ok(handle)
    }

    /// Event Status register value: bit n set while log n holds records.
    pub(crate) fn status(&self) -> u64 {
        EventLog::ALL
            .iter()
            .filter(|&&log| !self.logs[log as usize].records.is_empty())
            .fold(0, |acc, &log| acc | 1 << (log as u64))
    }

    /// The vector to signal for a new record in `log`, if the host asked for
    /// MSI/MSI-X interrupts on it.
    pub(crate) fn irq_vector(&self, log: EventLog) -> Option<u16> {
        self.logs[log as usize]
            .msi_enabled
            .then(|| log.msix_vector())
    }

    /// GET_EVENT_RECORDS (0100h): input is the log id.
    pub(crate) fn get_records(&self, input: &[u8]) -> Result<Vec<u8>, ReturnCode> {
        let id = u8_at(input, 0).ok_or(ReturnCode::InvalidPayloadLength)?;
        let log = EventLog::from_id(id).ok_or(ReturnCode::InvalidInput)?;
        let l = &self.logs[log as usize];
        let n = l.records.len().min(MAX_RECORDS_PER_GET);

        let mut flags = 0;
        if l.overflow.is_some() {
            flags |= FLAG_OVERFLOW;
        }
        if l.records.len() > n {
            flags |= FLAG_MORE_RECORDS;
        }
        let o = l.overflow.unwrap_or(Overflow {
            count: 0,
            first: 0,
            last: 0,
        });
        let mut out = Out::with_capacity(GET_HEADER_SIZE + n * EVENT_RECORD_SIZE);
        out.u8(flags).u8(0).u16(o.count).u64(o.first).u64(o.last);
        out.u16(n as u16).zeros(10);
        for rec in l.records.iter().take(n) {
            out.bytes(rec);
        }
        Ok(out.into_vec())
    }

    /// CLEAR_EVENT_RECORDS (0101h).
    pub(crate) fn clear_records(&mut self, input: &[u8]) -> Result<Vec<u8>, ReturnCode> {
        let id = u8_at(input, 0).ok_or(ReturnCode::InvalidPayloadLength)?;
        let flags = u8_at(input, 1).ok_or(ReturnCode::InvalidPayloadLength)?;
        let count = usize::from(u8_at(input, 2).ok_or(ReturnCode::InvalidPayloadLength)?);
        // Trailing bytes past the handle list are tolerated: the payload is
        // variable-sized and only a list cut short is malformed.
        if input.len() < CLEAR_HEADER_SIZE + 2 * count {
            return Err(ReturnCode::InvalidPayloadLength);
        }
        let log = EventLog::from_id(id).ok_or(ReturnCode::InvalidInput)?;
        let l = self.log_mut(log);

        if flags & CLEAR_ALL != 0 {
            // "Clear All Events is only allowed when the Event Log has
            // overflowed; otherwise, the device shall return Invalid Input",
            // and the handle count must then be 0.
            if l.overflow.is_none() || count != 0 {
                return Err(ReturnCode::InvalidInput);
            }
            l.records.clear();
            l.overflow = None;
            return Ok(Vec::new());
        }

        // Handles must name the oldest records, oldest first: clearing a
        // newer record while an older one stays is Invalid Handle, and then
        // nothing is cleared (§8.2.9.2.3).
        for i in 0..count {
            let handle =
                u16_at(input, CLEAR_HEADER_SIZE + 2 * i).ok_or(ReturnCode::InvalidPayloadLength)?;
            match l.records.get(i) {
                Some(rec) if handle != 0 && Log::handle(rec) == handle => {}
                _ => return Err(ReturnCode::InvalidHandle),
            }
        }
        if count > 0 {
            l.records.drain(..count);
            // Room was made, so the overflow condition is over; its report
            // went out with the records the host just consumed.
            l.overflow = None;
        }
        Ok(Vec::new())
    }

    /// GET_EVENT_INTERRUPT_POLICY (0102h): one settings byte per log.
    pub(crate) fn interrupt_policy(&self) -> Vec<u8> {
        EventLog::ALL
            .iter()
            .map(|&log| match self.irq_vector(log) {
                // The message number field fits 4 bits; vectors 1..=4 do.
                Some(v) => ((v as u8) << 4) | INT_MODE_MSI,
                None => INT_MODE_NONE,
            })
            .collect()
    }

    /// SET_EVENT_INTERRUPT_POLICY (0103h): four settings bytes, plus an
    /// optional fifth for the dynamic capacity log, which this device does
    /// not have (accepted and ignored). The message number is the device's
    /// choice, so the host's [7:4] are ignored. FW-first interrupts (mode 2)
    /// are not supported.
    pub(crate) fn set_interrupt_policy(&mut self, input: &[u8]) -> Result<Vec<u8>, ReturnCode> {
        let mut enable = [false; 4];
        for (i, e) in enable.iter_mut().enumerate() {
            let setting = u8_at(input, i).ok_or(ReturnCode::InvalidPayloadLength)?;
            *e = match setting & INT_MODE_MASK {
                INT_MODE_NONE => false,
                INT_MODE_MSI => true,
                _ => return Err(ReturnCode::InvalidInput),
            };
        }
        for (log, e) in self.logs.iter_mut().zip(enable) {
            log.msi_enabled = e;
        }
        Ok(Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_stamps_handle_timestamp_and_length() {
        let mut logs = EventLogs::new();
        let h1 = logs.push(EventLog::Warning, &[0xaa; 16], 1000).unwrap();
        let h2 = logs.push(EventLog::Warning, &[], 2000).unwrap();
        assert_eq!((h1, h2), (1, 2));
        assert_eq!(logs.status(), 0b10);
        let out = logs.get_records(&[1]).unwrap();
        let rec = &out[0x20..0xa0];
        assert_eq!(&rec[..16], &[0xaa; 16]);
        assert_eq!(rec[0x10], 128);
        assert_eq!(u16::from_le_bytes([rec[0x14], rec[0x15]]), 1);
        assert_eq!(
            u64::from_le_bytes(rec[0x18..0x20].try_into().unwrap()),
            1000
        );
        assert_eq!(
            logs.push(EventLog::Fatal, &[0; 129], 0),
            Err(EventError::RecordTooLong(129))
        );
    }

    #[test]
    fn handles_skip_zero_and_live_records() {
        let mut logs = EventLogs::new();
        let l = logs.log_mut(EventLog::Informational);
        l.next_handle = u16::MAX;
        assert_eq!(logs.push(EventLog::Informational, &[], 0), Ok(u16::MAX));
        // Wraps past 0 to 1.
        assert_eq!(logs.push(EventLog::Informational, &[], 0), Ok(1));
        // Next would be 2, but pretend the counter wrapped onto a live one.
        logs.log_mut(EventLog::Informational).next_handle = u16::MAX;
        assert_eq!(logs.push(EventLog::Informational, &[], 0), Ok(2));
    }

    #[test]
    fn message_numbers_are_the_log_vectors() {
        assert_eq!(EventLog::Informational.msix_vector(), 1);
        assert_eq!(EventLog::Fatal.msix_vector(), 4);
        assert_eq!(EventLog::from_id(4), None);
        assert_eq!(MAX_RECORDS_PER_GET, 15);
    }
}
