//! Device registers (CXL 3.1 §8.2.8) of a type-3 memory device and its
//! primary mailbox with commands (§8.2.9).
//!
//! [`DeviceRegisters`] is the whole block a Register Locator entry with
//! block id 3 points at. The layout follows QEMU's so that Linux's
//! `cxl_pci` finds what it expects:
//!
//! | offset  | size   | what                                           |
//! |---------|--------|------------------------------------------------|
//! | 0x000   | 8      | capabilities array (id 0, version 1, count 3)  |
//! | 0x010   | 3×16   | capability headers: status, mailbox, memdev    |
//! | 0x080   | 8      | Device Status (event status bits)              |
//! | 0x088   | 0x820  | primary mailbox: 0x20 registers + 2 KiB payload |
//! | 0x8a8   | 8      | Memory Device Status                           |
//!
//! Commands run synchronously when the host rings the doorbell, so the
//! doorbell reads clear again by the time the ringing write returns.

mod commands;
mod events;
mod host_inject;
mod labels;
mod memdev;
mod payload;
mod poison;

#[cfg(test)]
mod tests;

pub use commands::{effects, MailboxCommand, ReturnCode, CEL_UUID};
pub use events::{
    EventError, EventLog, EVENT_LOG_CAPACITY, EVENT_MSIX_VECTOR_BASE, EVENT_RECORD_SIZE,
    GENERAL_MEDIA_EVENT_UUID,
};
pub use host_inject::HostEvent;
pub use labels::{FileLabels, LabelStorage, MemoryLabels};
pub use memdev::{MediaWriter, CAPACITY_UNIT};
pub use poison::{PoisonRecord, PoisonSource, POISON_LIST_MAX};

use crate::BusDeviceMut;
use memdev::MemoryDevice;

/// Size of the register block as mapped in a BAR (a power of two).
pub const DEVICE_REGS_SIZE: u64 = 0x1000;
const _: () = assert!(
    DEVICE_REGS_SIZE.is_power_of_two()
        && DEVICE_REGS_SIZE >= MEMDEV_STATUS + MEMDEV_STATUS_LEN as u64
);

/// Mailbox payload area size; 2^11, as QEMU.
pub const MAILBOX_PAYLOAD_SIZE: usize = 1 << MAILBOX_PAYLOAD_SHIFT;
const MAILBOX_PAYLOAD_SHIFT: u32 = 11;

/// MSI-X vector of the mailbox (doorbell completion) interrupt.
pub const MAILBOX_MSIX_VECTOR: u16 = 0;
/// MSI-X vectors this device may signal: the mailbox's and one per event
/// log. The function's MSI-X table needs at least this many entries.
pub const MSIX_VECTORS_USED: u16 = EVENT_MSIX_VECTOR_BASE + EventLog::ALL.len() as u16;

// Block layout.
const CAP_ARRAY: u64 = 0x00;
const CAP_HEADERS: u64 = 0x10;
const CAP_HEADER_SIZE: u64 = 0x10;
const DEVICE_STATUS: u64 = 0x80;
const DEVICE_STATUS_LEN: u32 = 8;
const MAILBOX: u64 = 0x88;
const MAILBOX_LEN: u32 = 0x20 + MAILBOX_PAYLOAD_SIZE as u32;
const MEMDEV_STATUS: u64 = 0x8a8;
const MEMDEV_STATUS_LEN: u32 = 8;

// Capability ids and the versions QEMU reports.
const CAP_ID_DEVICE_STATUS: u16 = 1;
const CAP_ID_PRIMARY_MAILBOX: u16 = 2;
const CAP_ID_MEMORY_DEVICE: u16 = 0x4000;

/// (id, version, offset, length) of each capability, in header order.
const CAPABILITIES: [(u16, u8, u64, u32); 3] = [
    (CAP_ID_DEVICE_STATUS, 2, DEVICE_STATUS, DEVICE_STATUS_LEN),
    (CAP_ID_PRIMARY_MAILBOX, 1, MAILBOX, MAILBOX_LEN),
    (CAP_ID_MEMORY_DEVICE, 1, MEMDEV_STATUS, MEMDEV_STATUS_LEN),
];

