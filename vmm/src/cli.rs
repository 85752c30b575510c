//! The `cxlvmm` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use devices::ExitReason;
use fabric::topology::{
    Accelerator, AddressLimits, CpuCacheParams, FabricParams, HostBridge, Switch, Topology, Type3,
    Window, WindowMode, DEFAULT_TOPOLOGY_TOML,
};
use serde::Serialize;

use crate::memory_backing::MemoryBacking;
use crate::seccomp::SeccompMode;
use crate::vm::{self, VmConfig};
use crate::{host, images};

/// The command line every guest gets; `--cmdline` is appended to it.
///
/// `reboot=k` resets through the i8042 (which ends the VM); `panic=-1` turns a
/// guest panic into a reset; `tsc=reliable` keeps the invariant TSC as the
/// clocksource even where the nested rig makes it look jittery.
pub const DEFAULT_CMDLINE: &str =
    "console=ttyS0 8250.nr_uarts=1 reboot=k panic=-1 tsc=reliable no_timer_check quiet";

/// The guest image used when no --kernel is given.
pub const DEFAULT_GUEST: &str = "6.12";

#[derive(Parser, Debug)]
#[command(
    name = "cxlvmm",
    version,
    about = "A KVM VMM that gives an unmodified Linux guest a CXL fabric"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Boot a guest and run it until it powers off, resets or reports an exit code.
    Run(RunArgs),
    /// Validate a topology without booting, and print its tree.
    Check(CheckArgs),
    /// Run a test manifest: cases over kernels x topologies, each in its own
    /// guest, with KTAP results, splat detection, JUnit and JSON reports.
    Test(runner::cli::TestArgs),
    /// Send one request to a running VM's control socket and print the
    /// answer (docs/control-api.md).
    Ctl(crate::ctl_cmd::CtlArgs),
    /// Measure what this host's KVM keeps invisible of a VM exit (the
    /// virtual clock's calibration), and with --latency-ns how exactly a
    /// modelled latency then shows inside a guest. Prints JSON.
    Calibrate(crate::ctl_cmd::CalibrateArgs),
}

#[derive(Args, Debug, Clone)]
pub struct CheckArgs {
    /// Topology file (TOML); without it, the built-in default is checked.
    #[arg(long)]
    pub topology: Option<PathBuf>,
    /// Print what the guest should see (devices, ports, windows) as JSON
    /// instead of the tree; end-to-end tests compare it with `cxl list`.
    #[arg(long)]
    pub json: bool,
}

/// What `cxlvmm check --json` prints: the validated topology as the schema
/// types serialise it (window targets are host bridge indices), each type-3
/// device with the fabric model's idle 64 B path latency from the host, each
/// accelerator with its DMA paths.
#[derive(Serialize)]
pub struct CheckReport<'a> {
    pub fabric: &'a FabricParams,
    pub host_bridges: &'a [HostBridge],
    pub switches: &'a [Switch],
    pub type3: Vec<Type3Report<'a>>,
    pub accelerators: Vec<AcceleratorReport<'a>>,
    pub windows: &'a [Window],
    pub cpu_cache: &'a CpuCacheParams,
    pub limits: &'a AddressLimits,
}

/// An accelerator and the fabric model's figures for each of its DMA paths
/// ([`fabric::dma::path_table`]).
#[derive(Serialize)]
pub struct AcceleratorReport<'a> {
    #[serde(flatten)]
    pub device: &'a Accelerator,
    pub paths: Vec<DmaPathReport>,
}

/// One DMA path: the peer by name, its path class, idle small-transfer
/// latencies and peak bandwidths.
#[derive(Serialize)]
pub struct DmaPathReport {
    pub peer: String,
    pub class: String,
    pub small_read_ps: u64,
    pub small_write_ps: u64,
    pub read_gbps: f64,
    pub write_gbps: f64,
}

/// A type-3 device and its path latency ([`fabric::hmat::path_performance`]).
#[derive(Serialize)]
pub struct Type3Report<'a> {
    #[serde(flatten)]
    pub device: &'a Type3,
    pub read_latency_ps: Option<u64>,
    pub write_latency_ps: Option<u64>,
}

