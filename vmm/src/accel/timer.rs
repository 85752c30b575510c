//! The completion timer: one thread per machine that delivers the
//! accelerators' completions at their modelled time (`docs/accelerator.md`
//! §6). It sleeps on a condition variable until the earliest pending
//! deadline, or until a register write books an earlier one
//! ([`CompletionTimer::deadline`]), then calls every device's `poll(now)`,
//! which writes back fences and status and raises MSI-X (or INTx). It never
//! sleeps a fixed time and never spins.
//!
//! On the virtual clock a sleeping thread would wake late (tens of
//! microseconds, and a whole scheduler slice where vCPU threads hold every
//! host CPU), and the guest would see the completion late. So there the
//! thread wakes a little before the deadline (twice the recent kick
//! latency, [`MachineClock::stop_lead_ps`]) and asks the clock to stop the
//! guest for it ([`MachineClock::stop_for`]): the vCPUs are kicked out, the
//! clock does not restart below the deadline, and the vCPU that restarts
//! it first delivers the completions through [`deliverer`], so the guest
//! sees them exactly at their time. It does so for the last completion
//! booked (the end of a submission); earlier ones are delivered when it
//! wakes for them, or with the last.

use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use devices::accel::{Accelerator, CompletionTimer};
use devices::bus::lock;
use devices::clock::GuestClock;

use super::clock::MachineClock;

#[derive(Default)]
struct State {
    stop: bool,
    /// Deadlines booked and deliveries made since the thread started (each
    /// may change what it waits for, so it looks again).
    booked: u64,
}

/// How often the thread looks again while the clock delivers for it.
const RECHECK: Duration = Duration::from_millis(1);

/// Shared by the thread and the devices, which call it from BAR0 writes.
pub struct TimerShared {
    state: Mutex<State>,
    wake: Condvar,
    clock: Arc<MachineClock>,
}

impl TimerShared {
    fn new(clock: Arc<MachineClock>) -> Self {
        TimerShared {
            state: Mutex::default(),
            wake: Condvar::new(),
            clock,
        }
    }

    /// Makes the thread look at the devices again.
    fn wake(&self) {
        let mut s = lock(&self.state);
        s.booked = s.booked.wrapping_add(1);
        self.wake.notify_one();
    }
}

impl CompletionTimer for TimerShared {
    fn deadline(&self, at: u64) {
        self.clock.event_at(at);
        self.wake();
    }
}

/// The running thread; dropping it stops and joins it.
pub struct CompletionThread {
    shared: Arc<TimerShared>,
    handle: Option<JoinHandle<()>>,
}

impl CompletionThread {
    /// Starts the thread over `devices`, each of which is given the timer
    /// here.
    pub fn spawn(
        devices: Vec<Arc<Mutex<Accelerator>>>,
        clock: Arc<MachineClock>,
    ) -> std::io::Result<Self> {
        let shared = Arc::new(TimerShared::new(clock.clone()));
        for d in &devices {
            lock(d).set_timer(shared.clone());
        }
        clock.set_deliverer(deliverer(devices.clone(), shared.clone()));
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

/// What the virtual clock calls, on the vCPU thread that restarts it, to
/// deliver every completion due by a guest time (ps) while no vCPU runs;
/// it returns the earliest deadline still pending, and wakes the thread
/// (whose deadline may have been delivered).
fn deliverer(
    devices: Vec<Arc<Mutex<Accelerator>>>,
    shared: Arc<TimerShared>,
) -> Box<dyn Fn(u64) -> Option<u64> + Send + Sync> {
    Box::new(move |upto| {
        let (next, _) = poll_due(&devices, upto, None);
        shared.wake();
        next
    })
}

/// Retires what is due at `now` on every device; the earliest and the
/// latest deadline left. `clock`: told of each delivery made on a running
/// clock.
fn poll_due(
    devices: &[Arc<Mutex<Accelerator>>],
    now: u64,
    clock: Option<&dyn GuestClock>,
) -> (Option<u64>, Option<u64>) {
    let mut next: Option<u64> = None;
    let mut last: Option<u64> = None;
    for d in devices {
        let mut a = lock(d);
        if a.next_deadline().is_some_and(|at| at <= now) {
            a.poll(now);
            if let Some(c) = clock {
                c.delivered(now);
            }
        }
        next = match (next, a.next_deadline()) {
            (Some(x), Some(y)) => Some(x.min(y)),
            (x, y) => x.or(y),
        };
        last = last.max(a.last_deadline());
    }
    (next, last)
}

/// Host time to wait for `ps` picoseconds of guest time. With
/// [`super::clock::HostClock`] they are the same; a virtual clock runs no
/// faster than the host, so with one this wakes early at worst, and the
/// thread waits again.
fn host_wait(ps: u64) -> Duration {
    Duration::from_nanos(ps.div_ceil(1000))
}

fn run(shared: &TimerShared, devices: &[Arc<Mutex<Accelerator>>], clock: &MachineClock) {
    let mut seen = lock(&shared.state).booked;
    // The deadline the clock was last asked to stop the guest for.
    let mut stop_asked: Option<u64> = None;
    loop {
        // Never holds the state lock while taking a device's: a device
        // calls `deadline` with its own lock held.
        let (next, last) = poll_due(devices, clock.now_ps(), Some(clock));
        clock.next_event(next);
        let mut s = lock(&shared.state);
        loop {
            if s.stop {
                return;
            }
            if s.booked != seen {
                seen = s.booked;
                break;
            }
            let Some(at) = next else {
                s = shared.wake.wait(s).unwrap_or_else(|e| e.into_inner());
                continue;
            };
            let now = clock.now_ps();
            if at <= now {
                break;
            }
            let lead = clock.stop_lead_ps();
            let wait = if stop_asked == Some(at) {
                // The clock delivers it; look again now and then.
                RECHECK
            } else if lead > 0 && at - now <= lead && Some(at) == last {
                // Only for the last completion booked (what a driver waits
                // for at the end of a submission): each stop costs the
                // running vCPUs an exit, so stopping for every command of
                // a batch would add those exits' visible part many times.
                if clock.stop_for(at) {
                    stop_asked = Some(at);
                    RECHECK
                } else {
                    host_wait(at - now)
                }
            } else if Some(at) == last {
                host_wait((at - now).saturating_sub(lead))
            } else {
                host_wait(at - now)
            };
            s = shared
                .wake
                .wait_timeout(s, wait)
                .unwrap_or_else(|e| e.into_inner())
                .0;
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
        let clock = Arc::new(MachineClock::default());
        let t = CompletionThread::spawn(Vec::new(), clock).unwrap();
        t.shared.deadline(5);
        drop(t);
    }
}
