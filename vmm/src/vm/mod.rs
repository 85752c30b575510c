//! The machine: `cxlvmm run` builds it step by step ([`MachineBuilder`]) and
//! runs it until the guest (or the user) stops it ([`Machine`]).

mod builder;
mod machine;

use std::path::PathBuf;
use std::time::Duration;

use devices::ExitReason;

use crate::{acpi, boot, cpu, cxl};
pub use builder::MachineBuilder;
pub use machine::Machine;

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
    /// The `--modules` archive (newc), appended to the initramfs.
    pub modules: Option<Vec<u8>>,
    pub show_hypervisor: bool,
    pub serial_log: Option<PathBuf>,
    /// Stop the guest (exit status 124, vCPU state on stderr) after this long.
    pub timeout: Option<Duration>,
    /// Refuse to start on a host whose /dev/kvm cannot run a stock kernel.
    pub check_host: bool,
    /// Raw image files, each a virtio-blk function on the root bus.
    pub disks: Vec<crate::virtio::DiskSpec>,
    /// Host directories, each a virtio-fs function served by a virtiofsd.
    pub shares: Vec<crate::virtio::ShareSpec>,
    /// The virtiofsd binary the CLI found for the shares (None without
    /// shares).
    pub virtiofsd: Option<PathBuf>,
    /// What a thread's system call outside its filter does.
    pub seccomp: crate::seccomp::SeccompMode,
    /// Where to serve the control API, if anywhere.
    pub api_socket: Option<PathBuf>,
    /// Where to write the statistics when the guest is over.
    pub stats: Option<PathBuf>,
    /// Exits measured to calibrate the virtual clock.
    pub calibration_samples: u64,
    /// The virtual clock without timed windows too (`--virtual-clock`).
    pub virtual_clock: bool,
    /// Timed windows charged at host time, without the virtual clock
    /// (`--host-time`).
    pub host_time: bool,
    /// Host pages behind guest RAM and device memory.
    pub memory_backing: crate::memory_backing::MemoryBacking,
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
    #[error(transparent)]
    Accel(#[from] crate::accel::AccelError),
    #[error("CXL layout: {0}")]
    CxlPlan(#[from] cxl::plan::PlanError),
    #[error(transparent)]
    Map(#[from] crate::guest_map::MapOverlap),
    #[error(transparent)]
    Virtio(#[from] crate::virtio::VirtioError),
    #[error(transparent)]
    Seccomp(#[from] crate::seccomp::SeccompError),
    #[error("--api-socket {path}: {source}")]
    ApiSocket {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("--stats {path}: {source}")]
    Stats {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Fatal(String),
}

pub(crate) fn kvm_err(what: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> VmError {
    move |source| VmError::Kvm { what, source }
}

pub(crate) fn io_err(what: &'static str) -> impl FnOnce(std::io::Error) -> VmError {
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
/// Status after a thread made a system call its seccomp filter forbids.
pub const STATUS_SECCOMP: i32 = crate::seccomp::STATUS_SECCOMP;

/// Builds the machine `cfg` describes and runs it.
///
/// Each step adds one kind of hardware, with everything it needs (bus
/// ranges, PCI functions, interrupts, ACPI parts); a new device kind
/// (an accelerator, virtio) is one more step here.
pub fn run(cfg: &VmConfig) -> Result<Outcome, VmError> {
    // Before any thread exists: each enters its filter when it starts.
    crate::seccomp::configure(cfg.seccomp)?;
    // The KVM VM (refused on a host that cannot boot Linux), guest RAM, the
    // in-kernel interrupt controller and PIT, empty buses and PCI segment;
    // where the CXL hierarchy goes, checked against the rest of the map.
    let mut m = MachineBuilder::new(cfg)?;
    // COM1, i8042 reset, CMOS RTC, ACPI PM registers, test-exit port.
    m.add_legacy_devices()?;
    // Host bridges, switches, type-3 devices, their windows and regions.
    m.add_cxl_hierarchy()?;
    // virtio-blk functions for --disk, virtio-fs for --share, on the root bus.
    m.add_virtio_devices()?;
    // Accelerators: PCI functions, DMA into RAM, CXL memory and peers.
    m.add_accelerators()?;
    // ECAM and 0xCF8/0xCFC, the ACPI tables, the kernel, the vCPUs.
    let machine = m.build()?;
    machine.run()
}
