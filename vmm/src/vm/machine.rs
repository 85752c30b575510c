//! The built machine running: one thread per vCPU, one for console input,
//! and this one waiting for the guest (or the user, or the clock) to stop it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use devices::cxl::backing::Type3Backing;
use devices::{Bus, ExitReason, ExitRequest};
use kvm_ioctls::{VcpuFd, VmFd};
use vmm_sys_util::eventfd::EventFd;
use vmm_sys_util::signal::Killable;

use super::{io_err, Outcome, VmError};
use super::{STATUS_NO_SCRIPT_STATUS, STATUS_QUIT, STATUS_TIMEOUT};
use crate::accel::Accelerators;
use crate::api::{ApiContext, ApiServer};
use crate::console::{self, Console, RawTerminal};
use crate::console_ring::ConsoleRing;
use crate::cxl;
use crate::cxl::regions::{KvmSlots, RegionMapper};
use crate::memory::GuestMemory;
use crate::seccomp::{self, ThreadRole};
use crate::timed::TimedMemory;
use crate::vclock::calibrate::CalibrationReport;
use crate::vclock::shared::SharedClock;
use crate::vcpu::{self, VcpuShared};
use std::path::{Path, PathBuf};

/// A machine ready to run, as [`super::MachineBuilder::build`] leaves it.
pub struct Machine {
    pub(super) timeout: Option<Duration>,
    /// Whether a `--script` runs (it should report its own status).
    pub(super) script: bool,
    pub(super) _vm: Arc<VmFd>,
    pub(super) mem: GuestMemory,
    pub(super) exit: ExitRequest,
    pub(super) pio: Bus,
    pub(super) mmio: Arc<Bus>,
    pub(super) console: Console,
    /// COM1's coalesced transmit writes (`console_ring`).
    pub(super) console_ring: Option<Arc<ConsoleRing>>,
    /// Alive while the guest runs: the component blocks report decoder
    /// changes to it.
    pub(super) regions: Option<Arc<RegionMapper<KvmSlots>>>,
    /// The type-3 devices' media, synced when the guest is over.
    pub(super) backings: Vec<Arc<Type3Backing>>,
    /// The accelerators; dropping them stops their completion timer.
    pub(super) accelerators: Option<Accelerators>,
    pub(super) vcpus: Vec<VcpuFd>,
    /// The timed windows' data path and the virtual clock it charges.
    pub(super) timed: Option<Arc<TimedMemory>>,
    /// The CXL windows when some memory is served by exits (trapped or
    /// timed windows), else empty (`VcpuShared::served_windows`).
    pub(super) served_windows: Arc<[(u64, u64)]>,
    pub(super) clock: Option<Arc<SharedClock>>,
    pub(super) calibration: Option<CalibrationReport>,
    /// What the control API and `--stats` reach (None without a fabric).
    pub(super) api: Option<Arc<ApiContext>>,
    pub(super) api_socket: Option<PathBuf>,
    pub(super) stats: Option<PathBuf>,
}

impl Machine {
    /// Runs the guest until something asks to stop; how it ended.
    pub fn run(self) -> Result<Outcome, VmError> {
        let exit = self.exit.clone();
        // What an emulation failure's message will say about the host,
        // found out while files may still be opened.
        crate::host::kvm_cannot_boot_linux();
        vcpu::install_kick_handler().map_err(io_err("install vCPU kick handler"))?;
        let api = self.api;
        let stats_files = match (&self.stats, &api) {
            (Some(path), Some(_)) => Some(StatsFiles::create(path, self.timed.is_some())?),
            _ => None,
        };
        let _server = match (&self.api_socket, &api) {
            (Some(path), Some(ctx)) => Some(ApiServer::start(path, ctx.clone()).map_err(
                |source| VmError::ApiSocket {
                    path: path.clone(),
                    source,
                },
            )?),
            (Some(_), None) => {
                return Err(VmError::Fatal(
                    "--api-socket: the control API needs a CXL topology".into(),
                ))
            }
            _ => None,
        };
        let shared = VcpuShared {
            pio: Arc::new(self.pio),
            mmio: self.mmio,
            regions: self.regions,
            exit: exit.clone(),
            stop: Arc::new(AtomicBool::new(false)),
            fatal: Arc::new(Mutex::new(None)),
            triple_fault: Arc::new(AtomicBool::new(false)),
            mem: self.mem.clone(),
            timed: self.timed.clone(),
            served_windows: self.served_windows,
            clock: self.clock.clone(),
            state_checks: Arc::default(),
            console_ring: self.console_ring.clone(),
        };
        let _raw = RawTerminal::enter();
        let input_stop = EventFd::new(0).map_err(io_err("console eventfd"))?;
        let input = console::spawn_input(
            self.console,
            exit.clone(),
            input_stop.try_clone().map_err(io_err("console eventfd"))?,
        )
        .map_err(io_err("spawn console thread"))?;

        let mut threads = Vec::new();
        for (i, fd) in self.vcpus.into_iter().enumerate() {
            match vcpu::spawn(i as u8, fd, shared.clone()) {
                Ok(t) => threads.push(t),
                Err(e) => {
                    shared.fail(format!("spawn vCPU thread: {e}"));
                    break;
                }
            }
        }

        // Every thread is running under its own filter: now this one.
        if let Err(e) = seccomp::enter(ThreadRole::Main) {
            shared.fail(e.to_string());
        }
        // Sleep until a device, a vCPU or the console asks to stop, or the
        // time limit passes.
        // Meanwhile every vCPU checks its own state now and then, so that
        // one the host's virtualization left in a state no guest can be in
        // ends the run at once instead of at the time limit.
        let check_vcpus = || {
            shared.state_checks.request();
            for t in &threads {
                let _ = t.kill(vcpu::kick_signal());
            }
        };
        wait_for_exit(&exit, self.timeout, check_vcpus).map_err(io_err("wait for the guest"))?;
        let reason = exit.reason().unwrap_or(ExitReason::Fatal);
        if let (ExitReason::Timeout, Some(c)) = (reason, &self.clock) {
            // What each vCPU was doing in the clock's eyes, for a guest that
            // hung (before they are stopped).
            eprintln!("cxlvmm: virtual clock at the timeout: {}", c.describe());
        }

        shared.stop.store(true, Ordering::Release);
        for t in threads {
            // A vCPU may be about to enter KVM_RUN when the first kick lands,
            // so kick until it has left.
            while !t.is_finished() {
                let _ = t.kill(vcpu::kick_signal());
                std::thread::sleep(Duration::from_millis(1));
            }
            let _ = t.join();
        }
        let _ = input_stop.write(1);
        let _ = input.join();
        if let Some(ring) = &self.console_ring {
            log::info!(
                "console: {} bytes written to COM1 without an exit to the VMM (coalesced)",
                ring.drained()
            );
        }
        // No vCPU rings a doorbell any more: stop delivering completions.
        drop(self.accelerators);
        // However the guest ended, what it stored in persistent media
        // reaches stable storage before cxlvmm exits (docs/persistence.md).
        cxl::sync_persistent_media(&self.backings);
        // The region map outlives the run: dropping it would move every
        // gathered region's bytes back into device memfds that die with
        // the process anyway (seconds for a big, well-used region).
        std::mem::forget(shared.regions.clone());
        if let (Some(files), Some(ctx)) = (stats_files, &api) {
            write_stats(files, ctx, self.calibration.as_ref())?;
        }

        if reason == ExitReason::Fatal {
            let msg = shared
                .fatal
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take()
                .unwrap_or_else(|| "unknown vCPU failure".into());
            return Err(VmError::Fatal(msg));
        }
        let status = match reason {
            ExitReason::TestExit(code) => i32::from(code),
            ExitReason::Quit => STATUS_QUIT,
            ExitReason::Timeout => STATUS_TIMEOUT,
            _ if self.script => STATUS_NO_SCRIPT_STATUS,
            _ => 0,
        };
        Ok(Outcome { reason, status })
    }
}

