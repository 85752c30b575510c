//! Executing one checked command: decode its ranges, book its transfers on
//! the fabric model (`docs/accelerator.md` §6), then move the bytes. A
//! command that fails a check has touched nothing.

use std::sync::Mutex;

use fabric::{dma as fdma, Engine, Picos, Target};

use super::command::{gemm_sizes, Command};
use super::dma::{
    decode_in, decode_range, for_each_part, move_bytes, read_all, spans, write_all, DmaMemory,
    Piece, MOVE_CHUNK,
};
use super::error::{Fault, Status};
use super::kernels::{self, CRC32C};

/// When the device's shared units are next free.
#[derive(Debug, Clone, Default)]
pub struct Units {
    /// Per DMA engine.
    pub dma: Vec<Picos>,
    pub compute: Picos,
}

impl Units {
    pub fn new(dma_engines: u32, now: Picos) -> Self {
        Units {
            dma: vec![now; dma_engines.max(1) as usize],
            compute: now,
        }
    }

    /// The DMA engine that frees first, and when.
    fn dma_engine(&self) -> (usize, Picos) {
        self.dma
            .iter()
            .copied()
            .enumerate()
            .min_by_key(|&(i, t)| (t, i))
            .unwrap_or((0, 0))
    }
}

/// What a successful command leaves for its retirement.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Done {
    pub at: Picos,
    pub fence: Option<(u64, u64)>,
}

/// Everything a command runs against.
pub struct Exec<'a> {
    pub mem: &'a dyn DmaMemory,
    pub engine: &'a Mutex<Engine>,
    /// This accelerator's index in the topology (its fabric source).
    pub me: usize,
    pub compute_gflops: f64,
}

fn unmapped(addr: u64) -> impl Fn(fabric::RequestError) -> Fault {
    move |_| Fault::new(Status::Unmapped, addr)
}

