//! How guest memory is backed on the host (`--memory-backing`): guest RAM
//! in 4 KiB anonymous pages (`anon`), in transparent huge pages (`thp`), or
//! in hugetlbfs pages reserved up front (`hugetlb`); device memory (type-3
//! volatile media, the windows' gathered regions, accelerator VRAM) is
//! shared memory, advised to use huge pages under `thp` and `hugetlb`.
//!
//! KVM maps a guest page with a 2 MiB entry only when the host page behind
//! it is a 2 MiB page and guest and host addresses agree modulo 2 MiB
//! (Linux `arch/x86/kvm/mmu/mmu.c`, `kvm_mmu_max_mapping_level`), so `thp`
//! guest RAM is mapped 2 MiB aligned here instead of wherever the kernel
//! puts it. Device memory stays shared memory (memfd) under `hugetlb`
//! because hugetlbfs files cannot be written with `pwrite`, which the
//! trapped path, DMA and the mailbox use (docs/memory-backing.md).

use std::io;
use std::path::Path;

use vm_memory::mmap::MmapRegionBuilder;
use vm_memory::{FileOffset, MmapRegion};

/// The x86 huge page every mode here aims for.
pub const HUGE_PAGE: u64 = 2 << 20;

const THP_ENABLED: &str = "/sys/kernel/mm/transparent_hugepage/enabled";
const THP_SHMEM: &str = "/sys/kernel/mm/transparent_hugepage/shmem_enabled";

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum MemoryBacking {
    /// Anonymous memory in 4 KiB pages (or whatever the host's THP policy
    /// gives without being asked).
    Anon,
    /// Transparent huge pages: 2 MiB-aligned anonymous guest RAM advised
    /// with MADV_HUGEPAGE; device memory advised too.
    Thp,
    /// Guest RAM in 2 MiB hugetlbfs pages, reserved when it is mapped
    /// (`/proc/sys/vm/nr_hugepages` must hold them).
    Hugetlb,
}

impl MemoryBacking {
    /// Without `--memory-backing`: transparent huge pages, as QEMU advises
    /// its guest RAM, unless the host forbids them (`enabled` is
    /// `[never]`), then 4 KiB pages. Huge pages halve the boot's VM exits
    /// (a first touch maps 2 MiB: one nested page fault, not 512) and
    /// speed up TLB-heavy guests (docs/performance.md, "boot" and "huge
    /// pages: a TLB-heavy chase").
    pub fn host_default() -> Self {
        match read_policy(THP_ENABLED) {
            Some(p) if p == "never" => MemoryBacking::Anon,
            None => MemoryBacking::Anon,
            Some(_) => MemoryBacking::Thp,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            MemoryBacking::Anon => "anon",
            MemoryBacking::Thp => "thp",
            MemoryBacking::Hugetlb => "hugetlb",
        }
    }

    /// What the host must provide for `ram` bytes of guest RAM, checked
    /// before anything starts. Errors name the flag and the host knob.
    pub fn check_host(self, ram: u64) -> Result<(), String> {
        match self {
            MemoryBacking::Anon => Ok(()),
            MemoryBacking::Thp => match read_policy(THP_ENABLED) {
                Some(p) if p == "never" => Err(format!(
                    "--memory-backing thp: {THP_ENABLED} is [never]; write madvise or always to it"
                )),
                _ => Ok(()),
            },
            MemoryBacking::Hugetlb => {
                if !ram.is_multiple_of(HUGE_PAGE) {
                    return Err(format!(
                        "--memory {ram}: must be a multiple of 2 MiB with --memory-backing hugetlb"
                    ));
                }
                let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
                check_huge_pages(&meminfo, ram)
            }
        }
    }

    /// A warning for device memory, which is shared memory: the kernel
    /// gives it huge pages only as `shmem_enabled` allows.
    pub fn device_memory_note(self) -> Option<String> {
        if self == MemoryBacking::Anon {
            return None;
        }
        match read_policy(THP_SHMEM) {
            Some(p) if p == "never" || p == "deny" => Some(format!(
                "--memory-backing {}: CXL and VRAM memory stays in 4 KiB pages: {THP_SHMEM} is [{p}] (write advise to it)",
                self.name()
            )),
            _ => None,
        }
    }

