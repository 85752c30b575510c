//! A hung guest's kernel stack, for diagnostics: virtual addresses are
//! translated through the guest's own 4-level page tables in guest RAM, and
//! the stack words that look like kernel text addresses are reported (the
//! return addresses of a backtrace, plus some noise), to be named from the
//! guest's /proc/kallsyms (scripts/guest-symbols; Debian ships no real
//! System.map).

use vm_memory::{Bytes, GuestAddress};

use crate::memory::GuestMemory;

const PRESENT: u64 = 1;
const PAGE_SIZE_BIT: u64 = 1 << 7;
const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;
/// CR4.LA57: 5-level paging, which this walker does not handle.
const CR4_LA57: u64 = 1 << 12;
/// Kernel text and modules live in the top 2 GiB on x86-64.
const KERNEL_TEXT_START: u64 = 0xffff_ffff_8000_0000;

fn entry(mem: &GuestMemory, table: u64, index: u64) -> Option<u64> {
    let e: u64 = mem
        .read_obj(GuestAddress((table & ADDR_MASK) + index * 8))
        .ok()?;
    (e & PRESENT != 0).then_some(e)
}

/// The guest-physical address of `va` under `cr3`, or None if unmapped.
pub fn translate(mem: &GuestMemory, cr3: u64, cr4: u64, va: u64) -> Option<u64> {
    if cr4 & CR4_LA57 != 0 {
        return None;
    }
    let idx = |shift: u32| (va >> shift) & 0x1ff;
    let pml4e = entry(mem, cr3, idx(39))?;
    let pdpte = entry(mem, pml4e, idx(30))?;
    if pdpte & PAGE_SIZE_BIT != 0 {
        return Some((pdpte & ADDR_MASK & !0x3fff_ffff) | (va & 0x3fff_ffff));
    }
    let pde = entry(mem, pdpte, idx(21))?;
    if pde & PAGE_SIZE_BIT != 0 {
        return Some((pde & ADDR_MASK & !0x1f_ffff) | (va & 0x1f_ffff));
    }
    let pte = entry(mem, pde, idx(12))?;
    Some((pte & ADDR_MASK) | (va & 0xfff))
}

/// The longest x86 instruction.
pub const MAX_INSN_LEN: usize = 15;

/// Up to [`MAX_INSN_LEN`] bytes of code at linear address `rip`, read page
/// by page through `translate` (an instruction may straddle two pages that
/// are not adjacent in guest memory); fewer where the next page is not
/// mapped or not RAM.
pub fn read_code(mem: &GuestMemory, rip: u64, translate: impl Fn(u64) -> Option<u64>) -> Vec<u8> {
    let mut insn = [0u8; MAX_INSN_LEN];
    let mut got = 0;
    while got < insn.len() {
        let la = rip.wrapping_add(got as u64);
        let run = ((4096 - la % 4096) as usize).min(insn.len() - got);
        let Some(gpa) = translate(la) else { break };
        if mem
            .read_slice(&mut insn[got..got + run], GuestAddress(gpa))
            .is_err()
        {
            break;
        }
        got += run;
    }
    insn[..got].to_vec()
}

/// Up to [`MAX_INSN_LEN`] bytes of code ending just before linear address
/// `end` (the instruction a return address comes after); fewer where the
/// page before `end`'s is not mapped: then only what lies on `end`'s page.
pub fn read_code_before(
    mem: &GuestMemory,
    end: u64,
    translate: impl Fn(u64) -> Option<u64>,
) -> Vec<u8> {
    let max = MAX_INSN_LEN as u64;
    let code = read_code(mem, end.wrapping_sub(max), &translate);
    if code.len() as u64 == max {
        return code;
    }
    let page = end & !0xfff;
    if end - page >= max {
        return Vec::new();
    }
    let mut code = read_code(mem, page, &translate);
    code.truncate((end - page) as usize);
    code
}

