//! The guest clock the accelerators read (`CLOCK`, `TIMESTAMP`) and book
//! their completions on.
//!
//! This is the one place that decides what "guest time" is: the machine's
//! virtual clock ([`SharedClock`], which hides VM exits and the device's
//! own copying from the guest) when the machine runs on one, else
//! [`HostClock`], host monotonic time since the machine was built. The
//! devices and the completion timer ([`super::timer`]) only ever see the
//! [`GuestClock`] trait, through [`MachineClock`]; timed memory without a
//! virtual clock (`--host-time`) and the control API read the same one, so
//! that everything booked on the shared fabric engine has one time base.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use devices::clock::GuestClock;

use crate::vclock::shared::{Deliverer, SharedClock};

/// Host time until [`MachineClock::bind`] hands it the machine's virtual
/// clock, which happens once the vCPUs exist and before any of them runs
/// (devices are built before the vCPUs). Guest time only moves forward
/// across the switch: the virtual clock counts the guest's TSC, far ahead
/// of the few milliseconds the host clock has counted by then.
#[derive(Default)]
pub struct MachineClock {
    host: HostClock,
    virtual_clock: OnceLock<Arc<SharedClock>>,
    /// The completion timer's deliverer, handed to the virtual clock.
    deliverer: Mutex<Option<Deliverer>>,
}

impl MachineClock {
    pub fn bind(&self, clock: Arc<SharedClock>) {
        if let Some(d) = self
            .deliverer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            clock.set_deliverer(d);
        }
        let _ = self.virtual_clock.set(clock);
    }

    /// How the virtual clock, once bound, delivers completions itself.
    pub fn set_deliverer(&self, d: Deliverer) {
        *self.deliverer.lock().unwrap_or_else(|e| e.into_inner()) = Some(d);
    }

    /// The earliest completion still pending, after the timer delivered.
    pub fn next_event(&self, ps: Option<u64>) {
        if let Some(c) = self.virtual_clock.get() {
            c.next_event(ps);
        }
    }

    /// A completion is booked at `ps`.
    pub fn event_at(&self, ps: u64) {
        if let Some(c) = self.virtual_clock.get() {
            c.event_at(ps);
        }
    }

    /// Asks the virtual clock to stop the guest and deliver the completion
    /// due at `ps` itself; false on host time (the caller delivers).
    pub fn stop_for(&self, ps: u64) -> bool {
        self.virtual_clock.get().is_some_and(|c| c.stop_for(ps))
    }

    /// How long before a deadline to call [`Self::stop_for`]; 0 on host
    /// time.
    pub fn stop_lead_ps(&self) -> u64 {
        self.virtual_clock.get().map_or(0, |c| c.stop_lead_ps())
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
