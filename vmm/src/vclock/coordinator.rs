//! One guest clock for all vCPUs (the policy; see docs/timed-mode.md).
//!
//! Every vCPU's TSC offset is the same value `offset` whenever it is in the
//! guest, so all vCPUs read one consistent, monotonic clock
//! `G = host TSC + offset`. `G` advances with host time while at least one
//! vCPU can run guest code (in the guest, or halted inside KVM_RUN, from
//! where an interrupt can wake it at any moment). While *every* vCPU is
//! outside KVM_RUN nobody can read the clock, so the time that passes there
//! is hidden: when the first vCPU goes back in, `offset` is chosen so that
//! `G` continues from where it stopped, plus whatever modelled latency has
//! to pass before that vCPU may run again.
//!
//! A vCPU whose exit must take a modelled time (a timed memory access, an
//! accelerator doorbell) gets a *release* time `G_left + latency`: it does
//! not re-enter before the clock shows that time. So the model's latency is
//! what the guest sees, and the exit's own cost disappears, as long as the
//! other vCPUs are outside KVM_RUN too; the caller kicks them out for such
//! exits (a halted vCPU leaves its halt at once; a busy one after its own
//! exit path, and the guest sees that part of the delay — the price of one
//! consistent clock, measured in docs/performance.md), unless the release
//! is so far ahead that the running clock cannot reach it before the vCPU
//! is back anyway ([`Coordinator::to_stop_after`]).
//!
//! A restart is dated at the restarting vCPU's predicted entry: a low
//! quantile of its recent entries when it goes in alone (vCPUs kicked out
//! of a halt stay out of its way until then), the quickest it ever made
//! when other vCPUs with work are about to go in too (entries are
//! unpredictable then, and one quicker than predicted would show the guest
//! a time before its own last read).
//!
//! Several releases pending at once are served in guest-time order: the
//! earliest restarts the world; the others wait (in user space, spinning
//! on host time) until the running clock reaches their release. That is a
//! conservative discrete-event schedule, so concurrent accesses from
//! several vCPUs queue in the fabric model in guest-time order.
//!
//! Time that the guest saw but should not have (entry predictions that came
//! in late, exits handled inside the kernel while this vCPU ran alone) is
//! *debt*: it is paid back out of later releases, never by letting the
//! clock step back (a release is never shortened below the moment the clock
//! stopped). Time one vCPU lost while another ran guest code (its
//! in-kernel exits, its late entries into the running clock) really passed
//! for the others, so the clock keeps it; that vCPU alone *owes* it, and
//! its own later releases come that much sooner.
//!
//! Everything here is arithmetic on host TSC cycles; the caller measures.
//! No KVM, no clock reads: unit-tested with made-up times.

/// `debt` plus `cycles` the guest saw in excess (less, if negative; never
/// below zero).
fn owe(debt: u64, cycles: i64) -> u64 {
    if cycles >= 0 {
        debt.saturating_add(cycles as u64)
    } else {
        debt.saturating_sub(cycles.unsigned_abs())
    }
}

/// What a vCPU thread must do before KVM_RUN.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Entry {
    /// Enter now with this TSC offset (unchanged from the last one unless
    /// the clock was restarted), which expects the guest to resume `delay`
    /// cycles after the decision.
    Go { offset: u64, delay: u64 },
    /// Not yet: come back once the host TSC reaches this value (another
    /// vCPU is running, so the clock is moving towards the release).
    WaitUntil { host_tsc: u64 },
    /// Not yet: the clock is stopped and another vCPU's release comes
    /// first; wait until the state changes.
    WaitForOthers,
    /// Not yet, though nothing depends on when: a vCPU with nothing to do
    /// (kicked out of a halt) lets the one that restarted the clock get
    /// into the guest first. Sleep until about this host TSC (late is
    /// fine), then ask again.
    Yield { host_tsc: u64 },
    /// Not yet: the clock stands at `upto` and device events are due by
    /// then. Deliver them (every vCPU is out, so the guest sees them from
    /// `upto` on, not before), report with [`Coordinator::delivered`], and
    /// ask again.
    Deliver { upto: u64 },
}

#[derive(Clone, Copy, Default)]
struct VcpuState {
    /// Inside KVM_RUN (in the guest or halted there).
    running: bool,
    /// Guest time before which this vCPU may not re-enter.
    release: Option<u64>,
    /// In `enter`, ready to go once allowed.
    waiting: bool,
    /// Ran with every other vCPU outside KVM_RUN, or halted inside it,
    /// since it last entered: only then is its in-kernel exit time this
    /// VM's idle-free time.
    alone: bool,
    /// Its last entry restarted a stopped clock (so its entry prediction
    /// defined the clock).
    restarted: bool,
    /// Its thread has ended: nobody waits for it.
    gone: bool,
    /// Guest time of its last exit.
    left_at: u64,
    /// Left KVM_RUN and its exit is not handled yet.
    busy: bool,
    /// Was taken out of a halt (kicked): it has nothing to do in the guest
    /// until an interrupt comes, so it does not restart a stopped clock
    /// while a vCPU with work is about to.
    halted: bool,
    /// Went back into KVM_RUN still halted: KVM keeps it blocked there
    /// until an interrupt, so kicking it out costs no guest exit, and it
    /// uses none of the time that passes meanwhile.
    idle_inside: bool,
    /// Host TSC of its last entry.
    entered_at: u64,
    /// How much sooner than predicted its entries may reach the guest.
    early_margin: u64,
    /// The quickest plausible delay of its entries.
    quickest_delay: u64,
    /// Time it lost while other vCPUs ran guest code: taken off its own
    /// later releases.
    owed: u64,
    /// Went into the running clock for a release, this many guest cycles
    /// after it (a thread that woke late).
    joined_late: Option<u64>,
}

/// The shared clock state. Wrap it in a mutex; see [`super::SharedClock`].
#[derive(Debug, Clone)]
pub struct Coordinator {
    /// `guest TSC = host TSC + offset` (wrapping arithmetic).
    offset: u64,
    /// Guest time at which the clock stopped (the latest moment any vCPU
    /// could have read it), while no vCPU is running.
    stopped_at: Option<u64>,
    /// The latest exit time of any vCPU since the clock last restarted: a
    /// vCPU that was halted when it was kicked leaves "at" its halt, long
    /// before the others, yet the clock must not stop below what they saw.
    latest_left: u64,
    /// Cycles the guest saw that it should not have, to be hidden.
    debt: u64,
    vcpus: Vec<VcpuState>,
    /// Total cycles hidden so far (for statistics).
    hidden: u64,
    /// Debt beyond this is forgiven.
    max_debt: u64,
    /// How much sooner than their calibrated medians the invisible parts of
    /// an exit and of an entry may together end (`Calibration`).
    invisible_early: u64,
    /// The earliest device event not yet delivered (guest cycles).
    next_event: Option<u64>,
    /// The vCPUs were kicked so that the event at this time is delivered
    /// exactly: a restart does not resume below it.
    event_stop: Option<u64>,
    /// Guest time when that kick went out (until the clock stopped).
    kicked_at: Option<u64>,
    /// How long, in guest cycles, it recently took the clock to stop after
    /// such a kick (the kick's latency as the guest saw it).
    kick_delay: u64,
    /// The most `kick_delay` may grow to: a clock that took long to stop
    /// (a vCPU that went back in before the last one left) must not make
    /// every event a reason to jump far ahead.
    max_kick_delay: u64,
    /// Host TSC by which the vCPU that last restarted the clock is likely
    /// in the guest.
    restart_arrives: u64,
}

