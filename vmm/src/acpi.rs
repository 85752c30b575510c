//! ACPI tables: RSDP, XSDT, FADT (+FACS), DSDT, MADT, MCFG.
//!
//! The platform is a classic (not HW-reduced) ACPI PC: PM1a event/control
//! blocks in I/O space so `poweroff` is an S5 write, SCI on IRQ 9, no SMI
//! command port (always in ACPI mode), no PS/2 controller, and a PCIe root
//! complex with ECAM described by MCFG and reserved by a motherboard device.

use acpi_tables::aml::{self, AddressSpace, AddressSpaceCacheable};
use acpi_tables::facs::FACS;
use acpi_tables::fadt::{FADTBuilder, Flags};
use acpi_tables::gas::{AccessSize, AddressSpace as GasSpace, GAS};
use acpi_tables::madt::{EnabledStatus, IoApic, ProcessorLocalApic};
use acpi_tables::mcfg::MCFG;
use acpi_tables::rsdp::Rsdp;
use acpi_tables::sdt::Sdt;
use acpi_tables::xsdt::XSDT;
use acpi_tables::Aml;
use devices::legacy::{PM1_CNT_OFFSET, PM1_EVT_LEN, SLP_TYP_S5};

use crate::irq::intx_gsi;
use crate::layout::*;

pub const OEM_ID: [u8; 6] = *b"CXLVMM";
pub const OEM_TABLE_ID: [u8; 8] = *b"CXLVMM  ";
pub const OEM_REVISION: u32 = 1;
/// FADT CENTURY: CMOS index of the century register.
const CMOS_CENTURY: u8 = 0x32;

/// What the tables describe.
#[derive(Clone, Debug)]
pub struct AcpiConfig {
    pub vcpus: u8,
    /// More complete tables (SRAT, CEDT, ...) to list in the XSDT.
    pub extra_tables: Vec<Vec<u8>>,
    /// More AML objects for the DSDT body (CXL host bridges, ...).
    pub dsdt_extra: Vec<u8>,
    /// The highest bus number any host bridge decodes: MCFG's end bus.
    pub last_bus: u8,
}

/// The tables, each with the guest-physical address it must be written to.
pub struct AcpiTables {
    pub rsdp_addr: u64,
    pub blobs: Vec<(u64, Vec<u8>)>,
}

#[derive(Debug, thiserror::Error)]
pub enum AcpiError {
    #[error("ACPI tables need {need} bytes but only {have} fit below 1 MiB")]
    TooLarge { need: u64, have: u64 },
}

/// Lays out tables one after another in [ACPI_START, ACPI_END).
struct Placer {
    next: u64,
    blobs: Vec<(u64, Vec<u8>)>,
}

impl Placer {
    fn place(&mut self, bytes: Vec<u8>, align: u64) -> Result<u64, AcpiError> {
        let addr = self.next.next_multiple_of(align);
        let end = addr + bytes.len() as u64;
        if end > ACPI_END {
            return Err(AcpiError::TooLarge {
                need: end - ACPI_START,
                have: ACPI_END - ACPI_START,
            });
        }
        self.next = end;
        self.blobs.push((addr, bytes));
        Ok(addr)
    }
}

/// Already-encoded AML, for objects built from parts that would otherwise
/// have to borrow from each other.
pub struct Encoded(pub Vec<u8>);

impl Aml for Encoded {
    fn to_aml_bytes(&self, sink: &mut dyn acpi_tables::AmlSink) {
        sink.vec(&self.0);
    }
}

/// `_PRT` for a root bus: every slot's INTA#-INTD# to the IOAPIC input
/// [`intx_gsi`] gives (GSI form: Source 0, Source Index = GSI), so the OS
/// and the VMM agree on where each pin lands.
pub fn prt() -> Vec<u8> {
    // (Address: slot in the high word, any function; Pin 0-3; GSI).
    let rows: Vec<(u32, u8, u32)> = (0..32u8)
        .flat_map(|slot| {
            (1..=4u8).map(move |pin| {
                (
                    (u32::from(slot) << 16) | 0xffff,
                    pin - 1,
                    intx_gsi(slot, pin),
                )
            })
        })
        .collect();
    let entries: Vec<aml::Package> = rows
        .iter()
        .map(|(address, pin, gsi)| aml::Package::new(vec![address, pin, &aml::ZERO, gsi]))
        .collect();
    let refs: Vec<&dyn Aml> = entries.iter().map(|e| e as &dyn Aml).collect();
    to_bytes(&aml::Name::new("_PRT".into(), &aml::Package::new(refs)))
}

