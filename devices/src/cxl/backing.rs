//! A type-3 device's capacity: volatile in an anonymous memfd, persistent in
//! a file that outlives the VMM. DPA 0.. is volatile, then persistent
//! (CXL's partition order). The VMM maps ranges of these files into the
//! guest for native regions; the trapped path reads and writes them here.
//!
//! While a volatile interleaved region is native, the bytes of each member
//! device's share live in the region's own HPA-ordered memfd instead
//! ([`RegionBacking`]); [`Type3Backing::read`] and [`Type3Backing::write`]
//! follow them there, so every DPA-addressed user (trapped accesses, DMA,
//! the mailbox) sees the same bytes as the guest's loads and stores.

mod region;

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

pub use region::{InterleaveLayout, Reclaim, RegionBacking};

/// Where a DPA lives: which file, at what offset, and how much of it is left
/// in that partition.
#[derive(Debug)]
pub struct BackingSlice<'a> {
    pub file: &'a File,
    pub offset: u64,
    pub len_to_end: u64,
    pub persistent: bool,
}

/// A DPA range held by a region's backing: DPA `dpa_base + x` is at
/// `offset + layout.region_offset(position, x)` in `file`.
#[derive(Clone, Debug)]
struct Relocation {
    dpa_base: u64,
    len: u64,
    position: u64,
    layout: InterleaveLayout,
    file: Arc<File>,
    offset: u64,
}

impl Relocation {
    fn contains(&self, dpa: u64) -> bool {
        dpa >= self.dpa_base && dpa - self.dpa_base < self.len
    }
}

#[derive(Debug)]
pub struct Type3Backing {
    volatile: Option<File>,
    volatile_len: u64,
    persistent: Option<File>,
    persistent_len: u64,
    /// DPA ranges whose bytes a region's backing holds now. Readers hold
    /// the lock for the whole access, a region's move holds it to write,
    /// so an access never sees bytes half moved.
    relocated: RwLock<Vec<Relocation>>,
}

impl Type3Backing {
    /// Creates the backing: a sealed-size memfd of `volatile` bytes and, if
    /// `persistent` > 0, the file at `persistent_path` grown (never shrunk)
    /// to `persistent` bytes. Existing contents of the file are kept. The
    /// file is locked for as long as the backing lives; a file another
    /// process holds is refused (`file_lock`).
    pub fn new(
        name: &str,
        volatile: u64,
        persistent: u64,
        persistent_path: Option<&Path>,
    ) -> io::Result<Self> {
        let volatile_file = if volatile > 0 {
            let mfd = memfd::MemfdOptions::default()
                .close_on_exec(true)
                .create(format!("cxlvmm-{name}-volatile"))
                .map_err(|e| io::Error::other(format!("memfd: {e}")))?;
            let f = mfd.into_file();
            f.set_len(volatile)?;
            Some(f)
        } else {
            None
        };
        let persistent_file = match (persistent, persistent_path) {
            (0, _) => None,
            (_, Some(p)) => {
                if let Some(dir) = p.parent() {
                    if !dir.as_os_str().is_empty() {
                        std::fs::create_dir_all(dir)?;
                    }
                }
                let f = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .open(p)?;
                // Before anything changes the file: it may be another VM's.
                super::file_lock::lock_exclusive(&f, p)?;
                if f.metadata()?.len() < persistent {
                    f.set_len(persistent)?;
                }
                Some(f)
            }
            // No file given: persistent capacity that lasts as long as the VM.
            (_, None) => {
                let mfd = memfd::MemfdOptions::default()
                    .close_on_exec(true)
                    .create(format!("cxlvmm-{name}-persistent"))
                    .map_err(|e| io::Error::other(format!("memfd: {e}")))?;
                let f = mfd.into_file();
                f.set_len(persistent)?;
                Some(f)
            }
        };
        Ok(Self {
            volatile: volatile_file,
            volatile_len: volatile,
            persistent: persistent_file,
            persistent_len: persistent,
            relocated: RwLock::new(Vec::new()),
        })
    }

    pub fn capacity(&self) -> u64 {
        self.volatile_len + self.persistent_len
    }