impl std::fmt::Debug for VcpuState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{{run {} rel {:?} wait {} alone {} busy {} halted {} gone {} left {}}}",
            self.running,
            self.release,
            self.waiting,
            self.alone,
            self.busy,
            self.halted,
            self.gone,
            self.left_at
        )
    }
}

impl Coordinator {
    /// `vcpus` vCPUs, all outside KVM_RUN, with the clock at `initial_offset`.
    pub fn new(vcpus: usize, initial_offset: u64) -> Self {
        Self {
            offset: initial_offset,
            stopped_at: None,
            latest_left: 0,
            debt: 0,
            vcpus: vec![VcpuState::default(); vcpus],
            hidden: 0,
            max_debt: u64::MAX,
            invisible_early: 0,
            next_event: None,
            event_stop: None,
            kicked_at: None,
            kick_delay: 0,
            max_kick_delay: u64::MAX,
            restart_arrives: 0,
        }
    }

    /// The kick latency to assume before any was measured, and the most
    /// it may grow to.
    pub fn with_kick_delay(mut self, cycles: u64, max: u64) -> Self {
        self.kick_delay = cycles.min(max);
        self.max_kick_delay = max;
        self
    }

    /// The devices' earliest pending event, after someone else delivered
    /// what was due (a stale earlier one would stop the clock for nothing).
    pub fn set_next_event(&mut self, next: Option<u64>) {
        self.next_event = next;
    }

    /// A device booked an event the guest will see at guest time `at`.
    pub fn note_event(&mut self, at: u64) {
        self.next_event = Some(self.next_event.map_or(at, |e| e.min(at)));
    }

    /// Stops the guest for the event at `at`: the vCPUs it returns are to
    /// be kicked out of the guest, and the clock will not restart below
    /// `at`, so the event is delivered exactly then if they leave before
    /// it (else as soon as they have left).
    pub fn request_stop(&mut self, at: u64, host: u64) -> Vec<usize> {
        self.note_event(at);
        self.event_stop = Some(self.event_stop.map_or(at, |e| e.min(at)));
        let running: Vec<usize> = (0..self.vcpus.len())
            .filter(|&j| self.vcpus[j].running)
            .collect();
        if !running.is_empty() && self.kicked_at.is_none() {
            self.kicked_at = Some(self.guest_at(host));
        }
        running
    }

    /// How far ahead of an event to kick: twice the recent kick latency.
    pub fn stop_lead(&self) -> u64 {
        self.kick_delay.saturating_mul(2)
    }

    /// vCPU `i` delivered the events due by its `Deliver` time; `next` is
    /// the devices' earliest event still pending.
    pub fn delivered(&mut self, i: usize, next: Option<u64>) {
        let upto = self.stopped_at.unwrap_or(0);
        self.vcpus[i].busy = false;
        // An event not after the delivery time cannot be pending any more
        // (rounding): never ask for the same delivery twice.
        self.next_event = next.filter(|&n| n > upto);
    }

    /// Caps the debt: time the guest saw beyond this is not taken back
    /// from later accesses (they would look far too fast for too long).
    pub fn with_max_debt(mut self, cycles: u64) -> Self {
        self.max_debt = cycles;
        self
    }

    /// How much sooner than the calibrated medians the invisible exit and
    /// entry sides may end: a restart never resumes nearer its stop.
    pub fn with_invisible_early(mut self, cycles: u64) -> Self {
        self.invisible_early = cycles;
        self
    }

    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Guest time at host TSC `host`.
    pub fn guest_at(&self, host: u64) -> u64 {
        host.wrapping_add(self.offset)
    }

    /// The guest clock at host TSC `host`: moving if any vCPU runs, else
    /// where it stopped.
    pub fn now(&self, host: u64) -> u64 {
        match self.stopped_at {
            Some(s) if !self.any_running() => s,
            _ => self.guest_at(host),
        }
    }

    /// The guest clock as vCPU `i` sees it: while its exit is being
    /// handled, the moment it left (an exit takes no guest time of its
    /// own, whatever the other vCPUs do meanwhile), else [`Self::now`].
    /// A device register write is issued at that time.
    pub fn now_for(&self, i: usize, host: u64) -> u64 {
        match self.vcpus.get(i) {
            Some(v) if v.busy => v.left_at,
            _ => self.now(host),
        }
    }

    pub fn hidden_cycles(&self) -> u64 {
        self.hidden
    }

    pub fn debt(&self) -> u64 {
        self.debt
    }

    /// What vCPU `i` alone owes (see [`Self::add_debt`]).
    pub fn owed(&self, i: usize) -> u64 {
        self.vcpus.get(i).map_or(0, |v| v.owed)
    }

    /// What all vCPUs owe, each alone.
    pub fn owed_total(&self) -> u64 {
        self.vcpus.iter().map(|v| v.owed).sum()
    }

    fn any_running(&self) -> bool {
        self.vcpus.iter().any(|v| v.running)
    }

    /// vCPU `i` left the guest at host TSC `left` (its best estimate of the
    /// moment the guest stopped); called as soon as KVM_RUN returns, before
    /// the exit is handled, so that the clock stops while the VMM works if
    /// no other vCPU runs (a device reading the clock meanwhile sees it
    /// stopped). Returns the guest time of the exit (the issue time of
    /// whatever the exit starts).
    /// `halted`: it was halted when KVM_RUN returned (`left` is its halt).
    pub fn leave(&mut self, i: usize, left: u64, halted: bool) -> u64 {
        let g = self.guest_at(left);
        let v = &mut self.vcpus[i];
        v.running = false;
        v.busy = true;
        v.halted = halted;
        v.release = None;
        v.left_at = g;
        self.latest_left = self.latest_left.max(g);
        if !self.any_running() {
            // The clock stops at the latest moment anyone could read it.
            let last = self
                .stopped_at
                .map_or(self.latest_left, |s| s.max(self.latest_left));
            self.stopped_at = Some(last);
            if let Some(k) = self.kicked_at.take() {
                // Up at once to a longer delay, down slowly.
                let seen = last.saturating_sub(k);
                self.kick_delay = if seen > self.kick_delay {
                    seen.min(self.max_kick_delay)
                } else {
                    self.kick_delay - (self.kick_delay - seen) / 8
                };
            }
        }
        g
    }

    /// Something the guest can see (a device's completion) happened at
    /// guest time `g`: the clock never stops below it. (A halted vCPU that
    /// is kicked leaves "at" its halt; without this, a completion written
    /// while it halted would be dated after the moment the clock resumes
    /// from.)
    pub fn observed(&mut self, g: u64) {
        self.latest_left = self.latest_left.max(g);
        if let Some(s) = self.stopped_at.as_mut() {
            *s = (*s).max(g);
        }
    }

