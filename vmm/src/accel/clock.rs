//! The guest clock the accelerators read (`CLOCK`, `TIMESTAMP`) and book
//! their completions on.
//!
//! This is the one place that decides what "guest time" is: the machine's
//! virtual clock ([`SharedClock`], which hides VM exits and the device's
//! own copying from the guest) when the machine runs on one, else
//! [`HostClock`], host monotonic time since the machine was built. The
//! devices and the completion timer ([`super::timer`]) only ever see the
//! [`GuestClock`] trait, through [`MachineClock`].

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use devices::clock::GuestClock;

use crate::vclock::shared::SharedClock;

/// Host time until [`MachineClock::bind`] hands it the machine's virtual
/// clock, which happens once the vCPUs exist and before any of them runs
/// (devices are built before the vCPUs). Guest time only moves forward
/// across the switch: the virtual clock counts the guest's TSC, far ahead
/// of the few milliseconds the host clock has counted by then.
#[derive(Default)]
pub struct MachineClock {
    host: HostClock,
    virtual_clock: OnceLock<Arc<SharedClock>>,
}

impl MachineClock {
    pub fn bind(&self, clock: Arc<SharedClock>) {
        let _ = self.virtual_clock.set(clock);
    }
}

impl GuestClock for MachineClock {
    fn now_ps(&self) -> u64 {
        match self.virtual_clock.get() {
            Some(c) => c.now_ps(),
            None => self.host.now_ps(),
        }
    }

    fn stop_others(&self) {
        if let Some(c) = self.virtual_clock.get() {
            GuestClock::stop_others(c.as_ref());
        }
    }

    fn delivered(&self, ps: u64) {
        if let Some(c) = self.virtual_clock.get() {
            GuestClock::delivered(c.as_ref(), ps);
        }
    }
}

/// Host monotonic time, in picoseconds since the clock was made.
pub struct HostClock {
    start: Instant,
}

impl HostClock {
    pub fn new() -> Self {
        HostClock {
            start: Instant::now(),
        }
    }
}

impl Default for HostClock {
    fn default() -> Self {
        Self::new()
    }
}

impl GuestClock for HostClock {
    fn now_ps(&self) -> u64 {
        let ns = u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        ns.saturating_mul(1000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_clock_starts_near_zero_and_never_goes_back() {
        let c = HostClock::new();
        let a = c.now_ps();
        let b = c.now_ps();
        assert!(b >= a);
        // Made a moment ago: well under a minute of picoseconds.
        assert!(a < 60_000_000_000_000, "{a}");
    }
}
