//! SSE arithmetic with a memory source, run on the host CPU.
//!
//! A guest instruction such as `addsd 0x8(%rsp),%xmm0` or
//! `cvttsd2si (%rax),%rdx` whose operand lies on trapped or timed memory
//! is completed by running the same operation, in its register form, on the
//! host: the guest's destination register in XMM0, the operand's bytes
//! (read through the MMIO path) in XMM1 or RAX, the guest's MXCSR loaded,
//! so the result, its rounding and the exception flags it raises are the
//! hardware's own. Every exception is masked while it runs (an unmasked one
//! would trap in the VMM); [`HostSse::unmasked_exception`] says whether the
//! guest's MXCSR would have had the CPU raise #XM instead.

use std::arch::asm;

/// The operations completed here (Intel SDM vol. 2, each by name). `Ps`,
/// `Pd`, `Ss`, `Sd`: packed single, packed double, scalar single, scalar
/// double.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostInsn {
    Add(Kind),
    Sub(Kind),
    Mul(Kind),
    Div(Kind),
    Min(Kind),
    Max(Kind),
    Sqrt(Kind),
    /// `cmpPRED{ps,pd,ss,sd}`, predicate 0–7 (imm8 bits 2:0).
    Cmp(Kind, u8),
    And(Kind),
    AndNot(Kind),
    Or(Kind),
    Xor(Kind),
    UnpackLow(Kind),
    UnpackHigh(Kind),
    /// `cvtss2sd`, `cvtsd2ss`, `cvtps2pd`, `cvtpd2ps`.
    Convert(Kind),
    /// `cvtdq2ps`, `cvtps2dq`, `cvttps2dq`, `cvtdq2pd`, `cvtpd2dq`,
    /// `cvttpd2dq`.
    ConvertInt(IntConvert),
    /// `cvtsi2ss`/`cvtsi2sd` from a 32- or 64-bit integer (RAX).
    FromInt {
        double: bool,
        wide: bool,
    },
    /// `cvt(t)ss2si`/`cvt(t)sd2si` into EAX or RAX.
    ToInt {
        double: bool,
        wide: bool,
        truncate: bool,
    },
    /// `comiss`/`comisd`/`ucomiss`/`ucomisd`: RFLAGS.
    Compare {
        double: bool,
        unordered: bool,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Ps,
    Pd,
    Ss,
    Sd,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IntConvert {
    Dq2Ps,
    Ps2Dq,
    TPs2Dq,
    Dq2Pd,
    Pd2Dq,
    TPd2Dq,
}

/// What the host instruction reads and writes. `repr(C)`: the assembly
/// below addresses its fields by offset.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HostSse {
    /// XMM0: the guest's destination register (offset 0).
    pub dst: [u8; 16],
    /// XMM1: the memory operand's bytes, from the low end (offset 16).
    pub src: [u8; 16],
    /// RAX: integer source or result (offset 32).
    pub gpr: u64,
    /// MXCSR in (the guest's) and out (with the flags raised) (offset 40).
    pub mxcsr: u32,
    _pad: u32,
    /// RFLAGS after the instruction (offset 48).
    pub rflags: u64,
}

/// MXCSR's exception mask bits (IM DM ZM OM UM PM, bits 7–12).
const MXCSR_MASKS: u32 = 0x1f80;
/// MXCSR's exception flag bits (IE DE ZE OE UE PE, bits 0–5).
const MXCSR_FLAGS: u32 = 0x3f;

impl HostSse {
    pub fn new(dst: [u8; 16], src: [u8; 16], gpr: u64, mxcsr: u32) -> Self {
        HostSse {
            dst,
            src,
            gpr,
            mxcsr,
            ..Default::default()
        }
    }

    /// Whether an exception the last run raised is unmasked in `guest`'s
    /// MXCSR: the CPU would have delivered #XM and written nothing.
    pub fn unmasked_exception(&self, guest: u32) -> bool {
        let raised = self.mxcsr & MXCSR_FLAGS;
        let unmasked = ((!(guest & MXCSR_MASKS)) >> 7) & MXCSR_FLAGS;
        raised & unmasked & !(guest & MXCSR_FLAGS) != 0
    }
}

