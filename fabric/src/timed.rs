//! The timed front end: one guest access to timed memory in, the latency
//! the guest must see and the fabric transactions it caused out.
//!
//! The mapping (documented in `docs/fabric.md`, "How a guest access becomes
//! fabric transactions"):
//!
//! * The access (at most [`MAX_ACCESS`] bytes) touches one cache line, or
//!   two when it straddles a line boundary; each line is looked up in the
//!   engine's [`Cache`](crate::cache::Cache).
//! * A hit costs the hit latency and no fabric traffic.
//! * A miss (load, or store: write-allocate reads for ownership) is a MemRd
//!   of the line (`line` bytes, as 64 B CXL.mem lines) from the host, issued
//!   when the access is; the guest waits for its data.
//! * A dirty victim is a MemWr of its line, issued right after the fills
//!   (demand reads first) and posted: it occupies links, credits and media
//!   and so delays later traffic, but the guest does not wait for it.
//! * Cache off: each 64 B piece touched is a MemRd (load) or MemWr (store);
//!   the guest waits for the data or the NDR.
//! * The access completes at the latest of its hits and the transactions
//!   the guest waits for.
//!
//! Each line's fabric target comes from the caller's decode: the VMM knows
//! the committed HDM decoders and passes `Target::Type3 { device, dpa }`;
//! `Target::Address(hpa)` lets the model's own decode pick.

use crate::cache::{Cache, MAX_ACCESS};
use crate::engine::{Engine, Op, RequestError, Source, Target};
use crate::time::Picos;

/// Why a transaction was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnKind {
    /// A missed line fetched (MemRd; read for ownership for a store).
    Fill,
    /// A dirty victim written back (MemWr, posted).
    WriteBack,
    /// The cache is off: the access itself (MemRd or MemWr).
    Uncached,
}

/// One fabric transaction an access caused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transaction {
    pub kind: TxnKind,
    pub op: Op,
    pub target: Target,
    pub bytes: u32,
    pub complete: Picos,
    /// Whether the guest waits for it (every kind but a write-back).
    pub waited: bool,
}

/// Most transactions one access can cause: two lines, each a fill and a
/// write-back.
const MAX_TXNS: usize = 4;

/// The answer to one guest access.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimedAccess {
    pub issue: Picos,
    /// When the guest may go on (issue + latency).
    pub complete: Picos,
    /// Every line the access touched hit the cache.
    pub hit: bool,
    txns: [Transaction; MAX_TXNS],
    n: u8,
}

impl TimedAccess {
    /// What the guest's clock must advance by for this access.
    pub fn latency(&self) -> Picos {
        self.complete - self.issue
    }

    /// The fabric transactions, fills (or uncached accesses) first.
    pub fn transactions(&self) -> &[Transaction] {
        &self.txns[..self.n as usize]
    }
}

const NO_TXN: Transaction = Transaction {
    kind: TxnKind::Uncached,
    op: Op::Read,
    target: Target::HostMemory,
    bytes: 0,
    complete: 0,
    waited: false,
};

impl Engine {
    /// The CPU cache model in front of timed memory.
    pub fn cache(&self) -> &Cache {
        &self.cache
    }

    /// The cache, to flush or invalidate it (e.g. when a region goes away).
    /// Its geometry changes only through `set_param("cpu_cache", ...)`.
    pub fn cache_mut(&mut self) -> &mut Cache {
        &mut self.cache
    }

