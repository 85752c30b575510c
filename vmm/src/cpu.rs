//! vCPU state for the 64-bit Linux boot protocol: CPUID, MSRs, registers,
//! segments, identity-mapped page tables, and the local APIC's LINT pins.

use kvm_bindings::{kvm_fpu, kvm_msr_entry, kvm_regs, kvm_segment, kvm_sregs, CpuId, Msrs};
use kvm_ioctls::VcpuFd;
use vm_memory::{Bytes, GuestAddress};

use crate::layout::*;
use crate::memory::GuestMemory;

#[derive(Debug, thiserror::Error)]
pub enum CpuError {
    #[error("KVM vCPU setup ({what}) failed: {source}")]
    Kvm {
        what: &'static str,
        source: kvm_ioctls::Error,
    },
    #[error("writing boot page tables / GDT to guest memory failed: {0}")]
    GuestMemory(String),
}

fn kvm(what: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> CpuError {
    move |source| CpuError::Kvm { what, source }
}

/// What the guest is told about the CPU.
#[derive(Clone, Copy, Debug)]
pub struct CpuidOptions {
    pub vcpu_count: u8,
    /// Keep CPUID.1:ECX[31] ("running under a hypervisor") and the KVM leaves.
    pub show_hypervisor: bool,
    /// Hide AVX and its relatives: trapped or timed memory exists
    /// ([`crate::cpuid_vector`]).
    pub hide_vector: bool,
}

const LEAF1_ECX_TSC_DEADLINE: u32 = 1 << 24;
const LEAF1_ECX_HYPERVISOR: u32 = 1 << 31;
const LEAF1_EDX_HTT: u32 = 1 << 28;
const LEAF_80000007_EDX_INVARIANT_TSC: u32 = 1 << 8;
const HYPERVISOR_LEAVES: u32 = 0x4000_0000;

/// Adjusts KVM's supported CPUID for vCPU `index`.
///
/// Stock kernels refuse to commit CXL regions when they see a hypervisor (they
/// cannot flush CPU caches by invalidation there), so the hypervisor bit and
/// the KVM signature leaves are hidden unless asked for. Invariant TSC is
/// advertised so the guest trusts the TSC as its clocksource.
pub fn filter_cpuid(cpuid: &mut CpuId, index: u8, opts: CpuidOptions) {
    if !opts.show_hypervisor {
        let kept: Vec<_> = cpuid
            .as_slice()
            .iter()
            .copied()
            .filter(|e| e.function & 0xf000_0000 != HYPERVISOR_LEAVES)
            .collect();
        if let Ok(c) = CpuId::from_entries(&kept) {
            *cpuid = c;
        }
    }
    if opts.hide_vector {
        crate::cpuid_vector::hide_vector_extensions(cpuid);
    }
    for e in cpuid.as_mut_slice() {
        match e.function {
            1 => {
                // APIC ID and logical processor count.
                e.ebx = (e.ebx & 0x0000_ffff)
                    | (u32::from(index) << 24)
                    | (u32::from(opts.vcpu_count) << 16);
                e.edx |= LEAF1_EDX_HTT;
                e.ecx |= LEAF1_ECX_TSC_DEADLINE;
                if opts.show_hypervisor {
                    e.ecx |= LEAF1_ECX_HYPERVISOR;
                } else {
                    e.ecx &= !LEAF1_ECX_HYPERVISOR;
                }
            }
            // Extended topology: x2APIC ID of this vCPU.
            0xb | 0x1f => e.edx = u32::from(index),
            0x8000_0007 => e.edx |= LEAF_80000007_EDX_INVARIANT_TSC,
            _ => {}
        }
    }
}

const MSR_IA32_SYSENTER_CS: u32 = 0x174;
const MSR_IA32_SYSENTER_ESP: u32 = 0x175;
const MSR_IA32_SYSENTER_EIP: u32 = 0x176;
const MSR_STAR: u32 = 0xc000_0081;
const MSR_LSTAR: u32 = 0xc000_0082;
const MSR_CSTAR: u32 = 0xc000_0083;
const MSR_SYSCALL_MASK: u32 = 0xc000_0084;
const MSR_KERNEL_GS_BASE: u32 = 0xc000_0102;
const MSR_IA32_TSC: u32 = 0x10;
const MSR_IA32_MISC_ENABLE: u32 = 0x1a0;
const MSR_MTRR_DEF_TYPE: u32 = 0x2ff;
const MISC_ENABLE_FAST_STRING: u64 = 1;
/// MTRRs enabled, default memory type write-back.
const MTRR_ENABLE_WB: u64 = (1 << 11) | 6;

pub fn setup_msrs(vcpu: &VcpuFd) -> Result<(), CpuError> {
    let entry = |index, data| kvm_msr_entry {
        index,
        data,
        ..Default::default()
    };
    let entries = [
        entry(MSR_IA32_SYSENTER_CS, 0),
        entry(MSR_IA32_SYSENTER_ESP, 0),
        entry(MSR_IA32_SYSENTER_EIP, 0),
        entry(MSR_STAR, 0),
        entry(MSR_CSTAR, 0),
        entry(MSR_KERNEL_GS_BASE, 0),
        entry(MSR_SYSCALL_MASK, 0),
        entry(MSR_LSTAR, 0),
        entry(MSR_IA32_TSC, 0),
        entry(MSR_IA32_MISC_ENABLE, MISC_ENABLE_FAST_STRING),
        entry(MSR_MTRR_DEF_TYPE, MTRR_ENABLE_WB),
    ];
    let msrs = Msrs::from_entries(&entries).map_err(|_| CpuError::Kvm {
        what: "MSR list",
        source: kvm_ioctls::Error::new(libc::E2BIG),
    })?;
    let set = vcpu.set_msrs(&msrs).map_err(kvm("set MSRs"))?;
    if set != entries.len() {
        // KVM stops at the first MSR it rejects; name it.
        log::warn!(
            "KVM accepted only {set} of {} boot MSRs (first rejected: {:#x})",
            entries.len(),
            entries[set].index
        );
    }
    Ok(())
}

/// Local APIC LVT registers and delivery modes.
const APIC_LVT0: usize = 0x350;
const APIC_LVT1: usize = 0x360;
const APIC_MODE_NMI: u32 = 0x4;
const APIC_MODE_EXTINT: u32 = 0x7;

/// LINT0 takes the PIC's ExtINT, LINT1 takes NMI, as firmware leaves them.
pub fn setup_lapic(vcpu: &VcpuFd) -> Result<(), CpuError> {
    let mut lapic = vcpu.get_lapic().map_err(kvm("get LAPIC"))?;
    let set_mode = |regs: &mut [i8], off: usize, mode: u32| {
        let mut b = [0u8; 4];
        for (i, x) in b.iter_mut().enumerate() {
            *x = regs[off + i] as u8;
        }
        let v = (u32::from_le_bytes(b) & !0x700) | (mode << 8);
        for (i, x) in v.to_le_bytes().iter().enumerate() {
            regs[off + i] = *x as i8;
        }
    };
    set_mode(&mut lapic.regs, APIC_LVT0, APIC_MODE_EXTINT);
    set_mode(&mut lapic.regs, APIC_LVT1, APIC_MODE_NMI);
    vcpu.set_lapic(&lapic).map_err(kvm("set LAPIC"))
}

/// A GDT entry from (flags, base, limit), as in the Intel SDM.
fn gdt_entry(flags: u16, base: u32, limit: u32) -> u64 {
    ((u64::from(base) & 0xff00_0000) << (56 - 24))
        | ((u64::from(flags) & 0x0000_f0ff) << 40)
        | ((u64::from(limit) & 0x000f_0000) << (48 - 16))
        | ((u64::from(base) & 0x00ff_ffff) << 16)
        | (u64::from(limit) & 0x0000_ffff)
}

fn segment_from_gdt(entry: u64, table_index: u8) -> kvm_segment {
    let bit = |shift: u32| ((entry >> shift) & 1) as u8;
    kvm_segment {
        base: ((entry >> 16) & 0xff_ffff) | (((entry >> 56) & 0xff) << 24),
        limit: {
            let raw = ((entry & 0xffff) | ((entry >> 32) & 0xf_0000)) as u32;
            if bit(55) == 1 {
                (raw << 12) | 0xfff
            } else {
                raw
            }
        },
        selector: u16::from(table_index) * 8,
        type_: ((entry >> 40) & 0xf) as u8,
        present: bit(47),
        dpl: ((entry >> 45) & 3) as u8,
        db: bit(54),
        s: bit(44),
        l: bit(53),
        g: bit(55),
        avl: bit(52),
        unusable: u8::from(bit(47) == 0),
        padding: 0,
    }
}

const X86_CR0_PE: u64 = 0x1;
const X86_CR0_ET: u64 = 0x10;
const X86_CR0_PG: u64 = 0x8000_0000;
const X86_CR4_PAE: u64 = 0x20;
const EFER_LME: u64 = 0x100;
const EFER_LMA: u64 = 0x400;

/// Long mode with a flat GDT and identity-mapped first 4 GiB, as the 64-bit
/// boot protocol requires.
pub fn setup_long_mode(vcpu: &VcpuFd, mem: &GuestMemory) -> Result<(), CpuError> {
    let gdt = [
        gdt_entry(0, 0, 0),            // null
        gdt_entry(0xa09b, 0, 0xfffff), // code, 64-bit
        gdt_entry(0xc093, 0, 0xfffff), // data
        gdt_entry(0x808b, 0, 0xfffff), // TSS
    ];
    let gm = |e: vm_memory::GuestMemoryError| CpuError::GuestMemory(e.to_string());
    for (i, e) in gdt.iter().enumerate() {
        mem.write_obj(*e, GuestAddress(BOOT_GDT_START + 8 * i as u64))
            .map_err(gm)?;
    }
    mem.write_obj(0u64, GuestAddress(BOOT_IDT_START))
        .map_err(gm)?;

    // PML4[0] -> PDPT; PDPT[0..4] -> four PDs of 2 MiB pages.
    mem.write_obj(PDPT_START | 0x3, GuestAddress(PML4_START))
        .map_err(gm)?;
    for pd in 0..4u64 {
        let pd_addr = PD_START + pd * 0x1000;
        mem.write_obj(pd_addr | 0x3, GuestAddress(PDPT_START + pd * 8))
            .map_err(gm)?;
        for i in 0..512u64 {
            let phys = ((pd * 512 + i) << 21) | 0x83; // present, RW, 2 MiB page
            mem.write_obj(phys, GuestAddress(pd_addr + i * 8))
                .map_err(gm)?;
        }
    }

    let mut sregs: kvm_sregs = vcpu.get_sregs().map_err(kvm("get sregs"))?;
    let code = segment_from_gdt(gdt[1], 1);
    let data = segment_from_gdt(gdt[2], 2);
    let tss = segment_from_gdt(gdt[3], 3);
    sregs.gdt.base = BOOT_GDT_START;
    sregs.gdt.limit = (std::mem::size_of_val(&gdt) - 1) as u16;
    sregs.idt.base = BOOT_IDT_START;
    sregs.idt.limit = 7;
    sregs.cs = code;
    sregs.ds = data;
    sregs.es = data;
    sregs.fs = data;
    sregs.gs = data;
    sregs.ss = data;
    sregs.tr = tss;
    sregs.cr3 = PML4_START;
    sregs.cr4 |= X86_CR4_PAE;
    sregs.cr0 |= X86_CR0_PE | X86_CR0_PG | X86_CR0_ET;
    sregs.efer |= EFER_LME | EFER_LMA;
    vcpu.set_sregs(&sregs).map_err(kvm("set sregs"))?;

    let fpu = kvm_fpu {
        fcw: 0x37f,
        mxcsr: 0x1f80,
        ..Default::default()
    };
    vcpu.set_fpu(&fpu).map_err(kvm("set FPU"))
}

/// General registers at the entry point: RSI points at the zero page.
pub fn setup_regs(vcpu: &VcpuFd, rip: u64, zero_page: u64) -> Result<(), CpuError> {
    let regs = kvm_regs {
        rflags: 0x2,
        rip,
        rsp: BOOT_STACK_POINTER,
        rbp: BOOT_STACK_POINTER,
        rsi: zero_page,
        ..Default::default()
    };
    vcpu.set_regs(&regs).map_err(kvm("set regs"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kvm_bindings::kvm_cpuid_entry2;

    #[test]
    fn gdt_entries_decode_to_flat_long_mode_segments() {
        let code = segment_from_gdt(gdt_entry(0xa09b, 0, 0xfffff), 1);
        assert_eq!((code.l, code.db, code.present, code.s), (1, 0, 1, 1));
        assert_eq!((code.type_, code.selector, code.base), (0xb, 8, 0));
        assert_eq!(code.limit, 0xffff_ffff);
        let data = segment_from_gdt(gdt_entry(0xc093, 0, 0xfffff), 2);
        assert_eq!((data.l, data.db, data.type_), (0, 1, 0x3));
        let null = segment_from_gdt(0, 0);
        assert_eq!(null.unusable, 1);
    }

    fn sample() -> CpuId {
        let leaf = |function, ecx| kvm_cpuid_entry2 {
            function,
            ecx,
            ..Default::default()
        };
        CpuId::from_entries(&[
            leaf(1, LEAF1_ECX_HYPERVISOR),
            leaf(0x4000_0000, 0),
            leaf(0x4000_0001, 0),
            leaf(0x8000_0007, 0),
        ])
        .unwrap()
    }

    #[test]
    fn hypervisor_is_hidden_by_default_and_tsc_is_invariant() {
        let mut c = sample();
        filter_cpuid(
            &mut c,
            3,
            CpuidOptions {
                vcpu_count: 4,
                show_hypervisor: false,
                hide_vector: false,
            },
        );
        let s = c.as_slice();
        assert_eq!(s.len(), 2, "KVM leaves removed");
        assert_eq!(s[0].ecx & LEAF1_ECX_HYPERVISOR, 0);
        assert_eq!(s[0].ebx >> 24, 3);
        assert_eq!((s[0].ebx >> 16) & 0xff, 4);
        assert_ne!(s[1].edx & LEAF_80000007_EDX_INVARIANT_TSC, 0);

        let mut c = sample();
        filter_cpuid(
            &mut c,
            0,
            CpuidOptions {
                vcpu_count: 1,
                show_hypervisor: true,
                hide_vector: false,
            },
        );
        assert_eq!(c.as_slice().len(), 4);
        assert_ne!(c.as_slice()[0].ecx & LEAF1_ECX_HYPERVISOR, 0);
    }
}