/// `--stats FILE`: the statistics as JSON, and the plots beside them.
fn write_stats(
    files: StatsFiles,
    ctx: &ApiContext,
    calibration: Option<&CalibrationReport>,
) -> Result<(), VmError> {
    use std::io::Write;
    let mut json = ctx.stats_json();
    json["calibration"] = serde_json::to_value(calibration).unwrap_or_default();
    let text = serde_json::to_string_pretty(&json).unwrap_or_default() + "\n";
    let fail = |source| VmError::Stats {
        path: files.path.clone(),
        source,
    };
    let mut f = files.json;
    f.write_all(text.as_bytes()).map_err(fail)?;
    let mut f = files.links;
    f.write_all(crate::timed::plots::links_svg(&ctx.fabric_stats()).as_bytes())
        .map_err(fail)?;
    if let (Some(mut f), Some(t)) = (files.latency, &ctx.timed) {
        f.write_all(crate::timed::plots::latency_svg(&t.stats()).as_bytes())
            .map_err(fail)?;
    }
    Ok(())
}

/// `--stats FILE`'s files, created before the seccomp filter forbids
/// opening files: FILE, FILE-links.svg, FILE-latency.svg.
struct StatsFiles {
    path: PathBuf,
    json: std::fs::File,
    links: std::fs::File,
    /// Only with timed windows.
    latency: Option<std::fs::File>,
}

impl StatsFiles {
    fn create(path: &Path, timed: bool) -> Result<Self, VmError> {
        let stem = path.with_extension("");
        let open = |p: PathBuf| {
            std::fs::File::create(&p).map_err(|source| VmError::Stats { path: p, source })
        };
        Ok(Self {
            path: path.to_path_buf(),
            json: open(path.to_path_buf())?,
            links: open(PathBuf::from(format!("{}-links.svg", stem.display())))?,
            latency: if timed {
                Some(open(PathBuf::from(format!(
                    "{}-latency.svg",
                    stem.display()
                )))?)
            } else {
                None
            },
        })
    }
}

/// Sleeps until an exit is requested or `timeout` passes (then requests
/// one), calling `tick` every `vcpu_watch::CHECK_PERIOD` meanwhile.
fn wait_for_exit(
    exit: &ExitRequest,
    timeout: Option<Duration>,
    mut tick: impl FnMut(),
) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};
    let epoll = Epoll::new()?;
    epoll.ctl(
        ControlOperation::Add,
        exit.event().as_raw_fd(),
        EpollEvent::new(EventSet::IN, 0),
    )?;
    let deadline = timeout.map(|t| std::time::Instant::now() + t);
    let mut next_tick = std::time::Instant::now() + crate::vcpu_watch::CHECK_PERIOD;
    let mut events = [EpollEvent::default(); 1];
    while !exit.is_requested() {
        let now = std::time::Instant::now();
        if deadline.is_some_and(|d| d <= now) {
            exit.request(ExitReason::Timeout);
            break;
        }
        if next_tick <= now {
            tick();
            next_tick = now + crate::vcpu_watch::CHECK_PERIOD;
        }
        let until = deadline.map_or(next_tick, |d| d.min(next_tick));
        let wait_ms = until
            .saturating_duration_since(now)
            .as_millis()
            .clamp(1, i32::MAX as u128) as i32;
        match epoll.wait(wait_ms, &mut events) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
