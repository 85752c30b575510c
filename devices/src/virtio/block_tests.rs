//! virtio-blk driven through the PCI transport as Linux's driver drives it,
//! over a real image file, with well-formed and hostile descriptor chains.

use std::path::PathBuf;
use std::sync::Arc;

use vm_memory::{Bytes, GuestAddress};

use super::*;
use crate::virtio::testing::{
    ram, write_desc, Driver, MsiLog, Ring, VRING_DESC_F_INDIRECT, VRING_DESC_F_NEXT,
    VRING_DESC_F_WRITE,
};
use crate::virtio::VirtioPci;

const RAM: usize = 1 << 20;
const RING_SIZE: u16 = 16;
const HEADER: u64 = 0x1_0000;
const DATA: u64 = 0x2_0000;
const STATUS: u64 = 0x3_0000;
const INDIRECT: u64 = 0x4_0000;
const SECTORS: u64 = 64;
/// An unused status byte; any answer overwrites it.
const UNTOUCHED: u8 = 0xee;
const NEEDS_RESET: u8 = 0x40;

/// An image file removed when the test ends.
struct Image(PathBuf);

impl Image {
    fn new(name: &str, content: &[u8]) -> Self {
        let path = std::env::temp_dir().join(format!(
            "cxlvmm-blk-{}-{name}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::write(&path, content).unwrap();
        Self(path)
    }
    fn bytes(&self) -> Vec<u8> {
        std::fs::read(&self.0).unwrap()
    }
}

impl Drop for Image {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(7).wrapping_add(seed))
        .collect()
}

/// A disk behind a live transport: queue 0 on vector 0, config on 1.
struct Rig {
    d: Driver,
    ring: Ring,
    msi: Arc<MsiLog>,
    mem: GuestRam,
    next_used: u16,
}

impl Rig {
    fn new(image: &Image, read_only: bool) -> Self {
        let mem = ram(RAM);
        let msi = Arc::new(MsiLog::default());
        let block = Block::open(&image.0, read_only, "disk-serial-1").unwrap();
        let pci = VirtioPci::new(
            Box::new(block),
            mem.clone(),
            CLASS_STORAGE_OTHER,
            msi.clone(),
        );
        let mut d = Driver::new(pci);
        d.enable_msix();
        let offered = d.device_features();
        assert!(d.negotiate(offered & !VIRTIO_RING_F_EVENT_IDX));
        let ring = Ring::new(&mem, 0x1000, RING_SIZE);
        d.setup_queue(0, &ring, 0);
        d.write(0x10, 2, 1);
        d.driver_ok();
        assert_eq!(d.status(), 0xf);
        Self {
            d,
            ring,
            msi,
            mem,
            next_used: 0,
        }
    }

    /// Resets the device (status 0) and starts it again on a clean ring.
    fn restart(&mut self) {
        self.mem
            .write_slice(&[0u8; 0x1000], GuestAddress(0x1000))
            .unwrap();
        let offered = self.d.device_features();
        assert!(self.d.negotiate(offered & !VIRTIO_RING_F_EVENT_IDX));
        self.ring = Ring::new(&self.mem, 0x1000, RING_SIZE);
        self.d.setup_queue(0, &self.ring, 0);
        self.d.driver_ok();
        assert_eq!(self.d.status(), 0xf);
        self.next_used = 0;
    }

    fn header(&self, kind: u32, sector: u64) {
        self.mem.write_obj(kind, GuestAddress(HEADER)).unwrap();
        self.mem.write_obj(0u32, GuestAddress(HEADER + 4)).unwrap();
        self.mem
            .write_obj(sector, GuestAddress(HEADER + 8))
            .unwrap();
        self.mem.write_obj(UNTOUCHED, GuestAddress(STATUS)).unwrap();
    }

    /// Chain of (addr, len, flags) from descriptor 0; runs it; returns the
    /// used length and the status byte.
    fn run(&mut self, descs: &[(u64, u32, u16)]) -> (u32, u8) {
        for (i, &(addr, len, flags)) in descs.iter().enumerate() {
            let more = if i + 1 < descs.len() {
                VRING_DESC_F_NEXT
            } else {
                0
            };
            self.ring
                .set_desc(i as u16, addr, len, flags | more, i as u16 + 1);
        }
        self.ring.push(0);
        self.d.notify(0);
        assert_eq!(self.ring.used_idx(), self.next_used + 1, "request returned");
        let (id, len) = self.ring.used_elem(self.next_used);
        self.next_used += 1;
        assert_eq!(id, 0);
        let status = self.mem.read_obj(GuestAddress(STATUS)).unwrap();
        (len, status)
    }

    /// A plain request: header, `data` bytes at DATA (device-writable for
    /// reads), status byte.
    fn request(&mut self, kind: u32, sector: u64, data: u32) -> (u32, u8) {
        self.header(kind, sector);
        let data_flags = if kind == VIRTIO_BLK_T_IN || kind == VIRTIO_BLK_T_GET_ID {
            VRING_DESC_F_WRITE
        } else {
            0
        };
        let mut descs = vec![(HEADER, 16, 0)];
        if data > 0 {
            descs.push((DATA, data, data_flags));
        }
        descs.push((STATUS, 1, VRING_DESC_F_WRITE));
        self.run(&descs)
    }

