//! Device-level tests against `docs/accelerator.md`, over the fakes of
//! [`super::fuzz`]: registers, every command and error, rings, resets,
//! timing, interrupts, PCI identity, and the seeded-random run.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use super::command::{build, opcode, FLAG_IRQ, FLAG_STATUS_WB, MAX_TRANSFER};
use super::error::Status;
use super::fuzz::*;
use super::kernels;
use super::regs::*;

const RING: u64 = RAM + 0x10000;
const FENCE_AT: u64 = RAM + 0x8000;
const WB: u8 = FLAG_STATUS_WB;

fn harness() -> Harness {
    let mut h = Harness::new();
    h.enable_msix();
    h.setup_queue(0, RING, 16);
    h
}

/// Submits one descriptor with status writeback on queue 0, runs it to
/// retirement, returns its status code.
fn run_one(h: &mut Harness, d: [u8; 64]) -> u16 {
    let tail = h.read32(queue_reg(0, Q_TAIL));
    let mut d = d;
    d[1] |= WB;
    h.submit(0, &[d]);
    h.settle();
    let slot = RING + u64::from(tail) * 64 + 0x3c;
    let v = u32::from_le_bytes(h.mem.peek(slot, 4).try_into().unwrap());
    assert_ne!(v & (1 << 31), 0, "status written back with DONE");
    v as u16
}

fn f32_at(h: &Harness, addr: u64, n: usize) -> Vec<f32> {
    kernels::f32s(&h.mem.peek(addr, 4 * n))
}

