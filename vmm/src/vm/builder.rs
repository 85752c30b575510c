//! Putting the machine together, one kind of hardware per step.

use std::fs::File;
use std::sync::{Arc, Mutex};

use crate::console_ring::ConsoleRing;
use devices::cxl::backing::Type3Backing;
use devices::legacy::{AcpiPm, Cmos, SerialPort, TestExit, I8042, PM_IO_LEN};
use devices::pci::{Bdf, ConfigIo, Ecam, HostBridge, PciRoot};
use devices::{Bus, ExitRequest};
use fabric::topology::Topology;
use kvm_bindings::{
    kvm_pit_config, kvm_userspace_memory_region, KVM_MAX_CPUID_ENTRIES, KVM_PIT_SPEAKER_DUMMY,
};
use kvm_ioctls::{Kvm, VcpuFd, VmFd};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryRegion, GuestRegionMmap};
use vmm_sys_util::eventfd::EventFd;

use super::machine::Machine;
use super::{io_err, kvm_err, VmConfig, VmError};
use crate::accel::clock::MachineClock;
use crate::accel::memory::{BusMemory, CxlMemory};
use crate::accel::{self, AccelMachine, Accelerators};
use crate::api::ApiContext;
use crate::boot::{self, BootSpec, EntryPoint};
use crate::console::{Console, ConsoleOut};
use crate::cpu::{self, CpuidOptions};
use crate::cxl::plan::CxlPlan;
use crate::cxl::regions::{KvmSlots, Layout, RegionMapper, WindowTrap};
use crate::guest_map::guard::SlotGuard;
use crate::irq::GsiRouter;
use crate::layout::*;
use crate::memory::{e820_map, ram_end, ram_ranges, GuestMemory, E820_RAM};
use crate::memory_backing::MemoryBacking;
use crate::timed::{self, TimedMemory};
use crate::vclock::calibrate::CalibrationReport;
use crate::vclock::shared::SharedClock;
use crate::{acpi, cxl, host};
use devices::cxl::mailbox::DeviceRegisters;
use fabric::Engine;

/// A machine being assembled. [`MachineBuilder::new`] gives the parts every
/// machine has; each `add_*` step adds one kind of device, wiring it to the
/// buses, the PCI segment and the interrupt controller and leaving its ACPI
/// description here; [`MachineBuilder::build`] finishes the platform.
pub struct MachineBuilder<'a> {
    cfg: &'a VmConfig,
    kvm: Kvm,
    vm: Arc<VmFd>,
    mem: GuestMemory,
    irq: GsiRouter,
    exit: ExitRequest,
    pio: Bus,
    mmio: Arc<Bus>,
    /// The PCI segment; config access to it is set up by `build`.
    pci: PciRoot,
    /// Where the CXL hierarchy of `--topology` goes, if there is one.
    cxl_plan: Option<CxlPlan>,
    /// Where slots over device memory may go (`guest_map::guard`).
    slot_guard: Arc<SlotGuard>,
    console: Option<Console>,
    acpi: AcpiParts,
    /// Kept alive while the guest runs: decoder changes are reported to it.
    regions: Option<Arc<RegionMapper<KvmSlots>>>,
    /// The type-3 devices' media, synced when the guest is over.
    backings: Vec<Arc<Type3Backing>>,
    /// The fabric timing model of `--topology`, shared by everything that
    /// books traffic on it (the accelerators' DMA engines).
    engine: Option<Arc<Mutex<fabric::Engine>>>,
    /// The accelerators and their completion timer.
    accelerators: Option<Accelerators>,
    /// The machine's guest clock: host time until `build` binds the
    /// virtual clock, if any. The accelerators, timed memory without a
    /// virtual clock (`--host-time`) and the control API all read this one,
    /// so the traffic they book on the shared engine has one time base.
    guest_clock: Arc<MachineClock>,
    /// The timed windows' data path, if any window is `timed`.
    timed: Option<Arc<TimedMemory>>,
    /// The type-3 devices' mailbox registers, for the control API.
    type3_registers: Vec<Arc<Mutex<DeviceRegisters>>>,
}

/// What device steps add to the firmware tables.
#[derive(Default)]
struct AcpiParts {
    /// The topology SRAT describes (CXL generic ports), if any.
    topology: Option<Topology>,
    /// Tables listed in the XSDT after SRAT, in order.
    tables: Vec<Vec<u8>>,
    /// AML for the DSDT body.
    dsdt: Vec<u8>,
    /// The highest bus a host bridge decodes (MCFG's end), above PCI0's.
    cxl_last_bus: Option<u8>,
}

