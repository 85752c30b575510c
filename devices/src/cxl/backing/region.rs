//! An interleaved region's bytes in HPA order: one range of a file (the VMM
//! gives each CFMWS window a memfd, byte `n` at HPA `window base + n`) that
//! the VMM maps into the guest as a single memory slot, however large the
//! region and whatever its granularity, instead of one host mapping per
//! granule (which the kernel caps at `vm.max_map_count` per process).
//!
//! While the region exists its member devices' shares live here (and
//! [`Type3Backing`] follows them, see `Relocation`); when it goes they move
//! back. Only populated bytes move (`SEEK_DATA`/`SEEK_HOLE`), each chunk's
//! source is punched out once copied and all-zero granules are not written,
//! so a fresh region costs a few system calls and a move never holds much
//! more memory than the data it moves. Freeing is the caller's [`Reclaim`]:
//! the VMM's vCPU threads, which commit regions, may not `fallocate` under
//! their seccomp filter and free pages through a mapping instead. Volatile media only: persistent bytes
//! must stay in the device's file, where a `kill -9` cannot lose them.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use vmm_sys_util::seek_hole::SeekHole;

use super::{Relocation, Type3Backing};

/// Bytes copied per read while moving.
const CHUNK: u64 = 1 << 20;

/// Where a device's share of an interleave sits in the region's HPA order
/// (CXL 3.1 §8.2.4.20, modulo arithmetic; the endpoint decode of
/// `fabric::interleave`): with granularity `g`, byte `x` of the share of
/// the device at interleave position `p` is region byte
/// `(x / g) · g · ways + p · g + x mod g`, for every ways value the HDM
/// decoders encode (1, 2, 4, 8, 16, 3, 6, 12).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InterleaveLayout {
    pub ways: u64,
    pub granularity: u64,
}

impl InterleaveLayout {
    /// Region offset of byte `dpa_offset` of the share at `position`.
    pub fn region_offset(&self, position: u64, dpa_offset: u64) -> u64 {
        let g = self.granularity;
        (dpa_offset / g) * g * self.ways + position * g + dpa_offset % g
    }

    /// (position, byte of its share) of a region offset.
    pub fn device_offset(&self, region_offset: u64) -> (u64, u64) {
        let g = self.granularity;
        let granule = region_offset / g;
        (
            granule % self.ways,
            (granule / self.ways) * g + region_offset % g,
        )
    }
}

/// Frees a range of a file the bytes moved out of: it reads as zeros
/// afterwards and holds no memory (a hole).
pub trait Reclaim: Send + Sync {
    fn punch(&self, file: &File, offset: u64, len: u64) -> io::Result<()>;
}

/// A region's HPA-ordered backing; dropping it moves the bytes back into
/// the member devices' own backings.
pub struct RegionBacking {
    file: Arc<File>,
    /// Where the region starts in `file`.
    offset: u64,
    reclaim: Arc<dyn Reclaim>,
    layout: InterleaveLayout,
    share: u64,
    /// The member devices by interleave position, each with the DPA its
    /// share starts at.
    members: Vec<(Arc<Type3Backing>, u64)>,
}

impl std::fmt::Debug for RegionBacking {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "RegionBacking({}-way x {} B, {:#x} bytes per device)",
            self.layout.ways, self.layout.granularity, self.share
        )
    }
}

impl RegionBacking {
    /// Moves into `[offset, offset + share × ways)` of `file` (which must
    /// hold nothing there) the populated bytes of `[dpa, dpa + share)` of
    /// every member (listed by interleave position); from then on the
    /// members' reads and writes of those DPAs go there. On error nothing
    /// has changed.
    pub fn gather(
        file: Arc<File>,
        offset: u64,
        layout: InterleaveLayout,
        share: u64,
        members: Vec<(Arc<Type3Backing>, u64)>,
        reclaim: Arc<dyn Reclaim>,
    ) -> io::Result<Self> {
        let invalid = |what: String| io::Error::new(io::ErrorKind::InvalidInput, what);
        let g = layout.granularity;
        if layout.ways == 0 || members.len() as u64 != layout.ways {
            return Err(invalid(format!(
                "{} members for {} ways",
                members.len(),
                layout.ways
            )));
        }
        if !g.is_power_of_two() || share == 0 || !share.is_multiple_of(g) {
            return Err(invalid(format!(
                "share {share:#x} is not a whole number of {g} B granules"
            )));
        }
        for (i, (b, dpa)) in members.iter().enumerate() {
            if members[..i].iter().any(|(o, _)| Arc::ptr_eq(o, b)) {
                return Err(invalid("a device appears twice".into()));
            }
            let slice = b
                .locate(*dpa)
                .ok_or_else(|| invalid(format!("DPA {dpa:#x} is past the capacity")))?;
            if slice.persistent || slice.len_to_end < share {
                return Err(invalid(format!(
                    "DPA [{dpa:#x}, +{share:#x}) is not all volatile"
                )));
            }
            if b.relocated_within(*dpa, share) {
                return Err(invalid(format!(
                    "DPA [{dpa:#x}, +{share:#x}) is held by another region"
                )));
            }
        }
        let size = share
            .checked_mul(layout.ways)
            .ok_or_else(|| invalid("region too large".into()))?;
        let end = offset
            .checked_add(size)
            .ok_or_else(|| invalid("region too large".into()))?;
        if file.metadata()?.len() < end {
            return Err(invalid(format!(
                "the file is shorter than [{offset:#x}, {end:#x})"
            )));
        }
        {
            let mut held: Vec<_> = members.iter().map(|(b, _)| b.relocations_mut()).collect();
            let moves = Moves::new(&file, offset, layout, share, &members, &*reclaim);
            if let Err(e) = moves.gather() {
                if let Err(back) = moves.scatter() {
                    log::error!(
                        "moving the devices' bytes back after a failed gather ({e}) failed \
                         too: {back}; their contents may be lost"
                    );
                }
                return Err(e);
            }
            for (position, relocations) in held.iter_mut().enumerate() {
                relocations.push(Relocation {
                    dpa_base: members[position].1,
                    len: share,
                    position: position as u64,
                    layout,
                    file: file.clone(),
                    offset,
                });
            }
        }
        Ok(Self {
            file,
            offset,
            reclaim,
            layout,
            share,
            members,
        })
    }

