//! The host CPU cache in front of timed memory: set-associative, least
//! recently used replacement, write-back and write-allocate.
//!
//! Timed memory is not mapped into the guest, so no real cache ever holds
//! it; this model stands for the guest's whole cache hierarchy for those
//! addresses. It tracks tags only (the data lives in the device backing):
//! an access says which lines hit, which line a miss must fetch and which
//! dirty line its eviction must write back; [`crate::Engine::timed_access`]
//! turns those into fabric transactions.
//!
//! * Set index: the line number modulo the number of sets (a power of two).
//!   Real LLCs hash the index; for the strided and random patterns timed
//!   memory serves, plain modulo differs only for power-of-two strides.
//! * Replacement: true LRU by a per-way last-use stamp; an invalid way is
//!   taken first. Deterministic: no randomness.
//! * Writes allocate (a write miss fetches the line, read for ownership) and
//!   mark the line dirty; a dirty line is written back when evicted or
//!   flushed.
//!
//! An access costs O(ways) and never allocates; the tag store (16 bytes per
//! line) is allocated once, when the cache is built.

use serde::Serialize;

use crate::engine::Op;
use crate::time::{ns_to_ps, Picos};
use crate::topology::CpuCacheParams;

/// One way of a set.
#[derive(Debug, Clone, Copy, Default)]
struct Way {
    /// Line number (address >> line shift) << 1 | dirty.
    tag: u64,
    /// Last use (0: the way is invalid).
    stamp: u64,
}

/// What one line of an access did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineOutcome {
    /// Address of the line (aligned to the line size).
    pub line: u64,
    /// The line was present.
    pub hit: bool,
    /// A miss with the cache on: the line to fetch (= `line`).
    pub fill: Option<u64>,
    /// A dirty line evicted to make room: the line to write back.
    pub writeback: Option<u64>,
}

/// What an access did: one or two lines (two when it straddles a line
/// boundary).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheOutcome {
    lines: [LineOutcome; 2],
    n: u8,
}

impl CacheOutcome {
    /// The lines touched, in address order.
    pub fn lines(&self) -> &[LineOutcome] {
        &self.lines[..self.n as usize]
    }

    /// Every line hit.
    pub fn hit(&self) -> bool {
        self.lines().iter().all(|l| l.hit)
    }
}

/// Counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct CacheStats {
    /// Line lookups that hit.
    pub hits: u64,
    /// Line lookups that missed (every lookup when the cache is off).
    pub misses: u64,
    /// Dirty lines written back (evictions and flushes).
    pub writebacks: u64,
}

impl CacheStats {
    /// Hits over lookups (0 when there were none).
    pub fn hit_rate(&self) -> f64 {
        let n = self.hits + self.misses;
        if n == 0 {
            0.0
        } else {
            self.hits as f64 / n as f64
        }
    }
}

/// The cache model.
#[derive(Debug, Clone)]
pub struct Cache {
    enabled: bool,
    line_shift: u32,
    set_mask: u64,
    ways: usize,
    hit_ps: Picos,
    store: Box<[Way]>,
    clock: u64,
    stats: CacheStats,
}

/// Largest access [`Cache::access`] takes: a line (64 B or more) so that an
/// access touches at most two lines. KVM's MMIO exits carry at most 8 bytes.
pub const MAX_ACCESS: u32 = 64;

impl Cache {
    /// A cold cache with `p`'s geometry (validated: sets a power of two).
    pub fn new(p: &CpuCacheParams) -> Cache {
        let line = p.line.max(1).next_power_of_two();
        let ways = p.ways.max(1) as usize;
        let sets = p.sets().max(1).next_power_of_two();
        // A disabled cache keeps no tags.
        let lines = if p.enabled { sets as usize * ways } else { 0 };
        Cache {
            enabled: p.enabled,
            line_shift: line.trailing_zeros(),
            set_mask: sets - 1,
            ways,
            hit_ps: ns_to_ps(p.hit_latency_ns),
            store: vec![Way::default(); lines].into_boxed_slice(),
            clock: 0,
            stats: CacheStats::default(),
        }
    }

    /// A cold cache with geometry `p` that continues `old`'s counters.
    pub fn rebuilt(old: &Cache, p: &CpuCacheParams) -> Cache {
        Cache {
            stats: old.stats,
            ..Cache::new(p)
        }
    }

    /// Whether the cache is on.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Line size in bytes.
    pub fn line_bytes(&self) -> u32 {
        1 << self.line_shift
    }

    /// What a hit costs.
    pub fn hit_ps(&self) -> Picos {
        self.hit_ps
    }

    /// Change the hit latency (the only parameter that keeps the contents).
    pub fn set_hit_ps(&mut self, ps: Picos) {
        self.hit_ps = ps;
    }

    /// Counters so far.
    pub fn stats(&self) -> CacheStats {
        self.stats
    }

