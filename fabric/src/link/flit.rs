//! Flit layouts and slot packing of CXL.mem messages.
//!
//! A 68B flit (CXL 1.1/2.0) is 4 slots of 16 B plus a 2 B CRC and a 2 B
//! protocol ID; a 64 B cache line is 4 data slots. A 256B flit (CXL 3.x) has
//! 15 slots of 16 B after the PHY's header/CRC/FEC bytes; its first slot is a
//! header-only H slot, and all-data flits do not exist. The latency-optimised
//! 256B flit CRC-checks each 128 B half on its own, so slots 0–6 can be
//! consumed after the first half arrives; slot 8 is the header-only HS slot
//! and slot 7 waits for the second half.
//!
//! Message headers pack several per slot (reference table, recalled from CXL
//! 2.0 and consistent with the Mess bandwidth cross-check): M2S Req 1 per
//! slot, M2S RwD 1 per slot, S2M DRS 3 per slot, S2M NDR 2 per slot. A
//! header may join a header slot of its own kind as long as that flit has not
//! started on the wire. Every slot costs the same wire time (flit time /
//! slots), which is what makes the analytic efficiencies come out:
//! read 4⅓ slots per line, write 5.

use crate::topology::FlitMode;

/// Slot structure of one flit format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlitLayout {
    /// Bytes on the wire per flit (before line encoding).
    pub flit_bytes: u32,
    /// Slots per flit.
    pub slots: u8,
    /// Bit i set: slot i carries headers only.
    pub header_only: u16,
    /// Bit i set: slot i is usable when the first half of the flit arrives.
    pub early: u16,
}

impl FlitLayout {
    /// The layout of a flit mode, None for non-flit (TLP) links.
    pub fn for_mode(mode: FlitMode) -> Option<FlitLayout> {
        match mode {
            FlitMode::None => None,
            FlitMode::Flit68 => Some(FlitLayout {
                flit_bytes: 68,
                slots: 4,
                header_only: 0,
                early: 0,
            }),
            FlitMode::Flit256 => Some(FlitLayout {
                flit_bytes: 256,
                slots: 15,
                header_only: 1,
                early: 0,
            }),
            FlitMode::Flit256LatencyOpt => Some(FlitLayout {
                flit_bytes: 256,
                slots: 15,
                header_only: 1 | (1 << 8),
                early: 0x7f,
            }),
        }
    }

    /// Data-capable slots per flit.
    pub fn data_slots(&self) -> u32 {
        self.slots as u32 - self.header_only.count_ones()
    }
}

/// Shape of one message on a flit link: header kind, how many headers of
/// that kind share a slot, and the data slots that follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotMsg {
    /// Header kind (0 = no header, data only, e.g. a TLP chunk).
    pub kind: u8,
    /// Headers of this kind per slot.
    pub per_slot: u8,
    /// 16 B data slots after the header.
    pub data_slots: u32,
}

/// M2S Req (read request, no data): one per slot.
pub const M2S_REQ: SlotMsg = SlotMsg {
    kind: 1,
    per_slot: 1,
    data_slots: 0,
};
/// M2S RwD (write with a 64 B line): header alone in its slot, 4 data slots.
pub const M2S_RWD: SlotMsg = SlotMsg {
    kind: 2,
    per_slot: 1,
    data_slots: 4,
};
/// S2M DRS (read data, 64 B line): 3 headers per slot, 4 data slots.
pub const S2M_DRS: SlotMsg = SlotMsg {
    kind: 3,
    per_slot: 3,
    data_slots: 4,
};
/// S2M NDR (write completion, no data): 2 per slot.
pub const S2M_NDR: SlotMsg = SlotMsg {
    kind: 4,
    per_slot: 2,
    data_slots: 0,
};

/// Data only: `bytes` of TLP carried in 16 B slots (CXL.io over flits).
pub fn tlp_chunk(bytes: u32) -> SlotMsg {
    SlotMsg {
        kind: 0,
        per_slot: 0,
        data_slots: bytes.div_ceil(16),
    }
}
