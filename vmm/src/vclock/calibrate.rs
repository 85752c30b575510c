//! Start-up calibration of what the VMM cannot see of an exit.
//!
//! A throw-away one-vCPU VM runs a bare-metal payload that times, with the
//! guest's own `rdtsc`, first N empty rdtsc pairs and then N loads from an
//! unmapped address (each one an MMIO exit answered here), keeping the
//! guest TSC just before and just after each load. Since the guest TSC is
//! the host TSC plus a known offset, each exit splits into three parts on
//! one time line: from the guest's last instruction to the `kvm_exit`
//! tracepoint (the exit side, invisible here), the kernel's window up to
//! `kvm_entry` (visible per exit), and from `kvm_entry` to the guest's next
//! instruction (the entry side, invisible). The invisible parts are the
//! hardware world switch and, in a nested hypervisor, the outer one's
//! emulation of VMRUN/#VMEXIT; their medians are the constants the virtual
//! clock adds to what it measures of every exit.
//!
//! The same VM, run with the virtual clock on and a modelled latency per
//! load ([`verify`]), shows how exactly the guest then sees that latency.

use kvm_bindings::{kvm_userspace_memory_region, CpuId};
use kvm_ioctls::{Kvm, VcpuExit, VcpuFd, VmFd};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend};

use super::exit_timer::Calibration;
use super::shared::{SharedClock, VcpuClock};
use super::trace::{now_ns, TraceKind, VcpuTrace};
use super::tsc;
use crate::memory::GuestMemory;

/// The payload (see the module comment): N at 0x1ff000, empty pair
/// durations to 0x200000.., (start, end) guest TSC of each timed load from
/// 0xd000_0000 to 0x400000.., then `out 0xf4`.
#[rustfmt::skip]
const PAYLOAD: &[u8] = &[
    0x48, 0x8b, 0x0c, 0x25, 0x00, 0xf0, 0x1f, 0x00, 0x48, 0xc7, 0xc7, 0x00, 0x00, 0x20, 0x00, 0x48,
    0xbe, 0x00, 0x00, 0x00, 0xd0, 0x00, 0x00, 0x00, 0x00, 0x0f, 0xae, 0xe8, 0x0f, 0x31, 0x48, 0xc1,
    0xe2, 0x20, 0x48, 0x09, 0xc2, 0x49, 0x89, 0xd0, 0x0f, 0xae, 0xe8, 0x0f, 0x31, 0x48, 0xc1, 0xe2,
    0x20, 0x48, 0x09, 0xd0, 0x4c, 0x29, 0xc0, 0x48, 0x89, 0x07, 0x48, 0x83, 0xc7, 0x08, 0x48, 0xff,
    0xc9, 0x75, 0xd6, 0x48, 0x8b, 0x0c, 0x25, 0x00, 0xf0, 0x1f, 0x00, 0x48, 0xc7, 0xc7, 0x00, 0x00,
    0x40, 0x00, 0x0f, 0xae, 0xe8, 0x0f, 0x31, 0x48, 0xc1, 0xe2, 0x20, 0x48, 0x09, 0xc2, 0x49, 0x89,
    0xd0, 0x48, 0x8b, 0x06, 0x0f, 0xae, 0xe8, 0x0f, 0x31, 0x48, 0xc1, 0xe2, 0x20, 0x48, 0x09, 0xd0,
    0x4c, 0x89, 0x07, 0x48, 0x89, 0x47, 0x08, 0x48, 0x83, 0xc7, 0x10, 0x48, 0xff, 0xc9, 0x75, 0xd2,
    0x66, 0xba, 0xf4, 0x00, 0xee, 0xf4, 0xeb, 0xfd,
];
const ENTRY: u64 = 0x10_0000;
const COUNT_AT: u64 = 0x1f_f000;
const EMPTY_AT: u64 = 0x20_0000;
const LOADS_AT: u64 = 0x40_0000;
const MEM_SIZE: usize = 8 << 20;
/// At most this many samples per phase fit in the arrays.
pub const MAX_SAMPLES: u64 = (LOADS_AT - EMPTY_AT) / 8;

