//! Device-level tests: the register block driven through `BusDeviceMut` the way
//! Linux's `cxl_pci` drives it (readq/writeq/writel, memcpy to/from the
//! payload area). Outputs are decoded here from spec offsets, independently
//! of the device's own encoders.

mod commands;
mod events;
mod fuzz;
mod host_inject;
mod lsa;
mod poison;
mod registers;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use super::*;
use crate::BusDeviceMut;

pub(crate) const VOLATILE: u64 = 256 << 20;
pub(crate) const PERSISTENT: u64 = 512 << 20;
pub(crate) const LSA_SIZE: usize = 4096;
pub(crate) const FW_REV: &str = "cxlvmm-fw 1.0";

// Block offsets as the spec and QEMU lay them out.
pub(crate) const MBOX: u64 = 0x88;
pub(crate) const MBOX_CAPS_REG: u64 = MBOX;
pub(crate) const MBOX_CTRL_REG: u64 = MBOX + 0x04;
pub(crate) const MBOX_CMD_REG: u64 = MBOX + 0x08;
pub(crate) const MBOX_STATUS_REG: u64 = MBOX + 0x10;
pub(crate) const MBOX_BG_REG: u64 = MBOX + 0x18;
pub(crate) const MBOX_PAYLOAD_REG: u64 = MBOX + 0x20;
pub(crate) const DEV_STATUS_REG: u64 = 0x80;
pub(crate) const MEMDEV_STATUS_REG: u64 = 0x8a8;

// Opcodes, spelled out rather than taken from the device's enum.
pub(crate) const OP_GET_EVENT_RECORDS: u16 = 0x0100;
pub(crate) const OP_CLEAR_EVENT_RECORDS: u16 = 0x0101;
pub(crate) const OP_GET_EVT_INT_POLICY: u16 = 0x0102;
pub(crate) const OP_SET_EVT_INT_POLICY: u16 = 0x0103;
pub(crate) const OP_GET_FW_INFO: u16 = 0x0200;
pub(crate) const OP_GET_TIMESTAMP: u16 = 0x0300;
pub(crate) const OP_SET_TIMESTAMP: u16 = 0x0301;
pub(crate) const OP_GET_SUPPORTED_LOGS: u16 = 0x0400;
pub(crate) const OP_GET_LOG: u16 = 0x0401;
pub(crate) const OP_IDENTIFY: u16 = 0x4000;
pub(crate) const OP_GET_PARTITION_INFO: u16 = 0x4100;
pub(crate) const OP_SET_PARTITION_INFO: u16 = 0x4101;
pub(crate) const OP_GET_LSA: u16 = 0x4102;
pub(crate) const OP_SET_LSA: u16 = 0x4103;
pub(crate) const OP_GET_HEALTH_INFO: u16 = 0x4200;
pub(crate) const OP_GET_POISON: u16 = 0x4300;
pub(crate) const OP_INJECT_POISON: u16 = 0x4301;
pub(crate) const OP_CLEAR_POISON: u16 = 0x4302;

// Return codes, likewise.
pub(crate) const RC_SUCCESS: u16 = 0;
pub(crate) const RC_INVALID_INPUT: u16 = 2;
pub(crate) const RC_UNSUPPORTED: u16 = 3;
pub(crate) const RC_INVALID_HANDLE: u16 = 0x0e;
pub(crate) const RC_INVALID_PA: u16 = 0x0f;
pub(crate) const RC_POISON_LIMIT: u16 = 0x10;
pub(crate) const RC_INVALID_PAYLOAD_LEN: u16 = 0x16;
pub(crate) const RC_INVALID_LOG: u16 = 0x17;

/// CEL UUID 0da9c0b5-bf41-4b78-8f79-96b1623b3f17 as it appears on the wire.
pub(crate) const CEL: [u8; 16] = [
    0x0d, 0xa9, 0xc0, 0xb5, 0xbf, 0x41, 0x4b, 0x78, 0x8f, 0x79, 0x96, 0xb1, 0x62, 0x3b, 0x3f, 0x17,
];

pub(crate) fn le16(b: &[u8], off: usize) -> u16 {
    u16::from_le_bytes(b[off..off + 2].try_into().unwrap())
}
pub(crate) fn le32(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(b[off..off + 4].try_into().unwrap())
}
pub(crate) fn le64(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(b[off..off + 8].try_into().unwrap())
}

/// A fresh path in the system temp dir, removed on drop.
pub(crate) struct TempPath(pub PathBuf);