    /// vCPU `i`'s exit is handled. With `latency`, it may not re-enter
    /// before the guest clock shows its exit time plus `latency`. The
    /// caller then kicks the vCPUs [`Coordinator::running_others`] names if
    /// the exit's cost must be hidden.
    /// What vCPU `i` owes is taken off the latency, down to its early
    /// margin (nearer its exit, its entry could show it a time before its
    /// own last read; see [`Self::enter`]).
    pub fn exited(&mut self, i: usize, latency: Option<u64>) {
        let margin = self.invisible_early;
        let v = &mut self.vcpus[i];
        v.busy = false;
        v.release = latency.map(|l| {
            let pay = v.owed.min(l.saturating_sub(margin + v.early_margin));
            v.owed -= pay;
            v.left_at.wrapping_add(l - pay)
        });
    }

    /// The vCPUs to kick out after vCPU `i`'s exit with a release was
    /// handled at host TSC `now`: the others inside KVM_RUN, so that the
    /// clock stops and the exit's cost is hidden, unless the running clock
    /// cannot reach the release before `i` could be back in the guest
    /// (`entry_delay`, and as much again for the spread of entries) while
    /// some other vCPU runs guest code. Then the exit's cost passes while
    /// `i` waits for its release anyway, and a kick would only cost the
    /// others an exit each. Others that sit halted inside KVM_RUN are
    /// kicked all the same: that costs no guest exit, and with every vCPU
    /// out the release is exact instead of as late as this thread wakes.
    pub fn to_stop_after(&self, i: usize, now: u64, entry_delay: u64, stale: u64) -> Vec<usize> {
        let others = self.running_others(i);
        let Some(r) = self.vcpus[i].release else {
            return others;
        };
        let back = self.guest_at(now.wrapping_add(entry_delay.saturating_mul(2)));
        let far = (r.wrapping_sub(back) as i64) > 0;
        // Busy as far as anyone knows: it went in after an exit that was
        // not a halt. One that has not come out for `stale` cycles may have
        // halted in there since (KVM handles HLT without returning): it is
        // kicked all the same, so that its next entry says.
        let busy = |j: usize| !self.vcpus[j].idle_inside;
        let fresh = |j: usize| now.wrapping_sub(self.vcpus[j].entered_at) < stale;
        if far && others.iter().any(|&j| busy(j) && fresh(j)) {
            return others
                .into_iter()
                .filter(|&j| busy(j) && !fresh(j))
                .collect();
        }
        others
    }

    /// vCPU `i`, which went in halted, ran guest code before it came out
    /// (an interrupt woke it): the others did not run alone meanwhile.
    pub fn woke_inside(&mut self, i: usize) {
        if self.vcpus[i].idle_inside {
            for v in &mut self.vcpus {
                v.alone = false;
            }
        }
    }

    /// vCPU `i`'s entries may reach the guest up to `cycles` sooner than
    /// the delay it gives [`Self::enter`]: call before it.
    pub fn set_early_margin(&mut self, i: usize, cycles: u64) {
        self.vcpus[i].early_margin = cycles;
    }

    /// vCPU `i`'s entries reach the guest no sooner than `cycles` after
    /// the decision (as far as anyone saw lately): a restart while other
    /// vCPUs are out too is predicted with it ([`Self::enter`]).
    pub fn set_quickest_delay(&mut self, i: usize, cycles: u64) {
        self.vcpus[i].quickest_delay = cycles;
    }

    /// vCPU `i` goes back into KVM_RUN still halted (its last exit was a
    /// halt and no entry followed): call before [`Self::enter`].
    pub fn set_idle_inside(&mut self, i: usize, idle: bool) {
        self.vcpus[i].idle_inside = idle;
    }

    /// Whether a vCPU other than `i` waits to enter with work to do (not
    /// one kicked out of a halt): it must hear at once that the clock
    /// changed. Halted ones look again by themselves.
    pub fn others_wait_with_work(&self, i: usize) -> bool {
        self.vcpus
            .iter()
            .enumerate()
            .any(|(j, v)| j != i && v.waiting && !v.halted && !v.gone)
    }

    /// Whether vCPU `i` was kicked out of a halt and has not entered since.
    pub fn is_halted(&self, i: usize) -> bool {
        self.vcpus.get(i).is_some_and(|v| v.halted)
    }

    /// Whether vCPU `j` is inside KVM_RUN.
    pub fn is_running(&self, j: usize) -> bool {
        self.vcpus.get(j).is_some_and(|v| v.running)
    }

    /// Those of `vcpus` that sit halted inside KVM_RUN.
    pub fn idle_inside_of(&self, vcpus: &[usize]) -> Vec<usize> {
        vcpus
            .iter()
            .copied()
            .filter(|&j| {
                self.vcpus
                    .get(j)
                    .is_some_and(|v| v.running && v.idle_inside)
            })
            .collect()
    }

    /// vCPUs other than `i` inside KVM_RUN (to kick so the clock can stop).
    pub fn running_others(&self, i: usize) -> Vec<usize> {
        (0..self.vcpus.len())
            .filter(|&j| j != i && self.vcpus[j].running)
            .collect()
    }

    /// Time `i` saw that it should not have: `in_kernel` cycles of exits
    /// the kernel handled, and how much later than predicted its last
    /// entry reached the guest (`entry_error`). The clock's debt when this
    /// vCPU's view was the clock's (it ran alone; it restarted the clock);
    /// otherwise others ran meanwhile and the time really passed for them,
    /// so only this vCPU owes it (in-kernel exits, and a late entry into
    /// the running clock for a release), paid from its own releases
    /// ([`Self::exited`]).
    /// `idled`: the vCPU halted since its last entry; debt from before an
    /// idle period is forgiven (the guest's busy stretch it distorted is
    /// over, and idle time passes for real anyway).
    pub fn add_debt(&mut self, i: usize, in_kernel: u64, entry_error: i64, idled: bool) {
        if idled {
            self.debt = 0;
            self.vcpus[i].owed = 0;
        }
        let v = self.vcpus[i];
        // How much later than its release it reached the guest, when it
        // went into the running clock for one.
        let joined_late = v.joined_late.map(|l| l as i64 + entry_error);
        if v.alone {
            self.debt = self.debt.saturating_add(in_kernel);
            if let Some(late) = joined_late {
                self.debt = owe(self.debt, late);
            }
        } else {
            let owed = v.owed.saturating_add(in_kernel);
            let owed = joined_late.map_or(owed, |late| owe(owed, late));
            self.vcpus[i].owed = owed.min(self.max_debt);
        }
        if v.restarted {
            // Entered earlier than predicted (negative): the guest saw
            // less; that comes off the debt (never below zero: the lost
            // time is just gone, as if the clock had jumped).
            self.debt = owe(self.debt, entry_error);
        }
        self.debt = self.debt.min(self.max_debt);
    }