#[derive(Debug, thiserror::Error)]
pub enum CalibrationError {
    #[error("calibration VM: {what}: {source}")]
    Kvm {
        what: &'static str,
        source: kvm_ioctls::Error,
    },
    #[error("calibration VM: {0}")]
    Setup(String),
    #[error("calibration VM: unexpected exit {0}")]
    Exit(String),
}

fn kvm_err(what: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> CalibrationError {
    move |source| CalibrationError::Kvm { what, source }
}

/// Percentiles of a sample.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct Spread {
    pub min: f64,
    pub p1: f64,
    pub p10: f64,
    pub p50: f64,
    pub p90: f64,
    pub mean: f64,
}

impl Spread {
    /// How far below the median the sample's low tail reaches: down to the
    /// 1st percentile and as far again as the 10th lies above it. Not the
    /// minimum: one calibration in the rig had an entry side of -31.7 µs
    /// among 4000 of 10-12 µs. Not the 1st percentile alone: with the
    /// margin at that, 2-3 of 38 000 per-load samples still stepped back
    /// (`docs/timed-mode.md`, "Never before its own last read").
    pub fn early_tail(&self) -> f64 {
        (self.p50 - self.p1 + (self.p10 - self.p1)).max(0.0)
    }

    pub fn of(v: &[f64]) -> Self {
        if v.is_empty() {
            return Self::default();
        }
        let mut s = v.to_vec();
        s.sort_by(f64::total_cmp);
        let at = |p: f64| s[((s.len() - 1) as f64 * p).round() as usize];
        Self {
            min: s[0],
            p1: at(0.01),
            p10: at(0.1),
            p50: at(0.5),
            p90: at(0.9),
            mean: s.iter().sum::<f64>() / s.len() as f64,
        }
    }
}

/// What the calibration measured (nanoseconds).
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct CalibrationReport {
    pub samples: u64,
    /// Whether the exit tracepoints could be read (without them the whole
    /// exit counts as invisible and in-kernel exits cannot be hidden).
    pub traced: bool,
    pub tsc_khz: u32,
    /// Guest-observed cost of one MMIO load exit (no hiding).
    pub exit_cost: Spread,
    /// The kernel's kvm_exit -> kvm_entry window.
    pub kernel_window: Spread,
    /// Guest's last instruction -> kvm_exit.
    pub exit_side: Spread,
    /// kvm_entry -> guest's next instruction.
    pub entry_side: Spread,
    /// Deciding to enter (before the offset is set) -> kvm_entry.
    pub entry_path: Spread,
    /// An empty rdtsc pair in the guest.
    pub empty_pair: Spread,
}

impl CalibrationReport {
    /// What the virtual clock adds to every exit, from this report.
    pub fn calibration(&self, cycles_per_ns: f64) -> Calibration {
        let cycles = |v: f64| (v.max(0.0) * cycles_per_ns) as u64;
        if !self.traced {
            // Without tracepoints the exit is dated when KVM_RUN returns and
            // nothing of it is hidden: a guess at the part before that moment
            // or after the entry decision could make the clock step back
            // whenever a real exit is quicker than the guess. The guest then
            // sees each exit's cost on top of the modelled latency, never less.
            return Calibration {
                exit_invisible_cycles: 0,
                entry_invisible_cycles: 0,
                entry_path_cycles: 0,
                invisible_early_cycles: 0,
                cycles_per_ns,
            };
        }
        Calibration {
            // The probe's rdtsc pair spans its own timing instructions too
            // (what an empty pair costs), the first of them on the exit
            // side. They are the guest's, not the exit's: hidden with it, a
            // guest that takes the empty pair off (the probe's `verify`,
            // `cxlvmm-lat`) saw the model less that pair, -5 ns in an
            // instruction-counted rig (docs/performance.md).
            exit_invisible_cycles: cycles(self.exit_side.p50 - self.empty_pair.p50),
            entry_invisible_cycles: cycles(self.entry_side.p50),
            entry_path_cycles: cycles(self.entry_path.p50),
            invisible_early_cycles: cycles(self.invisible_early_ns()),
            cycles_per_ns,
        }
    }

