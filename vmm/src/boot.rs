//! Loading a Linux kernel (bzImage or ELF vmlinux), initramfs and command line
//! into guest memory, and filling the zero page (64-bit boot protocol).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use linux_loader::cmdline::Cmdline;
use linux_loader::loader::bootparam::{boot_e820_entry, boot_params};
use linux_loader::loader::{load_cmdline, BzImage, Elf, KernelLoader};
use vm_memory::{Bytes, GuestAddress};

use crate::layout::*;
use crate::memory::{e820_map, low_ram_end, GuestMemory};

#[derive(Debug, thiserror::Error)]
pub enum BootError {
    #[error("cannot read kernel image {path}: {source}")]
    KernelFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("kernel image {0} is neither a bzImage nor an ELF vmlinux")]
    UnknownFormat(PathBuf),
    #[error("cannot load kernel image {path}: {msg}")]
    Load { path: PathBuf, msg: String },
    #[error("cannot read initrd {path}: {source}")]
    InitrdFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("initrd ({size} bytes) does not fit in guest memory below {limit:#x}")]
    InitrdTooLarge { size: u64, limit: u64 },
    #[error("kernel command line is invalid or too long: {0}")]
    Cmdline(String),
    #[error("writing boot data to guest memory failed: {0}")]
    GuestMemory(String),
}

/// Where the boot vCPU starts.
#[derive(Clone, Copy, Debug)]
pub struct EntryPoint {
    /// 64-bit entry (RIP).
    pub rip: u64,
    /// Zero page address, handed over in RSI.
    pub zero_page: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ImageFormat {
    BzImage,
    Elf,
}

/// Offset of the "HdrS" magic in a bzImage's setup header.
const BZIMAGE_MAGIC_OFFSET: u64 = 0x202;
const HDRS: u32 = 0x5372_6448;
/// From bzImage's protected-mode code start to its 64-bit entry point.
const STARTUP_64_OFFSET: u64 = 0x200;
const KERNEL_BOOT_FLAG_MAGIC: u16 = 0xaa55;
const KERNEL_LOADER_OTHER: u8 = 0xff;
const KERNEL_MIN_ALIGNMENT: u32 = 0x100_0000;
/// loadflags: the kernel may use the heap between setup and `heap_end_ptr`.
const CAN_USE_HEAP: u8 = 0x80;

fn detect_format(f: &mut File, path: &Path) -> Result<ImageFormat, BootError> {
    let io = |source| BootError::KernelFile {
        path: path.to_owned(),
        source,
    };
    let mut magic = [0u8; 4];
    f.seek(SeekFrom::Start(0)).map_err(io)?;
    if f.read_exact(&mut magic).is_ok() && magic == *b"\x7fELF" {
        return Ok(ImageFormat::Elf);
    }
    f.seek(SeekFrom::Start(BZIMAGE_MAGIC_OFFSET)).map_err(io)?;
    if f.read_exact(&mut magic).is_ok() && u32::from_le_bytes(magic) == HDRS {
        return Ok(ImageFormat::BzImage);
    }
    Err(BootError::UnknownFormat(path.to_owned()))
}

/// Everything needed to put a kernel into a fresh guest.
pub struct BootSpec<'a> {
    pub kernel: &'a Path,
    pub initrd: Option<Vec<u8>>,
    pub cmdline: &'a str,
    pub mem_size: u64,
    pub rsdp_addr: u64,
}

