//! Builders for the standard capabilities every PCIe function here carries:
//! the PCI Express capability (port type, link, port number), MSI, the
//! Device Serial Number and AER extended capabilities.

use super::config::ConfigSpace;
use super::function::{CAP_ID_MSI, CAP_ID_PCIE, EXT_CAP_ID_AER, EXT_CAP_ID_DSN};

/// PCIe device/port type (PCIe capabilities register [7:4]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortType {
    Endpoint = 0,
    RootPort = 4,
    SwitchUpstream = 5,
    SwitchDownstream = 6,
}

/// Link parameters as LNKCAP encodes them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkParams {
    /// PCIe generation 1..=6 (2.5 to 64 GT/s).
    pub gen: u8,
    /// Lanes: 1, 2, 4, 8, 16.
    pub width: u8,
    /// LNKCAP Port Number: the byte CXL HDM target lists name this port by.
    pub port_number: u8,
}

const PCIE_CAP_VERSION: u16 = 2;
const FLAG_SLOT_IMPLEMENTED: u16 = 1 << 8;
const DEVCAP_MPS_256: u32 = 1;
const DEVCAP_RBER: u32 = 1 << 15;
const LNKCAP_DLL_ACTIVE_REPORTING: u32 = 1 << 20;
const LNKSTA_DLL_ACTIVE: u32 = 1 << 13;
const SLTSTA_PRESENCE_DETECT: u32 = 1 << 6;

/// Adds the PCI Express capability (version 2, 0x3C bytes). Ports below a
/// root complex or switch report a slot with a card present and an active
/// data link, as a populated link would.
pub fn add_pcie_capability(cs: &mut ConfigSpace, ty: PortType, link: LinkParams) -> Option<usize> {
    let downstream = matches!(ty, PortType::RootPort | PortType::SwitchDownstream);
    let mut b = [0u8; 0x3c];
    let mut put = |off: usize, v: u32| b[off..off + 4].copy_from_slice(&v.to_le_bytes());
    let mut flags = PCIE_CAP_VERSION | ((ty as u16) << 4);
    if downstream {
        flags |= FLAG_SLOT_IMPLEMENTED;
    }
    let gen = u32::from(link.gen.clamp(1, 6));
    let width = u32::from(link.width);
    put(0x00, u32::from(flags) << 16);
    put(0x04, DEVCAP_MPS_256 | DEVCAP_RBER);
    let mut lnkcap = gen | (width << 4) | (u32::from(link.port_number) << 24);
    let mut lnksta = gen | (width << 4);
    if downstream {
        lnkcap |= LNKCAP_DLL_ACTIVE_REPORTING;
        lnksta |= LNKSTA_DLL_ACTIVE;
        // Slot capabilities: physical slot number = port number, no hotplug.
        put(0x14, u32::from(link.port_number) << 19);
        put(0x18, SLTSTA_PRESENCE_DETECT << 16);
    }
    put(0x0c, lnkcap);
    put(0x10, lnksta << 16);
    // Supported link speeds vector: every generation up to ours.
    put(0x2c, ((1u32 << gen) - 1) << 1);
    // Target link speed.
    put(0x30, gen);
    let masks = [
        (2, 0x0000_7fff, 0x000f_0000), // device control / status (error bits W1C)
        (4, 0x0000_0fff, 0x0000_0000), // link control
        (6, 0x0000_1fff, 0x01ff_0000), // slot control / status
        (7, 0x0000_001f, 0x0000_0000), // root control
        (8, 0x0000_0000, 0x0001_0000), // root status: PME status W1C
        (10, 0x0000_ffff, 0x0000_0000), // device control 2
        (12, 0x0000_ffff, 0x0000_0000), // link control 2
    ];
    cs.add_capability(CAP_ID_PCIE, &b, &masks)
}