    /// Serve one guest access of `size` bytes (1 to 64) at `hpa`, issued at
    /// guest time `issue`, through the CPU cache model and the fabric.
    /// `decode` maps a line's address (aligned, or a 64 B piece's with the
    /// cache off) to the target the fabric request goes to.
    ///
    /// Errors: a size of 0 or over 64 bytes; a fill or uncached access whose
    /// target the engine cannot resolve (nothing is charged then, but the
    /// cache has already allocated the line). A write-back that cannot be
    /// resolved is dropped and counted (`TimedStats::dropped_writebacks`).
    pub fn timed_access(
        &mut self,
        hpa: u64,
        size: u32,
        op: Op,
        issue: Picos,
        mut decode: impl FnMut(u64) -> Target,
    ) -> Result<TimedAccess, RequestError> {
        if size == 0 {
            return Err(RequestError::ZeroBytes);
        }
        if size > MAX_ACCESS {
            return Err(RequestError::TooLarge {
                bytes: size,
                max: MAX_ACCESS,
            });
        }
        let mut out = TimedAccess {
            issue,
            complete: issue,
            hit: false,
            txns: [NO_TXN; MAX_TXNS],
            n: 0,
        };
        self.timed.accesses += 1;
        if !self.cache.enabled() {
            // One transaction per 64 B piece touched, waited for.
            let first = hpa & !63;
            let last = hpa.saturating_add(u64::from(size) - 1) & !63;
            let mut piece = first;
            loop {
                let target = decode(piece);
                let c = self.request(Source::Host, target, 64, op, issue)?;
                self.timed.uncached += 1;
                out.push(TxnKind::Uncached, op, target, 64, c.complete, true);
                if piece >= last {
                    break;
                }
                piece += 64;
            }
            return Ok(out);
        }
        let lookup = self.cache.access(hpa, size, op);
        let line_bytes = self.cache.line_bytes();
        let hit_done = issue + self.cache.hit_ps();
        out.hit = lookup.hit();
        self.timed.hits += u64::from(out.hit);
        for l in lookup.lines() {
            if l.hit {
                out.complete = out.complete.max(hit_done);
            }
            if let Some(line) = l.fill {
                let target = decode(line);
                let c = self.request(Source::Host, target, line_bytes, Op::Read, issue)?;
                self.timed.fills += 1;
                out.push(
                    TxnKind::Fill,
                    Op::Read,
                    target,
                    line_bytes,
                    c.complete,
                    true,
                );
            }
        }
        for line in lookup.lines().iter().filter_map(|l| l.writeback) {
            let target = decode(line);
            match self.request(Source::Host, target, line_bytes, Op::Write, issue) {
                Ok(c) => {
                    self.timed.writebacks += 1;
                    out.push(
                        TxnKind::WriteBack,
                        Op::Write,
                        target,
                        line_bytes,
                        c.complete,
                        false,
                    );
                }
                Err(_) => self.timed.dropped_writebacks += 1,
            }
        }
        Ok(out)
    }
}

