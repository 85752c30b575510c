//! Machine assembly: KVM VM, memory, devices, firmware tables, vCPUs; then run
//! until the guest (or the user) stops it.

use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use devices::legacy::{AcpiPm, Cmos, SerialPort, TestExit, I8042, PM_IO_LEN};
use devices::pci::{Bdf, ConfigIo, Ecam, HostBridge, PciRoot};
use devices::{Bus, ExitReason, ExitRequest};
use kvm_bindings::{
    kvm_pit_config, kvm_userspace_memory_region, KVM_MAX_CPUID_ENTRIES, KVM_PIT_SPEAKER_DUMMY,
};
use kvm_ioctls::{Kvm, VmFd};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryRegion};
use vmm_sys_util::eventfd::EventFd;
use vmm_sys_util::signal::Killable;

use crate::boot::{self, BootSpec};
use crate::console::{self, Console, ConsoleOut, RawTerminal};
use crate::cpu::{self, CpuidOptions};
use crate::cxl::regions::{KvmSlots, Layout, RegionMapper, WindowTrap};
use crate::irq::GsiRouter;
use crate::layout::*;
use crate::memory::{e820_map, ram_end, ram_ranges, GuestMemory, E820_RAM};
use crate::vcpu::{self, VcpuShared};
use crate::{acpi, cxl, host};

