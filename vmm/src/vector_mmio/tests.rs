use std::collections::HashMap;

use super::decode::MemOperand;
use super::*;

/// Encodings as GNU as 2.40 writes them (objdump beside each).
fn dec(bytes: &[u8]) -> VectorMove {
    decode(bytes).unwrap_or_else(|| panic!("{bytes:02x?} did not decode"))
}

fn mem(base: Option<u8>, index: Option<u8>, scale: u8, disp: i64) -> MemOperand {
    MemOperand {
        base,
        index,
        scale,
        disp,
        rip_relative: false,
        addr32: false,
        segment: Segment::Flat,
    }
}

#[test]
fn decodes_each_move_kvm_lacks() {
    // movq %xmm0,0x1d9f48(%rip): busybox md5sum's store that died of SIGILL.
    let m = dec(&[0x66, 0x0f, 0xd6, 0x05, 0x48, 0x9f, 0x1d, 0x00]);
    assert_eq!((m.len, m.store, m.xmm, m.width), (8, true, 0, 8));
    assert!(m.mem.rip_relative);
    assert_eq!(m.mem.disp, 0x1d9f48);
    assert_eq!(m.mem.linear(&[0; 16], 0x1000, 0), 0x1000 + 0x1d9f48);

    // movsd (%rax),%xmm1
    let m = dec(&[0xf2, 0x0f, 0x10, 0x08]);
    assert_eq!(
        (m.len, m.store, m.xmm, m.width, m.lanes),
        (4, false, 1, 8, Lanes::LowClearRest)
    );
    assert_eq!(m.mem, mem(Some(0), None, 1, 0));
    // movsd %xmm9,0x8(%rsp)
    let m = dec(&[0xf2, 0x44, 0x0f, 0x11, 0x4c, 0x24, 0x08]);
    assert_eq!((m.len, m.store, m.xmm, m.width), (7, true, 9, 8));
    assert_eq!(m.mem, mem(Some(4), None, 1, 8));
    // movss -0x4(%rbp),%xmm2
    let m = dec(&[0xf3, 0x0f, 0x10, 0x55, 0xfc]);
    assert_eq!((m.len, m.store, m.xmm, m.width), (5, false, 2, 4));
    assert_eq!(m.mem, mem(Some(5), None, 1, -4));
    // movss %xmm3,(%rdi,%rcx,4)
    let m = dec(&[0xf3, 0x0f, 0x11, 0x1c, 0x8f]);
    assert_eq!((m.len, m.store, m.xmm, m.width), (5, true, 3, 4));
    assert_eq!(m.mem, mem(Some(7), Some(1), 4, 0));
    // movlps %xmm4,0x10(%rsi)
    let m = dec(&[0x0f, 0x13, 0x66, 0x10]);
    assert_eq!(
        (m.len, m.store, m.xmm, m.width, m.lanes),
        (4, true, 4, 8, Lanes::LowHalf)
    );
    // movlpd 0x100(%rdx),%xmm5
    let m = dec(&[0x66, 0x0f, 0x12, 0xaa, 0x00, 0x01, 0x00, 0x00]);
    assert_eq!(
        (m.len, m.store, m.xmm, m.lanes),
        (8, false, 5, Lanes::LowHalf)
    );
    assert_eq!(m.mem, mem(Some(2), None, 1, 0x100));
    // movhps %xmm6,(%r12)
    let m = dec(&[0x41, 0x0f, 0x17, 0x34, 0x24]);
    assert_eq!(
        (m.len, m.store, m.xmm, m.lanes),
        (5, true, 6, Lanes::HighHalf)
    );
    assert_eq!(m.mem, mem(Some(12), None, 1, 0));
    // movhpd 0x0(%r13,%r14,8),%xmm7
    let m = dec(&[0x66, 0x43, 0x0f, 0x16, 0x7c, 0xf5, 0x00]);
    assert_eq!(
        (m.len, m.store, m.xmm, m.lanes),
        (7, false, 7, Lanes::HighHalf)
    );
    assert_eq!(m.mem, mem(Some(13), Some(14), 8, 0));
    // movd 0xc(%rbx),%xmm8
    let m = dec(&[0x66, 0x44, 0x0f, 0x6e, 0x43, 0x0c]);
    assert_eq!((m.len, m.store, m.xmm, m.width), (6, false, 8, 4));
    // movd %xmm10,(%r8)
    let m = dec(&[0x66, 0x45, 0x0f, 0x7e, 0x10]);
    assert_eq!((m.len, m.store, m.xmm, m.width), (5, true, 10, 4));
    assert_eq!(m.mem, mem(Some(8), None, 1, 0));
    // movq %xmm1,(%rax) in its REX.W 0F 7E form
    let m = dec(&[0x66, 0x48, 0x0f, 0x7e, 0x08]);
    assert_eq!((m.len, m.store, m.xmm, m.width), (5, true, 1, 8));
    // movq 0x8(%r9),%xmm11
    let m = dec(&[0xf3, 0x45, 0x0f, 0x7e, 0x59, 0x08]);
    assert_eq!((m.len, m.store, m.xmm, m.width), (6, false, 11, 8));
    // movq %xmm12,%fs:0x28 (SIB, no base, no index)
    let m = dec(&[0x64, 0x66, 0x44, 0x0f, 0xd6, 0x24, 0x25, 0x28, 0, 0, 0]);
    assert_eq!((m.len, m.store, m.xmm), (11, true, 12));
    assert_eq!(m.mem.segment, Segment::Fs);
    assert_eq!((m.mem.base, m.mem.index, m.mem.disp), (None, None, 0x28));
    assert_eq!(m.mem.linear(&[7; 16], 0, 0x7000), 0x7028);
    // movq %xmm14,0x10(,%rcx,2)
    let m = dec(&[0x66, 0x44, 0x0f, 0xd6, 0x34, 0x4d, 0x10, 0, 0, 0]);
    assert_eq!(
        (m.mem.base, m.mem.index, m.mem.scale, m.mem.disp),
        (None, Some(1), 2, 0x10)
    );
    let mut gpr = [0; 16];
    gpr[1] = 0x100;
    assert_eq!(m.mem.linear(&gpr, 0, 0), 0x210);
    // movd (%eax),%xmm15: 32-bit address
    let m = dec(&[0x67, 0x66, 0x44, 0x0f, 0x6e, 0x38]);
    assert_eq!((m.len, m.xmm), (6, 15));
    gpr[0] = 0xffff_ffff_0000_1234;
    assert_eq!(m.mem.linear(&gpr, 0, 0), 0x1234);
    // movq %gs:(%rbx),%xmm0
    let m = dec(&[0x65, 0xf3, 0x0f, 0x7e, 0x03]);
    assert_eq!((m.mem.segment, m.mem.base), (Segment::Gs, Some(3)));
}

