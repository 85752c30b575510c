//! The device backings, mapped once into the VMM, so the trapped and timed
//! data paths copy bytes instead of making a system call per access.

use std::sync::Arc;

use devices::cxl::backing::Type3Backing;
use vm_memory::{FileOffset, MmapRegion, VolatileMemory};

/// One type-3 device's media: volatile partition then persistent one, as
/// the device's DPA space orders them.
pub struct DeviceMedia {
    parts: Vec<(u64, MmapRegion<()>)>,
}

impl DeviceMedia {
    /// Maps every partition of `backing` (shared, so the guest's native
    /// mappings and these see the same bytes).
    pub fn map(backing: &Type3Backing) -> std::io::Result<Self> {
        let mut parts = Vec::new();
        let mut dpa = 0;
        while dpa < backing.capacity() {
            let Some(s) = backing.locate(dpa) else { break };
            let len = s.len_to_end;
            let file = s.file.try_clone()?;
            let region = MmapRegion::from_file(
                FileOffset::new(file, s.offset),
                usize::try_from(len).map_err(std::io::Error::other)?,
            )
            .map_err(std::io::Error::other)?;
            parts.push((dpa, region));
            dpa += len;
        }
        Ok(Self { parts })
    }

    pub fn map_all(backings: &[Arc<Type3Backing>]) -> std::io::Result<Vec<Self>> {
        backings.iter().map(|b| Self::map(b)).collect()
    }

    fn part(&self, dpa: u64, len: usize) -> Option<(&MmapRegion<()>, usize)> {
        self.parts.iter().find_map(|(base, r)| {
            let off = usize::try_from(dpa.checked_sub(*base)?).ok()?;
            (off.checked_add(len)? <= r.size()).then_some((r, off))
        })
    }

    /// Reads at `dpa`; false (buffer untouched) if the range is not wholly
    /// inside one partition.
    pub fn read(&self, dpa: u64, buf: &mut [u8]) -> bool {
        let Some((r, off)) = self.part(dpa, buf.len()) else {
            return false;
        };
        r.get_slice(off, buf.len())
            .map(|s| s.copy_to(buf) == buf.len())
            .unwrap_or(false)
    }

    /// Writes at `dpa`; false (nothing written) outside one partition.
    pub fn write(&self, dpa: u64, data: &[u8]) -> bool {
        let Some((r, off)) = self.part(dpa, data.len()) else {
            return false;
        };
        r.get_slice(off, data.len())
            .map(|s| {
                s.copy_from(data);
                true
            })
            .unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_writes_land_in_the_backing_and_stay_in_bounds() {
        let b = Type3Backing::new("media-test", 1 << 20, 1 << 20, None).unwrap();
        let m = DeviceMedia::map(&b).unwrap();
        assert!(m.write(8, b"volatile"));
        assert!(m.write((1 << 20) + 8, b"persist!"));
        let mut buf = [0u8; 8];
        b.read(8, &mut buf);
        assert_eq!(&buf, b"volatile");
        b.read((1 << 20) + 8, &mut buf);
        assert_eq!(&buf, b"persist!");
        assert!(m.read((1 << 20) + 8, &mut buf));
        assert_eq!(&buf, b"persist!");
        // Straddling the partition boundary or the end: refused.
        assert!(!m.read((1 << 20) - 4, &mut buf));
        assert!(!m.write((2 << 20) - 4, &buf));
        assert!(!m.read(u64::MAX - 2, &mut buf));
    }
}