/// Up to `words` stack words from `rsp` (stopping at the first unmapped
/// page) that point into kernel text or modules.
pub fn kernel_text_words(mem: &GuestMemory, cr3: u64, cr4: u64, rsp: u64, words: u64) -> Vec<u64> {
    let mut out = Vec::new();
    for i in 0..words {
        let Some(va) = rsp.checked_add(i * 8) else {
            break;
        };
        let Some(pa) = translate(mem, cr3, cr4, va) else {
            break;
        };
        match mem.read_obj::<u64>(GuestAddress(pa)) {
            Ok(w) if w >= KERNEL_TEXT_START && w != u64::MAX => out.push(w),
            Ok(_) => {}
            Err(_) => break,
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walks_4k_and_2m_mappings_and_finds_text_words() {
        let mem = GuestMemory::from_ranges(&[(GuestAddress(0), 0x40_0000)]).unwrap();
        let w = |a: u64, v: u64| mem.write_obj(v, GuestAddress(a)).unwrap();
        // PML4 at 0x1000 -> PDPT 0x2000 -> PD 0x3000 -> PT 0x4000.
        let va: u64 = 0xffff_c900_0000_5000;
        let i = |s: u32| (va >> s) & 0x1ff;
        w(0x1000 + i(39) * 8, 0x2000 | PRESENT);
        w(0x2000 + i(30) * 8, 0x3000 | PRESENT);
        w(0x3000 + i(21) * 8, 0x4000 | PRESENT);
        w(0x4000 + i(12) * 8, 0x10_0000 | PRESENT);
        assert_eq!(translate(&mem, 0x1000, 0, va + 0x18), Some(0x10_0018));
        assert_eq!(translate(&mem, 0x1000, CR4_LA57, va), None);
        // A 2 MiB page one PD slot further.
        w(
            0x3000 + (i(21) + 1) * 8,
            0x20_0000 | PRESENT | PAGE_SIZE_BIT,
        );
        assert_eq!(
            translate(&mem, 0x1000, 0, va + 0x20_0000 + 0x123),
            Some(0x20_5123)
        );
        // Stack: a text address, a data word, a module address; then the
        // next page is unmapped and the scan stops there.
        let stack = va + 0xfe8;
        w(0x10_0fe8, 0xffff_ffff_8100_1234);
        w(0x10_0ff0, 0xffff_8880_0000_0000);
        w(0x10_0ff8, 0xffff_ffff_c043_c20c);
        assert_eq!(
            kernel_text_words(&mem, 0x1000, 0, stack, 8),
            vec![0xffff_ffff_8100_1234, 0xffff_ffff_c043_c20c]
        );
    }

    #[test]
    fn code_is_read_page_by_page_and_stops_at_an_unmapped_page() {
        let mem = GuestMemory::from_ranges(&[(GuestAddress(0), 0x10_0000)]).unwrap();
        mem.write_slice(&[0xff, 0x53], GuestAddress(0x3ffe))
            .unwrap();
        mem.write_slice(&[0x10, 0x90], GuestAddress(0x8000))
            .unwrap();
        // Linear page 0x1000 is at 0x3000, the next one (0x2000) at 0x8000:
        // the call's last byte comes from the second frame, not from 0x4000.
        let split = |la: u64| match la >> 12 {
            1 => Some(0x3000 | (la & 0xfff)),
            2 => Some(0x8000 | (la & 0xfff)),
            _ => None,
        };
        let code = read_code(&mem, 0x1ffe, split);
        assert_eq!(code.len(), MAX_INSN_LEN);
        assert_eq!(&code[..4], &[0xff, 0x53, 0x10, 0x90]);
        // Page 0x2000 unmapped: only the two bytes before it.
        let first_only = |la: u64| (la >> 12 == 1).then_some(0x3000 | (la & 0xfff));
        assert_eq!(read_code(&mem, 0x1ffe, first_only), vec![0xff, 0x53]);
        // Not RAM at all: nothing.
        assert!(read_code(&mem, 0x1000, |_| Some(0x20_0000)).is_empty());
    }

    #[test]
    fn code_before_an_address_spans_pages_or_stops_at_its_own_page() {
        let mem = GuestMemory::from_ranges(&[(GuestAddress(0), 0x10_0000)]).unwrap();
        let code: Vec<u8> = (1..=15).collect();
        // The 15 bytes before linear 0x2005: 10 at the end of frame 0x3000,
        // 5 at the start of frame 0x8000.
        mem.write_slice(&code[..10], GuestAddress(0x3ff6)).unwrap();
        mem.write_slice(&code[10..], GuestAddress(0x8000)).unwrap();
        let split = |la: u64| match la >> 12 {
            1 => Some(0x3000 | (la & 0xfff)),
            2 => Some(0x8000 | (la & 0xfff)),
            _ => None,
        };
        assert_eq!(read_code_before(&mem, 0x2005, split), code);
        // The page before is not mapped: the 5 bytes on the address's page.
        let second_only = |la: u64| (la >> 12 == 2).then_some(0x8000 | (la & 0xfff));
        assert_eq!(read_code_before(&mem, 0x2005, second_only), code[10..]);
        // Far enough into its page that 15 bytes fit there, but unmapped.
        assert!(read_code_before(&mem, 0x2100, |_| None).is_empty());
    }
}