#[test]
fn leaves_what_kvm_handles_and_register_forms_alone() {
    // movups %xmm0,(%rax): KVM's own emulator has it.
    assert_eq!(decode(&[0x0f, 0x11, 0x00]), None);
    // movq %xmm0,%xmm1: no memory operand.
    assert_eq!(decode(&[0xf3, 0x0f, 0x7e, 0xc8]), None);
    // A plain mov, a truncated instruction, a REX before a prefix.
    assert_eq!(decode(&[0x48, 0x89, 0x07]), None);
    assert_eq!(decode(&[0x66, 0x0f, 0xd6]), None);
    assert_eq!(decode(&[0x66, 0x0f, 0xd6, 0x05, 0x48]), None);
    assert_eq!(decode(&[0x48, 0x66, 0x0f, 0xd6, 0x00]), None);
    // Fifteen prefixes: longer than any instruction.
    assert_eq!(decode(&[0x66; 20]), None);
    assert_eq!(decode(&[]), None);
}

#[test]
fn random_bytes_never_panic() {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..200_000 {
        let mut b = [0u8; 15];
        for v in &mut b {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *v = x as u8;
        }
        // Bias towards the interesting opcode space.
        b[(x >> 40) as usize % 4] = 0x0f;
        if let Some(m) = decode(&b) {
            assert!(m.len <= 15 && m.xmm < 16);
            match (m.combine, m.host) {
                (Some(_), _) => assert_eq!((m.width, m.store), (16, false)),
                (None, Some(_)) => assert!(matches!(m.width, 4 | 8 | 16) && !m.store),
                (None, None) => assert!(matches!(m.width, 4 | 8)),
            }
        }
    }
}

struct FakeCpu {
    gpr: [u64; 16],
    rip: u64,
    long_mode: bool,
    xmm: [[u8; 16]; 16],
    fs: u64,
    rflags: u64,
    mxcsr: u32,
    /// Linear page → guest-physical page.
    pages: HashMap<u64, u64>,
}

impl FakeCpu {
    fn new() -> Self {
        FakeCpu {
            gpr: [0; 16],
            rip: 0x40_0000,
            long_mode: true,
            xmm: [[0; 16]; 16],
            fs: 0,
            rflags: 0x202,
            mxcsr: 0x1f80,
            pages: HashMap::new(),
        }
    }
}

