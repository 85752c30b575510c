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
//! Both reach cxlvmm as an 8-byte MMIO access at the wrong address, and the
//! access is served where it belonged (guest RAM or the exit path),
//! computed from the registers and the guest's page tables:
//!
//! - a read exits in the middle of the instruction, with RIP at it: the
//!   call is decoded there and its target read from the target's address
//!   ([`corrected_read`]);
//! - a write exits after KVM finished the instruction, with RIP at the
//!   call's target and RSP at the pushed slot: the call is the one that
//!   ends at the return address the write carries ([`calls_returning_to`]),
//!   and the write goes to the slot only if that call's target is read
//!   from where the write went ([`corrected_push`]). Decoding at RIP would
//!   see the next instruction: the push went uncorrected, and an ordinary
//!   store just before a `call *m64` was sent to the stack.

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
    decode_call_len(insn, gpr, rip, fs, gs).map(|(site, _)| site)
}

/// [`decode_call`], and the instruction's length.
fn decode_call_len(
    insn: &[u8],
    gpr: &[u64; 16],
    rip: u64,
    fs: u64,
    gs: u64,
) -> Option<(CallSite, usize)> {
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
    let site = CallSite {
        target_at: mem.linear(gpr, rip.wrapping_add(len as u64), base),
        slot_at: gpr[RSP].wrapping_sub(8),
    };
    Some((site, len))
}

/// The `call *m64` instructions that could have pushed `ret`, the return
/// address an 8-byte write exit carries: each decoding of the bytes just
/// before `ret` (`before`, its last byte at `ret - 1`) as such a call that
/// ends exactly at `ret`. KVM finishes an instruction before it exits for
/// its MMIO write (arch/x86/kvm/x86.c, `x86_emulate_instruction`: the
/// writeback is skipped only for reads), so `gpr_after` holds the registers
/// after the call: RSP already points at the pushed slot, and an operand
/// based on RSP is computed from RSP as it was before the push.
pub fn calls_returning_to(
    before: &[u8],
    ret: u64,
    gpr_after: &[u64; 16],
    fs: u64,
    gs: u64,
) -> Vec<CallSite> {
    let mut gpr = *gpr_after;
    gpr[RSP] = gpr[RSP].wrapping_add(8);
    (2..=before.len().min(15))
        .filter_map(|k| {
            let insn = &before[before.len() - k..];
            let rip = ret.wrapping_sub(k as u64);
            decode_call_len(insn, &gpr, rip, fs, gs).filter(|&(_, len)| len == k)
        })
        .map(|(site, _)| site)
        .collect()
}

/// The guest-physical address the 8-byte read of `site`'s target that
/// exited at `exit_gpa` should have gone to, if that is another one (it
/// went to the stack slot's page offset). None: the read is right, or the
/// target's page is not mapped (the guest then gets what KVM decided), or
/// the target straddles a page.
pub fn corrected_read(
    site: &CallSite,
    exit_gpa: u64,
    translate: impl Fn(u64) -> Option<u64>,
) -> Option<u64> {
    let gpa = translate_whole(site.target_at, &translate)?;
    (gpa != exit_gpa).then_some(gpa)
}

/// Where an 8-byte write that exited at `exit_gpa` belongs if it is the
/// push of one of `sites` (from [`calls_returning_to`]) that KVM put on
/// that call's target pointer: the stack slot. None for any other write:
/// no such call reads its target from `exit_gpa`, or the slot is there
/// anyway, unmapped or straddles a page.
pub fn corrected_push(
    sites: &[CallSite],
    exit_gpa: u64,
    translate: impl Fn(u64) -> Option<u64>,
) -> Option<u64> {
    sites.iter().find_map(|site| {
        if translate_whole(site.target_at, &translate)? != exit_gpa {
            return None;
        }
        let slot = translate_whole(site.slot_at, &translate)?;
        (slot != exit_gpa).then_some(slot)
    })
}

