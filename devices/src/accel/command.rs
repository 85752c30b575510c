//! Descriptors (`docs/accelerator.md` §5): 64 bytes in, a checked
//! [`Command`] out. Everything that can be checked without touching memory
//! is checked here, in the spec's order (opcode, flags, lengths and
//! dimensions, alignment, overlap), so [`parse`] is a pure function of the
//! bytes: the natural entry point of a fuzz target.

use super::error::{Fault, Status};

/// Bytes per descriptor.
pub const DESCRIPTOR_SIZE: usize = 64;
/// Offset of the status dword a descriptor's slot receives (flag `STATUS_WB`).
pub const STATUS_OFFSET: u64 = 0x3c;

/// Largest COPY/FILL/CRC32C length and kernel operand, bytes (1 GiB).
pub const MAX_TRANSFER: u64 = 1 << 30;
/// Largest GEMM dimension.
pub const MAX_GEMM_DIM: u32 = 4096;
/// Largest GEMM m·n·k.
pub const MAX_GEMM_MNK: u64 = 1 << 30;

pub mod opcode {
    pub const NOP: u8 = 0x00;
    pub const COPY: u8 = 0x01;
    pub const FILL: u8 = 0x02;
    pub const FENCE: u8 = 0x03;
    pub const TIMESTAMP: u8 = 0x04;
    pub const SAXPY: u8 = 0x10;
    pub const SUM_F32: u8 = 0x11;
    pub const CRC32C: u8 = 0x12;
    pub const GEMM: u8 = 0x13;
    /// Bit `n` set for every implemented opcode `n` (the OPCODES register).
    pub const IMPLEMENTED: u32 = (1 << NOP)
        | (1 << COPY)
        | (1 << FILL)
        | (1 << FENCE)
        | (1 << TIMESTAMP)
        | (1 << SAXPY)
        | (1 << SUM_F32)
        | (1 << CRC32C)
        | (1 << GEMM);
}

/// Flag: latch the queue's interrupt when the command retires.
pub const FLAG_IRQ: u8 = 1 << 0;
/// Flag: write the status dword into the descriptor's slot when it retires.
pub const FLAG_STATUS_WB: u8 = 1 << 1;
const FLAGS_DEFINED: u8 = FLAG_IRQ | FLAG_STATUS_WB;

/// A command whose fields passed every memory-independent check.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Command {
    Nop,
    Copy {
        src: u64,
        dst: u64,
        len: u64,
    },
    Fill {
        dst: u64,
        len: u64,
        pattern: u32,
    },
    Fence {
        addr: u64,
        seqno: u64,
    },
    Timestamp {
        addr: u64,
    },
    Saxpy {
        x: u64,
        y: u64,
        n: u64,
        a: f32,
    },
    SumF32 {
        src: u64,
        dst: u64,
        n: u64,
    },
    Crc32c {
        src: u64,
        dst: u64,
        len: u64,
    },
    Gemm {
        a: u64,
        b: u64,
        c: u64,
        m: u32,
        n: u32,
        k: u32,
    },
}

/// A parsed descriptor: the opcode and defined flag bits are kept even when
/// the command is rejected, so its completion still follows them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Descriptor {
    pub opcode: u8,
    pub flags: u8,
    pub command: Result<Command, Fault>,
}

fn u64_at(b: &[u8; DESCRIPTOR_SIZE], off: usize) -> u64 {
    let mut v = [0u8; 8];
    v.copy_from_slice(&b[off..off + 8]);
    u64::from_le_bytes(v)
}

fn u32_at(b: &[u8; DESCRIPTOR_SIZE], off: usize) -> u32 {
    let mut v = [0u8; 4];
    v.copy_from_slice(&b[off..off + 4]);
    u32::from_le_bytes(v)
}

/// `[addr, addr + len)` as an end address, or LENGTH if it wraps.
fn end(addr: u64, len: u64) -> Result<u64, Fault> {
    addr.checked_add(len)
        .ok_or(Fault::new(Status::Length, addr))
}

fn length(len: u64, max: u64) -> Result<(), Fault> {
    if len == 0 || len > max {
        return Err(Fault::new(Status::Length, len));
    }
    Ok(())
}

fn aligned(addr: u64, to: u64) -> Result<(), Fault> {
    if !addr.is_multiple_of(to) {
        return Err(Fault::new(Status::Alignment, addr));
    }
    Ok(())
}

fn overlap(a: u64, alen: u64, b: u64, blen: u64) -> bool {
    a < b.saturating_add(blen) && b < a.saturating_add(alen)
}