/// Capabilities array register: id 0 [15:0], version 1 [23:16], count [47:32].
const CAP_ARRAY_VALUE: u64 = (1 << 16) | ((CAPABILITIES.len() as u64) << 32);

// Mailbox registers, offsets from the mailbox base.
const MBOX_CAPS: u64 = 0x00;
const MBOX_CONTROL: u64 = 0x04;
const MBOX_COMMAND: u64 = 0x08;
const MBOX_STATUS: u64 = 0x10;
const MBOX_BG_STATUS: u64 = 0x18;
const MBOX_PAYLOAD: u64 = 0x20;
// Control is the high half of the qword that starts with capabilities.
const _: () = assert!(MBOX_CONTROL == MBOX_CAPS + 4 && MAILBOX & 7 == 0);

/// Mailbox Capabilities: payload size [4:0], doorbell interrupt capable b5,
/// message number [10:7]. No background-completion interrupt (b6): no
/// command here runs in the background.
const MBOX_CAP_DOORBELL_IRQ: u32 = 1 << 5;
const MBOX_CAPS_VALUE: u32 =
    MAILBOX_PAYLOAD_SHIFT | MBOX_CAP_DOORBELL_IRQ | ((MAILBOX_MSIX_VECTOR as u32) << 7);

const CTRL_DOORBELL: u32 = 1 << 0;
const CTRL_DOORBELL_IRQ: u32 = 1 << 1;
/// Control bits the host may change (besides setting the doorbell).
const CTRL_WRITABLE: u32 = CTRL_DOORBELL_IRQ;

/// Command register: opcode [15:0], payload length [36:16]; the rest is
/// reserved and reads 0.
const CMD_OPCODE_MASK: u64 = 0xffff;
const CMD_LENGTH_SHIFT: u32 = 16;
const CMD_LENGTH_MASK: u64 = 0x1f_ffff;
const CMD_WRITABLE: u64 = CMD_OPCODE_MASK | (CMD_LENGTH_MASK << CMD_LENGTH_SHIFT);

/// Mailbox Status: return code [47:32].
const STATUS_RC_SHIFT: u32 = 32;

/// Memory Device Status: media ready (1 in [3:2]) and mailbox ready (b4).
const MEMDEV_STATUS_VALUE: u64 = (1 << 2) | (1 << 4);

/// Everything a type-3 device's registers and mailbox need to know.
pub struct Type3Config {
    pub volatile_bytes: u64,
    pub persistent_bytes: u64,
    pub serial: u64,
    pub lsa: Box<dyn LabelStorage>,
    /// Reported by IDENTIFY and GET_FW_INFO; at most 16 bytes are used.
    pub fw_revision: String,
}

/// The device register block of a type-3 memory device.
pub struct DeviceRegisters {
    dev: MemoryDevice,
    control: u32,
    command: u64,
    status: u64,
    payload: Box<[u8; MAILBOX_PAYLOAD_SIZE]>,
    interrupt: Option<Box<dyn Fn(u16) + Send>>,
    interrupt_ack: Option<Box<dyn Fn() + Send>>,
    /// Test-only: leave a rung doorbell set instead of executing, to observe
    /// the device while a command is in flight.
    #[cfg(test)]
    hold_doorbell: bool,
}

impl DeviceRegisters {
    pub fn new(cfg: Type3Config) -> Self {
        Self {
            dev: MemoryDevice::new(cfg),
            control: 0,
            command: 0,
            status: 0,
            payload: Box::new([0; MAILBOX_PAYLOAD_SIZE]),
            interrupt: None,
            interrupt_ack: None,
            #[cfg(test)]
            hold_doorbell: false,
        }
    }

    /// Installs the interrupt sink, called with an MSI-X vector number: the
    /// mailbox vector on command completion when the host enabled the
    /// doorbell interrupt, an event log's vector when a record arrives in a
    /// log the host enabled interrupts for. Default: none.
    pub fn set_interrupt(&mut self, f: Box<dyn Fn(u16) + Send>) {
        self.interrupt = Some(f);
    }