impl<'a> MachineBuilder<'a> {
    /// The KVM VM, guest RAM, the interrupt controller; empty buses and a
    /// PCI segment holding only its host bridge.
    pub fn new(cfg: &'a VmConfig) -> Result<Self, VmError> {
        let kvm = Kvm::new().map_err(VmError::OpenKvm)?;
        if cfg.check_host && host::kvm_is_paravirtual() && !host::cpu_has_hw_virt() {
            return Err(VmError::ParavirtKvm(
                std::env::args().collect::<Vec<_>>().join(" "),
            ));
        }
        let vm = Arc::new(kvm.create_vm().map_err(kvm_err("create VM"))?);
        // Pages KVM needs for its own use on Intel (TSS, identity map), at
        // the top of the 32-bit hole where `layout` keeps them free.
        vm.set_tss_address(KVM_TSS_START as usize)
            .map_err(kvm_err("set TSS address"))?;
        vm.set_identity_map_address(KVM_IDENTITY_MAP_START)
            .map_err(kvm_err("set identity map address"))?;
        if crate::cpuid_vector::needed(cfg.topology.as_ref()) && sse_emulation_requested() {
            exit_on_emulation_failure(&vm)?;
        }
        let irq = interrupt_controller(&vm)?;
        let mem = memory(
            &vm,
            cfg.mem_size,
            cfg.memory_backing,
            !cfg.shares.is_empty(),
        )?;
        let exit = ExitRequest::new().map_err(io_err("exit eventfd"))?;
        // Where the CXL hierarchy goes, and a check that nothing in the
        // guest's physical map overlaps, before any device exists.
        let cxl_plan = match &cfg.topology {
            Some(t) => Some(cxl::plan::plan(
                t,
                (CXL_MMIO32_START, CXL_MMIO32_END),
                ram_end(cfg.mem_size),
            )?),
            None => None,
        };
        let map = crate::guest_map::guest_map(
            cfg.mem_size,
            cfg.topology.as_ref().zip(cxl_plan.as_ref()),
        )?;
        // Every slot the guest's registers ask for is checked against it.
        let slot_guard = SlotGuard::new(map);
        // One timing engine for the machine, its windows where the plan
        // put them, so that an HPA decodes the same in the model.
        let engine = cfg.topology.as_ref().map(|t| {
            let floor = high_mmio_start(ram_end(cfg.mem_size));
            Arc::new(Mutex::new(fabric::Engine::with_layout(
                t,
                t.fabric.seed,
                floor,
            )))
        });
        let mmio = Arc::new(Bus::new());
        // BARs decode anywhere in the 32-bit PCI window (the main root
        // bridge's part and the CXL host bridges'); elsewhere, nothing.
        let mut pci = PciRoot::new(mmio.clone(), vec![(PCI_MMIO32_START, PCI_MMIO32_SIZE)]);
        pci.add(Bdf::new(0, 0, 0), HostBridge::default());
        Ok(Self {
            cfg,
            kvm,
            vm,
            mem,
            irq,
            exit,
            pio: Bus::new(),
            mmio,
            pci,
            cxl_plan,
            slot_guard,
            console: None,
            acpi: AcpiParts::default(),
            regions: None,
            backings: Vec::new(),
            engine,
            accelerators: None,
            timed: None,
            guest_clock: Arc::new(MachineClock::default()),
            type3_registers: Vec::new(),
        })
    }

    /// COM1 (the console), the i8042's reset line, the CMOS RTC, the ACPI PM
    /// registers and the test-exit port.
    pub fn add_legacy_devices(&mut self) -> Result<(), VmError> {
        let log = self
            .cfg
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
        self.vm
            .register_irqfd(&com1_irq, IRQ_COM1)
            .map_err(kvm_err("route COM1 interrupt"))?;
        let console: Console =
            Arc::new(Mutex::new(SerialPort::new(com1_irq, ConsoleOut::new(log))));
        let exit = &self.exit;
        self.pio.insert(console.clone(), PORT_COM1, PORT_COM1_LEN)?;
        self.pio.insert(
            Arc::new(Mutex::new(I8042::new(exit.clone()))),
            PORT_I8042,
            PORT_I8042_LEN,
        )?;
        self.pio
            .insert(Arc::new(Mutex::new(Cmos::new())), PORT_CMOS, PORT_CMOS_LEN)?;
        self.pio.insert(
            Arc::new(Mutex::new(AcpiPm::new(exit.clone()))),
            PORT_PM_BASE,
            PM_IO_LEN,
        )?;
        self.pio.insert(
            Arc::new(TestExit::new(exit.clone())),
            PORT_TEST_EXIT,
            PORT_TEST_EXIT_LEN,
        )?;
        self.console = Some(console);
        Ok(())
    }