    /// Look up (and on a miss, allocate) the line holding `addr`.
    #[inline]
    pub fn access_line(&mut self, addr: u64, op: Op) -> LineOutcome {
        let line_no = addr >> self.line_shift;
        let line = line_no << self.line_shift;
        if !self.enabled {
            self.stats.misses += 1;
            return LineOutcome {
                line,
                hit: false,
                fill: None,
                writeback: None,
            };
        }
        self.clock += 1;
        let dirty = u64::from(op == Op::Write);
        let set = (line_no & self.set_mask) as usize * self.ways;
        let ways = &mut self.store[set..set + self.ways];
        // One pass: the matching way, or the least recently used (an
        // invalid way has stamp 0, so it is taken first).
        let mut victim = 0;
        let mut oldest = u64::MAX;
        for (i, w) in ways.iter_mut().enumerate() {
            if w.stamp != 0 && w.tag >> 1 == line_no {
                w.tag |= dirty;
                w.stamp = self.clock;
                self.stats.hits += 1;
                return LineOutcome {
                    line,
                    hit: true,
                    fill: None,
                    writeback: None,
                };
            }
            if w.stamp < oldest {
                oldest = w.stamp;
                victim = i;
            }
        }
        self.stats.misses += 1;
        let w = &mut ways[victim];
        let writeback = (w.stamp != 0 && w.tag & 1 == 1).then(|| (w.tag >> 1) << self.line_shift);
        self.stats.writebacks += u64::from(writeback.is_some());
        *w = Way {
            tag: line_no << 1 | dirty,
            stamp: self.clock,
        };
        LineOutcome {
            line,
            hit: false,
            fill: Some(line),
            writeback,
        }
    }

    /// An access of `size` bytes at `addr`: one line, or two when it
    /// straddles a boundary. `size` is taken as 1 to [`MAX_ACCESS`] bytes
    /// (the caller rejects larger ones; [`crate::Engine::timed_access`] does).
    #[inline]
    pub fn access(&mut self, addr: u64, size: u32, op: Op) -> CacheOutcome {
        let last = addr.saturating_add(u64::from(size.clamp(1, MAX_ACCESS)) - 1);
        let first = self.access_line(addr, op);
        let mut out = CacheOutcome {
            lines: [first; 2],
            n: 1,
        };
        if last >> self.line_shift != addr >> self.line_shift {
            out.lines[1] = self.access_line(last, op);
            out.n = 2;
        }
        out
    }

    /// Write back every dirty line (they stay valid, now clean): calls
    /// `writeback` with each line's address, in set order. Returns the count.
    pub fn flush_all(&mut self, mut writeback: impl FnMut(u64)) -> u64 {
        let mut n = 0;
        for w in self.store.iter_mut() {
            if w.stamp != 0 && w.tag & 1 == 1 {
                w.tag &= !1;
                writeback((w.tag >> 1) << self.line_shift);
                n += 1;
            }
        }
        self.stats.writebacks += n;
        n
    }