impl VcpuView for FakeCpu {
    fn gpr(&self) -> [u64; 16] {
        self.gpr
    }
    fn rip(&self) -> u64 {
        self.rip
    }
    fn long_mode(&self) -> bool {
        self.long_mode
    }
    fn segment_base(&self, s: Segment) -> u64 {
        match s {
            Segment::Fs => self.fs,
            _ => 0,
        }
    }
    fn xmm(&self, i: u8) -> [u8; 16] {
        self.xmm[usize::from(i)]
    }
    fn set_xmm(&mut self, i: u8, v: [u8; 16]) {
        self.xmm[usize::from(i)] = v;
    }
    fn set_rip(&mut self, rip: u64) {
        self.rip = rip;
    }
    fn set_gpr(&mut self, i: u8, v: u64) {
        self.gpr[usize::from(i)] = v;
    }
    fn rflags(&self) -> u64 {
        self.rflags
    }
    fn set_rflags(&mut self, v: u64) {
        self.rflags = v;
    }
    fn mxcsr(&self) -> u32 {
        self.mxcsr
    }
    fn set_mxcsr(&mut self, v: u32) {
        self.mxcsr = v;
    }
    fn translate(&self, linear: u64) -> Option<u64> {
        self.pages
            .get(&(linear & !0xfff))
            .map(|p| p | (linear & 0xfff))
    }
}

/// Guest-physical bytes; every access costs 1000 ps.
#[derive(Default)]
struct FakeMemory {
    bytes: HashMap<u64, u8>,
    accesses: Vec<(u64, usize, bool)>,
}

impl PhysicalAccess for FakeMemory {
    fn read(&mut self, gpa: u64, buf: &mut [u8]) -> Option<u64> {
        for (i, b) in buf.iter_mut().enumerate() {
            *b = *self.bytes.get(&(gpa + i as u64)).unwrap_or(&0);
        }
        self.accesses.push((gpa, buf.len(), false));
        Some(1000)
    }
    fn write(&mut self, gpa: u64, data: &[u8]) -> Option<u64> {
        for (i, b) in data.iter().enumerate() {
            self.bytes.insert(gpa + i as u64, *b);
        }
        self.accesses.push((gpa, data.len(), true));
        Some(1000)
    }
}

fn pattern(seed: u8) -> [u8; 16] {
    std::array::from_fn(|i| seed.wrapping_add(i as u8))
}

#[test]
fn a_store_writes_the_low_quadword_and_moves_rip() {
    let mut cpu = FakeCpu::new();
    cpu.xmm[0] = pattern(0x10);
    // movq %xmm0,0x1d9f48(%rip); the target page maps to GPA 0x1_0000_0000.
    let insn = [0x66, 0x0f, 0xd6, 0x05, 0x48, 0x9f, 0x1d, 0x00];
    let target = 0x40_0008 + 0x1d9f48;
    cpu.pages.insert(target & !0xfff, 0x1_0000_0000);
    let mut mem = FakeMemory::default();
    let out = emulate(&mut cpu, &insn, &mut mem);
    assert_eq!(
        out,
        Outcome::Emulated {
            latency_ps: Some(1000)
        }
    );
    assert_eq!(cpu.rip, 0x40_0008);
    let gpa = 0x1_0000_0000 | (target & 0xfff);
    assert_eq!(mem.accesses, vec![(gpa, 8, true)]);
    let got: Vec<u8> = (0..8).map(|i| mem.bytes[&(gpa + i)]).collect();
    assert_eq!(got, pattern(0x10)[..8]);
}

