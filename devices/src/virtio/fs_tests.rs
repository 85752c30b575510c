use std::sync::{Arc, Mutex};

use super::*;
use crate::pci::PciDevice;
use crate::virtio::testing::{ram, Driver, MsiLog, Ring};
use crate::virtio::GuestRam;
use crate::virtio::{VirtioPci, VIRTIO_RING_F_EVENT_IDX};
use virtio_queue::QueueT;

/// What the device asked of its backend.
#[derive(Default)]
struct Log {
    /// (features, [(queue size, desc table)]) per start.
    started: Vec<(u64, Vec<(u16, u64)>)>,
    kicked: Vec<u16>,
    stops: usize,
}

struct FakeBackend {
    log: Arc<Mutex<Log>>,
    fail_start: bool,
}

impl RingBackend for FakeBackend {
    fn features(&self) -> u64 {
        // Bits the transport cannot serve (packed ring, bit 34) are not
        // passed on to the driver.
        VIRTIO_F_VERSION_1 | VIRTIO_RING_F_EVENT_IDX | (1 << 34)
    }
    fn start(&mut self, a: Activation) -> Result<(), String> {
        if self.fail_start {
            return Err("backend gone".into());
        }
        let queues = a
            .queues
            .iter()
            .map(|q| (q.size(), q.desc_table()))
            .collect();
        self.log.lock().unwrap().started.push((a.features, queues));
        Ok(())
    }
    fn kick(&mut self, queue: u16) -> Result<(), String> {
        self.log.lock().unwrap().kicked.push(queue);
        Ok(())
    }
    fn stop(&mut self) {
        self.log.lock().unwrap().stops += 1;
    }
}

fn fs(tag: &str, fail_start: bool) -> (Driver, Arc<Mutex<Log>>, GuestRam) {
    let log = Arc::new(Mutex::new(Log::default()));
    let backend = FakeBackend {
        log: log.clone(),
        fail_start,
    };
    let dev = Fs::new(tag, 1, Box::new(backend)).unwrap();
    let mem = ram(1 << 20);
    let pci = VirtioPci::new(
        Box::new(dev),
        mem.clone(),
        CLASS_STORAGE_OTHER,
        Arc::new(MsiLog::default()),
    );
    (Driver::new(pci), log, mem)
}

#[test]
fn the_guest_reads_the_tag_and_queue_count_in_its_config() {
    let (mut d, ..) = fs("hostshare", false);
    assert_eq!(d.pci.function.read_config(0), 0x105a_1af4, "0x1040 + 26");
    let tag: Vec<u8> = (0..TAG_LEN as u64)
        .map(|i| d.read(0x2000 + i, 1) as u8)
        .collect();
    assert_eq!(&tag[..9], b"hostshare");
    assert!(tag[9..].iter().all(|&b| b == 0));
    assert_eq!(d.read(0x2000 + TAG_LEN as u64, 4), 1, "num_request_queues");
    assert_eq!(d.read(0x2000 + TAG_LEN as u64 + 4, 4), 0, "past the end");
    assert_eq!(d.read(0x12, 2), 2, "num_queues: hiprio + 1 request queue");
    assert_eq!(
        d.device_features(),
        VIRTIO_F_VERSION_1 | VIRTIO_RING_F_EVENT_IDX
    );
}

#[test]
fn both_queues_reach_the_backend_and_kicks_follow_them() {
    let (d, log, mem) = fs("t", false);
    assert!(d.negotiate(VIRTIO_F_VERSION_1));
    let hiprio = Ring::new(&mem, 0x1_0000, 64);
    let request = Ring::new(&mem, 0x2_0000, 128);
    d.setup_queue(0, &hiprio, 0xffff);
    d.setup_queue(1, &request, 0xffff);
    d.driver_ok();
    assert_eq!(d.status() & 0x40, 0, "no DEVICE_NEEDS_RESET");
    assert_eq!(
        log.lock().unwrap().started,
        vec![(VIRTIO_F_VERSION_1, vec![(64, 0x1_0000), (128, 0x2_0000)])]
    );
    d.notify(1);
    d.notify(0);
    assert_eq!(log.lock().unwrap().kicked, vec![1, 0]);
    d.write(0x14, 1, 0); // reset
    assert_eq!(log.lock().unwrap().stops, 1);
    d.notify(1); // after reset: nothing reaches the backend
    assert_eq!(log.lock().unwrap().kicked, vec![1, 0]);
}

#[test]
fn a_queue_left_disabled_or_a_backend_that_fails_asks_for_a_reset() {
    let (d, log, mem) = fs("t", false);
    assert!(d.negotiate(VIRTIO_F_VERSION_1));
    d.setup_queue(0, &Ring::new(&mem, 0x1_0000, 64), 0xffff);
    d.driver_ok();
    assert_ne!(d.status() & 0x40, 0, "DEVICE_NEEDS_RESET");
    assert!(log.lock().unwrap().started.is_empty());

    let (d, log, mem) = fs("t", true);
    assert!(d.negotiate(VIRTIO_F_VERSION_1));
    d.setup_queue(0, &Ring::new(&mem, 0x1_0000, 64), 0xffff);
    d.setup_queue(1, &Ring::new(&mem, 0x2_0000, 64), 0xffff);
    d.driver_ok();
    assert_ne!(d.status() & 0x40, 0, "DEVICE_NEEDS_RESET");
    d.notify(1);
    assert!(log.lock().unwrap().kicked.is_empty());
}

#[test]
fn tags_are_checked() {
    assert!(check_tag("share0").is_ok());
    assert!(check_tag(&"a".repeat(36)).is_ok());
    assert_eq!(
        check_tag(&"a".repeat(37)),
        Err(TagError::TooLong("a".repeat(37)))
    );
    assert_eq!(check_tag(""), Err(TagError::Empty(String::new())));
    assert!(matches!(check_tag("a b"), Err(TagError::BadChar(_))));
    assert!(matches!(check_tag("a,b"), Err(TagError::BadChar(_))));
}