    /// The CXL fabric of `--topology`, if any: its PCI functions (root
    /// ports, switches, type-3 devices) with BARs and interrupts, the host
    /// bridges' component registers, the windows' trapped path and the
    /// region map behind it, and CEDT, HMAT and the host bridges' AML.
    pub fn add_cxl_hierarchy(&mut self) -> Result<(), VmError> {
        let (Some(topo), Some(plan)) = (&self.cfg.topology, &self.cxl_plan) else {
            return Ok(());
        };
        let devs = cxl::build::build(topo, plan, &mut self.pci, &self.mmio, &self.irq)?;
        // Trapped and timed windows' regions never get a memory slot.
        let windows = plan.window_ranges();
        let slots = KvmSlots::new(self.vm.clone(), devs.backings.clone())
            .memory_backing(self.cfg.memory_backing)
            .serve_in_vmm(timed::setup::vmm_served_windows(topo, plan))
            .gather_in(&windows);
        let mapper = RegionMapper::new(
            Layout::new(topo, plan),
            devs.decoders,
            slots,
            self.slot_guard.clone(),
        );
        // Window addresses not mapped natively exit to the VMM and are
        // decoded here (timed windows' accesses are taken by the vCPU
        // thread first, to be timed).
        for w in &plan.windows {
            let trap = WindowTrap::new(w.base, mapper.tree(), devs.backings.clone());
            self.mmio.insert(Arc::new(trap), w.base, w.size)?;
        }
        if let Some(engine) = &self.engine {
            self.timed = timed::setup::timed_memory(
                topo,
                plan,
                mapper.tree(),
                &devs.backings,
                engine.clone(),
                self.guest_clock.clone(),
            )
            .map_err(io_err("map the type-3 media for timed memory"))?
            .map(Arc::new);
        }
        self.type3_registers = devs.registers;
        self.regions = Some(mapper);
        self.acpi.topology = Some(topo.clone());
        self.backings = devs.backings;
        self.acpi.tables.push(cxl::acpi::cedt(topo, plan));
        self.acpi.tables.push(cxl::acpi::hmat(topo));
        self.acpi.dsdt.extend(cxl::acpi::dsdt_objects(topo, plan));
        self.acpi.cxl_last_bus = plan.host_bridges.iter().map(|hb| hb.last_bus).max();
        Ok(())
    }

    /// A virtio-blk function on the root bus for each `--disk` and a
    /// virtio-fs function for each `--share` (its virtiofsd started and
    /// connected first), queues in guest RAM, MSI-X vectors routed through
    /// KVM.
    pub fn add_virtio_devices(&mut self) -> Result<(), VmError> {
        crate::virtio::add_disks(&self.cfg.disks, &self.mem, &mut self.pci, &self.irq)?;
        if let Some(virtiofsd) = &self.cfg.virtiofsd {
            crate::virtio::add_shares(
                &self.cfg.shares,
                virtiofsd,
                self.cfg.disks.len(),
                &self.mem,
                &mut self.pci,
                &self.irq,
            )?;
        }
        Ok(())
    }

    /// The topology's accelerators: PCI functions placed by the CXL plan,
    /// DMA into guest RAM, CXL windows and each other's VRAM, timed by the
    /// shared engine, completions delivered by a timer thread. After
    /// [`MachineBuilder::add_cxl_hierarchy`], whose region map the DMA
    /// decodes through.
    pub fn add_accelerators(&mut self) -> Result<(), VmError> {
        let (Some(topo), Some(plan), Some(engine)) =
            (&self.cfg.topology, &self.cxl_plan, &self.engine)
        else {
            return Ok(());
        };
        if topo.accelerators.is_empty() {
            return Ok(());
        }
        let cxl = self.regions.as_ref().map(|m| CxlMemory {
            windows: plan.window_ranges(),
            tree: m.tree(),
            backings: self.backings.clone(),
        });
        let memory = Arc::new(BusMemory::new(self.mem.clone(), cxl));
        let clock = self.guest_clock.clone();
        let machine = AccelMachine {
            vm: self.vm.clone(),
            guard: self.slot_guard.clone(),
            apertures: vec![(PCI_MMIO32_START, PCI_MMIO32_SIZE)],
            memory,
            engine: engine.clone(),
            clock,
            memory_backing: self.cfg.memory_backing,
        };
        let accels = accel::build(topo, plan, &mut self.pci, &self.irq, machine)?;
        self.accelerators = Some(accels);
        Ok(())
    }