    /// The device's own file and offset for `dpa`, or None past the
    /// capacity. While a region's backing holds `dpa` (see
    /// [`Type3Backing::relocated_within`]) the bytes are not there: map
    /// the device's own file only over ranges that are not relocated.
    pub fn locate(&self, dpa: u64) -> Option<BackingSlice<'_>> {
        if dpa < self.volatile_len {
            return self.volatile.as_ref().map(|file| BackingSlice {
                file,
                offset: dpa,
                len_to_end: self.volatile_len - dpa,
                persistent: false,
            });
        }
        let off = dpa - self.volatile_len;
        if off < self.persistent_len {
            return self.persistent.as_ref().map(|file| BackingSlice {
                file,
                offset: off,
                len_to_end: self.persistent_len - off,
                persistent: true,
            });
        }
        None
    }

    /// Reads at `dpa`; bytes past the capacity (or across the partition
    /// boundary) read as all ones, as an undecoded access would.
    pub fn read(&self, dpa: u64, buf: &mut [u8]) {
        buf.fill(0xff);
        let relocated = self.relocations();
        self.each_run(&relocated, dpa, buf.len(), |at, file, offset, run| {
            let _ = file.read_exact_at(&mut buf[at..at + run], offset);
            Ok(())
        })
        .ok();
    }

    /// Writes at `dpa`; bytes past the capacity are dropped.
    pub fn write(&self, dpa: u64, data: &[u8]) -> io::Result<()> {
        let relocated = self.relocations();
        self.each_run(&relocated, dpa, data.len(), |at, file, offset, run| {
            file.write_all_at(&data[at..at + run], offset)
        })
    }

    /// Whether any byte of `[dpa, dpa + len)` lives in a region's backing.
    pub fn relocated_within(&self, dpa: u64, len: u64) -> bool {
        self.relocations()
            .iter()
            .any(|r| dpa < r.dpa_base + r.len && r.dpa_base < dpa.saturating_add(len))
    }

    /// Calls `f(at, file, offset, run)` for each run of an access of `len`
    /// bytes at `dpa` that one file holds contiguously: the region's
    /// backing for relocated DPAs (one granule at most), else the device's
    /// own file. The access stops at the end of `dpa`'s partition.
    fn each_run(
        &self,
        relocated: &[Relocation],
        dpa: u64,
        len: usize,
        mut f: impl FnMut(usize, &File, u64, usize) -> io::Result<()>,
    ) -> io::Result<()> {
        let Some(first) = self.locate(dpa) else {
            return Ok(());
        };
        let len = (len as u64).min(first.len_to_end);
        let mut done = 0u64;
        while done < len {
            let at = dpa + done;
            let left = len - done;
            let (file, offset, run) = match relocated.iter().find(|r| r.contains(at)) {
                Some(r) => {
                    let x = at - r.dpa_base;
                    let g = r.layout.granularity;
                    let run = (g - x % g).min(r.len - x).min(left);
                    (
                        &*r.file,
                        r.offset + r.layout.region_offset(r.position, x),
                        run,
                    )
                }
                None => {
                    let next = relocated
                        .iter()
                        .filter(|r| r.dpa_base > at)
                        .map(|r| r.dpa_base - at)
                        .min()
                        .unwrap_or(u64::MAX);
                    let Some(own) = self.locate(at) else { break };
                    (own.file, own.offset, left.min(next))
                }
            };
            f(done as usize, file, offset, run as usize)?;
            done += run;
        }
        Ok(())
    }

    fn relocations(&self) -> RwLockReadGuard<'_, Vec<Relocation>> {
        self.relocated.read().unwrap_or_else(|e| e.into_inner())
    }

    fn relocations_mut(&self) -> RwLockWriteGuard<'_, Vec<Relocation>> {
        self.relocated.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Flushes persistent media to stable storage.
    pub fn sync(&self) -> io::Result<()> {
        match &self.persistent {
            Some(f) => f.sync_data(),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dpa_space_is_volatile_then_persistent_and_persists() {
        let dir = std::env::temp_dir().join(format!("cxlvmm-backing-{}", std::process::id()));
        let path = dir.join("pmem.img");
        let b = Type3Backing::new("t", 1 << 20, 2 << 20, Some(&path)).unwrap();
        assert_eq!(b.capacity(), 3 << 20);
        b.write(100, b"volatile").unwrap();
        b.write((1 << 20) + 5, b"persistent").unwrap();
        let mut buf = [0u8; 10];
        b.read((1 << 20) + 5, &mut buf);
        assert_eq!(&buf, b"persistent");
        assert!(!b.locate(10).unwrap().persistent);
        assert!(b.locate(1 << 20).unwrap().persistent);
        assert!(b.locate(3 << 20).is_none());
        // Reads straddling the end give the tail as all ones.
        let mut tail = [0u8; 4];
        b.read((3 << 20) - 2, &mut tail);
        assert_eq!(tail[2..], [0xff, 0xff]);
        b.sync().unwrap();
        drop(b);
        // A second VM run over the same file sees the data; the volatile part is new.
        let b = Type3Backing::new("t", 1 << 20, 2 << 20, Some(&path)).unwrap();
        b.read((1 << 20) + 5, &mut buf);
        assert_eq!(&buf, b"persistent");
        let mut v = [0u8; 8];
        b.read(100, &mut v);
        assert_eq!(v, [0; 8]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_persistent_file_serves_one_backing_at_a_time() {
        let dir = std::env::temp_dir().join(format!("cxlvmm-backing-lock-{}", std::process::id()));
        let path = dir.join("pmem.img");
        let b = Type3Backing::new("a", 0, 1 << 20, Some(&path)).unwrap();
        b.write(0, b"first").unwrap();
        let e = Type3Backing::new("b", 0, 2 << 20, Some(&path)).unwrap_err();
        assert!(
            e.to_string().contains("pmem.img is locked by process"),
            "{e}"
        );
        // Refused before touching the file: not grown to the second size.
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 1 << 20);
        drop(b);
        let b = Type3Backing::new("b", 0, 2 << 20, Some(&path)).unwrap();
        let mut buf = [0u8; 5];
        b.read(0, &mut buf);
        assert_eq!(&buf, b"first");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