#[test]
fn loads_clear_or_keep_the_rest_of_the_register_as_the_instruction_says() {
    let mut mem = FakeMemory::default();
    for i in 0..16 {
        mem.bytes.insert(0x2000 + i, 0xa0 + i as u8);
    }
    let run = |insn: &[u8], mem: &mut FakeMemory| {
        let mut cpu = FakeCpu::new();
        cpu.gpr[0] = 0x7000;
        cpu.pages.insert(0x7000, 0x2000);
        cpu.xmm[1] = [0x55; 16];
        assert!(matches!(
            emulate(&mut cpu, insn, mem),
            Outcome::Emulated { .. }
        ));
        assert_eq!(cpu.rip, 0x40_0000 + insn.len() as u64);
        cpu.xmm[1]
    };
    let mem_byte = |i: usize| 0xa0 + i as u8;
    // movsd (%rax),%xmm1: 8 bytes, upper half cleared.
    let r = run(&[0xf2, 0x0f, 0x10, 0x08], &mut mem);
    assert!((0..8).all(|i| r[i] == mem_byte(i)) && r[8..].iter().all(|&b| b == 0));
    // movss (%rax),%xmm1: 4 bytes, the rest cleared.
    let r = run(&[0xf3, 0x0f, 0x10, 0x08], &mut mem);
    assert!((0..4).all(|i| r[i] == mem_byte(i)) && r[4..].iter().all(|&b| b == 0));
    // movlpd (%rax),%xmm1: low half replaced, high half kept.
    let r = run(&[0x66, 0x0f, 0x12, 0x08], &mut mem);
    assert!((0..8).all(|i| r[i] == mem_byte(i)) && r[8..].iter().all(|&b| b == 0x55));
    // movhps (%rax),%xmm1: high half replaced, low half kept.
    let r = run(&[0x0f, 0x16, 0x08], &mut mem);
    assert!(r[..8].iter().all(|&b| b == 0x55) && (0..8).all(|i| r[8 + i] == mem_byte(i)));
}

#[test]
fn movhps_stores_the_high_half() {
    let mut cpu = FakeCpu::new();
    cpu.xmm[6] = pattern(0x30);
    cpu.gpr[12] = 0x9000;
    cpu.pages.insert(0x9000, 0x5000);
    let mut mem = FakeMemory::default();
    // movhps %xmm6,(%r12)
    emulate(&mut cpu, &[0x41, 0x0f, 0x17, 0x34, 0x24], &mut mem);
    let got: Vec<u8> = (0..8).map(|i| mem.bytes[&(0x5000 + i)]).collect();
    assert_eq!(got, pattern(0x30)[8..]);
}

#[test]
fn an_operand_across_two_pages_goes_to_both_and_is_charged_twice() {
    let mut cpu = FakeCpu::new();
    cpu.xmm[9] = pattern(0x80);
    cpu.gpr[4] = 0x3ffc - 8; // 0x8(%rsp) = 0x3ffc: 4 bytes on each page
    cpu.pages.insert(0x3000, 0x10_0000);
    cpu.pages.insert(0x4000, 0x20_0000);
    let mut mem = FakeMemory::default();
    // movsd %xmm9,0x8(%rsp)
    let out = emulate(
        &mut cpu,
        &[0xf2, 0x44, 0x0f, 0x11, 0x4c, 0x24, 0x08],
        &mut mem,
    );
    assert_eq!(
        out,
        Outcome::Emulated {
            latency_ps: Some(2000)
        }
    );
    assert_eq!(
        mem.accesses,
        vec![(0x10_0ffc, 4, true), (0x20_0000, 4, true)]
    );
    assert_eq!(mem.bytes[&0x20_0000], 0x84);
}

#[test]
fn declines_leave_the_vcpu_untouched() {
    let mut mem = FakeMemory::default();
    // Not a move it knows.
    let mut cpu = FakeCpu::new();
    let out = emulate(&mut cpu, &[0x0f, 0x11, 0x00], &mut mem);
    assert!(matches!(out, Outcome::Declined(_)));
    // Not in 64-bit mode.
    let mut cpu = FakeCpu::new();
    cpu.long_mode = false;
    assert!(matches!(
        emulate(&mut cpu, &[0xf2, 0x0f, 0x10, 0x08], &mut mem),
        Outcome::Declined(_)
    ));
    // Operand not mapped (no page for the second half).
    let mut cpu = FakeCpu::new();
    cpu.gpr[0] = 0x3ffc;
    cpu.pages.insert(0x3000, 0x10_0000);
    cpu.xmm[1] = [9; 16];
    assert!(matches!(
        emulate(&mut cpu, &[0xf2, 0x0f, 0x10, 0x08], &mut mem),
        Outcome::Declined(_)
    ));
    assert_eq!((cpu.rip, cpu.xmm[1]), (0x40_0000, [9; 16]));
    assert!(mem.accesses.is_empty());
}

#[test]
fn fs_segment_base_is_added() {
    let mut cpu = FakeCpu::new();
    cpu.fs = 0x7fff_0000;
    cpu.xmm[12] = pattern(1);
    cpu.pages.insert(0x7fff_0000, 0x8000);
    let mut mem = FakeMemory::default();
    // movq %xmm12,%fs:0x28
    emulate(
        &mut cpu,
        &[0x64, 0x66, 0x44, 0x0f, 0xd6, 0x24, 0x25, 0x28, 0, 0, 0],
        &mut mem,
    );
    assert_eq!(mem.accesses, vec![(0x8028, 8, true)]);
}

