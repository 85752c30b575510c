//! State of the memory device behind the mailbox, and the handlers for the
//! commands that are plain reads or writes of it: identify, partitions, LSA,
//! timestamp, health, firmware info, poison.

use std::io;
use std::time::Instant;

use super::commands::ReturnCode;
use super::events::{EventError, EventLog, EventLogs, EVENT_LOG_CAPACITY};
use super::labels::LabelStorage;
use super::payload::{array_at, u32_at, u64_at, Out};
use super::poison::{self, PoisonList, POISON_LIST_MAX};
use super::{Type3Config, MAILBOX_PAYLOAD_SIZE};

/// Capacities are reported in units of 256 MiB.
pub const CAPACITY_UNIT: u64 = 256 << 20;

/// Writes `data` at a device physical address (Clear Poison's write data).
pub type MediaWriter = Box<dyn FnMut(u64, &[u8]) -> io::Result<()> + Send>;

pub(crate) struct MemoryDevice {
    volatile_bytes: u64,
    persistent_bytes: u64,
    serial: u64,
    fw_revision: [u8; 16],
    lsa: Box<dyn LabelStorage>,
    /// Host-set timestamp (ns) and when it was set; the device clock runs on
    /// from there with the host's monotonic clock.
    timestamp: Option<(u64, Instant)>,
    pub(crate) events: EventLogs,
    poison: PoisonList,
    media_writer: Option<MediaWriter>,
    /// Event interrupts raised while handling a command or an injected event,
    /// for the register block to deliver.
    pending_irqs: Vec<u16>,
}

impl MemoryDevice {
    pub(crate) fn new(cfg: Type3Config) -> Self {
        for (what, bytes) in [
            ("volatile", cfg.volatile_bytes),
            ("persistent", cfg.persistent_bytes),
        ] {
            if bytes % CAPACITY_UNIT != 0 {
                // Topology validation rejects this; the device reports the
                // whole units it has rather than failing.
                log::warn!("cxl type-3 {what} capacity {bytes:#x} is not a multiple of 256 MiB");
            }
        }
        let mut fw_revision = [0u8; 16];
        let rev = cfg.fw_revision.as_bytes();
        let n = rev.len().min(fw_revision.len());
        fw_revision[..n].copy_from_slice(&rev[..n]);
        Self {
            volatile_bytes: cfg.volatile_bytes - cfg.volatile_bytes % CAPACITY_UNIT,
            persistent_bytes: cfg.persistent_bytes - cfg.persistent_bytes % CAPACITY_UNIT,
            serial: cfg.serial,
            fw_revision,
            lsa: cfg.lsa,
            timestamp: None,
            events: EventLogs::new(),
            poison: PoisonList::default(),
            media_writer: None,
            pending_irqs: Vec::new(),
        }
    }

    pub(crate) fn serial(&self) -> u64 {
        self.serial
    }

    /// Total DPA space: volatile first, then persistent.
    pub(crate) fn capacity(&self) -> u64 {
        self.volatile_bytes.saturating_add(self.persistent_bytes)
    }

    pub(crate) fn set_media_writer(&mut self, w: MediaWriter) {
        self.media_writer = Some(w);
    }

    pub(crate) fn volatile_bytes(&self) -> u64 {
        self.volatile_bytes
    }

    /// Takes a line off the poison list without writing it (host clear).
    pub(crate) fn unpoison(&mut self, dpa: u64) {
        let now = self.now();
        self.poison.clear(dpa, now);
    }

    pub(crate) fn poison_records(&self) -> &[poison::PoisonRecord] {
        self.poison.records()
    }

    pub(crate) fn take_pending_irqs(&mut self) -> Vec<u16> {
        std::mem::take(&mut self.pending_irqs)
    }

    /// Device time in ns: 0 until the host sets it, then running.
    pub(crate) fn now(&self) -> u64 {
        match self.timestamp {
            Some((base, at)) => {
                let elapsed = u64::try_from(at.elapsed().as_nanos()).unwrap_or(u64::MAX);
                base.saturating_add(elapsed)
            }
            None => 0,
        }
    }