    /// Installs what runs when the host writes the mailbox control register
    /// (to ring the doorbell or change the interrupt enable): a level
    /// interrupt (INTx) raised for earlier completions is acknowledged then.
    pub fn set_interrupt_ack(&mut self, f: Box<dyn Fn() + Send>) {
        self.interrupt_ack = Some(f);
    }

    /// Installs the writer Clear Poison uses to store its 64 bytes of data
    /// at a DPA. Without one the data is dropped (the poison still clears).
    pub fn set_media_writer(&mut self, w: MediaWriter) {
        self.dev.set_media_writer(w);
    }

    /// Adds an event record (at most 128 bytes; the device stamps handle and
    /// timestamp) to `log`, updates Device Status and signals the log's
    /// interrupt if enabled. Returns the record's handle.
    pub fn push_event(&mut self, log: EventLog, record: &[u8]) -> Result<u16, EventError> {
        let handle = self.dev.push_event(log, record);
        self.deliver_pending_irqs();
        handle
    }

    /// The device serial number (for the DSN capability).
    pub fn serial(&self) -> u64 {
        self.dev.serial()
    }

    /// The current poison list.
    pub fn poison_records(&self) -> Vec<PoisonRecord> {
        self.dev.poison_records().to_vec()
    }

    fn irq(&self, vector: u16) {
        if let Some(f) = &self.interrupt {
            f(vector);
        }
    }

    fn deliver_pending_irqs(&mut self) {
        for v in self.dev.take_pending_irqs() {
            self.irq(v);
        }
    }

    fn doorbell_set(&self) -> bool {
        self.control & CTRL_DOORBELL != 0
    }

    /// The 64-bit register (or payload qword) at 8-byte-aligned `at`.
    fn read_qword(&self, at: u64) -> u64 {
        match at {
            CAP_ARRAY => CAP_ARRAY_VALUE,
            _ if (CAP_HEADERS..CAP_HEADERS + CAP_HEADER_SIZE * 3).contains(&at) => {
                let (id, ver, offset, len) =
                    CAPABILITIES[((at - CAP_HEADERS) / CAP_HEADER_SIZE) as usize];
                if at & (CAP_HEADER_SIZE - 1) == 0 {
                    u64::from(id) | (u64::from(ver) << 16) | (offset << 32)
                } else {
                    u64::from(len)
                }
            }
            DEVICE_STATUS => self.dev.events.status(),
            _ if at == MAILBOX + MBOX_CAPS => {
                u64::from(MBOX_CAPS_VALUE) | (u64::from(self.control) << 32)
            }
            _ if at == MAILBOX + MBOX_COMMAND => self.command,
            _ if at == MAILBOX + MBOX_STATUS => self.status,
            // No background operations: opcode, % complete and rc all 0.
            _ if at == MAILBOX + MBOX_BG_STATUS => 0,
            _ if (MAILBOX + MBOX_PAYLOAD..MEMDEV_STATUS).contains(&at) => {
                let i = (at - MAILBOX - MBOX_PAYLOAD) as usize;
                let mut q = [0u8; 8];
                q.copy_from_slice(&self.payload[i..i + 8]);
                u64::from_le_bytes(q)
            }
            MEMDEV_STATUS => MEMDEV_STATUS_VALUE,
            _ => 0,
        }
    }