#[test]
fn decodes_the_string_functions_packed_operations_with_memory_sources() {
    // pcmpeqb 0x10(%rax),%xmm1: busybox's strlen over md5sum's data (the
    // SIGILL once the moves were done).
    let m = dec(&[0x66, 0x0f, 0x74, 0x48, 0x10]);
    assert_eq!((m.len, m.store, m.xmm, m.width), (5, false, 1, 16));
    assert_eq!(m.combine, Some(PackedOp::CmpEqB));
    assert_eq!(m.mem, mem(Some(0), None, 1, 0x10));
    // pminub (%rdi),%xmm10; por 0x20(%rsi),%xmm2; pxor (%rdx,%rcx,1),%xmm0
    let m = dec(&[0x66, 0x44, 0x0f, 0xda, 0x17]);
    assert_eq!((m.xmm, m.combine), (10, Some(PackedOp::MinUB)));
    assert_eq!(
        dec(&[0x66, 0x0f, 0xeb, 0x56, 0x20]).combine,
        Some(PackedOp::Or)
    );
    let m = dec(&[0x66, 0x0f, 0xef, 0x04, 0x0a]);
    assert_eq!(
        (m.combine, m.mem),
        (Some(PackedOp::Xor), mem(Some(2), Some(1), 1, 0))
    );
    // Register forms are not memory accesses; without 66 it is MMX.
    assert!(decode(&[0x66, 0x0f, 0x74, 0xc1]).is_none());
    assert!(decode(&[0x0f, 0x74, 0x48, 0x10]).is_none());
}

#[test]
fn packed_operations_follow_the_instruction_set_reference() {
    let a: [u8; 16] = std::array::from_fn(|i| i as u8 * 17);
    let mut b = a;
    b[3] = 0;
    b[9] = 0xf0;
    let eq = PackedOp::CmpEqB.apply(a, b);
    assert!((0..16).all(|i| eq[i] == if i == 3 || i == 9 { 0 } else { 0xff }));
    // Word and dword lanes compare whole.
    let eqw = PackedOp::CmpEqW.apply(a, b);
    assert_eq!(&eqw[2..4], &[0, 0]);
    assert_eq!(&eqw[0..2], &[0xff, 0xff]);
    let eqd = PackedOp::CmpEqD.apply(a, b);
    assert_eq!(&eqd[0..4], &[0; 4]);
    assert_eq!(&eqd[4..8], &[0xff; 4]);
    // Signed byte compare: 0x10 > -1 (0xff), 0x80 (-128) > nothing.
    let gt = PackedOp::CmpGtB.apply([0x10; 16], [0xff; 16]);
    assert_eq!(gt, [0xff; 16]);
    assert_eq!(PackedOp::CmpGtB.apply([0x80; 16], [0x00; 16]), [0; 16]);
    assert_eq!(PackedOp::MinUB.apply([5; 16], [200; 16]), [5; 16]);
    assert_eq!(PackedOp::MaxUB.apply([5; 16], [200; 16]), [200; 16]);
    assert_eq!(PackedOp::AndNot.apply([0x0f; 16], [0xff; 16]), [0xf0; 16]);
    assert_eq!(PackedOp::AddB.apply([0xff; 16], [2; 16]), [1; 16]);
    assert_eq!(PackedOp::SubB.apply([1; 16], [2; 16]), [0xff; 16]);
}

#[test]
fn a_packed_compare_reads_16_aligned_bytes_and_updates_only_its_register() {
    let mut mem = FakeMemory::default();
    // "abc\0" then zeros, at GPA 0x3010.
    for (i, b) in b"abc".iter().enumerate() {
        mem.bytes.insert(0x3010 + i as u64, *b);
    }
    let mut cpu = FakeCpu::new();
    cpu.gpr[0] = 0x7000;
    cpu.pages.insert(0x7000, 0x3000);
    cpu.xmm[1] = [0; 16];
    cpu.xmm[2] = pattern(0x40);
    // pcmpeqb 0x10(%rax),%xmm1: which bytes are NUL.
    let out = emulate(&mut cpu, &[0x66, 0x0f, 0x74, 0x48, 0x10], &mut mem);
    assert_eq!(
        out,
        Outcome::Emulated {
            latency_ps: Some(1000)
        }
    );
    assert_eq!(mem.accesses, vec![(0x3010, 16, false)]);
    let want: [u8; 16] = std::array::from_fn(|i| if i < 3 { 0 } else { 0xff });
    assert_eq!(cpu.xmm[1], want);
    assert_eq!(cpu.xmm[2], pattern(0x40));
    assert_eq!(cpu.rip, 0x40_0005);
    // Unaligned: the CPU would fault; nothing is read or changed.
    let mut cpu = FakeCpu::new();
    cpu.gpr[0] = 0x7001;
    cpu.pages.insert(0x7000, 0x3000);
    let mut mem = FakeMemory::default();
    let out = emulate(&mut cpu, &[0x66, 0x0f, 0x74, 0x48, 0x10], &mut mem);
    assert!(matches!(out, Outcome::Declined(_)));
    assert!(mem.accesses.is_empty());
    assert_eq!(cpu.rip, 0x40_0000);
}