impl TimedAccess {
    fn push(
        &mut self,
        kind: TxnKind,
        op: Op,
        target: Target,
        bytes: u32,
        done: Picos,
        waited: bool,
    ) {
        if waited {
            self.complete = self.complete.max(done);
        }
        if let Some(slot) = self.txns.get_mut(self.n as usize) {
            *slot = Transaction {
                kind,
                op,
                target,
                bytes,
                complete: done,
                waited,
            };
            self.n += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ParamValue, Topology};

    /// Default topology; the model decodes addresses.
    fn engine() -> (Engine, u64) {
        let e = Engine::new(&Topology::default_topology());
        let base = e.address_map().window_base(0).unwrap();
        (e, base)
    }

    fn by_address(hpa: u64) -> Target {
        Target::Address(hpa)
    }

    fn idle_read(e: &Engine, bytes: u32) -> Picos {
        e.idle_latency(
            Source::Host,
            Target::Type3 { device: 0, dpa: 0 },
            bytes,
            Op::Read,
        )
        .unwrap()
    }

    #[test]
    fn load_miss_is_one_memrd_then_hits() {
        let (mut e, base) = engine();
        let idle = idle_read(&e, 64);
        let a = e
            .timed_access(base + 8, 8, Op::Read, 0, by_address)
            .unwrap();
        assert!(!a.hit);
        assert_eq!(
            a.latency(),
            idle,
            "a miss costs exactly the fabric's idle read"
        );
        let t = a.transactions();
        assert_eq!(t.len(), 1);
        assert_eq!(
            (t[0].kind, t[0].op, t[0].bytes, t[0].waited),
            (TxnKind::Fill, Op::Read, 64, true)
        );
        assert_eq!(t[0].target, Target::Address(base));
        let b = e
            .timed_access(base + 16, 8, Op::Read, a.complete, by_address)
            .unwrap();
        assert!(b.hit);
        assert_eq!(b.latency(), 20_000, "default hit latency");
        assert!(b.transactions().is_empty());
        assert_eq!(e.fabric_stats(b.complete).requests, 1);
    }

    #[test]
    fn exact_target_from_the_vmm_is_used() {
        let (mut e, base) = engine();
        let a = e
            .timed_access(base + 0x1234, 4, Op::Read, 0, |line| Target::Type3 {
                device: 1,
                dpa: line - base,
            })
            .unwrap();
        assert_eq!(
            a.transactions()[0].target,
            Target::Type3 {
                device: 1,
                dpa: 0x1200
            }
        );
        assert_eq!(e.fabric_stats(a.complete).devices[1].reads, 1);
    }

    #[test]
    fn store_miss_reads_for_ownership_and_dirty_victim_is_posted() {
        let (mut e, base) = engine();
        // One set, one way: every new line evicts the last.
        e.set_param("cpu_cache", "ways", &ParamValue::Int(1))
            .unwrap();
        e.set_param("cpu_cache", "size", &ParamValue::Int(64))
            .unwrap();
        let s = e.timed_access(base, 8, Op::Write, 0, by_address).unwrap();
        assert_eq!(s.transactions().len(), 1);
        assert_eq!(s.transactions()[0].kind, TxnKind::Fill);
        assert_eq!(
            s.latency(),
            idle_read(&e, 64),
            "the store waits for its RFO"
        );
        // A load of another line evicts the dirty one.
        let l = e
            .timed_access(base + 4096, 8, Op::Read, s.complete, by_address)
            .unwrap();
        let t = l.transactions();
        assert_eq!(t.len(), 2);
        assert_eq!(
            (t[0].kind, t[0].target),
            (TxnKind::Fill, Target::Address(base + 4096))
        );
        assert_eq!(
            (t[1].kind, t[1].op, t[1].waited),
            (TxnKind::WriteBack, Op::Write, false)
        );
        assert_eq!(t[1].target, Target::Address(base));
        // The write-back is issued after the fill: the load is not delayed.
        assert_eq!(l.latency(), idle_read(&e, 64));
        assert!(t[1].complete > l.issue);
        let st = e.fabric_stats(l.complete);
        assert_eq!((st.timed.fills, st.timed.writebacks), (2, 1));
        assert_eq!(st.devices.iter().map(|d| d.writes).sum::<u64>(), 1);
    }

    #[test]
    fn straddling_access_fetches_both_lines() {
        let (mut e, base) = engine();
        let a = e
            .timed_access(base + 60, 8, Op::Read, 0, by_address)
            .unwrap();
        let t = a.transactions();
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].target, Target::Address(base));
        assert_eq!(t[1].target, Target::Address(base + 64));
        assert_eq!(a.complete, t[0].complete.max(t[1].complete));
        assert!(
            a.latency() > idle_read(&e, 64),
            "the second line queues behind the first"
        );
        // Half hit, half miss: waits for the miss.
        let b = e
            .timed_access(base + 124, 8, Op::Read, a.complete, by_address)
            .unwrap();
        assert!(!b.hit);
        assert_eq!(b.transactions().len(), 1);
        assert_eq!(b.transactions()[0].target, Target::Address(base + 128));
    }

    #[test]
    fn cache_off_every_access_goes_to_the_fabric() {
        let (mut e, base) = engine();
        e.set_param("cpu_cache", "enabled", &ParamValue::Bool(false))
            .unwrap();
        let mut t = 0;
        for _ in 0..3 {
            let a = e.timed_access(base, 8, Op::Read, t, by_address).unwrap();
            assert_eq!(a.transactions().len(), 1);
            assert_eq!(a.transactions()[0].kind, TxnKind::Uncached);
            assert_eq!(a.latency(), idle_read(&e, 64));
            t = a.complete;
        }
        let w = e
            .timed_access(base + 62, 4, Op::Write, t, by_address)
            .unwrap();
        let tx = w.transactions();
        assert_eq!(tx.len(), 2, "straddles two 64 B pieces");
        assert!(tx.iter().all(|x| x.op == Op::Write && x.waited));
        let idle_write = e
            .idle_latency(
                Source::Host,
                Target::Type3 { device: 0, dpa: 0 },
                64,
                Op::Write,
            )
            .unwrap();
        assert!(w.latency() >= idle_write, "the guest waits for the NDR");
    }

    #[test]
    fn wide_lines_fetch_the_whole_line() {
        let (mut e, base) = engine();
        e.set_param("cpu_cache", "line", &ParamValue::Int(128))
            .unwrap();
        let a = e
            .timed_access(base + 200, 8, Op::Read, 0, by_address)
            .unwrap();
        assert_eq!(a.transactions()[0].bytes, 128);
        assert_eq!(a.transactions()[0].target, Target::Address(base + 128));
        assert_eq!(
            e.fabric_stats(a.complete)
                .devices
                .iter()
                .map(|d| d.reads)
                .sum::<u64>(),
            2
        );
        assert!(
            e.timed_access(base + 130, 8, Op::Read, a.complete, by_address)
                .unwrap()
                .hit
        );
    }

    #[test]
    fn bad_sizes_and_unmapped_addresses_are_errors() {
        let (mut e, base) = engine();
        assert_eq!(
            e.timed_access(base, 0, Op::Read, 0, by_address),
            Err(RequestError::ZeroBytes)
        );
        assert_eq!(
            e.timed_access(base, 65, Op::Read, 0, by_address),
            Err(RequestError::TooLarge { bytes: 65, max: 64 })
        );
        assert!(matches!(
            e.timed_access(0x1000, 8, Op::Read, 0, by_address),
            Err(RequestError::Decode(_))
        ));
    }

    #[test]
    fn unresolvable_writeback_is_dropped_not_an_error() {
        let (mut e, base) = engine();
        e.set_param("cpu_cache", "ways", &ParamValue::Int(1))
            .unwrap();
        e.set_param("cpu_cache", "size", &ParamValue::Int(64))
            .unwrap();
        e.timed_access(base, 8, Op::Write, 0, by_address).unwrap();
        // The region went away: its lines no longer decode.
        let gone = |hpa: u64| {
            if hpa == base {
                Target::Type3 { device: 9, dpa: 0 }
            } else {
                Target::Address(hpa)
            }
        };
        let a = e
            .timed_access(base + 64, 8, Op::Read, 1_000_000, gone)
            .unwrap();
        assert_eq!(a.transactions().len(), 1);
        assert_eq!(e.fabric_stats(0).timed.dropped_writebacks, 1);
    }

    #[test]
    fn pointer_chase_sees_the_fabric_and_a_small_loop_does_not() {
        let (mut e, base) = engine();
        let idle = idle_read(&e, 64);
        // 4 MiB with a 4 KiB + 64 B stride (every line once per pass, not
        // sequential): more than the 1 MiB cache.
        let lines = (4u64 << 20) / 64;
        let mut t = 0;
        let mut total = 0;
        for i in 0..2 * lines {
            let line = (i * 65) % lines;
            let a = e
                .timed_access(base + line * 64, 8, Op::Read, t, by_address)
                .unwrap();
            total += a.latency();
            t = a.complete;
        }
        let mean = total / (2 * lines);
        assert!(mean > idle * 95 / 100, "mean {mean} vs idle {idle}");
        // 64 KiB loop: after the first pass everything hits.
        let mut e2 = engine().0;
        let mut t = 0;
        let mut total = 0;
        let n = 10 * 1024;
        for i in 0..n {
            let a = e2
                .timed_access(base + (i % 1024) * 64, 8, Op::Read, t, by_address)
                .unwrap();
            total += a.latency();
            t = a.complete;
        }
        let mean = total / n;
        assert!(mean < 2 * 20_000 + idle / 10, "mean {mean}");
    }
}
