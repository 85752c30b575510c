//! What `--stats` and `ctl stats` report about timed memory.

use fabric::{LatencyHistogram, Op};

/// One timed window's accesses.
#[derive(Clone, serde::Serialize)]
pub struct WindowStats {
    pub id: String,
    pub accesses: u64,
    pub reads: u64,
    pub writes: u64,
    /// Accesses whose every line hit the cache model.
    pub hits: u64,
    /// Accesses that decoded to no device (read as all ones).
    pub undecoded: u64,
    /// Guest-visible latency of each access.
    pub latency: LatencyHistogram,
}

impl WindowStats {
    fn new(id: String) -> Self {
        Self {
            id,
            accesses: 0,
            reads: 0,
            writes: 0,
            hits: 0,
            undecoded: 0,
            latency: LatencyHistogram::new(),
        }
    }

    pub fn record(&mut self, latency_ps: u64, hit: bool, op: Op, decoded: bool) {
        self.accesses += 1;
        match op {
            Op::Read => self.reads += 1,
            Op::Write => self.writes += 1,
        }
        self.hits += u64::from(hit);
        self.undecoded += u64::from(!decoded);
        self.latency.record_ps(latency_ps);
    }

    pub fn hit_rate(&self) -> f64 {
        if self.accesses == 0 {
            0.0
        } else {
            self.hits as f64 / self.accesses as f64
        }
    }
}

#[derive(Clone, serde::Serialize)]
pub struct TimedStats {
    pub windows: Vec<WindowStats>,
    /// Host time the VMM spent per timed access (from KVM_RUN returning
    /// to the access being accounted: trace read, decode, cache model,
    /// engine, data copy, clock bookkeeping), not counting waits.
    pub vmm_cost: LatencyHistogram,
}

impl TimedStats {
    pub fn new(ids: Vec<String>) -> Self {
        Self {
            windows: ids.into_iter().map(WindowStats::new).collect(),
            vmm_cost: LatencyHistogram::new(),
        }
    }
}