    /// How much sooner than their medians the invisible exit and entry
    /// sides may together end (`Spread::early_tail` of each).
    pub fn invisible_early_ns(&self) -> f64 {
        self.exit_side.early_tail() + self.entry_side.early_tail()
    }
}

struct ProbeVm {
    _vm: VmFd,
    vcpu: VcpuFd,
    mem: GuestMemory,
    khz: u32,
}

fn probe_vm(kvm: &Kvm, cpuid: &CpuId, samples: u64) -> Result<ProbeVm, CalibrationError> {
    let vm = kvm.create_vm().map_err(kvm_err("create VM"))?;
    let mem = GuestMemory::from_ranges(&[(GuestAddress(0), MEM_SIZE)])
        .map_err(|e| CalibrationError::Setup(e.to_string()))?;
    let host = mem
        .get_host_address(GuestAddress(0))
        .map_err(|e| CalibrationError::Setup(e.to_string()))?;
    let region = kvm_userspace_memory_region {
        slot: 0,
        guest_phys_addr: 0,
        memory_size: MEM_SIZE as u64,
        userspace_addr: host as u64,
        flags: 0,
    };
    // SAFETY: `mem` is a live mapping of MEM_SIZE bytes that ProbeVm keeps
    // alive for as long as the VM exists; it is the VM's only slot.
    unsafe { vm.set_user_memory_region(region) }.map_err(kvm_err("add memory slot"))?;
    let w = |e: vm_memory::GuestMemoryError| CalibrationError::Setup(e.to_string());
    mem.write_slice(PAYLOAD, GuestAddress(ENTRY)).map_err(w)?;
    mem.write_obj(samples.min(MAX_SAMPLES), GuestAddress(COUNT_AT))
        .map_err(w)?;
    // Like every cxlvmm VM (vm/builder.rs), an in-kernel LAPIC: KVM does
    // work for it on each entry and exit outside the tracepoints' window
    // (arch/x86/kvm/svm/svm.c, svm_vcpu_run(): sync_lapic_to_cr8(),
    // kvm_wait_lapic_expire(), sync_cr8_to_lapic()).
    vm.create_irq_chip()
        .map_err(kvm_err("create in-kernel irqchip"))?;
    let vcpu = vm.create_vcpu(0).map_err(kvm_err("create vCPU"))?;
    vcpu.set_cpuid2(cpuid).map_err(kvm_err("set CPUID"))?;
    let setup = |e: crate::cpu::CpuError| CalibrationError::Setup(e.to_string());
    crate::cpu::setup_long_mode(&vcpu, &mem).map_err(setup)?;
    if let Err(e) = xsave_like_linux(&vcpu, cpuid) {
        // Still a probe, only less like the guest: its constants then miss
        // KVM's XSAVE swap (tens of ns), which is no reason not to start.
        log::warn!("calibration probe without the guest's XSAVE state: {e}");
    }
    crate::cpu::setup_regs(&vcpu, ENTRY, 0).map_err(setup)?;
    let khz = vcpu.get_tsc_khz().map_err(kvm_err("get TSC frequency"))?;
    Ok(ProbeVm {
        _vm: vm,
        vcpu,
        mem,
        khz,
    })
}

/// CPUID.1:ECX: XSAVE.
const CPUID1_ECX_XSAVE: u32 = 1 << 26;
/// CR4.OSXSAVE and OSFXSR/OSXMMEXCPT.
const CR4_OS_SSE_XSAVE: u64 = (1 << 9) | (1 << 10) | (1 << 18);
/// The XCR0 components a Linux guest enables wherever CPUID.0xD.0 lists
/// them (arch/x86/kernel/fpu/xstate.c, XFEATURE_MASK_USER_SUPPORTED): x87,
/// SSE, YMM, the three AVX-512 parts, PKRU, AMX tile config and data.
const LINUX_XCR0: u64 = 0b11 | (1 << 2) | (0b111 << 5) | (1 << 9) | (0b11 << 17);

