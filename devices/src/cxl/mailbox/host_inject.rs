//! Errors injected by the host (the VMM's control API), not the guest: the
//! same poison the Inject Poison command creates, clearing a poisoned line
//! without new data, and event records of each kind in the Informational
//! log, each announced to the guest as the device's own would be (event
//! status, MSI-X or INTx). QEMU offers the like through QMP
//! `cxl-inject-poison` / `cxl-inject-general-media-event` /
//! `cxl-inject-dram-event` / `cxl-inject-memory-module-event`.

use super::commands::ReturnCode;
use super::events::{EventLog, GENERAL_MEDIA_EVENT_UUID};
use super::payload::Out;
use super::poison;
use super::DeviceRegisters;

/// DRAM Event record UUID (601dcbb3-9c06-4eab-b8af-4e9bfb5c9624, CXL 3.1
/// Table 8-46), payload byte order.
const DRAM_EVENT_UUID: [u8; 16] = [
    0x60, 0x1d, 0xcb, 0xb3, 0x9c, 0x06, 0x4e, 0xab, 0xb8, 0xaf, 0x4e, 0x9b, 0xfb, 0x5c, 0x96, 0x24,
];
/// Memory Module Event record UUID (fe927475-dd59-4339-a586-79bab113b774,
/// Table 8-47).
const MEMORY_MODULE_EVENT_UUID: [u8; 16] = [
    0xfe, 0x92, 0x74, 0x75, 0xdd, 0x59, 0x43, 0x39, 0xa5, 0x86, 0x79, 0xba, 0xb1, 0x13, 0xb7, 0x74,
];

/// Which event record [`DeviceRegisters::host_inject_event`] adds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostEvent {
    /// A corrected media error at `dpa` (General Media, Table 8-45).
    GeneralMedia { dpa: u64 },
    /// A corrected DRAM error at `dpa` (DRAM, Table 8-46).
    Dram { dpa: u64 },
    /// A device health change (Memory Module, Table 8-47): temperature
    /// change, health status normal.
    MemoryModule,
}

/// Record with the common header (UUID, length 0x80, severity
/// informational); the log stamps handle and timestamp.
fn record(uuid: &[u8; 16], body: impl FnOnce(&mut Out)) -> Vec<u8> {
    let mut out = Out::with_capacity(0x80);
    out.bytes(uuid).u8(0x80).zeros(0x30 - 0x11);
    body(&mut out);
    let len = out.len();
    out.zeros(0x80 - len);
    out.into_vec()
}

fn event_record(e: HostEvent, volatile: impl Fn(u64) -> bool) -> Vec<u8> {
    // Memory event type 0 = media ECC error; transaction type 0 = unknown;
    // event descriptor 0 = corrected (not uncorrectable).
    match e {
        HostEvent::GeneralMedia { dpa } => record(&GENERAL_MEDIA_EVENT_UUID, |o| {
            o.u64(dpa | u64::from(volatile(dpa))).u8(0).u8(0).u8(0);
        }),
        HostEvent::Dram { dpa } => record(&DRAM_EVENT_UUID, |o| {
            o.u64(dpa | u64::from(volatile(dpa))).u8(0).u8(0).u8(0);
        }),
        HostEvent::MemoryModule => record(&MEMORY_MODULE_EVENT_UUID, |o| {
            // Device event type 2 = temperature change; health info: status 0,
            // media status 0 (normal), additional status, life used 0,
            // temperature 40 C, counters 0.
            o.u8(2).u8(0).u8(0).u8(0).u8(0).u16(40);
        }),
    }
}

impl DeviceRegisters {
    /// Poisons `length` bytes (rounded up to 64 B lines) from `dpa`, as if
    /// the guest had sent Inject Poison for each line. Returns the lines
    /// newly poisoned.
    pub fn host_inject_poison(&mut self, dpa: u64, length: u64) -> Result<u64, ReturnCode> {
        let lines = length.div_ceil(64).max(1);
        let mut added = 0;
        for i in 0..lines {
            let at = dpa
                .checked_add(i * 64)
                .ok_or(ReturnCode::InvalidPhysicalAddress)?;
            let before = self.dev.poison_records().len();
            self.dev.inject_poison(&at.to_le_bytes())?;
            added += u64::from(self.dev.poison_records().len() != before);
        }
        self.deliver_pending_irqs();
        Ok(added)
    }

    /// Takes the 64 B line at `dpa` off the poison list (its data stays).
    pub fn host_clear_poison(&mut self, dpa: u64) -> Result<(), ReturnCode> {
        poison::check_line(dpa, self.dev.capacity())?;
        self.dev.unpoison(dpa);
        Ok(())
    }

    /// Adds an event record to the Informational log and raises the log's
    /// interrupt if the guest enabled it. Returns the record's handle.
    pub fn host_inject_event(&mut self, e: HostEvent) -> Result<u16, ReturnCode> {
        if let HostEvent::GeneralMedia { dpa } | HostEvent::Dram { dpa } = e {
            poison::check_line(dpa & !63, self.dev.capacity())?;
        }
        let volatile_end = self.dev.volatile_bytes();
        let rec = event_record(e, |dpa| dpa < volatile_end);
        self.push_event(EventLog::Informational, &rec)
            .map_err(|_| ReturnCode::InternalError)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_carry_their_uuid_and_length() {
        for (e, uuid) in [
            (
                HostEvent::GeneralMedia { dpa: 0x1000 },
                GENERAL_MEDIA_EVENT_UUID,
            ),
            (HostEvent::Dram { dpa: 0x1000 }, DRAM_EVENT_UUID),
            (HostEvent::MemoryModule, MEMORY_MODULE_EVENT_UUID),
        ] {
            let r = event_record(e, |_| true);
            assert_eq!(r.len(), 0x80);
            assert_eq!(r[..16], uuid);
            assert_eq!(r[0x10], 0x80);
        }
        let r = event_record(HostEvent::Dram { dpa: 0x1000 }, |_| true);
        assert_eq!(
            u64::from_le_bytes(r[0x30..0x38].try_into().unwrap()),
            0x1001
        );
    }
}
