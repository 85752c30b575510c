//! Bare-metal payloads for the host's /dev/kvm, shared by the integration
//! tests and the benchmarks: a minimal ELF64 image, and a pointer chase
//! over a timed CXL window that the payload commits itself.

// Each user (a test binary, a benchmark) takes what it needs.
#![allow(dead_code)]

use fabric::topology::Topology;
use vmm::cxl::plan::{plan, FunctionKind};
use vmm::layout::{CXL_MMIO32_END, CXL_MMIO32_START, PDPT_START};
use vmm::memory::ram_end;

/// Where the payload is loaded and starts.
pub const LOAD_ADDR: u64 = 0x10_0000;

/// A minimal ELF64 executable with one PT_LOAD segment holding `code`.
pub fn elf(code: &[u8]) -> Vec<u8> {
    let code_off = 0x1000u64;
    let mut e = vec![0u8; code_off as usize];
    e[..4].copy_from_slice(b"\x7fELF");
    e[4] = 2; // 64-bit
    e[5] = 1; // little endian
    e[6] = 1; // version
    let put16 = |e: &mut Vec<u8>, o: usize, v: u16| e[o..o + 2].copy_from_slice(&v.to_le_bytes());
    let put32 = |e: &mut Vec<u8>, o: usize, v: u32| e[o..o + 4].copy_from_slice(&v.to_le_bytes());
    let put64 = |e: &mut Vec<u8>, o: usize, v: u64| e[o..o + 8].copy_from_slice(&v.to_le_bytes());
    put16(&mut e, 16, 2); // ET_EXEC
    put16(&mut e, 18, 0x3e); // x86-64
    put32(&mut e, 20, 1);
    put64(&mut e, 24, LOAD_ADDR); // entry
    put64(&mut e, 32, 64); // phoff
    put16(&mut e, 52, 64); // ehsize
    put16(&mut e, 54, 56); // phentsize
    put16(&mut e, 56, 1); // phnum
    put16(&mut e, 58, 64); // shentsize
    let ph = 64;
    put32(&mut e, ph, 1); // PT_LOAD
    put32(&mut e, ph + 4, 5); // R+X
    put64(&mut e, ph + 8, code_off);
    put64(&mut e, ph + 16, LOAD_ADDR); // vaddr
    put64(&mut e, ph + 24, LOAD_ADDR); // paddr
    put64(&mut e, ph + 32, code.len() as u64);
    put64(&mut e, ph + 40, code.len() as u64);
    put64(&mut e, ph + 48, 0x1000);
    e.extend_from_slice(code);
    e
}

/// The topology of the timed chase: one type-3 straight below a host
/// bridge's only root port, so the host bridge decodes as passthrough
/// (`vmm/src/cxl/regions/tree.rs`) and only the endpoint's decoder needs
/// committing.
pub const CHASE_TOPOLOGY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/direct.toml");

/// The guest memory the chase runs with (`--memory`), which places the
/// windows and BARs.
pub const CHASE_MEMORY: u64 = 128 << 20;

/// A pointer chase over the first window of [`CHASE_TOPOLOGY`].
#[derive(Clone, Copy, Debug)]
pub struct Chase {
    /// Lines in the cycle (≥ 2), each `stride` bytes after the last.
    pub lines: u64,
    pub stride: u64,
    /// Dependent 8-byte loads after the cycle is built.
    pub loads: u64,
}

impl Chase {
    /// Timed accesses the payload makes: one store per line, then the loads.
    pub fn accesses(&self) -> u64 {
        self.lines + self.loads
    }
}

/// The payload exits (test-exit port) with this when every load returned
/// the pointer it should; 1 if the decoder did not commit, 2 if the chase
/// ended elsewhere.
pub const CHASE_OK: i32 = 7;

