//! One thread per vCPU: run it, dispatch its exits to the buses, stop when
//! asked.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use devices::{Bus, ExitReason, ExitRequest};
use kvm_ioctls::{VcpuExit, VcpuFd};
use vm_memory::Bytes;
use vmm_sys_util::signal::{register_signal_handler, SIGRTMIN};

use crate::timed::{Access, TimedMemory};
use crate::vclock::shared::{SharedClock, VcpuClock};

/// The signal that kicks a vCPU thread out of KVM_RUN.
pub fn kick_signal() -> i32 {
    SIGRTMIN()
}

/// Installs a no-op handler for the kick signal (its only job is to make
/// KVM_RUN return EINTR).
pub fn install_kick_handler() -> std::io::Result<()> {
    extern "C" fn noop(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {}
    register_signal_handler(kick_signal(), noop)
        .map_err(|e| std::io::Error::from_raw_os_error(e.errno()))
}

/// What every vCPU thread shares.
#[derive(Clone)]
pub struct VcpuShared {
    pub pio: Arc<Bus>,
    pub mmio: Arc<Bus>,
    /// The region map, to name the region a failed emulation touched.
    pub regions: Option<Arc<crate::cxl::regions::RegionMapper<crate::cxl::regions::KvmSlots>>>,
    pub exit: ExitRequest,
    pub stop: Arc<AtomicBool>,
    /// The first fatal error's description, shown by the VMM on exit.
    pub fatal: Arc<Mutex<Option<String>>>,
    /// Guest RAM, read only to show a hung guest's stack.
    pub mem: crate::memory::GuestMemory,
    /// Set when a vCPU triple-faulted: the others then show their state
    /// (KVM has already reset the faulting one's registers).
    pub triple_fault: Arc<AtomicBool>,
    /// Timed windows: their accesses are served and timed on the vCPU
    /// thread, before the MMIO bus is asked.
    pub timed: Option<Arc<TimedMemory>>,
    /// The CXL windows (base, size) when some of their memory is served by
    /// exits (trapped or timed): 8-byte accesses inside them are checked
    /// for KVM's `call *m64` slip (`indirect_call`), whose misplaced
    /// access always lands at the served address. Empty otherwise.
    pub served_windows: Arc<[(u64, u64)]>,
    /// The virtual clock every vCPU runs on when any window is timed.
    pub clock: Option<Arc<SharedClock>>,
    /// The VM thread's requests that each vCPU check its own state
    /// (`vcpu_watch`).
    pub state_checks: Arc<crate::vcpu_watch::CheckRequests>,
    /// COM1's transmit writes KVM coalesced, fed to the UART on each port
    /// I/O exit (`console_ring`); None: each is an exit of its own.
    pub console_ring: Option<Arc<crate::console_ring::ConsoleRing>>,
}

impl VcpuShared {
    /// Whether `addr` lies in a window whose memory may be served by exits.
    fn served(&self, addr: u64) -> bool {
        self.served_windows
            .iter()
            .any(|&(base, size)| addr.wrapping_sub(base) < size)
    }

    pub fn fail(&self, msg: String) {
        let mut slot = self.fatal.lock().unwrap_or_else(|e| e.into_inner());
        slot.get_or_insert(msg);
        drop(slot);
        self.exit.request(ExitReason::Fatal);
    }
}

/// `KVM_INTERNAL_ERROR_EMULATION`: KVM could not emulate an instruction.
const INTERNAL_ERROR_EMULATION: u32 = 1;

pub const EMULATION_HINT: &str =
    "this host's KVM cannot run the guest's code (instruction emulation failed): \
     a paravirtual /dev/kvm without VT-x/AMD-V cannot boot a stock kernel; \
     run cxlvmm inside the nested rig instead: scripts/rig -- cxlvmm run ...";

pub fn spawn(index: u8, mut vcpu: VcpuFd, shared: VcpuShared) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("vcpu{index}"))
        .spawn(move || {
            // The virtual clock's exit trace is opened on this thread (its
            // tracepoint ids are read from tracefs) before the filter forbids
            // opening files.
            let clock = shared.clock.as_ref().map(|c| c.vcpu(usize::from(index)));
            if let Err(e) = crate::seccomp::enter(crate::seccomp::ThreadRole::Vcpu) {
                shared.fail(e.to_string());
                return;
            }
            run_loop(index, &mut vcpu, &shared, clock);
            // The console bytes written since the last port I/O exit.
            if let Some(ring) = &shared.console_ring {
                ring.drain(&shared.pio);
            }
            let crashed = shared.triple_fault.load(Ordering::Acquire);
            if shared.exit.reason() == Some(ExitReason::Timeout) || crashed {
                eprintln!("cxlvmm: {}", describe(index, &vcpu));
                eprintln!("cxlvmm: {}", kernel_stack(index, &vcpu, &shared.mem));
            }
        })
}

