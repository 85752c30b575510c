//! Optional CRC errors at a bit-error rate. A corrupted flit or TLP is
//! detected by the receiver and replayed from the sender's retry buffer:
//! it costs one link round trip (the NAK / retry request back and the
//! replay forward) plus the unit's own wire time again.

use crate::rng::SplitMix64;

#[derive(Debug, Clone)]
pub(crate) struct CrcErrors {
    /// Probability that one unit (flit/TLP) is corrupted.
    p: f64,
    /// Delay a corrupted unit suffers.
    penalty_ps: u64,
    rng: SplitMix64,
    /// Replays so far.
    pub replays: u64,
}

impl CrcErrors {
    /// `bits` per unit at bit-error rate `ber`; `penalty_ps` per replay.
    pub fn new(ber: f64, bits: u64, penalty_ps: u64, rng: SplitMix64) -> Self {
        // 1 - (1 - ber)^bits, computed without cancellation for tiny BERs.
        let p = if ber > 0.0 {
            -(bits as f64 * (-ber).ln_1p()).exp_m1()
        } else {
            0.0
        };
        CrcErrors {
            p,
            penalty_ps,
            rng,
            replays: 0,
        }
    }

    /// Whether errors are injected at all.
    #[inline(always)]
    pub fn active(&self) -> bool {
        self.p > 0.0
    }

    /// The error stream's generator (carried over when a link is retuned).
    pub fn rng(&self) -> SplitMix64 {
        self.rng.clone()
    }

    /// Extra delay for the next unit: 0, or the replay penalty.
    #[inline]
    pub fn draw(&mut self) -> u64 {
        if self.p > 0.0 && self.rng.next_f64() < self.p {
            self.replays += 1;
            self.penalty_ps
        } else {
            0
        }
    }
}
