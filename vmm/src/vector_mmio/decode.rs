//! Decoding the SSE moves KVM's instruction emulator leaves out.
//!
//! arch/x86/kvm/emulate.c decodes `movups`/`movupd`, `movaps`/`movapd`,
//! `movdqa`/`movdqu`, `movntps`/`movntpd`/`movntdq` and `movnti` on MMIO,
//! but its two-byte opcode table has no entry (`N`) for these, which
//! compilers emit for ordinary scalar and struct code:
//!
//! | encoding | instruction | access |
//! |---|---|---|
//! | F3 0F 10 / 11 | `movss` xmm ↔ m32 | 4 B, a load clears bits 32–127 |
//! | F2 0F 10 / 11 | `movsd` xmm ↔ m64 | 8 B, a load clears bits 64–127 |
//! | (66) 0F 12 / 13 | `movlps`/`movlpd` xmm ↔ m64 | 8 B, low half, rest kept |
//! | (66) 0F 16 / 17 | `movhps`/`movhpd` xmm ↔ m64 | 8 B, high half, rest kept |
//! | 66 (REX.W) 0F 6E | `movd`/`movq` xmm ← m32/m64 | 4/8 B, rest cleared |
//! | 66 (REX.W) 0F 7E | `movd`/`movq` m32/m64 ← xmm | 4/8 B from the low end |
//! | F3 0F 7E | `movq` xmm ← m64 | 8 B, rest cleared |
//! | 66 0F D6 | `movq` m64 ← xmm | 8 B from the low end |
//!
//! and the SSE2 integer operations with a 16-byte memory source that C
//! libraries' string functions (`strlen`, `memchr`, `strcmp`: glibc's and
//! busybox's) run over data, `xmm = xmm OP m128` ([`PackedOp`]):
//!
//! | encoding | instruction |
//! |---|---|
//! | 66 0F 74 / 75 / 76 | `pcmpeqb` / `pcmpeqw` / `pcmpeqd` |
//! | 66 0F 64 | `pcmpgtb` (signed) |
//! | 66 0F DA / DE | `pminub` / `pmaxub` |
//! | 66 0F DB / DF / EB / EF | `pand` / `pandn` / `por` / `pxor` |
//! | 66 0F FC / F8 | `paddb` / `psubb` |
//!
//! and the floating-point arithmetic, compares and conversions compilers
//! emit for `double` and `float` code with an operand in memory (a spilled
//! local, a field), run on the host CPU ([`super::host_sse`]):
//!
//! | encoding (none / 66 / F3 / F2 = ps / pd / ss / sd) | instructions |
//! |---|---|
//! | 0F 51, 58, 59, 5C, 5D, 5E, 5F | `sqrt`, `add`, `mul`, `sub`, `min`, `div`, `max` |
//! | 0F C2 ib | `cmpPRED` (predicates 0–7) |
//! | (66) 0F 54–57, 14, 15 | `and`, `andn`, `or`, `xor`, `unpckl`, `unpckh` (packed) |
//! | 0F 5A; 0F 5B; 0F E6 | `cvtss2sd` and the other float/double and packed integer conversions |
//! | F3/F2 (REX.W) 0F 2A | `cvtsi2ss`/`cvtsi2sd` from m32/m64 |
//! | F3/F2 (REX.W) 0F 2C / 2D | `cvttss2si`/`cvtss2si`/`cvttsd2si`/`cvtsd2si` into r32/r64 |
//! | (66) 0F 2E / 2F | `ucomiss`/`ucomisd`/`comiss`/`comisd` (RFLAGS) |
//!
//! Only the memory forms (ModRM.mod ≠ 3), in 64-bit mode. Anything else is
//! left to the caller (KVM's own #UD for a user process).

use super::host_sse::{HostInsn, IntConvert, Kind};

/// Which part of the XMM register a memory access reads or writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lanes {
    /// Bytes `0..width` of the register; a load clears the rest.
    LowClearRest,
    /// Bytes `0..8`; a load keeps bytes 8..16.
    LowHalf,
    /// Bytes `8..16`; a load keeps bytes 0..8.
    HighHalf,
}

