//! virtio-blk over a raw image file (Virtio 1.2 §5.2).
//!
//! One request queue, served on the thread of the vCPU that notified it.
//! Reads, writes, flushes (fdatasync, since the device offers
//! VIRTIO_BLK_F_FLUSH: a volatile write cache) and GET_ID; anything else
//! is answered VIRTIO_BLK_S_UNSUPP. A read-only disk offers VIRTIO_BLK_F_RO
//! and answers writes VIRTIO_BLK_S_IOERR (§5.2.6.1).
//!
//! Descriptor chains are walked by virtio-queue, which bounds them by the
//! queue size (a loop ends there) and by 4 GiB of data; every buffer is
//! checked against guest RAM before a byte moves. A request whose layout is
//! wrong (header too short, data not whole sectors, beyond the disk's end,
//! a readable buffer outside RAM) is answered IOERR in its status byte. A
//! request that cannot be answered at all (no writable status byte, a
//! writable buffer outside RAM, a head index outside the table) and an
//! available index more than a queue ahead stop the device: the transport
//! sets DEVICE_NEEDS_RESET (Virtio 1.2 §2.1.2) and the driver must reset it.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use virtio_bindings::virtio_blk::*;
use virtio_queue::{DescriptorChain, Queue, QueueOwnedT, QueueT, Reader, Writer};

use super::{
    Activation, GuestRam, Interrupt, VirtioDevice, VIRTIO_F_VERSION_1, VIRTIO_RING_F_EVENT_IDX,
    VIRTIO_RING_F_INDIRECT_DESC,
};

pub const SECTOR: u64 = 512;
const QUEUE_SIZE: u16 = 256;
/// Bytes moved per file access when serving a request.
const CHUNK: usize = 128 << 10;
/// PCI class: mass storage, other (what QEMU gives virtio-blk-pci too).
pub const CLASS_STORAGE_OTHER: u32 = 0x01_80_00;
const VIRTIO_ID_BLOCK: u32 = 2;

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path}: {size} bytes is not a whole number of 512-byte sectors, or is empty")]
    Size { path: PathBuf, size: u64 },
    #[error("{path} is in use by another process (it holds a lock on it)")]
    Locked { path: PathBuf },
}

/// The image file and what the guest is told about it.
struct Disk {
    file: File,
    read_only: bool,
    sectors: u64,
    /// GET_ID answer, NUL-padded.
    id: [u8; VIRTIO_BLK_ID_BYTES as usize],
}

/// Queue 0 and what it needs, once the driver set DRIVER_OK.
struct Active {
    mem: GuestRam,
    queue: Queue,
    interrupt: Arc<Interrupt>,
}

pub struct Block {
    disk: Disk,
    active: Option<Active>,
}

