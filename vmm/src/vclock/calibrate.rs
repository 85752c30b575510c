//! Start-up calibration of what the VMM cannot see of an exit.
//!
//! A throw-away one-vCPU VM runs a bare-metal payload that times, with the
//! guest's own `rdtsc`, first N empty rdtsc pairs and then N loads from an
//! unmapped address (each one an MMIO exit answered here). For every exit
//! the tracepoints give the window the host kernel saw (kvm_exit ->
//! kvm_entry); what the guest saw beyond that window, less the empty pair's
//! own cost, is the invisible part: the world switch, and in a nested
//! hypervisor the outer one's emulation of VMRUN/#VMEXIT. Its median is the
//! constant the virtual clock adds to every exit it measures.
//!
//! The same VM, run with the virtual clock on and a modelled latency per
//! load ([`verify`]), shows how exactly the guest then sees that latency;
//! `cxlvmm vclock-probe` prints both.

use kvm_bindings::{kvm_userspace_memory_region, KVM_MAX_CPUID_ENTRIES};
use kvm_ioctls::{Kvm, VcpuExit, VcpuFd, VmFd};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend};

use super::coordinator::{Coordinator, Entry};
use super::exit_timer::{Calibration, ExitTimer};
use super::trace::{now_ns, VcpuTrace};
use super::tsc;
use crate::memory::GuestMemory;

/// The payload (see the module comment): N at 0x1ff000, empty pairs to
/// 0x200000.., timed loads from 0xd000_0000 to 0x400000.., then `out 0xf4`.
#[rustfmt::skip]
const PAYLOAD: &[u8] = &[
    0x48, 0x8b, 0x0c, 0x25, 0x00, 0xf0, 0x1f, 0x00, 0x48, 0xc7, 0xc7, 0x00, 0x00, 0x20, 0x00, 0x48,
    0xbe, 0x00, 0x00, 0x00, 0xd0, 0x00, 0x00, 0x00, 0x00, 0x0f, 0xae, 0xe8, 0x0f, 0x31, 0x48, 0xc1,
    0xe2, 0x20, 0x48, 0x09, 0xc2, 0x49, 0x89, 0xd0, 0x0f, 0xae, 0xe8, 0x0f, 0x31, 0x48, 0xc1, 0xe2,
    0x20, 0x48, 0x09, 0xd0, 0x4c, 0x29, 0xc0, 0x48, 0x89, 0x07, 0x48, 0x83, 0xc7, 0x08, 0x48, 0xff,
    0xc9, 0x75, 0xd6, 0x48, 0x8b, 0x0c, 0x25, 0x00, 0xf0, 0x1f, 0x00, 0x48, 0xc7, 0xc7, 0x00, 0x00,
    0x40, 0x00, 0x0f, 0xae, 0xe8, 0x0f, 0x31, 0x48, 0xc1, 0xe2, 0x20, 0x48, 0x09, 0xc2, 0x49, 0x89,
    0xd0, 0x48, 0x8b, 0x06, 0x0f, 0xae, 0xe8, 0x0f, 0x31, 0x48, 0xc1, 0xe2, 0x20, 0x48, 0x09, 0xd0,
    0x4c, 0x29, 0xc0, 0x48, 0x89, 0x07, 0x48, 0x83, 0xc7, 0x08, 0x48, 0xff, 0xc9, 0x75, 0xd3, 0x66,
    0xba, 0xf4, 0x00, 0xee, 0xf4, 0xeb, 0xfd,
];
const ENTRY: u64 = 0x10_0000;
const COUNT_AT: u64 = 0x1f_f000;
const EMPTY_AT: u64 = 0x20_0000;
const LOADS_AT: u64 = 0x40_0000;
const MEM_SIZE: usize = 8 << 20;
/// At most this many samples per phase fit between the two arrays.
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

/// Percentiles of a sample, in nanoseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct Spread {
    pub p10: f64,
    pub p50: f64,
    pub p90: f64,
    pub mean: f64,
}

impl Spread {
    pub fn of(v: &[f64]) -> Self {
        if v.is_empty() {
            return Self::default();
        }
        let mut s = v.to_vec();
        s.sort_by(f64::total_cmp);
        let at = |p: f64| s[((s.len() - 1) as f64 * p).round() as usize];
        Self {
            p10: at(0.1),
            p50: at(0.5),
            p90: at(0.9),
            mean: s.iter().sum::<f64>() / s.len() as f64,
        }
    }
}

