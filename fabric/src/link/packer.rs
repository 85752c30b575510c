//! Per-direction flit packer: which flit is being filled, up to which slot,
//! and the header slot still open for more headers (see [`super::flit`] for
//! the slot rules).
//!
//! This is the innermost loop of the engine (every CXL.mem message of every
//! transaction passes through it), so a layout's per-slot facts are
//! tabulated once ([`SlotTable`]) and a message costs a few lookups per flit
//! it touches, not a step per slot. 68B flits, where every slot is usable at
//! the end of its flit, skip the tables ([`FlitPacker::place_simple`]) and
//! decide with selects instead of branches: whether a message opens a flit
//! or joins a header slot depends on the traffic, so branches there are
//! mispredicted often. Both compute what the slot-by-slot rules say, to the
//! picosecond (`tests/golden.rs`).

use super::crc::CrcErrors;
use super::flit::{FlitLayout, SlotMsg};

/// Header kind of an empty header-only slot that any header may take.
const ANY: u8 = 0xff;

/// Largest slot count of any layout (256B flits: 15).
const MAX_SLOTS: usize = 16;
/// Slot indices masked with this stay in the tables' bounds without a check.
const SLOT_MASK: usize = MAX_SLOTS - 1;

/// A layout's per-slot facts.
#[derive(Debug, Clone)]
struct SlotTable {
    slots: u8,
    /// Data-capable slots per flit.
    data_total: u8,
    /// From flit start until slot i is usable: the whole flit, or half of it
    /// for slots checked with the first half (latency-optimised 256B).
    ready_ps: [u64; MAX_SLOTS],
    /// Data-capable slots before slot i (i = 0..=slots).
    data_before: [u8; MAX_SLOTS + 1],
    /// Index of the j-th data-capable slot.
    data_slot: [u8; MAX_SLOTS],
    /// First header-only slot at or after slot i (`slots` if none).
    header_from: [u8; MAX_SLOTS + 1],
}

impl SlotTable {
    fn new(layout: FlitLayout, flit_ps: u64) -> Self {
        let slots = layout.slots.min(MAX_SLOTS as u8);
        let mut t = SlotTable {
            slots,
            data_total: 0,
            ready_ps: [flit_ps; MAX_SLOTS],
            data_before: [0; MAX_SLOTS + 1],
            data_slot: [0; MAX_SLOTS],
            header_from: [slots; MAX_SLOTS + 1],
        };
        let mut data = 0u8;
        for i in 0..slots {
            let bit = 1u16 << i;
            if layout.early & bit != 0 {
                t.ready_ps[i as usize] = flit_ps / 2;
            }
            t.data_before[i as usize] = data;
            if layout.header_only & bit == 0 {
                t.data_slot[data as usize] = i;
                data += 1;
            }
        }
        t.data_before[slots as usize] = data;
        t.data_total = data;
        for i in (0..slots).rev() {
            t.header_from[i as usize] = if layout.header_only & (1 << i) != 0 {
                i
            } else {
                t.header_from[i as usize + 1]
            };
        }
        t
    }
}

/// Where a message ended up: first flit start and the time it is usable.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Placed {
    pub start: u64,
    pub done: u64,
}

#[derive(Debug, Clone)]
pub(crate) struct FlitPacker {
    /// No header-only slots and no early half (68B flits): every slot is
    /// usable when the flit ends, so placement needs no tables.
    simple: bool,
    table: SlotTable,
    flit_ps: u64,
    /// Start of the newest flit on the wire schedule.
    cur_start: u64,
    /// Its start plus its CRC replay delay: slot i is usable at
    /// `cur_base + ready_ps[i]` (not kept for simple layouts, which use
    /// `free_at`).
    cur_base: u64,
    /// Next free slot in it (== slots: full).
    cur_next: u8,
    /// When the wire is free after the newest flit.
    free_at: u64,
    /// Open header slot: its flit's start, kind (ANY: empty header-only
    /// slot), room left, and when it is usable.
    hdr_flit: u64,
    hdr_kind: u8,
    hdr_room: u8,
    hdr_done: u64,
    /// Flits sent (for statistics).
    pub flits: u64,
    /// CRC error injection (replays).
    pub crc: CrcErrors,
}

