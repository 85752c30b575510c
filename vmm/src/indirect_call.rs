//! `call *m64` on memory served by exits, corrected where KVM's emulator
//! takes the wrong address.
//!
//! A near indirect call reads its target from memory and pushes the return
//! address on the stack: two accesses. When one of them lies on trapped or
//! timed memory, the guest exits with a nested page fault at that access's
//! guest-physical address, and KVM emulates the whole instruction
//! (arch/x86/kvm/emulate.c). For each access the emulator then reuses the
//! faulting guest-physical address instead of walking the page tables
//! whenever the access's linear address has the same page offset
//! (`emulator_read_write_onepage`: `ctxt->gpa_available` and
//! `(addr & ~PAGE_MASK) == (ctxt->gpa_val & ~PAGE_MASK)`). That shortcut
//! is refused only for instructions marked `TwoMemOp`; `call *m64`
//! (`em_call_near_abs`, group 5 /2) is not marked. So when the target's
//! address and the stack slot share a page offset (1 call in 512 for
//! 8-byte aligned pointers):
//!
//! - stack on served memory, pointer in RAM: the target is read from the
//!   stack slot (seen in the nested rig: glibc's IRELATIVE loop in
//!   `__libc_start_main` called its own return address, left the return
//!   address on the stack, and RSP stayed 8 bytes off: a `movaps` to the
//!   stack raised #GP later);
//! - pointer on served memory (any stack): the return address is written
//!   over the pointer, and the real stack slot keeps stale bytes.
//!
//! Both reach cxlvmm as an 8-byte MMIO access at the wrong address. On such
//! an access the vCPU's instruction is decoded; for `call *m64` the
//! address the access should have gone to is computed from the registers
//! and the guest's page tables ([`corrected`]), and the access is served
//! there (guest RAM or the exit path).

use crate::vector_mmio::decode::{modrm_operand, prefixes, Segment};

/// Where a `call *m64` reads its target and pushes its return address
/// (linear addresses).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CallSite {
    pub target_at: u64,
    pub slot_at: u64,
}

/// RSP in the order rax, rcx, rdx, rbx, rsp, ...
const RSP: usize = 4;

/// If `insn` (the bytes at `rip`, 64-bit mode) is `call *m64` (FF /2 with a
/// memory operand), its two accesses given the general registers and the
/// FS and GS bases.
pub fn decode_call(insn: &[u8], gpr: &[u64; 16], rip: u64, fs: u64, gs: u64) -> Option<CallSite> {
    let p = prefixes(insn)?;
    if *insn.get(p.len)? != 0xff {
        return None;
    }
    let (reg, mem, len) = modrm_operand(insn, p.len + 1, &p)?;
    // /2 is the near call (REX.R does not extend an opcode extension).
    if reg & 7 != 2 || len > 15 {
        return None;
    }
    let base = match mem.segment {
        Segment::Fs => fs,
        Segment::Gs => gs,
        Segment::Flat => 0,
    };
    Some(CallSite {
        target_at: mem.linear(gpr, rip.wrapping_add(len as u64), base),
        slot_at: gpr[RSP].wrapping_sub(8),
    })
}