impl Block {
    /// Opens `path` (read-write unless `read_only`) and locks it: shared for
    /// a read-only disk, exclusive otherwise, so two VMs never write one
    /// image. `id` is what the guest reads as the disk's serial.
    pub fn open(path: &Path, read_only: bool, id: &str) -> Result<Self, OpenError> {
        let io_err = |source| OpenError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = OpenOptions::new()
            .read(true)
            .write(!read_only)
            .open(path)
            .map_err(io_err)?;
        let locked = if read_only {
            file.try_lock_shared()
        } else {
            file.try_lock()
        };
        match locked {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(OpenError::Locked {
                    path: path.to_path_buf(),
                })
            }
            Err(TryLockError::Error(e)) => return Err(io_err(e)),
        }
        let size = file.metadata().map_err(io_err)?.len();
        if size == 0 || !size.is_multiple_of(SECTOR) {
            return Err(OpenError::Size {
                path: path.to_path_buf(),
                size,
            });
        }
        let mut id_bytes = [0u8; VIRTIO_BLK_ID_BYTES as usize];
        for (d, s) in id_bytes.iter_mut().zip(id.bytes()) {
            *d = s;
        }
        Ok(Self {
            disk: Disk {
                file,
                read_only,
                sectors: size / SECTOR,
                id: id_bytes,
            },
            active: None,
        })
    }

    /// Serves every available request, then signals the driver if it
    /// wants to be. A ring the device cannot use (an available index more
    /// than a queue ahead, a chain with no writable status byte, a head
    /// outside the table) is an error: the transport then sets
    /// DEVICE_NEEDS_RESET instead of guessing.
    fn process_queue(&mut self) -> Result<(), String> {
        let Some(a) = &mut self.active else {
            return Ok(());
        };
        let mut used_any = false;
        let result = loop {
            // Ask for no notifications while the queue is being drained.
            let _ = a.queue.disable_notification(&a.mem);
            let drained = loop {
                let chain = match a.queue.iter(&a.mem) {
                    Ok(mut it) => it.next(),
                    Err(e) => break Err(format!("available ring: {e}")),
                };
                let Some(chain) = chain else {
                    break Ok(());
                };
                let head = chain.head_index();
                let Some(written) = self.disk.execute(&a.mem, chain) else {
                    break Err(format!("request {head} has no writable status byte in RAM"));
                };
                if let Err(e) = a.queue.add_used(&a.mem, head, written) {
                    break Err(format!("cannot return request {head}: {e}"));
                }
                used_any = true;
            };
            if drained.is_err() {
                break drained;
            }
            // Requests that came in meanwhile are served before sleeping.
            match a.queue.enable_notification(&a.mem) {
                Ok(true) => continue,
                Ok(false) => break Ok(()),
                Err(e) => break Err(format!("available ring: {e}")),
            }
        };
        if used_any && a.queue.needs_notification(&a.mem).unwrap_or(true) {
            a.interrupt.signal_queue(0);
        }
        result
    }
}

impl Disk {
    /// Serves one request; returns the bytes written into the chain's
    /// writable buffers (data and status), as the used ring reports them,
    /// or None when there is no status byte to answer in.
    fn execute(&self, mem: &GuestRam, chain: DescriptorChain<&GuestRam>) -> Option<u32> {
        let reader = Reader::new(mem, chain.clone());
        let writer = Writer::new(mem, chain);
        let (mut reader, mut data) = match (reader, writer) {
            (Ok(r), Ok(w)) => (r, w),
            // A readable buffer outside guest RAM: still answer, if we can.
            (Err(_), Ok(mut w)) => return status_only(&mut w, VIRTIO_BLK_S_IOERR),
            _ => return None,
        };
        let data_len = data.available_bytes().checked_sub(1)?;
        let mut status = data.split_at(data_len).ok()?;
        let mut header = [0u8; 16];
        let result = match reader.read_exact(&mut header) {
            Err(_) => VIRTIO_BLK_S_IOERR,
            Ok(()) => {
                let kind = u32::from_le_bytes(header[0..4].try_into().unwrap_or_default());
                let sector = u64::from_le_bytes(header[8..16].try_into().unwrap_or_default());
                match kind {
                    VIRTIO_BLK_T_IN => self.read(sector, &mut data, data_len),
                    VIRTIO_BLK_T_OUT => self.write(sector, &mut reader),
                    VIRTIO_BLK_T_FLUSH => self.flush(),
                    VIRTIO_BLK_T_GET_ID => {
                        let n = data_len.min(self.id.len());
                        match data.write_all(&self.id[..n]) {
                            Ok(()) => VIRTIO_BLK_S_OK,
                            Err(_) => VIRTIO_BLK_S_IOERR,
                        }
                    }
                    _ => VIRTIO_BLK_S_UNSUPP,
                }
            }
        };
        status.write_all(&[result as u8]).ok()?;
        Some((data.bytes_written() + status.bytes_written()) as u32)
    }

    /// The byte range `len` bytes at `sector` cover, if whole sectors
    /// inside the disk.
    fn range(&self, sector: u64, len: usize) -> Option<u64> {
        let start = sector.checked_mul(SECTOR)?;
        let end = start.checked_add(len as u64)?;
        ((len as u64).is_multiple_of(SECTOR) && end <= self.sectors * SECTOR).then_some(start)
    }