/// The probe's XSAVE state as the Linux guest's that runs on `cpuid`: KVM
/// swaps XCR0 (and XSS, PKRU) on every entry and exit of a guest with
/// CR4.OSXSAVE whose values differ from the host's (arch/x86/kvm/x86.c,
/// kvm_load_guest_xsave_state() and kvm_load_host_xsave_state()), outside
/// the tracepoints' window. Measured: with it the hidden sides grew 59 ns
/// in an instruction-counted rig (docs/performance.md). A CPUID without
/// XSAVE or without its leaf 0xD leaves the probe as it was.
fn xsave_like_linux(vcpu: &VcpuFd, cpuid: &CpuId) -> Result<(), CalibrationError> {
    let entries = cpuid.as_slice();
    if !entries
        .iter()
        .any(|e| e.function == 1 && e.ecx & CPUID1_ECX_XSAVE != 0)
    {
        return Ok(());
    }
    let Some(xstate) = entries.iter().find(|e| e.function == 0xd && e.index == 0) else {
        return Ok(());
    };
    let mut sregs = vcpu.get_sregs().map_err(kvm_err("get sregs"))?;
    sregs.cr4 |= CR4_OS_SSE_XSAVE;
    vcpu.set_sregs(&sregs).map_err(kvm_err("set CR4.OSXSAVE"))?;
    let mut xcrs = kvm_bindings::kvm_xcrs {
        nr_xcrs: 1,
        ..Default::default()
    };
    xcrs.xcrs[0].xcr = 0;
    xcrs.xcrs[0].value = linux_xcr0(xstate.eax, xstate.edx);
    vcpu.set_xcrs(&xcrs).map_err(kvm_err("set XCR0"))
}

/// XCR0 as Linux sets it from CPUID.0xD.0:EAX/EDX (x87 and SSE always).
fn linux_xcr0(eax: u32, edx: u32) -> u64 {
    ((u64::from(edx) << 32 | u64::from(eax)) & LINUX_XCR0) | 0b11
}

fn read_u64s(mem: &GuestMemory, at: u64, n: u64) -> Vec<u64> {
    (0..n)
        .filter_map(|i| mem.read_obj::<u64>(GuestAddress(at + 8 * i)).ok())
        .collect()
}

/// What happens around each KVM_RUN of the probe.
trait ProbeHooks {
    fn before_run(&mut self, vcpu: &VcpuFd) -> Result<(), CalibrationError>;
    /// After each MMIO exit (a load) was answered.
    fn after_load(&mut self) -> Result<(), CalibrationError>;
}

/// Runs the probe VM to its end. Returns the VM for reading results.
fn run_probe(
    kvm: &Kvm,
    cpuid: &CpuId,
    samples: u64,
    hooks: &mut dyn ProbeHooks,
) -> Result<ProbeVm, CalibrationError> {
    let mut p = probe_vm(kvm, cpuid, samples)?;
    loop {
        hooks.before_run(&p.vcpu)?;
        match p.vcpu.run().map_err(kvm_err("KVM_RUN"))? {
            VcpuExit::MmioRead(_, data) => data.fill(0),
            VcpuExit::IoOut(0xf4, _) => break,
            other => return Err(CalibrationError::Exit(format!("{other:?}"))),
        }
        hooks.after_load()?;
    }
    Ok(p)
}

/// Host TSC of a moment given in trace nanoseconds, through a (ns, tsc)
/// pair read together a moment ago.
fn tsc_at(ns: u64, reference: (u64, u64), cycles_per_ns: f64) -> u64 {
    let (ref_ns, ref_tsc) = reference;
    let back = ref_ns.saturating_sub(ns) as f64 * cycles_per_ns;
    ref_tsc.saturating_sub(back as u64)
}

/// Calibration: no hiding; per exit, kvm_exit and kvm_entry in host TSC.
struct Measure {
    trace: Option<VcpuTrace>,
    events: Vec<super::trace::TraceEvent>,
    cycles_per_ns: f64,
    /// Host TSC when we decided to enter.
    decided: u64,
    /// Per exit: (kvm_exit, kvm_entry, decided) in host TSC.
    exits: Vec<(u64, u64, u64)>,
    /// kvm_exit of the load being served.
    pending: Option<u64>,
}

