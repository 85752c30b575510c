//! SSE moves on trapped and timed memory, completed by cxlvmm where KVM's
//! instruction emulator cannot.
//!
//! Every access to a trapped or timed CXL window is an MMIO exit that KVM
//! emulates. Hiding AVX (`cpuid_vector`) keeps glibc off VEX code, but
//! SSE2 is part of x86-64 itself: compilers move doubles and 8-byte
//! structs with `movsd` and `movq`, and KVM has no decoder entry for those
//! ([`decode`] lists them). Without help, a program whose data lives on
//! such memory dies of SIGILL on the first one (seen: busybox `md5sum`
//! storing its state with `movq %xmm0, m64`).
//!
//! So while such windows exist, and `CXLVMM_EMULATE_SSE=1` asks for it
//! (experimental: see docs/timed-mode.md, "Known limits"), cxlvmm enables
//! `KVM_CAP_EXIT_ON_EMULATION_FAILURE`: KVM then returns every failed
//! emulation to cxlvmm with the instruction bytes instead of injecting #UD
//! (arch/x86/kvm/x86.c, `handle_emulation_failure`). [`emulate`] completes
//! the moves it knows: the operand's linear address from the registers,
//! each page of it translated by the guest's page tables
//! (`KVM_TRANSLATE`), the bytes read or written through the same path as
//! any MMIO access of that address (timed ones charged by the fabric),
//! the XMM register read or updated (`KVM_GET_FPU`/`KVM_SET_FPU`), RIP
//! moved past the instruction. Anything else is declined, and the caller
//! does what KVM would have done: #UD for a user process, a fatal error
//! naming the place for the kernel.

pub mod decode;
pub mod host_sse;
pub mod kvm_cpu;
#[cfg(test)]
mod tests;

pub use decode::{decode, HostOp, HostResult, Lanes, PackedOp, Segment, VectorMove};
pub use kvm_cpu::KvmCpu;

/// The vCPU state an emulated move reads and changes.
pub trait VcpuView {
    /// rax, rcx, rdx, rbx, rsp, rbp, rsi, rdi, r8–r15.
    fn gpr(&self) -> [u64; 16];
    fn rip(&self) -> u64;
    /// In 64-bit mode (EFER.LMA and CS.L).
    fn long_mode(&self) -> bool;
    fn segment_base(&self, s: Segment) -> u64;
    fn xmm(&self, i: u8) -> [u8; 16];
    fn set_xmm(&mut self, i: u8, v: [u8; 16]);
    fn set_rip(&mut self, rip: u64);
    /// General register `i` (0–15, rax … r15).
    fn set_gpr(&mut self, i: u8, v: u64);
    fn rflags(&self) -> u64;
    fn set_rflags(&mut self, v: u64);
    fn mxcsr(&self) -> u32;
    fn set_mxcsr(&mut self, v: u32);
    /// The guest-physical address of a linear address, or None if the
    /// page tables do not map it. (Permissions are not checked: the
    /// hardware's own walk already allowed the access that faulted, and
    /// x86's `KVM_TRANSLATE` reports none.)
    fn translate(&self, linear: u64) -> Option<u64>;
}

/// Guest-physical memory as the MMIO exit path reaches it. Each call
/// returns the access's modelled latency in ps where the address is timed.
pub trait PhysicalAccess {
    fn read(&mut self, gpa: u64, buf: &mut [u8]) -> Option<u64>;
    fn write(&mut self, gpa: u64, data: &[u8]) -> Option<u64>;
}

/// How an emulation attempt ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Done; the summed modelled latency of its accesses, if any was timed.
    Emulated { latency_ps: Option<u64> },
    /// Not one cxlvmm completes; why.
    Declined(&'static str),
}

const PAGE: u64 = 4096;