    /// vCPU `i` wants to enter at host TSC `now`; KVM will reach the guest
    /// about `entry_delay` cycles later.
    pub fn enter(&mut self, i: usize, now: u64, entry_delay: u64) -> Entry {
        self.vcpus[i].waiting = true;
        let arrive = now.wrapping_add(entry_delay);
        if self.any_running() {
            // Kicked out of a halt with nothing to do: going back in at
            // the same moment as the vCPU that restarted the clock slows
            // that one's entry (in the rig its threads' entries then took
            // 45-150 µs by turns), and the guest sees it.
            if self.vcpus[i].halted && (self.restart_arrives.wrapping_sub(now) as i64) > 0 {
                return Entry::Yield {
                    host_tsc: self.restart_arrives,
                };
            }
            // The clock is moving; wait for our release if it is ahead.
            if let Some(r) = self.vcpus[i].release {
                let g = self.guest_at(arrive);
                if (r.wrapping_sub(g) as i64) > 0 {
                    return Entry::WaitUntil {
                        host_tsc: r.wrapping_sub(self.offset).wrapping_sub(entry_delay),
                    };
                }
            }
            // A vCPU that goes in halted takes none of the others' time.
            if !self.vcpus[i].idle_inside {
                for v in &mut self.vcpus {
                    v.alone = false;
                }
            }
            let alone = self.others_idle_inside(i);
            let late = self.vcpus[i]
                .release
                .map(|r| self.guest_at(arrive).wrapping_sub(r).min(i64::MAX as u64));
            self.go(i, false, now);
            self.vcpus[i].alone = alone;
            self.vcpus[i].joined_late = late;
            return Entry::Go {
                offset: self.offset,
                delay: entry_delay,
            };
        }
        // Everyone is out: the clock is stopped. While another vCPU's exit
        // is still being handled (a device copying, a decoder commit), it
        // stays stopped: that work takes no guest time.
        if self.vcpus.iter().enumerate().any(|(j, v)| j != i && v.busy) {
            return Entry::WaitForOthers;
        }
        // A vCPU kicked out of a halt leaves the restart to one with work
        // (whose own entry should define the clock, not be seen on it).
        let others_with_work = |me: usize| {
            self.vcpus
                .iter()
                .enumerate()
                .any(|(j, v)| j != me && !v.running && !v.gone && !v.halted)
        };
        if self.vcpus[i].halted && others_with_work(i) {
            return Entry::WaitForOthers;
        }
        // The waiting vCPU with the earliest target goes first and restarts
        // it.
        let stopped = self.stopped_at.unwrap_or_else(|| self.guest_at(now));
        // Stopped for a device event: the clock goes on from it. So it does
        // from one due sooner than the guest could be stopped for it once
        // running (the lead): letting the guest run would deliver it late
        // by the entry's and the kick's visible cost, which is more.
        let mut floor = self.event_stop.map_or(stopped, |e| e.max(stopped));
        if let Some(e) = self
            .next_event
            .filter(|&e| e > floor && e - floor <= self.stop_lead())
        {
            floor = e;
        }
        let target = |v: &VcpuState| v.release.map_or(floor, |r| r.max(floor));
        let mine = target(&self.vcpus[i]);
        // Every vCPU outside KVM_RUN is either waiting here or finishing an
        // exit and about to come: the earliest target goes first, even if
        // its vCPU is not here yet.
        let first = self
            .vcpus
            .iter()
            .filter(|v| !v.running && !v.gone && !v.halted)
            .map(target)
            .min()
            .unwrap_or(mine);
        if mine > first {
            return Entry::WaitForOthers;
        }
        // With other vCPUs out too, their threads go back into KVM_RUN
        // around the same moment as this one, and recent entries do not
        // predict this one: in the rig they took 45-150 µs by turns, and
        // restarts predicted by a low quantile of them were undercut by
        // tens of µs, showing the guest a time before its own last read.
        // Predicted with the quickest plausible entry, it never is; the
        // guest sees the spread of entries instead (debt, like any late
        // entry: not counting it was tried, and left the loaded-latency
        // bench's idle point, 2.4 ms releases, 2-3 points further off).
        // A vCPU kicked out of a halt does not compete: it yields until
        // this entry is likely done (above), so this entry is as
        // predictable as one made alone. Counting it as competing
        // predicted every access of a two-vCPU chase with the quickest
        // entry while the other vCPU idled, and the guest saw the
        // difference on every load (docs/performance.md, "In an
        // instruction-counted rig").
        let competing = self
            .vcpus
            .iter()
            .enumerate()
            .any(|(j, v)| j != i && !v.gone && !v.running && !v.halted);
        let likely_delay = entry_delay;
        let entry_delay = if competing {
            self.vcpus[i].quickest_delay.min(entry_delay)
        } else {
            entry_delay
        };
        let arrive = now.wrapping_add(entry_delay);
        // The guest resumes no nearer the stop than an early entry and
        // invisible exit and entry sides shorter than their medians could
        // undercut: nearer, it would now and then read a time before its
        // own last read. Seen in the rig: a 1 µs step's per-load median
        // wrapped negative when debt was paid down to the stop; with the
        // entry's margin alone, 3 and 102 of 38 000 per-load samples of a
        // one-vCPU sweep stepped back, at releases of 1-50 µs, paid down or
        // not (docs/timed-mode.md, "Never before its own last read"). Debt
        // is paid only beyond the margin, and a release inside it is moved
        // out to it, the difference owed like a late entry.
        let margin = self.invisible_early + self.vcpus[i].early_margin;
        let pay = self.debt.min((mine - floor).saturating_sub(margin));
        let resume = (mine - pay).max(floor + margin);
        let moved_out = resume - (mine - pay);
        if let Some(e) = self.next_event.filter(|&e| e <= resume) {
            // Devices first: the clock moves (stopped) to the resume before
            // the margin, or the event if later, and this vCPU holds it
            // there while it delivers. The restart after that keeps the
            // margin from there, and owes it: moved out to `resume` here,
            // the margin would come twice and be owed once.
            let upto = (mine - pay).max(e);
            self.stopped_at = Some(upto);
            if self.event_stop.is_some_and(|s| s <= upto) {
                self.event_stop = None;
            }
            self.vcpus[i].busy = true;
            return Entry::Deliver { upto };
        }
        self.debt = (self.debt - pay + moved_out).min(self.max_debt);
        // What the guest would have seen without the new offset, less what
        // it will see: hidden. A latency longer than the exit took moves
        // the clock forward instead, which hides nothing.
        let old = self.guest_at(arrive);
        let hidden = old.wrapping_sub(resume);
        if hidden <= i64::MAX as u64 {
            self.hidden += hidden;
        }
        self.offset = resume.wrapping_sub(arrive);
        self.restart_arrives = now.wrapping_add(likely_delay);
        self.stopped_at = None;
        self.latest_left = 0;
        self.go(i, true, now);
        self.vcpus[i].alone = self.others_idle_inside(i);
        Entry::Go {
            offset: self.offset,
            delay: entry_delay,
        }
    }

    /// Every vCPU but `i` inside KVM_RUN sits halted there (true when none
    /// is inside): `i` runs alone.
    fn others_idle_inside(&self, i: usize) -> bool {
        (0..self.vcpus.len())
            .filter(|&j| j != i && self.vcpus[j].running)
            .all(|j| self.vcpus[j].idle_inside)
    }