/// Adds a 64-bit MSI capability with one vector (ports use it for their
/// PCIe services; we never raise it, but the OS may enable it).
pub fn add_msi_capability(cs: &mut ConfigSpace) -> Option<usize> {
    const MSI_64BIT: u32 = 1 << 7;
    let mut b = [0u8; 0x0e];
    b[0..4].copy_from_slice(&(MSI_64BIT << 16).to_le_bytes());
    // Enable + multiple message enable; address lo/hi; data.
    let masks = [
        (0, 0x0071_0000, 0),
        (1, 0xffff_fffc, 0),
        (2, 0xffff_ffff, 0),
        (3, 0x0000_ffff, 0),
    ];
    cs.add_capability(CAP_ID_MSI, &b, &masks)
}

/// Adds the Device Serial Number extended capability.
pub fn add_dsn(cs: &mut ConfigSpace, serial: u64) -> Option<usize> {
    cs.add_ext_capability(EXT_CAP_ID_DSN, 1, &serial.to_le_bytes(), &[])
}

/// Adds an AER extended capability (status registers RW1C, masks and
/// severity RW), so the OS's error handling finds what it expects.
pub fn add_aer(cs: &mut ConfigSpace) -> Option<usize> {
    const UNCOR_DEFINED: u32 = 0x03ff_f030;
    const COR_DEFINED: u32 = 0x0000_f1c1;
    let mut b = [0u8; 0x44];
    // Uncorrectable severity default (spec reset value).
    b[0x08..0x0c].copy_from_slice(&0x0046_2030u32.to_le_bytes());
    let masks = [
        (1, 0, UNCOR_DEFINED), // uncorrectable status
        (2, UNCOR_DEFINED, 0), // uncorrectable mask
        (3, UNCOR_DEFINED, 0), // uncorrectable severity
        (4, 0, COR_DEFINED),   // correctable status
        (5, COR_DEFINED, 0),   // correctable mask
        (6, 0x0000_0140, 0),   // capabilities and control: ECRC enables
        (11, 0x0000_0007, 0),  // root error command
        (12, 0, 0x0000_007f),  // root error status
    ];
    cs.add_ext_capability(EXT_CAP_ID_AER, 2, &b, &masks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_port_capability_reports_port_number_link_and_slot() {
        let mut cs = ConfigSpace::type1(0x8086, 0x7075, 0);
        let off = add_pcie_capability(
            &mut cs,
            PortType::RootPort,
            LinkParams {
                gen: 5,
                width: 16,
                port_number: 3,
            },
        )
        .unwrap();
        let r = off / 4;
        assert_eq!(cs.read(r) & 0xff, 0x10);
        assert_eq!(cs.read(r) >> 16, 0x0142, "v2, root port, slot implemented");
        assert_eq!(cs.read(r + 3), 5 | (16 << 4) | (1 << 20) | (3 << 24));
        assert_eq!(cs.read(r + 4) >> 16, 5 | (16 << 4) | (1 << 13));
        assert_eq!(cs.read(r + 6) >> 16 & (1 << 6), 1 << 6, "card present");
        assert_eq!(cs.read(r + 11), 0x3e, "2.5..32 GT/s supported");
        // Device status error bits are W1C.
        cs.set(r + 2, 0x000f_0000);
        cs.write(r + 2, 2, &[0x01, 0]);
        assert_eq!(cs.read(r + 2) >> 16, 0x0e);
    }

    #[test]
    fn endpoint_has_no_slot_and_dsn_reads_back() {
        let mut cs = ConfigSpace::type0(0x8086, 0x0d93, 0x05_02_10, 0);
        let off = add_pcie_capability(
            &mut cs,
            PortType::Endpoint,
            LinkParams {
                gen: 5,
                width: 8,
                port_number: 0,
            },
        )
        .unwrap();
        assert_eq!(cs.read(off / 4) >> 16, 0x0002);
        let dsn = add_dsn(&mut cs, 0x1122_3344_5566_7788).unwrap();
        assert_eq!(cs.read(dsn / 4 + 1), 0x5566_7788);
        assert_eq!(cs.read(dsn / 4 + 2), 0x1122_3344);
        let aer = add_aer(&mut cs).unwrap();
        assert_eq!(cs.read(aer / 4) & 0xffff, 1);
        assert_eq!(cs.read(dsn / 4) >> 20, aer as u32, "DSN chains to AER");
    }
}