// The code commits the endpoint's HDM decoder 0 over the window (CXL 3.1
// §8.2.4.20: base, size, DPA skip, then Commit; it checks Committed), maps
// the window's GiB through a page directory the image carries, writes a
// cycle of pointers `stride` apart, and chases it. Its parameters are
// qwords at `PARAMS`; the page directory is at `PAGE_DIR`.
#[rustfmt::skip]
const CHASE_CODE: &[u8] = &[
    0x48, 0x8b, 0x1c, 0x25, 0x00, 0x04, 0x10, 0x00, // mov rbx, [PARAMS]       ; HDM capability
    0xc7, 0x43, 0x04, 0x02, 0x00, 0x00, 0x00,       // mov dword [rbx+4], 2    ; HDM Decoder Enable
    0x48, 0x8b, 0x04, 0x25, 0x08, 0x04, 0x10, 0x00, // mov rax, [PARAMS+8]     ; window base
    0x89, 0x43, 0x10,                               // mov [rbx+0x10], eax     ; decoder 0 base low
    0x48, 0xc1, 0xe8, 0x20,                         // shr rax, 32
    0x89, 0x43, 0x14,                               // mov [rbx+0x14], eax     ; base high
    0xc7, 0x43, 0x18, 0x00, 0x00, 0x00, 0x10,       // mov dword [rbx+0x18], 256 MiB ; size low
    0xc7, 0x43, 0x1c, 0x00, 0x00, 0x00, 0x00,       // mov dword [rbx+0x1c], 0 ; size high
    0xc7, 0x43, 0x24, 0x00, 0x00, 0x00, 0x00,       // mov dword [rbx+0x24], 0 ; DPA skip low
    0xc7, 0x43, 0x28, 0x00, 0x00, 0x00, 0x00,       // mov dword [rbx+0x28], 0 ; DPA skip high
    0xc7, 0x43, 0x20, 0x00, 0x02, 0x00, 0x00,       // mov dword [rbx+0x20], 0x200 ; Commit, 1 way
    0xb0, 0x01,                                     // mov al, 1
    0x8b, 0x4b, 0x20,                               // mov ecx, [rbx+0x20]
    0xf7, 0xc1, 0x00, 0x04, 0x00, 0x00,             // test ecx, 0x400         ; Committed?
    0x74, 0x6a,                                     // jz out
    0x48, 0x8b, 0x3c, 0x25, 0x10, 0x04, 0x10, 0x00, // mov rdi, [PARAMS+0x10]  ; the PDPT entry
    0x48, 0x8b, 0x04, 0x25, 0x18, 0x04, 0x10, 0x00, // mov rax, [PARAMS+0x18]  ; PAGE_DIR | P | RW
    0x48, 0x89, 0x07,                               // mov [rdi], rax
    0x0f, 0x20, 0xd8,                               // mov rax, cr3
    0x0f, 0x22, 0xd8,                               // mov cr3, rax            ; flush the TLB
    0x48, 0x8b, 0x34, 0x25, 0x08, 0x04, 0x10, 0x00, // mov rsi, [PARAMS+8]     ; base
    0x48, 0x8b, 0x0c, 0x25, 0x20, 0x04, 0x10, 0x00, // mov rcx, [PARAMS+0x20]  ; lines
    0x48, 0x8b, 0x14, 0x25, 0x28, 0x04, 0x10, 0x00, // mov rdx, [PARAMS+0x28]  ; stride
    0x48, 0x89, 0xf7,                               // mov rdi, rsi
    0x48, 0xff, 0xc9,                               // dec rcx
    0x48, 0x8d, 0x04, 0x17,                         // build: lea rax, [rdi+rdx]
    0x48, 0x89, 0x07,                               //        mov [rdi], rax
    0x48, 0x89, 0xc7,                               //        mov rdi, rax
    0x48, 0xff, 0xc9,                               //        dec rcx
    0x75, 0xf1,                                     //        jnz build
    0x48, 0x89, 0x37,                               // mov [rdi], rsi          ; the last line points to the first
    0x48, 0x89, 0xf0,                               // mov rax, rsi
    0x48, 0x8b, 0x0c, 0x25, 0x30, 0x04, 0x10, 0x00, // mov rcx, [PARAMS+0x30]  ; loads
    0x48, 0x8b, 0x00,                               // chase: mov rax, [rax]
    0x48, 0xff, 0xc9,                               //        dec rcx
    0x75, 0xf8,                                     //        jnz chase
    0x48, 0x3b, 0x04, 0x25, 0x38, 0x04, 0x10, 0x00, // cmp rax, [PARAMS+0x38]  ; where it must end
    0xb0, 0x02,                                     // mov al, 2
    0x75, 0x02,                                     // jne out
    0xb0, 0x07,                                     // mov al, 7
    0xe6, 0xf4,                                     // out: out 0xf4, al
    0xf4,                                           // halt: hlt
    0xeb, 0xfd,                                     //       jmp halt
];

const PARAMS: usize = 0x400;
const PAGE_DIR: usize = 0x1000;

/// The chase's ELF image, for a guest of [`CHASE_MEMORY`] with
/// [`CHASE_TOPOLOGY`].
pub fn timed_chase(c: &Chase) -> Vec<u8> {
    // The code's loops count down to zero: at least two lines, one load.
    assert!(c.lines >= 2 && c.loads >= 1, "{c:?}");
    assert!(c.stride >= 8 && c.stride.is_multiple_of(8), "{c:?}");
    assert!(
        c.lines
            .checked_mul(c.stride)
            .is_some_and(|b| b <= 256 << 20),
        "the chase must fit the 256 MiB window: {c:?}"
    );
    let topo = Topology::from_toml_str(&std::fs::read_to_string(CHASE_TOPOLOGY).unwrap())
        .expect("examples/direct.toml parses");
    let plan = plan(
        &topo,
        (CXL_MMIO32_START, CXL_MMIO32_END),
        ram_end(CHASE_MEMORY),
    )
    .expect("examples/direct.toml plans");
    let mem0 = plan
        .functions
        .iter()
        .find(|f| f.kind == FunctionKind::Type3 { index: 0 })
        .expect("a type-3");
    let bar0 = mem0.bars.iter().find(|b| b.0 == 0).expect("BAR0").1;
    // The CXL.cache/mem area is 4 KiB into the component block, the HDM
    // capability at 0x128 in it (devices/src/cxl/component/caps.rs).
    let hdm = bar0 + 0x1000 + 0x128;
    let base = plan.windows[0].base;
    let gib = base >> 30;
    assert!(gib < 512, "the window must be in PML4 entry 0's 512 GiB");
    let mut image = vec![0u8; PAGE_DIR + 0x1000];
    image[..CHASE_CODE.len()].copy_from_slice(CHASE_CODE);
    let pdpte = PDPT_START + 8 * gib;
    let page_dir = LOAD_ADDR + PAGE_DIR as u64;
    let end = base + (c.loads % c.lines) * c.stride;
    let params = [
        hdm,
        base,
        pdpte,
        page_dir | 0x3,
        c.lines,
        c.stride,
        c.loads,
        end,
    ];
    for (i, p) in params.iter().enumerate() {
        image[PARAMS + 8 * i..PARAMS + 8 * i + 8].copy_from_slice(&p.to_le_bytes());
    }
    // 2 MiB pages over the window's GiB: present, writable, PS.
    for i in 0..512u64 {
        let entry = ((gib << 30) + (i << 21)) | 0x83;
        let at = PAGE_DIR + 8 * i as usize;
        image[at..at + 8].copy_from_slice(&entry.to_le_bytes());
    }
    elf(&image)
}