/// One line of vCPU state, for diagnosing a guest that hangs.
fn describe(index: u8, vcpu: &VcpuFd) -> String {
    match (vcpu.get_regs(), vcpu.get_sregs(), vcpu.get_mp_state()) {
        (Ok(r), Ok(s), Ok(mp)) => format!(
            "vcpu{index}: rip={:#x} rsp={:#x} rflags={:#x} rax={:#x} cr0={:#x} cr3={:#x} cs={:#x} mp_state={}",
            r.rip, r.rsp, r.rflags, r.rax, s.cr0, s.cr3, s.cs.selector, mp.mp_state
        ),
        _ => format!("vcpu{index}: state unavailable"),
    }
}

/// The kernel-text words on a vCPU's stack (a rough backtrace; with the
/// guest booted `nokaslr`, scripts/guest-symbols names them).
fn kernel_stack(index: u8, vcpu: &VcpuFd, mem: &crate::memory::GuestMemory) -> String {
    let (Ok(r), Ok(s)) = (vcpu.get_regs(), vcpu.get_sregs()) else {
        return format!("vcpu{index} stack: state unavailable");
    };
    let words = crate::guest_stack::kernel_text_words(mem, s.cr3, s.cr4, r.rsp, 512);
    let list: Vec<String> = words.iter().take(24).map(|w| format!("{w:#x}")).collect();
    format!("vcpu{index} stack: {}", list.join(" "))
}

/// Serves an access to a timed window; the latency the guest must see, in
/// ps (None: not a timed address, or no clock to charge).
fn timed_access(
    shared: &VcpuShared,
    addr: u64,
    access: Access<'_>,
    issue_ps: Option<u64>,
) -> Option<u64> {
    let timed = shared.timed.as_ref()?;
    let issue_ps = issue_ps?;
    let w = timed.window_of(addr)?;
    Some(timed.access(w, addr, access, issue_ps))
}

/// The MMIO exit path for an instruction cxlvmm completes itself: timed
/// windows first, then the MMIO bus, then guest RAM (an operand may
/// straddle into it); nothing there reads as all ones.
struct ExitPath<'a> {
    shared: &'a VcpuShared,
    /// When the next access issues, in the virtual clock's ps.
    issue_ps: Option<u64>,
}

impl ExitPath<'_> {
    fn charged(&mut self, latency: Option<u64>) -> Option<u64> {
        if let (Some(t), Some(l)) = (self.issue_ps.as_mut(), latency) {
            *t += l;
        }
        latency
    }
}

impl crate::vector_mmio::PhysicalAccess for ExitPath<'_> {
    fn read(&mut self, gpa: u64, buf: &mut [u8]) -> Option<u64> {
        let l = timed_access(self.shared, gpa, Access::Read(buf), self.issue_ps);
        if l.is_none()
            && !self.shared.mmio.read(gpa, buf)
            && self
                .shared
                .mem
                .read_slice(buf, vm_memory::GuestAddress(gpa))
                .is_err()
        {
            buf.fill(0xff);
        }
        self.charged(l)
    }

    fn write(&mut self, gpa: u64, data: &[u8]) -> Option<u64> {
        let l = timed_access(self.shared, gpa, Access::Write(data), self.issue_ps);
        if l.is_none() && !self.shared.mmio.write(gpa, data) {
            // Guest RAM, or nothing (an ignored write).
            let _ = self
                .shared
                .mem
                .write_slice(data, vm_memory::GuestAddress(gpa));
        }
        self.charged(l)
    }
}

