//! The virtual clock as the vCPU threads use it: one [`SharedClock`] per VM
//! (the [`Coordinator`] behind a mutex, plus the means to kick vCPU threads
//! out of KVM_RUN), one [`VcpuClock`] per vCPU thread (its [`ExitTimer`] and
//! the TSC offset it last gave KVM).
//!
//! Per exit, a vCPU thread calls [`VcpuClock::left`] as soon as KVM_RUN
//! returns (when did the guest stop, in guest time), handles the exit, then
//! [`VcpuClock::exited`] (with the modelled latency if the exit was a timed
//! access or another exit whose cost the guest must not see), and before
//! the next KVM_RUN [`VcpuClock::before_run`], which may wait and sets the
//! TSC offset.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use devices::clock::GuestClock;
use kvm_ioctls::VcpuFd;

use super::coordinator::{Coordinator, Entry};
use super::exit_log::{EntryRecord, ExitLog};
use super::exit_timer::{Calibration, ExitTimer, ExitTiming};
use super::trace::VcpuTrace;
use super::tsc;

/// Picoseconds in `cycles` of a `khz` clock.
pub fn cycles_to_ps(cycles: u64, khz: u32) -> u64 {
    (u128::from(cycles) * 1_000_000_000 / u128::from(khz.max(1))) as u64
}

/// Cycles of a `khz` clock in `ps` picoseconds.
pub fn ps_to_cycles(ps: u64, khz: u32) -> u64 {
    (u128::from(ps) * u128::from(khz) / 1_000_000_000) as u64
}

/// The first cycle of a `khz` clock at or after `ps` picoseconds (an event
/// is due at it: converted back, it is not before `ps`).
pub fn ps_to_cycles_up(ps: u64, khz: u32) -> u64 {
    (u128::from(ps) * u128::from(khz)).div_ceil(1_000_000_000) as u64
}

/// Counters for `--stats`.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct ClockStats {
    /// Guest-invisible host time, ns.
    pub hidden_ns: u64,
    /// Debt still owed (the clock's and each vCPU's own), ns.
    pub debt_ns: u64,
    /// Kicks sent to stop other vCPUs.
    pub kicks: u64,
    /// Tracepoint events the kernel dropped.
    pub lost_events: u64,
    /// Exits whose calibrated invisible sides were longer than the
    /// guest-mode stretch before them, and were shortened to fit it.
    pub shortened_exits: u64,
}

/// Time the guest saw that should have been hidden is taken back from
/// later timed accesses up to this much; beyond it, forgiven.
/// `CXLVMM_CLOCK_MAX_DEBT_NS` overrides it (0: never take time back),
/// for measuring what the repayment does (docs/timed-mode.md).
const MAX_DEBT_NS: u64 = 1_000_000;