/// A vCPU with page 0x7000 mapped at 0x7000, and memory holding `bytes` at
/// guest-physical `at`.
fn fp_setup(at: u64, bytes: &[u8]) -> (FakeCpu, FakeMemory) {
    let mut cpu = FakeCpu::new();
    cpu.pages.insert(0x7000, 0x7000);
    let mut m = FakeMemory::default();
    for (i, b) in bytes.iter().enumerate() {
        m.bytes.insert(at + i as u64, *b);
    }
    (cpu, m)
}

fn low_f64(x: [u8; 16]) -> f64 {
    f64::from_le_bytes(x[..8].try_into().unwrap())
}

fn with_low_f64(mut x: [u8; 16], v: f64) -> [u8; 16] {
    x[..8].copy_from_slice(&v.to_le_bytes());
    x
}

#[test]
fn scalar_double_arithmetic_with_a_stack_operand_runs_on_the_host() {
    // addsd 0x8(%rsp),%xmm0: a spilled double added to a register.
    let (mut cpu, mut m) = fp_setup(0x7008, &2.5f64.to_le_bytes());
    cpu.gpr[4] = 0x7000;
    cpu.xmm[0] = with_low_f64(pattern(0x40), 1.25);
    let insn = [0xf2, 0x0f, 0x58, 0x44, 0x24, 0x08];
    let out = emulate(&mut cpu, &insn, &mut m);
    assert_eq!(
        out,
        Outcome::Emulated {
            latency_ps: Some(1000)
        }
    );
    assert_eq!(low_f64(cpu.xmm[0]), 3.75);
    assert_eq!(cpu.xmm[0][8..], pattern(0x40)[8..], "the high lane is kept");
    assert_eq!(cpu.rip, 0x40_0006);
    assert_eq!(m.accesses, vec![(0x7008, 8, false)]);
    // Exact: no exception flag raised.
    assert_eq!(cpu.mxcsr, 0x1f80);

    // divsd (%rax),%xmm1: 1/3 is inexact, and MXCSR says so (PE, bit 5).
    let (mut cpu, mut m) = fp_setup(0x7100, &3.0f64.to_le_bytes());
    cpu.gpr[0] = 0x7100;
    cpu.xmm[1] = with_low_f64([0; 16], 1.0);
    emulate(&mut cpu, &[0xf2, 0x0f, 0x5e, 0x08], &mut m);
    assert_eq!(low_f64(cpu.xmm[1]), 1.0 / 3.0);
    assert_eq!(cpu.mxcsr, 0x1f80 | 0x20);
}

#[test]
fn conversions_to_integers_write_the_general_register_in_the_guests_rounding() {
    // cvtsd2si (%rax),%rdx of 2.5: 2 to nearest even, 3 rounding up.
    let insn = [0xf2, 0x48, 0x0f, 0x2d, 0x10];
    let (mut cpu, mut m) = fp_setup(0x7000, &2.5f64.to_le_bytes());
    cpu.gpr[0] = 0x7000;
    emulate(&mut cpu, &insn, &mut m);
    assert_eq!(cpu.gpr[2], 2);
    assert_eq!(cpu.rip, 0x40_0005);
    let (mut cpu, mut m) = fp_setup(0x7000, &2.5f64.to_le_bytes());
    cpu.gpr[0] = 0x7000;
    cpu.mxcsr = 0x1f80 | 0x4000; // RC = round up
    emulate(&mut cpu, &insn, &mut m);
    assert_eq!(cpu.gpr[2], 3);
    assert_eq!(cpu.mxcsr, 0x1f80 | 0x4000 | 0x20, "inexact, mode kept");

    // cvttsd2si (%rax),%edx of -1.9: -1 in EDX, RDX's upper half cleared.
    let (mut cpu, mut m) = fp_setup(0x7000, &(-1.9f64).to_le_bytes());
    cpu.gpr[0] = 0x7000;
    cpu.gpr[2] = u64::MAX;
    emulate(&mut cpu, &[0xf2, 0x0f, 0x2c, 0x10], &mut m);
    assert_eq!(cpu.gpr[2], 0xffff_ffff);

    // cvttss2si (%r8),%r11
    let (mut cpu, mut m) = fp_setup(0x7040, &(-7.75f32).to_le_bytes());
    cpu.gpr[8] = 0x7040;
    emulate(&mut cpu, &[0xf3, 0x4d, 0x0f, 0x2c, 0x18], &mut m);
    assert_eq!(cpu.gpr[11], (-7i64) as u64);
    assert_eq!(m.accesses, vec![(0x7040, 4, false)]);
}