    /// Adds an event record and queues its interrupt if enabled.
    pub(crate) fn push_event(&mut self, log: EventLog, record: &[u8]) -> Result<u16, EventError> {
        let handle = self.events.push(log, record, self.now())?;
        if let Some(v) = self.events.irq_vector(log) {
            self.pending_irqs.push(v);
        }
        Ok(handle)
    }

    /// IDENTIFY (4000h), CXL 3.1 Table 8-127; 0x43 bytes.
    pub(crate) fn identify(&self) -> Vec<u8> {
        let vol = self.volatile_bytes / CAPACITY_UNIT;
        let pers = self.persistent_bytes / CAPACITY_UNIT;
        let lsa_size = u32::try_from(self.lsa.size()).unwrap_or(u32::MAX);
        let log_size = EVENT_LOG_CAPACITY as u16;
        let mut out = Out::with_capacity(0x43);
        out.bytes(&self.fw_revision)
            .u64(vol + pers)
            .u64(vol)
            .u64(pers)
            // Partition alignment 0: all capacity is fixed volatile or
            // persistent, nothing is partitionable.
            .u64(0)
            .u16(log_size)
            .u16(log_size)
            .u16(log_size)
            .u16(log_size)
            .u32(lsa_size)
            .u24(POISON_LIST_MAX as u32)
            .u16(POISON_LIST_MAX as u16)
            // Poison capabilities: injected poison is not persistent, no scan
            // media. QoS telemetry: none.
            .u8(0)
            .u8(0);
        out.into_vec()
    }

    /// GET_PARTITION_INFO (4100h): active and next capacities, 0x20 bytes.
    /// Next = 0 means no change is pending.
    pub(crate) fn partition_info(&self) -> Vec<u8> {
        let mut out = Out::with_capacity(0x20);
        out.u64(self.volatile_bytes / CAPACITY_UNIT)
            .u64(self.persistent_bytes / CAPACITY_UNIT)
            .u64(0)
            .u64(0);
        out.into_vec()
    }

    /// SET_PARTITION_INFO (4101h): {volatile capacity u64, flags u8}. The
    /// capacity is the share of the *partitionable* capacity to make
    /// volatile; with partition alignment 0 that capacity is zero, so the
    /// only valid request is 0 (a no-op) and anything else is Invalid Input.
    pub(crate) fn set_partition_info(&mut self, input: &[u8]) -> Result<Vec<u8>, ReturnCode> {
        let volatile_units = u64_at(input, 0).ok_or(ReturnCode::InvalidPayloadLength)?;
        if volatile_units != 0 {
            return Err(ReturnCode::InvalidInput);
        }
        Ok(Vec::new())
    }

    /// GET_LSA (4102h): {offset u32, length u32} -> the bytes.
    pub(crate) fn get_lsa(&mut self, input: &[u8]) -> Result<Vec<u8>, ReturnCode> {
        let offset = u32_at(input, 0).ok_or(ReturnCode::InvalidPayloadLength)?;
        let length = u32_at(input, 4).ok_or(ReturnCode::InvalidPayloadLength)? as usize;
        if length > MAILBOX_PAYLOAD_SIZE || u64::from(offset) + length as u64 > self.lsa.size() {
            return Err(ReturnCode::InvalidInput);
        }
        let mut buf = vec![0u8; length];
        self.lsa.read(u64::from(offset), &mut buf).map_err(|e| {
            log::error!("cxl LSA read at {offset:#x}+{length:#x}: {e}");
            ReturnCode::InternalError
        })?;
        Ok(buf)
    }

    /// SET_LSA (4103h): {offset u32, reserved u32, data}.
    pub(crate) fn set_lsa(&mut self, input: &[u8]) -> Result<Vec<u8>, ReturnCode> {
        let offset = u32_at(input, 0).ok_or(ReturnCode::InvalidPayloadLength)?;
        let data = input.get(8..).ok_or(ReturnCode::InvalidPayloadLength)?;
        if u64::from(offset) + data.len() as u64 > self.lsa.size() {
            return Err(ReturnCode::InvalidInput);
        }
        self.lsa.write(u64::from(offset), data).map_err(|e| {
            log::error!("cxl LSA write at {offset:#x}+{:#x}: {e}", data.len());
            ReturnCode::InternalError
        })?;
        Ok(Vec::new())
    }