/// The guest-physical address an 8-byte `write` (or read) of `site` that
/// exited at `exit_gpa` should have gone to, if that is another one: the
/// read is the target's, the write the return address's. `translate` maps
/// a linear address to a guest-physical one. None: the access is right, or
/// its page is not mapped (the guest then gets what KVM decided), or the
/// access straddles a page.
pub fn corrected(
    site: &CallSite,
    write: bool,
    exit_gpa: u64,
    translate: impl Fn(u64) -> Option<u64>,
) -> Option<u64> {
    let at = if write { site.slot_at } else { site.target_at };
    if at % 4096 > 4096 - 8 {
        return None;
    }
    let gpa = translate(at)?;
    (gpa != exit_gpa).then_some(gpa)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn regs(rbx: u64, rsp: u64) -> [u64; 16] {
        let mut g = [0; 16];
        g[3] = rbx;
        g[RSP] = rsp;
        g
    }

    /// Linear page → guest-physical page, as the guest's tables would.
    fn pages(map: &[(u64, u64)]) -> impl Fn(u64) -> Option<u64> + '_ {
        move |la| {
            map.iter()
                .find(|(l, _)| *l == la & !0xfff)
                .map(|(_, p)| p | (la & 0xfff))
        }
    }

    #[test]
    fn decodes_near_indirect_calls_through_memory_only() {
        // call *0x10(%rbx): glibc's IRELATIVE loop.
        let s = decode_call(
            &[0xff, 0x53, 0x10],
            &regs(0x4003f8, 0x7ffd_0410),
            0x403bc0,
            0,
            0,
        )
        .unwrap();
        assert_eq!(s.target_at, 0x400408);
        assert_eq!(s.slot_at, 0x7ffd_0408);
        // call *0x2fe2(%rip): relative to the next instruction (6 bytes on).
        let s = decode_call(&[0xff, 0x15, 0xe2, 0x2f, 0, 0], &[0; 16], 0x1000, 0, 0).unwrap();
        assert_eq!(s.target_at, 0x1006 + 0x2fe2);
        // call *%fs:0x28 and call *0x8(%r12,%rax,8)
        let s = decode_call(
            &[0x64, 0xff, 0x14, 0x25, 0x28, 0, 0, 0],
            &[0; 16],
            0,
            0x7000,
            0,
        );
        assert_eq!(s.unwrap().target_at, 0x7028);
        let mut g = [0; 16];
        g[12] = 0x1000;
        g[0] = 3;
        let s = decode_call(&[0x41, 0xff, 0x54, 0xc4, 0x08], &g, 0, 0, 0).unwrap();
        assert_eq!(s.target_at, 0x1000 + 3 * 8 + 8);
        // Not ours: call *%rax (register), jmp *(%rax) (/4), push (%rax) (/6),
        // a direct call.
        assert_eq!(decode_call(&[0xff, 0xd0], &g, 0, 0, 0), None);
        assert_eq!(decode_call(&[0xff, 0x20], &g, 0, 0, 0), None);
        assert_eq!(decode_call(&[0xff, 0x30], &g, 0, 0, 0), None);
        assert_eq!(decode_call(&[0xe8, 0, 0, 0, 0], &g, 0, 0, 0), None);
        assert_eq!(decode_call(&[0xff], &g, 0, 0, 0), None);
    }

    /// The rig's case: the read that exited went to the stack slot's page
    /// offset 0x408; the target lives in RAM at offset 0x408 of another page.
    #[test]
    fn a_target_read_from_the_stack_slot_goes_to_the_target() {
        let site = CallSite {
            target_at: 0x400408,
            slot_at: 0x7ffd_b000_0408,
        };
        let t = pages(&[(0x400000, 0x2_000), (0x7ffd_b000_0000, 0x1_0000_0000)]);
        assert_eq!(corrected(&site, false, 0x1_0000_0408, &t), Some(0x2_408));
        // The push that follows went where it should.
        assert_eq!(corrected(&site, true, 0x1_0000_0408, &t), None);
    }

    #[test]
    fn a_return_address_written_over_the_target_goes_to_the_stack() {
        let site = CallSite {
            target_at: 0x5555_0120,
            slot_at: 0x7ffd_0120,
        };
        let t = pages(&[(0x5555_0000, 0x1_0000_3000), (0x7ffd_0000, 0x9000)]);
        // The read of the target was right.
        assert_eq!(corrected(&site, false, 0x1_0000_3120, &t), None);
        // The write went to the target's address: it belongs on the stack.
        assert_eq!(corrected(&site, true, 0x1_0000_3120, &t), Some(0x9120));
    }

    #[test]
    fn unmapped_or_straddling_accesses_are_left_alone() {
        let site = CallSite {
            target_at: 0x5555_0ffc,
            slot_at: 0x7ffd_0120,
        };
        let t = pages(&[(0x5555_0000, 0x3000)]);
        assert_eq!(corrected(&site, false, 0x1_0000_0ffc, &t), None);
        assert_eq!(corrected(&site, true, 0x1_0000_0120, &t), None);
    }
}