/// Bytes of `n` binary32 elements, or LENGTH past [`MAX_TRANSFER`].
fn elements(n: u64) -> Result<u64, Fault> {
    let bytes = n.checked_mul(4).ok_or(Fault::new(Status::Length, n))?;
    length(bytes, MAX_TRANSFER).map_err(|_| Fault::new(Status::Length, n))?;
    Ok(bytes)
}

/// Checks and decodes one descriptor. Never panics.
pub fn parse(b: &[u8; DESCRIPTOR_SIZE]) -> Descriptor {
    let opcode = b[0];
    let flags = b[1] & FLAGS_DEFINED;
    Descriptor {
        opcode,
        flags,
        command: check(b),
    }
}

fn check(b: &[u8; DESCRIPTOR_SIZE]) -> Result<Command, Fault> {
    let op = b[0];
    if op > 31 || opcode::IMPLEMENTED & (1 << op) == 0 {
        return Err(Fault::new(Status::BadOpcode, u64::from(op)));
    }
    let header = u64_at(b, 0);
    // Undefined flag bits, bytes 2..8 reserved.
    if b[1] & !FLAGS_DEFINED != 0 || header >> 16 != 0 {
        return Err(Fault::new(Status::BadFlags, header));
    }
    let (o8, o10, o18) = (u64_at(b, 0x08), u64_at(b, 0x10), u64_at(b, 0x18));
    match op {
        opcode::NOP => Ok(Command::Nop),
        opcode::COPY => {
            let (src, dst, len) = (o8, o10, o18);
            length(len, MAX_TRANSFER)?;
            end(src, len)?;
            end(dst, len)?;
            if overlap(src, len, dst, len) {
                return Err(Fault::new(Status::Overlap, dst));
            }
            Ok(Command::Copy { src, dst, len })
        }
        opcode::FILL => {
            let (dst, len) = (o10, o18);
            length(len, MAX_TRANSFER)?;
            end(dst, len)?;
            aligned(dst, 4)?;
            aligned(len, 4).map_err(|_| Fault::new(Status::Alignment, len))?;
            Ok(Command::Fill {
                dst,
                len,
                pattern: u32_at(b, 0x20),
            })
        }
        opcode::FENCE => {
            end(o10, 8)?;
            aligned(o10, 8)?;
            Ok(Command::Fence {
                addr: o10,
                seqno: u64_at(b, 0x20),
            })
        }
        opcode::TIMESTAMP => {
            end(o10, 8)?;
            aligned(o10, 8)?;
            Ok(Command::Timestamp { addr: o10 })
        }
        opcode::SAXPY => {
            let (x, y, n) = (o8, o10, o18);
            let bytes = elements(n)?;
            end(x, bytes)?;
            end(y, bytes)?;
            aligned(x, 4)?;
            aligned(y, 4)?;
            if x != y && overlap(x, bytes, y, bytes) {
                return Err(Fault::new(Status::Overlap, y));
            }
            Ok(Command::Saxpy {
                x,
                y,
                n,
                a: f32::from_bits(u32_at(b, 0x20)),
            })
        }
        opcode::SUM_F32 => {
            let (src, dst, n) = (o8, o10, o18);
            let bytes = elements(n)?;
            end(src, bytes)?;
            end(dst, 4)?;
            aligned(src, 4)?;
            aligned(dst, 4)?;
            Ok(Command::SumF32 { src, dst, n })
        }
        opcode::CRC32C => {
            let (src, dst, len) = (o8, o10, o18);
            length(len, MAX_TRANSFER)?;
            end(src, len)?;
            end(dst, 4)?;
            aligned(dst, 4)?;
            Ok(Command::Crc32c { src, dst, len })
        }
        opcode::GEMM => {
            let (a, bb, c) = (o8, o10, o18);
            let (m, n, k) = (u32_at(b, 0x20), u32_at(b, 0x24), u32_at(b, 0x28));
            let dims_ok = [m, n, k].iter().all(|&d| (1..=MAX_GEMM_DIM).contains(&d))
                && u64::from(m) * u64::from(n) * u64::from(k) <= MAX_GEMM_MNK;
            if !dims_ok {
                let packed = u64::from(m) | (u64::from(n) << 16) | (u64::from(k) << 32);
                return Err(Fault::new(Status::Dimension, packed));
            }
            let (sa, sb, sc) = gemm_sizes(m, n, k);
            end(a, sa)?;
            end(bb, sb)?;
            end(c, sc)?;
            aligned(a, 4)?;
            aligned(bb, 4)?;
            aligned(c, 4)?;
            if overlap(c, sc, a, sa) || overlap(c, sc, bb, sb) {
                return Err(Fault::new(Status::Overlap, c));
            }
            Ok(Command::Gemm {
                a,
                b: bb,
                c,
                m,
                n,
                k,
            })
        }
        // Every implemented opcode is matched above.
        _ => Err(Fault::new(Status::BadOpcode, u64::from(op))),
    }
}