impl FlitPacker {
    pub fn new(layout: FlitLayout, flit_ps: u64, crc: CrcErrors) -> Self {
        let table = SlotTable::new(layout, flit_ps);
        FlitPacker {
            simple: layout.header_only == 0 && layout.early == 0,
            cur_next: table.slots,
            table,
            flit_ps,
            cur_start: 0,
            cur_base: 0,
            free_at: 0,
            hdr_flit: 0,
            hdr_kind: 0,
            hdr_room: 0,
            hdr_done: 0,
            flits: 0,
            crc,
        }
    }

    /// Make sure the newest flit can take a slot for a message that arrived
    /// at `arrive`; otherwise open a new flit (which a CRC error may delay).
    #[inline(always)]
    fn ensure_open(&mut self, arrive: u64) {
        if self.must_open(arrive) {
            let start = arrive.max(self.free_at);
            let extra = self.crc.draw();
            self.cur_start = start;
            self.cur_base = start + extra;
            self.cur_next = 0;
            self.free_at = start + self.flit_ps + extra;
            self.flits += 1;
        }
    }

    /// Wire time of one flit.
    pub fn flit_ps(&self) -> u64 {
        self.flit_ps
    }

    /// When the wire is free after the newest flit.
    pub fn busy_until(&self) -> u64 {
        self.free_at
    }

    /// Continue a schedule that ended at `t` (after the link was retuned):
    /// the next message opens a new flit, no earlier than `t`.
    pub fn resume_at(&mut self, t: u64) {
        self.free_at = t;
        self.cur_next = self.table.slots;
        self.hdr_room = 0;
    }

    /// Whether [`FlitPacker::place_simple`] applies (68B flits).
    pub fn is_simple(&self) -> bool {
        self.simple
    }

    /// Place one message; returns when its first flit starts and when the
    /// receiver can use it (end of the (half-)flit holding its last slot).
    /// Inlined so that a caller's constant message folds into it.
    #[inline(always)]
    pub fn place(&mut self, arrive: u64, msg: SlotMsg) -> Placed {
        if self.simple {
            self.place_simple(arrive, msg, true)
        } else {
            self.place_slots(arrive, msg)
        }
    }

    /// Whether a message that arrived at `arrive` needs a new flit: the
    /// newest is full, or already on the wire before it arrived (`|`, not
    /// `||`: one branch or select for both reasons).
    #[inline(always)]
    fn must_open(&self, arrive: u64) -> bool {
        (self.cur_next >= self.table.slots) | (self.cur_start < arrive)
    }

    /// Open a new flit if `open` (simple layouts, which never read
    /// `cur_base`). Selects rather than a branch: whether a flit opens
    /// depends on the traffic, so a branch would often be mispredicted.
    #[inline(always)]
    fn open_simple_if(&mut self, open: bool, arrive: u64, crc: bool) {
        // Only an opened flit draws, keeping the error stream per flit.
        let extra = if crc && self.crc.active() && open {
            self.crc.draw()
        } else {
            0
        };
        let start = arrive.max(self.free_at);
        self.cur_start = sel(open, start, self.cur_start);
        self.free_at = sel(open, start + self.flit_ps + extra, self.free_at);
        self.cur_next = sel(open, 0, self.cur_next);
        self.flits += u64::from(open);
    }

