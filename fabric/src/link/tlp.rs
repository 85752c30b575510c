//! PCIe / CXL.io transaction layer packets: sizes, framing and splitting.
//!
//! Non-flit framing (Gen1–5): each TLP carries 8 B of framing (STP token
//! with the sequence number, LCRC; at Gen1/2 STP + sequence + LCRC + END)
//! around a 3 DW (completions) or 4 DW (64-bit memory requests) header, so a
//! 256 B posted write is 24 + 256 bytes (Intel AN 829). DLLPs (ACK, UpdateFC,
//! 8 B each with framing) flow the other way; we send one ACK and one
//! UpdateFC per [`TLPS_PER_DLLP`] TLPs. In PCIe 6 flit mode TLPs are packed
//! into the 236 TLP bytes of each 256 B flit, without per-TLP framing, and
//! ACKs travel in the flit's DLP bytes.

use crate::topology::FlitMode;

/// Header of a memory request with a 64-bit address (4 DW).
pub const MEM_HEADER: u32 = 16;
/// Header of a completion (3 DW).
pub const CPL_HEADER: u32 = 12;
/// Per-TLP framing outside flit mode: STP/sequence (4) + LCRC (4).
pub const FRAMING: u32 = 8;
/// One DLLP with its framing.
pub const DLLP_BYTES: u32 = 8;
/// TLPs acknowledged per ACK DLLP and per UpdateFC DLLP.
pub const TLPS_PER_DLLP: u32 = 4;
/// TLP bytes per 256 B flit in PCIe 6 flit mode (the rest: DLP, CRC, FEC).
pub const FLIT_TLP_BYTES: u32 = 236;

/// TLP types the model moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlpKind {
    /// Memory read request (non-posted, no data).
    MemRead,
    /// Memory write (posted, with data).
    MemWrite,
    /// Completion with data.
    Completion,
}

impl TlpKind {
    pub fn header_bytes(self) -> u32 {
        match self {
            TlpKind::MemRead | TlpKind::MemWrite => MEM_HEADER,
            TlpKind::Completion => CPL_HEADER,
        }
    }
}

/// Bytes a TLP occupies in the link's byte stream (before line encoding).
/// For 68B flit links the result is carried in 16 B slots by the caller.
pub fn tlp_bytes(mode: FlitMode, kind: TlpKind, payload: u32) -> u32 {
    let core = kind.header_bytes() + payload;
    match mode {
        FlitMode::Flit256 | FlitMode::Flit256LatencyOpt => core,
        FlitMode::None | FlitMode::Flit68 => core + FRAMING,
    }
}

/// Reverse-direction DLLP bytes charged per TLP (0 in flit modes, where
/// acknowledgements ride in flit headers / DLP bytes).
pub fn dllp_bytes_per_tlp(mode: FlitMode) -> u32 {
    match mode {
        FlitMode::None => 2 * DLLP_BYTES / TLPS_PER_DLLP,
        _ => 0,
    }
}

/// Split `bytes` into pieces of at most `max` bytes: (count, size of the last).
pub fn split(bytes: u32, max: u32) -> (u32, u32) {
    if bytes == 0 {
        return (1, 0);
    }
    let n = bytes.div_ceil(max);
    (n, bytes - (n - 1) * max)
}

/// Posted-write wire efficiency of a non-flit link for payload `mps`:
/// payload / (payload + header + framing), before line encoding.
pub fn posted_efficiency(mps: u32) -> f64 {
    mps as f64 / (mps + MEM_HEADER + FRAMING) as f64
}