/// A failed emulation, returned by KVM with the instruction's bytes when
/// `KVM_CAP_EXIT_ON_EMULATION_FAILURE` is on (see `vm::builder`), or
/// without them for the kernel's own failures: completes an SSE move KVM
/// cannot (`vector_mmio`); otherwise a user process gets the #UD KVM would
/// have given it. None when the failure is the kernel's (fatal, as without
/// the capability); else the modelled latency of a timed access.
fn complete_failed_emulation(
    vcpu: &VcpuFd,
    shared: &VcpuShared,
    insn: &[u8],
    issue_ps: Option<u64>,
) -> Option<Option<u64>> {
    use crate::vector_mmio::{emulate, KvmCpu, Outcome, VcpuView};
    let mut cpu = KvmCpu::new(vcpu, &shared.mem).ok()?;
    let mut path = ExitPath { shared, issue_ps };
    match emulate(&mut cpu, insn, &mut path) {
        Outcome::Emulated { latency_ps } => {
            cpu.commit().ok()?;
            Some(latency_ps)
        }
        Outcome::Declined(why) if cpu.user_mode() => {
            log::warn!(
                "instruction at {:#x} ({insn:02x?}) touches trapped or timed memory and is not \
                 emulated ({why}): #UD to the guest process",
                cpu.rip()
            );
            let mut events = vcpu.get_vcpu_events().ok()?;
            events.exception.injected = 1;
            events.exception.nr = UD_VECTOR;
            events.exception.has_error_code = 0;
            vcpu.set_vcpu_events(&events).ok()?;
            Some(None)
        }
        Outcome::Declined(_) => None,
    }
}

/// Invalid opcode.
const UD_VECTOR: u8 = 6;

/// An 8-byte MMIO access while some memory is served by exits, held until
/// the instruction behind it is known (`indirect_call`).
struct CheckedAccess {
    addr: u64,
    write: bool,
    data: [u8; 8],
}

/// Serves `a` where the instruction meant it to go: at its own address,
/// unless KVM's emulation of a `call *m64` took the other access's
/// (`indirect_call`). Returns the modelled latency of a timed access.
fn serve_checked(
    vcpu: &mut VcpuFd,
    shared: &VcpuShared,
    a: CheckedAccess,
    issue_ps: Option<u64>,
) -> Option<u64> {
    use crate::vector_mmio::PhysicalAccess;
    let gpa = corrected_call_access(vcpu, &shared.mem, &a).unwrap_or(a.addr);
    if gpa != a.addr {
        log::debug!(
            "call *m64: the {} KVM emulated at {:#x} belongs at {gpa:#x}",
            if a.write {
                "return address"
            } else {
                "target read"
            },
            a.addr
        );
    }
    let mut path = ExitPath { shared, issue_ps };
    if a.write {
        return path.write(gpa, &a.data);
    }
    let mut buf = [0u8; 8];
    let latency = path.read(gpa, &mut buf);
    // The union member KVM_EXIT_MMIO filled; KVM copies `data` into the
    // instruction on the next KVM_RUN.
    vcpu.get_kvm_run().__bindgen_anon_1.mmio.data = buf;
    latency
}

/// Where the 8-byte MMIO access `a` belongs if KVM's emulation of a
/// `call *m64` pointed it at the wrong place; None if it is not one, or the
/// access is right. A read exits in the middle of the instruction (RIP at
/// the call); a write after KVM finished it (RIP at the call's target, RSP
/// at the pushed slot), so a push is traced back through the return
/// address it carries, never by decoding at RIP: that is the next
/// instruction, and a store just before a `call *m64` would be taken for
/// its push.
fn corrected_call_access(
    vcpu: &mut VcpuFd,
    mem: &crate::memory::GuestMemory,
    a: &CheckedAccess,
) -> Option<u64> {
    use crate::indirect_call::{calls_returning_to, corrected_push, corrected_read, decode_call};
    use crate::vector_mmio::kvm_cpu;
    let (r, s) = exit_registers(vcpu)?;
    if !kvm_cpu::in_long_mode(&s) {
        return None;
    }
    let translate = |la| crate::guest_stack::translate(mem, s.cr3, s.cr4, la);
    let gpr = kvm_cpu::gprs(&r);
    if a.write {
        let ret = u64::from_le_bytes(a.data);
        let before = crate::guest_stack::read_code_before(mem, ret, translate);
        let sites = calls_returning_to(&before, ret, &gpr, s.fs.base, s.gs.base);
        return corrected_push(&sites, a.addr, translate);
    }
    // The decoder asks for no byte past the instruction's end, so a call
    // at the end of the mapped text decodes from what is there.
    let insn = crate::guest_stack::read_code(mem, r.rip, translate);
    let site = decode_call(&insn, &gpr, r.rip, s.fs.base, s.gs.base)?;
    corrected_read(&site, a.addr, translate)
}