    /// GET_TIMESTAMP (0300h).
    pub(crate) fn get_timestamp(&self) -> Vec<u8> {
        self.now().to_le_bytes().to_vec()
    }

    /// SET_TIMESTAMP (0301h): ns since the Unix epoch, as Linux sends it.
    pub(crate) fn set_timestamp(&mut self, input: &[u8]) -> Result<Vec<u8>, ReturnCode> {
        let ts = u64_at(input, 0).ok_or(ReturnCode::InvalidPayloadLength)?;
        self.timestamp = Some((ts, Instant::now()));
        Ok(Vec::new())
    }

    /// GET_HEALTH_INFO (4200h), CXL 3.1 Table 8-148; 0x12 bytes.
    pub(crate) fn health_info(&self) -> Vec<u8> {
        /// "Not implemented" value of the temperature field.
        const TEMPERATURE_UNKNOWN: u16 = 0x7fff;
        let mut out = Out::with_capacity(0x12);
        // Health status (no maintenance/replacement needed), media status
        // normal, additional status clear, life used 0 %.
        out.u8(0).u8(0).u8(0).u8(0);
        out.u16(TEMPERATURE_UNKNOWN);
        // Dirty shutdowns, corrected volatile and persistent errors.
        out.u32(0).u32(0).u32(0);
        out.into_vec()
    }

    /// GET_FW_INFO (0200h), CXL 3.1 Table 8-62; 0x50 bytes. Two slots, the
    /// first active and holding the configured revision; no firmware update
    /// commands, so nothing is ever staged.
    pub(crate) fn fw_info(&self) -> Vec<u8> {
        const SLOTS: u8 = 2;
        const ACTIVE_SLOT: u8 = 1;
        let mut out = Out::with_capacity(0x50);
        out.u8(SLOTS).u8(ACTIVE_SLOT).u8(0).zeros(13);
        out.bytes(&self.fw_revision).zeros(3 * 16);
        out.into_vec()
    }

    /// GET_POISON_LIST (4300h).
    pub(crate) fn get_poison_list(&mut self, input: &[u8]) -> Result<Vec<u8>, ReturnCode> {
        let capacity = self.capacity();
        self.poison.get(input, capacity)
    }

    /// INJECT_POISON (4301h): {dpa u64}. New poison is announced with a
    /// General Media event in the Informational log (§8.2.9.9.4.2).
    pub(crate) fn inject_poison(&mut self, input: &[u8]) -> Result<Vec<u8>, ReturnCode> {
        let dpa = u64_at(input, 0).ok_or(ReturnCode::InvalidPayloadLength)?;
        poison::check_line(dpa, self.capacity())?;
        if self.poison.inject(dpa)? {
            let record = poison::poison_created_event(dpa, dpa < self.volatile_bytes);
            // A full log only counts an overflow; the injection still stands.
            if let Err(e) = self.push_event(EventLog::Informational, &record) {
                log::debug!("cxl poison event not logged: {e}");
            }
        }
        Ok(Vec::new())
    }

    /// CLEAR_POISON (4302h): {dpa u64, write data[64]}. The data replaces the
    /// line's contents through the media writer, then the line leaves the
    /// poison list; if the write fails the poison stays.
    pub(crate) fn clear_poison(&mut self, input: &[u8]) -> Result<Vec<u8>, ReturnCode> {
        let dpa = u64_at(input, 0).ok_or(ReturnCode::InvalidPayloadLength)?;
        let data: [u8; 64] = array_at(input, 8).ok_or(ReturnCode::InvalidPayloadLength)?;
        poison::check_line(dpa, self.capacity())?;
        if let Some(w) = self.media_writer.as_mut() {
            w(dpa, &data).map_err(|e| {
                log::error!("cxl clear poison: writing DPA {dpa:#x}: {e}");
                ReturnCode::InternalError
            })?;
        }
        let now = self.now();
        self.poison.clear(dpa, now);
        Ok(Vec::new())
    }
}