impl ProbeHooks for Measure {
    fn before_run(&mut self, _: &VcpuFd) -> Result<(), CalibrationError> {
        self.decided = tsc::rdtsc();
        Ok(())
    }

    fn after_load(&mut self) -> Result<(), CalibrationError> {
        let Some(t) = self.trace.as_mut() else {
            return Ok(());
        };
        let reference = (now_ns(), tsc::rdtsc());
        self.events.clear();
        t.drain(&mut self.events);
        let to_tsc = |ns| tsc_at(ns, reference, self.cycles_per_ns);
        let first_entry = self.events.iter().find(|e| e.kind == TraceKind::Entry);
        // `decided` is from the before_run that followed the pending exit.
        if let (Some(exit), Some(entry)) = (self.pending, first_entry) {
            self.exits.push((exit, to_tsc(entry.time_ns), self.decided));
        }
        self.pending = self
            .events
            .iter()
            .rev()
            .find(|e| matches!(e.kind, TraceKind::Exit { .. }))
            .map(|e| to_tsc(e.time_ns));
        Ok(())
    }
}

/// Measures the invisible parts of an exit on this host, in a probe VM
/// whose vCPU has `cpuid`: the CPUID of the guest the clock is for, since
/// what KVM does outside the tracepoints depends on the guest's features
/// (`xsave_like_linux`).
pub fn calibrate(
    kvm: &Kvm,
    cpuid: &CpuId,
    samples: u64,
) -> Result<(Calibration, CalibrationReport), CalibrationError> {
    // SAFETY: gettid has no arguments and cannot fail.
    let tid = unsafe { libc::gettid() };
    let mut m = Measure {
        trace: VcpuTrace::open(tid).ok(),
        events: Vec::new(),
        cycles_per_ns: 1.0,
        decided: 0,
        exits: Vec::new(),
        pending: None,
    };
    // The payload starts after the first KVM_RUN; the offset is fixed from
    // creation on (guest TSC = host TSC + offset).
    let probe = probe_vm(kvm, cpuid, 1)?;
    m.cycles_per_ns = f64::from(probe.khz) / 1e6;
    drop(probe);
    let mut offset = None;
    struct WithOffset<'a>(&'a mut Measure, &'a mut Option<u64>);
    impl ProbeHooks for WithOffset<'_> {
        fn before_run(&mut self, vcpu: &VcpuFd) -> Result<(), CalibrationError> {
            if self.1.is_none() {
                *self.1 = Some(
                    tsc::offset(vcpu)
                        .map_err(|e| CalibrationError::Setup(format!("TSC offset: {e}")))?,
                );
            }
            self.0.before_run(vcpu)
        }
        fn after_load(&mut self) -> Result<(), CalibrationError> {
            self.0.after_load()
        }
    }
    let p = run_probe(kvm, cpuid, samples, &mut WithOffset(&mut m, &mut offset))?;
    let offset = offset.unwrap_or(0);
    let per_ns = m.cycles_per_ns;
    let ns = |c: f64| c / per_ns;
    let n = samples.min(MAX_SAMPLES);
    let empty: Vec<f64> = read_u64s(&p.mem, EMPTY_AT, n)
        .into_iter()
        .map(|c| ns(c as f64))
        .collect();
    let pairs = read_u64s(&p.mem, LOADS_AT, 2 * n);
    let loads: Vec<(u64, u64)> = pairs.chunks_exact(2).map(|c| (c[0], c[1])).collect();
    let host = |guest: u64| guest.wrapping_sub(offset);
    // exits[k] belongs to load k (its window closes when load k+1 exits;
    // the last one is never closed).
    let mut exit_side = Vec::new();
    let mut entry_side = Vec::new();
    let mut windows = Vec::new();
    let mut paths = Vec::new();
    for (&(start, end), &(exit, entry, decided)) in loads.iter().zip(&m.exits) {
        exit_side.push(ns(exit as f64 - host(start) as f64));
        entry_side.push(ns(host(end) as f64 - entry as f64));
        windows.push(ns(entry as f64 - exit as f64));
        paths.push(ns(entry as f64 - decided as f64));
    }
    let report = CalibrationReport {
        samples: n,
        traced: m.trace.is_some(),
        tsc_khz: p.khz,
        exit_cost: Spread::of(
            &loads
                .iter()
                .map(|(s, e)| ns(e.wrapping_sub(*s) as f64))
                .collect::<Vec<_>>(),
        ),
        kernel_window: Spread::of(&windows),
        exit_side: Spread::of(&exit_side),
        entry_side: Spread::of(&entry_side),
        entry_path: Spread::of(&paths),
        empty_pair: Spread::of(&empty),
    };
    let cal = report.calibration(per_ns);
    Ok((cal, report))
}

