//! One host address range stitched together from page-granular shared
//! mappings of several device backings: how an interleaved region becomes a
//! single KVM memory slot while every byte still lives in its own device's
//! memfd or file (so destroying and re-creating a region, or reading the
//! device 1-way later, sees the same data, as on hardware).
//!
//! Each run of the region that continues one file contiguously is one
//! mmap, so a region costs size / granularity mappings in the worst case;
//! the kernel caps a process's mappings at `vm.max_map_count`, which
//! [`map_budget`] reports so callers can fall back before running out.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::ptr::NonNull;

/// Page size the pieces must be multiples of.
pub const PAGE: u64 = 4096;

/// One piece: `len` bytes of `file` from `offset`, at `at` bytes into the range.
pub struct Piece<'a> {
    pub at: u64,
    pub file: &'a File,
    pub offset: u64,
    pub len: u64,
}

/// Merges pieces that continue the previous one in the same file.
pub fn coalesce(pieces: Vec<Piece<'_>>) -> Vec<Piece<'_>> {
    let mut out: Vec<Piece> = Vec::with_capacity(pieces.len());
    for p in pieces {
        if let Some(last) = out.last_mut() {
            if std::ptr::eq(last.file, p.file)
                && last.at + last.len == p.at
                && last.offset + last.len == p.offset
            {
                last.len += p.len;
                continue;
            }
        }
        out.push(p);
    }
    out
}

/// How many more mappings this process may create, keeping `reserve` spare
/// for everything else (allocator arenas, thread stacks, later regions).
///
/// The first call opens the two /proc files it reads and keeps them: later
/// calls come from vCPU threads, whose seccomp filter opens no files.
pub fn map_budget(reserve: usize) -> usize {
    static MAX: ProcFile = ProcFile::new("/proc/sys/vm/max_map_count");
    static MAPS: ProcFile = ProcFile::new("/proc/self/maps");
    let max = MAX
        .read()
        .and_then(|s| s.trim().parse::<usize>().ok())
        .unwrap_or(65530);
    let used = MAPS.read().map(|s| s.lines().count()).unwrap_or(0);
    max.saturating_sub(used).saturating_sub(reserve)
}

/// A /proc file opened once and read from its start on every `read`.
struct ProcFile {
    path: &'static str,
    file: std::sync::OnceLock<Option<std::sync::Mutex<std::fs::File>>>,
}

impl ProcFile {
    const fn new(path: &'static str) -> Self {
        Self {
            path,
            file: std::sync::OnceLock::new(),
        }
    }

    fn read(&self) -> Option<String> {
        use std::io::{Read, Seek, SeekFrom};
        let file = self
            .file
            .get_or_init(|| {
                std::fs::File::open(self.path)
                    .ok()
                    .map(std::sync::Mutex::new)
            })
            .as_ref()?;
        let mut file = file.lock().unwrap_or_else(|e| e.into_inner());
        file.seek(SeekFrom::Start(0)).ok()?;
        let mut s = String::new();
        file.read_to_string(&mut s).ok()?;
        Some(s)
    }
}

/// The stitched range; unmapped (all pieces at once) on drop.
pub struct ComposedMapping {
    addr: NonNull<u8>,
    size: usize,
}

// SAFETY: the mapping is plain shared memory owned by this value; nothing in
// it is tied to the creating thread.
unsafe impl Send for ComposedMapping {}
// SAFETY: as above; the guest and the VMM access it concurrently as memory.
unsafe impl Sync for ComposedMapping {}

impl ComposedMapping {
    /// Reserves `size` bytes of address space and maps every piece into it.
    /// Pieces must be page aligned in position, offset and length, and
    /// together cover the range exactly.
    pub fn new(size: u64, pieces: &[Piece<'_>]) -> io::Result<Self> {
        let invalid = |what: &str| io::Error::new(io::ErrorKind::InvalidInput, what.to_string());
        let mut covered = 0u64;
        for p in pieces {
            if p.at != covered || p.len == 0 || (p.at | p.offset | p.len) % PAGE != 0 {
                return Err(invalid("pieces must tile the range in whole pages"));
            }
            covered += p.len;
        }
        if covered != size || size == 0 {
            return Err(invalid("pieces must cover the whole range"));
        }
        let len = usize::try_from(size).map_err(|_| invalid("range too large"))?;
        let addr = crate::memory_backing::reserve_address_space(len)?;
        let base: *mut libc::c_void = addr.as_ptr().cast();
        // From here on, dropping `this` releases the whole reservation.
        let this = Self { addr, size: len };
        for p in pieces {
            // SAFETY: the target lies inside our own reservation (checked
            // above: pieces tile [0, size)), so MAP_FIXED replaces only pages
            // this value owns; the file descriptor is valid for the call.
            let got = unsafe {
                libc::mmap(
                    base.cast::<u8>().add(p.at as usize).cast(),
                    p.len as usize,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_SHARED | libc::MAP_FIXED,
                    p.file.as_raw_fd(),
                    p.offset as libc::off_t,
                )
            };
            if got == libc::MAP_FAILED {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(this)
    }

    pub fn as_ptr(&self) -> *mut u8 {
        self.addr.as_ptr()
    }
}

impl Drop for ComposedMapping {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the range this value reserved; KVM's slot
        // over it has been deleted before the owner drops it.
        unsafe {
            libc::munmap(self.addr.as_ptr().cast(), self.size);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileExt;

    fn memfd(len: u64, fill: u8) -> File {
        let f: File = memfd::MemfdOptions::default()
            .create("composed-test")
            .unwrap()
            .into_file();
        f.set_len(len).unwrap();
        f.write_all_at(&vec![fill; len as usize], 0).unwrap();
        f
    }

    #[test]
    fn stitched_pages_read_and_write_through_to_their_files() {
        let (a, b) = (memfd(4 * PAGE, 0xaa), memfd(4 * PAGE, 0xbb));
        // 2-way at one page: a0 b0 a1 b1 ...
        let pieces: Vec<Piece> = (0..8)
            .map(|i| Piece {
                at: i * PAGE,
                file: if i % 2 == 0 { &a } else { &b },
                offset: (i / 2) * PAGE,
                len: PAGE,
            })
            .collect();
        let m = ComposedMapping::new(8 * PAGE, &coalesce(pieces)).unwrap();
        // SAFETY: reading and writing inside the 8-page mapping just made.
        unsafe {
            assert_eq!(*m.as_ptr(), 0xaa);
            assert_eq!(*m.as_ptr().add(PAGE as usize), 0xbb);
            *m.as_ptr().add(3 * PAGE as usize + 5) = 0x11; // b1 + 5
        }
        let mut byte = [0u8];
        b.read_exact_at(&mut byte, PAGE + 5).unwrap();
        assert_eq!(
            byte[0], 0x11,
            "a store through the region lands in device b"
        );
    }

    #[test]
    fn contiguous_runs_coalesce_and_bad_tilings_are_refused() {
        let a = memfd(4 * PAGE, 0);
        let run = |at, offset| Piece {
            at,
            file: &a,
            offset,
            len: PAGE,
        };
        assert_eq!(
            coalesce(vec![run(0, 0), run(PAGE, PAGE), run(2 * PAGE, 0)]).len(),
            2
        );
        assert!(ComposedMapping::new(2 * PAGE, &[run(0, 0)]).is_err(), "gap");
        assert!(
            ComposedMapping::new(PAGE, &[run(0, 100)]).is_err(),
            "unaligned"
        );
        assert!(map_budget(0) > 0);
    }
}
