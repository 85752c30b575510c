//! One vCPU thread's measurements of its own exits: when the guest really
//! stopped, how long KVM's entry path takes, and how much time went to exits
//! that the kernel handled without coming back to user space.
//!
//! The kernel's `kvm_exit`/`kvm_entry` tracepoints ([`super::trace`]) fire
//! a little after the guest stopped and a little before it resumes; the
//! part outside that window (the hardware's world switch, and in a nested
//! setup the outer hypervisor's emulation of it) is invisible to this host
//! and is taken from the start-up calibration ([`super::calibrate`]), which
//! measures the exit and the entry side apart, but never longer than the
//! guest-mode stretches between an entry and the next exit allow.

use super::trace::{now_ns, TraceEvent, TraceKind, VcpuTrace};
use super::tsc::rdtsc;

/// Exit reasons that mean "the guest is idle", whose time must pass: HLT
/// (SVM 0x78, VMX 12), PAUSE-loop exits (SVM 0x77, VMX 40: the guest spins
/// for a lock another vCPU holds), MWAIT (SVM 0x8b, VMX 36).
fn is_idle_exit(reason: u32, amd: bool) -> bool {
    if amd {
        matches!(reason, 0x78 | 0x77 | 0x8b)
    } else {
        matches!(reason, 12 | 40 | 36)
    }
}

/// Whether the host CPU is AMD (its exit reasons are SVM exit codes).
pub fn host_is_amd() -> bool {
    let r = core::arch::x86_64::__cpuid(0);
    r.ebx == u32::from_le_bytes(*b"Auth")
}

/// Calibration constants, in host TSC cycles.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Calibration {
    /// Invisible part of an exit: guest's last instruction -> kvm_exit.
    pub exit_invisible_cycles: u64,
    /// Invisible part of an entry: kvm_entry -> guest's next instruction.
    pub entry_invisible_cycles: u64,
    /// Median delay from deciding to enter to the `kvm_entry` tracepoint.
    pub entry_path_cycles: u64,
    /// How much sooner than the two invisible medians above an exit's
    /// invisible sides may end, together (`Spread::early_tail` of each):
    /// the guest may have read the clock that much after the moment the
    /// clock puts its exit at, and may resume that much before the moment
    /// it was given.
    pub invisible_early_cycles: u64,
    /// Host TSC cycles per nanosecond.
    pub cycles_per_ns: f64,
}

/// What the last exit looked like, for the clock coordinator.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExitTiming {
    /// Host TSC when the guest stopped.
    pub left: u64,
    /// Exits handled in the kernel since the last entry (not idle ones),
    /// with their invisible parts: time the guest should not have seen.
    pub in_kernel: u64,
    /// How much later (positive) or earlier than predicted the guest
    /// really resumed after the previous entry decision.
    pub entry_error: i64,
    /// How many exits the kernel handled by itself (not idle ones), and
    /// the reason of the last one.
    pub in_kernel_exits: u32,
    pub last_in_kernel_reason: u32,
    /// The measured entry path (decision -> kvm_entry) of the last entry.
    pub entry_path: u64,
    /// Its last part: from the KVM_RUN call to kvm_entry.
    pub run_path: u64,
    /// The guest idled (HLT, PAUSE loop, MWAIT) since the last entry.
    pub idled: bool,
    /// It was still idle when KVM_RUN returned (a signal took it out of a
    /// halt): `left` is when it halted.
    pub halted: bool,
    /// The guest ran since the last entry decision (the trace shows an
    /// entry).
    pub ran: bool,
    /// The invisible sides in use (cycles): the exit side `left` was dated
    /// with (0 where no side was: a halt, or an exit without an entry),
    /// and the entry side the next entry is predicted with.
    pub exit_side: u64,
    pub entry_side: u64,
}

/// Whether the guest-mode stretches bound the invisible sides
/// ([`ExitTimer::bounded_exit_side`], [`ExitTimer::follow_stretches`]);
/// `CXLVMM_CLOCK_STRETCH_BOUND=0` turns that off, to measure what it does
/// (docs/timed-mode.md, "A stretch bounds the invisible sides").
fn bound_by_stretch() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var("CXLVMM_CLOCK_STRETCH_BOUND").map_or(true, |v| v != "0"))
}