impl TempPath {
    pub(crate) fn new(tag: &str) -> Self {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("cxlvmm-{tag}-{}-{n}", std::process::id());
        let path = std::env::temp_dir().join(name);
        let _ = std::fs::remove_file(&path);
        Self(path)
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

pub(crate) fn config(lsa: Box<dyn LabelStorage>) -> Type3Config {
    Type3Config {
        volatile_bytes: VOLATILE,
        persistent_bytes: PERSISTENT,
        serial: 0x1234_5678_9abc_def0,
        lsa,
        fw_revision: FW_REV.to_string(),
    }
}

/// Result of one mailbox command.
#[derive(Debug)]
pub(crate) struct Reply {
    pub rc: u16,
    pub out: Vec<u8>,
}

pub(crate) struct Harness {
    pub regs: DeviceRegisters,
    irqs: Arc<Mutex<Vec<u16>>>,
}

impl Harness {
    pub(crate) fn new() -> Self {
        Self::with_config(config(Box::new(MemoryLabels::new(LSA_SIZE))))
    }

    pub(crate) fn with_config(cfg: Type3Config) -> Self {
        let mut regs = DeviceRegisters::new(cfg);
        let irqs = Arc::new(Mutex::new(Vec::new()));
        let sink = irqs.clone();
        regs.set_interrupt(Box::new(move |v| sink.lock().unwrap().push(v)));
        Self { regs, irqs }
    }

    /// Interrupts raised since the last call.
    pub(crate) fn take_irqs(&self) -> Vec<u16> {
        std::mem::take(&mut *self.irqs.lock().unwrap())
    }

    pub(crate) fn r8(&mut self, off: u64) -> u8 {
        let mut b = [0u8; 1];
        self.regs.read(off, &mut b);
        b[0]
    }
    pub(crate) fn r32(&mut self, off: u64) -> u32 {
        let mut b = [0u8; 4];
        self.regs.read(off, &mut b);
        u32::from_le_bytes(b)
    }
    pub(crate) fn r64(&mut self, off: u64) -> u64 {
        let mut b = [0u8; 8];
        self.regs.read(off, &mut b);
        u64::from_le_bytes(b)
    }
    pub(crate) fn w8(&mut self, off: u64, v: u8) {
        self.regs.write(off, &[v]);
    }
    pub(crate) fn w32(&mut self, off: u64, v: u32) {
        self.regs.write(off, &v.to_le_bytes());
    }
    pub(crate) fn w64(&mut self, off: u64, v: u64) {
        self.regs.write(off, &v.to_le_bytes());
    }

    pub(crate) fn doorbell(&mut self) -> bool {
        self.r32(MBOX_CTRL_REG) & 1 != 0
    }

    /// memcpy_toio into the payload area: qwords, then a byte tail.
    pub(crate) fn write_payload(&mut self, data: &[u8]) {
        let mut chunks = data.chunks_exact(8);
        let mut off = MBOX_PAYLOAD_REG;
        for c in &mut chunks {
            self.regs.write(off, c);
            off += 8;
        }
        for &b in chunks.remainder() {
            self.w8(off, b);
            off += 1;
        }
    }

    pub(crate) fn read_payload(&mut self, len: usize) -> Vec<u8> {
        let mut out = vec![0u8; len];
        for (i, c) in out.chunks_mut(8).enumerate() {
            self.regs.read(MBOX_PAYLOAD_REG + 8 * i as u64, c);
        }
        out
    }

    /// Rings the doorbell for a command whose length field is `len_field`
    /// (normally `input.len()`) and collects the reply, checking the
    /// handshake the way `__cxl_pci_mbox_send_cmd` does.
    pub(crate) fn send_with_len(&mut self, opcode: u16, input: &[u8], len_field: u64) -> Reply {
        assert!(!self.doorbell(), "doorbell busy before command");
        self.write_payload(input);
        self.w64(MBOX_CMD_REG, u64::from(opcode) | (len_field << 16));
        self.w32(MBOX_CTRL_REG, 1);
        assert!(!self.doorbell(), "doorbell still set after command");
        let status = self.r64(MBOX_STATUS_REG);
        assert_eq!(status & 1, 0, "background operation flag");
        assert_eq!(status >> 48, 0, "vendor status");
        let rc = (status >> 32) as u16;
        let cmd = self.r64(MBOX_CMD_REG);
        assert_eq!(cmd & 0xffff, u64::from(opcode), "opcode field changed");
        let out_len = ((cmd >> 16) & 0x1f_ffff) as usize;
        assert!(out_len <= 2048, "output length {out_len:#x}");
        if rc != RC_SUCCESS {
            assert_eq!(out_len, 0, "failed command {opcode:#x} returned output");
        }
        let out = self.read_payload(out_len);
        Reply { rc, out }
    }

    pub(crate) fn send(&mut self, opcode: u16, input: &[u8]) -> Reply {
        self.send_with_len(opcode, input, input.len() as u64)
    }

    /// Sends and expects success.
    pub(crate) fn ok(&mut self, opcode: u16, input: &[u8]) -> Vec<u8> {
        let r = self.send(opcode, input);
        assert_eq!(r.rc, RC_SUCCESS, "opcode {opcode:#06x} failed");
        r.out
    }

    /// Sends and returns only the return code.
    pub(crate) fn rc(&mut self, opcode: u16, input: &[u8]) -> u16 {
        self.send(opcode, input).rc
    }
}