impl<'a> CheckReport<'a> {
    pub fn new(t: &'a Topology) -> Self {
        let type3 = t
            .type3
            .iter()
            .enumerate()
            .map(|(i, device)| {
                let path = fabric::hmat::path_performance(t, i).map(|p| p.total);
                Type3Report {
                    device,
                    read_latency_ps: path.map(|p| p.read_latency_ps),
                    write_latency_ps: path.map(|p| p.write_latency_ps),
                }
            })
            .collect();
        let paths = fabric::dma::path_table(t);
        let accelerators = t
            .accelerators
            .iter()
            .enumerate()
            .map(|(i, device)| AcceleratorReport {
                device,
                paths: paths
                    .iter()
                    .filter(|p| p.accelerator == i)
                    .map(|p| DmaPathReport {
                        peer: fabric::dma::peer_name(t, p.peer),
                        class: fabric::dma::class_name(p.class),
                        small_read_ps: p.small_read_ps,
                        small_write_ps: p.small_write_ps,
                        read_gbps: p.read_gbps,
                        write_gbps: p.write_gbps,
                    })
                    .collect(),
            })
            .collect();
        CheckReport {
            fabric: &t.fabric,
            host_bridges: &t.host_bridges,
            switches: &t.switches,
            type3,
            accelerators,
            windows: &t.windows,
            cpu_cache: &t.cpu_cache,
            limits: &t.limits,
        }
    }
}

/// Reads and validates a topology file, or the built-in default, for the
/// physical address space a guest on this host gets.
pub fn load_topology(path: Option<&std::path::Path>) -> Result<Topology, String> {
    let limits = host::guest_address_limits();
    match path {
        None => Topology::from_toml_str_for(DEFAULT_TOPOLOGY_TOML, limits)
            .map_err(|e| format!("built-in topology: {e}")),
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .map_err(|e| format!("--topology {}: {e}", p.display()))?;
            Topology::from_toml_str_for(&text, limits)
                .map_err(|e| format!("--topology {}: {e}", p.display()))
        }
    }
}