    /// Applies the bytes selected by `mask` of `val` to the qword at `at`.
    /// Returns true if this write rang the doorbell.
    fn write_qword(&mut self, at: u64, val: u64, mask: u64) -> bool {
        match at {
            _ if at == MAILBOX + MBOX_CAPS => {
                // Low dword: capabilities (read-only); high dword: control.
                let (val, mask) = ((val >> 32) as u32, (mask >> 32) as u32);
                if mask != 0 {
                    if let Some(ack) = &self.interrupt_ack {
                        ack();
                    }
                }
                self.control =
                    (self.control & !(mask & CTRL_WRITABLE)) | (val & mask & CTRL_WRITABLE);
                if val & mask & CTRL_DOORBELL != 0 {
                    self.control |= CTRL_DOORBELL;
                    return true;
                }
                false
            }
            _ if at == MAILBOX + MBOX_COMMAND => {
                let mask = mask & CMD_WRITABLE;
                self.command = (self.command & !mask) | (val & mask);
                false
            }
            _ if (MAILBOX + MBOX_PAYLOAD..MEMDEV_STATUS).contains(&at) => {
                let i = (at - MAILBOX - MBOX_PAYLOAD) as usize;
                for (k, b) in self.payload[i..i + 8].iter_mut().enumerate() {
                    if (mask >> (8 * k)) & 0xff != 0 {
                        *b = (val >> (8 * k)) as u8;
                    }
                }
                false
            }
            // Capability registers, statuses and unknown offsets: read-only.
            _ => false,
        }
    }

    /// Runs the command in the command register and completes the doorbell
    /// handshake: output, return code, then doorbell clear.
    fn execute_command(&mut self) {
        let opcode = (self.command & CMD_OPCODE_MASK) as u16;
        let len = ((self.command >> CMD_LENGTH_SHIFT) & CMD_LENGTH_MASK) as usize;
        let result = match self.payload.get(..len) {
            Some(input) => commands::execute(&mut self.dev, opcode, input),
            // Longer than the payload area.
            None => Err(ReturnCode::InvalidPayloadLength),
        };
        let (rc, out_len) = match result {
            Ok(out) => {
                self.payload[..out.len()].copy_from_slice(&out);
                (ReturnCode::Success, out.len())
            }
            Err(rc) => (rc, 0),
        };
        log::trace!("cxl mailbox: {opcode:#06x} in {len:#x} -> rc {rc:?} out {out_len:#x}");
        self.command = (self.command & CMD_OPCODE_MASK) | ((out_len as u64) << CMD_LENGTH_SHIFT);
        self.status = u64::from(rc.code()) << STATUS_RC_SHIFT;
        self.control &= !CTRL_DOORBELL;
        if self.control & CTRL_DOORBELL_IRQ != 0 {
            self.irq(MAILBOX_MSIX_VECTOR);
        }
        self.deliver_pending_irqs();
    }

    /// Test-only: hold (or release) a rung doorbell; releasing runs a
    /// command left pending.
    #[cfg(test)]
    fn hold_doorbell(&mut self, hold: bool) {
        self.hold_doorbell = hold;
        if !hold && self.doorbell_set() {
            self.execute_command();
        }
    }
}

impl BusDeviceMut for DeviceRegisters {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        // Byte by byte through the containing qword, so every width and
        // alignment (and an access straddling registers) is answered alike.
        for (i, b) in data.iter_mut().enumerate() {
            *b = match offset.checked_add(i as u64) {
                Some(at) => (self.read_qword(at & !7) >> (8 * (at & 7))) as u8,
                None => 0,
            };
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        // While a command is in flight the mailbox is the device's: command,
        // payload and control are read-only until the doorbell clears
        // (everything else is read-only anyway).
        if self.doorbell_set() {
            return;
        }
        let mut rang = false;
        let mut i = 0;
        while i < data.len() {
            let Some(at) = offset.checked_add(i as u64) else {
                break;
            };
            let shift = (at & 7) as usize;
            let n = (8 - shift).min(data.len() - i);
            let (mut val, mut mask) = (0u64, 0u64);
            for (k, &b) in data[i..i + n].iter().enumerate() {
                val |= u64::from(b) << (8 * (shift + k));
                mask |= 0xff << (8 * (shift + k));
            }
            rang |= self.write_qword(at & !7, val, mask);
            i += n;
        }
        // Execute only once the whole access has landed, so a write that
        // covers both control and command sees the new command.
        #[cfg(test)]
        if self.hold_doorbell {
            return;
        }
        if rang {
            self.execute_command();
        }
    }
}