impl Lanes {
    /// First register byte the access covers.
    pub fn offset(self) -> usize {
        match self {
            Lanes::HighHalf => 8,
            _ => 0,
        }
    }
}

/// An SSE2 integer operation `xmm = xmm OP m128` (legacy encoding: the
/// memory operand must be 16-byte aligned).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PackedOp {
    CmpEqB,
    CmpEqW,
    CmpEqD,
    CmpGtB,
    MinUB,
    MaxUB,
    And,
    AndNot,
    Or,
    Xor,
    AddB,
    SubB,
}

impl PackedOp {
    fn from_opcode(op: u8) -> Option<Self> {
        use PackedOp::*;
        Some(match op {
            0x74 => CmpEqB,
            0x75 => CmpEqW,
            0x76 => CmpEqD,
            0x64 => CmpGtB,
            0xda => MinUB,
            0xde => MaxUB,
            0xdb => And,
            0xdf => AndNot,
            0xeb => Or,
            0xef => Xor,
            0xfc => AddB,
            0xf8 => SubB,
            _ => return None,
        })
    }

    /// `dst OP src`, lane by lane (Intel SDM vol. 2, each instruction).
    pub fn apply(self, dst: [u8; 16], src: [u8; 16]) -> [u8; 16] {
        use PackedOp::*;
        let bytes =
            |f: fn(u8, u8) -> u8| -> [u8; 16] { std::array::from_fn(|i| f(dst[i], src[i])) };
        // Equal lanes of `w` bytes become all ones, others zero.
        let eq_lanes = |w: usize| -> [u8; 16] {
            std::array::from_fn(|i| {
                let l = i / w * w;
                if dst[l..l + w] == src[l..l + w] {
                    0xff
                } else {
                    0
                }
            })
        };
        match self {
            CmpEqB => eq_lanes(1),
            CmpEqW => eq_lanes(2),
            CmpEqD => eq_lanes(4),
            CmpGtB => bytes(|a, b| if (a as i8) > (b as i8) { 0xff } else { 0 }),
            MinUB => bytes(u8::min),
            MaxUB => bytes(u8::max),
            And => bytes(|a, b| a & b),
            AndNot => bytes(|a, b| !a & b),
            Or => bytes(|a, b| a | b),
            Xor => bytes(|a, b| a ^ b),
            AddB => bytes(u8::wrapping_add),
            SubB => bytes(u8::wrapping_sub),
        }
    }
}

/// A memory operand: `seg:[base + index * scale + disp]`, or
/// `[rip + disp]` (relative to the next instruction).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemOperand {
    pub base: Option<u8>,
    pub index: Option<u8>,
    pub scale: u8,
    pub disp: i64,
    pub rip_relative: bool,
    /// A 0x67 prefix: the address is computed in 32 bits.
    pub addr32: bool,
    pub segment: Segment,
}

/// Segments whose base counts in 64-bit mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Segment {
    Flat,
    Fs,
    Gs,
}

impl MemOperand {
    /// The linear address, given the 16 general registers (rax, rcx, rdx,
    /// rbx, rsp, rbp, rsi, rdi, r8–r15), the next instruction's address
    /// and the segment's base.
    pub fn linear(&self, gpr: &[u64; 16], next_rip: u64, segment_base: u64) -> u64 {
        let mut a = self.disp as u64;
        if self.rip_relative {
            a = a.wrapping_add(next_rip);
        }
        if let Some(b) = self.base {
            a = a.wrapping_add(gpr[usize::from(b)]);
        }
        if let Some(i) = self.index {
            a = a.wrapping_add(gpr[usize::from(i)].wrapping_mul(u64::from(self.scale)));
        }
        if self.addr32 {
            a &= 0xffff_ffff;
        }
        a.wrapping_add(segment_base)
    }
}

