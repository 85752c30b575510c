//! Link model, per direction: line encoding, flit packing (68B and 256B,
//! standard and latency-optimised) or TLP framing, credit-based flow
//! control per message class, and optional CRC errors with replay.
//!
//! * [`flit`]: slot layouts and CXL.mem message packing.
//! * [`tlp`]: PCIe TLP sizes, framing, splitting, DLLP overhead.
//! * [`capacity`]: closed-form peak bandwidths (for CDAT/HMAT and checks).

pub mod capacity;
pub(crate) mod crc;
pub mod flit;
mod packer;
pub mod tlp;

use crate::rng::SplitMix64;
use crate::time::{ns_to_ps, PsPerByte};
use crate::topology::{FlitMode, LinkParams};
use crc::CrcErrors;
use flit::{FlitLayout, SlotMsg};
use packer::FlitPacker;
pub(crate) use packer::Placed;

/// Direction of travel on a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Direction {
    /// Away from the host bridge (M2S).
    Down,
    /// Toward the host bridge (S2M).
    Up,
}

/// Credit classes of one direction: requests without data, requests/
/// writes with data, responses (CXL.mem Req, RwD, DRS/NDR; PCIe NP, P, Cpl).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    Req = 0,
    Data = 1,
    Rsp = 2,
}

/// Return times of the credits a receiver advertised, oldest first: the
/// k-th message may be sent once message k - credits has left the receiver.
#[derive(Debug, Clone)]
pub(crate) struct CreditRing {
    ret: Vec<u64>,
    head: usize,
}

impl CreditRing {
    fn new(n: u32) -> Self {
        CreditRing {
            ret: vec![0; n.max(1) as usize],
            head: 0,
        }
    }

    /// Earliest time a message arriving at `t` holds a credit.
    #[inline]
    pub fn ready(&self, t: u64) -> u64 {
        t.max(self.ret[self.head])
    }

    /// A ring of `n` credits continuing this one: the same ring if `n` is
    /// unchanged, else every credit returns when the last one did.
    fn resized(&self, n: u32) -> Self {
        if n.max(1) as usize == self.ret.len() {
            return self.clone();
        }
        let last = self.ret.iter().copied().max().unwrap_or(0);
        CreditRing {
            ret: vec![last; n.max(1) as usize],
            head: 0,
        }
    }

    /// The message just sent returns its credit at `t`.
    #[inline]
    pub fn release(&mut self, t: u64) {
        self.ret[self.head] = t;
        self.head += 1;
        if self.head == self.ret.len() {
            self.head = 0;
        }
    }
}

/// A byte-serialized wire (non-flit PCIe framing).
#[derive(Debug, Clone)]
pub(crate) struct ByteWire {
    ppb: PsPerByte,
    free_at: u64,
    /// DLLP bytes owed: sent ahead of the next TLP.
    dllp_debt: u64,
    /// When the newest owed DLLP was due.
    dllp_due: u64,
    crc: CrcErrors,
    /// Serialization time so far (statistics).
    busy_ps: u64,
}

impl ByteWire {
    fn send(&mut self, arrive: u64, bytes: u32) -> Placed {
        let start = arrive.max(self.free_at);
        // Owed DLLPs went out in the wire's idle time after they were due;
        // only what that time could not carry delays this TLP. (Without
        // this, 4 MiB of posted writes, which send no completions back,
        // left 256 KiB of DLLPs to the next TLP however long after.)
        let idle = arrive.saturating_sub(self.free_at.max(self.dllp_due));
        let debt = std::mem::take(&mut self.dllp_debt).saturating_sub(self.ppb.bytes_in(idle));
        self.busy_ps += self.ppb.time(bytes as u64);
        let wire = self.ppb.time(bytes as u64 + debt);
        let done = start + wire + self.crc.draw();
        self.free_at = done;
        Placed { start, done }
    }

    /// Overhead bytes (DLLPs) the wire must carry. They take wire time from
    /// the next TLP rather than being booked at the time they are due:
    /// requests are simulated one after another, so a DLLP due when a read's
    /// completions arrive is known before later read requests are placed,
    /// and booking it at its (later) time would hold those requests behind
    /// it, allowing one outstanding read per link.
    fn occupy(&mut self, t: u64, bytes: u32) {
        self.busy_ps += self.ppb.time(bytes as u64);
        self.dllp_debt += u64::from(bytes);
        self.dllp_due = self.dllp_due.max(t);
    }
}