/// Verification: the virtual clock on, each load charged `latency`,
/// through the same [`SharedClock`]/[`VcpuClock`] the vCPU threads use.
struct Clocked {
    cal: Calibration,
    khz: u32,
    clock: Option<VcpuClock>,
    latency_ps: u64,
    stop: std::sync::atomic::AtomicBool,
    diag: VerifyDiagnostics,
}

/// What the virtual clock did during [`verify`].
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct VerifyDiagnostics {
    pub exits_in_kernel: u64,
    pub in_kernel_reasons: std::collections::BTreeMap<String, u64>,
    /// Entry paths and their prediction errors, ns.
    pub entry_path: Spread,
    pub entry_error: Spread,
    #[serde(skip)]
    pub paths: Vec<f64>,
    #[serde(skip)]
    pub errors: Vec<f64>,
    pub final_debt_ns: u64,
    /// Loads whose second guest TSC read below the first: the clock
    /// stepped back across the exit.
    pub backward_loads: u64,
    /// Exits whose invisible side was cut to fit the stretch before them
    /// (`ExitTimer`): the calibration hid more than the host now takes.
    pub shortened_exits: u64,
}

impl ProbeHooks for Clocked {
    fn before_run(&mut self, vcpu: &VcpuFd) -> Result<(), CalibrationError> {
        if self.clock.is_none() {
            let offset = tsc::offset(vcpu)
                .map_err(|e| CalibrationError::Setup(format!("TSC offset: {e}")))?;
            let shared = SharedClock::new(1, offset, self.khz, self.cal, 0);
            self.clock = Some(shared.vcpu(0));
        }
        if let Some(c) = self.clock.as_mut() {
            c.before_run(vcpu, &self.stop)
                .map_err(|e| CalibrationError::Setup(format!("virtual clock: {e}")))?;
        }
        Ok(())
    }

    fn after_load(&mut self) -> Result<(), CalibrationError> {
        let Some(c) = self.clock.as_mut() else {
            return Ok(());
        };
        let (t, _) = c.left();
        self.diag.exits_in_kernel += u64::from(t.in_kernel_exits);
        if t.in_kernel_exits > 0 {
            *self
                .diag
                .in_kernel_reasons
                .entry(format!("{:#x}", t.last_in_kernel_reason))
                .or_default() += u64::from(t.in_kernel_exits);
        }
        let per_ns = self.cal.cycles_per_ns;
        self.diag.paths.push(t.entry_path as f64 / per_ns);
        self.diag.errors.push(t.entry_error as f64 / per_ns);
        c.exited(t, Some(self.latency_ps));
        Ok(())
    }
}