/// One register-form instruction between the loads and stores of
/// [`HostSse`]'s fields, with the guest's MXCSR (all exceptions masked) in
/// force and the host's restored afterwards.
macro_rules! run_on_host {
    ($state:expr, $insn:expr) => {{
        let state: &mut HostSse = $state;
        let guest = state.mxcsr;
        state.mxcsr = guest | MXCSR_MASKS;
        let mut host_mxcsr = 0u32;
        // SAFETY: the block reads and writes only `state` (a live, exclusive
        // `repr(C)` struct whose offsets are the ones named above) and
        // `host_mxcsr`; XMM0, XMM1 and RAX are declared clobbered; the
        // pushfq/pop pair leaves RSP as it was (no `nostack`, so the
        // compiler keeps the stack usable); MXCSR is the host's again at
        // the end, and while the guest's is loaded every exception is
        // masked, so nothing traps.
        unsafe {
            asm!(
                "stmxcsr [{host}]",
                "movups xmm0, [{s}]",
                "movups xmm1, [{s} + 16]",
                "mov rax, [{s} + 32]",
                "ldmxcsr [{s} + 40]",
                $insn,
                "pushfq",
                "pop qword ptr [{s} + 48]",
                "stmxcsr [{s} + 40]",
                "movups [{s}], xmm0",
                "mov [{s} + 32], rax",
                "ldmxcsr [{host}]",
                s = in(reg) state as *mut HostSse,
                host = in(reg) &mut host_mxcsr as *mut u32,
                out("xmm0") _,
                out("xmm1") _,
                out("rax") _,
            );
        }
        // The guest's sticky flags stay; the masks are the guest's.
        state.mxcsr = guest | (state.mxcsr & MXCSR_FLAGS);
    }};
}

macro_rules! by_kind {
    ($state:expr, $kind:expr, $op:literal) => {
        match $kind {
            Kind::Ps => run_on_host!($state, concat!($op, "ps xmm0, xmm1")),
            Kind::Pd => run_on_host!($state, concat!($op, "pd xmm0, xmm1")),
            Kind::Ss => run_on_host!($state, concat!($op, "ss xmm0, xmm1")),
            Kind::Sd => run_on_host!($state, concat!($op, "sd xmm0, xmm1")),
        }
    };
}

macro_rules! cmp_by_pred {
    ($state:expr, $suffix:literal, $pred:expr) => {
        match $pred & 7 {
            0 => run_on_host!($state, concat!("cmp", $suffix, " xmm0, xmm1, 0")),
            1 => run_on_host!($state, concat!("cmp", $suffix, " xmm0, xmm1, 1")),
            2 => run_on_host!($state, concat!("cmp", $suffix, " xmm0, xmm1, 2")),
            3 => run_on_host!($state, concat!("cmp", $suffix, " xmm0, xmm1, 3")),
            4 => run_on_host!($state, concat!("cmp", $suffix, " xmm0, xmm1, 4")),
            5 => run_on_host!($state, concat!("cmp", $suffix, " xmm0, xmm1, 5")),
            6 => run_on_host!($state, concat!("cmp", $suffix, " xmm0, xmm1, 6")),
            _ => run_on_host!($state, concat!("cmp", $suffix, " xmm0, xmm1, 7")),
        }
    };
}

