//! [`VcpuView`] over a KVM vCPU: its registers read once, written back
//! only if the emulated move changed them.

use kvm_bindings::{kvm_regs, kvm_sregs, kvm_xsave};
use kvm_ioctls::{Error, VcpuFd};

type Result<T> = std::result::Result<T, Error>;

use super::{Segment, VcpuView};
use crate::memory::GuestMemory;

/// EFER.LMA: long mode active.
const EFER_LMA: u64 = 1 << 10;
/// XMM0 in the XSAVE area's legacy region (Intel SDM vol. 1, 13.4.1).
const XMM0_OFFSET: usize = 160;
/// MXCSR in the XSAVE area's legacy region, as a 32-bit word index.
const MXCSR_WORD: usize = 24 / 4;
/// XSTATE_BV, first word of the XSAVE header (at byte 512).
const XSTATE_BV_WORD: usize = 512 / 4;
/// XSTATE_BV bit of the SSE (XMM) component.
const XSTATE_SSE: u32 = 1 << 1;

/// The general registers in instruction-encoding order (rax, rcx, rdx, rbx,
/// rsp, rbp, rsi, rdi, r8–r15).
pub fn gprs(r: &kvm_regs) -> [u64; 16] {
    [
        r.rax, r.rcx, r.rdx, r.rbx, r.rsp, r.rbp, r.rsi, r.rdi, r.r8, r.r9, r.r10, r.r11, r.r12,
        r.r13, r.r14, r.r15,
    ]
}

/// In 64-bit mode (EFER.LMA and CS.L).
pub fn in_long_mode(s: &kvm_sregs) -> bool {
    s.efer & EFER_LMA != 0 && s.cs.l == 1
}

pub struct KvmCpu<'a> {
    vcpu: &'a VcpuFd,
    /// Guest RAM, for walking the page tables where KVM_TRANSLATE will not.
    mem: &'a GuestMemory,
    regs: kvm_regs,
    sregs: kvm_sregs,
    /// The XMM registers live here, not in KVM_GET_FPU's view: that one is
    /// the raw legacy area, stale whenever XSTATE_BV says the registers are
    /// in their initial state, and writing it would then be ignored.
    xsave: kvm_xsave,
    regs_changed: bool,
    xmm_changed: bool,
}

impl<'a> KvmCpu<'a> {
    pub fn new(vcpu: &'a VcpuFd, mem: &'a GuestMemory) -> Result<Self> {
        Ok(KvmCpu {
            vcpu,
            mem,
            regs: vcpu.get_regs()?,
            sregs: vcpu.get_sregs()?,
            xsave: vcpu.get_xsave()?,
            regs_changed: false,
            xmm_changed: false,
        })
    }

    /// In user mode (CPL 3; in 64-bit mode the CPL is CS's RPL).
    pub fn user_mode(&self) -> bool {
        self.sregs.cs.selector & 3 == 3
    }

    /// Writes back what changed.
    pub fn commit(&self) -> Result<()> {
        if self.xmm_changed {
            // SAFETY: KVM_SET_XSAVE reads the vCPU's uabi XSAVE size, which
            // is the 4 KiB `kvm_xsave` holds unless the VMM asked for
            // dynamic features (AMX) with ARCH_REQ_XCOMP_GUEST_PERM; cxlvmm
            // never does, and `xsave` is what KVM_GET_XSAVE returned with
            // only XMM bytes and the SSE bit of XSTATE_BV changed.
            unsafe { self.vcpu.set_xsave(&self.xsave) }?;
        }
        if self.regs_changed {
            self.vcpu.set_regs(&self.regs)?;
        }
        Ok(())
    }
}

impl VcpuView for KvmCpu<'_> {
    fn gpr(&self) -> [u64; 16] {
        gprs(&self.regs)
    }

    fn rip(&self) -> u64 {
        self.regs.rip
    }

    fn long_mode(&self) -> bool {
        in_long_mode(&self.sregs)
    }

    fn segment_base(&self, s: Segment) -> u64 {
        match s {
            Segment::Flat => 0,
            Segment::Fs => self.sregs.fs.base,
            Segment::Gs => self.sregs.gs.base,
        }
    }

    fn xmm(&self, i: u8) -> [u8; 16] {
        let at = XMM0_OFFSET / 4 + 4 * usize::from(i & 15);
        let words = &self.xsave.region[at..at + 4];
        std::array::from_fn(|b| words[b / 4].to_le_bytes()[b % 4])
    }

    fn set_xmm(&mut self, i: u8, v: [u8; 16]) {
        let at = XMM0_OFFSET / 4 + 4 * usize::from(i & 15);
        for (w, chunk) in self.xsave.region[at..at + 4].iter_mut().zip(v.chunks(4)) {
            *w = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        }
        // Other XMM registers read as zero while the bit was clear
        // (KVM_GET_XSAVE wrote their initial state), so setting it keeps them.
        self.xsave.region[XSTATE_BV_WORD] |= XSTATE_SSE;
        self.xmm_changed = true;
    }

    fn set_rip(&mut self, rip: u64) {
        self.regs.rip = rip;
        self.regs_changed = true;
    }

    fn set_gpr(&mut self, i: u8, v: u64) {
        let r = &mut self.regs;
        let slot = match i & 15 {
            0 => &mut r.rax,
            1 => &mut r.rcx,
            2 => &mut r.rdx,
            3 => &mut r.rbx,
            4 => &mut r.rsp,
            5 => &mut r.rbp,
            6 => &mut r.rsi,
            7 => &mut r.rdi,
            8 => &mut r.r8,
            9 => &mut r.r9,
            10 => &mut r.r10,
            11 => &mut r.r11,
            12 => &mut r.r12,
            13 => &mut r.r13,
            14 => &mut r.r14,
            _ => &mut r.r15,
        };
        *slot = v;
        self.regs_changed = true;
    }

    fn rflags(&self) -> u64 {
        self.regs.rflags
    }

    fn set_rflags(&mut self, v: u64) {
        self.regs.rflags = v;
        self.regs_changed = true;
    }

    fn mxcsr(&self) -> u32 {
        self.xsave.region[MXCSR_WORD]
    }

    fn set_mxcsr(&mut self, v: u32) {
        self.xsave.region[MXCSR_WORD] = v;
        // KVM_SET_XSAVE takes MXCSR only with the SSE (or x87, AVX)
        // component present (arch/x86/kernel/fpu/xstate.c,
        // copy_uabi_to_xstate); the XMM registers it then also takes are
        // the ones KVM_GET_XSAVE wrote.
        self.xsave.region[XSTATE_BV_WORD] |= XSTATE_SSE;
        self.xmm_changed = true;
    }

    fn translate(&self, linear: u64) -> Option<u64> {
        // KVM_TRANSLATE walks as a supervisor read, which SMAP forbids on
        // a user page: there, walk the 4-level tables in guest RAM.
        match self.vcpu.translate_gva(linear) {
            Ok(t) if t.valid != 0 => Some(t.physical_address),
            _ => crate::guest_stack::translate(self.mem, self.sregs.cr3, self.sregs.cr4, linear),
        }
    }
}