impl Exec<'_> {
    fn own(&self) -> Target {
        Target::Accelerator(self.me)
    }

    fn book<T>(&self, f: impl FnOnce(&mut Engine) -> T) -> T {
        let mut e = self.engine.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut e)
    }

    /// Time the compute unit needs for `ops` operations.
    fn ops_ps(&self, ops: u64) -> Picos {
        // The topology admits only positive rates; anything else costs nothing.
        if self.compute_gflops.is_nan() || self.compute_gflops <= 0.0 {
            return 0;
        }
        // Saturates at u64::MAX for absurd rates rather than wrapping.
        (ops as f64 * 1000.0 / self.compute_gflops).round() as Picos
    }

    /// Runs `cmd`, starting no earlier than `earliest`.
    pub fn run(&self, cmd: &Command, earliest: Picos, units: &mut Units) -> Result<Done, Fault> {
        let done = |at| Done { at, fence: None };
        match *cmd {
            Command::Nop => Ok(done(earliest)),
            Command::Copy { src, dst, len } => {
                let sp = decode_range(self.mem, src, len)?;
                let dp = decode_range(self.mem, dst, len)?;
                let (k, free) = units.dma_engine();
                let start = earliest.max(free);
                let at = self
                    .book(|e| fdma::copy(e, self.me, &spans(&sp), &spans(&dp), start))
                    .map_err(unmapped(src))?;
                units.dma[k] = at;
                move_bytes(self.mem, &sp, &dp)?;
                Ok(done(at))
            }
            Command::Fill { dst, len, pattern } => {
                let dp = decode_range(self.mem, dst, len)?;
                let (k, free) = units.dma_engine();
                let start = earliest.max(free);
                let at = self
                    .book(|e| fdma::write(e, self.me, &spans(&dp), start))
                    .map_err(unmapped(dst))?;
                units.dma[k] = at;
                let pat = pattern.to_le_bytes();
                let mut buf = Vec::new();
                for_each_part(&dp, |a, off, n| {
                    buf.clear();
                    buf.extend((off..off + n).map(|i| pat[(i % 4) as usize]));
                    self.mem
                        .write(a, &buf)
                        .map_err(|_| Fault::new(Status::DmaFault, a))
                })?;
                Ok(done(at))
            }
            Command::Fence { addr, seqno } => {
                let p = decode_range(self.mem, addr, 8)?;
                let at = self
                    .book(|e| fdma::write(e, self.me, &spans(&p), earliest))
                    .map_err(unmapped(addr))?;
                Ok(Done {
                    at,
                    fence: Some((addr, seqno)),
                })
            }
            Command::Timestamp { addr } => {
                let p = decode_range(self.mem, addr, 8)?;
                let at = self
                    .book(|e| fdma::write(e, self.me, &spans(&p), earliest))
                    .map_err(unmapped(addr))?;
                write_all(self.mem, &p, &earliest.to_le_bytes())?;
                Ok(done(at))
            }
            Command::Saxpy { x, y, n, a } => {
                let bytes = 4 * n;
                let xp = decode_in(self.mem, x, bytes, self.own())?;
                let yp = decode_in(self.mem, y, bytes, self.own())?;
                let at = self.kernel(units, earliest, &[xp, yp], 2 * n, &[yp.span])?;
                let (mut xb, mut yb) = (Vec::new(), Vec::new());
                for off in (0..bytes).step_by(MOVE_CHUNK as usize) {
                    let m = (bytes - off).min(MOVE_CHUNK) as usize;
                    xb.resize(m, 0);
                    yb.resize(m, 0);
                    self.read(x + off, &mut xb)?;
                    self.read(y + off, &mut yb)?;
                    let mut yv = kernels::f32s(&yb);
                    kernels::saxpy(a, &kernels::f32s(&xb), &mut yv);
                    self.write(y + off, &kernels::f32_bytes(&yv))?;
                }
                Ok(done(at))
            }
            Command::SumF32 { src, dst, n } => {
                let bytes = 4 * n;
                let sp = decode_in(self.mem, src, bytes, self.own())?;
                let dp = decode_range(self.mem, dst, 4)?;
                let at = self.kernel(units, earliest, &[sp], n, &spans(&dp))?;
                let mut sum = 0f32;
                let mut buf = Vec::new();
                for off in (0..bytes).step_by(MOVE_CHUNK as usize) {
                    buf.resize((bytes - off).min(MOVE_CHUNK) as usize, 0);
                    self.read(src + off, &mut buf)?;
                    sum = kernels::sum_f32(sum, &kernels::f32s(&buf));
                }
                write_all(self.mem, &dp, &sum.to_le_bytes())?;
                Ok(done(at))
            }
            Command::Crc32c { src, dst, len } => {
                let sp = decode_in(self.mem, src, len, self.own())?;
                let dp = decode_range(self.mem, dst, 4)?;
                let at = self.kernel(units, earliest, &[sp], len.div_ceil(4), &spans(&dp))?;
                let mut digest = CRC32C.digest();
                let mut buf = Vec::new();
                for off in (0..len).step_by(MOVE_CHUNK as usize) {
                    buf.resize((len - off).min(MOVE_CHUNK) as usize, 0);
                    self.read(src + off, &mut buf)?;
                    digest.update(&buf);
                }
                write_all(self.mem, &dp, &digest.finalize().to_le_bytes())?;
                Ok(done(at))
            }
            Command::Gemm { a, b, c, m, n, k } => {
                let (sa, sb, sc) = gemm_sizes(m, n, k);
                let ap = decode_in(self.mem, a, sa, self.own())?;
                let bp = decode_in(self.mem, b, sb, self.own())?;
                let cp = decode_in(self.mem, c, sc, self.own())?;
                let ops = 2 * u64::from(m) * u64::from(n) * u64::from(k);
                let at = self.kernel(units, earliest, &[ap, bp], ops, &[cp.span])?;
                let av = kernels::f32s(&read_all(self.mem, &[ap])?);
                let bv = kernels::f32s(&read_all(self.mem, &[bp])?);
                let (m, n, k) = (m as usize, n as usize, k as usize);
                let mut cv = vec![0f32; m * n];
                kernels::gemm(&av, &bv, &mut cv, m, n, k);
                write_all(self.mem, &[cp], &kernels::f32_bytes(&cv))?;
                Ok(done(at))
            }
        }
    }

    /// Books a kernel: operands read from the start, `ops` on the compute
    /// unit, results written once both are done. Returns when the results
    /// have landed.
    fn kernel(
        &self,
        units: &mut Units,
        earliest: Picos,
        inputs: &[Piece],
        ops: u64,
        outputs: &[fdma::Span],
    ) -> Result<Picos, Fault> {
        let start = earliest.max(units.compute);
        let fault = unmapped(inputs.first().map_or(0, |p| p.addr));
        let at = self
            .book(|e| {
                let read = fdma::read(e, self.me, &spans(inputs), start)?;
                let out = read.max(start.saturating_add(self.ops_ps(ops)));
                fdma::write(e, self.me, outputs, out)
            })
            .map_err(fault)?;
        units.compute = at;
        Ok(at)
    }

    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), Fault> {
        self.mem
            .read(addr, buf)
            .map_err(|_| Fault::new(Status::DmaFault, addr))
    }

    fn write(&self, addr: u64, data: &[u8]) -> Result<(), Fault> {
        self.mem
            .write(addr, data)
            .map_err(|_| Fault::new(Status::DmaFault, addr))
    }
}