/// Bytes of A (m×k), B (k×n) and C (m×n).
pub fn gemm_sizes(m: u32, n: u32, k: u32) -> (u64, u64, u64) {
    let (m, n, k) = (u64::from(m), u64::from(n), u64::from(k));
    (4 * m * k, 4 * k * n, 4 * m * n)
}

/// Builds descriptors (for drivers written in Rust and for tests).
pub mod build {
    use super::*;

    fn put64(d: &mut [u8; DESCRIPTOR_SIZE], off: usize, v: u64) {
        d[off..off + 8].copy_from_slice(&v.to_le_bytes());
    }

    fn put32(d: &mut [u8; DESCRIPTOR_SIZE], off: usize, v: u32) {
        d[off..off + 4].copy_from_slice(&v.to_le_bytes());
    }

    fn header(op: u8, flags: u8) -> [u8; DESCRIPTOR_SIZE] {
        let mut d = [0u8; DESCRIPTOR_SIZE];
        d[0] = op;
        d[1] = flags;
        d
    }

    pub fn nop(flags: u8) -> [u8; DESCRIPTOR_SIZE] {
        header(opcode::NOP, flags)
    }

    pub fn copy(flags: u8, src: u64, dst: u64, len: u64) -> [u8; DESCRIPTOR_SIZE] {
        let mut d = header(opcode::COPY, flags);
        put64(&mut d, 0x08, src);
        put64(&mut d, 0x10, dst);
        put64(&mut d, 0x18, len);
        d
    }

    pub fn fill(flags: u8, dst: u64, len: u64, pattern: u32) -> [u8; DESCRIPTOR_SIZE] {
        let mut d = header(opcode::FILL, flags);
        put64(&mut d, 0x10, dst);
        put64(&mut d, 0x18, len);
        put32(&mut d, 0x20, pattern);
        d
    }

    pub fn fence(flags: u8, addr: u64, seqno: u64) -> [u8; DESCRIPTOR_SIZE] {
        let mut d = header(opcode::FENCE, flags);
        put64(&mut d, 0x10, addr);
        put64(&mut d, 0x20, seqno);
        d
    }

    pub fn timestamp(flags: u8, addr: u64) -> [u8; DESCRIPTOR_SIZE] {
        let mut d = header(opcode::TIMESTAMP, flags);
        put64(&mut d, 0x10, addr);
        d
    }

    pub fn saxpy(flags: u8, x: u64, y: u64, n: u64, a: f32) -> [u8; DESCRIPTOR_SIZE] {
        let mut d = header(opcode::SAXPY, flags);
        put64(&mut d, 0x08, x);
        put64(&mut d, 0x10, y);
        put64(&mut d, 0x18, n);
        put32(&mut d, 0x20, a.to_bits());
        d
    }

    pub fn sum_f32(flags: u8, src: u64, dst: u64, n: u64) -> [u8; DESCRIPTOR_SIZE] {
        let mut d = header(opcode::SUM_F32, flags);
        put64(&mut d, 0x08, src);
        put64(&mut d, 0x10, dst);
        put64(&mut d, 0x18, n);
        d
    }

    pub fn crc32c(flags: u8, src: u64, dst: u64, len: u64) -> [u8; DESCRIPTOR_SIZE] {
        let mut d = header(opcode::CRC32C, flags);
        put64(&mut d, 0x08, src);
        put64(&mut d, 0x10, dst);
        put64(&mut d, 0x18, len);
        d
    }

    #[allow(clippy::too_many_arguments)]
    pub fn gemm(
        flags: u8,
        a: u64,
        b: u64,
        c: u64,
        m: u32,
        n: u32,
        k: u32,
    ) -> [u8; DESCRIPTOR_SIZE] {
        let mut d = header(opcode::GEMM, flags);
        put64(&mut d, 0x08, a);
        put64(&mut d, 0x10, b);
        put64(&mut d, 0x18, c);
        put32(&mut d, 0x20, m);
        put32(&mut d, 0x24, n);
        put32(&mut d, 0x28, k);
        d
    }
}