#[test]
fn conversions_from_integers_and_between_widths() {
    // cvtsi2sdq 0x10(%rbx),%xmm2
    let (mut cpu, mut m) = fp_setup(0x7010, &(-5i64).to_le_bytes());
    cpu.gpr[3] = 0x7000;
    cpu.xmm[2] = pattern(9);
    emulate(&mut cpu, &[0xf2, 0x48, 0x0f, 0x2a, 0x53, 0x10], &mut m);
    assert_eq!(low_f64(cpu.xmm[2]), -5.0);
    assert_eq!(cpu.xmm[2][8..], pattern(9)[8..]);
    // cvtss2sd (%rax),%xmm5
    let (mut cpu, mut m) = fp_setup(0x7000, &1.5f32.to_le_bytes());
    cpu.gpr[0] = 0x7000;
    emulate(&mut cpu, &[0xf3, 0x0f, 0x5a, 0x28], &mut m);
    assert_eq!(low_f64(cpu.xmm[5]), 1.5);
    // cvtdq2pd (%rax),%xmm6: two 32-bit integers, 8 bytes, no alignment.
    let mut two = (-3i32).to_le_bytes().to_vec();
    two.extend_from_slice(&40i32.to_le_bytes());
    let (mut cpu, mut m) = fp_setup(0x7004, &two);
    cpu.gpr[0] = 0x7004;
    emulate(&mut cpu, &[0xf3, 0x0f, 0xe6, 0x30], &mut m);
    assert_eq!(low_f64(cpu.xmm[6]), -3.0);
    assert_eq!(
        f64::from_le_bytes(cpu.xmm[6][8..].try_into().unwrap()),
        40.0
    );
}

#[test]
fn scalar_compares_set_zf_pf_cf_and_clear_the_rest() {
    let ucomisd = [0x66, 0x0f, 0x2e, 0x00];
    // 1.0 against 2.0: below (CF), other arithmetic flags cleared, IF kept.
    let (mut cpu, mut m) = fp_setup(0x7000, &2.0f64.to_le_bytes());
    cpu.gpr[0] = 0x7000;
    cpu.rflags = 0x202 | 0x800 | 0x80; // OF and SF set before
    cpu.xmm[0] = with_low_f64([0; 16], 1.0);
    emulate(&mut cpu, &ucomisd, &mut m);
    assert_eq!(cpu.rflags, 0x202 | 0x1);
    // Against NaN: unordered, ZF PF CF all set.
    let (mut cpu, mut m) = fp_setup(0x7000, &f64::NAN.to_le_bytes());
    cpu.gpr[0] = 0x7000;
    cpu.xmm[0] = with_low_f64([0; 16], 1.0);
    emulate(&mut cpu, &ucomisd, &mut m);
    assert_eq!(cpu.rflags, 0x202 | 0x1 | 0x4 | 0x40);
    // comiss (%rax),%xmm9: equal.
    let (mut cpu, mut m) = fp_setup(0x7000, &0.5f32.to_le_bytes());
    cpu.gpr[0] = 0x7000;
    cpu.xmm[9][..4].copy_from_slice(&0.5f32.to_le_bytes());
    emulate(&mut cpu, &[0x44, 0x0f, 0x2f, 0x08], &mut m);
    assert_eq!(cpu.rflags, 0x202 | 0x40);
    assert_eq!(m.accesses, vec![(0x7000, 4, false)]);
}