#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// Number of vCPUs (1-254).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u8).range(1..=254))]
    pub vcpus: u8,
    /// Guest RAM, e.g. 512M, 1G, 4G (plain numbers are MiB).
    #[arg(long, default_value = "1G", value_parser = parse_size)]
    pub memory: u64,
    /// Kernel image: bzImage, ELF vmlinux, or a built kernel tree (its
    /// arch/x86/boot/bzImage). Default: the built guest image.
    #[arg(long)]
    pub kernel: Option<PathBuf>,
    /// Initramfs. Default: the built guest image's, when --kernel is not given.
    #[arg(long)]
    pub initrd: Option<PathBuf>,
    /// Kernel modules for the guest's /lib/modules/<release>: a kernel build
    /// tree (its *.ko), an installed lib/modules/<release> folder, or a
    /// folder holding one. Packed into an archive appended to the initramfs.
    #[arg(long, value_name = "DIR")]
    pub modules: Option<PathBuf>,
    /// Extra kernel command line, appended to the default one.
    #[arg(long, default_value = "")]
    pub cmdline: String,
    /// CXL topology (TOML, see examples/); default: the built-in one
    /// (host bridge -> root port -> switch -> 2 type-3 devices, one window).
    #[arg(long, conflicts_with = "no_cxl")]
    pub topology: Option<PathBuf>,
    /// A plain machine without any CXL hierarchy.
    #[arg(long)]
    pub no_cxl: bool,
    /// Which built guest image to use when --kernel is not given (6.12 or 6.1).
    #[arg(long, default_value = DEFAULT_GUEST)]
    pub guest: String,
    /// Shell script to run in the guest; its exit code becomes cxlvmm's.
    #[arg(long)]
    pub script: Option<PathBuf>,
    /// Also write the console transcript to this file.
    #[arg(long)]
    pub serial_log: Option<PathBuf>,
    /// Stop the guest after this many seconds: exit status 124, and each
    /// vCPU's registers on stderr (to see where a hung guest is).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout: Option<u64>,
    /// Keep CPUID's hypervisor bit (hidden by default: stock kernels will not
    /// commit CXL regions under a hypervisor).
    #[arg(long)]
    pub show_hypervisor: bool,
    /// Start even where /dev/kvm cannot boot a stock kernel (for bare-metal
    /// test payloads on paravirtual KVM hosts).
    #[arg(long)]
    pub no_kvm_check: bool,
    /// Print the full kernel command line the guest would get, and exit.
    #[arg(long)]
    pub print_cmdline: bool,
    /// Raw disk image as a virtio-blk device (repeatable; `:ro` makes it
    /// read-only). The guest sees them as /dev/vda, /dev/vdb, ... in order.
    #[arg(long = "disk", value_name = "FILE[:ro]")]
    pub disks: Vec<String>,
    /// Host directory as a virtio-fs file system named TAG, served by a
    /// virtiofsd that cxlvmm starts (repeatable; `:ro` makes it read-only).
    /// In the guest: `mount -t virtiofs TAG /mnt`. Guest RAM becomes
    /// shared memory (a memfd) so that virtiofsd can map it.
    #[arg(long = "share", value_name = "HOST_DIR:TAG[:ro]")]
    pub shares: Vec<String>,
    /// Run the guest's script (or shell) on the host's root file system,
    /// read-only over virtio-fs under a tmpfs overlay (writes stay in the
    /// guest), so that host-built tools run in the guest. Needs an
    /// initramfs whose /init does the switch: the built guest images'.
    #[arg(long)]
    pub root_share: bool,
    /// The virtiofsd binary for --share (default: $CXLVMM_VIRTIOFSD, else
    /// the first virtiofsd on $PATH, then /usr/libexec/virtiofsd, then
    /// /usr/lib/qemu/virtiofsd).
    #[arg(long, value_name = "PATH")]
    pub virtiofsd: Option<PathBuf>,
    /// Seccomp filters per thread: `enforce` stops cxlvmm (status 159) on a
    /// system call a thread should never make, `log` lets it through and
    /// has the kernel log it, `off` installs none.
    #[arg(long, value_enum, default_value_t = SeccompMode::Enforce)]
    pub seccomp: SeccompMode,
    /// Serve every CXL window this way, whatever its `mode` in the topology:
    /// `native` (KVM memory slots, DRAM speed), `trapped` (every access
    /// exits and is decoded by the VMM) or `timed` (trapped, and each access
    /// takes the time the fabric model gives it, in the guest's own clock;
    /// docs/timed-mode.md).
    #[arg(long, value_parser = parse_memory_mode)]
    pub memory_mode: Option<WindowMode>,
    /// Serve the control API on this Unix socket (docs/control-api.md):
    /// fabric parameters changed while the guest runs, statistics, poison
    /// and event injection.
    #[arg(long)]
    pub api_socket: Option<PathBuf>,
    /// When the guest is over, write the fabric and timed-memory statistics
    /// to this JSON file, with latency and link plots beside it
    /// (FILE-latency.svg, FILE-links.svg).
    #[arg(long)]
    pub stats: Option<PathBuf>,
    /// Run the guest on the virtual clock even where no window is timed:
    /// VM exits take no guest time, and the accelerators' DMA and compute
    /// complete at their modelled time in the guest's own clock, whatever
    /// the host's copy costs (docs/timed-mode.md, docs/accelerator.md).
    /// A timed window brings it too, unless --host-time.
    #[arg(long)]
    pub virtual_clock: bool,
    /// Timed windows without the virtual clock: every access is still
    /// charged by the fabric model and counted in the statistics, issued
    /// at host time since start (so queueing follows the accesses' real
    /// spacing), but the guest's clock is left alone and feels each exit's
    /// real cost. For hosts whose KVM cannot set a vCPU's TSC offset, and
    /// to measure the VMM's own cost per timed access there
    /// (docs/timed-mode.md).
    #[arg(long, conflicts_with = "virtual_clock")]
    pub host_time: bool,
    /// Exits measured at start-up to calibrate the virtual clock
    /// (more: a steadier calibration, a slower start).
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(100..=20000))]
    pub calibration_samples: u64,
    /// Host pages behind guest RAM and device memory: `anon` (4 KiB),
    /// `thp` (transparent huge pages, 2 MiB aligned) or `hugetlb` (guest
    /// RAM in reserved 2 MiB pages; docs/memory-backing.md). Default:
    /// `thp`, or `anon` where the host's THP policy is `never`.
    #[arg(long, value_enum)]
    pub memory_backing: Option<MemoryBacking>,
    /// Print start-up figures: process start to the first KVM_RUN, the
    /// memory backing, and the resident memory when the guest is over.
    #[arg(long, short = 'v')]
    pub verbose: bool,
}

fn parse_memory_mode(s: &str) -> Result<WindowMode, String> {
    WindowMode::parse(s).ok_or_else(|| format!("{s:?}: expected native, trapped or timed"))
}

pub use runner::size::parse_size;

/// Smallest guest that can hold a kernel and initramfs.
const MIN_MEMORY: u64 = 64 << 20;