/// An SSE computation with a memory source, run on the host CPU
/// ([`super::host_sse`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostOp {
    pub insn: HostInsn,
    /// Where the result goes.
    pub result: HostResult,
    /// The memory operand is an integer (RAX), not XMM bytes.
    pub integer_source: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostResult {
    /// The XMM register named by ModRM.reg.
    Xmm,
    /// The general register named by ModRM.reg (a conversion to integer).
    Gpr,
    /// ZF, PF and CF (OF, SF and AF cleared): the scalar compares.
    Flags,
}

/// One decoded move between an XMM register and memory, or an operation
/// on an XMM register with a memory source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VectorMove {
    /// Instruction length in bytes.
    pub len: usize,
    pub store: bool,
    /// ModRM.reg with REX.R: the XMM register (0–15), or the general
    /// register a [`HostResult::Gpr`] operation writes.
    pub xmm: u8,
    /// Bytes of memory accessed.
    pub width: usize,
    pub lanes: Lanes,
    pub mem: MemOperand,
    /// `xmm = xmm OP m128` instead of a load (16 bytes, aligned).
    pub combine: Option<PackedOp>,
    /// A floating-point or conversion operation instead of a load.
    pub host: Option<HostOp>,
}

impl VectorMove {
    /// Legacy SSE raises #GP for an m128 operand of these that is not
    /// 16-byte aligned (all but the moves, which KVM or [`Lanes`] cover).
    pub fn needs_alignment(&self) -> bool {
        self.combine.is_some() || (self.host.is_some() && self.width == 16)
    }
}

/// The mandatory prefix of an SSE opcode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mandatory {
    None,
    P66,
    F3,
    F2,
}

/// (store, width, lanes) of the opcodes this module handles.
fn operation(prefix: Mandatory, op: u8, rex_w: bool) -> Option<(bool, usize, Lanes)> {
    use Lanes::*;
    use Mandatory::*;
    Some(match (prefix, op) {
        (F3, 0x10) => (false, 4, LowClearRest),
        (F3, 0x11) => (true, 4, LowClearRest),
        (F2, 0x10) => (false, 8, LowClearRest),
        (F2, 0x11) => (true, 8, LowClearRest),
        (None | P66, 0x12) => (false, 8, LowHalf),
        (None | P66, 0x13) => (true, 8, LowHalf),
        (None | P66, 0x16) => (false, 8, HighHalf),
        (None | P66, 0x17) => (true, 8, HighHalf),
        (P66, 0x6e) => (false, if rex_w { 8 } else { 4 }, LowClearRest),
        (P66, 0x7e) => (true, if rex_w { 8 } else { 4 }, LowClearRest),
        (F3, 0x7e) => (false, 8, LowClearRest),
        (P66, 0xd6) => (true, 8, LowHalf),
        _ => return Option::None,
    })
}

