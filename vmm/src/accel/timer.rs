//! The completion timer: one thread per machine that delivers the
//! accelerators' completions at their modelled time (`docs/accelerator.md`
//! §6). It sleeps on a condition variable until the earliest pending
//! deadline, or until a register write books an earlier one
//! ([`CompletionTimer::deadline`]), then calls every device's `poll(now)`,
//! which writes back fences and status and raises MSI-X (or INTx). It never
//! spins and never sleeps a fixed time.

use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

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

/// Shared by the thread and the devices, which call it from BAR0 writes.
#[derive(Default)]
pub struct TimerShared {
    state: Mutex<State>,
    wake: Condvar,
}

impl CompletionTimer for TimerShared {
    fn deadline(&self, _at: u64) {
        let mut s = lock(&self.state);
        s.booked = s.booked.wrapping_add(1);
        self.wake.notify_one();
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
            a.poll(now);
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
                    s = shared
                        .wake
                        .wait_timeout(s, host_wait(at - now))
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

    #[test]
    fn the_thread_stops_when_dropped() {
        let clock: Arc<dyn GuestClock> = Arc::new(super::super::clock::HostClock::new());
        let t = CompletionThread::spawn(Vec::new(), clock).unwrap();
        t.shared.deadline(5);
        drop(t);
    }
}