// Flit links are the common case and every message goes through the packer:
// boxing it to shrink the rarer byte wire would add a pointer chase there.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub(crate) enum Wire {
    Flit(FlitPacker),
    Bytes(ByteWire),
}

/// What a compiled path may assume about a link direction's wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum MemWire {
    /// 68B flits without CRC errors.
    Plain,
    /// 68B flits, CRC errors possible.
    Simple,
    /// Anything else (256B flits, TLP framing).
    Other,
}

/// One direction of one link.
#[derive(Debug, Clone)]
pub(crate) struct LinkDir {
    pub wire: Wire,
    pub mode: FlitMode,
    /// Fixed one-way latency: port pipelines, propagation, retimers.
    pub fixed_ps: u64,
    pub credits: [CreditRing; 3],
    pub max_payload: u32,
    pub max_read_request: u32,
    /// Messages carried (statistics).
    pub messages: u64,
    /// Payload bytes carried (64 per CXL.mem data message, TLP payloads).
    pub bytes: u64,
    /// Total and largest wait of a message between reaching the link and
    /// the start of its first flit (credits and wire).
    pub queue_ps: u64,
    pub queue_max_ps: u64,
    /// Counters of the wires this direction had before it was retuned.
    carry: Carry,
}

/// What a retuned link direction keeps of its earlier wires' counters.
#[derive(Debug, Clone, Copy, Default)]
struct Carry {
    flits: u64,
    replays: u64,
    busy_ps: u64,
}

/// Wire time of one flit of `mode` on `link`, in picoseconds.
pub fn flit_time_ps(link: &LinkParams) -> Option<u64> {
    let layout = FlitLayout::for_mode(link.flit)?;
    Some((layout.flit_bytes as f64 / link.encoded_bytes_per_sec() * 1e12).round() as u64)
}

impl LinkDir {
    /// `port_ends`: how many of the link's two ports are not switch ports
    /// (a switch's ports are inside its own hop latency).
    pub fn new(p: &LinkParams, port_ends: u32, rng: SplitMix64) -> Self {
        let fixed_ps = ns_to_ps(p.one_way_fixed_ns(port_ends));
        let wire = match FlitLayout::for_mode(p.flit) {
            Some(layout) => {
                let flit_ps = flit_time_ps(p).unwrap_or(1);
                let crc = CrcErrors::new(
                    p.ber,
                    layout.flit_bytes as u64 * 8,
                    2 * fixed_ps + flit_ps,
                    rng,
                );
                Wire::Flit(FlitPacker::new(layout, flit_ps, crc))
            }
            None => {
                let ppb = PsPerByte::from_bytes_per_sec(p.encoded_bytes_per_sec());
                let unit = tlp::tlp_bytes(p.flit, tlp::TlpKind::MemWrite, p.max_payload);
                let crc = CrcErrors::new(
                    p.ber,
                    unit as u64 * 8,
                    2 * fixed_ps + ppb.time(unit as u64),
                    rng,
                );
                Wire::Bytes(ByteWire {
                    ppb,
                    free_at: 0,
                    dllp_debt: 0,
                    dllp_due: 0,
                    crc,
                    busy_ps: 0,
                })
            }
        };
        LinkDir {
            wire,
            mode: p.flit,
            fixed_ps,
            credits: [
                CreditRing::new(p.credits),
                CreditRing::new(p.credits),
                CreditRing::new(p.credits),
            ],
            max_payload: p.max_payload,
            max_read_request: p.max_read_request,
            messages: 0,
            bytes: 0,
            queue_ps: 0,
            queue_max_ps: 0,
            carry: Carry::default(),
        }
    }

    /// This direction with new parameters, continuing its schedule: the
    /// wire stays busy as long as it was, credits in flight still return
    /// (all at the latest return time if the credit count changed), CRC
    /// errors continue the same stream, counters carry on. Used when a
    /// parameter changes at run time.
    pub fn retuned(&self, p: &LinkParams, port_ends: u32) -> LinkDir {
        let rng = match &self.wire {
            Wire::Flit(f) => f.crc.rng(),
            Wire::Bytes(w) => w.crc.rng(),
        };
        let mut n = LinkDir::new(p, port_ends, rng);
        let busy_until = match &self.wire {
            Wire::Flit(f) => f.busy_until(),
            Wire::Bytes(w) => w.free_at,
        };
        match &mut n.wire {
            Wire::Flit(f) => f.resume_at(busy_until),
            Wire::Bytes(w) => w.free_at = busy_until,
        }
        for (new, old) in n.credits.iter_mut().zip(&self.credits) {
            *new = old.resized(p.credits);
        }
        n.messages = self.messages;
        n.bytes = self.bytes;
        n.queue_ps = self.queue_ps;
        n.queue_max_ps = self.queue_max_ps;
        n.carry = Carry {
            flits: self.flits(),
            replays: self.replays(),
            busy_ps: self.busy_ps(),
        };
        n
    }