    /// Finishes the platform: configuration access to the PCI segment (ECAM
    /// and 0xCF8/0xCFC), the ACPI tables, the kernel and initrd, the vCPUs.
    pub fn build(self) -> Result<Machine, VmError> {
        let rsdp = self.write_acpi_tables()?;
        let vcpus = self.create_vcpus()?;
        let served_windows: Arc<[(u64, u64)]> = self
            .served_windows()
            .map_or_else(|| Arc::from([]), Arc::from);
        let boot_cpu = vcpus
            .first()
            .ok_or_else(|| VmError::Fatal("no vCPUs".into()))?;
        // The guest cannot measure its TSC's rate in every host (the rig's
        // L2 has no timer that calibrates it): it is told.
        let tsc_khz = crate::vclock::tsc::khz(boot_cpu).ok();
        let clock = if (self.timed.is_some() && !self.cfg.host_time) || self.cfg.virtual_clock {
            Some(self.virtual_clock(boot_cpu, vcpus.len())?)
        } else {
            None
        };
        if let Some((c, _)) = &clock {
            self.guest_clock.bind(c.clone());
        }
        // On the virtual clock every exit to the VMM is hidden from the
        // guest; one that ends in KVM is not: console bytes stay exits of
        // their own there, as invisible to the guest as before.
        let console_ring = if clock.is_none() {
            ConsoleRing::enable(&self.vm, boot_cpu).map(Arc::new)
        } else {
            None
        };
        let entry = self.load_kernel(rsdp, tsc_khz)?;
        // Application processors wait for INIT/SIPI from the boot CPU.
        cpu::setup_long_mode(boot_cpu, &self.mem)?;
        cpu::setup_regs(boot_cpu, entry.rip, entry.zero_page)?;
        // No more functions join the segment from here on.
        let pci = Arc::new(self.pci);
        self.pio.insert(
            Arc::new(ConfigIo::new(pci.clone())),
            PORT_PCI_CONFIG,
            PORT_PCI_CONFIG_LEN,
        )?;
        self.mmio
            .insert(Arc::new(Ecam::new(pci)), ECAM_START, ECAM_SIZE)?;
        let console = self
            .console
            .ok_or_else(|| VmError::Fatal("no console: legacy devices were not added".into()))?;
        Ok(Machine {
            timeout: self.cfg.timeout,
            script: self.cfg.script.is_some(),
            _vm: self.vm,
            mem: self.mem,
            exit: self.exit,
            pio: self.pio,
            mmio: self.mmio,
            console,
            console_ring,
            regions: self.regions,
            backings: self.backings,
            accelerators: self.accelerators,
            vcpus,
            api: api_context(
                self.cfg,
                self.engine,
                self.type3_registers,
                self.timed.clone(),
                clock.as_ref().map(|(c, _)| c.clone()),
                self.guest_clock.clone(),
            ),
            timed: self.timed,
            served_windows,
            clock: clock.as_ref().map(|(c, _)| c.clone()),
            calibration: clock.map(|(_, r)| r),
            api_socket: self.cfg.api_socket.clone(),
            stats: self.cfg.stats.clone(),
        })
    }

    /// The CXL windows, when some of their memory may be served by exits
    /// (a trapped or timed window, or a granularity below a page).
    fn served_windows(&self) -> Option<Vec<(u64, u64)>> {
        let plan = self.cxl_plan.as_ref()?;
        crate::cpuid_vector::needed(self.cfg.topology.as_ref()).then(|| plan.window_ranges())
    }

    /// The virtual clock timed memory runs on, calibrated now; the
    /// calibration is shown to the user.
    fn virtual_clock(
        &self,
        boot_cpu: &VcpuFd,
        vcpus: usize,
    ) -> Result<(Arc<SharedClock>, CalibrationReport), VmError> {
        let (clock, report) = timed::setup::virtual_clock(
            &self.kvm,
            boot_cpu,
            vcpus,
            self.cfg.calibration_samples,
            crate::vcpu::kick_signal(),
        )
        .map_err(|e| VmError::Fatal(format!("virtual clock: {e}")))?;
        eprintln!("cxlvmm: {}", timed::setup::describe_calibration(&report));
        Ok((clock, report))
    }

