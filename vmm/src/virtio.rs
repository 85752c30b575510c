//! Virtio functions on the main root bus (PCI0): each `--disk` becomes a
//! virtio-blk PCI function at bus 0, device 1 onwards, and each `--share`
//! a virtio-fs function after them (served by a `virtiofsd` over
//! vhost-user); their BARs programmed inside PCI0's memory window as
//! firmware would, their MSI-X vectors routed through KVM like every other
//! function's.

use std::path::{Path, PathBuf};

use devices::pci::{Bdf, InterruptAllocator, PciDevice, PciFunction, PciRoot};
use devices::virtio::block::{Block, OpenError, CLASS_STORAGE_OTHER};
use devices::virtio::fs::{check_tag, Fs};
use devices::virtio::{GuestRam, VirtioDevice, VirtioPci};

use crate::vhost_user::virtiofsd::Virtiofsd;
use crate::vhost_user::VhostUserRings;

use crate::layout::{PCI0_MMIO_SIZE, PCI_MMIO32_START};

/// `ARG:ro` → (ARG, read-only); `ARG:rw` and a bare `ARG` → read-write.
fn split_mode(arg: &str) -> (&str, bool) {
    match arg.rsplit_once(':') {
        Some((rest, "ro")) => (rest, true),
        Some((rest, "rw")) => (rest, false),
        _ => (arg, false),
    }
}

/// A `--disk FILE[:ro]` argument.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiskSpec {
    pub path: PathBuf,
    pub read_only: bool,
}

impl DiskSpec {
    /// `FILE` or `FILE:ro` (`:rw` is accepted and is the default).
    pub fn parse(arg: &str) -> Result<Self, String> {
        let (path, read_only) = split_mode(arg);
        if path.is_empty() {
            return Err(format!("--disk {arg}: expected FILE or FILE:ro"));
        }
        Ok(Self {
            path: PathBuf::from(path),
            read_only,
        })
    }
}

/// A `--share HOST_DIR:TAG[:ro]` argument.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShareSpec {
    pub dir: PathBuf,
    pub tag: String,
    pub read_only: bool,
    /// Whether the guest sees the host's mount points inside it as mount
    /// points of their own (virtiofsd's default), or as plain folders: an
    /// overlay refuses a lower layer with such automount points (EREMOTE).
    pub submounts: bool,
}

impl ShareSpec {
    /// `DIR:TAG` or `DIR:TAG:ro` (`:rw` is the default); the tag is what
    /// the guest mounts (`mount -t virtiofs TAG /mnt`).
    pub fn parse(arg: &str) -> Result<Self, String> {
        let (rest, read_only) = split_mode(arg);
        let Some((dir, tag)) = rest.rsplit_once(':').filter(|(d, _)| !d.is_empty()) else {
            return Err(format!(
                "--share {arg}: expected HOST_DIR:TAG or HOST_DIR:TAG:ro"
            ));
        };
        check_tag(tag).map_err(|e| format!("--share {arg}: {e}"))?;
        Ok(Self {
            dir: PathBuf::from(dir),
            tag: tag.to_string(),
            read_only,
            submounts: true,
        })
    }
}

/// The tag of `--root-share`'s share of the host's `/`, and the guest
/// command-line parameter that tells the guest images' /init to run on it
/// (docs/guest-contract.md, "Running on the host's root").
pub const ROOT_SHARE_TAG: &str = "cxlvmm-root";
pub const ROOT_SHARE_PARAM: &str = "cxlvmm.rootshare";

impl ShareSpec {
    /// `--root-share`: the host's `/`, read-only, its mount points plain
    /// folders (it is the lower layer of the guest's overlay).
    pub fn host_root() -> Self {
        Self {
            dir: PathBuf::from("/"),
            tag: ROOT_SHARE_TAG.into(),
            read_only: true,
            submounts: false,
        }
    }
}

/// Request queues of each virtio-fs device (Linux's driver uses one).
const FS_REQUEST_QUEUES: u16 = 1;

/// A virtio-fs device for `share`: its virtiofsd started, connected and
/// answering (SET_OWNER, features) before the device exists.
pub fn virtio_fs_device(share: &ShareSpec, virtiofsd: &Path) -> Result<Fs, VirtioError> {
    let fail = |msg: String| VirtioError::Share {
        dir: share.dir.clone(),
        tag: share.tag.clone(),
        msg,
    };
    let (mut daemon, stream) = Virtiofsd::start(virtiofsd, share).map_err(fail)?;
    let queues = 1 + usize::from(FS_REQUEST_QUEUES);
    let name = format!(
        "virtiofsd for --share {}:{}",
        share.dir.display(),
        share.tag
    );
    let rings =
        VhostUserRings::connect(name, stream, queues).map_err(|e| fail(daemon.explain(e)))?;
    Fs::new(&share.tag, FS_REQUEST_QUEUES, Box::new(rings)).map_err(|e| fail(e.to_string()))
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
    #[error("--disk and --share: {count} devices, at most {MAX_DISKS} fit on the root bus")]
    TooMany { count: usize },
    #[error("--share {dir}:{tag}: {msg}")]
    Share {
        dir: PathBuf,
        tag: String,
        msg: String,
    },
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

/// Starts a `virtiofsd` per share (all of them connected and answering
/// before any device joins the bus) and adds a virtio-fs function for each
/// after the `first` functions already on the root bus. Guest RAM must be
/// shared memory (a memfd) for the daemons to map it.
pub fn add_shares(
    shares: &[ShareSpec],
    virtiofsd: &Path,
    first: usize,
    mem: &GuestRam,
    pci: &mut PciRoot,
    irq: &dyn InterruptAllocator,
) -> Result<(), VirtioError> {
    if first + shares.len() > MAX_DISKS {
        return Err(VirtioError::TooMany {
            count: first + shares.len(),
        });
    }
    let devices = shares
        .iter()
        .map(|s| Ok((virtio_fs_device(s, virtiofsd)?, s)))
        .collect::<Result<Vec<_>, VirtioError>>()?;
    for (i, (fs, s)) in devices.into_iter().enumerate() {
        let index = first + i;
        let msi = irq
            .msix_vectors(VirtioPci::msix_vectors(&fs as &dyn VirtioDevice))
            .map_err(|e| VirtioError::Share {
                dir: s.dir.clone(),
                tag: s.tag.clone(),
                msg: format!("MSI-X vectors: {e}"),
            })?;
        let mut dev = VirtioPci::new(
            Box::new(fs),
            mem.clone(),
            devices::virtio::fs::CLASS_STORAGE_OTHER,
            msi,
        );
        program(&mut dev.function, index);
        pci.add(Bdf::new(0, FIRST_DEVICE + index as u8, 0), dev.function);
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