/// What the calibration measured (all nanoseconds).
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct CalibrationReport {
    pub samples: u64,
    pub traced: bool,
    pub tsc_khz: u32,
    /// Guest-observed cost of one MMIO load exit (no hiding).
    pub exit_cost: Spread,
    /// Of that, the kernel's kvm_exit -> kvm_entry window.
    pub kernel_window: Spread,
    /// And the rest: what nobody on this host can see.
    pub invisible: Spread,
    /// Deciding to enter -> kvm_entry.
    pub entry_path: Spread,
    /// An empty rdtsc pair in the guest.
    pub empty_pair: Spread,
}

struct ProbeVm {
    _vm: VmFd,
    vcpu: VcpuFd,
    mem: GuestMemory,
    khz: u32,
}

fn probe_vm(kvm: &Kvm, samples: u64) -> Result<ProbeVm, CalibrationError> {
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
    let vcpu = vm.create_vcpu(0).map_err(kvm_err("create vCPU"))?;
    let cpuid = kvm
        .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
        .map_err(kvm_err("get CPUID"))?;
    vcpu.set_cpuid2(&cpuid).map_err(kvm_err("set CPUID"))?;
    crate::cpu::setup_long_mode(&vcpu, &mem).map_err(|e| CalibrationError::Setup(e.to_string()))?;
    crate::cpu::setup_regs(&vcpu, ENTRY, 0).map_err(|e| CalibrationError::Setup(e.to_string()))?;
    let khz = vcpu.get_tsc_khz().map_err(kvm_err("get TSC frequency"))?;
    Ok(ProbeVm {
        _vm: vm,
        vcpu,
        mem,
        khz,
    })
}

