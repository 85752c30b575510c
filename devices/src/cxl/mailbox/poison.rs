//! The device's poison list (CXL 3.1 §8.2.9.9.4): media error records kept
//! per 64-byte line range, read with GET_POISON_LIST, grown by INJECT_POISON
//! and shrunk by CLEAR_POISON.

use super::commands::ReturnCode;
use super::events::GENERAL_MEDIA_EVENT_UUID;
use super::payload::{u64_at, Out};
use super::MAILBOX_PAYLOAD_SIZE;

/// Poison is tracked in cache lines of this many bytes.
pub const POISON_LINE: u64 = 64;
/// Records the list holds; also the IDENTIFY "poison list maximum" and the
/// inject limit.
pub const POISON_LIST_MAX: usize = 256;

const GET_HEADER_SIZE: usize = 0x20;
const GET_RECORD_SIZE: usize = 0x10;
const MAX_RECORDS_PER_GET: usize = (MAILBOX_PAYLOAD_SIZE - GET_HEADER_SIZE) / GET_RECORD_SIZE;
const FLAG_MORE: u8 = 1 << 0;
const FLAG_OVERFLOW: u8 = 1 << 1;

/// Error source, reported in bits [2:0] of a record's address field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum PoisonSource {
    Unknown = 0,
    External = 1,
    Internal = 2,
    Injected = 3,
    Vendor = 7,
}

/// One media error record: `length` bytes (a multiple of 64) from `dpa`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoisonRecord {
    pub dpa: u64,
    pub length: u64,
    pub source: PoisonSource,
}

impl PoisonRecord {
    fn end(&self) -> u64 {
        self.dpa.saturating_add(self.length)
    }
}

/// Where a multi-call GET_POISON_LIST read left off. Linux repeats the same
/// request while the More flag is set, so the device must remember it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Cursor {
    dpa: u64,
    units: u64,
    next: usize,
}

#[derive(Debug, Default)]
pub(crate) struct PoisonList {
    /// Sorted by `dpa`, non-overlapping.
    records: Vec<PoisonRecord>,
    /// Timestamp of the first time a record could not be kept.
    overflow_at: Option<u64>,
    cursor: Option<Cursor>,
}

/// Checks that `dpa` starts a 64-byte line inside `capacity`.
pub(crate) fn check_line(dpa: u64, capacity: u64) -> Result<(), ReturnCode> {
    if dpa & (POISON_LINE - 1) != 0 {
        return Err(ReturnCode::InvalidInput);
    }
    match dpa.checked_add(POISON_LINE) {
        Some(end) if end <= capacity => Ok(()),
        _ => Err(ReturnCode::InvalidPhysicalAddress),
    }
}

impl PoisonList {
    pub(crate) fn records(&self) -> &[PoisonRecord] {
        &self.records
    }

    /// GET_POISON_LIST (4300h): input {dpa u64, length u64 in 64 B units}.
    pub(crate) fn get(&mut self, input: &[u8], capacity: u64) -> Result<Vec<u8>, ReturnCode> {
        let dpa = u64_at(input, 0).ok_or(ReturnCode::InvalidPayloadLength)?;
        let units = u64_at(input, 8).ok_or(ReturnCode::InvalidPayloadLength)?;
        if dpa & (POISON_LINE - 1) != 0 {
            return Err(ReturnCode::InvalidInput);
        }
        let end = units
            .checked_mul(POISON_LINE)
            .and_then(|len| dpa.checked_add(len))
            .ok_or(ReturnCode::InvalidInput)?;
        if end > capacity {
            return Err(ReturnCode::InvalidPhysicalAddress);
        }

        // Records overlapping the query, clipped to it.
        let hits: Vec<PoisonRecord> = self
            .records
            .iter()
            .filter(|r| r.dpa < end && dpa < r.end())
            .map(|r| {
                let start = r.dpa.max(dpa);
                PoisonRecord {
                    dpa: start,
                    length: r.end().min(end) - start,
                    source: r.source,
                }
            })
            .collect();

        let start = match self.cursor {
            Some(c) if c.dpa == dpa && c.units == units => c.next.min(hits.len()),
            _ => 0,
        };
        let batch = &hits[start..(start + MAX_RECORDS_PER_GET).min(hits.len())];
        let next = start + batch.len();
        let more = next < hits.len();
        self.cursor = more.then_some(Cursor { dpa, units, next });

        let mut flags = 0;
        if more {
            flags |= FLAG_MORE;
        }
        if self.overflow_at.is_some() {
            flags |= FLAG_OVERFLOW;
        }
        let mut out = Out::with_capacity(GET_HEADER_SIZE + batch.len() * GET_RECORD_SIZE);
        out.u8(flags).u8(0).u64(self.overflow_at.unwrap_or(0));
        out.u16(batch.len() as u16).zeros(20);
        for r in batch {
            let lines = u32::try_from(r.length / POISON_LINE).unwrap_or(u32::MAX);
            out.u64(r.dpa | r.source as u64).u32(lines).u32(0);
        }
        Ok(out.into_vec())
    }

    /// Adds an injected 64-byte record at `dpa` (already validated).
    /// Returns whether new poison was created; poisoning a line that is
    /// already poisoned is not an error.
    pub(crate) fn inject(&mut self, dpa: u64) -> Result<bool, ReturnCode> {
        if self.records.iter().any(|r| r.dpa <= dpa && dpa < r.end()) {
            return Ok(false);
        }
        if self.records.len() >= POISON_LIST_MAX {
            return Err(ReturnCode::InjectPoisonLimitReached);
        }
        let at = self.records.partition_point(|r| r.dpa < dpa);
        self.records.insert(
            at,
            PoisonRecord {
                dpa,
                length: POISON_LINE,
                source: PoisonSource::Injected,
            },
        );
        self.cursor = None;
        Ok(true)
    }