    fn go(&mut self, i: usize, restarted: bool, now: u64) {
        let v = &mut self.vcpus[i];
        v.running = true;
        v.entered_at = now;
        v.waiting = false;
        v.halted = false;
        v.release = None;
        v.restarted = restarted;
        v.joined_late = None;
        if !restarted {
            v.alone = false;
        }
    }

    /// A vCPU that did not get to enter and will try again later.
    pub fn abandon(&mut self, i: usize) {
        self.vcpus[i].waiting = false;
    }

    /// A vCPU whose thread ends (the VM is stopping): nobody waits for it.
    pub fn retire(&mut self, i: usize) {
        let v = &mut self.vcpus[i];
        v.running = false;
        v.waiting = false;
        v.busy = false;
        v.gone = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An exit as a vCPU thread reports it: left, then handled.
    fn exit(c: &mut Coordinator, i: usize, left: u64, halted: bool, latency: Option<u64>) -> u64 {
        let g = c.leave(i, left, halted);
        c.exited(i, latency);
        g
    }

    #[test]
    fn the_clock_stops_when_the_last_vcpu_leaves_not_when_its_exit_is_handled() {
        let mut c = Coordinator::new(1, 0);
        go(c.enter(0, 1000, 0));
        assert_eq!(c.now(4000), 4000, "running: the clock moves");
        assert_eq!(c.leave(0, 5000, false), 5000);
        // The VMM handles the exit for a long time (a device copying):
        // whoever reads the clock meanwhile sees it where the guest left.
        assert_eq!(c.now(900_000), 5000);
        c.exited(0, Some(250));
        assert_eq!(c.now(950_000), 5000);
        let off = go(c.enter(0, 1_000_000, 0));
        assert_eq!(1_000_000u64.wrapping_add(off), 5250);
    }

    #[test]
    fn a_stopped_clock_stays_stopped_while_another_exit_is_handled() {
        let mut c = Coordinator::new(2, 0);
        go(c.enter(0, 0, 0));
        go(c.enter(1, 0, 0));
        // vCPU 0 rings a doorbell and copies; vCPU 1 is kicked out.
        c.leave(0, 1000, false);
        assert_eq!(c.now(1050), 1050, "vCPU 1 still runs");
        assert_eq!(
            c.now_for(0, 1050),
            1000,
            "vCPU 0's doorbell was written at 1000"
        );
        c.leave(1, 1100, false);
        c.exited(1, None);
        assert_eq!(c.enter(1, 2000, 0), Entry::WaitForOthers);
        assert_eq!(c.now(500_000), 1100, "the copy takes no guest time");
        c.exited(0, None);
        let off = go(c.enter(1, 600_000, 0));
        assert_eq!(600_000u64.wrapping_add(off), 1100);
    }

    #[test]
    fn a_vcpu_kicked_out_of_a_halt_does_not_pull_the_clock_back() {
        let mut c = Coordinator::new(2, 0);
        go(c.enter(0, 0, 0));
        go(c.enter(1, 0, 0));
        // vCPU 1 halted at 2000 (inside KVM_RUN, its last exit the HLT);
        // vCPU 0 runs on and leaves at 9000, then kicks vCPU 1, whose
        // KVM_RUN returns with nothing after that HLT: it "left" at 2000.
        c.leave(0, 9000, false);
        c.exited(0, None);
        c.leave(1, 2000, true);
        c.exited(1, None);
        assert_eq!(
            c.now(50_000),
            9000,
            "stopped where vCPU 0 left, not at the halt"
        );
        // vCPU 1 has nothing to do: vCPU 0's entry restarts the clock, from
        // 9000, and vCPU 1 follows on the running clock.
        assert_eq!(c.enter(1, 55_000, 0), Entry::WaitForOthers);
        let off = go(c.enter(0, 60_000, 0));
        assert_eq!(60_000u64.wrapping_add(off), 9000);
        assert_eq!(go(c.enter(1, 60_500, 0)), off);
    }

    #[test]
    fn a_release_the_running_clock_reaches_late_enough_needs_no_kick() {
        let mut c = Coordinator::new(2, 0);
        go(c.enter(0, 0, 0));
        go(c.enter(1, 0, 0));
        // vCPU 0 leaves at 10 000; handled at 20 000, it could be back in
        // 2 x 1 000 later: a release 100 000 after the exit is still ahead.
        c.leave(0, 10_000, false);
        c.exited(0, Some(100_000));
        assert!(c.to_stop_after(0, 20_000, 1_000, 50_000).is_empty());
        // The clock runs on (vCPU 1); vCPU 0 waits for exactly its release.
        assert_eq!(
            c.enter(0, 20_000, 1_000),
            Entry::WaitUntil { host_tsc: 109_000 }
        );
        // A release the clock passes before vCPU 0 is back: kick vCPU 1.
        let mut c = Coordinator::new(2, 0);
        go(c.enter(0, 0, 0));
        go(c.enter(1, 0, 0));
        c.leave(0, 10_000, false);
        c.exited(0, Some(11_000));
        assert_eq!(c.to_stop_after(0, 20_000, 1_000, 50_000), vec![1]);
        // An idle vCPU 1 (halted inside KVM_RUN) is kicked even then: it
        // costs no exit, and the stopped clock makes the release exact.
        let mut c = Coordinator::new(2, 0);
        go(c.enter(0, 0, 0));
        c.set_idle_inside(1, true);
        go(c.enter(1, 0, 0));
        c.leave(0, 10_000, false);
        c.exited(0, Some(100_000));
        assert_eq!(c.to_stop_after(0, 20_000, 1_000, 50_000), vec![1]);
        // A busy vCPU 1 that has not come out for longer than `stale` may
        // have halted inside: it alone is kicked, to find out.
        let mut c = Coordinator::new(3, 0);
        go(c.enter(0, 0, 0));
        go(c.enter(1, 0, 0));
        go(c.enter(2, 15_000, 0));
        c.leave(0, 10_000, false);
        c.exited(0, Some(100_000));
        assert_eq!(c.to_stop_after(0, 20_000, 1_000, 10_000), vec![1]);
        // Alone, there is nobody to kick.
        let mut c = Coordinator::new(1, 0);
        go(c.enter(0, 0, 0));
        exit(&mut c, 0, 10_000, false, Some(1_000));
        assert!(c.to_stop_after(0, 20_000, 1_000, 50_000).is_empty());
    }

    #[test]
    fn a_vcpu_halted_inside_takes_no_time_from_the_others() {
        let mut c = Coordinator::new(2, 0);
        go(c.enter(0, 0, 0));
        c.set_idle_inside(1, true);
        go(c.enter(1, 100, 0));
        // vCPU 0 restarted alone, and vCPU 1 went in halted: vCPU 0's
        // in-kernel exits are still time nobody should have seen.
        exit(&mut c, 0, 1_000, false, None);
        c.add_debt(0, 300, 0, false);
        assert_eq!(c.debt(), 300);
        // vCPU 0 goes back in on the running clock (vCPU 1 is inside).
        go(c.enter(0, 2_000, 0));
        exit(&mut c, 0, 3_000, false, None);
        c.add_debt(0, 200, 0, false);
        assert_eq!(c.debt(), 500);
        // An interrupt woke vCPU 1 meanwhile: from then on the time is
        // shared.
        go(c.enter(0, 4_000, 0));
        c.woke_inside(1);
        exit(&mut c, 0, 5_000, false, None);
        c.add_debt(0, 200, 0, false);
        assert_eq!(c.debt(), 500);
        // A busy vCPU going in takes the others' time too.
        let mut c = Coordinator::new(2, 0);
        go(c.enter(0, 0, 0));
        go(c.enter(1, 100, 0));
        exit(&mut c, 0, 1_000, false, None);
        c.add_debt(0, 300, 0, false);
        assert_eq!(c.debt(), 0);
    }

    #[test]
    fn debt_is_not_paid_closer_to_the_stop_than_an_early_entry() {
        let mut c = Coordinator::new(1, 0);
        go(c.enter(0, 0, 0));
        exit(&mut c, 0, 1_000, false, None);
        c.add_debt(0, 10_000, 0, false);
        go(c.enter(0, 2_000, 0));
        // A 500-cycle access (guest time 2000) with 10 000 owed, entries
        // up to 200 early: 300 paid, the resume 200 after the stop.
        assert_eq!(exit(&mut c, 0, 3_000, false, Some(500)), 2_000);
        c.set_early_margin(0, 200);
        let off = go(c.enter(0, 9_000, 0));
        assert_eq!(9_000u64.wrapping_add(off), 2_200);
        assert_eq!(c.debt(), 9_700);
        // Shorter than the margin: nothing paid, the resume moved out to
        // the margin and the 100 beyond the latency owed.
        assert_eq!(exit(&mut c, 0, 12_000, false, Some(100)), 5_200);
        let off = go(c.enter(0, 20_000, 0));
        assert_eq!(20_000u64.wrapping_add(off), 5_400);
        assert_eq!(c.debt(), 9_800);
    }

    #[test]
    fn a_resume_keeps_the_invisible_sides_early_margin_from_its_stop() {
        let mut c = Coordinator::new(1, 0).with_invisible_early(300);
        // Every restart resumes at least 300 after its stop (the first one
        // too), and what is shown beyond the latency is owed: here an exit
        // shown no latency (a port write) and a 100-cycle access.
        let off = go(c.enter(0, 0, 0));
        assert_eq!(off, 300);
        assert_eq!(exit(&mut c, 0, 1_000, false, None), 1_300);
        let off = go(c.enter(0, 5_000, 0));
        assert_eq!(5_000u64.wrapping_add(off), 1_600);
        assert_eq!(c.debt(), 600);
        assert_eq!(exit(&mut c, 0, 6_000, false, Some(100)), 2_600);
        let off = go(c.enter(0, 9_000, 0));
        assert_eq!(9_000u64.wrapping_add(off), 2_900);
        assert_eq!(c.debt(), 800);
        // A 1000-cycle access pays back down to the margin: 700.
        assert_eq!(exit(&mut c, 0, 10_000, false, Some(1_000)), 3_900);
        let off = go(c.enter(0, 15_000, 0));
        assert_eq!(15_000u64.wrapping_add(off), 4_200);
        assert_eq!(c.debt(), 100);
    }

    #[test]
    fn halted_vcpus_alone_restart_the_clock_themselves() {
        let mut c = Coordinator::new(2, 0);
        go(c.enter(0, 0, 0));
        go(c.enter(1, 0, 0));
        c.leave(0, 3000, true);
        c.exited(0, None);
        c.leave(1, 4000, true);
        c.exited(1, None);
        let off = go(c.enter(0, 70_000, 0));
        assert_eq!(70_000u64.wrapping_add(off), 4000);
    }

    #[test]
    fn a_device_event_is_delivered_with_the_clock_stopped_at_it() {
        let mut c = Coordinator::new(1, 0);
        go(c.enter(0, 0, 0));
        // A DMA completes at 5000; the vCPU polls in the guest.
        c.note_event(5000);
        // Kicked at 4000 (twice the assumed kick latency ahead), it leaves
        // at 4300.
        assert_eq!(c.request_stop(5000, 4000), vec![0]);
        c.leave(0, 4300, false);
        c.exited(0, None);
        assert_eq!(c.stop_lead(), 600, "kick latency 300 measured");
        // A kick the guest saw take very long counts no more than the cap.
        let mut capped = Coordinator::new(1, 0).with_kick_delay(100, 2000);
        go(capped.enter(0, 0, 0));
        capped.request_stop(1_000_000, 10);
        capped.leave(0, 900_000, false);
        assert_eq!(capped.stop_lead(), 4000);
        // Restarting, the clock first moves to the event: deliver it.
        assert_eq!(c.enter(0, 90_000, 0), Entry::Deliver { upto: 5000 });
        assert_eq!(c.now(95_000), 5000);
        c.delivered(0, Some(8000));
        // Then the guest goes on from 5000 exactly, with the data there.
        let off = go(c.enter(0, 100_000, 0));
        assert_eq!(100_000u64.wrapping_add(off), 5000);
        // An event reached while the clock was stopped anyway (here by a
        // timed access's release) is delivered before the guest resumes.
        c.leave(0, 107_000, false); // guest 12_000
        c.exited(0, Some(500));
        assert_eq!(c.enter(0, 120_000, 0), Entry::Deliver { upto: 12_500 });
        c.delivered(0, None);
        let off = go(c.enter(0, 130_000, 0));
        assert_eq!(130_000u64.wrapping_add(off), 12_500);
    }

    #[test]
    fn an_event_inside_the_margin_is_delivered_and_the_margin_kept_once() {
        let mut c = Coordinator::new(1, 0).with_invisible_early(300);
        go(c.enter(0, 0, 0));
        assert_eq!(exit(&mut c, 0, 1_000, false, None), 1_300);
        assert_eq!(c.debt(), 300, "the first restart's margin");
        // An event at 1400, inside the next restart's margin (1300-1600):
        // delivered at its time, then the guest resumes 300 after that,
        // the 300 beyond the event owed; not at 1900 with 300 unowed.
        c.set_next_event(Some(1_400));
        assert_eq!(c.enter(0, 5_000, 0), Entry::Deliver { upto: 1_400 });
        c.delivered(0, None);
        let off = go(c.enter(0, 6_000, 0));
        assert_eq!(6_000u64.wrapping_add(off), 1_700);
        assert_eq!(c.debt(), 600);
    }

    #[test]
    fn an_event_sooner_than_a_kick_could_stop_the_guest_is_waited_for() {
        let mut c = Coordinator::new(1, 0).with_kick_delay(300, 1000);
        go(c.enter(0, 0, 0));
        // A doorbell at 1000 whose completion is due at 1500, within the
        // lead (600): the guest does not run again before it.
        c.leave(0, 1000, false);
        c.note_event(1500);
        c.exited(0, None);
        assert_eq!(c.enter(0, 50_000, 0), Entry::Deliver { upto: 1500 });
        c.delivered(0, Some(5000));
        let off = go(c.enter(0, 50_100, 0));
        assert_eq!(50_100u64.wrapping_add(off), 1500);
        // One due further off than the lead: the guest goes on meanwhile.
        c.leave(0, 50_200, false); // guest 1600
        c.exited(0, None);
        let off = go(c.enter(0, 60_000, 0));
        assert_eq!(60_000u64.wrapping_add(off), 1600);
    }

    #[test]
    fn a_late_kick_delivers_as_soon_as_the_guest_is_out() {
        let mut c = Coordinator::new(2, 0);
        go(c.enter(0, 0, 0));
        go(c.enter(1, 0, 0));
        assert_eq!(c.request_stop(5000, 4900), vec![0, 1]);
        c.leave(0, 5200, false);
        c.exited(0, None);
        // While vCPU 1 runs, the clock runs: no delivery yet.
        assert_eq!(go(c.enter(0, 5300, 0)), 0);
        c.leave(0, 5350, false);
        c.exited(0, None);
        c.leave(1, 5400, false);
        c.exited(1, None);
        // Both out at 5400, after the event: it is delivered at 5400.
        assert_eq!(c.enter(1, 9000, 0), Entry::Deliver { upto: 5400 });
        // The other waits while it is delivered.
        assert_eq!(c.enter(0, 9100, 0), Entry::WaitForOthers);
        c.delivered(1, None);
        let off = go(c.enter(1, 9200, 0));
        assert_eq!(9200u64.wrapping_add(off), 5400);
    }

    fn go(e: Entry) -> u64 {
        match e {
            Entry::Go { offset, .. } => offset,
            other => panic!("expected Go, got {other:?}"),
        }
    }

    #[test]
    fn one_vcpu_sees_only_the_latency() {
        let mut c = Coordinator::new(1, 0);
        // Runs from host 1000; guest = host.
        go(c.enter(0, 1000, 0));
        // Exit at host 5000 (guest 5000), latency 200; the VMM handles it
        // and re-enters at host 60_000 with a 100-cycle entry path.
        assert_eq!(exit(&mut c, 0, 5000, false, Some(200)), 5000);
        let off = go(c.enter(0, 60_000, 100));
        // Guest time at arrival = 5200 exactly.
        assert_eq!(60_100u64.wrapping_add(off), 5200);
        assert_eq!(c.hidden_cycles(), 60_100 - 5200);
        // A non-timed exit is hidden entirely.
        exit(&mut c, 0, 70_100, false, None); // guest 70_100 + off = 15_200
        let off2 = go(c.enter(0, 90_000, 100));
        assert_eq!(90_100u64.wrapping_add(off2), 70_100u64.wrapping_add(off));
        let hidden = c.hidden_cycles();
        // A latency longer than the exit's cost moves the clock forward:
        // nothing hidden (it used to count as 2^63 cycles).
        let at = exit(&mut c, 0, 91_000, false, Some(1_000_000));
        let off3 = go(c.enter(0, 92_000, 100));
        assert_eq!(92_100u64.wrapping_add(off3), at + 1_000_000);
        assert_eq!(c.hidden_cycles(), hidden);
    }

    #[test]
    fn debt_is_paid_from_releases_without_stepping_back() {
        let mut c = Coordinator::new(1, 0);
        go(c.enter(0, 0, 0));
        exit(&mut c, 0, 1000, false, Some(300));
        go(c.enter(0, 5000, 0)); // guest 1300 at host 5000
                                 // The entry came 500 cycles late, and an in-kernel exit of 400 was
                                 // seen while alone: 900 owed.
        c.add_debt(0, 400, 500, false);
        assert_eq!(c.debt(), 900);
        // Next exit at host 6000: guest 1300 + 1000 = 2300; latency 300:
        // pay 300 (all of the release), 600 left.
        let g = exit(&mut c, 0, 6000, false, Some(300));
        assert_eq!(g, 2300);
        let off = go(c.enter(0, 9000, 0));
        assert_eq!(9000u64.wrapping_add(off), 2300, "never below the stop");
        assert_eq!(c.debt(), 600);
    }

    #[test]
    fn a_restart_beside_a_vcpu_kicked_out_of_a_halt_is_predicted_as_alone() {
        let mut c = Coordinator::new(2, 0);
        go(c.enter(0, 0, 0));
        go(c.enter(1, 0, 0));
        c.leave(1, 100, true); // kicked out of a halt
        c.exited(1, None);
        exit(&mut c, 0, 1000, false, Some(300)); // release 1300
        c.set_quickest_delay(0, 40);
        // vCPU 1, kicked out of a halt, yields (below): the likely delay
        // (100) predicts, as when vCPU 0 goes in alone.
        match c.enter(0, 9000, 100) {
            Entry::Go { offset, delay } => {
                assert_eq!(delay, 100);
                assert_eq!(9100u64.wrapping_add(offset), 1300);
            }
            other => panic!("{other:?}"),
        }
        // vCPU 1, with nothing to do, keeps out of vCPU 0's way until it
        // is likely in (decided at 9000, likely delay 100).
        assert_eq!(c.enter(1, 9001, 100), Entry::Yield { host_tsc: 9100 });
        go(c.enter(1, 9100, 100));
        // Alone, the likely delay predicts.
        c.leave(1, 1400, true);
        c.exited(1, None);
        c.retire(1);
        exit(&mut c, 0, 1500, false, Some(300));
        match c.enter(0, 20_000, 100) {
            Entry::Go { delay, .. } => assert_eq!(delay, 100),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn only_waiters_with_work_need_waking() {
        let mut c = Coordinator::new(3, 0);
        go(c.enter(0, 0, 0));
        go(c.enter(1, 0, 0));
        go(c.enter(2, 0, 0));
        // vCPU 1 is kicked out of a halt; vCPU 0's exit is still being
        // handled, so the stopped clock keeps vCPU 1 waiting.
        c.leave(1, 10, true);
        c.exited(1, None);
        c.leave(0, 20, false);
        c.leave(2, 25, false);
        assert!(c.is_halted(1));
        assert_eq!(c.enter(1, 30, 0), Entry::WaitForOthers);
        assert!(
            !c.others_wait_with_work(0),
            "a halted waiter looks again by itself"
        );
        // vCPU 2 has a release to wait for: it must be told.
        c.exited(2, Some(1000));
        assert_eq!(c.enter(2, 40, 0), Entry::WaitForOthers);
        assert!(c.others_wait_with_work(0));
        assert!(!c.others_wait_with_work(2));
    }

    #[test]
    fn debt_is_paid_from_a_release_only_beyond_the_early_margin() {
        let mut c = Coordinator::new(2, 0);
        go(c.enter(0, 0, 0));
        c.set_idle_inside(1, true);
        go(c.enter(1, 0, 0)); // halted inside: vCPU 0 runs alone
        exit(&mut c, 0, 1000, false, Some(300));
        c.add_debt(0, 500, 0, false); // an in-kernel exit while alone
        assert_eq!(c.debt(), 500);
        c.leave(1, 10, true); // kicked out of its halt
        c.exited(1, None);
        c.set_early_margin(0, 200);
        let off = go(c.enter(0, 9000, 0));
        assert_eq!(
            9000u64.wrapping_add(off),
            1200,
            "100 of the latency paid, the margin's 200 kept"
        );
        assert_eq!(c.debt(), 400);
    }

    #[test]
    fn time_lost_while_another_vcpu_ran_is_owed_by_the_loser_alone() {
        let mut c = Coordinator::new(2, 0);
        go(c.enter(0, 0, 0));
        go(c.enter(1, 0, 0));
        // vCPU 0 lost 500 cycles to in-kernel exits while vCPU 1 ran
        // guest code: the clock keeps them (vCPU 1 saw them pass).
        exit(&mut c, 0, 1000, false, None);
        c.add_debt(0, 500, 0, false);
        assert_eq!((c.debt(), c.owed(0), c.owed(1)), (0, 500, 0));
        go(c.enter(0, 1100, 0));
        assert_eq!(c.now(1200), 1200, "the clock did not move");
        // Its next timed access comes back sooner by what it owes, but
        // never nearer its exit than its early margin.
        c.set_early_margin(0, 200);
        exit(&mut c, 0, 2000, false, Some(600)); // release 2600 - 400
        assert_eq!(c.owed(0), 100);
        assert_eq!(c.enter(0, 2100, 0), Entry::WaitUntil { host_tsc: 2200 });
        go(c.enter(0, 2200, 0));
        exit(&mut c, 0, 3000, false, Some(250)); // only 50 beyond the margin
        assert_eq!(c.owed(0), 50);
        assert_eq!(c.enter(0, 3100, 0), Entry::WaitUntil { host_tsc: 3200 });
        // Its thread woke 70 cycles after the release, and KVM took 30
        // cycles longer than predicted to get it in: 100 more owed.
        go(c.enter(0, 3270, 0));
        exit(&mut c, 0, 4000, false, None);
        c.add_debt(0, 0, 30, false);
        assert_eq!(c.owed(0), 150);
        assert_eq!(c.debt(), 0);
        // A halt forgives it: the busy stretch it distorted is over.
        go(c.enter(0, 4100, 0));
        exit(&mut c, 0, 5000, true, None);
        c.add_debt(0, 0, 0, true);
        assert_eq!(c.owed(0), 0);
    }

    #[test]
    fn busy_other_vcpu_keeps_the_clock_moving() {
        let mut c = Coordinator::new(2, 0);
        go(c.enter(0, 0, 0));
        go(c.enter(1, 0, 0));
        exit(&mut c, 0, 1000, false, Some(300));
        assert_eq!(c.running_others(0), vec![1]);
        // vCPU 1 still runs: vCPU 0 must wait for the clock to reach 1300.
        assert_eq!(c.enter(0, 1100, 50), Entry::WaitUntil { host_tsc: 1250 });
        assert_eq!(go(c.enter(0, 1250, 50)), 0);
    }

    #[test]
    fn kicked_vcpu_stops_the_clock_and_releases_go_in_order() {
        let mut c = Coordinator::new(2, 0);
        go(c.enter(0, 0, 0));
        go(c.enter(1, 0, 0));
        // Both leave for timed accesses: 0 at 1000 (+500), 1 at 1200 (+100).
        exit(&mut c, 0, 1000, false, Some(500)); // release 1500
        exit(&mut c, 1, 1200, false, Some(100)); // release 1300; clock stopped at 1200
                                                 // Much later both want in: vCPU 1's release (1300) comes first.
        assert_eq!(c.enter(0, 50_000, 10), Entry::WaitForOthers);
        // With vCPU 0 out too, the restart is predicted with the quickest
        // entry vCPU 1 made lately.
        c.set_quickest_delay(1, 4);
        let off = go(c.enter(1, 50_000, 10));
        assert_eq!(50_004u64.wrapping_add(off), 1300);
        // Now the clock runs; vCPU 0 waits until it shows 1500.
        match c.enter(0, 50_020, 10) {
            Entry::WaitUntil { host_tsc } => assert_eq!(host_tsc.wrapping_add(off) + 10, 1500),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn clock_is_monotonic_under_random_schedules() {
        // Random exits, latencies, debts and entry delays on 3 vCPUs; some
        // vCPUs halt (observe nothing from then on, and when kicked their
        // exit is dated at the halt) and a device sometimes delivers
        // something at the running clock: the guest time any vCPU observes
        // at entry never falls below the latest time anyone observed.
        let mut seed = 0x1234_5678_9abc_def0u64;
        let mut rnd = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let mut c = Coordinator::new(3, 1 << 40);
        let mut host = 1000u64;
        let mut latest_seen = 0u64;
        let mut inside = [false; 3];
        let mut halted: [Option<u64>; 3] = [None; 3];
        for _ in 0..50_000 {
            host += 1 + rnd(500);
            // While a vCPU runs guest code, it sees the clock move.
            if (0..3).any(|j| inside[j] && halted[j].is_none()) {
                latest_seen = latest_seen.max(c.guest_at(host));
            }
            let i = rnd(3) as usize;
            if inside[i] && halted[i].is_none() && rnd(5) == 0 {
                halted[i] = Some(host);
            } else if inside[i] {
                let was_halted = halted[i].is_some();
                let left = halted[i].take().unwrap_or(host);
                let g = exit(
                    &mut c,
                    i,
                    left,
                    was_halted,
                    (rnd(2) == 0).then(|| rnd(3000)),
                );
                latest_seen = latest_seen.max(g);
                inside[i] = false;
                c.add_debt(i, rnd(100), rnd(200) as i64 - 100, rnd(50) == 0);
            } else {
                let delay = rnd(100);
                // Its quickest entry: never slower than this one.
                c.set_quickest_delay(i, rnd(delay + 1));
                match c.enter(i, host, delay) {
                    Entry::Go { offset, .. } => {
                        // Nothing else happens before it arrives.
                        host += delay;
                        let g = host.wrapping_add(offset);
                        assert!(g >= latest_seen, "clock stepped back: {g} < {latest_seen}");
                        latest_seen = g;
                        inside[i] = true;
                    }
                    Entry::Deliver { upto } => {
                        // Everyone is out; the guest sees it from `upto`.
                        assert!(upto >= latest_seen, "event delivered in the past");
                        latest_seen = upto;
                        c.delivered(i, None);
                        c.abandon(i);
                    }
                    Entry::WaitUntil { .. } | Entry::WaitForOthers | Entry::Yield { .. } => {
                        c.abandon(i)
                    }
                }
            }
            // Devices book events; sometimes the guest is stopped for one.
            if rnd(11) == 0 {
                let at = c.guest_at(host) + rnd(3000);
                if rnd(2) == 0 {
                    c.request_stop(at, host);
                } else {
                    c.note_event(at);
                }
            }
            // A device delivers a completion at the running clock.
            if inside.iter().any(|&x| x) && rnd(7) == 0 {
                let g = c.guest_at(host);
                c.observed(g);
                latest_seen = latest_seen.max(g);
            }
        }
    }
}