/// The vCPU's registers as it exited: from `kvm_run` where KVM copies them
/// out at every exit (`KVM_CAP_SYNC_REGS`, enabled by `sync_exit_registers`),
/// else through two ioctls.
fn exit_registers(vcpu: &mut VcpuFd) -> Option<(kvm_bindings::kvm_regs, kvm_bindings::kvm_sregs)> {
    if vcpu.get_kvm_run().kvm_valid_regs & SYNCED == SYNCED {
        let synced = vcpu.sync_regs();
        return Some((synced.regs, synced.sregs));
    }
    Some((vcpu.get_regs().ok()?, vcpu.get_sregs().ok()?))
}

/// The registers `exit_registers` reads from `kvm_run`.
const SYNCED: u64 = (kvm_bindings::KVM_SYNC_X86_REGS | kvm_bindings::KVM_SYNC_X86_SREGS) as u64;

/// Has KVM copy a vCPU's general and segment registers into `kvm_run` at
/// every exit to user space, where it supports that: the `call *m64` check
/// reads both on every 8-byte access to served memory, which otherwise
/// costs two ioctls per access. `supported`: what `KVM_CAP_SYNC_REGS`
/// reports.
pub fn sync_exit_registers(vcpu: &mut VcpuFd, supported: u64) {
    if supported & SYNCED == SYNCED {
        vcpu.set_sync_valid_reg(kvm_ioctls::SyncReg::Register);
        vcpu.set_sync_valid_reg(kvm_ioctls::SyncReg::SystemRegister);
    }
}

/// Why a kicked vCPU cannot be running a guest, if it cannot
/// (`vcpu_watch`).
fn impossible_state(index: u8, vcpu: &VcpuFd, shared: &VcpuShared) -> Option<String> {
    use vm_memory::GuestMemoryBackend;
    let s = vcpu.get_sregs().ok()?;
    let owns = |gpa: u64| {
        shared.mem.address_in_range(vm_memory::GuestAddress(gpa))
            || shared.regions.as_ref().is_some_and(|r| {
                r.regions()
                    .iter()
                    .any(|r| gpa.wrapping_sub(r.base) < r.size)
            })
    };
    let root = crate::vcpu_watch::impossible_page_table_root(&s, owns)?;
    let rip = vcpu.get_regs().map(|r| r.rip).unwrap_or(0);
    Some(format!(
        "vcpu{index}: its page-table root {root:#x} (CR3) is outside the guest's memory, \
         at RIP {rip:#x}: no guest can run in this state; the host's virtualization \
         put it there (docs/rig.md, \"Known trouble\")"
    ))
}