    /// Removes the 64-byte line at `dpa` (already validated) from whatever
    /// record holds it, splitting that record if needed. Clearing a clean
    /// line is not an error.
    pub(crate) fn clear(&mut self, dpa: u64, now: u64) {
        let Some(i) = self
            .records
            .iter()
            .position(|r| r.dpa <= dpa && dpa < r.end())
        else {
            return;
        };
        self.cursor = None;
        let r = self.records.remove(i);
        let line_end = dpa + POISON_LINE;
        let mut at = i;
        if r.dpa < dpa {
            self.records.insert(
                at,
                PoisonRecord {
                    length: dpa - r.dpa,
                    ..r
                },
            );
            at += 1;
        }
        if line_end < r.end() {
            if self.records.len() >= POISON_LIST_MAX {
                // No room for the tail: the list no longer describes all
                // poison, which is what the Overflow flag reports.
                self.overflow_at.get_or_insert(now);
            } else {
                self.records.insert(
                    at,
                    PoisonRecord {
                        dpa: line_end,
                        length: r.end() - line_end,
                        ..r
                    },
                );
            }
        }
    }

    /// Test hook: installs an arbitrary record (e.g. a multi-line one, which
    /// only internal media errors create).
    #[cfg(test)]
    pub(crate) fn insert_record(&mut self, rec: PoisonRecord) {
        let at = self.records.partition_point(|r| r.dpa < rec.dpa);
        self.records.insert(at, rec);
    }
}

/// A General Media Event record announcing injected poison at `dpa`
/// (CXL 3.1 Table 8-45); Inject Poison must log one in the Informational log.
pub(crate) fn poison_created_event(dpa: u64, volatile: bool) -> Vec<u8> {
    const UNCORRECTABLE: u8 = 1 << 0;
    const MEDIA_ECC_ERROR: u8 = 0x00;
    const HOST_INJECT_POISON: u8 = 0x04;
    let mut out = Out::with_capacity(0x80);
    // Common header: UUID, length, flags (severity 0 = informational),
    // handle/related/timestamp (stamped by the log), reserved.
    out.bytes(&GENERAL_MEDIA_EVENT_UUID)
        .u8(0x80)
        .zeros(0x30 - 0x11);
    out.u64(dpa | u64::from(volatile))
        .u8(UNCORRECTABLE)
        .u8(MEDIA_ECC_ERROR)
        .u8(HOST_INJECT_POISON);
    // Validity flags (channel/rank/device/component id not valid) and the
    // rest of the record.
    let len = out.len();
    out.zeros(0x80 - len);
    out.into_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_line_alignment_and_range() {
        assert_eq!(check_line(0, 128), Ok(()));
        assert_eq!(check_line(64, 128), Ok(()));
        assert_eq!(
            check_line(128, 128),
            Err(ReturnCode::InvalidPhysicalAddress)
        );
        assert_eq!(check_line(32, 128), Err(ReturnCode::InvalidInput));
        assert_eq!(
            check_line(u64::MAX - 63, u64::MAX),
            Err(ReturnCode::InvalidPhysicalAddress)
        );
    }

    #[test]
    fn clear_splits_a_multi_line_record() {
        let mut p = PoisonList::default();
        p.insert_record(PoisonRecord {
            dpa: 0x1000,
            length: 4 * 64,
            source: PoisonSource::Internal,
        });
        p.clear(0x1040, 7);
        let expect = [
            PoisonRecord {
                dpa: 0x1000,
                length: 64,
                source: PoisonSource::Internal,
            },
            PoisonRecord {
                dpa: 0x1080,
                length: 128,
                source: PoisonSource::Internal,
            },
        ];
        assert_eq!(p.records(), &expect);
        assert_eq!(p.overflow_at, None);
        // Clearing the first or last line trims without splitting.
        p.clear(0x1000, 7);
        p.clear(0x10c0, 7);
        assert_eq!(
            p.records(),
            &[PoisonRecord {
                dpa: 0x1080,
                length: 64,
                source: PoisonSource::Internal
            }]
        );
    }

    #[test]
    fn split_without_room_sets_overflow() {
        let mut p = PoisonList::default();
        for i in 0..POISON_LIST_MAX as u64 - 1 {
            assert_eq!(p.inject(0x10_0000 + i * 64), Ok(true));
        }
        p.insert_record(PoisonRecord {
            dpa: 0,
            length: 3 * 64,
            source: PoisonSource::External,
        });
        assert_eq!(p.records().len(), POISON_LIST_MAX);
        p.clear(64, 42);
        assert_eq!(p.overflow_at, Some(42));
        assert_eq!(p.records()[0].length, 64);
        assert_eq!(p.records().len(), POISON_LIST_MAX);
    }

    #[test]
    fn poison_event_layout() {
        let ev = poison_created_event(0x2000, true);
        assert_eq!(ev.len(), 128);
        assert_eq!(&ev[..16], &GENERAL_MEDIA_EVENT_UUID);
        assert_eq!(ev[0x10], 0x80);
        assert_eq!(
            u64::from_le_bytes(ev[0x30..0x38].try_into().unwrap()),
            0x2001
        );
        assert_eq!((ev[0x38], ev[0x39], ev[0x3a]), (1, 0, 4));
    }
}