/// Completes `insn` (the bytes at RIP) if it is a move or operation
/// [`decode`] knows.
pub fn emulate(cpu: &mut impl VcpuView, insn: &[u8], mem: &mut impl PhysicalAccess) -> Outcome {
    if !cpu.long_mode() {
        return Outcome::Declined("the vCPU is not in 64-bit mode");
    }
    let Some(mv) = decode(insn) else {
        return Outcome::Declined("not one of the SSE instructions cxlvmm completes");
    };
    let next_rip = cpu.rip().wrapping_add(mv.len as u64);
    let segment_base = cpu.segment_base(mv.mem.segment);
    let linear = mv.mem.linear(&cpu.gpr(), next_rip, segment_base);
    if mv.needs_alignment() && linear % 16 != 0 {
        // The CPU raises #GP for an unaligned legacy-SSE m128 operand.
        return Outcome::Declined("unaligned 16-byte operand");
    }
    // The operand page by page (an 8-byte access may straddle two).
    let mut pieces = Vec::with_capacity(2);
    let mut done = 0usize;
    while done < mv.width {
        let la = linear.wrapping_add(done as u64);
        let run = ((PAGE - la % PAGE) as usize).min(mv.width - done);
        let Some(gpa) = cpu.translate(la) else {
            return Outcome::Declined("the operand's page is not mapped");
        };
        pieces.push((gpa, done, run));
        done += run;
    }
    let mut reg = cpu.xmm(mv.xmm);
    let lane = mv.lanes.offset();
    let mut latency: Option<u64> = None;
    let mut charge = |l: Option<u64>| {
        if let Some(l) = l {
            latency = Some(latency.unwrap_or(0) + l);
        }
    };
    if mv.store {
        for &(gpa, off, run) in &pieces {
            charge(mem.write(gpa, &reg[lane + off..lane + off + run]));
        }
    } else {
        let mut buf = [0u8; 16];
        for &(gpa, off, run) in &pieces {
            charge(mem.read(gpa, &mut buf[off..off + run]));
        }
        match (mv.host, mv.combine) {
            (Some(op), _) => {
                if let Err(why) = run_on_host(cpu, &mv, op, buf) {
                    return Outcome::Declined(why);
                }
            }
            (None, Some(op)) => cpu.set_xmm(mv.xmm, op.apply(reg, buf)),
            (None, None) => {
                if mv.lanes == Lanes::LowClearRest {
                    reg = [0; 16];
                }
                reg[lane..lane + mv.width].copy_from_slice(&buf[..mv.width]);
                cpu.set_xmm(mv.xmm, reg);
            }
        }
    }
    cpu.set_rip(next_rip);
    Outcome::Emulated {
        latency_ps: latency,
    }
}

/// RFLAGS bits the scalar compares set from their result: CF, PF, ZF.
const COMPARE_RESULT_FLAGS: u64 = 0x1 | 0x4 | 0x40;
/// ... and those they clear: AF, SF, OF.
const COMPARE_CLEARED_FLAGS: u64 = 0x10 | 0x80 | 0x800;

/// Completes a [`HostOp`] whose memory operand is `operand` (its low
/// `mv.width` bytes): runs it on the host with the guest's register and
/// MXCSR, then writes back its result and the exception flags it raised.
fn run_on_host(
    cpu: &mut impl VcpuView,
    mv: &VectorMove,
    op: HostOp,
    operand: [u8; 16],
) -> Result<(), &'static str> {
    let mxcsr = cpu.mxcsr();
    let (src, gpr) = if op.integer_source {
        let mut w = [0u8; 8];
        w[..mv.width.min(8)].copy_from_slice(&operand[..mv.width.min(8)]);
        ([0; 16], u64::from_le_bytes(w))
    } else {
        (operand, 0)
    };
    let dst = match op.result {
        HostResult::Gpr => [0; 16],
        _ => cpu.xmm(mv.xmm),
    };
    let mut state = host_sse::HostSse::new(dst, src, gpr, mxcsr);
    host_sse::run(op.insn, &mut state);
    if state.unmasked_exception(mxcsr) {
        return Err("an unmasked SIMD floating-point exception (#XM)");
    }
    match op.result {
        HostResult::Xmm => cpu.set_xmm(mv.xmm, state.dst),
        HostResult::Gpr => cpu.set_gpr(mv.xmm, state.gpr),
        HostResult::Flags => {
            let flags = (cpu.rflags() & !(COMPARE_RESULT_FLAGS | COMPARE_CLEARED_FLAGS))
                | (state.rflags & COMPARE_RESULT_FLAGS);
            cpu.set_rflags(flags);
        }
    }
    if state.mxcsr != mxcsr {
        cpu.set_mxcsr(state.mxcsr);
    }
    Ok(())
}