pub fn to_bytes(t: &dyn Aml) -> Vec<u8> {
    let mut v = Vec::new();
    t.to_aml_bytes(&mut v);
    v
}

pub fn build(cfg: &AcpiConfig) -> Result<AcpiTables, AcpiError> {
    // The RSDP goes first, at a 16-byte aligned address the guest can also
    // find by scanning; its content is filled in once the XSDT is placed.
    let rsdp_addr = ACPI_START;
    let mut p = Placer {
        next: ACPI_START + Rsdp::len() as u64,
        blobs: Vec::new(),
    };

    let dsdt = p.place(dsdt(&cfg.dsdt_extra), 16)?;
    let facs = p.place(to_bytes(&FACS::new()), 64)?;
    let fadt = p.place(fadt(dsdt, facs), 16)?;
    let madt = p.place(madt(cfg.vcpus), 16)?;
    let mcfg = p.place(mcfg(cfg.last_bus), 16)?;
    let mut entries = vec![fadt, madt, mcfg];
    for t in &cfg.extra_tables {
        entries.push(p.place(t.clone(), 16)?);
    }

    let mut xsdt = XSDT::new(OEM_ID, OEM_TABLE_ID, OEM_REVISION);
    for t in entries {
        xsdt.add_entry(t);
    }
    let xsdt_addr = p.place(to_bytes(&xsdt), 16)?;
    p.blobs
        .push((rsdp_addr, to_bytes(&Rsdp::new(OEM_ID, xsdt_addr))));
    Ok(AcpiTables {
        rsdp_addr,
        blobs: p.blobs,
    })
}

fn fadt(dsdt: u64, facs: u64) -> Vec<u8> {
    let pm_evt = PORT_PM_BASE;
    let pm_cnt = PORT_PM_BASE + PM1_CNT_OFFSET;
    let io_gas =
        |bits: u8, addr: u64| GAS::new(GasSpace::SystemIo, bits, 0, AccessSize::Undefined, addr);
    let mut b = FADTBuilder::new(OEM_ID, OEM_TABLE_ID, OEM_REVISION)
        .dsdt_64(dsdt)
        .firmware_ctrl_64(facs)
        .flag(Flags::Wbinvd)
        .flag(Flags::ProcC1)
        // No fixed-feature power or sleep buttons.
        .flag(Flags::PwrButton)
        .flag(Flags::SlpButton)
        .flag(Flags::FixRtc);
    b.sci_int = (IRQ_SCI as u16).into();
    // SMI_CMD = 0: the platform is always in ACPI mode.
    b.smi_cmd = 0.into();
    b.pm1a_evt_blk = (pm_evt as u32).into();
    b.pm1a_cnt_blk = (pm_cnt as u32).into();
    b.pm1_evt_len = PM1_EVT_LEN;
    b.pm1_cnt_len = 2;
    b.x_pm1a_evt_blk = io_gas(PM1_EVT_LEN * 8, pm_evt);
    b.x_pm1a_cnt_blk = io_gas(16, pm_cnt);
    b.century = CMOS_CENTURY;
    // IAPC_BOOT_ARCH = 0: no 8042 (the guest skips PS/2 probing), CMOS RTC
    // present, VGA and MSI not excluded.
    b.iapc_boot_arch = 0.into();
    to_bytes(&b.finalize())
}

/// The MADT: the local APICs, the IOAPIC and the SCI's interrupt source
/// override. The LAPIC and IOAPIC structures are `acpi_tables::madt`'s; the
/// header is an `Sdt` rather than `acpi_tables::madt::MADT`, which in its
/// 0.2 release writes revision 1 (ours: 5, ACPI 6.x) and flags 0 with no
/// setter, where this platform sets PCAT_COMPAT: it has the legacy 8259 pair
/// (Linux reads the flag in `acpi_parse_madt`, arch/x86/kernel/acpi/boot.c).
/// The crate has no Interrupt Source Override structure, so that one is
/// built here.
fn madt(vcpus: u8) -> Vec<u8> {
    const PCAT_COMPAT: u32 = 1;
    const TYPE_ISO: u8 = 2;
    let mut t = Sdt::new(*b"APIC", 44, 5, OEM_ID, OEM_TABLE_ID, OEM_REVISION);
    t.write_u32(36, LAPIC_START as u32);
    t.write_u32(40, PCAT_COMPAT);
    for cpu in 0..vcpus {
        let lapic = ProcessorLocalApic::new(cpu, cpu, EnabledStatus::Enabled);
        t.append_slice(&to_bytes(&lapic));
    }
    t.append_slice(&to_bytes(&IoApic::new(vcpus, IOAPIC_START as u32, 0)));
    // SCI: ISA IRQ 9 -> GSI 9, level triggered, active high (flags 0x000d).
    let mut iso = vec![TYPE_ISO, 10, 0, IRQ_SCI as u8];
    iso.extend(IRQ_SCI.to_le_bytes());
    iso.extend(0x000du16.to_le_bytes());
    t.append_slice(&iso);
    t.as_slice().to_vec()
}