    /// Writes the tables into the BIOS area; returns the RSDP's address.
    fn write_acpi_tables(&self) -> Result<u64, VmError> {
        let cfg = self.cfg;
        let mut extra_tables = vec![cxl::acpi::srat(
            cfg.vcpus,
            &ram_map(cfg.mem_size),
            self.acpi.topology.as_ref(),
        )];
        extra_tables.extend(self.acpi.tables.iter().cloned());
        let tables = acpi::build(&acpi::AcpiConfig {
            vcpus: cfg.vcpus,
            extra_tables,
            dsdt_extra: self.acpi.dsdt.clone(),
            last_bus: self.acpi.cxl_last_bus.unwrap_or(0).max(PCI0_LAST_BUS as u8),
        })?;
        for (addr, blob) in &tables.blobs {
            self.mem
                .write_slice(blob, GuestAddress(*addr))
                .map_err(|e| VmError::Fatal(format!("writing ACPI tables: {e}")))?;
        }
        Ok(tables.rsdp_addr)
    }

    /// Loads the kernel and the initrd (with the `--modules` and `--script`
    /// archives). The
    /// command line gets the TSC rate (`tsc_early_khz=`, arch/x86/kernel/
    /// tsc.c): a guest without a timer it can calibrate the TSC against
    /// (the rig's) would otherwise fall back to jiffies, and timed memory
    /// needs the guest on its TSC, the clock the VMM controls.
    fn load_kernel(&self, rsdp_addr: u64, tsc_khz: Option<u32>) -> Result<EntryPoint, VmError> {
        let cfg = self.cfg;
        let mut cmdline = cfg.cmdline.clone();
        if let Some(khz) = tsc_khz {
            cmdline.push_str(&format!(" tsc_early_khz={khz}"));
        }
        let mut initrd = cfg.initrd.as_deref().map(boot::read_initrd).transpose()?;
        if let Some(archive) = &cfg.modules {
            let initrd = initrd.get_or_insert_with(Vec::new);
            // An archive starts 4-byte aligned (init/initramfs.c).
            initrd.resize(initrd.len().next_multiple_of(4), 0);
            initrd.extend_from_slice(archive);
        }
        if let Some(script) = &cfg.script {
            let initrd = initrd.get_or_insert_with(Vec::new);
            crate::initramfs::append_script(initrd, script);
        }
        Ok(boot::load_kernel(
            &self.mem,
            &BootSpec {
                kernel: &cfg.kernel,
                initrd,
                cmdline: &cmdline,
                mem_size: cfg.mem_size,
                rsdp_addr,
            },
        )?)
    }

    /// The vCPUs, with CPUID, MSRs and LAPICs (the boot CPU's registers are
    /// set once the kernel is loaded).
    fn create_vcpus(&self) -> Result<Vec<VcpuFd>, VmError> {
        let cfg = self.cfg;
        let base_cpuid = self
            .kvm
            .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
            .map_err(kvm_err("get supported CPUID"))?;
        // 8-byte accesses to memory served by exits are checked against the
        // vCPU's registers (`vcpu::serve_checked`).
        let synced = if self.served_windows().is_some() {
            u64::try_from(self.vm.check_extension_int(kvm_ioctls::Cap::SyncRegs)).unwrap_or(0)
        } else {
            0
        };
        let mut vcpus = Vec::new();
        for i in 0..cfg.vcpus {
            let mut fd = self
                .vm
                .create_vcpu(u64::from(i))
                .map_err(kvm_err("create vCPU"))?;
            let mut cpuid = base_cpuid.clone();
            cpu::filter_cpuid(
                &mut cpuid,
                i,
                CpuidOptions {
                    vcpu_count: cfg.vcpus,
                    show_hypervisor: cfg.show_hypervisor,
                    hide_vector: crate::cpuid_vector::needed(cfg.topology.as_ref()),
                },
            );
            fd.set_cpuid2(&cpuid).map_err(kvm_err("set CPUID"))?;
            cpu::setup_msrs(&fd)?;
            cpu::setup_lapic(&fd)?;
            crate::vcpu::sync_exit_registers(&mut fd, synced);
            vcpus.push(fd);
        }
        Ok(vcpus)
    }
}