/// Everything `cxlvmm run` needs, already validated by the CLI.
#[derive(Clone, Debug)]
pub struct VmConfig {
    /// The CXL fabric; None boots a plain machine (`--no-cxl`).
    pub topology: Option<fabric::topology::Topology>,
    pub vcpus: u8,
    pub mem_size: u64,
    pub kernel: PathBuf,
    pub initrd: Option<PathBuf>,
    pub cmdline: String,
    pub script: Option<Vec<u8>>,
    pub show_hypervisor: bool,
    pub serial_log: Option<PathBuf>,
    /// Stop the guest (exit status 124, vCPU state on stderr) after this long.
    pub timeout: Option<Duration>,
    /// Refuse to start on a host whose /dev/kvm cannot run a stock kernel.
    pub check_host: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum VmError {
    #[error("cannot open /dev/kvm: {0} (is KVM available and are you allowed to use it?)")]
    OpenKvm(kvm_ioctls::Error),
    #[error(
        "this host's /dev/kvm is a paravirtual KVM (module kvm_pvm, no VT-x/AMD-V) that cannot boot a stock Linux kernel; \
         run cxlvmm inside the nested rig: scripts/rig -- {0}"
    )]
    ParavirtKvm(String),
    #[error("KVM: {what}: {source}")]
    Kvm {
        what: &'static str,
        source: kvm_ioctls::Error,
    },
    #[error("cannot allocate {size} bytes of guest memory: {msg}")]
    Memory { size: u64, msg: String },
    #[error(transparent)]
    Boot(#[from] boot::BootError),
    #[error(transparent)]
    Cpu(#[from] cpu::CpuError),
    #[error(transparent)]
    Acpi(#[from] acpi::AcpiError),
    #[error("cannot open --serial-log {path}: {source}")]
    SerialLog {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{what}: {source}")]
    Io {
        what: &'static str,
        source: std::io::Error,
    },
    #[error("device layout: {0}")]
    Bus(#[from] devices::BusError),
    #[error("CXL devices: {0}")]
    CxlBuild(#[from] cxl::build::BuildError),
    #[error("CXL layout: {0}")]
    CxlPlan(#[from] cxl::plan::PlanError),
    #[error(transparent)]
    Map(#[from] crate::guest_map::MapOverlap),
    #[error("{0}")]
    Fatal(String),
}

/// Guest RAM as (base, length) ranges, as the e820 map reports it.
fn ram_map(mem_size: u64) -> Vec<(u64, u64)> {
    e820_map(mem_size)
        .into_iter()
        .filter(|e| e.kind == E820_RAM)
        .map(|e| (e.addr, e.size))
        .collect()
}

fn kvm_err(what: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> VmError {
    move |source| VmError::Kvm { what, source }
}

fn io_err(what: &'static str) -> impl FnOnce(std::io::Error) -> VmError {
    move |source| VmError::Io { what, source }
}

/// How the run ended, and the status cxlvmm exits with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub reason: ExitReason,
    pub status: i32,
}

/// Status when a `--script` run ends without the guest reporting the script's
/// status (kernel panic, reset, power-off before /init reported).
pub const STATUS_NO_SCRIPT_STATUS: i32 = 125;
/// Status after the console escape (Ctrl-A x), as for SIGINT.
pub const STATUS_QUIT: i32 = 130;
/// Status when `--timeout` expired, as timeout(1) uses.
pub const STATUS_TIMEOUT: i32 = 124;

/// Blocks until an exit is requested, or requests one at the deadline.
fn wait_for_exit(exit: &ExitRequest, timeout: Option<Duration>) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};
    let epoll = Epoll::new()?;
    epoll.ctl(
        ControlOperation::Add,
        exit.event().as_raw_fd(),
        EpollEvent::new(EventSet::IN, 0),
    )?;
    let deadline = timeout.map(|t| std::time::Instant::now() + t);
    let mut events = [EpollEvent::default(); 1];
    while !exit.is_requested() {
        let wait_ms = match deadline {
            None => -1,
            Some(d) => {
                let left = d.saturating_duration_since(std::time::Instant::now());
                if left.is_zero() {
                    exit.request(ExitReason::Timeout);
                    break;
                }
                left.as_millis().min(i32::MAX as u128) as i32
            }
        };
        match epoll.wait(wait_ms, &mut events) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

pub fn run(cfg: &VmConfig) -> Result<Outcome, VmError> {
    let kvm = Kvm::new().map_err(VmError::OpenKvm)?;
    if cfg.check_host && host::kvm_is_paravirtual() && !host::cpu_has_hw_virt() {
        return Err(VmError::ParavirtKvm(
            std::env::args().collect::<Vec<_>>().join(" "),
        ));
    }
    let vm = Arc::new(kvm.create_vm().map_err(kvm_err("create VM"))?);
    // Pages KVM needs for its own use on Intel (TSS, identity map), at the
    // top of the 32-bit hole where `layout` keeps them free.
    vm.set_tss_address(KVM_TSS_START as usize)
        .map_err(kvm_err("set TSS address"))?;
    vm.set_identity_map_address(KVM_IDENTITY_MAP_START)
        .map_err(kvm_err("set identity map address"))?;
    vm.create_irq_chip()
        .map_err(kvm_err("create in-kernel irqchip"))?;
    let pit = kvm_pit_config {
        flags: KVM_PIT_SPEAKER_DUMMY,
        ..Default::default()
    };
    vm.create_pit2(pit).map_err(kvm_err("create PIT"))?;

    let mem = create_memory(&vm, cfg.mem_size)?;
    let exit = ExitRequest::new().map_err(io_err("exit eventfd"))?;
    let cxl = match &cfg.topology {
        Some(t) => Some((
            t,
            cxl::plan::plan(t, (CXL_MMIO32_START, CXL_MMIO32_END), ram_end(cfg.mem_size))?,
        )),
        None => None,
    };
    crate::guest_map::guest_map(cfg.mem_size, cxl.as_ref().map(|(t, p)| (*t, p)))?;
    let Devices {
        pio,
        mmio,
        console,
        regions,
        backings,
    } = create_devices(&vm, cfg, cxl.as_ref().map(|(t, p)| (*t, p)), &exit)?;

    let topo = cxl.as_ref().map(|(t, _)| *t);
    let mut extra_tables = vec![cxl::acpi::srat(cfg.vcpus, &ram_map(cfg.mem_size), topo)];
    let mut dsdt_extra = Vec::new();
    if let Some((t, plan)) = &cxl {
        extra_tables.push(cxl::acpi::cedt(t, plan));
        extra_tables.push(cxl::acpi::hmat(t));
        dsdt_extra = cxl::acpi::dsdt_objects(t, plan);
    }
    let tables = acpi::build(&acpi::AcpiConfig {
        vcpus: cfg.vcpus,
        extra_tables,
        dsdt_extra,
    })?;
    for (addr, blob) in &tables.blobs {
        mem.write_slice(blob, GuestAddress(*addr))
            .map_err(|e| VmError::Fatal(format!("writing ACPI tables: {e}")))?;
    }
    let mut initrd = cfg.initrd.as_deref().map(boot::read_initrd).transpose()?;
    if let Some(script) = &cfg.script {
        let initrd = initrd.get_or_insert_with(Vec::new);
        crate::initramfs::append_script(initrd, script);
    }
    let entry = boot::load_kernel(
        &mem,
        &BootSpec {
            kernel: &cfg.kernel,
            initrd,
            cmdline: &cfg.cmdline,
            mem_size: cfg.mem_size,
            rsdp_addr: tables.rsdp_addr,
        },
    )?;

    let base_cpuid = kvm
        .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
        .map_err(kvm_err("get supported CPUID"))?;
    let mut vcpus = Vec::new();
    for i in 0..cfg.vcpus {
        let fd = vm
            .create_vcpu(u64::from(i))
            .map_err(kvm_err("create vCPU"))?;
        let mut cpuid = base_cpuid.clone();
        cpu::filter_cpuid(
            &mut cpuid,
            i,
            CpuidOptions {
                vcpu_count: cfg.vcpus,
                show_hypervisor: cfg.show_hypervisor,
            },
        );
        fd.set_cpuid2(&cpuid).map_err(kvm_err("set CPUID"))?;
        cpu::setup_msrs(&fd)?;
        cpu::setup_lapic(&fd)?;
        // Application processors wait for INIT/SIPI from the boot CPU.
        if i == 0 {
            cpu::setup_long_mode(&fd, &mem)?;
            cpu::setup_regs(&fd, entry.rip, entry.zero_page)?;
        }
        vcpus.push(fd);
    }

    vcpu::install_kick_handler().map_err(io_err("install vCPU kick handler"))?;
    let shared = VcpuShared {
        pio: Arc::new(pio),
        mmio,
        regions,
        exit: exit.clone(),
        stop: Arc::new(AtomicBool::new(false)),
        fatal: Arc::new(Mutex::new(None)),
        triple_fault: Arc::new(AtomicBool::new(false)),
        mem: mem.clone(),
    };
    let _raw = RawTerminal::enter();
    let input_stop = EventFd::new(0).map_err(io_err("console eventfd"))?;
    let input = console::spawn_input(
        console,
        exit.clone(),
        input_stop.try_clone().map_err(io_err("console eventfd"))?,
    )
    .map_err(io_err("spawn console thread"))?;

    let mut threads = Vec::new();
    for (i, fd) in vcpus.into_iter().enumerate() {
        match vcpu::spawn(i as u8, fd, shared.clone()) {
            Ok(t) => threads.push(t),
            Err(e) => {
                shared.fail(format!("spawn vCPU thread: {e}"));
                break;
            }
        }
    }

    // Sleep until a device, a vCPU or the console asks to stop, or the
    // time limit passes.
    wait_for_exit(&exit, cfg.timeout).map_err(io_err("wait for the guest"))?;
    let reason = exit.reason().unwrap_or(ExitReason::Fatal);

    shared.stop.store(true, Ordering::Release);
    for t in threads {
        // A vCPU may be about to enter KVM_RUN when the first kick lands, so
        // kick until it has left.
        while !t.is_finished() {
            let _ = t.kill(vcpu::kick_signal());
            std::thread::sleep(Duration::from_millis(1));
        }
        let _ = t.join();
    }
    let _ = input_stop.write(1);
    let _ = input.join();
    // However the guest ended, what it stored in persistent media reaches
    // stable storage before cxlvmm exits (docs/persistence.md).
    cxl::sync_persistent_media(&backings);

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
        _ if cfg.script.is_some() => STATUS_NO_SCRIPT_STATUS,
        _ => 0,
    };
    Ok(Outcome { reason, status })
}

fn create_memory(vm: &VmFd, size: u64) -> Result<GuestMemory, VmError> {
    let mem = GuestMemory::from_ranges(&ram_ranges(size)).map_err(|e| VmError::Memory {
        size,
        msg: e.to_string(),
    })?;
    for (slot, region) in mem.iter().enumerate() {
        let host_addr = mem
            .get_host_address(region.start_addr())
            .map_err(|e| VmError::Memory {
                size,
                msg: e.to_string(),
            })?;
        let region_desc = kvm_userspace_memory_region {
            slot: slot as u32,
            guest_phys_addr: region.start_addr().0,
            memory_size: region.len(),
            userspace_addr: host_addr as u64,
            flags: 0,
        };
        // SAFETY: the host range is a live mmap owned by `mem`, which outlives
        // the VM (both are dropped when `run` returns, the VM first), and the
        // slot does not overlap any other slot.
        unsafe { vm.set_user_memory_region(region_desc) }.map_err(kvm_err("add RAM slot"))?;
    }
    Ok(mem)
}

/// The machine's device side, as the vCPUs and the console need it.
struct Devices {
    pio: Bus,
    mmio: Arc<Bus>,
    console: Console,
    regions: Option<Arc<RegionMapper<KvmSlots>>>,
    /// The type-3 devices' media, synced when the guest is over.
    backings: Vec<Arc<devices::cxl::backing::Type3Backing>>,
}

fn create_devices(
    vm: &Arc<VmFd>,
    cfg: &VmConfig,
    cxl: Option<(&fabric::topology::Topology, &cxl::plan::CxlPlan)>,
    exit: &ExitRequest,
) -> Result<Devices, VmError> {
    let log = cfg
        .serial_log
        .as_ref()
        .map(|p| {
            File::create(p).map_err(|source| VmError::SerialLog {
                path: p.clone(),
                source,
            })
        })
        .transpose()?;
    let com1_irq = EventFd::new(libc::EFD_NONBLOCK).map_err(io_err("serial eventfd"))?;
    vm.register_irqfd(&com1_irq, IRQ_COM1)
        .map_err(kvm_err("route COM1 interrupt"))?;
    let console: Console = Arc::new(Mutex::new(SerialPort::new(com1_irq, ConsoleOut::new(log))));

    let mmio = Arc::new(Bus::new());
    // BARs decode anywhere in the 32-bit PCI window (the main root bridge's
    // part and the CXL host bridges'); elsewhere they decode nothing.
    let mut pci = PciRoot::new(mmio.clone(), vec![(PCI_MMIO32_START, PCI_MMIO32_SIZE)]);
    pci.add(Bdf::new(0, 0, 0), HostBridge::default());
    let irq_router = GsiRouter::new(vm.clone());
    let mut regions = None;
    let mut backings = Vec::new();
    if let Some((topo, plan)) = cxl {
        let cxl_devs = cxl::build::build(topo, plan, &mut pci, &mmio, &irq_router)?;
        let slots = KvmSlots::new(vm.clone(), cxl_devs.backings.clone());
        let mapper = RegionMapper::new(Layout::new(topo, plan), cxl_devs.decoders, slots);
        // Window addresses not mapped natively exit to the VMM and are decoded here.
        for w in &plan.windows {
            let trap = WindowTrap::new(w.base, mapper.tree(), cxl_devs.backings.clone());
            mmio.insert(Arc::new(trap), w.base, w.size)?;
        }
        regions = Some(mapper);
        backings = cxl_devs.backings;
    }
    let pci = Arc::new(pci);

    let pio = Bus::new();
    pio.insert(console.clone(), PORT_COM1, PORT_COM1_LEN)?;
    pio.insert(
        Arc::new(Mutex::new(I8042::new(exit.clone()))),
        PORT_I8042,
        PORT_I8042_LEN,
    )?;
    pio.insert(Arc::new(Mutex::new(Cmos::new())), PORT_CMOS, PORT_CMOS_LEN)?;
    pio.insert(
        Arc::new(Mutex::new(AcpiPm::new(exit.clone()))),
        PORT_PM_BASE,
        PM_IO_LEN,
    )?;
    pio.insert(
        Arc::new(TestExit::new(exit.clone())),
        PORT_TEST_EXIT,
        PORT_TEST_EXIT_LEN,
    )?;
    pio.insert(
        Arc::new(ConfigIo::new(pci.clone())),
        PORT_PCI_CONFIG,
        PORT_PCI_CONFIG_LEN,
    )?;

    mmio.insert(Arc::new(Ecam::new(pci)), ECAM_START, ECAM_SIZE)?;
    Ok(Devices {
        pio,
        mmio,
        console,
        regions,
        backings,
    })
}