fn run_loop(index: u8, vcpu: &mut VcpuFd, shared: &VcpuShared, mut clock: Option<VcpuClock>) {
    crate::startup::mark_first_run();
    let mut checks_seen = 0;
    // With timed memory, every exit of every vCPU goes through the virtual
    // clock: its cost hidden, a timed access's latency shown
    // (docs/timed-mode.md).
    while !shared.stop.load(Ordering::Acquire) {
        if let Some(c) = clock.as_mut() {
            match c.before_run(vcpu, &shared.stop) {
                Ok(true) => {}
                Ok(false) => return,
                Err(e) => {
                    shared.fail(format!("vcpu{index}: virtual clock: {e}"));
                    return;
                }
            }
        }
        let result = vcpu.run();
        // What the VMM spends on a timed access, from KVM_RUN's return to
        // the latency handed to the clock (`--stats` `vmm_cost`).
        let returned = shared.timed.is_some().then(std::time::Instant::now);
        let left = clock.as_mut().map(|c| c.left());
        // Without a clock (`--host-time`) timed accesses issue at host time.
        let issue_ps = left
            .map(|(_, ps)| ps)
            .or_else(|| shared.timed.as_ref().map(|t| t.now_ps()));
        let mut latency = None;
        let mut checked: Option<CheckedAccess> = None;
        // Port I/O sees the UART after every console byte written before.
        if let (Some(ring), Ok(VcpuExit::IoIn(..) | VcpuExit::IoOut(..))) =
            (&shared.console_ring, &result)
        {
            ring.drain(&shared.pio);
        }
        match result {
            Ok(exit) => match exit {
                VcpuExit::IoIn(port, data) => {
                    if !shared.pio.read(u64::from(port), data) {
                        // Nothing decodes this port: the ISA bus floats high.
                        data.fill(0xff);
                    }
                }
                VcpuExit::IoOut(port, data) => {
                    shared.pio.write(u64::from(port), data);
                }
                VcpuExit::MmioRead(addr, data) if data.len() == 8 && shared.served(addr) => {
                    checked = Some(CheckedAccess {
                        addr,
                        write: false,
                        data: [0; 8],
                    });
                }
                VcpuExit::MmioWrite(addr, data) if data.len() == 8 && shared.served(addr) => {
                    let mut d = [0u8; 8];
                    d.copy_from_slice(data);
                    checked = Some(CheckedAccess {
                        addr,
                        write: true,
                        data: d,
                    });
                }
                VcpuExit::MmioRead(addr, data) => {
                    latency = timed_access(shared, addr, Access::Read(data), issue_ps);
                    if latency.is_none() && !shared.mmio.read(addr, data) {
                        data.fill(0xff);
                    }
                }
                VcpuExit::MmioWrite(addr, data) => {
                    latency = timed_access(shared, addr, Access::Write(data), issue_ps);
                    // A write that commits or resets an HDM decoder returns
                    // only once the region map it changes is installed.
                    if latency.is_none() {
                        shared.mmio.write(addr, data);
                    }
                }
                // With the in-kernel LAPIC, HLT only reaches us if the
                // guest halted with interrupts off for good.
                VcpuExit::Hlt => {}
                VcpuExit::Shutdown => {
                    // Linux resets through the keyboard controller or ACPI;
                    // a triple fault is a guest crash. KVM has reset this
                    // vCPU's registers already, so the others show theirs.
                    eprintln!(
                        "cxlvmm: vcpu{index} triple fault, treating it as a reset \
                         (its registers are already reset; the other vCPUs follow)"
                    );
                    shared.triple_fault.store(true, Ordering::Release);
                    shared.exit.request(ExitReason::Reset);
                    return;
                }
                VcpuExit::SystemEvent(kind, _) => {
                    shared.exit.request(match kind {
                        kvm_bindings::KVM_SYSTEM_EVENT_SHUTDOWN => ExitReason::PowerOff,
                        _ => ExitReason::Reset,
                    });
                    return;
                }
                VcpuExit::InternalError => {
                    // SAFETY: after KVM_EXIT_INTERNAL_ERROR the kernel has filled
                    // the `internal` member of the kvm_run exit union.
                    let internal = unsafe { vcpu.get_kvm_run().__bindgen_anon_1.internal };
                    if internal.suberror != INTERNAL_ERROR_EMULATION {
                        shared.fail(format!(
                            "vcpu{index}: KVM internal error, suberror {}",
                            internal.suberror
                        ));
                        return;
                    }
                    let rip = vcpu.get_regs().map(|r| r.rip).unwrap_or(0);
                    let failure = crate::emulation_failure::Failure::from_kvm_data(
                        rip,
                        internal.ndata,
                        &internal.data,
                    );
                    match complete_failed_emulation(vcpu, shared, &failure.insn, issue_ps) {
                        Some(l) => latency = l,
                        None => {
                            shared.fail(crate::emulation_failure::describe(
                                index,
                                vcpu,
                                &shared.mem,
                                shared.regions.as_deref(),
                            ));
                            return;
                        }
                    }
                }
                VcpuExit::FailEntry(reason, cpu) => {
                    shared.fail(format!(
                        "vcpu{index}: KVM could not enter the guest (hardware reason {reason:#x}, cpu {cpu})"
                    ));
                    return;
                }
                other => {
                    shared.fail(format!("vcpu{index}: unexpected exit {other:?}"));
                    return;
                }
            },
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {
                if shared.state_checks.pending(&mut checks_seen) {
                    if let Some(msg) = impossible_state(index, vcpu, shared) {
                        shared.fail(msg);
                        return;
                    }
                }
            }
            Err(e) => {
                shared.fail(format!("vcpu{index}: KVM_RUN failed: {e}"));
                return;
            }
        }
        if let Some(a) = checked {
            latency = serve_checked(vcpu, shared, a, issue_ps);
        }
        if let (Some(timed), Some(r), Some(_)) = (shared.timed.as_ref(), returned, latency) {
            timed.record_vmm_cost(r.elapsed().as_nanos() as u64);
        }
        if let (Some(c), Some((t, _))) = (clock.as_mut(), left) {
            c.exited(t, latency);
        }
    }
}