    /// [`FlitPacker::place_slots`] for a simple layout, where the table
    /// lookups reduce to arithmetic: every slot of the newest flit is usable
    /// when that flit ends (`free_at`), and a header slot can only be joined
    /// by its own kind (no empty header-only slots exist).
    ///
    /// `crc`: whether CRC errors may be injected; a caller that knows they
    /// are not passes a constant false and the checks fold away.
    #[inline(always)]
    pub fn place_simple(&mut self, arrive: u64, msg: SlotMsg, crc: bool) -> Placed {
        let mut start = arrive;
        let mut done = arrive;
        if msg.kind != 0 {
            // A kind that fills its slot alone never finds room (this folds
            // away for requests and writes).
            let join = (msg.per_slot > 1)
                & (self.hdr_room > 0)
                & (self.hdr_flit >= arrive)
                & (self.hdr_kind == msg.kind);
            self.open_simple_if(!join & self.must_open(arrive), arrive, crc);
            self.cur_next += u8::from(!join);
            self.hdr_flit = sel(join, self.hdr_flit, self.cur_start);
            self.hdr_room = sel(join, self.hdr_room.wrapping_sub(1), msg.per_slot - 1);
            self.hdr_kind = msg.kind;
            self.hdr_done = sel(join, self.hdr_done, self.free_at);
            start = self.hdr_flit;
            done = self.hdr_done;
        }
        let slots = u32::from(self.table.slots);
        if msg.kind != 0 && msg.data_slots > 0 && msg.data_slots <= slots {
            // Data right after its header (a 64 B line): the newest flit
            // started at or after `arrive` (the header is in it or in an
            // earlier one), so the data fills it from `cur_next` and spills
            // into at most one new flit, which starts when the wire frees.
            let end = u32::from(self.cur_next) + msg.data_slots;
            let spill = end > slots;
            let extra = if crc && self.crc.active() && spill {
                self.crc.draw()
            } else {
                0
            };
            self.cur_start = sel(spill, self.free_at, self.cur_start);
            self.free_at = sel(spill, self.free_at + self.flit_ps + extra, self.free_at);
            self.cur_next = (end - sel(spill, slots, 0)) as u8;
            self.flits += u64::from(spill);
            return Placed {
                start,
                done: self.free_at,
            };
        }
        if msg.data_slots > 0 {
            // Data alone (a TLP chunk) or longer than a flit.
            self.open_simple_if(self.must_open(arrive), arrive, crc);
            if msg.kind == 0 {
                start = self.cur_start;
            }
            let first = msg.data_slots.min(slots - u32::from(self.cur_next));
            self.cur_next += first as u8;
            let mut left = msg.data_slots - first;
            if left <= slots {
                // At most one more flit.
                let spill = left > 0;
                self.open_simple_if(spill, arrive, crc);
                self.cur_next = sel(spill, left as u8, self.cur_next);
            } else {
                // Long TLPs: whole flits, then the rest.
                while left > 0 {
                    self.open_simple_if(true, arrive, crc);
                    let take = left.min(slots);
                    self.cur_next = take as u8;
                    left -= take;
                }
            }
            done = self.free_at;
        }
        Placed { start, done }
    }

    /// Place one message on any layout.
    fn place_slots(&mut self, arrive: u64, msg: SlotMsg) -> Placed {
        let mut start = None;
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
            } else {
                self.ensure_open(arrive);
                let slot = self.cur_next;
                self.cur_next += 1;
                self.hdr_flit = self.cur_start;
                self.hdr_kind = msg.kind;
                self.hdr_room = msg.per_slot - 1;
                self.hdr_done = self.cur_base + self.table.ready_ps[slot as usize & SLOT_MASK];
            }
            start = Some(self.hdr_flit);
            done = self.hdr_done;
        }
        let mut left = msg.data_slots;
        while left > 0 {
            self.ensure_open(arrive);
            let t = &self.table;
            let s = self.cur_next as usize & SLOT_MASK;
            let before = t.data_before[s];
            let take = left.min(u32::from(t.data_total - before));
            let last = t.data_slot[(before as usize + take as usize).wrapping_sub(1) & SLOT_MASK];
            // The message consumes up to its last data slot, or the whole
            // flit if it continues in the next one.
            let end = if take == left { last } else { t.slots - 1 };
            // A header-only slot data skips stays open for a later header,
            // unless a header slot is still open in an unstarted flit.
            let h = t.header_from[s];
            if h <= end && (self.hdr_room == 0 || self.hdr_flit < arrive) {
                self.hdr_flit = self.cur_start;
                self.hdr_kind = ANY;
                self.hdr_room = 1;
                self.hdr_done = self.cur_base + t.ready_ps[h as usize & SLOT_MASK];
            }
            if take > 0 {
                start.get_or_insert(self.cur_start);
                done = self.cur_base + t.ready_ps[last as usize & SLOT_MASK];
            }
            self.cur_next = end + 1;
            left -= take;
        }
        Placed {
            start: start.unwrap_or(arrive),
            done,
        }
    }
}

/// `a` if `c`, else `b`, as a conditional move: told that `c` is
/// unpredictable, the compiler keeps it a select, not a branch.
#[inline(always)]
fn sel<T>(c: bool, a: T, b: T) -> T {
    std::hint::select_unpredictable(c, a, b)
}