/// The guest-physical address of 8 bytes at linear `at`, if mapped and on
/// one page.
fn translate_whole(at: u64, translate: &impl Fn(u64) -> Option<u64>) -> Option<u64> {
    if at % 4096 > 4096 - 8 {
        return None;
    }
    translate(at)
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
        assert_eq!(corrected_read(&site, 0x1_0000_0408, &t), Some(0x2_408));
        // The push that follows went where it should.
        assert_eq!(corrected_push(&[site], 0x1_0000_0408, &t), None);
    }

    #[test]
    fn a_return_address_written_over_the_target_goes_to_the_stack() {
        let site = CallSite {
            target_at: 0x5555_0120,
            slot_at: 0x7ffd_0120,
        };
        let t = pages(&[(0x5555_0000, 0x1_0000_3000), (0x7ffd_0000, 0x9000)]);
        // The read of the target was right.
        assert_eq!(corrected_read(&site, 0x1_0000_3120, &t), None);
        // The write went to the target's address: it belongs on the stack.
        assert_eq!(corrected_push(&[site], 0x1_0000_3120, &t), Some(0x9120));
    }

    #[test]
    fn unmapped_or_straddling_accesses_are_left_alone() {
        let site = CallSite {
            target_at: 0x5555_0ffc,
            slot_at: 0x7ffd_0120,
        };
        let t = pages(&[(0x5555_0000, 0x3000)]);
        assert_eq!(corrected_read(&site, 0x1_0000_0ffc, &t), None);
        assert_eq!(corrected_push(&[site], 0x1_0000_0ffc, &t), None);
    }

    /// A write exit comes after KVM finished the instruction: RIP is the
    /// call's target and RSP the pushed slot. The call is found from the
    /// return address the write carries.
    #[test]
    fn a_push_is_traced_back_to_the_call_that_ends_at_its_return_address() {
        // mov %rax,%rbx (3 bytes), then call *0x120(%rbx) (6 bytes), which
        // returns to 0x401009.
        let before = [0x48, 0x89, 0xc3, 0xff, 0x93, 0x20, 0x01, 0x00, 0x00];
        let after = regs(0x5555_0000, 0x7ffd_0120);
        let sites = calls_returning_to(&before, 0x401009, &after, 0, 0);
        assert_eq!(
            sites,
            vec![CallSite {
                target_at: 0x5555_0120,
                slot_at: 0x7ffd_0120,
            }]
        );
        // An operand based on RSP is the one before the push:
        // call *0x18(%rsp) with RSP 0x7ffd_0120 after it reads 0x7ffd_0140.
        let sites = calls_returning_to(&[0xff, 0x54, 0x24, 0x18], 0x2000, &after, 0, 0);
        assert_eq!(sites[0].target_at, 0x7ffd_0140);
        assert_eq!(sites[0].slot_at, 0x7ffd_0120);
        // No call ends there: a direct call, or nothing.
        assert!(calls_returning_to(&[0xe8, 1, 2, 3, 4], 0x2000, &after, 0, 0).is_empty());
        assert!(calls_returning_to(&[], 0x2000, &after, 0, 0).is_empty());
    }

    /// Any 8-byte store that is not such a push is served where it went,
    /// even when its value looks like a return address: the call's target
    /// must be read from the very place the store went.
    #[test]
    fn an_ordinary_store_is_not_taken_for_a_push() {
        let t = pages(&[(0x5555_0000, 0x1_0000_3000), (0x7ffd_0000, 0x9000)]);
        let site = CallSite {
            target_at: 0x5555_0120,
            slot_at: 0x7ffd_0120,
        };
        // A spill to 0x10(%rsp) just before the call: elsewhere.
        assert_eq!(corrected_push(&[site], 0x9130, &t), None);
        assert_eq!(corrected_push(&[], 0x1_0000_3120, &t), None);
    }
}