/// How many recent guest-mode stretches bound the invisible sides, and
/// how often (in stretches) the sides are set from them again.
const STRETCHES: usize = 31;
const RESCALE_EVERY: usize = 8;

/// Which quantile of recent entry paths predicts the next.
const ENTRY_QUANTILE: f64 = 0.1;

/// The last `N` samples; a quantile of them predicts the next.
#[derive(Clone, Debug)]
struct Recent<const N: usize> {
    samples: [u64; N],
    len: usize,
    next: usize,
    /// What min and quantiles give while there is no sample yet.
    guess: u64,
}

impl<const N: usize> Recent<N> {
    /// `initial` counts as the first sample.
    fn new(initial: u64) -> Self {
        let mut r = Self::guessed(initial);
        r.push(initial);
        r
    }

    /// `initial` stands in until the first sample, which replaces it.
    fn guessed(initial: u64) -> Self {
        Self {
            samples: [initial; N],
            len: 0,
            next: 0,
            guess: initial,
        }
    }

    fn min(&self) -> u64 {
        self.samples[..self.len]
            .iter()
            .copied()
            .min()
            .unwrap_or(self.guess)
    }

    fn push(&mut self, v: u64) {
        self.samples[self.next] = v;
        self.next = (self.next + 1) % self.samples.len();
        self.len = (self.len + 1).min(self.samples.len());
    }

    /// The `q` quantile of the recent samples (0 = the smallest).
    fn quantile(&self, q: f64) -> u64 {
        if self.len == 0 {
            return self.guess;
        }
        let mut s = self.samples;
        let s = &mut s[..self.len];
        s.sort_unstable();
        s[((s.len() - 1) as f64 * q) as usize]
    }
}

/// An entry is only a candidate for the quickest when it was read back
/// within this many nanoseconds: its trace time is converted to host TSC
/// over that span, and a long one (a guest that ran for seconds) adds the
/// two clocks' drift to it.
const QUICKEST_SPAN_NS: u64 = 10_000_000;

pub struct ExitTimer {
    trace: Option<VcpuTrace>,
    events: Vec<TraceEvent>,
    cal: Calibration,
    amd: bool,
    entry_path: Recent<31>,
    /// A longer memory of entry paths, for how early one may come: the
    /// quickest of the last 31 was undercut now and then.
    entry_floor: Recent<255>,
    /// The quickest entry path seen so far (cycles).
    quickest: u64,
    /// When we last decided to enter (ns) and what entry delay we assumed.
    decided: Option<(u64, u64)>,
    /// When KVM_RUN was last called (host TSC).
    ran_at: Option<u64>,
    /// Events the kernel dropped (ring full): accounting was incomplete.
    pub lost_events: u64,
    /// Exits whose invisible exit side was shortened to fit the guest-mode
    /// stretch before them ([`Self::bounded_exit_side`]).
    pub shortened_exits: u64,
    /// Recent guest-mode stretches (`kvm_entry` to the next `kvm_exit`,
    /// cycles): each holds both invisible sides.
    stretches: Recent<STRETCHES>,
    /// Stretches pushed since the sides were last set from them.
    unscaled: usize,
    /// The invisible sides in use (cycles): the calibration's, scaled down
    /// to the median recent stretch where that is shorter than both
    /// ([`Self::follow_stretches`]).
    exit_side: u64,
    entry_side: u64,
    /// The last exit seen was an idle one, at this host TSC: until an
    /// entry shows in the trace the vCPU is still in that idle state (KVM
    /// keeps a halted vCPU blocked in the kernel, running no guest code).
    idle_since: Option<u64>,
}

