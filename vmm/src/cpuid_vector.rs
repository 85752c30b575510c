//! Hides vector extensions the guest must not use on trapped or timed
//! memory.
//!
//! Every access to a trapped or timed CXL window is an MMIO exit that KVM's
//! instruction emulator (arch/x86/kvm/emulate.c) completes. It decodes plain
//! moves, string moves and a few SSE moves, but no VEX/EVEX-encoded
//! instruction; a user-space AVX load there gets #UD (SIGILL). glibc and
//! compilers pick AVX/AVX2/AVX-512 code when CPUID offers it, so while such
//! windows exist the guest is told they are absent: its kernel leaves them
//! out of XCR0 and its C library falls back to SSE2 and `rep movs`.
//!
//! SSSE3, SSE 4.1 and SSE 4.2 go as well: glibc's string functions pick
//! variants by them whose memory operands are instructions no emulator on
//! the exit path completes (seen: `__strcmp_sse42`'s `pcmpistri
//! $0x1a,(%rsi,%rdx,1),%xmm0`, SIGILL in a process whose data lay on a
//! timed node); without them it takes its SSE2 variants, whose loads and
//! compares KVM or `vector_mmio` complete. Code built for the x86-64
//! baseline (Debian's) never needs them.
//!
//! The fast-string features go too. KVM completes a `rep movs`/`rep stos`
//! on MMIO one element at a time, one exit each; with ERMS or FSRM the
//! guest kernel zeroes pages and copies to and from user space with byte
//! elements (`clear_page_erms` in arch/x86/lib/clear_page_64.S, the FSRM
//! `rep movsb` of copy_user_generic in arch/x86/include/asm/uaccess_64.h),
//! without them with 8-byte ones (`rep stosq`, `rep_movs_alternative`'s
//! `rep movsq`): a page zeroed on a timed node takes 512 exits, not 4096.

use fabric::topology::{Topology, WindowMode};
use kvm_bindings::CpuId;

/// Whether a guest on `topo` may meet trapped or timed memory: a window in
/// either mode, or one whose granularity is finer than a page (such regions
/// cannot be mapped natively and are served trapped).
pub fn needed(topo: Option<&Topology>) -> bool {
    topo.is_some_and(|t| {
        t.windows
            .iter()
            .any(|w| w.mode != WindowMode::Native || w.granularity < 4096)
    })
}

/// CPUID.1:ECX: FMA, AVX, F16C (VEX-encoded); SSSE3, SSE4.1, SSE4.2.
const LEAF1_ECX: u32 = (1 << 12) | (1 << 28) | (1 << 29) | (1 << 9) | (1 << 19) | (1 << 20);
/// CPUID.7.0:EBX: AVX2, AVX-512 F/DQ/IFMA/PF/ER/CD/BW/VL.
const LEAF7_EBX: u32 = (1 << 5)
    | (1 << 16)
    | (1 << 17)
    | (1 << 21)
    | (1 << 26)
    | (1 << 27)
    | (1 << 28)
    | (1 << 30)
    | (1 << 31);
/// CPUID.7.0:EBX: ERMS (enhanced `rep movsb`/`stosb`).
const LEAF7_EBX_STRINGS: u32 = 1 << 9;
/// CPUID.7.0:EDX: FSRM (fast short `rep movsb`).
const LEAF7_EDX_STRINGS: u32 = 1 << 4;
/// CPUID.7.1:EAX: fast zero-length `rep movsb`, short `rep stosb`, short
/// `rep cmpsb`/`scasb`.
const LEAF7_1_EAX_STRINGS: u32 = (1 << 10) | (1 << 11) | (1 << 12);
/// CPUID.7.0:ECX: AVX-512 VBMI/VBMI2/VNNI/BITALG/VPOPCNTDQ, VAES and
/// VPCLMULQDQ (their wide forms are VEX/EVEX only).
const LEAF7_ECX: u32 =
    (1 << 1) | (1 << 6) | (1 << 9) | (1 << 10) | (1 << 11) | (1 << 12) | (1 << 14);
