//! Label Storage Area (LSA) backends.
//!
//! The LSA holds namespace/region labels that the guest writes with SET_LSA
//! and reads back with GET_LSA (`cxl write-labels`, nvdimm label code). For
//! persistent memory the labels must outlive the VMM process, hence a
//! file-backed store; tests and volatile-only devices use the in-memory one.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// Byte-addressable label storage of a fixed size.
///
/// Accesses outside `[0, size())` fail with `InvalidInput`; implementations
/// never panic on any offset or length.
pub trait LabelStorage: Send {
    fn size(&self) -> u64;
    fn read(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()>;
    fn write(&mut self, offset: u64, data: &[u8]) -> io::Result<()>;
}

/// Checks that `[offset, offset + len)` lies inside `size` bytes.
fn check_range(size: u64, offset: u64, len: usize) -> io::Result<()> {
    let end = u64::try_from(len)
        .ok()
        .and_then(|len| offset.checked_add(len));
    match end {
        Some(end) if end <= size => Ok(()),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("LSA access [{offset:#x}, +{len:#x}) outside {size:#x} bytes"),
        )),
    }
}

/// LSA kept in memory; contents are lost when the VMM exits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryLabels {
    bytes: Vec<u8>,
}

impl MemoryLabels {
    /// A zero-filled LSA of `size` bytes.
    pub fn new(size: usize) -> Self {
        Self {
            bytes: vec![0; size],
        }
    }
}

impl LabelStorage for MemoryLabels {
    fn size(&self) -> u64 {
        self.bytes.len() as u64
    }

    fn read(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        check_range(self.size(), offset, buf.len())?;
        // In range, so the offset fits in usize.
        let start = offset as usize;
        buf.copy_from_slice(&self.bytes[start..start + buf.len()]);
        Ok(())
    }

    fn write(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        check_range(self.size(), offset, data.len())?;
        let start = offset as usize;
        self.bytes[start..start + data.len()].copy_from_slice(data);
        Ok(())
    }
}

/// LSA backed by a file, so labels survive VMM restarts.
///
/// Every write goes straight to the file with `pwrite` and is then synced
/// (`fdatasync`): once SET_LSA has completed the labels survive a crash of
/// the VMM and of the host. Label writes are rare (namespace and region
/// changes), so the sync costs nothing that matters. The file is locked
/// while open, like the media file beside it (`file_lock`).
#[derive(Debug)]
pub struct FileLabels {
    file: File,
    size: u64,
}

impl FileLabels {
    /// Opens `path`, creating it if needed and extending it with zeros to
    /// `size` bytes. A longer existing file is left as is; only its first
    /// `size` bytes are used.
    pub fn open(path: &Path, size: u64) -> io::Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        crate::cxl::file_lock::lock_exclusive(&file, path)?;
        if file.metadata()?.len() < size {
            file.set_len(size)?;
        }
        Ok(Self { file, size })
    }
}

impl LabelStorage for FileLabels {
    fn size(&self) -> u64 {
        self.size
    }

    fn read(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        check_range(self.size, offset, buf.len())?;
        self.file.read_exact_at(buf, offset)
    }

    fn write(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        check_range(self.size, offset, data.len())?;
        self.file.write_all_at(data, offset)?;
        self.file.sync_data()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cxl::mailbox::tests::TempPath;

    #[test]
    fn memory_labels_round_trip_and_bounds() {
        let mut lsa = MemoryLabels::new(64);
        assert_eq!(lsa.size(), 64);
        lsa.write(60, &[1, 2, 3, 4]).unwrap();
        let mut buf = [0u8; 6];
        lsa.read(58, &mut buf).unwrap();
        assert_eq!(buf, [0, 0, 1, 2, 3, 4]);

        assert_eq!(
            lsa.write(61, &[0; 4]).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
        assert!(lsa.read(u64::MAX, &mut [0u8; 2]).is_err());
        assert!(lsa.read(65, &mut []).is_err());
        // An empty access at the very end is in range.
        lsa.read(64, &mut []).unwrap();
        // The failed write changed nothing.
        let mut tail = [0u8; 3];
        lsa.read(61, &mut tail).unwrap();
        assert_eq!(tail, [2, 3, 4]);
    }

    #[test]
    fn file_labels_are_created_zeroed_and_persist() {
        let path = TempPath::new("lsa");
        {
            let mut lsa = FileLabels::open(&path.0, 4096).unwrap();
            assert_eq!(std::fs::metadata(&path.0).unwrap().len(), 4096);
            let mut buf = [0xffu8; 16];
            lsa.read(4080, &mut buf).unwrap();
            assert_eq!(buf, [0; 16]);
            lsa.write(100, b"label").unwrap();
            assert!(lsa.write(4095, b"xy").is_err());
        }
        // Reopening (a VMM restart) sees the data; a smaller size keeps the
        // file length.
        let mut lsa = FileLabels::open(&path.0, 2048).unwrap();
        assert_eq!(lsa.size(), 2048);
        assert_eq!(std::fs::metadata(&path.0).unwrap().len(), 4096);
        let mut buf = [0u8; 5];
        lsa.read(100, &mut buf).unwrap();
        assert_eq!(&buf, b"label");
        assert!(lsa.read(2047, &mut [0u8; 2]).is_err());
    }

    #[test]
    fn file_labels_are_locked_while_open() {
        let path = TempPath::new("lsa-lock");
        let lsa = FileLabels::open(&path.0, 1024).unwrap();
        let e = FileLabels::open(&path.0, 1024).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        assert!(e.to_string().contains("is locked by process"), "{e}");
        drop(lsa);
        FileLabels::open(&path.0, 1024).unwrap();
    }

    #[test]
    fn file_labels_extend_a_short_file() {
        let path = TempPath::new("lsa-extend");
        std::fs::write(&path.0, b"abc").unwrap();
        let mut lsa = FileLabels::open(&path.0, 1024).unwrap();
        assert_eq!(std::fs::metadata(&path.0).unwrap().len(), 1024);
        let mut buf = [0u8; 4];
        lsa.read(0, &mut buf).unwrap();
        assert_eq!(&buf, b"abc\0");
    }
}