impl ExitTimer {
    /// `trace` is None where tracepoints cannot be read: then only the
    /// user-space view is available (exits are dated when KVM_RUN returns,
    /// less the calibrated invisible part, and in-kernel exits are not seen).
    pub fn new(trace: Option<VcpuTrace>, cal: Calibration) -> Self {
        Self {
            trace,
            events: Vec::with_capacity(64),
            cal,
            amd: host_is_amd(),
            // The calibration's entry path, measured without the clock's
            // own work on the entry, is quicker than the entries to come:
            // as a prediction it errs early (safe: the guest may see an
            // access take longer, never shorter). As the floor it would
            // stay the quickest of the last 255 and make the early margin
            // the clock's whole work on the entry (2.6 µs in the
            // instruction-counted rig): every shorter release of the first
            // 255 entries was moved out and owed, and the next ~900 loads
            // of a 1.1 µs probe (`cxlvmm calibrate --latency-ns`) showed
            // nothing while the clock took it back.
            entry_path: Recent::new(cal.entry_path_cycles),
            entry_floor: Recent::guessed(cal.entry_path_cycles),
            quickest: u64::MAX,
            decided: None,
            ran_at: None,
            lost_events: 0,
            shortened_exits: 0,
            stretches: Recent::guessed(u64::MAX),
            unscaled: 0,
            exit_side: cal.exit_invisible_cycles,
            entry_side: cal.entry_invisible_cycles,
            idle_since: None,
        }
    }

    /// The vCPU's last exit was an idle one and no entry followed: KVM_RUN
    /// will block it in its halt until an interrupt comes.
    pub fn idle_inside(&self) -> bool {
        self.idle_since.is_some()
    }

    pub fn cycles_per_ns(&self) -> f64 {
        self.cal.cycles_per_ns
    }

    pub fn traced(&self) -> bool {
        self.trace.is_some()
    }

    /// The delay from now to the guest running again, in cycles: a low
    /// quantile of the recent entry paths plus the invisible entry side.
    /// Erring early means the guest may see an access take a little longer
    /// (paid back from later ones as debt), never shorter than the clock
    /// allows; erring late would let it step back. (Waiting out a high
    /// quantile of the offset write before KVM_RUN was tried: in the rig
    /// the KVM_RUN -> kvm_entry part alone spreads over 35-153 µs, so it
    /// only lengthened the path; docs/timed-mode.md, "Known limits".)
    pub fn entry_delay(&self) -> u64 {
        self.entry_path.quantile(ENTRY_QUANTILE) + self.entry_side
    }

    /// How much sooner than [`Self::entry_delay`] the guest may resume: the
    /// predicted quantile less the quickest of the last 255 entry paths,
    /// plus, while the invisible sides follow the stretches below the
    /// calibration, as much as they were taken down: sides set from the
    /// median stretch still hold the guest's own work between exits, and
    /// the calibration's spread, which the rest of the margin comes from,
    /// says nothing about a host that changed since.
    pub fn early_margin(&self) -> u64 {
        let p = self.entry_path.quantile(ENTRY_QUANTILE);
        let moved = (self.cal.exit_invisible_cycles + self.cal.entry_invisible_cycles)
            .saturating_sub(self.exit_side + self.entry_side);
        p - self.entry_floor.min().min(p) + moved
    }

    /// The quickest plausible delay from now to the guest running again:
    /// the quickest entry path this vCPU ever made plus the invisible
    /// entry side. An entry predicted with it reaches the guest no sooner,
    /// so a clock restarted on it never shows the guest a time before the
    /// restart point; how much later it arrives is the spread of entries,
    /// which the guest sees. (The quickest of the last few hundred was
    /// tried: in the rig whole phases of entries ran 75-100 µs, then one
    /// of 60 µs undercut their minimum.)
    pub fn quickest_delay(&self) -> u64 {
        self.quickest.min(self.entry_path.quantile(ENTRY_QUANTILE)) + self.entry_side
    }