/// Turns validated arguments into a machine configuration, checking what
/// needs the filesystem or host. Errors name the offending flag and value.
pub fn build_config(args: &RunArgs) -> Result<VmConfig, String> {
    if args.memory < MIN_MEMORY || !args.memory.is_multiple_of(4096) {
        return Err(format!(
            "--memory {}: must be a multiple of 4 KiB and at least 64M",
            args.memory
        ));
    }
    // Guest RAM is mapped without reserving it (untouched pages cost
    // nothing), so it may exceed the host's; it must fit the guest's
    // physical address space.
    let limits = host::guest_address_limits();
    if crate::memory::ram_end(args.memory) > limits.address_space_end() {
        return Err(format!(
            "--memory {} MiB: beyond the guest's {}-bit physical address space",
            args.memory >> 20,
            limits.phys_addr_bits
        ));
    }
    let memory_backing = args
        .memory_backing
        .unwrap_or_else(MemoryBacking::host_default);
    memory_backing.check_host(args.memory)?;
    let (kernel, initrd) = match (&args.kernel, &args.initrd) {
        (Some(k), i) => (k.clone(), i.clone()),
        (None, Some(_)) => return Err("--initrd needs --kernel".into()),
        (None, None) => {
            let img =
                images::find(&args.guest).map_err(|e| format!("--guest {}: {e}", args.guest))?;
            (img.kernel, Some(img.initrd))
        }
    };
    let kernel = if kernel.is_dir() {
        runner::manifest::find_build_tree_image(&kernel).ok_or_else(|| {
            format!(
                "--kernel {}: a folder without arch/x86/boot/bzImage (not a built kernel tree)",
                kernel.display()
            )
        })?
    } else if kernel.is_file() {
        kernel
    } else {
        return Err(format!("--kernel {}: no such file", kernel.display()));
    };
    let mut initrd_size = 0;
    if let Some(i) = &initrd {
        if !i.is_file() {
            return Err(format!("--initrd {}: no such file", i.display()));
        }
        initrd_size = std::fs::metadata(i).map(|m| m.len()).unwrap_or(0);
    }
    let script = args
        .script
        .as_ref()
        .map(|p| std::fs::read(p).map_err(|e| format!("--script {}: {e}", p.display())))
        .transpose()?;
    let modules = match &args.modules {
        None => None,
        Some(dir) => {
            let room = crate::boot::max_initrd_size(args.memory)
                .saturating_sub(initrd_size)
                .saturating_sub(script.as_ref().map_or(0, |s| s.len() as u64 + 512));
            let archive = crate::modules::ModuleTree::find(dir)
                .and_then(|t| t.archive(room))
                .map_err(|e| format!("--modules {}: {e}", dir.display()))?;
            Some(archive)
        }
    };
    let mut cmdline = if args.cmdline.trim().is_empty() {
        DEFAULT_CMDLINE.to_string()
    } else {
        format!("{DEFAULT_CMDLINE} {}", args.cmdline.trim())
    };
    if args.root_share {
        cmdline.push_str(&format!(
            " {}={}",
            crate::virtio::ROOT_SHARE_PARAM,
            crate::virtio::ROOT_SHARE_TAG
        ));
    }
    let disks = args
        .disks
        .iter()
        .map(|d| crate::virtio::DiskSpec::parse(d))
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(d) = disks.iter().find(|d| !d.path.is_file()) {
        return Err(format!("--disk {}: no such file", d.path.display()));
    }
    let mut shares = args
        .shares
        .iter()
        .map(|s| crate::virtio::ShareSpec::parse(s))
        .collect::<Result<Vec<_>, _>>()?;
    if args.root_share {
        shares.push(crate::virtio::ShareSpec::host_root());
    }
    if let Some(s) = shares.iter().find(|s| !s.dir.is_dir()) {
        return Err(format!(
            "--share {}:{}: {} is not a directory",
            s.dir.display(),
            s.tag,
            s.dir.display()
        ));
    }
    if let Some(pair) = shares
        .iter()
        .enumerate()
        .find_map(|(i, a)| shares[..i].iter().find(|b| b.tag == a.tag).map(|_| a))
    {
        return Err(format!("--share: tag {} is given twice", pair.tag));
    }
    let virtiofsd = if shares.is_empty() {
        None
    } else {
        Some(crate::vhost_user::virtiofsd::find(
            args.virtiofsd.as_deref(),
        )?)
    };
    if disks.len() + shares.len() > crate::virtio::MAX_DISKS {
        return Err(format!(
            "--disk and --share: {} devices given, at most {} fit on the root bus",
            disks.len() + shares.len(),
            crate::virtio::MAX_DISKS
        ));
    }
    let topology = if args.no_cxl {
        None
    } else {
        let mut t = load_topology(args.topology.as_deref())?;
        if let Some(mode) = args.memory_mode {
            for w in &mut t.windows {
                w.mode = mode;
            }
        }
        Some(t)
    };
    if args.no_cxl && args.memory_mode.is_some() {
        return Err("--memory-mode: needs a CXL topology (not --no-cxl)".into());
    }
    let timed = topology
        .as_ref()
        .is_some_and(|t| t.windows.iter().any(|w| w.mode == WindowMode::Timed));
    if args.host_time && !timed {
        return Err(
            "--host-time: no window is timed (give --memory-mode timed, or mode = \"timed\" \
             in a [[window]] of the topology)"
                .into(),
        );
    }
    if let Some(p) = &args.stats {
        if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
            if !dir.is_dir() {
                return Err(format!(
                    "--stats {}: no such directory {}",
                    p.display(),
                    dir.display()
                ));
            }
        }
    }
    Ok(VmConfig {
        topology,
        vcpus: args.vcpus,
        mem_size: args.memory,
        kernel,
        initrd,
        cmdline,
        script,
        modules,
        show_hypervisor: args.show_hypervisor,
        serial_log: args.serial_log.clone(),
        timeout: args.timeout.map(std::time::Duration::from_secs),
        check_host: !args.no_kvm_check,
        disks,
        shares,
        virtiofsd,
        seccomp: args.seccomp,
        api_socket: args.api_socket.clone(),
        stats: args.stats.clone(),
        calibration_samples: args.calibration_samples,
        virtual_clock: args.virtual_clock,
        host_time: args.host_time,
        memory_backing,
    })
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => run(&args),
        Command::Check(args) => check(&args),
        Command::Test(args) => test(&args),
        Command::Ctl(args) => crate::ctl_cmd::ctl(&args),
        Command::Calibrate(args) => crate::ctl_cmd::calibrate_cmd(&args),
    }
}

