//! Virtio functions on the main root bus (PCI0): each `--disk` becomes a
//! virtio-blk PCI function at bus 0, device 1 onwards, its BARs programmed
//! inside PCI0's memory window as firmware would, its MSI-X vectors routed
//! through KVM like every other function's.

use std::path::PathBuf;

use devices::pci::{Bdf, InterruptAllocator, PciDevice, PciFunction, PciRoot};
use devices::virtio::block::{Block, OpenError, CLASS_STORAGE_OTHER};
use devices::virtio::{GuestRam, VirtioPci};

use crate::layout::{PCI0_MMIO_SIZE, PCI_MMIO32_START};

/// A `--disk FILE[:ro]` argument.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiskSpec {
    pub path: PathBuf,
    pub read_only: bool,
}

impl DiskSpec {
    /// `FILE` or `FILE:ro` (`:rw` is accepted and is the default).
    pub fn parse(arg: &str) -> Result<Self, String> {
        let (path, read_only) = match arg.rsplit_once(':') {
            Some((p, "ro")) => (p, true),
            Some((p, "rw")) => (p, false),
            _ => (arg, false),
        };
        if path.is_empty() {
            return Err(format!("--disk {arg}: expected FILE or FILE:ro"));
        }
        Ok(Self {
            path: PathBuf::from(path),
            read_only,
        })
    }
}

/// Each virtio function's share of PCI0's window: BAR 0 (16 KiB) at the
/// start, the MSI-X BAR (8 KiB) half-way, both naturally aligned.
const FUNCTION_STRIDE: u64 = 0x1_0000;
const MSIX_BAR_OFFSET: u64 = 0x8000;
/// Device numbers on bus 0: 0 is the host bridge, 1..=31 are free.
const FIRST_DEVICE: u8 = 1;
pub const MAX_DISKS: usize = 31;
const COMMAND_MEMORY_AND_MASTER: u32 = 0b110;

#[derive(Debug, thiserror::Error)]
pub enum VirtioError {
    #[error("--disk {0}")]
    Open(#[from] OpenError),
    #[error("--disk: {count} disks, at most {MAX_DISKS} fit on the root bus")]
    TooMany { count: usize },
    #[error("--disk {path}: MSI-X vectors: {source}")]
    Interrupts {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Opens every disk (all of them before any joins the bus, so a bad one
/// leaves nothing behind) and adds its function to the root bus.
pub fn add_disks(
    disks: &[DiskSpec],
    mem: &GuestRam,
    pci: &mut PciRoot,
    irq: &dyn InterruptAllocator,
) -> Result<(), VirtioError> {
    if disks.len() > MAX_DISKS {
        return Err(VirtioError::TooMany { count: disks.len() });
    }
    let blocks = disks
        .iter()
        .enumerate()
        .map(|(i, d)| Block::open(&d.path, d.read_only, &format!("cxlvmm-disk{i}")))
        .collect::<Result<Vec<_>, _>>()?;
    for (i, (block, spec)) in blocks.into_iter().zip(disks).enumerate() {
        let vectors = VirtioPci::msix_vectors(&block);
        let msi = irq
            .msix_vectors(vectors)
            .map_err(|source| VirtioError::Interrupts {
                path: spec.path.clone(),
                source,
            })?;
        let mut dev = VirtioPci::new(Box::new(block), mem.clone(), CLASS_STORAGE_OTHER, msi);
        program(&mut dev.function, i);
        pci.add(Bdf::new(0, FIRST_DEVICE + i as u8, 0), dev.function);
    }
    Ok(())
}

/// Places function `index`'s BARs in PCI0's window and turns on memory
/// decoding and bus mastering.
fn program(f: &mut PciFunction, index: usize) {
    let base = PCI_MMIO32_START + FUNCTION_STRIDE * index as u64;
    debug_assert!(base + FUNCTION_STRIDE <= PCI_MMIO32_START + PCI0_MMIO_SIZE);
    for (bar, addr) in [(0usize, base), (4, base + MSIX_BAR_OFFSET)] {
        let _ = f.write_config(4 + bar, 0, &(addr as u32).to_le_bytes());
        let _ = f.write_config(5 + bar, 0, &((addr >> 32) as u32).to_le_bytes());
    }
    let _ = f.write_config(1, 0, &COMMAND_MEMORY_AND_MASTER.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_arguments_parse_with_an_optional_mode() {
        assert_eq!(
            DiskSpec::parse("/tmp/a.img").unwrap(),
            DiskSpec {
                path: "/tmp/a.img".into(),
                read_only: false
            }
        );
        assert!(DiskSpec::parse("a.img:ro").unwrap().read_only);
        assert!(!DiskSpec::parse("a.img:rw").unwrap().read_only);
        // A colon that is not a mode stays part of the name.
        assert_eq!(
            DiskSpec::parse("dir:x/a.img").unwrap().path,
            PathBuf::from("dir:x/a.img")
        );
        assert!(DiskSpec::parse(":ro").unwrap_err().contains("--disk :ro"));
        assert!(DiskSpec::parse("").is_err());
    }

    #[test]
    fn every_disk_fits_in_pci0s_window() {
        let last = PCI_MMIO32_START + FUNCTION_STRIDE * MAX_DISKS as u64;
        assert!(last <= PCI_MMIO32_START + PCI0_MMIO_SIZE);
        assert!(usize::from(FIRST_DEVICE) + MAX_DISKS <= 32);
    }
}