    /// One range of guest RAM, `size` bytes, mapped read-write and private.
    pub fn map_ram(self, size: usize) -> io::Result<MmapRegion<()>> {
        let prot = libc::PROT_READ | libc::PROT_WRITE;
        match self {
            MemoryBacking::Anon => MmapRegion::new(size).map_err(io::Error::other),
            // No MAP_NORESERVE: the pages are reserved now, so a host
            // without them fails here rather than with SIGBUS at a fault.
            MemoryBacking::Hugetlb => MmapRegionBuilder::new(size)
                .with_mmap_prot(prot)
                .with_mmap_flags(libc::MAP_ANONYMOUS | libc::MAP_PRIVATE | libc::MAP_HUGETLB)
                .with_hugetlbfs(true)
                .build()
                .map_err(io::Error::other),
            MemoryBacking::Thp => {
                let flags = libc::MAP_ANONYMOUS | libc::MAP_PRIVATE | libc::MAP_NORESERVE;
                let addr = map_aligned(size, flags)?;
                advise_huge(addr, size);
                // SAFETY: `addr` is a fresh private anonymous mapping of
                // `size` bytes made above with these prot and flags. It is
                // never unmapped: guest RAM lives as long as the process
                // (one VM per process), and KVM slots point into it.
                unsafe { MmapRegion::build_raw(addr, size, prot, flags) }.map_err(io::Error::other)
            }
        }
    }

    /// One range of guest RAM that another process can map too (a vhost-user
    /// backend such as virtiofsd, given the file): a memfd, of hugetlbfs
    /// pages under `hugetlb`, mapped shared; `thp` advises huge pages,
    /// which shared memory gets as `shmem_enabled` allows.
    pub fn map_shared_ram(self, size: usize, name: &str) -> io::Result<MmapRegion<()>> {
        let mut opts = memfd::MemfdOptions::default().close_on_exec(true);
        if self == MemoryBacking::Hugetlb {
            opts = opts.hugetlb(Some(memfd::HugetlbSize::Huge2MB));
        }
        let file = opts
            .create(name)
            .map_err(|e| io::Error::other(format!("memfd: {e}")))?
            .into_file();
        file.set_len(size as u64)?;
        let region = MmapRegionBuilder::new(size)
            .with_file_offset(FileOffset::new(file, 0))
            .with_mmap_prot(libc::PROT_READ | libc::PROT_WRITE)
            .with_mmap_flags(libc::MAP_SHARED | libc::MAP_NORESERVE)
            .with_hugetlbfs(self == MemoryBacking::Hugetlb)
            .build()
            .map_err(io::Error::other)?;
        if self == MemoryBacking::Thp {
            advise_huge(region.as_ptr(), size);
        }
        Ok(region)
    }

    /// Advice for a shared mapping of device memory at `addr`.
    pub fn advise_shared(self, addr: *mut u8, len: usize) {
        if self != MemoryBacking::Anon {
            advise_huge(addr, len);
        }
    }
}

/// The bracketed choice in a sysfs policy file (`always [madvise] never`).
fn read_policy(path: &str) -> Option<String> {
    let text = std::fs::read_to_string(Path::new(path)).ok()?;
    parse_policy(&text)
}

fn parse_policy(text: &str) -> Option<String> {
    let open = text.find('[')?;
    let close = text[open..].find(']')? + open;
    Some(text[open + 1..close].to_string())
}

/// Whether /proc/meminfo's free huge pages (of 2 MiB) hold `bytes`.
fn check_huge_pages(meminfo: &str, bytes: u64) -> Result<(), String> {
    let field = |name: &str| crate::host::proc_field(meminfo, name);
    let page_kib = field("Hugepagesize:").unwrap_or(0);
    let free = field("HugePages_Free:").unwrap_or(0);
    let reserved = field("HugePages_Rsvd:").unwrap_or(0);
    if page_kib * 1024 != HUGE_PAGE {
        return Err(format!(
            "--memory-backing hugetlb: the host's default huge page is {page_kib} kB, not 2048 kB"
        ));
    }
    let need = bytes / HUGE_PAGE;
    let have = free.saturating_sub(reserved);
    if need > have {
        return Err(format!(
            "--memory-backing hugetlb: guest RAM needs {need} huge pages of 2 MiB, the host has {have} free \
             (raise /proc/sys/vm/nr_hugepages by {})",
            need - have
        ));
    }
    Ok(())
}