/// (operation, operand bytes, result, integer source, imm8 follows) of the
/// floating-point and conversion opcodes completed on the host.
fn host_operation(prefix: Mandatory, op: u8, rex_w: bool) -> Option<(HostOp, usize)> {
    use HostInsn::*;
    let kind = match prefix {
        Mandatory::None => Kind::Ps,
        Mandatory::P66 => Kind::Pd,
        Mandatory::F3 => Kind::Ss,
        Mandatory::F2 => Kind::Sd,
    };
    let packed = matches!(kind, Kind::Ps | Kind::Pd);
    let width = match kind {
        Kind::Ps | Kind::Pd => 16,
        Kind::Ss => 4,
        Kind::Sd => 8,
    };
    let int_width = if rex_w { 8 } else { 4 };
    let (insn, width, result, integer_source) = match op {
        0x51 => (Sqrt(kind), width, HostResult::Xmm, false),
        0x58 => (Add(kind), width, HostResult::Xmm, false),
        0x59 => (Mul(kind), width, HostResult::Xmm, false),
        0x5c => (Sub(kind), width, HostResult::Xmm, false),
        0x5d => (Min(kind), width, HostResult::Xmm, false),
        0x5e => (Div(kind), width, HostResult::Xmm, false),
        0x5f => (Max(kind), width, HostResult::Xmm, false),
        0xc2 => (Cmp(kind, 0), width, HostResult::Xmm, false),
        0x54 if packed => (And(kind), 16, HostResult::Xmm, false),
        0x55 if packed => (AndNot(kind), 16, HostResult::Xmm, false),
        0x56 if packed => (Or(kind), 16, HostResult::Xmm, false),
        0x57 if packed => (Xor(kind), 16, HostResult::Xmm, false),
        0x14 if packed => (UnpackLow(kind), 16, HostResult::Xmm, false),
        0x15 if packed => (UnpackHigh(kind), 16, HostResult::Xmm, false),
        // cvtps2pd reads two singles (m64); the others their source width.
        0x5a => (
            Convert(kind),
            if kind == Kind::Ps { 8 } else { width },
            HostResult::Xmm,
            false,
        ),
        0x5b => {
            let c = match prefix {
                Mandatory::None => IntConvert::Dq2Ps,
                Mandatory::P66 => IntConvert::Ps2Dq,
                Mandatory::F3 => IntConvert::TPs2Dq,
                Mandatory::F2 => return None,
            };
            (ConvertInt(c), 16, HostResult::Xmm, false)
        }
        0xe6 => {
            let (c, w) = match prefix {
                Mandatory::F3 => (IntConvert::Dq2Pd, 8),
                Mandatory::P66 => (IntConvert::TPd2Dq, 16),
                Mandatory::F2 => (IntConvert::Pd2Dq, 16),
                Mandatory::None => return None,
            };
            (ConvertInt(c), w, HostResult::Xmm, false)
        }
        // Without F2/F3 these are the MMX forms.
        0x2a if !packed => (
            FromInt {
                double: kind == Kind::Sd,
                wide: rex_w,
            },
            int_width,
            HostResult::Xmm,
            true,
        ),
        0x2c | 0x2d if !packed => (
            ToInt {
                double: kind == Kind::Sd,
                wide: rex_w,
                truncate: op == 0x2c,
            },
            width,
            HostResult::Gpr,
            false,
        ),
        0x2e | 0x2f if packed => (
            Compare {
                double: kind == Kind::Pd,
                unordered: op == 0x2e,
            },
            if kind == Kind::Pd { 8 } else { 4 },
            HostResult::Flags,
            false,
        ),
        _ => return None,
    };
    Some((
        HostOp {
            insn,
            result,
            integer_source,
        },
        width,
    ))
}

/// Legacy prefixes and REX, as [`prefixes`] reads them.
#[derive(Clone, Copy, Debug)]
pub struct Prefixes {
    pub p66: bool,
    rep: Mandatory,
    pub addr32: bool,
    pub segment: Segment,
    pub rex: u8,
    /// Where the opcode starts.
    pub len: usize,
}

/// Reads the legacy prefixes (in any order; the last of F2/F3 counts) and a
/// REX right before the opcode.
pub fn prefixes(bytes: &[u8]) -> Option<Prefixes> {
    let mut p = Prefixes {
        p66: false,
        rep: Mandatory::None,
        addr32: false,
        segment: Segment::Flat,
        rex: 0,
        len: 0,
    };
    loop {
        match *bytes.get(p.len)? {
            0x66 => p.p66 = true,
            0xf2 => p.rep = Mandatory::F2,
            0xf3 => p.rep = Mandatory::F3,
            0x67 => p.addr32 = true,
            0x64 => p.segment = Segment::Fs,
            0x65 => p.segment = Segment::Gs,
            // CS/SS/DS/ES overrides have no effect in 64-bit mode.
            0x26 | 0x2e | 0x36 | 0x3e => {}
            _ => break,
        }
        p.len += 1;
        // An instruction is at most 15 bytes.
        if p.len >= 15 {
            return None;
        }
    }
    if (0x40..=0x4f).contains(bytes.get(p.len)?) {
        p.rex = bytes[p.len];
        p.len += 1;
    }
    Some(p)
}