fn max_debt_ns() -> u64 {
    std::env::var("CXLVMM_CLOCK_MAX_DEBT_NS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(MAX_DEBT_NS)
}

pub struct SharedClock {
    state: Mutex<Coordinator>,
    changed: Condvar,
    /// Threads waiting on `changed`. A notification is a system call
    /// (futex wake) even when nobody waits, and every exit makes one or
    /// two; so it is made only when someone does (`notify_changed`).
    waiters: AtomicUsize,
    /// Each vCPU thread's pthread, to kick it (None until it started).
    threads: Mutex<Vec<Option<libc::pthread_t>>>,
    kick_signal: i32,
    cal: Calibration,
    khz: u32,
    kicks: std::sync::atomic::AtomicU64,
    lost: std::sync::atomic::AtomicU64,
    shortened: std::sync::atomic::AtomicU64,
    /// Delivers the devices' events due by a guest time (ps) and returns
    /// the earliest one still pending: set by the machine that has such
    /// devices (the accelerators).
    deliverer: std::sync::OnceLock<Deliverer>,
}

/// See [`SharedClock::set_deliverer`].
pub type Deliverer = Box<dyn Fn(u64) -> Option<u64> + Send + Sync>;

/// The kick latency assumed until one is measured.
const INITIAL_KICK_DELAY_NS: f64 = 100_000.0;
/// The most the kick latency is taken to be (the nested rig's are about
/// half a millisecond): beyond it the clock would jump ahead to device
/// events for nothing, and the guest's timers, armed with the offset of
/// before the jump, would fire that much late.
const MAX_KICK_DELAY_NS: f64 = 1_000_000.0;

impl SharedClock {
    /// A clock for `vcpus` vCPUs whose TSC runs at `khz`, starting at the
    /// guest TSC the vCPUs have now (`initial_offset`).
    pub fn new(
        vcpus: usize,
        initial_offset: u64,
        khz: u32,
        cal: Calibration,
        kick_signal: i32,
    ) -> Arc<Self> {
        let max_debt = (max_debt_ns() as f64 * cal.cycles_per_ns) as u64;
        Arc::new(Self {
            state: Mutex::new(
                Coordinator::new(vcpus, initial_offset)
                    .with_max_debt(max_debt)
                    .with_invisible_early(cal.invisible_early_cycles)
                    .with_kick_delay(
                        (INITIAL_KICK_DELAY_NS * cal.cycles_per_ns) as u64,
                        (MAX_KICK_DELAY_NS * cal.cycles_per_ns) as u64,
                    ),
            ),
            changed: Condvar::new(),
            waiters: AtomicUsize::new(0),
            threads: Mutex::new(vec![None; vcpus]),
            kick_signal,
            cal,
            khz,
            kicks: Default::default(),
            lost: Default::default(),
            shortened: Default::default(),
            deliverer: std::sync::OnceLock::new(),
        })
    }

    /// Devices whose events the clock delivers itself, with every vCPU out
    /// of the guest, exactly at their guest time (see [`Self::stop_for`]).
    pub fn set_deliverer(&self, deliver: Deliverer) {
        let _ = self.deliverer.set(deliver);
    }

    /// The devices' earliest pending event (ps), after a delivery the
    /// clock did not make.
    pub fn next_event(&self, ps: Option<u64>) {
        self.lock()
            .set_next_event(ps.map(|p| ps_to_cycles_up(p, self.khz)));
    }

    /// A device booked an event the guest will see at `ps`.
    pub fn event_at(&self, ps: u64) {
        self.lock().note_event(ps_to_cycles_up(ps, self.khz));
    }

    /// Takes the vCPUs out of the guest for the device event at `ps`, which
    /// the clock then delivers before any of them runs again, at `ps` or,
    /// if they came out later, when they did. False where no deliverer is
    /// set (the caller delivers itself).
    pub fn stop_for(&self, ps: u64) -> bool {
        if self.deliverer.get().is_none() {
            return false;
        }
        let kick = self
            .lock()
            .request_stop(ps_to_cycles_up(ps, self.khz), tsc::rdtsc());
        self.notify_changed();
        self.kick(&kick);
        true
    }

    /// How long before an event [`Self::stop_for`] should be called (ps):
    /// twice the kick latency recently seen.
    pub fn stop_lead_ps(&self) -> u64 {
        cycles_to_ps(self.lock().stop_lead(), self.khz)
    }

    fn lock(&self) -> MutexGuard<'_, Coordinator> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn khz(&self) -> u32 {
        self.khz
    }

    pub fn calibration(&self) -> Calibration {
        self.cal
    }

    /// Guest time now, in picoseconds of guest TSC (what a vCPU entering now
    /// would read, or where the stopped clock stands).
    /// On a vCPU thread handling an exit, the moment that exit left the
    /// guest ([`Coordinator::now_for`]).
    pub fn now_ps(&self) -> u64 {
        let c = self.lock();
        let host = tsc::rdtsc();
        let g = match THIS_VCPU.get() {
            Some(me) => c.now_for(me, host),
            None => c.now(host),
        };
        cycles_to_ps(g, self.khz)
    }

    /// The coordinator's state, one line.
    pub fn describe(&self) -> String {
        format!("{:?}", *self.lock())
    }

    pub fn stats(&self) -> ClockStats {
        let c = self.lock();
        let ns = |cyc: u64| (cyc as f64 / self.cal.cycles_per_ns) as u64;
        ClockStats {
            hidden_ns: ns(c.hidden_cycles()),
            debt_ns: ns(c.debt() + c.owed_total()),
            kicks: self.kicks.load(Ordering::Relaxed),
            lost_events: self.lost.load(Ordering::Relaxed),
            shortened_exits: self.shortened.load(Ordering::Relaxed),
        }
    }

    /// The handle for vCPU `index`, to be created on its own thread.
    pub fn vcpu(self: &Arc<Self>, index: usize) -> VcpuClock {
        THIS_VCPU.set(Some(index));
        // SAFETY: pthread_self and gettid have no arguments and cannot fail.
        let (me, tid) = unsafe { (libc::pthread_self(), libc::gettid()) };
        if let Some(slot) = self
            .threads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_mut(index)
        {
            *slot = Some(me);
        }
        // Waits for a release end as close to their deadline as the kernel
        // allows (a thread's default timer slack is 50 µs).
        // SAFETY: PR_SET_TIMERSLACK takes a plain integer and changes only
        // this thread's timer slack.
        unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong) };
        let trace = match VcpuTrace::open(tid) {
            Ok(t) => Some(t),
            Err(e) => {
                log::warn!("vcpu{index}: virtual time without exit tracepoints ({e}): in-kernel exits will show");
                None
            }
        };
        VcpuClock {
            index,
            timer: ExitTimer::new(trace, self.cal),
            clock: self.clone(),
            applied: None,
            rearmed: None,
            sleep_lead_ns: SLEEP_LEAD_NS,
            log: ExitLog::open(index),
        }
    }

    fn kick(&self, vcpus: &[usize]) {
        let threads = self.threads.lock().unwrap_or_else(|e| e.into_inner());
        for &i in vcpus {
            if let Some(Some(t)) = threads.get(i) {
                // SAFETY: the thread is a live vCPU thread of this process
                // (threads retire themselves before they end); the signal
                // has a no-op handler whose only effect is EINTR in KVM_RUN.
                unsafe { libc::pthread_kill(*t, self.kick_signal) };
                self.kicks.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Whether a timed access waits for the halted vCPUs it kicked
/// (`CXLVMM_CLOCK_WAIT_HALTED=0` turns it off, to measure what it does).
fn wait_for_halted() -> bool {
    static WAIT: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *WAIT.get_or_init(|| std::env::var("CXLVMM_CLOCK_WAIT_HALTED").map_or(true, |v| v != "0"))
}

thread_local! {
    /// The vCPU whose thread this is, for [`GuestClock::stop_others`].
    static THIS_VCPU: std::cell::Cell<Option<usize>> = const { std::cell::Cell::new(None) };
}

impl SharedClock {
    /// Waits (at most `timeout`) until every vCPU of `vcpus` is out of
    /// KVM_RUN.
    fn wait_out(&self, vcpus: &[usize], timeout: Duration) {
        let deadline = std::time::Instant::now() + timeout;
        let mut c = self.lock();
        while vcpus.iter().any(|&j| c.is_running(j)) {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return;
            }
            c = self.wait_changed(c, left).0;
        }
    }

    /// Releases `c` until the clock's state changes or `timeout` passes;
    /// the guard again, and whether the time ran out.
    fn wait_changed<'a>(
        &self,
        c: MutexGuard<'a, Coordinator>,
        timeout: Duration,
    ) -> (MutexGuard<'a, Coordinator>, bool) {
        // Counted while `c` is held: a thread that changes the state under
        // the lock after this and then looks at `waiters` sees this one.
        self.waiters.fetch_add(1, Ordering::SeqCst);
        let (c, t) = self
            .changed
            .wait_timeout(c, timeout)
            .unwrap_or_else(|e| e.into_inner());
        self.waiters.fetch_sub(1, Ordering::SeqCst);
        (c, t.timed_out())
    }

    /// Wakes the threads waiting for the clock's state to change; called
    /// after changing it under the lock.
    fn notify_changed(&self) {
        if self.waiters.load(Ordering::SeqCst) > 0 {
            self.changed.notify_all();
        }
    }
}

/// What devices read: the guest clock in picoseconds of guest TSC, stopped
/// while every vCPU is out of the guest.
impl GuestClock for SharedClock {
    fn now_ps(&self) -> u64 {
        SharedClock::now_ps(self)
    }

    fn delivered(&self, ps: u64) {
        self.lock().observed(ps_to_cycles(ps, self.khz));
    }

    /// Kicks the other vCPUs and waits (at most [`STOP_WAIT`]) until they
    /// have left the guest, so that the clock stands still before the
    /// caller's work starts.
    fn stop_others(&self) {
        let Some(me) = THIS_VCPU.get() else {
            return;
        };
        let others = self.lock().running_others(me);
        if others.is_empty() {
            return;
        }
        self.kick(&others);
        self.wait_out(&others, STOP_WAIT);
    }
}

pub struct VcpuClock {
    index: usize,
    timer: ExitTimer,
    clock: Arc<SharedClock>,
    applied: Option<u64>,
    /// The offset the guest's TSC deadline was last re-armed with.
    rearmed: Option<u64>,
    /// Per-exit record, when asked for (`CXLVMM_CLOCK_LOG`).
    log: Option<ExitLog>,
    /// How long before a release this thread stops sleeping and spins.
    sleep_lead_ns: u64,
}

/// The longest [`GuestClock::stop_others`] waits for kicked vCPUs to leave
/// the guest (a vCPU thread that does not get a CPU for that long is left
/// running, and the guest sees the rest of the exit).
const STOP_WAIT: Duration = Duration::from_millis(20);

/// How often a vCPU kicked out of a halt looks whether it may go back in
/// (nobody wakes it: see [`VcpuClock::before_run`]); an interrupt for it
/// waits up to that long more.
const HALTED_POLL: Duration = Duration::from_micros(200);

/// The longest a timed access waits for kicked halted vCPUs to be out of
/// KVM_RUN (a thread that gets no CPU for that long is left behind, and
/// the guest sees the rest of the exit).
const HALTED_WAIT: Duration = Duration::from_millis(5);

/// A vCPU inside KVM_RUN this long (nanoseconds) since it went in busy may
/// have halted there: it is kicked out to find out (see
/// [`Coordinator::to_stop_after`]).
const STALE_NS: u64 = 1_000_000;

/// Spin (rather than sleep) for waits shorter than this many nanoseconds
/// beyond the sleep lead.
const SPIN_NS: u64 = 50_000;

/// How long before a wait's end a sleep is asked to end, at first and at
/// most (nanoseconds): a sleeping thread wakes late, by tens of
/// microseconds on a host, 150 µs and more in the nested rig.
const SLEEP_LEAD_NS: u64 = 100_000;
const MAX_SLEEP_LEAD_NS: u64 = 2_000_000;

/// The next sleep lead after a sleep that ended `late_ns` after it was
/// asked to: up at once to the lateness and a quarter more, down slowly.
fn next_sleep_lead(lead: u64, late_ns: u64) -> u64 {
    let want = late_ns + late_ns / 4;
    if want > lead {
        want.min(MAX_SLEEP_LEAD_NS)
    } else {
        (lead - (lead - want) / 16).max(SLEEP_LEAD_NS / 2)
    }
}

impl VcpuClock {
    /// Right after KVM_RUN returned: when the guest stopped, and that
    /// moment in guest picoseconds (the issue time of a timed access).
    pub fn left(&mut self) -> (ExitTiming, u64) {
        let host_ret = tsc::rdtsc();
        let t = self.timer.exited();
        if let Some(l) = self.log.as_mut() {
            l.host_ret = host_ret;
        }
        let g = {
            let mut c = self.clock.lock();
            if t.ran {
                c.woke_inside(self.index);
            }
            c.leave(self.index, t.left, t.halted)
        };
        self.clock.notify_changed();
        (t, cycles_to_ps(g, self.clock.khz))
    }

    /// After the exit was handled. `latency_ps`: the guest must see this
    /// exit take exactly that long (and the other vCPUs are kicked out of
    /// KVM_RUN so the exit's own cost can be hidden).
    pub fn exited(&mut self, t: ExitTiming, latency_ps: Option<u64>) {
        if let Some(l) = self.log.as_mut() {
            let cycles = latency_ps.map(|ps| ps_to_cycles(ps, self.clock.khz));
            l.exited(&t, cycles);
        }
        let (kick, halted) = {
            let mut c = self.clock.lock();
            c.add_debt(self.index, t.in_kernel, t.entry_error, t.idled);
            c.exited(
                self.index,
                latency_ps.map(|ps| ps_to_cycles(ps, self.clock.khz)),
            );
            let kick = if latency_ps.is_some() {
                let stale = (STALE_NS as f64 * self.clock.cal.cycles_per_ns) as u64;
                c.to_stop_after(self.index, tsc::rdtsc(), self.timer.entry_delay(), stale)
            } else {
                Vec::new()
            };
            let halted = c.idle_inside_of(&kick);
            (kick, halted)
        };
        self.clock.notify_changed();
        if !kick.is_empty() {
            self.clock.kick(&kick);
        }
        // Halted vCPUs leave at once, but their threads take a while to
        // get out of KVM_RUN (~100 µs in the nested rig, more than the
        // exit's handling): until then the clock runs, and a release
        // decided meanwhile would find itself due and show the guest the
        // whole exit. So this vCPU waits for them, and then restarts the
        // clock itself (docs/timed-mode.md, "Virtual time"). Busy vCPUs
        // are not waited for: their exits are the guest's own time.
        if wait_for_halted() && !halted.is_empty() {
            self.clock.wait_out(&halted, HALTED_WAIT);
        }
        let lost = std::mem::take(&mut self.timer.lost_events);
        if lost > 0 {
            self.clock.lost.fetch_add(lost, Ordering::Relaxed);
        }
        let shortened = std::mem::take(&mut self.timer.shortened_exits);
        if shortened > 0 {
            self.clock.shortened.fetch_add(shortened, Ordering::Relaxed);
        }
    }

    /// Before KVM_RUN: waits until this vCPU may run, then gives KVM the
    /// clock's TSC offset. Returns false if `stop` was raised meanwhile.
    pub fn before_run(&mut self, vcpu: &VcpuFd, stop: &AtomicBool) -> std::io::Result<bool> {
        // The guest's timer deadline follows the offset it runs with now;
        // done here, before the entry decision, so that the entry path
        // holds one ioctl only (the new offset), and so the host timer is
        // early by at most one exit's hidden time.
        if self.rearmed != self.applied {
            tsc::rearm_deadline(vcpu)?;
            self.rearmed = self.applied;
        }
        // What the timer knows does not change until the next exit.
        let delay = self.timer.entry_delay();
        let idle_inside = self.timer.idle_inside();
        let early_margin = self.timer.early_margin();
        let quickest_delay = self.timer.quickest_delay();
        let mut decided;
        let (offset, delay, wake) = loop {
            if stop.load(Ordering::Acquire) {
                self.clock.lock().abandon(self.index);
                return Ok(false);
            }
            let mut c = self.clock.lock();
            c.set_idle_inside(self.index, idle_inside);
            c.set_early_margin(self.index, early_margin);
            c.set_quickest_delay(self.index, quickest_delay);
            decided = tsc::rdtsc();
            let debt_before = c.debt();
            match c.enter(self.index, decided, delay) {
                Entry::Go { offset, delay } => {
                    if let Some(l) = self.log.as_mut() {
                        l.entered(EntryRecord {
                            debt_before,
                            decided,
                            delay,
                            offset,
                            guest_resume: decided.wrapping_add(delay).wrapping_add(offset),
                            debt_after: c.debt(),
                            hidden: c.hidden_cycles(),
                        });
                    }
                    // Waking a waiting thread costs this one tens of µs
                    // in the rig (an IPI to another L1 CPU), on its way
                    // into the guest, where the guest sees it: only those
                    // with work are woken; vCPUs kicked out of a halt look
                    // again by themselves (`HALTED_POLL`).
                    break (offset, delay, c.others_wait_with_work(self.index));
                }
                Entry::WaitUntil { host_tsc } => {
                    wait_until(&self.clock, c, &mut self.sleep_lead_ns, host_tsc);
                }
                Entry::Deliver { upto } => {
                    drop(c);
                    let next = self
                        .clock
                        .deliverer
                        .get()
                        .and_then(|d| d(cycles_to_ps(upto, self.clock.khz)));
                    let next = next.map(|ps| ps_to_cycles_up(ps, self.clock.khz));
                    self.clock.lock().delivered(self.index, next);
                    self.clock.notify_changed();
                }
                Entry::Yield { host_tsc } => {
                    let ns = host_tsc.saturating_sub(tsc::rdtsc()) as f64
                        / self.clock.cal.cycles_per_ns.max(1e-3);
                    drop(self.clock.wait_changed(c, Duration::from_nanos(ns as u64)));
                }
                Entry::WaitForOthers => {
                    let poll = if c.is_halted(self.index) {
                        HALTED_POLL
                    } else {
                        Duration::from_millis(1)
                    };
                    drop(self.clock.wait_changed(c, poll));
                }
            }
        };
        if wake {
            self.clock.notify_changed();
        }
        if self.applied != Some(offset) {
            tsc::set_offset(vcpu, offset.wrapping_add(tsc::skew(self.index)))?;
            self.applied = Some(offset);
        }
        self.timer.entering(decided, delay);
        self.timer.running(tsc::rdtsc());
        Ok(true)
    }

    /// The thread is ending: nobody waits for this vCPU any more.
    pub fn retire(&mut self) {
        self.clock.lock().retire(self.index);
        self.clock.notify_changed();
    }

    pub fn traced(&self) -> bool {
        self.timer.traced()
    }

    pub fn stats(&self) -> ClockStats {
        self.clock.stats()
    }
}

/// Waits for the host TSC to reach `target`, or for the clock's state to
/// change (then the caller asks again). `c` is the guard under which the
/// caller was told to wait, so that no change after that decision goes
/// unseen. Sleeps until `sleep_lead_ns` before the target, then spins: the
/// lead follows how late this thread's sleeps end (in the nested rig 150 µs
/// and more; a release reached late shows in the guest).
fn wait_until(
    clock: &SharedClock,
    c: MutexGuard<'_, Coordinator>,
    sleep_lead_ns: &mut u64,
    target: u64,
) {
    let per_ns = clock.cal.cycles_per_ns.max(1e-3);
    let start = tsc::rdtsc();
    let left_ns = (target.saturating_sub(start) as f64 / per_ns) as u64;
    if left_ns > *sleep_lead_ns + SPIN_NS {
        let asked = left_ns - *sleep_lead_ns;
        let (c, timed_out) = clock.wait_changed(c, Duration::from_nanos(asked));
        drop(c);
        if timed_out {
            let slept = (tsc::rdtsc().saturating_sub(start) as f64 / per_ns) as u64;
            *sleep_lead_ns = next_sleep_lead(*sleep_lead_ns, slept.saturating_sub(asked));
        }
        return;
    }
    drop(c);
    while tsc::rdtsc() < target {
        std::hint::spin_loop();
    }
}

impl Drop for VcpuClock {
    fn drop(&mut self) {
        self.retire();
        if let Some(slot) = self
            .clock
            .threads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_mut(self.index)
        {
            *slot = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_in_cycles_is_never_before_its_picoseconds() {
        let khz = 2_596_124;
        for ps in [1u64, 999, 385_191, 7_973_284_787_474] {
            let c = ps_to_cycles_up(ps, khz);
            assert!(cycles_to_ps(c, khz) >= ps, "{ps}");
            assert!(cycles_to_ps(c - 1, khz) < ps, "{ps}");
        }
    }

    #[test]
    fn the_sleep_lead_follows_late_wakeups_up_at_once_and_down_slowly() {
        // 160 µs late against a 100 µs lead: 200 µs at once.
        assert_eq!(next_sleep_lead(100_000, 160_000), 200_000);
        // On time: a sixteenth of the way down, never below half the start.
        assert_eq!(next_sleep_lead(200_000, 0), 187_500);
        assert_eq!(next_sleep_lead(50_000, 0), 50_000);
        // Capped.
        assert_eq!(next_sleep_lead(100_000, 10_000_000), MAX_SLEEP_LEAD_NS);
    }

    #[test]
    fn picoseconds_and_cycles_round_trip() {
        // 2.6 GHz: 2600 cycles per microsecond.
        assert_eq!(cycles_to_ps(2600, 2_600_000), 1_000_000);
        assert_eq!(ps_to_cycles(1_000_000, 2_600_000), 2600);
        assert_eq!(cycles_to_ps(0, 0), 0);
    }
}