/// What the control API reaches, if there is a fabric to reach.
fn api_context(
    cfg: &VmConfig,
    engine: Option<Arc<Mutex<Engine>>>,
    type3: Vec<Arc<Mutex<DeviceRegisters>>>,
    timed: Option<Arc<TimedMemory>>,
    clock: Option<Arc<SharedClock>>,
    guest_clock: Arc<MachineClock>,
) -> Option<Arc<ApiContext>> {
    Some(Arc::new(ApiContext {
        topology: cfg.topology.clone()?,
        engine: engine?,
        type3,
        timed,
        clock,
        guest_clock,
    }))
}

/// Whether `CXLVMM_EMULATE_SSE=1` asks for the SSE moves KVM cannot
/// emulate on trapped and timed memory to be completed by cxlvmm
/// (`vector_mmio`). Opt-in while it is experimental: in the nested rig the
/// moves complete with the right values, but the guest has then
/// triple-faulted a few instructions later (docs/timed-mode.md).
fn sse_emulation_requested() -> bool {
    std::env::var("CXLVMM_EMULATE_SSE").is_ok_and(|v| v == "1")
}

/// Failed instruction emulations come back to cxlvmm with their bytes
/// instead of becoming the guest's #UD, so that the SSE moves KVM cannot
/// emulate on trapped and timed memory are completed (`vector_mmio`). A
/// KVM without the capability (before Linux 5.14) leaves them #UD, as
/// before.
fn exit_on_emulation_failure(vm: &VmFd) -> Result<(), VmError> {
    let cap = kvm_bindings::kvm_enable_cap {
        cap: kvm_bindings::KVM_CAP_EXIT_ON_EMULATION_FAILURE,
        args: [1, 0, 0, 0],
        ..Default::default()
    };
    if vm.check_extension_raw(u64::from(cap.cap)) > 0 {
        vm.enable_cap(&cap)
            .map_err(kvm_err("enable KVM_CAP_EXIT_ON_EMULATION_FAILURE"))?;
    }
    Ok(())
}

/// The in-kernel IOAPIC/PIC/LAPICs and the PIT; the GSI routing table
/// that MSI-X and INTx routes are added to.
fn interrupt_controller(vm: &Arc<VmFd>) -> Result<GsiRouter, VmError> {
    vm.create_irq_chip()
        .map_err(kvm_err("create in-kernel irqchip"))?;
    let pit = kvm_pit_config {
        flags: KVM_PIT_SPEAKER_DUMMY,
        ..Default::default()
    };
    vm.create_pit2(pit).map_err(kvm_err("create PIT"))?;
    Ok(GsiRouter::new(vm.clone()))
}

/// Guest RAM, below and above the 32-bit hole, as KVM memory slots, on
/// the host pages `backing` asks for (untouched pages cost nothing);
/// `shared` with other processes (vhost-user backends) when asked.
fn memory(
    vm: &VmFd,
    size: u64,
    backing: MemoryBacking,
    shared: bool,
) -> Result<GuestMemory, VmError> {
    let mem_err = |msg: String| VmError::Memory { size, msg };
    let mut regions = Vec::new();
    for (base, len) in ram_ranges(size) {
        let map = if shared {
            backing.map_shared_ram(len, &format!("cxlvmm-ram-{:#x}", base.0))
        } else {
            backing.map_ram(len)
        }
        .map_err(|e| mem_err(format!("{} mapping: {e}", backing.name())))?;
        regions.push(
            GuestRegionMmap::new(map, base)
                .ok_or_else(|| mem_err(format!("range at {:#x} overflows", base.0)))?,
        );
    }
    let mem = GuestMemory::from_regions(regions).map_err(|e| mem_err(e.to_string()))?;
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
        // the VM (both are dropped when the machine is, the VM first), and the
        // slot does not overlap any other slot.
        unsafe { vm.set_user_memory_region(region_desc) }.map_err(kvm_err("add RAM slot"))?;
    }
    Ok(mem)
}

/// Guest RAM as (base, length) ranges, as the e820 map reports it.
fn ram_map(mem_size: u64) -> Vec<(u64, u64)> {
    e820_map(mem_size)
        .into_iter()
        .filter(|e| e.kind == E820_RAM)
        .map(|e| (e.addr, e.size))
        .collect()
}