/// The ModRM byte at `at` and what follows it (SIB, displacement) for a
/// memory operand: (ModRM.reg with REX.R, the operand, where the bytes after
/// it start). None for a register operand (ModRM.mod = 3) or too few bytes.
pub fn modrm_operand(bytes: &[u8], at: usize, p: &Prefixes) -> Option<(u8, MemOperand, usize)> {
    let mut at = at;
    let modrm = *bytes.get(at)?;
    at += 1;
    let (md, reg, rm) = (modrm >> 6, (modrm >> 3) & 7, modrm & 7);
    if md == 3 {
        return None;
    }
    let rex = p.rex;
    let (rex_r, rex_x, rex_b) = ((rex >> 2) & 1, (rex >> 1) & 1, rex & 1);
    let mut mem = MemOperand {
        base: None,
        index: None,
        scale: 1,
        disp: 0,
        rip_relative: false,
        addr32: p.addr32,
        segment: p.segment,
    };
    let mut disp_len = match md {
        1 => 1,
        2 => 4,
        _ => 0,
    };
    if rm == 4 {
        let sib = *bytes.get(at)?;
        at += 1;
        let (ss, idx, base) = (sib >> 6, ((sib >> 3) & 7) | (rex_x << 3), (sib & 7));
        mem.scale = 1 << ss;
        // Index 100b without REX.X means none.
        mem.index = (idx != 4).then_some(idx);
        if base == 5 && md == 0 {
            disp_len = 4;
        } else {
            mem.base = Some(base | (rex_b << 3));
        }
    } else if rm == 5 && md == 0 {
        mem.rip_relative = true;
        disp_len = 4;
    } else {
        mem.base = Some(rm | (rex_b << 3));
    }
    let disp = bytes.get(at..at + disp_len)?;
    mem.disp = match disp_len {
        1 => i64::from(disp[0] as i8),
        4 => i64::from(i32::from_le_bytes([disp[0], disp[1], disp[2], disp[3]])),
        _ => 0,
    };
    Some((reg | (rex_r << 3), mem, at + disp_len))
}

/// Decodes `bytes` (as fetched at RIP, 64-bit mode) if it is one of the
/// moves in the table above with a memory operand.
pub fn decode(bytes: &[u8]) -> Option<VectorMove> {
    let p = prefixes(bytes)?;
    let mut at = p.len;
    let rex = p.rex;
    if *bytes.get(at)? != 0x0f {
        return None;
    }
    let op = *bytes.get(at + 1)?;
    at += 2;
    // F2/F3 take precedence over 66 as the mandatory prefix.
    let prefix = match (p.rep, p.p66) {
        (Mandatory::None, true) => Mandatory::P66,
        (r, _) => r,
    };
    let combine = match prefix {
        Mandatory::P66 => PackedOp::from_opcode(op),
        _ => None,
    };
    let rex_w = rex & 0x08 != 0;
    let mut host = None;
    let (store, width, lanes) = match combine {
        Some(_) => (false, 16, Lanes::LowClearRest),
        None => match operation(prefix, op, rex_w) {
            Some(o) => o,
            None => {
                let (h, width) = host_operation(prefix, op, rex_w)?;
                host = Some(h);
                (false, width, Lanes::LowClearRest)
            }
        },
    };
    let (reg, mem, after) = modrm_operand(bytes, at, &p)?;
    at = after;
    // The compares' predicate (imm8; legacy SSE uses bits 2:0).
    if let Some(h) = host.as_mut() {
        if let HostInsn::Cmp(kind, _) = h.insn {
            let imm = *bytes.get(at)?;
            at += 1;
            h.insn = HostInsn::Cmp(kind, imm & 7);
        }
    }
    (at <= 15).then_some(VectorMove {
        len: at,
        store,
        xmm: reg,
        width,
        lanes,
        mem,
        combine,
        host,
    })
}