fn read_samples(mem: &GuestMemory, at: u64, n: u64, cycles_per_ns: f64) -> Vec<f64> {
    (0..n.min(MAX_SAMPLES))
        .filter_map(|i| mem.read_obj::<u64>(GuestAddress(at + 8 * i)).ok())
        .map(|c| c as f64 / cycles_per_ns)
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
    samples: u64,
    hooks: &mut dyn ProbeHooks,
) -> Result<ProbeVm, CalibrationError> {
    let mut p = probe_vm(kvm, samples)?;
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

/// Calibration: no hiding; per exit, the kernel window and entry path.
struct Measure {
    trace: Option<VcpuTrace>,
    events: Vec<super::trace::TraceEvent>,
    decided: u64,
    /// (kernel window, entry path) per exit, ns.
    windows: Vec<(f64, f64)>,
    /// kvm_exit time of the load being served.
    pending: Option<u64>,
}

impl ProbeHooks for Measure {
    fn before_run(&mut self, _: &VcpuFd) -> Result<(), CalibrationError> {
        self.decided = now_ns();
        Ok(())
    }

    fn after_load(&mut self) -> Result<(), CalibrationError> {
        use super::trace::TraceKind;
        let Some(t) = self.trace.as_mut() else {
            return Ok(());
        };
        self.events.clear();
        t.drain(&mut self.events);
        let first_entry = self
            .events
            .iter()
            .find(|e| e.kind == TraceKind::Entry)
            .map(|e| e.time_ns);
        if let (Some(exit), Some(entry)) = (self.pending, first_entry) {
            self.windows.push((
                entry.saturating_sub(exit) as f64,
                entry.saturating_sub(self.decided) as f64,
            ));
        }
        self.pending = self
            .events
            .iter()
            .rev()
            .find(|e| matches!(e.kind, TraceKind::Exit { .. }))
            .map(|e| e.time_ns);
        Ok(())
    }
}

/// Verification: the virtual clock on, each load charged `latency`.
struct Clocked {
    timer: ExitTimer,
    clock: Option<Coordinator>,
    latency: u64,
    applied: Option<u64>,
}

impl ProbeHooks for Clocked {
    fn before_run(&mut self, vcpu: &VcpuFd) -> Result<(), CalibrationError> {
        let c = self
            .clock
            .get_or_insert_with(|| Coordinator::new(1, tsc::offset(vcpu).unwrap_or(0)));
        let delay = self.timer.entry_delay();
        match c.enter(0, tsc::rdtsc(), delay) {
            Entry::Go { offset } => {
                if self.applied != Some(offset) {
                    tsc::set_offset(vcpu, offset)
                        .map_err(|e| CalibrationError::Setup(format!("TSC offset: {e}")))?;
                    self.applied = Some(offset);
                }
            }
            other => {
                return Err(CalibrationError::Setup(format!(
                    "a single vCPU was told {other:?}"
                )))
            }
        }
        self.timer.entering(delay);
        Ok(())
    }

    fn after_load(&mut self) -> Result<(), CalibrationError> {
        let t = self.timer.exited();
        if let Some(c) = self.clock.as_mut() {
            c.add_debt(0, t.in_kernel, t.entry_error);
            c.exited(0, t.left, Some(self.latency));
        }
        Ok(())
    }
}

/// Measures the invisible part of an exit on this host. `trace` says
/// whether the tracepoints can be used (they must be, for a useful answer).
pub fn calibrate(
    kvm: &Kvm,
    samples: u64,
) -> Result<(Calibration, CalibrationReport), CalibrationError> {
    // SAFETY: gettid has no arguments and cannot fail.
    let tid = unsafe { libc::gettid() };
    let mut m = Measure {
        trace: VcpuTrace::open(tid).ok(),
        events: Vec::new(),
        decided: 0,
        windows: Vec::new(),
        pending: None,
    };
    let p = run_probe(kvm, samples, &mut m)?;
    let (windows, trace) = (m.windows, m.trace);
    let cycles_per_ns = f64::from(p.khz) / 1e6;
    let n = samples.min(MAX_SAMPLES);
    let empty = read_samples(&p.mem, EMPTY_AT, n, cycles_per_ns);
    let loads = read_samples(&p.mem, LOADS_AT, n, cycles_per_ns);
    let empty_spread = Spread::of(&empty);
    // windows[k] belongs to load k (the window of load k ends when the
    // payload resumes for load k+1's rdtsc; the last one is never closed).
    let invisible: Vec<f64> = loads
        .iter()
        .zip(&windows)
        .map(|(g, (w, _))| g - w - empty_spread.p50)
        .collect();
    let report = CalibrationReport {
        samples: n,
        traced: trace.is_some(),
        tsc_khz: p.khz,
        exit_cost: Spread::of(&loads),
        kernel_window: Spread::of(&windows.iter().map(|w| w.0).collect::<Vec<_>>()),
        invisible: Spread::of(&invisible),
        entry_path: Spread::of(&windows.iter().map(|w| w.1).collect::<Vec<_>>()),
        empty_pair: empty_spread,
    };
    let invisible_ns = if report.traced {
        report.invisible.p50.max(0.0)
    } else {
        // Without tracepoints the whole exit is invisible.
        (report.exit_cost.p50 - empty_spread.p50).max(0.0)
    };
    let cal = Calibration {
        invisible_cycles: (invisible_ns * cycles_per_ns) as u64,
        entry_path_cycles: (report.entry_path.p50 * cycles_per_ns) as u64,
        cycles_per_ns,
    };
    Ok((cal, report))
}

/// Runs the probe with the virtual clock on, every load charged `latency_ns`;
/// returns what the guest measured per load (ns, empty pair subtracted).
pub fn verify(
    kvm: &Kvm,
    cal: Calibration,
    samples: u64,
    latency_ns: f64,
) -> Result<Vec<f64>, CalibrationError> {
    // SAFETY: gettid has no arguments and cannot fail.
    let tid = unsafe { libc::gettid() };
    let mut hooks = Clocked {
        timer: ExitTimer::new(VcpuTrace::open(tid).ok(), cal),
        clock: None,
        latency: (latency_ns * cal.cycles_per_ns) as u64,
        applied: None,
    };
    let p = run_probe(kvm, samples, &mut hooks)?;
    let n = samples.min(MAX_SAMPLES);
    let empty = Spread::of(&read_samples(&p.mem, EMPTY_AT, n, cal.cycles_per_ns));
    Ok(read_samples(&p.mem, LOADS_AT, n, cal.cycles_per_ns)
        .into_iter()
        .map(|g| g - empty.p50)
        .collect())
}
