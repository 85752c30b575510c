//! VRAM: an anonymous memfd the VMM maps into the guest as the BAR2 memory
//! slot (native CPU access) and through which the device's DMA and kernels
//! read and write the same bytes.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use crate::BusDevice;

#[derive(Debug)]
pub struct Vram {
    file: File,
    size: u64,
}

impl Vram {
    /// `size` bytes of zeroes (sparse until touched).
    pub fn new(name: &str, size: u64) -> io::Result<Vram> {
        let mfd = memfd::MemfdOptions::default()
            .close_on_exec(true)
            .create(format!("cxlvmm-{name}-vram"))
            .map_err(|e| io::Error::other(format!("memfd: {e}")))?;
        let file = mfd.into_file();
        file.set_len(size)?;
        Ok(Vram { file, size })
    }

    /// The backing file, for the VMM to map as guest memory.
    pub fn file(&self) -> &File {
        &self.file
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    fn inside(&self, offset: u64, len: usize) -> bool {
        offset
            .checked_add(len as u64)
            .is_some_and(|end| end <= self.size)
    }

    /// Reads at `offset`; false (and `buf` untouched) past the end.
    pub fn read(&self, offset: u64, buf: &mut [u8]) -> bool {
        self.inside(offset, buf.len()) && self.file.read_exact_at(buf, offset).is_ok()
    }

    /// Writes at `offset`; false (and nothing written) past the end.
    pub fn write(&self, offset: u64, data: &[u8]) -> bool {
        self.inside(offset, data.len()) && self.file.write_all_at(data, offset).is_ok()
    }
}

/// BAR2 served by traps, for a VMM that has not mapped the memfd: reads
/// past the end (none inside a sized BAR) give all ones.
pub struct VramBar(pub std::sync::Arc<Vram>);

impl BusDevice for VramBar {
    fn read(&self, offset: u64, data: &mut [u8]) {
        if !self.0.read(offset, data) {
            data.fill(0xff);
        }
    }

    fn write(&self, offset: u64, data: &[u8]) {
        self.0.write(offset, data);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_writes_stay_inside() {
        let v = Vram::new("t", 2 << 20).unwrap();
        assert_eq!(v.file().metadata().unwrap().len(), 2 << 20);
        assert!(v.write((2 << 20) - 4, &[1, 2, 3, 4]));
        assert!(!v.write((2 << 20) - 2, &[9, 9, 9, 9]));
        assert!(!v.write(u64::MAX, &[9]));
        let mut b = [0u8; 4];
        assert!(v.read((2 << 20) - 4, &mut b));
        assert_eq!(b, [1, 2, 3, 4]);
        let bar = VramBar(std::sync::Arc::new(v));
        bar.read(2 << 20, &mut b);
        assert_eq!(b, [0xff; 4]);
    }
}