#[test]
fn compares_with_a_predicate_and_packed_operations() {
    // cmpltsd (%rax),%xmm3: imm8 1 is part of the instruction.
    let (mut cpu, mut m) = fp_setup(0x7000, &2.0f64.to_le_bytes());
    cpu.gpr[0] = 0x7000;
    cpu.xmm[3] = with_low_f64(pattern(3), 1.0);
    emulate(&mut cpu, &[0xf2, 0x0f, 0xc2, 0x18, 0x01], &mut m);
    assert_eq!(cpu.xmm[3][..8], [0xff; 8]);
    assert_eq!(cpu.xmm[3][8..], pattern(3)[8..]);
    assert_eq!(cpu.rip, 0x40_0005);
    // mulpd (%rax),%xmm4: both lanes, 16 aligned bytes.
    let mut pair = 3.0f64.to_le_bytes().to_vec();
    pair.extend_from_slice(&(-0.5f64).to_le_bytes());
    let (mut cpu, mut m) = fp_setup(0x7020, &pair);
    cpu.gpr[0] = 0x7020;
    let mut x = with_low_f64([0; 16], 2.0);
    x[8..].copy_from_slice(&8.0f64.to_le_bytes());
    cpu.xmm[4] = x;
    emulate(&mut cpu, &[0x66, 0x0f, 0x59, 0x20], &mut m);
    assert_eq!(low_f64(cpu.xmm[4]), 6.0);
    assert_eq!(
        f64::from_le_bytes(cpu.xmm[4][8..].try_into().unwrap()),
        -4.0
    );
    assert_eq!(m.accesses, vec![(0x7020, 16, false)]);
    // Unaligned: the CPU raises #GP; declined, nothing read or changed.
    let (mut cpu, mut m) = fp_setup(0x7028, &pair);
    cpu.gpr[0] = 0x7028;
    let before = cpu.xmm;
    assert!(matches!(
        emulate(&mut cpu, &[0x66, 0x0f, 0x59, 0x20], &mut m),
        Outcome::Declined(_)
    ));
    assert_eq!((cpu.xmm, cpu.rip), (before, 0x40_0000));
    assert!(m.accesses.is_empty());
}

#[test]
fn an_unmasked_exception_is_declined_and_changes_nothing() {
    // divsd (%rax),%xmm1 by zero with ZM cleared: the CPU would raise #XM.
    let (mut cpu, mut m) = fp_setup(0x7000, &0.0f64.to_le_bytes());
    cpu.gpr[0] = 0x7000;
    cpu.mxcsr = 0x1f80 & !0x200;
    cpu.xmm[1] = with_low_f64([0; 16], 1.0);
    assert!(matches!(
        emulate(&mut cpu, &[0xf2, 0x0f, 0x5e, 0x08], &mut m),
        Outcome::Declined(_)
    ));
    assert_eq!(low_f64(cpu.xmm[1]), 1.0);
    assert_eq!((cpu.rip, cpu.mxcsr), (0x40_0000, 0x1f80 & !0x200));
    // Masked (the default): infinity, and ZE flagged.
    let (mut cpu, mut m) = fp_setup(0x7000, &0.0f64.to_le_bytes());
    cpu.gpr[0] = 0x7000;
    cpu.xmm[1] = with_low_f64([0; 16], 1.0);
    emulate(&mut cpu, &[0xf2, 0x0f, 0x5e, 0x08], &mut m);
    assert_eq!(low_f64(cpu.xmm[1]), f64::INFINITY);
    assert_eq!(cpu.mxcsr, 0x1f80 | 0x4);
}

#[test]
fn decodes_the_floating_point_forms_and_their_lengths() {
    // andpd 0x10(%rip),%xmm7
    let m = dec(&[0x66, 0x0f, 0x54, 0x3d, 0x10, 0, 0, 0]);
    assert_eq!((m.len, m.xmm, m.width), (8, 7, 16));
    assert!(m.mem.rip_relative && m.needs_alignment());
    // sqrtss -0x4(%rbp),%xmm1: scalar, 4 bytes, no alignment.
    let m = dec(&[0xf3, 0x0f, 0x51, 0x4d, 0xfc]);
    assert_eq!((m.len, m.xmm, m.width), (5, 1, 4));
    assert!(!m.needs_alignment());
    // The register forms and the MMX conversions are not ours.
    assert_eq!(decode(&[0xf2, 0x0f, 0x58, 0xc1]), None); // addsd %xmm1,%xmm0
    assert_eq!(decode(&[0x0f, 0x2a, 0x00]), None); // cvtpi2ps (%rax),%xmm0
                                                   // cmpsd needs its imm8.
    assert_eq!(decode(&[0xf2, 0x0f, 0xc2, 0x18]), None);
}