    /// Records a guest-mode stretch (for [`Self::follow_stretches`]) and
    /// returns the invisible exit side of the exit that ended it, `stretch`
    /// cycles after the entry before it (both tracepoints seen): the side
    /// in use (the calibrated median, or less once the stretches brought it
    /// down), but no more than fits in the stretch. The guest ran between the entry's
    /// invisible side and the exit's, so the two sides together are
    /// shorter than the stretch. Sides that end sooner than their medians
    /// by up to the early margin are covered by the margin every resume
    /// keeps from its stop ([`Calibration::invisible_early_cycles`]);
    /// beyond that (a calibration made while the host was slower than it
    /// is now), the clock would date the exit before the guest's own
    /// resume, and its next resume before a time the guest has read. So
    /// the side is cut to the stretch less the entry side's median, plus
    /// that margin (docs/timed-mode.md, "A stretch bounds the invisible
    /// sides").
    fn bounded_exit_side(&mut self, stretch: u64) -> u64 {
        if !bound_by_stretch() {
            return self.exit_side;
        }
        self.stretches.push(stretch);
        self.unscaled += 1;
        let room = stretch
            .saturating_add(self.cal.invisible_early_cycles)
            .saturating_sub(self.entry_side);
        if room < self.exit_side {
            self.shortened_exits += 1;
            room
        } else {
            self.exit_side
        }
    }

    /// Sets the invisible sides from the recent stretches, every
    /// `RESCALE_EVERY` of them: the calibration's medians, scaled down
    /// together (never up) so that they add up to no more than the median
    /// stretch. A host that got quicker since the calibration shortens
    /// both sides, and the entry side is what predicts where the guest
    /// resumes: left at the calibration's, every entry would reach the guest
    /// sooner than the clock puts it, and a resume brought near its stop
    /// (repaying debt) would show the guest a time before its own last
    /// read. Where the guest computes between exits the median stretch is
    /// far longer than the sides and they stay as calibrated.
    fn follow_stretches(&mut self) {
        if self.unscaled < RESCALE_EVERY {
            return;
        }
        self.unscaled = 0;
        let (exit, entry) = (
            self.cal.exit_invisible_cycles,
            self.cal.entry_invisible_cycles,
        );
        let sum = exit + entry;
        let median = self.stretches.quantile(0.5);
        if median >= sum || sum == 0 {
            (self.exit_side, self.entry_side) = (exit, entry);
            return;
        }
        let scale = median as f64 / sum as f64;
        self.exit_side = (exit as f64 * scale) as u64;
        self.entry_side = (entry as f64 * scale) as u64;
    }

    /// Records that the vCPU decided at host TSC `decided` to enter,
    /// having assumed `entry_delay`.
    pub fn entering(&mut self, decided: u64, entry_delay: u64) {
        self.decided = Some((decided, entry_delay));
    }

    /// KVM_RUN is called now (host TSC).
    pub fn running(&mut self, now: u64) {
        self.ran_at = Some(now);
    }

    /// Right after KVM_RUN returned: what happened since the last entry.
    pub fn exited(&mut self) -> ExitTiming {
        let (ns, tsc) = (now_ns(), rdtsc());
        let Some(trace) = self.trace.as_mut() else {
            return ExitTiming {
                left: tsc.saturating_sub(self.exit_side),
                exit_side: self.exit_side,
                entry_side: self.entry_side,
                ..Default::default()
            };
        };
        self.events.clear();
        let lost = trace.drain(&mut self.events);
        self.lost_events += lost;
        let mut timing = self.account(ns, tsc, lost > 0);
        timing.entry_side = self.entry_side;
        timing
    }