fn put_f32(h: &Harness, addr: u64, v: &[f32]) {
    h.mem.poke(addr, &kernels::f32_bytes(v));
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn values(seed: u64, n: usize) -> Vec<f32> {
    let mut r = fabric::rng::SplitMix64::new(seed);
    (0..n)
        .map(|_| (r.next_u64() % 20001) as f32 / 1000.0 - 10.0)
        .collect()
}

#[test]
fn registers_reset_to_their_documented_values() {
    let mut h = Harness::new();
    assert_eq!(h.read32(ID), 0x6361_7863);
    assert_eq!(h.read32(ID).to_le_bytes(), *b"cxac");
    assert_eq!(h.read32(VERSION), 0x0001_0000);
    assert_eq!(h.read32(CAPS), 4 | (2 << 8) | (12 << 16));
    assert_eq!(h.read32(OPCODES), 0x000f_001f);
    assert_eq!(h.read64(VRAM_SIZE), VRAM_SIZE_BYTES);
    assert_eq!(h.read32(COMPUTE_MOPS), 1_000_000);
    assert_eq!(h.read32(MAX_TRANSFER_REG), 0x4000_0000);
    for r in [
        RESET, STATUS, INT_STATUS, INT_ENABLE, ERR_STATUS, ERR_CODE, ERR_INDEX, ERR_COUNT,
    ] {
        assert_eq!(h.read32(r), 0, "{r:#x}");
    }
    assert_eq!(h.read64(ERR_ADDR), 0);
    assert_eq!(h.read64(ERR_TIME), 0);
    for q in 0..4 {
        for (r, v) in [
            (Q_BASE, 0),
            (Q_BASE + 4, 0),
            (Q_SIZE, 0),
            (Q_CTRL, 0),
            (Q_STATUS, 4),
            (Q_HEAD, 0),
            (Q_TAIL, 0),
            (Q_COMPLETED, 0),
            (Q_LAST_SEQNO, 0),
            (Q_LAST_SEQNO + 4, 0),
            (Q_ERRORS, 0),
            (Q_LAST_STATUS, 0),
        ] {
            assert_eq!(h.read32(queue_reg(q, r)), v, "queue {q} reg {r:#x}");
        }
        assert_eq!(h.read32(doorbell(q)), 0);
    }
    // The clock reads guest time.
    h.advance_to(123_456_789_000);
    assert_eq!(h.read64(CLOCK), 123_456_789_000);
    assert_eq!(h.read32(CLOCK + 4), (123_456_789_000u64 >> 32) as u32);
}

const VRAM_SIZE_BYTES: u64 = 4 << 20;

#[test]
fn register_masks_widths_and_read_only_bits() {
    let mut h = Harness::new();
    // Read-only registers ignore writes.
    for r in [
        ID,
        VERSION,
        CAPS,
        OPCODES,
        VRAM_SIZE,
        COMPUTE_MOPS,
        STATUS,
        ERR_CODE,
        CLOCK,
    ] {
        let before = h.read32(r);
        h.write32(r, 0x5a5a_5a5a);
        assert_eq!(h.read32(r), before, "{r:#x}");
    }
    // INT_ENABLE keeps the bits of present queues and the error bit.
    h.write32(INT_ENABLE, u32::MAX);
    assert_eq!(h.read32(INT_ENABLE), 0x8000_000f);
    // Q_BASE drops bits [5:0]; halves and 8-byte accesses agree.
    h.write32(queue_reg(1, Q_BASE), 0x1234_567f);
    h.write32(queue_reg(1, Q_BASE + 4), 0xab);
    assert_eq!(h.read64(queue_reg(1, Q_BASE)), 0xab_1234_5640);
    h.write64(queue_reg(1, Q_BASE), 0x1_0000_0040);
    assert_eq!(h.read32(queue_reg(1, Q_BASE)), 0x40);
    assert_eq!(h.read32(queue_reg(1, Q_BASE + 4)), 1);
    // Q_CTRL reads back ENABLE only; RESET reads 0.
    h.setup_queue(2, RING, 8);
    assert_eq!(h.read32(queue_reg(2, Q_CTRL)), 1);
    // Base and size are locked while enabled.
    h.write64(queue_reg(2, Q_BASE), 0x4000);
    h.write32(queue_reg(2, Q_SIZE), 4);
    assert_eq!(h.read64(queue_reg(2, Q_BASE)), RING);
    assert_eq!(h.read32(queue_reg(2, Q_SIZE)), 8);
    // Widths other than 4 and 8, and misaligned accesses: read 0, write nothing.
    let mut b = [0xffu8; 2];
    h.dev.read(ID, &mut b);
    assert_eq!(b, [0, 0]);
    let mut b = [0xffu8; 4];
    h.dev.read(ID + 2, &mut b);
    assert_eq!(b, [0; 4]);
    h.dev.write(INT_ENABLE, &[0, 0]);
    h.dev.write(INT_ENABLE + 1, &[0, 0, 0, 0]);
    assert_eq!(h.read32(INT_ENABLE), 0x8000_000f);
    // Undefined offsets, absent queues, doorbell page tails, past the BAR.
    for off in [
        0x60,
        0xffc,
        queue_reg(4, Q_SIZE),
        doorbell(4),
        doorbell(0) + 4,
        0x10000,
    ] {
        h.write32(off, 0xffff_ffff);
        assert_eq!(h.read32(off), 0, "{off:#x}");
    }
    // INT_STATUS and ERR_STATUS are write-1-to-clear.
    h.write32(doorbell(3), 1); // disabled queue: logged
    assert_eq!(h.read32(INT_STATUS), INT_ERROR);
    assert_eq!(h.read32(ERR_STATUS), 1);
    h.write32(INT_STATUS, 0x7fff_ffff);
    assert_eq!(h.read32(INT_STATUS), INT_ERROR);
    h.write32(INT_STATUS, INT_ERROR);
    assert_eq!(h.read32(INT_STATUS), 0);
    h.write32(ERR_STATUS, 2);
    assert_eq!(h.read32(ERR_STATUS), 1, "only VALID clears");
    h.write32(ERR_STATUS, 1);
    assert_eq!(h.read32(ERR_STATUS), 0);
    assert_eq!(h.read32(ERR_COUNT), 1, "the count survives clearing");
}

#[test]
fn copies_move_bytes_between_every_kind_of_memory() {
    let mut h = harness();
    let data = pattern(10_000, 7);
    h.mem.poke(RAM + 0x100000, &data);
    let hops = [
        (RAM + 0x100000, VRAM0 + 0x1000),  // host -> own VRAM
        (VRAM0 + 0x1000, VRAM1 + 0x3),     // own VRAM -> peer, switch-local
        (VRAM1 + 0x3, VRAM2 + 0x20000),    // peer -> peer, through the RC
        (VRAM2 + 0x20000, CXL + 0x777),    // peer -> CXL memory
        (CXL + 0x777, RAM + 0x200000 + 1), // CXL -> host
    ];
    for (src, dst) in hops {
        assert_eq!(run_one(&mut h, build::copy(0, src, dst, 10_000)), 0);
        assert_eq!(h.mem.peek(dst, 10_000), data, "{src:#x} -> {dst:#x}");
    }
    // Bytes next to the destination are untouched.
    assert_eq!(h.mem.peek(RAM + 0x200000, 1), [0]);
    assert_eq!(h.mem.peek(RAM + 0x200000 + 10_001, 1), [0]);
}

#[test]
fn fill_fence_timestamp_and_nop() {
    let mut h = harness();
    assert_eq!(
        run_one(&mut h, build::fill(0, VRAM0 + 0x40, 4096, 0xdead_beef)),
        0
    );
    let got = h.mem.peek(VRAM0 + 0x40, 4096);
    assert!(got.chunks(4).all(|c| c == 0xdead_beefu32.to_le_bytes()));
    assert_eq!(h.mem.peek(VRAM0 + 0x40 + 4096, 4), [0; 4]);
    assert_eq!(run_one(&mut h, build::nop(0)), 0);
    assert_eq!(
        run_one(&mut h, build::fence(0, FENCE_AT, 0x1122_3344_5566_7788)),
        0
    );
    assert_eq!(
        h.mem.peek(FENCE_AT, 8),
        0x1122_3344_5566_7788u64.to_le_bytes()
    );
    assert_eq!(h.read64(queue_reg(0, Q_LAST_SEQNO)), 0x1122_3344_5566_7788);
    // TIMESTAMP writes the time the command starts: after the doorbell
    // and the descriptor fetch, before the command retires.
    h.advance_to(5_000_000);
    let rung = h.now();
    h.submit(0, &[build::timestamp(0, FENCE_AT + 8)]);
    let retire = h.dev.next_deadline().unwrap();
    h.settle();
    let ts = u64::from_le_bytes(h.mem.peek(FENCE_AT + 8, 8).try_into().unwrap());
    assert!(ts > rung && ts < retire, "{rung} < {ts} < {retire}");
}

#[test]
fn kernels_are_bit_exact_against_the_cpu() {
    let mut h = harness();
    let n = 3000;
    let x = values(1, n);
    let y = values(2, n);
    put_f32(&h, VRAM0, &x);
    put_f32(&h, VRAM0 + 0x10000, &y);
    assert_eq!(
        run_one(
            &mut h,
            build::saxpy(0, VRAM0, VRAM0 + 0x10000, n as u64, 2.5)
        ),
        0
    );
    let want: Vec<u32> = x
        .iter()
        .zip(&y)
        .map(|(a, b)| (2.5f32 * a + b).to_bits())
        .collect();
    let got: Vec<u32> = f32_at(&h, VRAM0 + 0x10000, n)
        .iter()
        .map(|v| v.to_bits())
        .collect();
    assert_eq!(got, want);
    // In place: x == y.
    assert_eq!(run_one(&mut h, build::saxpy(0, VRAM0, VRAM0, 4, -1.0)), 0);
    assert_eq!(f32_at(&h, VRAM0, 4), vec![0.0; 4]);

    put_f32(&h, VRAM0, &x);
    assert_eq!(
        run_one(&mut h, build::sum_f32(0, VRAM0, RAM + 0x300, n as u64)),
        0
    );
    let s = x.iter().fold(0f32, |s, v| s + v);
    assert_eq!(f32_at(&h, RAM + 0x300, 1)[0].to_bits(), s.to_bits());

    let bytes = pattern(100_001, 3);
    h.mem.poke(VRAM0 + 0x40000, &bytes);
    assert_eq!(
        run_one(
            &mut h,
            build::crc32c(0, VRAM0 + 0x40000, CXL + 0x10, 100_001)
        ),
        0
    );
    let crc = u32::from_le_bytes(h.mem.peek(CXL + 0x10, 4).try_into().unwrap());
    assert_eq!(crc, kernels::CRC32C.checksum(&bytes));

    let (m, nn, k) = (37usize, 41usize, 129usize);
    let a = values(5, m * k);
    let b = values(6, k * nn);
    put_f32(&h, VRAM0 + 0x100000, &a);
    put_f32(&h, VRAM0 + 0x200000, &b);
    let d = build::gemm(
        0,
        VRAM0 + 0x100000,
        VRAM0 + 0x200000,
        VRAM0 + 0x300000,
        m as u32,
        nn as u32,
        k as u32,
    );
    assert_eq!(run_one(&mut h, d), 0);
    let c = f32_at(&h, VRAM0 + 0x300000, m * nn);
    for i in 0..m {
        for j in 0..nn {
            let mut s = 0f32;
            for p in 0..k {
                s += a[i * k + p] * b[p * nn + j];
            }
            assert_eq!(c[i * nn + j].to_bits(), s.to_bits(), "c[{i}][{j}]");
        }
    }
}

/// A rejected command: its status, the log entry, the error vector, no
/// write to `untouched`, and the queue keeps going.
fn rejected(h: &mut Harness, d: [u8; 64], status: Status, addr: u64, untouched: (u64, u64)) {
    let writes = h.mem.writes_to(untouched.0, untouched.1);
    let index = h.read32(queue_reg(0, Q_TAIL));
    h.write32(ERR_STATUS, 1);
    h.msi.0.lock().unwrap().clear();
    let errors = h.read32(queue_reg(0, Q_ERRORS));
    assert_eq!(run_one(h, d), status.code(), "{d:02x?}");
    assert_eq!(
        h.mem.writes_to(untouched.0, untouched.1),
        writes,
        "{status:?} wrote memory"
    );
    assert_eq!(h.read32(ERR_STATUS), 1);
    let code = h.read32(ERR_CODE);
    assert_eq!(
        code,
        u32::from(status.code()) | (u32::from(d[0]) << 24),
        "{status:?}"
    );
    assert_eq!(h.read32(ERR_INDEX), index);
    assert_eq!(h.read64(ERR_ADDR), addr, "{status:?}");
    assert_eq!(h.read32(queue_reg(0, Q_ERRORS)), errors + 1);
    assert_eq!(
        h.read32(queue_reg(0, Q_LAST_STATUS)),
        u32::from(status.code())
    );
    assert_eq!(
        *h.msi.0.lock().unwrap(),
        vec![4],
        "error vector (queues = 4)"
    );
    assert_ne!(h.read32(INT_STATUS) & INT_ERROR, 0);
    // The queue goes on.
    assert_eq!(run_one(h, build::fill(0, RAM + 0x500, 4, 1)), 0);
}

#[test]
fn every_command_error_has_its_status_and_touches_nothing() {
    let mut h = harness();
    // Commands without a destination: nothing may be written but the status.
    let any = (RAM + 0xf0_0000, 0x1000);
    let mut bad = build::nop(0);
    bad[0] = 0x05;
    rejected(&mut h, bad, Status::BadOpcode, 5, any);
    bad[0] = 0xff;
    rejected(&mut h, bad, Status::BadOpcode, 0xff, any);
    // ERR_ADDR holds the header (run_one adds STATUS_WB, 0x02 in byte 1).
    let mut d = build::nop(0);
    d[1] = 0x80;
    rejected(&mut h, d, Status::BadFlags, 0x8200, any);
    let mut d = build::copy(0, RAM, RAM + 0x1000, 4);
    d[5] = 1;
    rejected(&mut h, d, Status::BadFlags, 1 << 40 | 0x201, any);

    let dst = (RAM + 0x400000, 0x10000);
    rejected(
        &mut h,
        build::copy(0, RAM, dst.0, 0),
        Status::Length,
        0,
        any,
    );
    rejected(
        &mut h,
        build::copy(0, RAM, dst.0, MAX_TRANSFER + 1),
        Status::Length,
        MAX_TRANSFER + 1,
        any,
    );
    rejected(
        &mut h,
        build::copy(0, u64::MAX - 3, dst.0, 8),
        Status::Length,
        u64::MAX - 3,
        any,
    );
    rejected(
        &mut h,
        build::copy(0, 0x8000_0000, dst.0, 8),
        Status::Unmapped,
        0x8000_0000,
        dst,
    );
    // Runs off the end of host RAM into a hole.
    rejected(
        &mut h,
        build::copy(0, RAM_SIZE - 4, dst.0, 8),
        Status::Unmapped,
        RAM_SIZE,
        dst,
    );
    rejected(
        &mut h,
        build::copy(0, RAM, 0x8000_0000, 8),
        Status::Unmapped,
        0x8000_0000,
        any,
    );
    rejected(
        &mut h,
        build::copy(0, RAM, RAM + 4, 8),
        Status::Overlap,
        RAM + 4,
        any,
    );
    rejected(
        &mut h,
        build::copy(0, BROKEN, dst.0, 8),
        Status::DmaFault,
        BROKEN,
        dst,
    );

    rejected(
        &mut h,
        build::fill(0, dst.0 + 2, 8, 1),
        Status::Alignment,
        dst.0 + 2,
        any,
    );
    rejected(
        &mut h,
        build::fill(0, dst.0, 6, 1),
        Status::Alignment,
        6,
        any,
    );
    rejected(&mut h, build::fill(0, dst.0, 0, 1), Status::Length, 0, any);
    rejected(
        &mut h,
        build::fence(0, FENCE_AT + 4, 1),
        Status::Alignment,
        FENCE_AT + 4,
        any,
    );
    rejected(
        &mut h,
        build::fence(0, 0x8000_0000, 1),
        Status::Unmapped,
        0x8000_0000,
        any,
    );
    rejected(
        &mut h,
        build::timestamp(0, FENCE_AT + 1),
        Status::Alignment,
        FENCE_AT + 1,
        any,
    );
    rejected(
        &mut h,
        build::timestamp(0, 0x8000_0000),
        Status::Unmapped,
        0x8000_0000,
        any,
    );

    let y = (VRAM0 + 0x1000, 400);
    rejected(
        &mut h,
        build::saxpy(0, VRAM0, y.0, 0, 1.0),
        Status::Length,
        0,
        any,
    );
    rejected(
        &mut h,
        build::saxpy(0, VRAM0, y.0, (1 << 28) + 1, 1.0),
        Status::Length,
        (1 << 28) + 1,
        any,
    );
    rejected(
        &mut h,
        build::saxpy(0, VRAM0 + 2, y.0, 100, 1.0),
        Status::Alignment,
        VRAM0 + 2,
        y,
    );
    rejected(
        &mut h,
        build::saxpy(0, y.0 + 4, y.0, 100, 1.0),
        Status::Overlap,
        y.0,
        any,
    );
    rejected(
        &mut h,
        build::saxpy(0, RAM, y.0, 100, 1.0),
        Status::NotVram,
        RAM,
        y,
    );
    rejected(
        &mut h,
        build::saxpy(0, VRAM1, y.0, 100, 1.0),
        Status::NotVram,
        VRAM1,
        y,
    );
    rejected(
        &mut h,
        build::saxpy(0, VRAM0 + VRAM_BYTES - 8, y.0, 100, 1.0),
        Status::Unmapped,
        VRAM0 + VRAM_BYTES,
        y,
    );
    rejected(
        &mut h,
        build::sum_f32(0, VRAM0, RAM + 2, 10),
        Status::Alignment,
        RAM + 2,
        any,
    );
    rejected(
        &mut h,
        build::sum_f32(0, CXL, RAM, 10),
        Status::NotVram,
        CXL,
        (RAM, 4),
    );
    rejected(
        &mut h,
        build::sum_f32(0, VRAM0, 0x8000_0000, 10),
        Status::Unmapped,
        0x8000_0000,
        any,
    );
    rejected(
        &mut h,
        build::crc32c(0, VRAM0, RAM + 1, 10),
        Status::Alignment,
        RAM + 1,
        any,
    );
    rejected(
        &mut h,
        build::crc32c(0, RAM, RAM + 0x40, 10),
        Status::NotVram,
        RAM,
        (RAM + 0x40, 4),
    );
    rejected(
        &mut h,
        build::crc32c(0, VRAM0, RAM, 0),
        Status::Length,
        0,
        any,
    );

    let c = (VRAM0 + 0x200000, 0x10000);
    let gemm = |a, b, c, m, n, k| build::gemm(0, a, b, c, m, n, k);
    rejected(
        &mut h,
        gemm(VRAM0, VRAM0 + 0x1000, c.0, 0, 4, 4),
        Status::Dimension,
        4 << 16 | 4 << 32,
        c,
    );
    rejected(
        &mut h,
        gemm(VRAM0, VRAM0 + 0x1000, c.0, 4097, 1, 1),
        Status::Dimension,
        4097 | 1 << 16 | 1 << 32,
        c,
    );
    rejected(
        &mut h,
        gemm(VRAM0, VRAM0 + 0x1000, c.0, 4096, 4096, 128),
        Status::Dimension,
        4096 | 4096 << 16 | 128 << 32,
        c,
    );
    rejected(
        &mut h,
        gemm(VRAM0 + 1, VRAM0 + 0x1000, c.0, 4, 4, 4),
        Status::Alignment,
        VRAM0 + 1,
        c,
    );
    rejected(
        &mut h,
        gemm(VRAM0, VRAM0 + 0x1000, VRAM0 + 0x20, 4, 4, 4),
        Status::Overlap,
        VRAM0 + 0x20,
        any,
    );
    rejected(
        &mut h,
        gemm(VRAM0, VRAM2, c.0, 4, 4, 4),
        Status::NotVram,
        VRAM2,
        c,
    );
    rejected(
        &mut h,
        gemm(VRAM0, VRAM0 + 0x1000, RAM, 4, 4, 4),
        Status::NotVram,
        RAM,
        any,
    );
    assert_eq!(h.mem.violations.load(Ordering::Relaxed), 0);
}

#[test]
fn queue_errors_halt_or_refuse_as_specified() {
    let mut h = Harness::new();
    h.enable_msix();
    // Enable with a bad size, or a ring that does not decode: stays off.
    for (base, size, addr) in [
        (RING, 3, 3),
        (RING, 8192, 8192),
        (0x8000_0000, 8, 0x8000_0000),
    ] {
        h.write32(ERR_STATUS, 1);
        h.setup_queue(1, base, size);
        assert_eq!(h.read32(queue_reg(1, Q_STATUS)) & 1, 0);
        assert_eq!(h.read32(ERR_CODE), 0x100 | (1 << 16) | (0xff << 24));
        assert_eq!(h.read32(ERR_INDEX), u32::MAX);
        assert_eq!(h.read64(ERR_ADDR), addr);
    }
    // Doorbell on a disabled queue: ignored, logged.
    h.write32(ERR_STATUS, 1);
    h.write32(doorbell(2), 1);
    assert_eq!(h.read32(ERR_CODE) & 0xffff, 0x103);
    assert_eq!(h.read32(queue_reg(2, Q_TAIL)), 0);
    // Tail out of range halts the queue; further doorbells are ignored.
    h.setup_queue(0, RING, 8);
    h.write32(ERR_STATUS, 1);
    h.write32(doorbell(0), 8);
    assert_eq!(h.read32(ERR_CODE) & 0xffff, 0x101);
    assert_eq!(h.read64(ERR_ADDR), 8);
    assert_eq!(h.read32(queue_reg(0, Q_STATUS)), 0b111);
    assert_eq!(h.read32(STATUS) & STATUS_HALTED, STATUS_HALTED);
    h.write32(ERR_STATUS, 1);
    h.mem.poke(RING, &build::fence(0, FENCE_AT, 9));
    h.write32(doorbell(0), 1);
    h.settle();
    assert_eq!(h.read32(ERR_CODE) & 0xffff, 0x103);
    assert_eq!(h.mem.peek(FENCE_AT, 8), [0; 8]);
    // A queue reset brings it back.
    h.write32(queue_reg(0, Q_CTRL), 2);
    h.write32(queue_reg(0, Q_CTRL), 1);
    h.write32(doorbell(0), 1);
    h.settle();
    assert_eq!(h.mem.peek(FENCE_AT, 8), 9u64.to_le_bytes());
    // Ring memory gone at fetch: RING_FETCH, halted.
    h.write32(ERR_STATUS, 1);
    h.mem.ram_unmapped.store(true, Ordering::Relaxed);
    h.write32(doorbell(0), 2);
    h.mem.ram_unmapped.store(false, Ordering::Relaxed);
    assert_eq!(h.read32(ERR_CODE), 0x102 | (0xff << 24));
    assert_eq!(h.read32(ERR_INDEX), 1);
    assert_eq!(h.read32(queue_reg(0, Q_STATUS)) & 2, 2);
    // Fence memory gone between execution and retirement: WRITEBACK_FAULT.
    h.write32(queue_reg(0, Q_CTRL), 2);
    h.setup_queue(0, VRAM0, 8);
    h.write32(ERR_STATUS, 1);
    h.submit(0, &[build::fence(0, FENCE_AT, 10)]);
    h.mem.ram_unmapped.store(true, Ordering::Relaxed);
    h.settle();
    h.mem.ram_unmapped.store(false, Ordering::Relaxed);
    assert_eq!(h.read32(ERR_CODE), 0x104 | (u32::from(opcode::FENCE) << 24));
    assert_eq!(h.read64(ERR_ADDR), FENCE_AT);
    assert_eq!(
        h.read32(queue_reg(0, Q_LAST_STATUS)),
        0,
        "the command itself succeeded"
    );
    assert_eq!(h.mem.violations.load(Ordering::Relaxed), 0);
}

#[test]
fn rings_wrap_around() {
    let mut h = Harness::new();
    h.setup_queue(0, RING, 4);
    let mut seq = 0;
    for round in 0..5u64 {
        // Three per round on a four-entry ring: every slot gets reused.
        let ds: Vec<_> = (0..3)
            .map(|i| {
                seq += 1;
                build::fence(WB, FENCE_AT + 8 * i, round * 10 + i)
            })
            .collect();
        h.submit(0, &ds);
        h.settle();
        let tail = h.read32(queue_reg(0, Q_TAIL));
        assert_eq!(tail, (seq % 4) as u32);
        assert_eq!(h.read32(queue_reg(0, Q_HEAD)), tail);
        assert_eq!(h.read32(queue_reg(0, Q_COMPLETED)), seq as u32);
        assert_eq!(h.read64(queue_reg(0, Q_LAST_SEQNO)), round * 10 + 2);
        for i in 0..3 {
            assert_eq!(
                h.mem.peek(FENCE_AT + 8 * i, 8),
                (round * 10 + i).to_le_bytes()
            );
        }
    }
    // Slot 3 of the ring received its status dword (DONE | OK).
    assert_eq!(
        h.mem.peek(RING + 3 * 64 + 0x3c, 4),
        (1u32 << 31).to_le_bytes()
    );
}

#[test]
fn queue_and_device_resets_drop_pending_work() {
    let mut h = harness();
    h.setup_queue(1, RING + 0x2000, 8);
    h.submit(0, &[build::fence(FLAG_IRQ, FENCE_AT, 1)]);
    h.submit(1, &[build::fence(FLAG_IRQ, FENCE_AT + 8, 2)]);
    assert_eq!(h.read32(STATUS) & STATUS_BUSY, STATUS_BUSY);
    assert_eq!(h.read32(queue_reg(0, Q_STATUS)), 1, "enabled, busy");
    h.write32(queue_reg(0, Q_CTRL), 2);
    for (r, v) in [
        (Q_STATUS, 4),
        (Q_CTRL, 0),
        (Q_HEAD, 0),
        (Q_TAIL, 0),
        (Q_COMPLETED, 0),
    ] {
        assert_eq!(h.read32(queue_reg(0, r)), v, "{r:#x}");
    }
    assert_eq!(h.read64(queue_reg(0, Q_BASE)), RING, "base kept");
    assert_eq!(h.read32(queue_reg(0, Q_SIZE)), 16, "size kept");
    h.settle();
    assert_eq!(h.mem.peek(FENCE_AT, 8), [0; 8], "reset queue never retires");
    assert_eq!(
        h.mem.peek(FENCE_AT + 8, 8),
        2u64.to_le_bytes(),
        "other queue unaffected"
    );
    assert_eq!(*h.msi.0.lock().unwrap(), vec![1]);

    // Device reset: everything back to reset values, pending dropped.
    h.write32(queue_reg(0, Q_CTRL), 1);
    h.submit(0, &[build::fence(FLAG_IRQ, FENCE_AT + 16, 3)]);
    h.write32(doorbell(3), 1); // an error to clear
    h.write32(RESET, 1);
    for r in [STATUS, INT_STATUS, INT_ENABLE, ERR_STATUS, ERR_COUNT] {
        assert_eq!(h.read32(r), 0, "{r:#x}");
    }
    for q in 0..4 {
        assert_eq!(h.read64(queue_reg(q, Q_BASE)), 0);
        assert_eq!(h.read32(queue_reg(q, Q_SIZE)), 0);
        assert_eq!(h.read32(queue_reg(q, Q_STATUS)), 4);
    }
    assert_eq!(h.dev.next_deadline(), None);
    h.settle();
    assert_eq!(h.mem.peek(FENCE_AT + 16, 8), [0; 8]);
    // And it works again.
    h.write32(INT_ENABLE, 1);
    h.setup_queue(0, RING, 16);
    h.submit(0, &[build::fence(0, FENCE_AT + 16, 4)]);
    h.settle();
    assert_eq!(h.mem.peek(FENCE_AT + 16, 8), 4u64.to_le_bytes());
}

#[test]
fn completions_arrive_at_the_modelled_time_not_before() {
    let mut h = harness();
    h.advance_to(1_000_000);
    h.submit(
        0,
        &[
            build::copy(0, RAM, VRAM0, 1 << 20),
            build::fence(FLAG_IRQ, FENCE_AT, 77),
        ],
    );
    // The bytes have moved; the completion has not been delivered.
    let due = h.dev.next_deadline().unwrap();
    assert_eq!(h.mem.peek(FENCE_AT, 8), [0; 8]);
    assert_eq!(h.read32(queue_reg(0, Q_HEAD)), 0);
    h.advance_to(due - 1);
    assert_eq!(h.read32(queue_reg(0, Q_HEAD)), 0);
    h.advance_to(due);
    assert_eq!(h.read32(queue_reg(0, Q_HEAD)), 1, "the copy retired");
    let second = h.dev.next_deadline().unwrap();
    assert!(second > due, "the fence retires after the copy");
    h.advance_to(second - 1);
    assert_eq!(h.mem.peek(FENCE_AT, 8), [0; 8]);
    assert!(h.msi.0.lock().unwrap().is_empty());
    h.advance_to(second);
    assert_eq!(h.mem.peek(FENCE_AT, 8), 77u64.to_le_bytes());
    assert_eq!(*h.msi.0.lock().unwrap(), vec![0]);
    // 1 MiB from host RAM over a Gen4 x16 link: at least 1 MiB / 32 GB/s.
    let took = second - 1_000_000;
    assert!(took > 32_000_000 && took < 60_000_000, "{took} ps");
}

#[derive(Default)]
struct TimerRecorder(Mutex<Vec<u64>>);

impl super::CompletionTimer for TimerRecorder {
    fn deadline(&self, at: u64) {
        self.0.lock().unwrap().push(at);
    }
}

#[test]
fn a_doorbell_tells_the_timer_when_its_completion_is_due() {
    let mut h = harness();
    let timer = Arc::new(TimerRecorder::default());
    h.dev.set_timer(timer.clone());
    h.write32(INT_ENABLE, 1);
    assert!(timer.0.lock().unwrap().is_empty(), "nothing pending");
    h.submit(
        0,
        &[
            build::copy(0, RAM, VRAM0, 1 << 20),
            build::fence(FLAG_IRQ, FENCE_AT, 5),
        ],
    );
    let due = h.dev.next_deadline().expect("the copy is pending");
    assert_eq!(timer.0.lock().unwrap().last(), Some(&due));
    h.settle();
    assert_eq!(h.dev.next_deadline(), None);
    assert_eq!(h.mem.peek(FENCE_AT, 8), 5u64.to_le_bytes());
}

/// Time for one COPY of `len` bytes from own VRAM to `dst`, on a fresh device.
fn copy_ps(dst: u64, len: u64) -> u64 {
    let mut h = Harness::new();
    h.setup_queue(0, VRAM0, 8);
    h.submit(
        0,
        &[
            build::timestamp(0, VRAM0 + 0x1000),
            build::copy(0, VRAM0 + 0x2000, dst, len),
            build::timestamp(0, VRAM0 + 0x1008),
        ],
    );
    h.settle();
    let t = |a| u64::from_le_bytes(h.mem.peek(a, 8).try_into().unwrap());
    t(VRAM0 + 0x1008) - t(VRAM0 + 0x1000)
}

#[test]
fn peer_to_peer_below_a_switch_beats_the_root_complex() {
    for len in [64, 1 << 20] {
        let local = copy_ps(VRAM1, len);
        let rc = copy_ps(VRAM2, len);
        assert!(
            local < rc,
            "{len} B: switch-local {local} ps, root complex {rc} ps"
        );
    }
}

#[test]
fn dma_is_split_into_tlps_as_pcie_does() {
    // Ring in own VRAM (fetches cross no link). A 4 KiB COPY from host RAM
    // into VRAM: 8 read requests of 512 B (max read request) answered by 16
    // completions of 256 B (max payload), on a0's link and on sw0's link.
    let mut h = Harness::new();
    h.setup_queue(0, VRAM0, 8);
    let before = h.engine.lock().unwrap().stats().messages;
    h.submit(0, &[build::copy(0, RAM, VRAM0 + 0x10000, 4096)]);
    let tlps = h.engine.lock().unwrap().stats().messages - before;
    assert_eq!(tlps, 2 * (8 + 16));
    // VRAM to host: 16 posted writes of 256 B on each link.
    let before = h.engine.lock().unwrap().stats().messages;
    h.submit(0, &[build::copy(0, VRAM0 + 0x10000, RAM, 4096)]);
    assert_eq!(h.engine.lock().unwrap().stats().messages - before, 2 * 16);
    // Switch-local peer write: a0 up to sw0 and down to a1, never sw0's uplink.
    let before = h.engine.lock().unwrap().stats().messages;
    h.submit(0, &[build::copy(0, VRAM0, VRAM1, 4096)]);
    assert_eq!(h.engine.lock().unwrap().stats().messages - before, 2 * 16);
}

#[test]
fn msix_vectors_per_queue_and_for_errors() {
    let mut h = harness();
    h.setup_queue(2, RING + 0x4000, 8);
    h.submit(2, &[build::nop(FLAG_IRQ)]);
    h.submit(0, &[build::nop(FLAG_IRQ), build::nop(0)]);
    h.settle();
    assert_eq!(h.read32(INT_STATUS), 0b101);
    let mut v = h.msi.0.lock().unwrap().clone();
    v.sort();
    assert_eq!(v, vec![0, 2]);
    // A disabled cause latches but sends nothing.
    h.write32(INT_STATUS, u32::MAX);
    h.write32(INT_ENABLE, INT_ERROR);
    h.msi.0.lock().unwrap().clear();
    h.submit(0, &[build::nop(FLAG_IRQ)]);
    h.settle();
    assert_eq!(h.read32(INT_STATUS), 1);
    assert!(h.msi.0.lock().unwrap().is_empty());
    // Errors go to vector Q (= 4) and latch bit 31.
    h.submit(0, &[build::copy(0, 0x8000_0000, RAM, 4)]);
    h.settle();
    assert_eq!(*h.msi.0.lock().unwrap(), vec![4]);
    assert_eq!(h.read32(INT_STATUS), 1 | INT_ERROR);
}

#[test]
fn intx_follows_status_enable_and_interrupt_disable() {
    // MSI-X off: INTA# is the interrupt.
    let mut h = Harness::new();
    h.setup_queue(0, RING, 8);
    h.write32(INT_ENABLE, 1);
    h.submit(0, &[build::nop(FLAG_IRQ)]);
    h.settle();
    assert!(h.pin.pending());
    assert_eq!(*h.line.0.lock().unwrap(), vec![true]);
    // Command.Interrupt Disable masks the line; the cause stays latched.
    h.pin.set_disabled(true);
    assert_eq!(*h.line.0.lock().unwrap(), vec![true, false]);
    h.pin.set_disabled(false);
    assert_eq!(*h.line.0.lock().unwrap(), vec![true, false, true]);
    // Clearing the cause withdraws it.
    h.write32(INT_STATUS, 1);
    assert!(!h.pin.pending());
    assert_eq!(*h.line.0.lock().unwrap(), vec![true, false, true, false]);
    // A disabled cause does not assert it; enabling a latched one does.
    h.write32(INT_ENABLE, 0);
    h.submit(0, &[build::nop(FLAG_IRQ)]);
    h.settle();
    assert!(!h.pin.pending());
    h.write32(INT_ENABLE, 1);
    assert!(h.pin.pending());
    // Device reset deasserts.
    h.write32(RESET, 1);
    assert!(!h.pin.pending());
    assert!(
        h.msi.0.lock().unwrap().is_empty(),
        "no MSI-X while it is off"
    );
}

#[test]
fn the_pci_function_has_the_documented_identity_and_bars() {
    use crate::pci::{PciDevice, CAP_ID_PM};
    let topo = fabric::Topology::from_toml_str(TOPOLOGY).unwrap();
    let mem = Arc::new(FakeMemory::new());
    let deps = super::AccelDeps {
        memory: mem,
        engine: Arc::new(Mutex::new(fabric::Engine::new(&topo))),
        clock: Arc::new(FakeClock::default()),
    };
    let spec = super::AccelSpec {
        config: super::AccelConfig::from_topology(&topo.accelerators[0], 0),
        name: "t".into(),
        link: crate::pci::LinkParams {
            gen: 4,
            width: 16,
            port_number: 0,
        },
        intx: Some(crate::pci::IntxPin::new(
            1,
            Arc::new(LineRecorder::default()),
        )),
    };
    let mut dev = super::build_accelerator(spec, Arc::new(MsiRecorder::default()), deps).unwrap();
    let f = &mut dev.function;
    assert_eq!(f.read_config(0), 0x10f0_1af4);
    assert_eq!(f.read_config(2), 0x1200_0001, "class 12/00/00, revision 1");
    assert_eq!((f.read_config(15) >> 8) & 0xff, 1, "INTA#");
    assert!(f.find_capability(CAP_ID_PM).is_some());
    let size = |f: &mut crate::pci::PciFunction, bar: usize| {
        // Memory decode is off: sizing places no BAR.
        assert!(f.write_config(4 + bar, 0, &[0xff; 4]).is_empty());
        assert!(f.write_config(5 + bar, 0, &[0xff; 4]).is_empty());
        let lo = f.read_config(4 + bar);
        let hi = f.read_config(5 + bar);
        (
            lo & 0xf,
            !((u64::from(hi) << 32) | u64::from(lo & !0xf)) + 1,
        )
    };
    assert_eq!(size(f, 0), (0b0100, 0x10000), "BAR0: 64-bit, 64 KiB");
    assert_eq!(
        size(f, 2),
        (0b1100, 4 << 20),
        "BAR2: 64-bit prefetchable, VRAM size"
    );
    assert_eq!(size(f, 4), (0b0100, 0x2000), "BAR4: MSI-X");
    let msix = f.find_capability(0x11).unwrap();
    assert_eq!(
        f.read_config(msix / 4) >> 16 & 0x7ff,
        4,
        "Q + 1 = 5 vectors"
    );
    assert_eq!(dev.vram.size(), 4 << 20);
    assert_eq!(dev.vram.file().metadata().unwrap().len(), 4 << 20);
    // Placed and enabled, BAR0 is the register block.
    let _ = f.write_config(4, 0, &0xc000_0000u32.to_le_bytes());
    let _ = f.write_config(5, 0, &[0; 4]);
    let on = f.write_config(1, 0, &[0x02, 0]);
    let regs = on.added.iter().find(|b| b.range.index == 0).expect("BAR0");
    assert_eq!(regs.range.base, 0xc000_0000);
    let mut id = [0u8; 4];
    regs.device.read(0, &mut id);
    assert_eq!(&id, b"cxac");
}

#[test]
fn descriptors_parse_without_panicking_on_any_bytes() {
    let mut r = fabric::rng::SplitMix64::new(42);
    for _ in 0..20_000 {
        let mut d = [0u8; 64];
        for b in d.iter_mut() {
            *b = r.next_u64() as u8;
        }
        // Mostly valid opcodes and clean headers, so the later checks run.
        d[0] = [0, 1, 2, 3, 4, 0x10, 0x11, 0x12, 0x13, d[0]][(r.next_u64() % 10) as usize];
        if r.next_u64().is_multiple_of(2) {
            d[1] &= 3;
            d[2..8].fill(0);
        }
        let p = super::command::parse(&d);
        assert_eq!(p.opcode, d[0]);
        assert_eq!(p.flags & !3, 0);
    }
}

#[test]
fn seeded_random_programs_keep_every_invariant() {
    // Deterministic: the same seeds every run. Each program is a few
    // hundred random steps (register writes, raw and structured
    // descriptors, doorbells, time, resets, memory vanishing); run_program
    // checks the invariants after every step.
    let mut r = fabric::rng::SplitMix64::new(0x5eed);
    let (mut retired, mut succeeded) = (0u64, 0u64);
    for _ in 0..150 {
        let len = 200 + (r.next_u64() % 1500) as usize;
        let bytes: Vec<u8> = (0..len)
            .map(|i| {
                let b = r.next_u64() as u8;
                // Bias step bytes towards descriptors, doorbells and time.
                if i % 9 == 0 {
                    [4, 0x14, 0x24, 6, 5, 2, b][(b % 7) as usize]
                } else {
                    b
                }
            })
            .collect();
        let h = run_program(&bytes);
        for q in &h.dev.queues {
            retired += u64::from(q.completed);
            succeeded += u64::from(q.completed.wrapping_sub(q.errors));
        }
    }
    // Counted since each queue's last reset, so a floor, not a total.
    assert!(
        retired > 1000 && succeeded > 300,
        "the programs must execute commands: {retired} retired, {succeeded} succeeded"
    );
}