/// A mapping of `size` bytes whose start is 2 MiB aligned: a larger
/// reservation, the aligned part mapped over it, the rest given back.
fn map_aligned(size: usize, flags: i32) -> io::Result<*mut u8> {
    let align = HUGE_PAGE as usize;
    let span = size
        .checked_add(align)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "mapping too large"))?;
    let reserved: *mut libc::c_void = reserve_address_space(span)?.as_ptr().cast();
    let start = reserved as usize;
    let aligned = start.next_multiple_of(align);
    // SAFETY: [aligned, aligned + size) lies inside the reservation made
    // above, which nothing else uses; MAP_FIXED replaces exactly that part.
    let addr = unsafe {
        libc::mmap(
            aligned as *mut libc::c_void,
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            flags | libc::MAP_FIXED,
            -1,
            0,
        )
    };
    let failed = addr == libc::MAP_FAILED;
    let err = io::Error::last_os_error();
    // SAFETY: the head and tail slack are parts of our own reservation
    // (the whole of it when the second mapping failed).
    unsafe {
        if failed {
            libc::munmap(reserved, span);
        } else {
            if aligned > start {
                libc::munmap(reserved, aligned - start);
            }
            let tail = aligned + size;
            if start + span > tail {
                libc::munmap(tail as *mut libc::c_void, start + span - tail);
            }
        }
    }
    if failed {
        return Err(err);
    }
    Ok(addr.cast())
}

/// `len` bytes of inaccessible address space, for mappings placed over it
/// with MAP_FIXED; the caller unmaps what it does not use.
pub(crate) fn reserve_address_space(len: usize) -> io::Result<std::ptr::NonNull<u8>> {
    // SAFETY: a fresh anonymous PROT_NONE reservation at an address of the
    // kernel's choosing: it overlaps nothing of ours.
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_NONE,
            libc::MAP_ANONYMOUS | libc::MAP_PRIVATE | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if base == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    std::ptr::NonNull::new(base.cast::<u8>()).ok_or_else(|| io::Error::other("mmap returned null"))
}

/// MADV_HUGEPAGE over a mapping; a refusal (THP compiled out, a policy of
/// `never`) only costs speed, so it is logged, not fatal.
fn advise_huge(addr: *mut u8, len: usize) {
    // SAFETY: advice about a range the caller has mapped; it changes no
    // contents.
    let rc = unsafe { libc::madvise(addr.cast(), len, libc::MADV_HUGEPAGE) };
    if rc < 0 {
        log::warn!(
            "madvise(MADV_HUGEPAGE) over {len:#x} bytes: {}",
            io::Error::last_os_error()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bracketed_policy_is_the_chosen_one() {
        assert_eq!(
            parse_policy("always [madvise] never\n").as_deref(),
            Some("madvise")
        );
        assert_eq!(
            parse_policy("always within_size advise [never] deny force").as_deref(),
            Some("never")
        );
        assert_eq!(parse_policy("garbage"), None);
    }

    #[test]
    fn too_few_huge_pages_name_the_sysctl() {
        let meminfo =
            "HugePages_Total: 10\nHugePages_Free: 8\nHugePages_Rsvd: 2\nHugepagesize: 2048 kB\n";
        let err = check_huge_pages(meminfo, 64 << 20).unwrap_err();
        assert!(err.contains("/proc/sys/vm/nr_hugepages"), "{err}");
        assert!(
            err.contains("needs 32 huge pages") && err.contains("6 free"),
            "{err}"
        );
        assert!(check_huge_pages(meminfo, 12 << 20).is_ok());
        let gib_pages = "HugePages_Free: 100\nHugePages_Rsvd: 0\nHugepagesize: 1048576 kB\n";
        assert!(check_huge_pages(gib_pages, 2 << 20)
            .unwrap_err()
            .contains("1048576 kB"));
    }

    #[test]
    fn thp_guest_ram_is_2mib_aligned_and_usable() {
        let size = 6 << 20;
        let map = MemoryBacking::Thp.map_ram(size).unwrap();
        assert_eq!(map.as_ptr() as u64 % HUGE_PAGE, 0);
        assert_eq!(map.size(), size);
        // SAFETY: the mapping is `size` bytes, read-write, ours.
        unsafe {
            *map.as_ptr().add(size - 1) = 7;
            assert_eq!(*map.as_ptr().add(size - 1), 7);
        }
    }

    #[test]
    fn anon_needs_nothing_and_hugetlb_needs_whole_huge_pages() {
        assert!(MemoryBacking::Anon.check_host(4096).is_ok());
        let err = MemoryBacking::Hugetlb
            .check_host((2 << 20) + 4096)
            .unwrap_err();
        assert!(err.contains("multiple of 2 MiB"), "{err}");
    }
}