fn test(args: &runner::cli::TestArgs) -> ExitCode {
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("cxlvmm test: error: cannot find the cxlvmm binary: {e}");
            return ExitCode::from(runner::verdict::EXIT_CONFIG);
        }
    };
    let find_guest = |variant: &str| images::find(variant).map(|i| (i.kernel, i.initrd));
    ExitCode::from(runner::cli::main(
        args,
        &runner::cli::Host {
            exe,
            find_guest: &find_guest,
        },
    ))
}

/// Writes a report to stdout. A reader that went away (`cxlvmm check |
/// head`) ends the output quietly, as it does for other tools; `println!`
/// would panic there.
fn print_out(text: &str) -> ExitCode {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cxlvmm: error: writing the report: {e}");
            ExitCode::from(1)
        }
    }
}

fn check(args: &CheckArgs) -> ExitCode {
    match load_topology(args.topology.as_deref()) {
        Ok(t) if args.json => match serde_json::to_string(&CheckReport::new(&t)) {
            Ok(json) => print_out(&format!("{json}\n")),
            Err(e) => {
                eprintln!("cxlvmm: error: topology as JSON: {e}");
                ExitCode::from(1)
            }
        },
        Ok(t) => print_out(&format!(
            "{t}{}",
            fabric::dma::describe(&t, &fabric::dma::path_table(&t))
        )),
        Err(e) => {
            eprintln!("cxlvmm: error: {e}");
            ExitCode::from(2)
        }
    }
}

fn run(args: &RunArgs) -> ExitCode {
    let cfg = match build_config(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("cxlvmm: error: {e}");
            return ExitCode::from(2);
        }
    };
    if args.print_cmdline {
        println!("{}", cfg.cmdline);
        return ExitCode::SUCCESS;
    }
    let probe = args
        .verbose
        .then(crate::startup::MemoryProbe::open)
        .flatten();
    if args.verbose {
        verbose_start(&cfg);
    }
    let result = vm::run(&cfg);
    if args.verbose {
        verbose_end(probe.as_ref());
    }
    match result {
        Ok(outcome) => {
            match outcome.reason {
                ExitReason::PowerOff => log::info!("guest powered off"),
                ExitReason::Reset => eprintln!("cxlvmm: guest reset"),
                ExitReason::Quit => eprintln!("cxlvmm: quit from the console"),
                ExitReason::Timeout => eprintln!("cxlvmm: --timeout expired, guest stopped"),
                _ => {}
            }
            if outcome.status == vm::STATUS_NO_SCRIPT_STATUS {
                eprintln!(
                    "cxlvmm: the guest stopped ({:?}) without reporting the script's exit status",
                    outcome.reason
                );
            }
            ExitCode::from(outcome.status as u8)
        }
        Err(e) => {
            eprintln!("cxlvmm: error: {e}");
            ExitCode::from(1)
        }
    }
}