/// CPUID.7.0:EDX: AVX-512 4VNNIW/4FMAPS/VP2INTERSECT/FP16, AMX BF16/TILE/INT8.
const LEAF7_EDX: u32 =
    (1 << 2) | (1 << 3) | (1 << 8) | (1 << 22) | (1 << 23) | (1 << 24) | (1 << 25);
/// CPUID.7.1:EAX: AVX-VNNI, AVX-512 BF16, AVX-IFMA.
const LEAF7_1_EAX: u32 = (1 << 4) | (1 << 5) | (1 << 23);
/// CPUID.0x80000001:ECX: SSE4A, XOP, FMA4 (AMD).
const EXT1_ECX: u32 = (1 << 6) | (1 << 11) | (1 << 16);
/// XCR0 state components of YMM, opmask, ZMM_Hi256, Hi16_ZMM, XTILECFG,
/// XTILEDATA (CPUID.0xD.0:EAX bits).
const XCR0_VECTOR: u32 = (1 << 2) | (1 << 5) | (1 << 6) | (1 << 7) | (1 << 17) | (1 << 18);

pub fn hide_vector_extensions(cpuid: &mut CpuId) {
    for e in cpuid.as_mut_slice() {
        match (e.function, e.index) {
            (1, _) => e.ecx &= !LEAF1_ECX,
            (7, 0) => {
                e.ebx &= !(LEAF7_EBX | LEAF7_EBX_STRINGS);
                e.ecx &= !LEAF7_ECX;
                e.edx &= !(LEAF7_EDX | LEAF7_EDX_STRINGS);
            }
            (7, 1) => e.eax &= !(LEAF7_1_EAX | LEAF7_1_EAX_STRINGS),
            (0x8000_0001, _) => e.ecx &= !EXT1_ECX,
            (0xd, 0) => e.eax &= !XCR0_VECTOR,
            // The removed components' size/offset sub-leaves.
            (0xd, i) if i < 32 && XCR0_VECTOR & (1 << i) != 0 => {
                e.eax = 0;
                e.ebx = 0;
                e.ecx = 0;
                e.edx = 0;
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kvm_bindings::kvm_cpuid_entry2;

    #[test]
    fn avx_family_its_xsave_state_and_sse4_disappear_sse3_stays() {
        let leaf = |function, index, eax, ebx, ecx, edx| kvm_cpuid_entry2 {
            function,
            index,
            eax,
            ebx,
            ecx,
            edx,
            ..Default::default()
        };
        let sse = (1 << 0) | (1 << 9) | (1 << 19) | (1 << 20); // SSE3, SSSE3, SSE4.1/4.2
        let mut c = CpuId::from_entries(&[
            leaf(1, 0, 0, 0, sse | LEAF1_ECX | (1 << 26), 0),
            leaf(7, 0, 0, !0, !0, !0),
            leaf(0xd, 0, 0b1110_0111, 0, 0, 0),
            leaf(0xd, 2, 256, 576, 0, 0),
            leaf(0x8000_0001, 0, 0, 0, !0, 0),
        ])
        .unwrap();
        hide_vector_extensions(&mut c);
        let s = c.as_slice();
        assert_eq!(
            s[0].ecx,
            1 | (1 << 26),
            "SSE3 and XSAVE stay; SSSE3, SSE4.1/4.2, AVX, FMA, F16C go"
        );
        assert_eq!(s[1].ebx & (1 << 5), 0, "AVX2");
        assert_eq!(s[1].ebx & (1 << 16), 0, "AVX-512F");
        assert_ne!(s[1].ebx & (1 << 3), 0, "BMI1 stays");
        assert_eq!(s[1].ebx & (1 << 9), 0, "ERMS");
        assert_eq!(s[1].edx & (1 << 4), 0, "FSRM");
        assert_eq!(s[2].eax, 0b11, "x87 and SSE state only");
        assert_eq!((s[3].eax, s[3].ebx), (0, 0));
        assert_eq!(s[4].ecx & (1 << 11), 0, "XOP");
        assert_eq!(s[4].ecx & (1 << 6), 0, "SSE4A");
    }
}