    /// Record that a message reaching the link at `arrive` started at `start`.
    #[inline(always)]
    pub fn note_queue(&mut self, arrive: u64, start: u64) {
        let q = start.saturating_sub(arrive);
        self.queue_ps += q;
        self.queue_max_ps = self.queue_max_ps.max(q);
    }

    /// Time the wire has spent sending: flits x flit time (replays not
    /// counted), or serialization of TLPs and DLLPs.
    pub fn busy_ps(&self) -> u64 {
        self.carry.busy_ps
            + match &self.wire {
                Wire::Flit(p) => p.flits * p.flit_ps(),
                Wire::Bytes(w) => w.busy_ps,
            }
    }

    /// Send a CXL.mem message (flit links only; a TLP-framed link carries
    /// the equivalent bytes instead).
    #[inline(always)]
    pub fn send_mem(&mut self, arrive: u64, msg: SlotMsg) -> Placed {
        self.messages += 1;
        self.bytes += u64::from(msg.data_slots) * 16;
        match &mut self.wire {
            Wire::Flit(p) => p.place(arrive, msg),
            Wire::Bytes(w) => w.send(arrive, 16 + msg.data_slots * 16 + tlp::FRAMING),
        }
    }

    /// [`LinkDir::send_mem`] on a link known to be [`MemWire::Plain`] or
    /// [`MemWire::Simple`] (see [`LinkDir::mem_wire`]): `crc` false skips
    /// the error draws a plain link never makes.
    #[inline(always)]
    pub fn send_mem_simple(&mut self, arrive: u64, msg: SlotMsg, crc: bool) -> Placed {
        self.messages += 1;
        self.bytes += u64::from(msg.data_slots) * 16;
        match &mut self.wire {
            Wire::Flit(p) => p.place_simple(arrive, msg, crc),
            Wire::Bytes(w) => w.send(arrive, 16 + msg.data_slots * 16 + tlp::FRAMING),
        }
    }

    /// How CXL.mem messages may be placed on this direction.
    pub fn mem_wire(&self) -> MemWire {
        match &self.wire {
            Wire::Flit(p) if p.is_simple() && !p.crc.active() => MemWire::Plain,
            Wire::Flit(p) if p.is_simple() => MemWire::Simple,
            _ => MemWire::Other,
        }
    }

    /// Send a TLP; returns placement and the DLLP bytes the reverse
    /// direction must carry for it.
    #[inline]
    pub fn send_tlp(&mut self, arrive: u64, kind: tlp::TlpKind, payload: u32) -> (Placed, u32) {
        self.messages += 1;
        self.bytes += u64::from(payload);
        let bytes = tlp::tlp_bytes(self.mode, kind, payload);
        match &mut self.wire {
            Wire::Flit(p) => (p.place(arrive, flit::tlp_chunk(bytes)), 0),
            Wire::Bytes(w) => (w.send(arrive, bytes), tlp::dllp_bytes_per_tlp(self.mode)),
        }
    }

    /// Charge DLLP bytes to this direction at `t`.
    #[inline]
    pub fn carry_dllp(&mut self, t: u64, bytes: u32) {
        if let Wire::Bytes(w) = &mut self.wire {
            w.occupy(t, bytes);
        }
    }

    /// Flits sent so far (0 for byte wires).
    pub fn flits(&self) -> u64 {
        self.carry.flits
            + match &self.wire {
                Wire::Flit(p) => p.flits,
                Wire::Bytes(_) => 0,
            }
    }

    /// CRC replays so far.
    pub fn replays(&self) -> u64 {
        self.carry.replays
            + match &self.wire {
                Wire::Flit(p) => p.crc.replays,
                Wire::Bytes(w) => w.crc.replays,
            }
    }
}
