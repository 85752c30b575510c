//! What the device's DMA engine needs from the machine: bus-address decode
//! (which memory, as a fabric target) and byte access. The VMM implements
//! [`DmaMemory`]; the device checks every range with it before moving a
//! byte and then accesses only what it decoded, piece by piece.

use fabric::Target;

pub use fabric::dma::Span;

use super::error::{Fault, Status};

/// Why a bus access failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DmaError {
    #[error("bus address {0:#x} decodes to no memory")]
    Unmapped(u64),
    #[error("memory at bus address {0:#x} refused the access")]
    Fault(u64),
}

/// Guest memory as a bus master sees it. Implementations must be callable
/// from any thread while the device's own lock is held, so they must not
/// take any accelerator's register lock (reach peer VRAM through its
/// [`super::Vram`]).
pub trait DmaMemory: Send + Sync {
    /// The memory at bus address `addr`: its fabric target (host RAM →
    /// `Target::HostMemory`, an accelerator's VRAM BAR →
    /// `Target::Accelerator(i)`, a CXL window → `Target::Address(hpa)` or
    /// the exact `Target::Type3 { device, dpa }`) and how many bytes from
    /// `addr`, at most `len`, continue in that same target. An error if
    /// `addr` decodes to nothing.
    fn decode(&self, addr: u64, len: u64) -> Result<Span, DmaError>;
    /// Reads `buf.len()` bytes at `addr`; the range lies within one span
    /// that [`DmaMemory::decode`] returned.
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), DmaError>;
    /// Writes `data` at `addr`; the range lies within one decoded span.
    fn write(&self, addr: u64, data: &[u8]) -> Result<(), DmaError>;
}

/// One decoded piece of a range: its bus address and fabric span.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Piece {
    pub addr: u64,
    pub span: Span,
}

/// Largest piece the device moves through a host buffer at once.
pub const MOVE_CHUNK: u64 = 1 << 20;

/// Decodes all of `[addr, addr + len)` into pieces, or fails with
/// `UNMAPPED` naming the first address that decodes to nothing.
pub fn decode_range(mem: &dyn DmaMemory, addr: u64, len: u64) -> Result<Vec<Piece>, Fault> {
    let mut out = Vec::new();
    let mut cur = addr;
    let mut left = len;
    while left > 0 {
        let unmapped = Fault::new(Status::Unmapped, cur);
        let span = mem.decode(cur, left).map_err(|_| unmapped)?;
        // A zero-length answer would never end; treat it as a hole.
        if span.len == 0 {
            return Err(unmapped);
        }
        let n = span.len.min(left);
        out.push(Piece {
            addr: cur,
            span: Span {
                target: span.target,
                len: n,
            },
        });
        cur = cur.checked_add(n).ok_or(unmapped)?;
        left -= n;
    }
    Ok(out)
}

/// The fabric spans of decoded pieces.
pub fn spans(pieces: &[Piece]) -> Vec<Span> {
    pieces.iter().map(|p| p.span).collect()
}

/// A decoded range that must be one piece in `target` (a kernel operand in
/// the device's own VRAM): `NOT_VRAM` if it lies elsewhere, `UNMAPPED` if
/// part of it decodes to nothing.
pub fn decode_in(mem: &dyn DmaMemory, addr: u64, len: u64, target: Target) -> Result<Piece, Fault> {
    let pieces = decode_range(mem, addr, len)?;
    match pieces.as_slice() {
        [p] if p.span.target == target => Ok(*p),
        _ => Err(Fault::new(Status::NotVram, addr)),
    }
}

/// Walks a list of pieces in steps that stay inside one piece.
struct Walk<'a> {
    pieces: &'a [Piece],
    index: usize,
    offset: u64,
}

impl<'a> Walk<'a> {
    fn new(pieces: &'a [Piece]) -> Self {
        Walk {
            pieces,
            index: 0,
            offset: 0,
        }
    }

    /// Bus address and bytes left in the current piece.
    fn here(&self) -> Option<(u64, u64)> {
        let p = self.pieces.get(self.index)?;
        Some((p.addr + self.offset, p.span.len - self.offset))
    }

    fn advance(&mut self, n: u64) {
        self.offset += n;
        if let Some(p) = self.pieces.get(self.index) {
            if self.offset >= p.span.len {
                self.index += 1;
                self.offset = 0;
            }
        }
    }
}

fn fault(e: DmaError) -> Fault {
    match e {
        DmaError::Unmapped(a) | DmaError::Fault(a) => Fault::new(Status::DmaFault, a),
    }
}

/// Copies the bytes of `src` to `dst` (same total length), through a host
/// buffer of at most [`MOVE_CHUNK`].
pub fn move_bytes(mem: &dyn DmaMemory, src: &[Piece], dst: &[Piece]) -> Result<(), Fault> {
    let (mut s, mut d) = (Walk::new(src), Walk::new(dst));
    let mut buf = Vec::new();
    while let (Some((sa, sl)), Some((da, dl))) = (s.here(), d.here()) {
        let n = sl.min(dl).min(MOVE_CHUNK);
        buf.resize(n as usize, 0);
        mem.read(sa, &mut buf).map_err(fault)?;
        mem.write(da, &buf).map_err(fault)?;
        s.advance(n);
        d.advance(n);
    }
    Ok(())
}

/// Calls `f` with each part of `pieces` (at most [`MOVE_CHUNK`] bytes) and
/// its offset from the start of the range.
pub fn for_each_part(
    pieces: &[Piece],
    mut f: impl FnMut(u64, u64, u64) -> Result<(), Fault>,
) -> Result<(), Fault> {
    let mut w = Walk::new(pieces);
    let mut offset = 0;
    while let Some((a, left)) = w.here() {
        let n = left.min(MOVE_CHUNK);
        f(a, offset, n)?;
        w.advance(n);
        offset += n;
    }
    Ok(())
}

/// Reads a whole decoded range into a host buffer.
pub fn read_all(mem: &dyn DmaMemory, pieces: &[Piece]) -> Result<Vec<u8>, Fault> {
    let total: u64 = pieces.iter().map(|p| p.span.len).sum();
    let mut out = vec![0u8; total as usize];
    for_each_part(pieces, |a, off, n| {
        mem.read(a, &mut out[off as usize..(off + n) as usize])
            .map_err(fault)
    })?;
    Ok(out)
}

/// Writes `data` over a decoded range of the same length.
pub fn write_all(mem: &dyn DmaMemory, pieces: &[Piece], data: &[u8]) -> Result<(), Fault> {
    for_each_part(pieces, |a, off, n| {
        let part = data
            .get(off as usize..(off + n) as usize)
            .ok_or(Fault::new(Status::DmaFault, a))?;
        mem.write(a, part).map_err(fault)
    })
}

/// Decodes and writes a small record (a FENCE value, a status dword).
pub fn write_small(mem: &dyn DmaMemory, addr: u64, data: &[u8]) -> Result<(), Fault> {
    let pieces = decode_range(mem, addr, data.len() as u64)?;
    write_all(mem, &pieces, data)
}
