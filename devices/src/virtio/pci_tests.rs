use std::sync::{Arc, Mutex};

use super::*;
use crate::pci::PciDevice;
use crate::virtio::testing::{ram, Driver, MsiLog, Ring};
use crate::virtio::{Activation, VIRTIO_F_VERSION_1};

/// Records what the transport asks of it.
#[derive(Default)]
struct Log {
    activated: Vec<(u64, usize)>,
    notified: Vec<u16>,
    resets: usize,
}

struct Stub(Arc<Mutex<Log>>, Option<Arc<Interrupt>>);

impl VirtioDevice for Stub {
    fn device_type(&self) -> u32 {
        2
    }
    fn queue_max_sizes(&self) -> Vec<u16> {
        vec![64, 64]
    }
    fn features(&self) -> u64 {
        VIRTIO_F_VERSION_1 | (1 << 9)
    }
    fn read_config(&self, offset: u64, data: &mut [u8]) {
        for (i, d) in data.iter_mut().enumerate() {
            *d = (offset as u8).wrapping_add(i as u8);
        }
    }
    fn activate(&mut self, a: Activation) -> Result<(), String> {
        let ready = a.queues.iter().filter(|q| q.ready()).count();
        self.0.lock().unwrap().activated.push((a.features, ready));
        self.1 = Some(a.interrupt);
        Ok(())
    }
    fn notify(&mut self, queue: u16) -> Result<(), String> {
        self.0.lock().unwrap().notified.push(queue);
        if let Some(i) = &self.1 {
            i.signal_queue(queue);
        }
        Ok(())
    }
    fn reset(&mut self) {
        self.0.lock().unwrap().resets += 1;
    }
}

fn stub() -> (Driver, Arc<Mutex<Log>>, Arc<MsiLog>, GuestRam) {
    let log = Arc::new(Mutex::new(Log::default()));
    let msi = Arc::new(MsiLog::default());
    let mem = ram(1 << 20);
    let pci = VirtioPci::new(
        Box::new(Stub(log.clone(), None)),
        mem.clone(),
        0x01_80_00,
        msi.clone(),
    );
    (Driver::new(pci), log, msi, mem)
}

#[test]
fn capabilities_describe_the_bar_as_linux_reads_them() {
    let (mut d, ..) = stub();
    let f = &mut d.pci.function;
    assert_eq!(
        f.read_config(0),
        0x1042_1af4,
        "vendor 0x1af4, device 0x1040 + 2"
    );
    assert_eq!(f.read_config(2) >> 8, 0x01_80_00);
    assert_eq!(f.read_config(11), 0x0002_1af4);
    // Walk the vendor capabilities: (cfg_type, bar, offset, length).
    let mut found = Vec::new();
    let mut ptr = (f.read_config(13) & 0xfc) as usize;
    while ptr != 0 {
        let hdr = f.read_config(ptr / 4);
        if hdr & 0xff == 0x09 {
            // cap_len and cfg_type in the first dword, bar in the second.
            let (cfg_type, bar) = (hdr >> 24, f.read_config(ptr / 4 + 1) & 0xff);
            let (off, len) = (f.read_config(ptr / 4 + 2), f.read_config(ptr / 4 + 3));
            found.push((cfg_type, bar, off, len, (hdr >> 16) & 0xff));
            if cfg_type == 2 {
                assert_eq!(f.read_config(ptr / 4 + 4), 4, "notify_off_multiplier");
            }
        }
        ptr = ((hdr >> 8) & 0xfc) as usize;
    }
    assert_eq!(
        found,
        vec![
            (1, 0, 0x0000, 0x3c, 16),
            (3, 0, 0x1000, 1, 16),
            (4, 0, 0x2000, 0x1000, 16),
            (2, 0, 0x3000, 0x1000, 20),
        ]
    );
    assert!(f.find_capability(0x11).is_some(), "MSI-X");
    // Device configuration reads reach the device model.
    assert_eq!(d.read(0x2004, 2), 0x0504);
}

#[test]
fn activation_hands_over_the_enabled_queues_and_notifies_reach_the_device() {
    let (mut d, log, msi, mem) = stub();
    d.enable_msix();
    assert!(d.negotiate(VIRTIO_F_VERSION_1));
    d.notify(0); // not live yet: ignored
    let ring = Ring::new(&mem, 0x1000, 64);
    d.setup_queue(1, &ring, 2);
    d.write(0x10, 2, 0); // config vector
    d.driver_ok();
    assert_eq!(d.status(), 0xf);
    assert_eq!(log.lock().unwrap().activated, vec![(VIRTIO_F_VERSION_1, 1)]);
    d.notify(1);
    d.notify(7); // no such queue
    d.write(0x3002, 2, 1); // not a queue's slot
    assert_eq!(log.lock().unwrap().notified, vec![1]);
    assert_eq!(*msi.0.lock().unwrap(), vec![2], "queue 1's vector");
    assert_eq!(d.read(0x1000, 1), 1, "ISR: queue interrupt");
    assert_eq!(d.read(0x1000, 1), 0, "reading ISR clears it");
    d.write(0x14, 1, 0);
    assert_eq!(log.lock().unwrap().resets, 1);
    d.notify(1);
    assert_eq!(log.lock().unwrap().notified, vec![1], "reset: not live");
}

#[test]
fn queues_outside_guest_ram_or_misaligned_need_a_reset() {
    let (mut d, log, msi, mem) = stub();
    d.enable_msix();
    assert!(d.negotiate(VIRTIO_F_VERSION_1));
    let mut ring = Ring::new(&mem, 0x1000, 64);
    ring.used = (1 << 20) - 8; // runs past the end of RAM
    d.setup_queue(0, &ring, 0);
    d.write(0x10, 2, 2);
    d.driver_ok();
    assert_eq!(d.status() & 0x40, 0x40, "DEVICE_NEEDS_RESET");
    assert!(log.lock().unwrap().activated.is_empty());
    assert_eq!(*msi.0.lock().unwrap(), vec![2], "config change signalled");
    d.notify(0);
    assert!(log.lock().unwrap().notified.is_empty());

    // After a reset the driver may try again; a misaligned ring fails too.
    assert!(d.negotiate(VIRTIO_F_VERSION_1));
    let mut ring = Ring::new(&mem, 0x1000, 64);
    ring.desc = 0x1004;
    d.setup_queue(0, &ring, 0);
    d.driver_ok();
    assert_eq!(d.status() & 0x40, 0x40);
    // A queue table that wraps the address space.
    assert!(d.negotiate(VIRTIO_F_VERSION_1));
    let mut ring = Ring::new(&mem, 0x1000, 64);
    ring.avail = u64::MAX - 3;
    d.setup_queue(0, &ring, 0);
    d.driver_ok();
    assert_eq!(d.status() & 0x40, 0x40);
    assert!(log.lock().unwrap().activated.is_empty());
}

#[test]
fn hostile_register_accesses_do_not_panic() {
    let (d, ..) = stub();
    for off in [
        0u64,
        0x3b,
        0xfff,
        0x1001,
        0x1fff,
        0x2fff,
        0x3fff,
        0x4000,
        u64::MAX,
    ] {
        for len in [1usize, 2, 3, 4, 8] {
            let mut b = [0u8; 8];
            d.bar.read(off, &mut b[..len]);
            d.bar.write(off, &[0xff; 8][..len]);
        }
    }
    d.bar.read(0, &mut []);
    d.bar.write(0x1000, &[]);
}