/// Runs the probe with the virtual clock on, every load charged `latency_ns`;
/// returns what the guest measured per load (ns, empty pair subtracted).
pub fn verify(
    kvm: &Kvm,
    cpuid: &CpuId,
    cal: Calibration,
    samples: u64,
    latency_ns: f64,
) -> Result<(Vec<f64>, VerifyDiagnostics), CalibrationError> {
    let khz = (cal.cycles_per_ns * 1e6).round() as u32;
    let mut hooks = Clocked {
        cal,
        khz,
        clock: None,
        latency_ps: (latency_ns * 1000.0) as u64,
        stop: Default::default(),
        diag: VerifyDiagnostics::default(),
    };
    let p = run_probe(kvm, cpuid, samples, &mut hooks)?;
    let mut diag = hooks.diag;
    let stats = hooks.clock.as_ref().map(|c| c.stats()).unwrap_or_default();
    diag.final_debt_ns = stats.debt_ns;
    diag.shortened_exits = stats.shortened_exits;
    diag.entry_path = Spread::of(&diag.paths);
    diag.entry_error = Spread::of(&diag.errors);
    let n = samples.min(MAX_SAMPLES);
    let ns = |c: u64| c as f64 / cal.cycles_per_ns;
    let empty = Spread::of(
        &read_u64s(&p.mem, EMPTY_AT, n)
            .into_iter()
            .map(ns)
            .collect::<Vec<_>>(),
    );
    let pairs = read_u64s(&p.mem, LOADS_AT, 2 * n);
    diag.backward_loads = pairs.chunks_exact(2).filter(|c| c[1] < c[0]).count() as u64;
    let seen = pairs
        .chunks_exact(2)
        .map(|c| c[1].wrapping_sub(c[0]) as i64 as f64 / cal.cycles_per_ns - empty.p50)
        .collect();
    Ok((seen, diag))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flat(v: f64) -> Spread {
        Spread {
            min: v,
            p1: v,
            p10: v,
            p50: v,
            p90: v,
            mean: v,
        }
    }

    #[test]
    fn xcr0_is_what_linux_enables_of_what_cpuid_lists() {
        // x87, SSE, YMM, the AVX-512 three, PKRU; MPX (3, 4) and a
        // supervisor-only bit (8) are left out.
        assert_eq!(linux_xcr0(0x2ff, 0), 0x2e7);
        // The vector state hidden (cpuid_vector): x87 and SSE.
        assert_eq!(linux_xcr0(0x3, 0), 0x3);
        // AMX tile config and data sit above bit 16; x87/SSE always.
        assert_eq!(linux_xcr0(0x6_0000, 0), 0x6_0003);
    }

    #[test]
    fn the_guests_own_timing_instructions_are_not_hidden_with_the_exit() {
        let report = CalibrationReport {
            traced: true,
            exit_side: flat(946.0),
            entry_side: flat(804.0),
            entry_path: flat(2526.0),
            empty_pair: flat(5.0),
            ..Default::default()
        };
        let cal = report.calibration(2.0);
        assert_eq!(cal.exit_invisible_cycles, 2 * 941);
        assert_eq!(cal.entry_invisible_cycles, 2 * 804);
        assert_eq!(cal.entry_path_cycles, 2 * 2526);
        assert_eq!(
            cal.invisible_early_cycles, 0,
            "flat spreads have no early tail"
        );
        // An empty pair longer than the exit side hides nothing, never less.
        let slow_timer = CalibrationReport {
            empty_pair: flat(2000.0),
            ..report.clone()
        };
        assert_eq!(slow_timer.calibration(2.0).exit_invisible_cycles, 0);
        // Untraced: nothing is hidden at all.
        let untraced = CalibrationReport {
            traced: false,
            ..report
        };
        let cal = untraced.calibration(2.0);
        assert_eq!(
            (
                cal.exit_invisible_cycles,
                cal.entry_invisible_cycles,
                cal.entry_path_cycles
            ),
            (0, 0, 0)
        );
    }

    #[test]
    fn the_early_tail_reaches_past_the_1st_percentile_but_not_to_an_outlier() {
        // 10.0-12.0 in steps of 0.001, and one wild sample far below.
        let mut v: Vec<f64> = (0..2001).map(|i| 10.0 + f64::from(i) / 1000.0).collect();
        v[0] = -30.0;
        let s = Spread::of(&v);
        assert_eq!(s.min, -30.0);
        assert!((s.p1 - 10.02).abs() < 1e-9, "{}", s.p1);
        assert!((s.p10 - 10.2).abs() < 1e-9, "{}", s.p10);
        assert!((s.p50 - 11.0).abs() < 1e-9, "{}", s.p50);
        // Median - p1 = 0.98, and p10 - p1 = 0.18 more.
        assert!((s.early_tail() - 1.16).abs() < 1e-9, "{}", s.early_tail());
        assert_eq!(Spread::default().early_tail(), 0.0);
    }
}