/// MCFG ends at the last bus a host bridge decodes, not at the ECAM
/// window's 256th: Linux takes MCFG's end bus as `pcibios_last_bus` and
/// probes every bus up to it that no host bridge claimed, 32 config reads
/// each through 0xCF8/0xCFC (`pcibios_fixup_peer_bridges` in
/// `arch/x86/pci/legacy.c`, `__pci_mmcfg_init` in
/// `arch/x86/pci/mmconfig-shared.c`): 8 192 reads, 16 k VM exits, at every
/// boot for buses that do not exist (docs/performance.md, "boot").
fn mcfg(last_bus: u8) -> Vec<u8> {
    let mut t = MCFG::new(OEM_ID, OEM_TABLE_ID, OEM_REVISION);
    debug_assert!(u16::from(last_bus) < ECAM_BUSES);
    t.add_ecam(ECAM_START, 0, 0, last_bus);
    to_bytes(&t)
}

fn dsdt(extra: &[u8]) -> Vec<u8> {
    // Each object is serialized in the statement that builds it: the AML
    // builders borrow their children, which are temporaries.
    let mut body = Vec::new();
    let buses = AddressSpace::new_bus_number(0u16, PCI0_LAST_BUS);
    let cf8 = aml::IO::new(PORT_PCI_CONFIG as u16, PORT_PCI_CONFIG as u16, 1, 8);
    let io_low = AddressSpace::new_io(0u16, 0x0cf7, None);
    let io_high = AddressSpace::new_io(0x0d00u16, 0xffff, None);
    let mmio32 = AddressSpace::new_memory(
        AddressSpaceCacheable::NotCacheable,
        true,
        PCI_MMIO32_START as u32,
        (PCI_MMIO32_START + PCI0_MMIO_SIZE - 1) as u32,
        None,
    );
    let pci_crs = aml::ResourceTemplate::new(vec![&buses, &cf8, &io_low, &io_high, &mmio32]);
    body.extend(to_bytes(&aml::Device::new(
        "_SB_.PCI0".into(),
        vec![
            &aml::Name::new("_HID".into(), &aml::EISAName::new("PNP0A08")),
            &aml::Name::new("_CID".into(), &aml::EISAName::new("PNP0A03")),
            &aml::Name::new("_ADR".into(), &aml::ZERO),
            &aml::Name::new("_SEG".into(), &aml::ZERO),
            &aml::Name::new("_UID".into(), &aml::ZERO),
            &aml::Name::new("_BBN".into(), &aml::ZERO),
            &aml::Name::new("_CRS".into(), &pci_crs),
            &Encoded(prt()),
        ],
    )));
    // Reserves the ECAM window, which Linux requires before trusting MCFG.
    let ecam = aml::Memory32Fixed::new(false, ECAM_START as u32, ECAM_SIZE as u32);
    let ecam_crs = aml::ResourceTemplate::new(vec![&ecam]);
    body.extend(to_bytes(&aml::Device::new(
        "_SB_.MRES".into(),
        vec![
            &aml::Name::new("_HID".into(), &aml::EISAName::new("PNP0C02")),
            &aml::Name::new("_UID".into(), &aml::ONE),
            &aml::Name::new("_CRS".into(), &ecam_crs),
        ],
    )));
    let com1_io = aml::IO::new(PORT_COM1 as u16, PORT_COM1 as u16, 1, PORT_COM1_LEN as u8);
    let com1_irq = aml::Interrupt::new(true, true, false, false, IRQ_COM1);
    let com1_crs = aml::ResourceTemplate::new(vec![&com1_io, &com1_irq]);
    body.extend(to_bytes(&aml::Device::new(
        "_SB_.COM1".into(),
        vec![
            &aml::Name::new("_HID".into(), &aml::EISAName::new("PNP0501")),
            &aml::Name::new("_UID".into(), &aml::ZERO),
            &aml::Name::new("_CRS".into(), &com1_crs),
        ],
    )));
    let s5_typ = SLP_TYP_S5 as u8;
    let s5_pkg = aml::Package::new(vec![&s5_typ, &s5_typ, &aml::ZERO, &aml::ZERO]);
    let s5 = aml::Name::new("_S5_".into(), &s5_pkg);

    body.extend(to_bytes(&s5));
    body.extend_from_slice(extra);
    let mut t = Sdt::new(*b"DSDT", 36, 6, OEM_ID, OEM_TABLE_ID, OEM_REVISION);
    t.append_slice(&body);
    t.as_slice().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Skips an AML PkgLength, returning the offset after it.
    fn skip_pkg_length(b: &[u8], at: usize) -> usize {
        at + 1 + usize::from(b[at] >> 6)
    }

    #[test]
    fn prt_lists_every_slot_and_pin_with_its_gsi() {
        let b = prt();
        assert_eq!(&b[..6], &[0x08, b'_', b'P', b'R', b'T', 0x12]);
        let mut at = skip_pkg_length(&b, 6);
        assert_eq!(b[at], 128, "32 slots x 4 pins");
        at += 1;
        // Decode every entry: Package(4) { Address, Pin, Source 0, GSI }.
        let int = |b: &[u8], at: &mut usize| -> u32 {
            let (v, n) = match b[*at] {
                0x00 => (0, 1),
                0x01 => (1, 1),
                0x0a => (u32::from(b[*at + 1]), 2),
                0x0b => (u32::from(u16::from_le_bytes([b[*at + 1], b[*at + 2]])), 3),
                0x0c => (
                    u32::from_le_bytes(b[*at + 1..*at + 5].try_into().unwrap()),
                    5,
                ),
                op => panic!("unexpected AML opcode {op:#x} at {at}"),
            };
            *at += n;
            v
        };
        for slot in 0..32u8 {
            for pin in 1..=4u8 {
                assert_eq!(b[at], 0x12);
                at = skip_pkg_length(&b, at + 1);
                assert_eq!(b[at], 4);
                at += 1;
                let row = [
                    int(&b, &mut at),
                    int(&b, &mut at),
                    int(&b, &mut at),
                    int(&b, &mut at),
                ];
                let want = [
                    (u32::from(slot) << 16) | 0xffff,
                    u32::from(pin - 1),
                    0,
                    intx_gsi(slot, pin),
                ];
                assert_eq!(row, want, "slot {slot} pin {pin}");
            }
        }
        assert_eq!(at, b.len());
    }

    /// The guest's view: a flat image of [ACPI_START, ACPI_END).
    struct Image(Vec<u8>);

    impl Image {
        fn from(t: &AcpiTables) -> Self {
            let mut img = vec![0u8; (ACPI_END - ACPI_START) as usize];
            for (addr, b) in &t.blobs {
                let off = (addr - ACPI_START) as usize;
                img[off..off + b.len()].copy_from_slice(b);
            }
            Image(img)
        }
        fn at(&self, addr: u64, len: usize) -> &[u8] {
            let off = (addr - ACPI_START) as usize;
            &self.0[off..off + len]
        }
        fn u32(&self, addr: u64) -> u32 {
            u32::from_le_bytes(self.at(addr, 4).try_into().unwrap())
        }
        fn u64(&self, addr: u64) -> u64 {
            u64::from_le_bytes(self.at(addr, 8).try_into().unwrap())
        }
        /// A table by address: checks length and checksum, returns the bytes.
        fn table(&self, addr: u64) -> &[u8] {
            let len = self.u32(addr + 4) as usize;
            assert!(len >= 36);
            let t = self.at(addr, len);
            let sum = t.iter().fold(0u8, |a, b| a.wrapping_add(*b));
            assert_eq!(sum, 0, "checksum of {}", String::from_utf8_lossy(&t[..4]));
            t
        }
    }

    fn sum(b: &[u8]) -> u8 {
        b.iter().fold(0u8, |a, x| a.wrapping_add(*x))
    }

    fn tables_by_signature(img: &Image, rsdp: u64) -> Vec<(String, u64)> {
        let r = img.at(rsdp, 36);
        assert_eq!(&r[..8], b"RSD PTR ");
        assert_eq!(sum(&r[..20]), 0);
        assert_eq!(sum(r), 0);
        assert_eq!(r[15], 2, "ACPI 2.0+ RSDP");
        let xsdt = img.u64(rsdp + 24);
        let x = img.table(xsdt);
        assert_eq!(&x[..4], b"XSDT");
        x[36..]
            .chunks(8)
            .map(|c| {
                let a = u64::from_le_bytes(c.try_into().unwrap());
                (String::from_utf8_lossy(&img.table(a)[..4]).into_owned(), a)
            })
            .collect()
    }

    #[test]
    fn tables_parse_back() {
        let t = build(&AcpiConfig {
            vcpus: 4,
            extra_tables: vec![],
            dsdt_extra: vec![],
            last_bus: 0x2a,
        })
        .unwrap();
        assert_eq!(t.rsdp_addr % 16, 0);
        let img = Image::from(&t);
        let tables = tables_by_signature(&img, t.rsdp_addr);
        let names: Vec<_> = tables.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["FACP", "APIC", "MCFG"]);

        // FADT: DSDT and FACS pointers, PM1a blocks, SCI, not HW-reduced.
        let fadt = img.table(tables[0].1);
        assert_eq!(fadt.len(), 276);
        let u16_at = |o: usize| u16::from_le_bytes(fadt[o..o + 2].try_into().unwrap());
        let u32_at = |o: usize| u32::from_le_bytes(fadt[o..o + 4].try_into().unwrap());
        let u64_at = |o: usize| u64::from_le_bytes(fadt[o..o + 8].try_into().unwrap());
        assert_eq!(u16_at(46), 9, "SCI_INT");
        assert_eq!(u32_at(48), 0, "SMI_CMD");
        assert_eq!(u32_at(56), 0x600, "PM1a_EVT_BLK");
        assert_eq!(u32_at(64), 0x604, "PM1a_CNT_BLK");
        assert_eq!((fadt[88], fadt[89]), (4, 2), "PM1 lengths");
        assert_eq!(u32_at(112) & (1 << 20), 0, "not HW_REDUCED");
        assert_eq!(fadt[108], 0x32, "CENTURY");
        assert_eq!(u16_at(109), 0, "no 8042");
        let dsdt = img.table(u64_at(140));
        assert_eq!(&dsdt[..4], b"DSDT");
        assert!(dsdt.windows(4).any(|w| w == b"_S5_"));
        assert!(dsdt.windows(4).any(|w| w == b"PCI0"));
        let facs = img.at(u64_at(132), 64);
        assert_eq!(&facs[..4], b"FACS");
        assert_eq!(u64_at(132) % 64, 0);

        // MADT: one enabled LAPIC per vCPU, the IOAPIC, the SCI override.
        let madt = img.table(tables[1].1);
        assert_eq!(
            u32::from_le_bytes(madt[36..40].try_into().unwrap()),
            0xfee0_0000
        );
        let mut off = 44;
        let (mut lapics, mut ioapics, mut isos) = (vec![], vec![], vec![]);
        while off < madt.len() {
            let (ty, len) = (madt[off], madt[off + 1] as usize);
            let e = &madt[off..off + len];
            match ty {
                0 => lapics.push((e[2], e[3], e[4])),
                1 => ioapics.push(u32::from_le_bytes(e[4..8].try_into().unwrap())),
                2 => isos.push((e[3], u32::from_le_bytes(e[4..8].try_into().unwrap()))),
                _ => panic!("unexpected MADT entry {ty}"),
            }
            off += len;
        }
        assert_eq!(off, madt.len());
        assert_eq!(lapics, [(0, 0, 1), (1, 1, 1), (2, 2, 1), (3, 3, 1)]);
        assert_eq!(ioapics, [0xfec0_0000]);
        assert_eq!(isos, [(9, 9)]);

        // MCFG: one segment, ECAM base and bus range.
        let mcfg = img.table(tables[2].1);
        assert_eq!(mcfg.len(), 44 + 16);
        assert_eq!(
            u64::from_le_bytes(mcfg[44..52].try_into().unwrap()),
            ECAM_START
        );
        assert_eq!((mcfg[54], mcfg[55]), (0, 0x2a), "up to the last bus");
    }

    #[test]
    fn tables_stay_inside_the_bios_area_and_do_not_overlap() {
        let t = build(&AcpiConfig {
            vcpus: 255,
            extra_tables: vec![],
            dsdt_extra: vec![],
            last_bus: 0x2a,
        })
        .unwrap();
        let mut spans: Vec<_> = t
            .blobs
            .iter()
            .map(|(a, b)| (*a, *a + b.len() as u64))
            .collect();
        spans.sort();
        for w in spans.windows(2) {
            assert!(w[0].1 <= w[1].0);
        }
        assert!(spans.iter().all(|&(s, e)| s >= ACPI_START && e <= ACPI_END));
    }
}