    /// The timing of an exit from the events drained into `self.events`,
    /// read at `ns` (trace clock) = `tsc` (host TSC); `lost`: the ring
    /// dropped some, so a missing event proves nothing.
    fn account(&mut self, ns: u64, tsc: u64, lost: bool) -> ExitTiming {
        let per_ns = self.cal.cycles_per_ns;
        let cycles = |span_ns: u64| (span_ns as f64 * per_ns) as u64;
        let to_tsc = |e: u64| -> u64 { tsc.saturating_sub(cycles(ns.saturating_sub(e))) };
        let mut timing = ExitTiming {
            left: tsc,
            ..Default::default()
        };
        if self.events.is_empty() && !lost {
            // KVM_RUN returned without entering the guest. After an idle
            // exit, the vCPU sat in its halt the whole time (KVM blocks a
            // halted vCPU without entering the guest; an interrupt that
            // woke it would have shown as an entry): it saw nothing since
            // it halted, so it left at its halt, as one kicked out of a
            // halt within the run does. Dated at the return instead, a
            // halted vCPU kicked out again and again by another vCPU's
            // timed accesses would stop the clock late every time, and the
            // other vCPU would see its kick's cost on every access.
            if let Some(at) = self.idle_since {
                timing.left = at;
                timing.halted = true;
                self.decided = None;
                self.ran_at = None;
                return timing;
            }
            // Otherwise: the next iteration of a string instruction on MMIO
            // (the kernel emulates `rep movs`/`rep stos` one exit per
            // element without resuming the guest in between), or a kick
            // that came before the entry. The guest did not run: it stopped
            // where the clock meant it to resume, and the time since is the
            // VMM's.
            if let Some((decided, assumed)) = self.decided.take() {
                timing.left = decided.saturating_add(assumed).min(tsc);
            }
            self.ran_at = None;
            return timing;
        }
        let mut first_entry = None;
        // The last entry, and the exit that ended the guest-mode stretch
        // after it with that exit's invisible side.
        let mut last_entry = None;
        let mut open_exit: Option<(u64, u32, u64)> = None;
        let events = std::mem::take(&mut self.events);
        for ev in &events {
            match ev.kind {
                TraceKind::Entry => {
                    first_entry.get_or_insert(ev.time_ns);
                    last_entry = Some(ev.time_ns);
                    if let Some((at, reason, exit_side)) = open_exit.take() {
                        if is_idle_exit(reason, self.amd) {
                            timing.idled = true;
                        } else {
                            timing.in_kernel_exits += 1;
                            timing.last_in_kernel_reason = reason;
                            timing.in_kernel +=
                                cycles(ev.time_ns.saturating_sub(at)) + exit_side + self.entry_side;
                        }
                    }
                }
                TraceKind::Exit { reason } => {
                    let exit_side = match last_entry {
                        Some(e) => self.bounded_exit_side(cycles(ev.time_ns.saturating_sub(e))),
                        None => self.exit_side,
                    };
                    open_exit = Some((ev.time_ns, reason, exit_side));
                }
            }
        }
        self.events = events;
        if first_entry.is_some() {
            self.idle_since = None;
            timing.ran = true;
        }
        if let Some((at, reason, exit_side)) = open_exit {
            timing.left = to_tsc(at).saturating_sub(exit_side);
            timing.exit_side = exit_side;
            timing.halted = is_idle_exit(reason, self.amd);
            self.idle_since = timing.halted.then_some(timing.left);
        }
        if let (Some(entry), Some((decided, assumed))) = (first_entry, self.decided.take()) {
            let entered = to_tsc(entry);
            let path = entered.saturating_sub(decided);
            self.entry_path.push(path);
            self.entry_floor.push(path);
            if ns.saturating_sub(entry) < QUICKEST_SPAN_NS {
                self.quickest = self.quickest.min(path);
            }
            timing.entry_path = path;
            if let Some(ran) = self.ran_at.take() {
                timing.run_path = entered.saturating_sub(ran);
            }
            let actual = path + self.entry_side;
            timing.entry_error = actual as i64 - assumed as i64;
        }
        self.follow_stretches();
        timing
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_quantiles_follow_the_samples() {
        let mut r = Recent::<31>::new(100);
        assert_eq!(r.quantile(0.5), 100);
        for v in [10, 20, 30] {
            r.push(v);
        }
        // sorted 10 20 30 100: the 0.5 quantile is index 1, 0 the smallest
        assert_eq!(r.quantile(0.5), 20);
        assert_eq!(r.quantile(0.0), 10);
        assert_eq!(r.quantile(1.0), 100);
        for _ in 0..40 {
            r.push(7);
        }
        assert_eq!(r.quantile(0.5), 7);
    }

    #[test]
    fn a_guess_gives_way_to_the_first_sample() {
        let mut r = Recent::<255>::guessed(10);
        assert_eq!((r.min(), r.quantile(0.1)), (10, 10));
        r.push(50);
        assert_eq!((r.min(), r.quantile(0.1), r.quantile(1.0)), (50, 50, 50));
        r.push(40);
        assert_eq!((r.min(), r.quantile(1.0)), (40, 50));
    }

    #[test]
    fn the_entry_floor_remembers_longer_than_the_prediction() {
        let mut short = Recent::<31>::new(100);
        let mut long = Recent::<255>::new(100);
        for v in std::iter::once(5).chain(std::iter::repeat_n(50, 100)) {
            short.push(v);
            long.push(v);
        }
        assert_eq!(short.min(), 50);
        assert_eq!(long.min(), 5);
        for _ in 0..255 {
            long.push(50);
        }
        assert_eq!(long.min(), 50);
    }

    /// A timer that reads exit reasons as SVM exit codes, whatever CPU
    /// runs the tests (the events below are an AMD host's).
    fn timer() -> ExitTimer {
        let mut t = ExitTimer::new(
            None,
            Calibration {
                exit_invisible_cycles: 100,
                entry_invisible_cycles: 50,
                entry_path_cycles: 1000,
                invisible_early_cycles: 30,
                cycles_per_ns: 1.0,
            },
        );
        t.amd = true;
        t
    }

    /// A `rep stos` on MMIO: after the first exit KVM returns one exit per
    /// element without entering the guest. Those exits are dated where the
    /// clock meant the guest to resume, so the VMM's time between them is
    /// not guest time; with an entry in between, the exit is the guest's.
    #[test]
    fn an_exit_without_an_entry_is_dated_at_the_planned_resume() {
        let mut t = timer();
        t.entering(10_000, 1_050);
        t.running(10_500);
        let timing = t.account(50_000, 50_000, false);
        assert_eq!(timing.left, 11_050);
        assert_eq!(timing.entry_error, 0);
        // Returned sooner than the planned resume: never dated later than now.
        t.entering(60_000, 1_050);
        assert_eq!(t.account(60_400, 60_400, false).left, 60_400);
        // With events lost, an empty drain proves nothing: dated now.
        t.entering(70_000, 1_050);
        assert_eq!(t.account(90_000, 90_000, true).left, 90_000);
        // Kicked out of a HLT (left at 91 000, less the invisible part),
        // then again before any entry: still in that halt, it left there.
        t.events = vec![TraceEvent {
            kind: TraceKind::Exit { reason: 0x78 },
            time_ns: 91_000,
        }];
        let halt = t.account(92_000, 92_000, false);
        assert!(halt.halted);
        assert_eq!(halt.left, 90_900);
        t.events.clear();
        t.entering(93_000, 1_050);
        let again = t.account(99_000, 99_000, false);
        assert!(again.halted);
        assert_eq!(again.left, 90_900);
        // An entry ends the halt.
        t.entering(99_500, 1_050);
        t.events = vec![TraceEvent {
            kind: TraceKind::Entry,
            time_ns: 99_700,
        }];
        assert!(!t.account(99_900, 99_900, false).halted);
        assert_eq!(t.idle_since, None);
        // The guest ran: entered at 71 200, left at 80 000 (trace clock =
        // TSC here), less the invisible exit part.
        t.entering(71_000, 1_050);
        t.events = vec![
            TraceEvent {
                kind: TraceKind::Entry,
                time_ns: 71_200,
            },
            TraceEvent {
                kind: TraceKind::Exit { reason: 0x400 },
                time_ns: 80_000,
            },
        ];
        let timing = t.account(90_000, 90_000, false);
        assert_eq!(timing.left, 79_900);
        assert_eq!(timing.entry_path, 200);
    }

    /// A guest-mode stretch shorter than the calibrated invisible sides
    /// less the early margin: the exit is dated no sooner than the entry's
    /// invisible side after the entry, less that margin, both for the exit
    /// that returns to user space and for one the kernel handled.
    #[test]
    fn the_invisible_sides_fit_in_the_stretch_between_entry_and_exit() {
        let ev = |kind, time_ns| TraceEvent { kind, time_ns };
        let npf = TraceKind::Exit { reason: 0x400 };
        let mut t = timer();
        // Sides 100 + 50, margin 30: a stretch of 120 or more is left alone.
        t.entering(1_000, 1_050);
        t.events = vec![ev(TraceKind::Entry, 2_000), ev(npf, 2_120)];
        assert_eq!(t.account(3_000, 3_000, false).left, 2_020);
        assert_eq!(t.shortened_exits, 0);
        // 60: the exit side is cut to 60 - 50 + 30 = 40.
        t.entering(4_000, 1_050);
        t.events = vec![ev(TraceKind::Entry, 5_000), ev(npf, 5_060)];
        assert_eq!(t.account(6_000, 6_000, false).left, 5_020);
        assert_eq!(t.shortened_exits, 1);
        // An exit the kernel handled after a stretch of 70 hides its
        // window, the cut exit side (50) and the entry side (50); the
        // stretch after it is long, so the last exit keeps its 100.
        t.entering(7_000, 1_050);
        t.events = vec![
            ev(TraceKind::Entry, 8_000),
            ev(npf, 8_070),
            ev(TraceKind::Entry, 8_500),
            ev(npf, 18_000),
        ];
        let timing = t.account(19_000, 19_000, false);
        assert_eq!(timing.in_kernel, 430 + 50 + 50);
        assert_eq!(timing.left, 17_900);
        assert_eq!(t.shortened_exits, 2);
        // A stretch shorter than the entry side less the margin: nothing
        // of the exit side is left, the exit is dated at its tracepoint.
        t.entering(20_000, 1_050);
        t.events = vec![ev(TraceKind::Entry, 21_000), ev(npf, 21_010)];
        assert_eq!(t.account(22_000, 22_000, false).left, 21_010);
    }

    /// A host quicker than at calibration: the stretches between entry
    /// and exit shrink below the two sides, which follow them down
    /// together, and back up to the calibration once stretches are long.
    #[test]
    fn the_invisible_sides_follow_the_median_stretch_down_never_up() {
        let mut t = timer();
        // One KVM_RUN whose guest ran `stretch` before it exited at
        // `exit`: entered 1 000 after the decision at `exit` - 1 000 -
        // `stretch` - 1 000.
        let run = |t: &mut ExitTimer, exit: u64, stretch: u64| {
            let entry = exit - stretch;
            t.entering(entry - 1_000, 1_050);
            t.events = vec![
                TraceEvent {
                    kind: TraceKind::Entry,
                    time_ns: entry,
                },
                TraceEvent {
                    kind: TraceKind::Exit { reason: 0x400 },
                    time_ns: exit,
                },
            ];
            t.account(exit + 500, exit + 500, false)
        };
        // Seven stretches of 90 against sides of 100 + 50: as calibrated.
        for k in 1..=7 {
            run(&mut t, k * 10_000, 90);
        }
        assert_eq!((t.exit_side, t.entry_side), (100, 50));
        // The eighth sets them to 90 / 150 of the calibration (its own
        // exit side is cut to 90 + 30 - 50 = 70).
        assert_eq!(run(&mut t, 80_000, 90).left, 80_000 - 70);
        assert_eq!((t.exit_side, t.entry_side), (60, 30));
        assert_eq!(t.entry_delay(), t.entry_path.quantile(ENTRY_QUANTILE) + 30);
        let entry_margin = {
            let p = t.entry_path.quantile(ENTRY_QUANTILE);
            p - t.entry_floor.min().min(p)
        };
        assert_eq!(t.early_margin(), entry_margin + 60, "the sides moved by 60");
        // A stretch of 90 now fits the sides: dated 60 before its exit.
        assert_eq!(run(&mut t, 90_000, 90).left, 90_000 - 60);
        // Long stretches: once they are the median, the calibration again.
        for k in 10..33 {
            run(&mut t, k * 10_000, 5_000);
        }
        assert_eq!((t.exit_side, t.entry_side), (100, 50));
        assert_eq!(t.early_margin(), entry_margin);
    }

    #[test]
    fn idle_exits_are_told_apart_per_vendor() {
        assert!(is_idle_exit(0x78, true));
        assert!(!is_idle_exit(0x400, true)); // NPF
        assert!(is_idle_exit(12, false));
        assert!(!is_idle_exit(48, false)); // EPT violation
    }
}