pub fn load_kernel(mem: &GuestMemory, spec: &BootSpec) -> Result<EntryPoint, BootError> {
    let path = spec.kernel;
    let mut f = File::open(path).map_err(|source| BootError::KernelFile {
        path: path.to_owned(),
        source,
    })?;
    let format = detect_format(&mut f, path)?;
    let load_err = |e: linux_loader::loader::Error| BootError::Load {
        path: path.to_owned(),
        msg: e.to_string(),
    };
    let (rip, mut params) = match format {
        ImageFormat::BzImage => {
            let res = BzImage::load(mem, None, &mut f, Some(GuestAddress(HIMEM_START)))
                .map_err(load_err)?;
            let mut params = boot_params::default();
            if let Some(hdr) = res.setup_header {
                params.hdr = hdr;
            }
            (res.kernel_load.0 + STARTUP_64_OFFSET, params)
        }
        ImageFormat::Elf => {
            let res =
                Elf::load(mem, None, &mut f, Some(GuestAddress(HIMEM_START))).map_err(load_err)?;
            let mut params = boot_params::default();
            params.hdr.header = HDRS;
            params.hdr.kernel_alignment = KERNEL_MIN_ALIGNMENT;
            (res.kernel_load.0, params)
        }
    };

    let hdr = &mut params.hdr;
    hdr.type_of_loader = KERNEL_LOADER_OTHER;
    hdr.boot_flag = KERNEL_BOOT_FLAG_MAGIC;
    hdr.loadflags |= CAN_USE_HEAP;
    hdr.heap_end_ptr = 0xfe00;

    let mut cmdline =
        Cmdline::new(CMDLINE_MAX_SIZE).map_err(|e| BootError::Cmdline(e.to_string()))?;
    cmdline
        .insert_str(spec.cmdline)
        .map_err(|e| BootError::Cmdline(e.to_string()))?;
    load_cmdline(mem, GuestAddress(CMDLINE_START), &cmdline)
        .map_err(|e| BootError::Cmdline(e.to_string()))?;
    hdr.cmd_line_ptr = CMDLINE_START as u32;
    hdr.cmdline_size = spec.cmdline.len() as u32 + 1;

    if let Some(initrd) = &spec.initrd {
        let addr = place_initrd(initrd.len() as u64, spec.mem_size, hdr.initrd_addr_max)?;
        mem.write_slice(initrd, GuestAddress(addr))
            .map_err(|e| BootError::GuestMemory(e.to_string()))?;
        hdr.ramdisk_image = addr as u32;
        hdr.ramdisk_size = initrd.len() as u32;
    }

    params.acpi_rsdp_addr = spec.rsdp_addr;
    let map = e820_map(spec.mem_size);
    for (slot, e) in params.e820_table.iter_mut().zip(&map) {
        *slot = boot_e820_entry {
            addr: e.addr,
            size: e.size,
            r#type: e.kind,
        };
    }
    params.e820_entries = map.len() as u8;

    mem.write_obj(params, GuestAddress(ZERO_PAGE_START))
        .map_err(|e| BootError::GuestMemory(e.to_string()))?;
    Ok(EntryPoint {
        rip,
        zero_page: ZERO_PAGE_START,
    })
}

/// The initrd goes at the top of low RAM (page aligned), below the kernel's
/// `initrd_addr_max` (0 in an ELF image's empty header: use the 2 GiB default).
fn place_initrd(size: u64, mem_size: u64, addr_max: u32) -> Result<u64, BootError> {
    let addr_max = if addr_max == 0 {
        0x7fff_ffff
    } else {
        u64::from(addr_max)
    };
    let limit = low_ram_end(mem_size).min(addr_max + 1);
    let addr = limit
        .checked_sub(size)
        .map(|a| a & !0xfff)
        .filter(|&a| a >= HIMEM_START + 0x100_0000)
        .ok_or(BootError::InitrdTooLarge { size, limit })?;
    Ok(addr)
}

/// The most initrd bytes a guest with `mem_size` bytes of RAM can take,
/// where the kernel accepts the default `initrd_addr_max` (2 GiB) or more:
/// what the CLI checks `--modules` against before anything starts.
pub fn max_initrd_size(mem_size: u64) -> u64 {
    low_ram_end(mem_size)
        .min(0x8000_0000)
        .saturating_sub(HIMEM_START + 0x100_0000)
        & !0xfff
}

/// Reads an initrd file (the guest image or `--initrd`).
pub fn read_initrd(path: &Path) -> Result<Vec<u8>, BootError> {
    std::fs::read(path).map_err(|source| BootError::InitrdFile {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initrd_goes_to_top_of_low_ram_page_aligned() {
        let a = place_initrd(0x12345, 1 << 30, 0x7fff_ffff).unwrap();
        assert_eq!(a, ((1u64 << 30) - 0x12345) & !0xfff);
        assert!(a + 0x12345 <= 1 << 30);
        // With 8 GiB of RAM the 2 GiB initrd_addr_max limit wins.
        let a = place_initrd(0x1000, 8 << 30, 0x7fff_ffff).unwrap();
        assert_eq!(a, 0x8000_0000 - 0x1000);
        // Too big for a 64 MiB guest.
        assert!(matches!(
            place_initrd(60 << 20, 64 << 20, 0x7fff_ffff),
            Err(BootError::InitrdTooLarge { .. })
        ));
    }

    #[test]
    fn unknown_image_format_is_rejected() {
        let dir = std::env::temp_dir().join(format!("cxlvmm-boot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("not-a-kernel");
        std::fs::write(&p, vec![0x42u8; 4096]).unwrap();
        let mut f = File::open(&p).unwrap();
        assert!(matches!(
            detect_format(&mut f, &p),
            Err(BootError::UnknownFormat(_))
        ));
        let mut bz = vec![0u8; 4096];
        bz[0x202..0x206].copy_from_slice(b"HdrS");
        std::fs::write(&p, &bz).unwrap();
        let mut f = File::open(&p).unwrap();
        assert_eq!(detect_format(&mut f, &p).unwrap(), ImageFormat::BzImage);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
