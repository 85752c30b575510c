//! Host memory for gathered regions: interleaved regions over volatile media
//! whose bytes live, while the region is committed, in one HPA-ordered
//! range ([`RegionBacking`]) that is one KVM slot and one host mapping
//! whatever the region's size (a stitched region needs one per granule).
//!
//! Regions are committed on vCPU threads, whose seccomp filter lets them
//! neither create a memfd nor `fallocate`. So everything is made at
//! start-up: each CFMWS window that may hold native regions gets a memfd as
//! large as the window (sparse: it costs nothing until bytes land in it),
//! byte `n` at HPA `window base + n`, mapped once; each device's volatile
//! memfd is mapped once too. Bytes moved out of a file are freed through
//! these mappings (`madvise(MADV_REMOVE)`, a hole punch for shared memory).

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::ptr::NonNull;
use std::sync::Arc;

use devices::cxl::backing::{Reclaim, Type3Backing};

use crate::memory_backing::MemoryBacking;

/// A whole file mapped shared, read-write; unmapped on drop.
struct SharedMap {
    addr: NonNull<u8>,
    len: u64,
    /// The descriptor of the file mapped (to find the map of a file).
    fd: RawFd,
    /// The same file, to zero partial pages through.
    file: File,
}

// SAFETY: plain shared memory owned by this value; nothing in it is tied to
// the creating thread.
unsafe impl Send for SharedMap {}
// SAFETY: as above; it is only handed to KVM and to madvise.
unsafe impl Sync for SharedMap {}

impl SharedMap {
    fn new(file: &File, len: u64) -> io::Result<Self> {
        let size = usize::try_from(len)
            .ok()
            .filter(|&s| s > 0)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "bad mapping size"))?;
        // SAFETY: a fresh shared mapping of a file we hold, at an address of
        // the kernel's choosing: it overlaps nothing of ours.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_NORESERVE,
                file.as_raw_fd(),
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let addr = NonNull::new(addr.cast::<u8>())
            .ok_or_else(|| io::Error::other("mmap returned null"))?;
        Ok(Self {
            addr,
            len,
            fd: file.as_raw_fd(),
            file: file.try_clone()?,
        })
    }

    /// Frees `[offset, offset + len)` of the file through the mapping.
    fn remove(&self, offset: u64, len: u64) -> io::Result<()> {
        let end = offset
            .checked_add(len)
            .filter(|&e| e <= self.len)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "past the mapping"))?;
        // madvise wants page-aligned starts; a partial page is zeroed by
        // hand (pwrite) instead.
        let page = 4096;
        let first = offset.next_multiple_of(page).min(end);
        let last = (end / page * page).max(first);
        if first < last {
            // SAFETY: [first, last) lies inside this mapping (checked
            // above); MADV_REMOVE frees the file's pages there, which no
            // one may read as anything but zeros from now on.
            let rc = unsafe {
                libc::madvise(
                    self.addr.as_ptr().add(first as usize).cast(),
                    (last - first) as usize,
                    libc::MADV_REMOVE,
                )
            };
            if rc < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        for (a, b) in [(offset, first), (last.max(offset), end)] {
            if a < b {
                use std::os::unix::fs::FileExt;
                self.file.write_all_at(&vec![0u8; (b - a) as usize], a)?;
            }
        }
        Ok(())
    }
}

impl Drop for SharedMap {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly what `new` mapped; KVM slots over it were
        // deleted before the last owner let go (the regions hold it).
        unsafe {
            libc::munmap(self.addr.as_ptr().cast(), self.len as usize);
        }
    }
}

/// One window's memfd and its mapping.
struct WindowFile {
    base: u64,
    size: u64,
    file: Arc<File>,
    map: SharedMap,
}

/// The windows' memfds and the devices' volatile media, mapped.
pub struct GatherMedia {
    windows: Vec<WindowFile>,
    devices: Vec<SharedMap>,
}

/// Where a region lives in its window's memfd.
pub struct WindowRange {
    pub file: Arc<File>,
    pub offset: u64,
    /// The region's first byte in the host mapping.
    pub host: *mut u8,
}

