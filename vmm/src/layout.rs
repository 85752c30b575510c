//! The guest-physical memory map (x86_64) and fixed I/O ports.
//!
//! ```text
//! 0x0000_0000  RAM (low)          real-mode IVT/BDA, boot GDT, page tables, zero page, cmdline
//! 0x0009_fc00  reserved           EBDA, VGA hole
//! 0x000e_0000  ACPI tables        RSDP .. DSDT (inside the ISA hole Linux never uses as RAM)
//! 0x0010_0000  RAM                kernel at 1 MiB, initrd at the top of low RAM
//! 0xc000_0000  32-bit MMIO hole   (up to 3 GiB of RAM sits below it)
//!   0xc000_0000  PCI MMIO window  PCI0 16 MiB, then the CXL host bridges' bus windows and BARs
//!   0xe000_0000  ECAM             256 buses x 1 MiB (e820 reserved)
//!   0xf000_0000  CHBCRs           64 KiB of component registers per CXL host bridge
//!   0xfec0_0000  IOAPIC
//!   0xfee0_0000  LAPIC / MSI
//!   0xfffb_c000  KVM              identity-map page and TSS (Intel)
//! 0x1_0000_0000 RAM (high)        whatever did not fit below the hole
//! max(4 GiB, end of RAM)
//!              CXL windows        every CFMWS, each aligned to 256 MiB x its ways
//!              64-bit PCI MMIO    from the first 1 GiB boundary above the last window
//! ```
//!
//! Everything from the 32-bit hole up is independent of the RAM size except
//! the high area, which starts above all RAM: no size of `--memory` moves
//! RAM under a device. `guest_map` checks the whole map is disjoint before
//! the VM is built.

/// Start of the boot GDT (four entries).
pub const BOOT_GDT_START: u64 = 0x500;
/// Start of the (empty) boot IDT.
pub const BOOT_IDT_START: u64 = 0x520;
/// Identity-mapping page tables: PML4, one PDPT, four PDs (first 4 GiB with 2 MiB pages).
pub const PML4_START: u64 = 0x9000;
pub const PDPT_START: u64 = 0xa000;
pub const PD_START: u64 = 0xb000;
/// Initial stack pointer of the boot vCPU.
pub const BOOT_STACK_POINTER: u64 = 0x8ff0;
/// The Linux zero page (`struct boot_params`).
pub const ZERO_PAGE_START: u64 = 0x7000;
/// Kernel command line.
pub const CMDLINE_START: u64 = 0x20000;
pub const CMDLINE_MAX_SIZE: usize = 0x10000;
/// End of conventional memory below the EBDA.
pub const EBDA_START: u64 = 0x9fc00;
/// ACPI tables live in the BIOS area, where the guest also looks for the RSDP.
pub const ACPI_START: u64 = 0xe0000;
pub const ACPI_END: u64 = 0x100000;
/// Kernel load address and start of "high" memory for the boot protocol.
pub const HIMEM_START: u64 = 0x100000;

/// Start and end of the 32-bit MMIO hole.
pub const MMIO32_START: u64 = 0xc000_0000;
pub const MMIO32_END: u64 = 0x1_0000_0000;
/// PCI 32-bit memory window for BARs: the main root bridge (PCI0) keeps
/// the first 16 MiB, the CXL host bridges share the rest.
pub const PCI_MMIO32_START: u64 = 0xc000_0000;
pub const PCI_MMIO32_SIZE: u64 = 0x2000_0000;
pub const PCI0_MMIO_SIZE: u64 = 0x0100_0000;
pub const CXL_MMIO32_START: u64 = PCI_MMIO32_START + PCI0_MMIO_SIZE;
pub const CXL_MMIO32_END: u64 = PCI_MMIO32_START + PCI_MMIO32_SIZE;
/// PCI0 owns buses below the first CXL host bridge's.
pub const PCI0_LAST_BUS: u16 = 0x0f;
/// PCIe ECAM: 256 buses x 1 MiB.
pub const ECAM_START: u64 = 0xe000_0000;
pub const ECAM_SIZE: u64 = 0x1000_0000;
pub const ECAM_BUSES: u16 = 256;
/// CXL host bridge component registers (CHBCR, CXL 3.1 8.2.3): one 64 KiB
/// block per host bridge, in an area of the hole nothing else uses; 256
/// blocks, more than the 240 buses left to CXL could ever need (each host
/// bridge takes at least two).
pub const CHBCR_START: u64 = 0xf000_0000;
pub const CHBCR_AREA_SIZE: u64 = 0x0100_0000;
pub const IOAPIC_START: u64 = 0xfec0_0000;
pub const IOAPIC_SIZE: u64 = 0x1000;
/// The LAPIC page; MSI writes target the whole 1 MiB from here.
pub const LAPIC_START: u64 = 0xfee0_0000;
pub const MSI_AREA_SIZE: u64 = 0x10_0000;
/// Pages KVM needs for itself on Intel: the identity-map page table and
/// the 3-page TSS right after it, below the top of the hole.
pub const KVM_IDENTITY_MAP_START: u64 = 0xfffb_c000;
pub const KVM_TSS_START: u64 = 0xfffb_d000;
pub const KVM_PRIVATE_SIZE: u64 = 0x4000;
/// RAM resumes here once the hole is passed.
pub const HIGH_RAM_START: u64 = 0x1_0000_0000;
/// 64-bit PCI windows start at a multiple of this above the CXL windows.
pub const PCI_MMIO64_ALIGN: u64 = 1 << 30;

/// First address of the high MMIO area, where the CXL windows go: above
/// 4 GiB and above all RAM (`ram_end`), as real platforms place CFMWS
/// windows; each window then aligns itself.
pub fn high_mmio_start(ram_end: u64) -> u64 {
    ram_end.max(HIGH_RAM_START)
}

/// Where 64-bit PCI windows may start, given the end of the CXL windows.
pub fn pci_mmio64_start(cxl_end: u64) -> u64 {
    cxl_end.next_multiple_of(PCI_MMIO64_ALIGN)
}

/// Port I/O.
pub const PORT_I8042: u64 = 0x60;
pub const PORT_I8042_LEN: u64 = 5;
pub const PORT_CMOS: u64 = 0x70;
pub const PORT_CMOS_LEN: u64 = 2;
pub const PORT_TEST_EXIT: u64 = 0xf4;
pub const PORT_TEST_EXIT_LEN: u64 = 4;
pub const PORT_COM1: u64 = 0x3f8;
pub const PORT_COM1_LEN: u64 = 8;
pub const PORT_PM_BASE: u64 = 0x600;
pub const PORT_PCI_CONFIG: u64 = 0xcf8;
pub const PORT_PCI_CONFIG_LEN: u64 = 8;

/// ISA interrupt lines.
pub const IRQ_COM1: u32 = 4;
pub const IRQ_SCI: u32 = 9;