    /// Drop every line, dirty ones without a write-back (the backing already
    /// holds the data; only the write-back traffic is forgone).
    pub fn invalidate_all(&mut self) {
        self.store.fill(Way::default());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SplitMix64;

    fn cache(size: u64, ways: u32, line: u32) -> Cache {
        Cache::new(&CpuCacheParams {
            enabled: true,
            size,
            ways,
            line,
            hit_latency_ns: 20.0,
        })
    }

    #[test]
    fn miss_then_hit() {
        let mut c = cache(4096, 4, 64);
        let a = c.access(0x1000, 8, Op::Read);
        assert_eq!(a.lines().len(), 1);
        assert_eq!(
            a.lines()[0],
            LineOutcome {
                line: 0x1000,
                hit: false,
                fill: Some(0x1000),
                writeback: None
            }
        );
        assert!(c.access(0x1038, 8, Op::Read).hit());
        assert_eq!(
            c.stats(),
            CacheStats {
                hits: 1,
                misses: 1,
                writebacks: 0
            }
        );
    }

    #[test]
    fn lru_eviction_in_one_set() {
        // 2 ways x 64 B x 4 sets: lines 4 sets apart share a set.
        let mut c = cache(512, 2, 64);
        let stride = 4 * 64;
        c.access(0, 8, Op::Read);
        c.access(stride, 8, Op::Read);
        // Touch line 0 again: line `stride` is now least recently used.
        assert!(c.access(0, 8, Op::Read).hit());
        let third = c.access(2 * stride, 8, Op::Read);
        assert!(!third.hit());
        assert!(c.access(0, 8, Op::Read).hit(), "line 0 was most recent");
        assert!(
            !c.access(stride, 8, Op::Read).hit(),
            "line stride was evicted"
        );
        // Other sets are untouched by all this.
        assert!(!c.access(64, 8, Op::Read).hit());
    }

    #[test]
    fn dirty_victim_is_written_back_clean_one_is_not() {
        let mut c = cache(128, 2, 64); // one set, two ways
        let w = c.access(0x0, 8, Op::Write);
        assert_eq!(
            w.lines()[0].fill,
            Some(0),
            "write-allocate fetches the line"
        );
        c.access(0x40, 8, Op::Read);
        // Evicts line 0 (LRU, dirty).
        let o = c.access(0x80, 8, Op::Read);
        assert_eq!(o.lines()[0].writeback, Some(0));
        // Evicts 0x40 (clean): no write-back.
        let o = c.access(0xc0, 8, Op::Read);
        assert_eq!(o.lines()[0].writeback, None);
        assert_eq!(c.stats().writebacks, 1);
    }

    #[test]
    fn write_hit_dirties_a_clean_line() {
        let mut c = cache(128, 2, 64);
        c.access(0x0, 8, Op::Read);
        assert!(c.access(0x8, 4, Op::Write).hit());
        c.access(0x40, 8, Op::Read);
        let o = c.access(0x80, 8, Op::Read);
        assert_eq!(o.lines()[0].writeback, Some(0));
    }

    #[test]
    fn straddling_access_touches_both_lines() {
        let mut c = cache(4096, 4, 64);
        let o = c.access(0x103c, 8, Op::Write);
        let lines: Vec<u64> = o.lines().iter().map(|l| l.line).collect();
        assert_eq!(lines, vec![0x1000, 0x1040]);
        assert!(o.lines().iter().all(|l| l.fill.is_some()));
        assert!(c.access(0x1000, 1, Op::Read).hit());
        assert!(c.access(0x107f, 1, Op::Read).hit());
        // Straddling the end of the address space does not wrap.
        let o = c.access(u64::MAX - 3, 8, Op::Read);
        assert_eq!(o.lines().len(), 1);
    }

    #[test]
    fn wider_lines_cover_more_bytes() {
        let mut c = cache(8192, 4, 256);
        c.access(0x2000, 8, Op::Read);
        assert!(c.access(0x20f8, 8, Op::Read).hit());
        assert!(!c.access(0x2100, 8, Op::Read).hit());
        assert_eq!(c.line_bytes(), 256);
    }

    #[test]
    fn flush_writes_back_dirty_lines_once() {
        let mut c = cache(4096, 4, 64);
        c.access(0x0, 8, Op::Write);
        c.access(0x40, 8, Op::Read);
        c.access(0x80, 8, Op::Write);
        let mut out = Vec::new();
        assert_eq!(c.flush_all(|l| out.push(l)), 2);
        out.sort_unstable();
        assert_eq!(out, vec![0x0, 0x80]);
        assert_eq!(c.flush_all(|_| {}), 0, "flushed lines are clean");
        assert!(c.access(0x0, 8, Op::Read).hit(), "flush keeps lines valid");
        c.invalidate_all();
        assert!(!c.access(0x0, 8, Op::Read).hit());
    }

    #[test]
    fn disabled_cache_misses_without_fills() {
        let mut c = Cache::new(&CpuCacheParams {
            enabled: false,
            ..CpuCacheParams::default()
        });
        for _ in 0..3 {
            let o = c.access(0x40, 8, Op::Write);
            assert_eq!(
                o.lines()[0],
                LineOutcome {
                    line: 0x40,
                    hit: false,
                    fill: None,
                    writeback: None
                }
            );
        }
        assert_eq!(c.stats().misses, 3);
    }

    /// A random cyclic permutation of `n` lines, as a pointer chase visits them.
    fn chase_order(n: u64, seed: u64) -> Vec<u64> {
        let mut rng = SplitMix64::new(seed);
        let mut v: Vec<u64> = (0..n).collect();
        for i in (1..v.len()).rev() {
            let j = (rng.next_u64() % (i as u64 + 1)) as usize;
            v.swap(i, j);
        }
        v
    }

    #[test]
    fn pointer_chase_larger_than_the_cache_misses() {
        // 4 MiB chased through the default 1 MiB, 16-way cache.
        let mut c = Cache::new(&CpuCacheParams::default());
        let order = chase_order((4 << 20) / 64, 1);
        for _ in 0..3 {
            for &l in &order {
                c.access(l * 64, 8, Op::Read);
            }
        }
        // The same cyclic order every pass: each set sees 64 lines in turn
        // through 16 ways, and LRU keeps none of them long enough.
        let rate = c.stats().hit_rate();
        assert!(rate < 0.01, "hit rate {rate}");
    }

    #[test]
    fn small_reused_buffer_hits() {
        let mut c = Cache::new(&CpuCacheParams::default());
        let order = chase_order((256 << 10) / 64, 2);
        for _ in 0..10 {
            for &l in &order {
                c.access(l * 64, 8, Op::Read);
            }
        }
        let s = c.stats();
        // Only the first pass misses (compulsory misses).
        assert_eq!(s.misses, order.len() as u64);
        assert_eq!(s.hits, 9 * order.len() as u64);
    }
}
