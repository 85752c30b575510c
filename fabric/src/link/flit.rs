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

use super::crc::CrcErrors;
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

const ANY: u8 = 0xff;

/// Per-direction flit packer: which flit is being filled, up to which slot,
/// and the header slot still open for more headers.
#[derive(Debug, Clone)]
pub(crate) struct FlitPacker {
    pub layout: FlitLayout,
    pub flit_ps: u64,
    pub half_ps: u64,
    /// Start of the newest flit on the wire schedule.
    cur_start: u64,
    /// Extra delay of the newest flit (CRC replay).
    cur_extra: u64,
    /// Next free slot in it (== slots: full).
    cur_next: u8,
    /// When the wire is free after the newest flit.
    free_at: u64,
    /// Open header slot: flit start, kind (ANY: empty H slot), room left.
    hdr_flit: u64,
    hdr_kind: u8,
    hdr_room: u8,
    hdr_extra: u64,
    hdr_early: bool,
    /// Flits sent (for statistics).
    pub flits: u64,
    /// CRC error injection (replays).
    pub crc: CrcErrors,
}

/// Where a message ended up: first flit start and the time it is usable.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Placed {
    pub start: u64,
    pub done: u64,
}

impl FlitPacker {
    pub fn new(layout: FlitLayout, flit_ps: u64, crc: CrcErrors) -> Self {
        FlitPacker {
            layout,
            flit_ps,
            half_ps: flit_ps / 2,
            cur_start: 0,
            cur_extra: 0,
            cur_next: layout.slots,
            free_at: 0,
            hdr_flit: 0,
            hdr_kind: 0,
            hdr_room: 0,
            hdr_extra: 0,
            hdr_early: false,
            flits: 0,
            crc,
        }
    }

    /// Make sure the newest flit can take a slot for a message that arrived
    /// at `arrive`; otherwise open a new flit (which a CRC error may delay).
    #[inline]
    fn ensure_open(&mut self, arrive: u64) {
        if self.cur_next >= self.layout.slots || self.cur_start < arrive {
            let start = arrive.max(self.free_at);
            let extra = self.crc.draw();
            self.cur_start = start;
            self.cur_extra = extra;
            self.cur_next = 0;
            self.free_at = start + self.flit_ps + extra;
            self.flits += 1;
        }
    }

    #[inline]
    fn slot_done(&self, slot: u8) -> u64 {
        let t = if self.layout.early & (1 << slot) != 0 {
            self.half_ps
        } else {
            self.flit_ps
        };
        self.cur_start + t + self.cur_extra
    }

    /// Place one message; returns when its first flit starts and when the
    /// receiver can use it (end of the (half-)flit holding its last slot).
    pub fn place(&mut self, arrive: u64, msg: SlotMsg) -> Placed {
        let mut first_start = None;
        let mut done = arrive;
        if msg.kind != 0 {
            let joinable = self.hdr_room > 0
                && self.hdr_flit >= arrive
                && (self.hdr_kind == msg.kind || self.hdr_kind == ANY);
            if joinable {
                if self.hdr_kind == ANY {
                    self.hdr_kind = msg.kind;
                    self.hdr_room = msg.per_slot;
                }
                self.hdr_room -= 1;
                first_start = Some(self.hdr_flit);
                let t = if self.hdr_early {
                    self.half_ps
                } else {
                    self.flit_ps
                };
                done = self.hdr_flit + t + self.hdr_extra;
            } else {
                self.ensure_open(arrive);
                let slot = self.cur_next;
                self.cur_next += 1;
                self.hdr_flit = self.cur_start;
                self.hdr_kind = msg.kind;
                self.hdr_room = msg.per_slot - 1;
                self.hdr_extra = self.cur_extra;
                self.hdr_early = self.layout.early & (1 << slot) != 0;
                first_start = Some(self.cur_start);
                done = self.slot_done(slot);
            }
        }
        let mut left = msg.data_slots;
        while left > 0 {
            self.ensure_open(arrive);
            if self.layout.header_only == 0 {
                // 68B: no header-only slots, fill as many as fit at once.
                let room = (self.layout.slots - self.cur_next) as u32;
                let take = left.min(room);
                self.cur_next += take as u8;
                left -= take;
                first_start.get_or_insert(self.cur_start);
                done = self.slot_done(self.cur_next - 1);
                continue;
            }
            let slot = self.cur_next;
            self.cur_next += 1;
            if self.layout.header_only & (1 << slot) != 0 {
                // Data cannot go here; leave it open for a later header
                // unless a header slot is still open for an unstarted flit.
                if self.hdr_room == 0 || self.hdr_flit < arrive {
                    self.hdr_flit = self.cur_start;
                    self.hdr_kind = ANY;
                    self.hdr_room = 1;
                    self.hdr_extra = self.cur_extra;
                    self.hdr_early = self.layout.early & (1 << slot) != 0;
                }
                continue;
            }
            left -= 1;
            first_start.get_or_insert(self.cur_start);
            done = self.slot_done(slot);
        }
        Placed {
            start: first_start.unwrap_or(arrive),
            done,
        }
    }
}