impl GatherMedia {
    /// Memfds for `windows` (base, size) and mappings of them and of every
    /// volatile partition in `backings`; the windows' mappings (which KVM
    /// slots point into) get `memory`'s huge-page advice.
    pub fn new(
        windows: &[(u64, u64)],
        backings: &[Arc<Type3Backing>],
        memory: MemoryBacking,
    ) -> io::Result<Self> {
        let mut made = Vec::with_capacity(windows.len());
        for &(base, size) in windows {
            let file: File = memfd::MemfdOptions::default()
                .close_on_exec(true)
                .create(format!("cxlvmm-window-{base:#x}"))
                .map_err(|e| io::Error::other(format!("memfd: {e}")))?
                .into_file();
            file.set_len(size)?;
            let map = SharedMap::new(&file, size)?;
            memory.advise_shared(map.addr.as_ptr(), size as usize);
            made.push(WindowFile {
                base,
                size,
                file: Arc::new(file),
                map,
            });
        }
        let mut devices = Vec::new();
        for b in backings {
            if let Some(s) = b.locate(0).filter(|s| !s.persistent) {
                devices.push(SharedMap::new(s.file, s.len_to_end)?);
            }
        }
        Ok(Self {
            windows: made,
            devices,
        })
    }

    /// The range of a window's memfd that holds `[base, base + size)`.
    pub fn range(&self, base: u64, size: u64) -> Option<WindowRange> {
        let w = self
            .windows
            .iter()
            .find(|w| base >= w.base && size <= w.size && base - w.base <= w.size - size)?;
        let offset = base - w.base;
        Some(WindowRange {
            file: w.file.clone(),
            offset,
            // SAFETY: offset + size <= the window's mapping (checked above).
            host: unsafe { w.map.addr.as_ptr().add(offset as usize) },
        })
    }
}

impl Reclaim for GatherMedia {
    fn punch(&self, file: &File, offset: u64, len: u64) -> io::Result<()> {
        let fd = file.as_raw_fd();
        self.windows
            .iter()
            .map(|w| &w.map)
            .chain(&self.devices)
            .find(|m| m.fd == fd)
            .ok_or_else(|| io::Error::other("no mapping of that file to free it through"))?
            .remove(offset, len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use devices::cxl::backing::{InterleaveLayout, RegionBacking};
    use std::os::unix::fs::FileExt;
    use vmm_sys_util::seek_hole::SeekHole;

    const MIB: u64 = 1 << 20;

    fn holds_data(file: &File) -> bool {
        file.try_clone().unwrap().seek_data(0).unwrap().is_some()
    }

    #[test]
    fn a_region_gathers_into_its_window_and_frees_through_the_mappings() {
        let devs: Vec<_> = (0..2)
            .map(|i| Arc::new(Type3Backing::new(&format!("g{i}"), 8 * MIB, MIB, None).unwrap()))
            .collect();
        let base = 0x10_0000_0000;
        let media =
            Arc::new(GatherMedia::new(&[(base, 64 * MIB)], &devs, MemoryBacking::Thp).unwrap());
        assert!(
            media.range(base + 60 * MIB, 8 * MIB).is_none(),
            "past the window"
        );
        assert!(media.range(base - 4096, 8192).is_none(), "before it");
        devs[1].write(4096 + 10, b"second").unwrap();
        let range = media.range(base + 32 * MIB, 16 * MIB).unwrap();
        assert_eq!(range.offset, 32 * MIB);
        let layout = InterleaveLayout {
            ways: 2,
            granularity: 4096,
        };
        let members = devs.iter().map(|b| (b.clone(), 0)).collect();
        let reclaim: Arc<dyn Reclaim> = media.clone();
        let region = RegionBacking::gather(
            range.file.clone(),
            range.offset,
            layout,
            8 * MIB,
            members,
            reclaim,
        )
        .unwrap();
        // Device 1's second granule is region granule 3; the guest's
        // mapping of the window shows it.
        // SAFETY: reading inside the window mapping (16 MiB from `host`).
        let seen = unsafe { std::slice::from_raw_parts(range.host.add(3 * 4096 + 10), 6) };
        assert_eq!(seen, b"second");
        // The device's memfd gave the page up (freed through its mapping).
        assert!(!holds_data(devs[1].locate(0).unwrap().file));
        drop(region);
        assert!(!holds_data(&range.file), "the window is empty again");
        let mut back = [0u8; 6];
        devs[1]
            .locate(0)
            .unwrap()
            .file
            .read_exact_at(&mut back, 4096 + 10)
            .unwrap();
        assert_eq!(&back, b"second");
        // A file nobody mapped cannot be freed through a mapping.
        let other = devs[0].locate(8 * MIB).unwrap().file;
        assert!(media.punch(other, 0, 4096).is_err());
    }
}