    /// The file holding the region, from [`RegionBacking::offset`] on.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// Where the region starts in its file.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The region's size in bytes.
    pub fn size(&self) -> u64 {
        self.share * self.layout.ways
    }
}

impl Drop for RegionBacking {
    /// Moves the bytes back into the devices' own backings. Should that
    /// fail (the host out of memory), what moved is moved again here and
    /// the devices keep reading and writing the region's memfd, which the
    /// relocations keep alive: slower to map later, but nothing is lost.
    fn drop(&mut self) {
        let mut held: Vec<_> = self
            .members
            .iter()
            .map(|(b, _)| b.relocations_mut())
            .collect();
        let moves = Moves::new(
            &self.file,
            self.offset,
            self.layout,
            self.share,
            &self.members,
            &*self.reclaim,
        );
        match moves.scatter() {
            Ok(()) => {
                for relocations in &mut held {
                    relocations.retain(|r| !Arc::ptr_eq(&r.file, &self.file));
                }
            }
            Err(e) => {
                log::error!("{self:?}: moving the bytes back to the devices failed: {e}");
                if let Err(again) = moves.gather() {
                    log::error!("{self:?}: and back into the region: {again}; contents lost");
                }
            }
        }
    }
}

/// The two directions bytes move in, between a region's memfd and its
/// members' own files.
struct Moves<'a> {
    region: &'a File,
    /// Where the region starts in `region`.
    offset: u64,
    layout: InterleaveLayout,
    share: u64,
    /// Each member's own file and the offset its share starts at.
    own: Vec<(&'a File, u64)>,
    reclaim: &'a dyn Reclaim,
}

impl<'a> Moves<'a> {
    fn new(
        region: &'a File,
        offset: u64,
        layout: InterleaveLayout,
        share: u64,
        members: &'a [(Arc<Type3Backing>, u64)],
        reclaim: &'a dyn Reclaim,
    ) -> Self {
        let own = members
            .iter()
            .filter_map(|(b, dpa)| b.locate(*dpa).map(|s| (s.file, s.offset)))
            .collect();
        Self {
            region,
            offset,
            layout,
            share,
            own,
            reclaim,
        }
    }

    /// Every member's populated share into the region.
    fn gather(&self) -> io::Result<()> {
        let g = self.layout.granularity;
        for (position, &(file, start)) in self.own.iter().enumerate() {
            move_populated(file, start, self.share, &[self.region], self.reclaim, |x| {
                let at = self.offset + self.layout.region_offset(position as u64, x);
                (0, at, g - x % g)
            })?;
        }
        Ok(())
    }

    /// The region's populated bytes back to their members.
    fn scatter(&self) -> io::Result<()> {
        let g = self.layout.granularity;
        let files: Vec<&File> = self.own.iter().map(|(f, _)| *f).collect();
        let size = self.share * self.layout.ways;
        move_populated(self.region, self.offset, size, &files, self.reclaim, |r| {
            let (position, x) = self.layout.device_offset(r);
            let p = position as usize;
            (p, self.own[p].1 + x, g - r % g)
        })
    }
}

/// Moves the populated bytes of `[start, start + len)` of `from`: byte
/// `start + x` goes to `place(x) = (index into dests, offset, bytes that
/// continue contiguously there)`. Each chunk is punched out of `from` once
/// copied; runs of zeros are not written.
fn move_populated(
    source: &File,
    start: u64,
    len: u64,
    dests: &[&File],
    reclaim: &dyn Reclaim,
    place: impl Fn(u64) -> (usize, u64, u64),
) -> io::Result<()> {
    let end = start + len;
    // Seeking moves the file position, which nothing else here uses.
    let mut from = source.try_clone()?;
    let mut buf = Vec::new();
    let mut pos = start;
    while pos < end {
        let Some(data) = from.seek_data(pos)? else {
            break;
        };
        if data >= end {
            break;
        }
        let hole = from.seek_hole(data)?.unwrap_or(end).min(end);
        let mut at = data;
        while at < hole {
            let n = (hole - at).min(CHUNK);
            buf.resize(n as usize, 0);
            from.read_exact_at(&mut buf, at)?;
            let mut done = 0u64;
            while done < n {
                let (d, offset, run) = place(at - start + done);
                let run = run.clamp(1, n - done);
                let bytes = &buf[done as usize..(done + run) as usize];
                if bytes.iter().any(|&b| b != 0) {
                    let dest = dests.get(d).ok_or_else(|| {
                        io::Error::new(io::ErrorKind::InvalidInput, "no such destination")
                    })?;
                    dest.write_all_at(bytes, offset)?;
                }
                done += run;
            }
            reclaim.punch(source, at, n)?;
            at += n;
        }
        pos = hole;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
