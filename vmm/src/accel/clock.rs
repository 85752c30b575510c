//! The guest clock the accelerators read (`CLOCK`, `TIMESTAMP`) and book
//! their completions on.
//!
//! This is the one place that decides what "guest time" is. Today it is
//! [`HostClock`]: host monotonic time since the machine was built. A
//! virtual clock that hides the VMM's own costs (VM exits, the device
//! copying bytes) implements the same [`GuestClock`] trait and is passed in
//! instead, behind the same `Arc<dyn GuestClock>`: the devices and the
//! completion timer ([`super::timer`]) only ever call `now_ps`.

use std::time::Instant;

use devices::clock::GuestClock;

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
