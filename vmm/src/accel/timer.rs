//! The completion timer: one thread per machine that delivers the
//! accelerators' completions at their modelled time (`docs/accelerator.md`
//! §6). It sleeps on a condition variable until the earliest pending
//! deadline, or until a register write books an earlier one
//! ([`CompletionTimer::deadline`]), then calls every device's `poll(now)`,
//! which writes back fences and status and raises MSI-X (or INTx). It never
//! sleeps a fixed time. A sleeping thread wakes tens of microseconds late,
//! which the guest would see as a late completion, so the last
//! [`SPIN_PS`] before a deadline it spins on the clock instead.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use devices::accel::{Accelerator, CompletionTimer};
use devices::bus::lock;
use devices::clock::GuestClock;

#[derive(Default)]
struct State {
    stop: bool,
    /// Deadlines booked since the thread started (each one may be earlier
    /// than what it waits for, so it looks again).
    booked: u64,
}

/// Guest time before a deadline from which the thread spins on the clock.
const SPIN_PS: u64 = 2_000_000_000;
/// The longest it spins (host time) on a clock that does not move before
/// it sleeps again: a virtual clock stands still while every vCPU is out
/// of the guest.
const SPIN_MAX: Duration = Duration::from_millis(1);

/// Shared by the thread and the devices, which call it from BAR0 writes.
#[derive(Default)]
pub struct TimerShared {
    state: Mutex<State>,
    wake: Condvar,
    /// `State::booked`, readable while spinning without the lock.
    booked: AtomicU64,
}

impl CompletionTimer for TimerShared {
    fn deadline(&self, _at: u64) {
        let mut s = lock(&self.state);
        s.booked = s.booked.wrapping_add(1);
        self.booked.store(s.booked, Ordering::Release);
        self.wake.notify_one();
    }
}

/// Spins until `clock` reaches `at`, a new deadline is booked, or the
/// clock has not moved for [`SPIN_MAX`]; true if the clock got there.
fn spin_until(shared: &TimerShared, clock: &dyn GuestClock, at: u64, seen: u64) -> bool {
    let mut still_since = (Instant::now(), clock.now_ps());
    loop {
        let now = clock.now_ps();
        if now >= at {
            return true;
        }
        if now != still_since.1 {
            still_since = (Instant::now(), now);
        }
        if shared.booked.load(Ordering::Acquire) != seen || still_since.0.elapsed() > SPIN_MAX {
            return false;
        }
        // Gives the CPU to a vCPU thread that needs it to leave the guest
        // (a kicked one) or to get back in: with a virtual clock, the
        // deadline only comes once vCPUs run.
        std::thread::yield_now();
    }
}

/// The running thread; dropping it stops and joins it.
pub struct CompletionThread {
    shared: Arc<TimerShared>,
    handle: Option<JoinHandle<()>>,
}

impl CompletionThread {
    /// Starts the thread over `devices`; each device must have been given
    /// [`CompletionThread::timer`]'s value with `set_timer` (or is given it
    /// here).
    pub fn spawn(
        devices: Vec<Arc<Mutex<Accelerator>>>,
        clock: Arc<dyn GuestClock>,
    ) -> std::io::Result<Self> {
        let shared = Arc::new(TimerShared::default());
        for d in &devices {
            lock(d).set_timer(shared.clone());
        }
        let s = shared.clone();
        let handle = std::thread::Builder::new()
            .name("accel-timer".into())
            .spawn(move || run(&s, &devices, clock.as_ref()))?;
        Ok(CompletionThread {
            shared,
            handle: Some(handle),
        })
    }
}

impl Drop for CompletionThread {
    fn drop(&mut self) {
        lock(&self.shared.state).stop = true;
        self.shared.wake.notify_one();
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Host time to wait for `ps` picoseconds of guest time. With
/// [`super::clock::HostClock`] they are the same; a virtual clock runs no
/// faster than the host, so with one this wakes early at worst, and the
/// thread waits again.
fn host_wait(ps: u64) -> Duration {
    Duration::from_nanos(ps.div_ceil(1000))
}

fn run(shared: &TimerShared, devices: &[Arc<Mutex<Accelerator>>], clock: &dyn GuestClock) {
    let mut seen = lock(&shared.state).booked;
    loop {
        // Never holds the state lock while taking a device's: a device
        // calls `deadline` with its own lock held.
        let now = clock.now_ps();
        let mut next: Option<u64> = None;
        for d in devices {
            let mut a = lock(d);
            if a.next_deadline().is_some_and(|at| at <= now) {
                a.poll(now);
                clock.delivered(now);
            }
            next = match (next, a.next_deadline()) {
                (Some(x), Some(y)) => Some(x.min(y)),
                (x, y) => x.or(y),
            };
        }
        let mut s = lock(&shared.state);
        loop {
            if s.stop {
                return;
            }
            if s.booked != seen {
                seen = s.booked;
                break;
            }
            match next {
                None => s = shared.wake.wait(s).unwrap_or_else(|e| e.into_inner()),
                Some(at) => {
                    let now = clock.now_ps();
                    if at <= now {
                        break;
                    }
                    if at - now <= SPIN_PS {
                        drop(s);
                        if !spin_until(shared, clock, at, seen) {
                            // Nothing new and the clock stood still (every
                            // vCPU out of the guest): rest before spinning
                            // again.
                            let s = lock(&shared.state);
                            if s.booked == seen {
                                let _ = shared.wake.wait_timeout(s, SPIN_MAX);
                            }
                        }
                        break;
                    }
                    s = shared
                        .wake
                        .wait_timeout(s, host_wait(at - now - SPIN_PS))
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_picoseconds_round_up_to_host_nanoseconds() {
        assert_eq!(host_wait(0), Duration::ZERO);
        assert_eq!(host_wait(1), Duration::from_nanos(1));
        assert_eq!(host_wait(1500), Duration::from_nanos(2));
    }

    /// A clock that moves `step` ps per read.
    struct Stepping {
        now: AtomicU64,
        step: u64,
    }

    impl GuestClock for Stepping {
        fn now_ps(&self) -> u64 {
            self.now.fetch_add(self.step, Ordering::Relaxed)
        }
    }

    #[test]
    fn spinning_ends_at_the_deadline_or_gives_up_on_a_stopped_clock() {
        let shared = TimerShared::default();
        let moving = Stepping {
            now: AtomicU64::new(0),
            step: 1000,
        };
        assert!(spin_until(&shared, &moving, 50_000, 0));
        assert!(moving.now.load(Ordering::Relaxed) >= 50_000);
        let stopped = Stepping {
            now: AtomicU64::new(0),
            step: 0,
        };
        let t = Instant::now();
        assert!(!spin_until(&shared, &stopped, 50_000, 0));
        assert!(t.elapsed() >= SPIN_MAX);
        // A deadline booked meanwhile ends the spin at once.
        shared.deadline(7);
        assert!(!spin_until(&shared, &stopped, 50_000, 0));
    }

    #[test]
    fn the_thread_stops_when_dropped() {
        let clock: Arc<dyn GuestClock> = Arc::new(super::super::clock::HostClock::new());
        let t = CompletionThread::spawn(Vec::new(), clock).unwrap();
        t.shared.deadline(5);
        drop(t);
    }
}