/// Runs `insn` on `state` (see the module's comment).
pub fn run(insn: HostInsn, state: &mut HostSse) {
    use HostInsn::*;
    match insn {
        Add(k) => by_kind!(state, k, "add"),
        Sub(k) => by_kind!(state, k, "sub"),
        Mul(k) => by_kind!(state, k, "mul"),
        Div(k) => by_kind!(state, k, "div"),
        Min(k) => by_kind!(state, k, "min"),
        Max(k) => by_kind!(state, k, "max"),
        Sqrt(k) => by_kind!(state, k, "sqrt"),
        Cmp(Kind::Ps, p) => cmp_by_pred!(state, "ps", p),
        Cmp(Kind::Pd, p) => cmp_by_pred!(state, "pd", p),
        Cmp(Kind::Ss, p) => cmp_by_pred!(state, "ss", p),
        Cmp(Kind::Sd, p) => cmp_by_pred!(state, "sd", p),
        // Bitwise and unpack operations exist only packed.
        And(Kind::Pd) => run_on_host!(state, "andpd xmm0, xmm1"),
        And(_) => run_on_host!(state, "andps xmm0, xmm1"),
        AndNot(Kind::Pd) => run_on_host!(state, "andnpd xmm0, xmm1"),
        AndNot(_) => run_on_host!(state, "andnps xmm0, xmm1"),
        Or(Kind::Pd) => run_on_host!(state, "orpd xmm0, xmm1"),
        Or(_) => run_on_host!(state, "orps xmm0, xmm1"),
        Xor(Kind::Pd) => run_on_host!(state, "xorpd xmm0, xmm1"),
        Xor(_) => run_on_host!(state, "xorps xmm0, xmm1"),
        UnpackLow(Kind::Pd) => run_on_host!(state, "unpcklpd xmm0, xmm1"),
        UnpackLow(_) => run_on_host!(state, "unpcklps xmm0, xmm1"),
        UnpackHigh(Kind::Pd) => run_on_host!(state, "unpckhpd xmm0, xmm1"),
        UnpackHigh(_) => run_on_host!(state, "unpckhps xmm0, xmm1"),
        Convert(Kind::Ss) => run_on_host!(state, "cvtss2sd xmm0, xmm1"),
        Convert(Kind::Sd) => run_on_host!(state, "cvtsd2ss xmm0, xmm1"),
        Convert(Kind::Ps) => run_on_host!(state, "cvtps2pd xmm0, xmm1"),
        Convert(Kind::Pd) => run_on_host!(state, "cvtpd2ps xmm0, xmm1"),
        ConvertInt(IntConvert::Dq2Ps) => run_on_host!(state, "cvtdq2ps xmm0, xmm1"),
        ConvertInt(IntConvert::Ps2Dq) => run_on_host!(state, "cvtps2dq xmm0, xmm1"),
        ConvertInt(IntConvert::TPs2Dq) => run_on_host!(state, "cvttps2dq xmm0, xmm1"),
        ConvertInt(IntConvert::Dq2Pd) => run_on_host!(state, "cvtdq2pd xmm0, xmm1"),
        ConvertInt(IntConvert::Pd2Dq) => run_on_host!(state, "cvtpd2dq xmm0, xmm1"),
        ConvertInt(IntConvert::TPd2Dq) => run_on_host!(state, "cvttpd2dq xmm0, xmm1"),
        FromInt {
            double: true,
            wide: true,
        } => run_on_host!(state, "cvtsi2sd xmm0, rax"),
        FromInt {
            double: true,
            wide: false,
        } => run_on_host!(state, "cvtsi2sd xmm0, eax"),
        FromInt {
            double: false,
            wide: true,
        } => run_on_host!(state, "cvtsi2ss xmm0, rax"),
        FromInt {
            double: false,
            wide: false,
        } => run_on_host!(state, "cvtsi2ss xmm0, eax"),
        ToInt {
            double,
            wide,
            truncate,
        } => match (double, wide, truncate) {
            (true, true, true) => run_on_host!(state, "cvttsd2si rax, xmm1"),
            (true, true, false) => run_on_host!(state, "cvtsd2si rax, xmm1"),
            (true, false, true) => run_on_host!(state, "cvttsd2si eax, xmm1"),
            (true, false, false) => run_on_host!(state, "cvtsd2si eax, xmm1"),
            (false, true, true) => run_on_host!(state, "cvttss2si rax, xmm1"),
            (false, true, false) => run_on_host!(state, "cvtss2si rax, xmm1"),
            (false, false, true) => run_on_host!(state, "cvttss2si eax, xmm1"),
            (false, false, false) => run_on_host!(state, "cvtss2si eax, xmm1"),
        },
        Compare { double, unordered } => match (double, unordered) {
            (true, true) => run_on_host!(state, "ucomisd xmm0, xmm1"),
            (true, false) => run_on_host!(state, "comisd xmm0, xmm1"),
            (false, true) => run_on_host!(state, "ucomiss xmm0, xmm1"),
            (false, false) => run_on_host!(state, "comiss xmm0, xmm1"),
        },
    }
}