/// `--verbose`, before the machine is built: what it is made of.
fn verbose_start(cfg: &VmConfig) {
    let host = host::total_memory().unwrap_or(0);
    eprintln!(
        "cxlvmm: {} vCPUs, {} MiB guest RAM ({}; host has {} MiB){}",
        cfg.vcpus,
        cfg.mem_size >> 20,
        cfg.memory_backing.name(),
        host >> 20,
        if cfg.mem_size > host && host > 0 {
            ": pages the guest never touches take no host memory"
        } else {
            ""
        }
    );
    if let Some(note) = cfg.memory_backing.device_memory_note() {
        eprintln!("cxlvmm: {note}");
    }
}

/// `--verbose`, when the guest is over: start-up time and host memory.
fn verbose_end(probe: Option<&crate::startup::MemoryProbe>) {
    match crate::startup::first_run() {
        Some(t) => eprintln!(
            "cxlvmm: start-up {:.1} ms (process start to the first KVM_RUN)",
            t.as_secs_f64() * 1e3
        ),
        None => eprintln!("cxlvmm: start-up: no vCPU ran"),
    }
    if let Some(r) = probe.and_then(|p| p.read()) {
        eprintln!(
            "cxlvmm: resident memory {} MiB at exit, {} MiB at peak",
            r.now_kib >> 10,
            r.peak_kib >> 10
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_cmdline_comes_first_and_user_part_is_appended() {
        let dir = std::env::temp_dir().join(format!("cxlvmm-cli-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let k = dir.join("kernel");
        std::fs::write(&k, b"x").unwrap();
        let args =
            RunArgs::parse_from_run(&["--kernel", k.to_str().unwrap(), "--cmdline", "loglevel=7"]);
        let cfg = build_config(&args).unwrap();
        assert!(cfg.cmdline.starts_with(DEFAULT_CMDLINE));
        assert!(cfg.cmdline.ends_with(" loglevel=7"));
        assert!(cfg.check_host);
        let bad = RunArgs::parse_from_run(&["--kernel", "/nonexistent/k"]);
        assert!(build_config(&bad)
            .unwrap_err()
            .contains("--kernel /nonexistent/k"));
        let bad = RunArgs::parse_from_run(&["--kernel", k.to_str().unwrap(), "--memory", "1M"]);
        assert!(build_config(&bad).unwrap_err().contains("--memory"));
        // 4 PiB: past any x86 guest's 52-bit physical address space.
        let bad = RunArgs::parse_from_run(&["--kernel", k.to_str().unwrap(), "--memory", "4096T"]);
        assert!(build_config(&bad)
            .unwrap_err()
            .contains("physical address space"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn kernel_build_tree_and_modules_are_resolved_or_named_in_errors() {
        let dir = std::env::temp_dir().join(format!("cxlvmm-cli-mods-{}", std::process::id()));
        let tree = dir.join("linux");
        std::fs::create_dir_all(tree.join("arch/x86/boot")).unwrap();
        std::fs::create_dir_all(tree.join("include/config")).unwrap();
        std::fs::create_dir_all(tree.join("drivers")).unwrap();
        let t = tree.to_str().unwrap();

        // A tree without a bzImage yet: named as --kernel.
        let err = build_config(&RunArgs::parse_from_run(&["--kernel", t])).unwrap_err();
        assert!(err.starts_with(&format!("--kernel {t}:")), "{err}");
        assert!(err.contains("arch/x86/boot/bzImage"), "{err}");

        std::fs::write(tree.join("arch/x86/boot/bzImage"), b"x").unwrap();
        let cfg = build_config(&RunArgs::parse_from_run(&["--kernel", t])).unwrap();
        assert_eq!(cfg.kernel, tree.join("arch/x86/boot/bzImage"));
        assert!(cfg.modules.is_none());

        // --modules with no release yet, then with one but no modules.
        let run = |extra: &[&str]| {
            let mut a = vec!["--kernel", t];
            a.extend_from_slice(extra);
            build_config(&RunArgs::parse_from_run(&a))
        };
        let err = run(&["--modules", t]).unwrap_err();
        assert!(err.starts_with(&format!("--modules {t}:")), "{err}");
        assert!(err.contains("no kernel release found"), "{err}");
        std::fs::write(tree.join("include/config/kernel.release"), b"6.12.0-dev\n").unwrap();
        let err = run(&["--modules", t]).unwrap_err();
        assert!(err.contains("no module files"), "{err}");
        let err = run(&["--modules", "/nonexistent/m"]).unwrap_err();
        assert_eq!(err, "--modules /nonexistent/m: no such folder");

        // A module bigger than a 64M guest can take beside its kernel.
        std::fs::write(tree.join("drivers/x.ko"), b"elf").unwrap();
        let cfg = run(&["--modules", t]).unwrap();
        assert!(cfg.modules.unwrap().starts_with(b"070701"));
        let big = std::fs::File::create(tree.join("drivers/big.ko")).unwrap();
        big.set_len(80 << 20).unwrap();
        let err = run(&["--modules", t, "--memory", "64M"]).unwrap_err();
        assert!(err.starts_with(&format!("--modules {t}:")), "{err}");
        assert!(err.contains("fits in guest memory"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn shares_are_checked_and_named_in_errors() {
        let dir = std::env::temp_dir().join(format!("cxlvmm-cli-share-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let k = dir.join("kernel");
        std::fs::write(&k, b"x").unwrap();
        let (k, d) = (k.to_str().unwrap(), dir.to_str().unwrap());
        let fake_daemon = k; // any file will do until it is started
        let run = |extra: &[&str]| {
            let mut a = vec!["--kernel", k, "--virtiofsd", fake_daemon];
            a.extend_from_slice(extra);
            build_config(&RunArgs::parse_from_run(&a))
        };
        let cfg = run(&[
            "--share",
            &format!("{d}:src"),
            "--share",
            &format!("{d}:ro1:ro"),
        ])
        .unwrap();
        assert_eq!(cfg.shares.len(), 2);
        assert!(!cfg.shares[0].read_only && cfg.shares[1].read_only);
        assert_eq!(cfg.shares[1].tag, "ro1");
        let err = run(&["--share", &format!("{k}:t")]).unwrap_err();
        assert_eq!(err, format!("--share {k}:t: {k} is not a directory"));
        let err = run(&["--share", d]).unwrap_err();
        assert!(err.contains("expected HOST_DIR:TAG"), "{err}");
        let long = format!("{d}:{}", "x".repeat(37));
        assert!(run(&["--share", &long])
            .unwrap_err()
            .contains("longer than 36 bytes"));
        let err = run(&[
            "--share",
            &format!("{d}:a"),
            "--share",
            &format!("{d}:a:ro"),
        ])
        .unwrap_err();
        assert_eq!(err, "--share: tag a is given twice");
        let err = build_config(&RunArgs::parse_from_run(&[
            "--kernel",
            k,
            "--virtiofsd",
            "/nonexistent/virtiofsd",
            "--share",
            &format!("{d}:a"),
        ]))
        .unwrap_err();
        assert_eq!(err, "--virtiofsd /nonexistent/virtiofsd: no such file");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn disks_are_checked_and_named_in_errors() {
        let dir = std::env::temp_dir().join(format!("cxlvmm-cli-disk-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let k = dir.join("kernel");
        let img = dir.join("a.img");
        std::fs::write(&k, b"x").unwrap();
        std::fs::write(&img, [0u8; 512]).unwrap();
        let (k, img) = (k.to_str().unwrap(), img.to_str().unwrap());
        let ro = format!("{img}:ro");
        let args = RunArgs::parse_from_run(&["--kernel", k, "--disk", img, "--disk", &ro]);
        let cfg = build_config(&args).unwrap();
        assert_eq!(cfg.disks.len(), 2);
        assert!(!cfg.disks[0].read_only && cfg.disks[1].read_only);
        assert_eq!(cfg.disks[1].path, std::path::Path::new(img));
        let bad = RunArgs::parse_from_run(&["--kernel", k, "--disk", "/nonexistent/d.img:ro"]);
        assert_eq!(
            build_config(&bad).unwrap_err(),
            "--disk /nonexistent/d.img: no such file"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn memory_mode_overrides_every_window_and_bad_values_are_named() {
        let dir = std::env::temp_dir().join(format!("cxlvmm-cli-mode-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let k = dir.join("kernel");
        std::fs::write(&k, b"x").unwrap();
        let topo = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/direct.toml");
        let kernel = k.to_str().unwrap();
        let args = RunArgs::parse_from_run(&[
            "--kernel",
            kernel,
            "--topology",
            topo,
            "--memory-mode",
            "timed",
        ]);
        let cfg = build_config(&args).unwrap();
        let t = cfg.topology.unwrap();
        assert_eq!(t.windows.len(), 2);
        assert!(t.windows.iter().all(|w| w.mode == WindowMode::Timed));
        // Without the flag, the topology's own modes (native by default).
        let args = RunArgs::parse_from_run(&["--kernel", kernel, "--topology", topo]);
        let t = build_config(&args).unwrap().topology.unwrap();
        assert!(t.windows.iter().all(|w| w.mode == WindowMode::Native));
        let err = Cli::try_parse_from(["cxlvmm", "run", "--memory-mode", "fast"])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("--memory-mode") && err.contains("\"fast\""),
            "{err}"
        );
        let args =
            RunArgs::parse_from_run(&["--kernel", kernel, "--no-cxl", "--memory-mode", "trapped"]);
        assert!(build_config(&args).unwrap_err().contains("--memory-mode"));
        // --host-time applies to timed windows only, and not beside the clock.
        let with_topology = |extra: &[&str]| {
            let mut a = vec!["--kernel", kernel, "--topology", topo];
            a.extend_from_slice(extra);
            RunArgs::parse_from_run(&a)
        };
        let args = with_topology(&["--host-time"]);
        assert!(build_config(&args)
            .unwrap_err()
            .starts_with("--host-time: no window is timed"));
        let args = with_topology(&["--memory-mode", "timed", "--host-time"]);
        assert!(build_config(&args).unwrap().host_time);
        let err = Cli::try_parse_from(["cxlvmm", "run", "--host-time", "--virtual-clock"])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("--host-time") && err.contains("--virtual-clock"),
            "{err}"
        );
        let args =
            RunArgs::parse_from_run(&["--kernel", kernel, "--stats", "/nonexistent/dir/s.json"]);
        assert!(build_config(&args)
            .unwrap_err()
            .contains("--stats /nonexistent/dir/s.json"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn check_json_lists_accelerators_with_their_dma_paths() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/accelerators.toml");
        let t = load_topology(Some(std::path::Path::new(path))).unwrap();
        let j = serde_json::to_value(CheckReport::new(&t)).unwrap();
        let accs = j["accelerators"].as_array().unwrap();
        assert_eq!(accs.len(), 3);
        assert_eq!(accs[0]["id"], "gpu0");
        assert_eq!(accs[0]["vram"], 64 << 20);
        assert_eq!(accs[0]["queues"], 4);
        // Host memory, the two other accelerators, the type-3 device.
        let paths = accs[0]["paths"].as_array().unwrap();
        let class = |peer: &str| {
            paths.iter().find(|p| p["peer"] == peer).unwrap()["class"]
                .as_str()
                .unwrap()
                .to_string()
        };
        assert_eq!(paths.len(), 4);
        assert_eq!(class("host memory"), "host bridge");
        assert_eq!(class("gpu1"), "switch-local");
        assert_eq!(class("gpu2"), "root complex");
        assert_eq!(class("mem0"), "host bridge");
        let ps = |peer: &str| {
            paths.iter().find(|p| p["peer"] == peer).unwrap()["small_write_ps"]
                .as_u64()
                .unwrap()
        };
        assert!(ps("gpu1") < ps("gpu2"));
    }

    #[test]
    fn check_json_has_every_topology_field_and_the_path_latency() {
        let t = Topology::default_topology();
        let report = serde_json::to_value(CheckReport::new(&t)).unwrap();
        let plain = serde_json::to_value(&t).unwrap();
        let keys = |v: &serde_json::Value| {
            let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
            k.sort();
            k
        };
        // A field added to Topology must reach the report too.
        assert_eq!(keys(&report), keys(&plain));
        // What tests/e2e/check_cxl.py reads.
        let d = &report["type3"][1];
        assert_eq!(d["id"], "mem1");
        assert_eq!(d["serial"], 2);
        assert_eq!(d["volatile"], 256u64 << 20);
        assert_eq!(d["persistent"], 0);
        assert_eq!(d["lsa"], 0);
        let path = fabric::hmat::path_performance(&t, 1).unwrap().total;
        assert_eq!(d["read_latency_ps"], path.read_latency_ps);
        assert_eq!(d["write_latency_ps"], path.write_latency_ps);
        assert_eq!(report["host_bridges"][0]["root_ports"], 1);
        assert_eq!(report["switches"][0]["downstream_ports"], 2);
        let w = &report["windows"][0];
        assert_eq!(
            (w["id"].as_str(), w["size"].as_u64()),
            (Some("w0"), Some(512 << 20))
        );
        assert_eq!(
            (w["ways"].as_u64(), w["granularity"].as_u64()),
            (Some(1), Some(4096))
        );
        assert_eq!(
            (w["ram"].as_bool(), w["pmem"].as_bool()),
            (Some(true), Some(false))
        );
        assert_eq!(w["targets"].as_array().unwrap().len(), 1);
        assert_eq!(report["type3"][0]["link"]["flit"], "68B");
    }

    impl RunArgs {
        fn parse_from_run(extra: &[&str]) -> RunArgs {
            let mut argv = vec!["cxlvmm", "run"];
            argv.extend_from_slice(extra);
            match Cli::parse_from(argv).command {
                Command::Run(a) => a,
                _ => unreachable!("parsed a run command"),
            }
        }
    }
}