    fn data(&self, len: usize) -> Vec<u8> {
        let mut b = vec![0u8; len];
        self.mem.read_slice(&mut b, GuestAddress(DATA)).unwrap();
        b
    }
}

fn disk_image(name: &str) -> (Image, Vec<u8>) {
    let content = pattern((SECTORS * SECTOR) as usize, 3);
    (Image::new(name, &content), content)
}

#[test]
fn config_space_reports_capacity_and_features_say_flush() {
    let (img, _) = disk_image("config");
    let r = Rig::new(&img, false);
    assert_eq!(r.d.read(0x2000, 8), SECTORS, "capacity in sectors");
    assert_eq!(r.d.read(0x2014, 4), 512, "blk_size");
    assert_eq!(r.d.read(0x200c, 4), u64::from(QUEUE_SIZE) - 2, "seg_max");
    assert_eq!(r.d.read(0x2100, 4), 0, "past the structure");
    let f = r.d.device_features();
    assert_ne!(f & (1 << VIRTIO_BLK_F_FLUSH), 0);
    assert_eq!(f & (1 << VIRTIO_BLK_F_RO), 0);
}

#[test]
fn reads_writes_and_flushes_reach_the_file() {
    let (img, mut content) = disk_image("rw");
    let mut r = Rig::new(&img, false);
    let (len, status) = r.request(VIRTIO_BLK_T_IN, 2, 1024);
    assert_eq!((len, status), (1025, VIRTIO_BLK_S_OK as u8));
    assert_eq!(r.data(1024), content[1024..2048]);
    assert_eq!(*r.msi.0.lock().unwrap(), vec![0], "queue vector");

    let new = pattern(1536, 99);
    r.mem.write_slice(&new, GuestAddress(DATA)).unwrap();
    let (len, status) = r.request(VIRTIO_BLK_T_OUT, 5, 1536);
    assert_eq!((len, status), (1, VIRTIO_BLK_S_OK as u8));
    let (_, status) = r.request(VIRTIO_BLK_T_FLUSH, 0, 0);
    assert_eq!(status, VIRTIO_BLK_S_OK as u8);
    content[5 * 512..5 * 512 + 1536].copy_from_slice(&new);
    assert_eq!(img.bytes(), content);

    // The whole 20-byte ID field, NUL-padded (Virtio 1.2 §5.2.6).
    let (len, status) = r.request(VIRTIO_BLK_T_GET_ID, 0, 20);
    assert_eq!((len, status), (21, VIRTIO_BLK_S_OK as u8));
    assert_eq!(&r.data(20)[..14], b"disk-serial-1\0");
}

#[test]
fn a_read_only_disk_refuses_writes_with_ioerr() {
    let (img, content) = disk_image("ro");
    let mut r = Rig::new(&img, true);
    assert_ne!(r.d.device_features() & (1 << VIRTIO_BLK_F_RO), 0);
    r.mem.write_slice(&[0u8; 512], GuestAddress(DATA)).unwrap();
    let (_, status) = r.request(VIRTIO_BLK_T_OUT, 0, 512);
    assert_eq!(status, VIRTIO_BLK_S_IOERR as u8);
    let (_, status) = r.request(VIRTIO_BLK_T_IN, 0, 512);
    assert_eq!(status, VIRTIO_BLK_S_OK as u8);
    assert_eq!(img.bytes(), content, "file unchanged");
}

#[test]
fn requests_of_the_wrong_shape_get_an_error_status() {
    let (img, content) = disk_image("shape");
    let mut r = Rig::new(&img, false);
    let ioerr = VIRTIO_BLK_S_IOERR as u8;
    // Not whole sectors; past the end; a sector number that overflows.
    assert_eq!(r.request(VIRTIO_BLK_T_IN, 0, 100).1, ioerr);
    assert_eq!(r.request(VIRTIO_BLK_T_IN, SECTORS - 1, 1024).1, ioerr);
    assert_eq!(r.request(VIRTIO_BLK_T_OUT, u64::MAX / 2, 512).1, ioerr);
    // An unknown request type.
    assert_eq!(
        r.request(0x1234, 0, 0).1,
        VIRTIO_BLK_S_UNSUPP as u8,
        "unknown type"
    );
    // A header shorter than 16 bytes.
    r.header(VIRTIO_BLK_T_IN, 0);
    let (_, status) = r.run(&[(HEADER, 8, 0), (STATUS, 1, VRING_DESC_F_WRITE)]);
    assert_eq!(status, ioerr);
    // A readable buffer outside RAM: the status still says so.
    r.header(VIRTIO_BLK_T_OUT, 0);
    let (len, status) = r.run(&[
        (HEADER, 16, 0),
        (RAM as u64 - 256, 512, 0),
        (STATUS, 1, VRING_DESC_F_WRITE),
    ]);
    assert_eq!((len, status), (1, ioerr));
    assert_eq!(img.bytes(), content, "nothing was written");
    // The device still works afterwards.
    assert_eq!(r.request(VIRTIO_BLK_T_IN, 0, 512).1, VIRTIO_BLK_S_OK as u8);
    assert_eq!(r.d.status() & NEEDS_RESET, 0);
}

#[test]
fn indirect_chains_are_followed() {
    let (img, content) = disk_image("indirect");
    let mut r = Rig::new(&img, false);
    r.header(VIRTIO_BLK_T_IN, 4);
    write_desc(&r.mem, INDIRECT, 0, HEADER, 16, VRING_DESC_F_NEXT, 1);
    write_desc(
        &r.mem,
        INDIRECT,
        1,
        DATA,
        512,
        VRING_DESC_F_WRITE | VRING_DESC_F_NEXT,
        2,
    );
    write_desc(&r.mem, INDIRECT, 2, STATUS, 1, VRING_DESC_F_WRITE, 0);
    let (len, status) = r.run(&[(INDIRECT, 48, VRING_DESC_F_INDIRECT)]);
    assert_eq!((len, status), (513, VIRTIO_BLK_S_OK as u8));
    assert_eq!(r.data(512), content[2048..2560]);
}

#[test]
fn a_descriptor_loop_ends_at_the_queue_size_without_a_panic() {
    let (img, _) = disk_image("loop");
    let mut r = Rig::new(&img, false);
    r.header(VIRTIO_BLK_T_IN, 0);
    // 0 -> 1 -> 0 -> ...: all readable, so there is never a status byte.
    r.ring.set_desc(0, HEADER, 16, VRING_DESC_F_NEXT, 1);
    r.ring.set_desc(1, DATA, 512, VRING_DESC_F_NEXT, 0);
    r.ring.push(0);
    r.d.notify(0);
    assert_eq!(r.d.status() & NEEDS_RESET, NEEDS_RESET);
    assert_eq!(*r.msi.0.lock().unwrap(), vec![1], "config vector");
    // Stopped: further notifications are ignored until a reset.
    r.d.notify(0);
    assert_eq!(r.ring.used_idx(), 0);
}

#[test]
fn unanswerable_chains_and_bad_rings_need_a_reset() {
    let (img, content) = disk_image("hostile");
    type Setup = fn(&mut Rig);
    let cases: [(&str, Setup); 4] = [
        ("writable buffer outside RAM", |r| {
            r.header(VIRTIO_BLK_T_IN, 0);
            r.ring.set_desc(0, HEADER, 16, VRING_DESC_F_NEXT, 1);
            r.ring.set_desc(
                1,
                u64::MAX - 100,
                512,
                VRING_DESC_F_WRITE | VRING_DESC_F_NEXT,
                2,
            );
            r.ring.set_desc(2, STATUS, 1, VRING_DESC_F_WRITE, 0);
            r.ring.push(0);
        }),
        ("next index outside the table", |r| {
            r.header(VIRTIO_BLK_T_IN, 0);
            r.ring.set_desc(0, HEADER, 16, VRING_DESC_F_NEXT, 999);
            r.ring.push(0);
        }),
        ("head index outside the table", |r| {
            r.ring.push(RING_SIZE + 3);
        }),
        ("available index far ahead", |r| {
            r.mem
                .write_obj(1000u16, GuestAddress(r.ring.avail + 2))
                .unwrap();
        }),
    ];
    for (what, setup) in cases {
        let mut r = Rig::new(&img, false);
        setup(&mut r);
        r.d.notify(0);
        assert_eq!(r.d.status() & NEEDS_RESET, NEEDS_RESET, "{what}");
        assert_eq!(
            r.mem.read_obj::<u8>(GuestAddress(STATUS)).unwrap(),
            if what.starts_with("head") || what.starts_with("avail") {
                0
            } else {
                UNTOUCHED
            },
            "{what}: no status written"
        );
        // A reset and a fresh start bring the device back.
        r.restart();
        assert_eq!(r.d.status() & NEEDS_RESET, 0, "{what}");
        assert_eq!(r.request(VIRTIO_BLK_T_IN, 0, 512).1, 0, "{what}");
    }
    assert_eq!(img.bytes(), content);
}

#[test]
fn images_that_are_not_whole_sectors_or_locked_are_refused() {
    let odd = Image::new("odd", &[0u8; 1000]);
    assert!(matches!(
        Block::open(&odd.0, false, "x"),
        Err(OpenError::Size { size: 1000, .. })
    ));
    let empty = Image::new("empty", &[]);
    assert!(matches!(
        Block::open(&empty.0, true, "x"),
        Err(OpenError::Size { size: 0, .. })
    ));
    let missing = std::env::temp_dir().join("cxlvmm-blk-does-not-exist");
    assert!(matches!(
        Block::open(&missing, false, "x"),
        Err(OpenError::Io { .. })
    ));
    let (img, _) = disk_image("locked");
    let _held = Block::open(&img.0, false, "a").unwrap();
    let err = Block::open(&img.0, true, "b").err().expect("locked");
    assert!(err.to_string().contains("in use"), "{err}");
}