    fn read(&self, sector: u64, data: &mut Writer<'_>, len: usize) -> u32 {
        let Some(mut at) = self.range(sector, len) else {
            return VIRTIO_BLK_S_IOERR;
        };
        let mut buf = vec![0u8; len.min(CHUNK)];
        let mut left = len;
        while left > 0 {
            let n = left.min(CHUNK);
            if self.file.read_exact_at(&mut buf[..n], at).is_err()
                || data.write_all(&buf[..n]).is_err()
            {
                return VIRTIO_BLK_S_IOERR;
            }
            at += n as u64;
            left -= n;
        }
        VIRTIO_BLK_S_OK
    }

    fn write(&self, sector: u64, data: &mut Reader<'_>) -> u32 {
        let len = data.available_bytes();
        let Some(mut at) = self.range(sector, len) else {
            return VIRTIO_BLK_S_IOERR;
        };
        if self.read_only {
            return VIRTIO_BLK_S_IOERR;
        }
        let mut buf = vec![0u8; len.min(CHUNK)];
        let mut left = len;
        while left > 0 {
            let n = left.min(CHUNK);
            if data.read_exact(&mut buf[..n]).is_err()
                || self.file.write_all_at(&buf[..n], at).is_err()
            {
                return VIRTIO_BLK_S_IOERR;
            }
            at += n as u64;
            left -= n;
        }
        VIRTIO_BLK_S_OK
    }

    fn flush(&self) -> u32 {
        if self.read_only {
            return VIRTIO_BLK_S_OK;
        }
        match self.file.sync_data() {
            Ok(()) => VIRTIO_BLK_S_OK,
            Err(e) => {
                log::warn!("virtio-blk: flush (fdatasync) failed: {e}");
                VIRTIO_BLK_S_IOERR
            }
        }
    }

    /// struct virtio_blk_config up to blk_size (§5.2.4).
    fn config(&self) -> [u8; 24] {
        let mut c = [0u8; 24];
        c[0..8].copy_from_slice(&self.sectors.to_le_bytes());
        // seg_max: a chain holds header and status besides the data.
        c[12..16].copy_from_slice(&(u32::from(QUEUE_SIZE) - 2).to_le_bytes());
        c[20..24].copy_from_slice(&(SECTOR as u32).to_le_bytes());
        c
    }
}

/// Writes only the status byte, at the end of the writable buffers.
fn status_only(w: &mut Writer<'_>, status: u32) -> Option<u32> {
    let at = w.available_bytes().checked_sub(1)?;
    let mut s = w.split_at(at).ok()?;
    s.write_all(&[status as u8]).ok()?;
    Some(1)
}

impl VirtioDevice for Block {
    fn device_type(&self) -> u32 {
        VIRTIO_ID_BLOCK
    }

    fn queue_max_sizes(&self) -> Vec<u16> {
        vec![QUEUE_SIZE]
    }

    fn features(&self) -> u64 {
        let mut f = VIRTIO_F_VERSION_1
            | VIRTIO_RING_F_EVENT_IDX
            | VIRTIO_RING_F_INDIRECT_DESC
            | (1 << VIRTIO_BLK_F_FLUSH)
            | (1 << VIRTIO_BLK_F_SEG_MAX)
            | (1 << VIRTIO_BLK_F_BLK_SIZE);
        if self.disk.read_only {
            f |= 1 << VIRTIO_BLK_F_RO;
        }
        f
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        let c = self.disk.config();
        for (i, d) in data.iter_mut().enumerate() {
            *d = usize::try_from(offset)
                .ok()
                .and_then(|o| o.checked_add(i))
                .and_then(|at| c.get(at))
                .copied()
                .unwrap_or(0);
        }
    }

    fn activate(&mut self, a: Activation) -> Result<(), String> {
        let queue = a
            .queues
            .into_iter()
            .next()
            .filter(|q| q.ready())
            .ok_or("queue 0 was not enabled")?;
        self.active = Some(Active {
            mem: a.mem,
            queue,
            interrupt: a.interrupt,
        });
        Ok(())
    }

    fn notify(&mut self, _queue: u16) -> Result<(), String> {
        self.process_queue()
    }

    fn reset(&mut self) {
        self.active = None;
    }
}

#[cfg(test)]
#[path = "block_tests.rs"]
mod tests;
