//! The accelerator on the VMM's own DMA memory, clock and completion
//! thread (no KVM): a doorbell's completion arrives as an MSI-X message
//! without anyone polling the device, and the bytes are where they should be.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use devices::accel::command::{build, FLAG_IRQ};
use devices::accel::regs::*;
use devices::accel::{build_accelerator, AccelConfig, AccelDeps, AccelSpec};
use devices::clock::GuestClock;
use devices::pci::{LinkParams, MsiSink};
use fabric::topology::Topology;
use vm_memory::{Bytes, GuestAddress};

use super::clock::MachineClock;
use super::memory::{BusMemory, VramWindow};
use super::timer::CompletionThread;
use crate::memory::GuestMemory;

struct MsiChannel(Mutex<mpsc::Sender<u16>>);

impl MsiSink for MsiChannel {
    fn route(&self, _vector: u16, _address: u64, _data: u32) {}
    fn trigger(&self, vector: u16) {
        let _ = self.0.lock().unwrap().send(vector);
    }
}

const RING: u64 = 0x10_0000;
const SRC: u64 = 0x20_0000;
const BACK: u64 = 0x40_0000;
const FENCE: u64 = 0x8000;
const VRAM_BAR: u64 = 0xc800_0000;
const LEN: usize = 256 * 1024;

#[test]
fn the_completion_thread_retires_a_copy_and_sends_its_vector() {
    let topo = Topology::from_toml_str(include_str!("../../../examples/accelerators.toml"))
        .expect("example topology");
    let ram = GuestMemory::from_ranges(&[(GuestAddress(0), 16 << 20)]).unwrap();
    let memory = Arc::new(BusMemory::new(ram.clone(), None));
    let clock = Arc::new(MachineClock::default());
    let (tx, rx) = mpsc::channel();
    let dev = build_accelerator(
        AccelSpec {
            config: AccelConfig::from_topology(&topo.accelerators[0], 0),
            name: "timertest".into(),
            link: LinkParams {
                gen: 4,
                width: 16,
                port_number: 0,
            },
            intx: None,
        },
        Arc::new(MsiChannel(Mutex::new(tx))),
        AccelDeps {
            memory: memory.clone(),
            engine: Arc::new(Mutex::new(fabric::Engine::new(&topo))),
            clock: clock.clone() as Arc<dyn GuestClock>,
        },
    )
    .unwrap();
    let window = Arc::new(VramWindow::new(dev.vram.clone()));
    window.set_base(Some(VRAM_BAR));
    memory.add_vram(0, window);
    {
        let mut t = dev.msix.lock().unwrap();
        for v in 0..t.len() as u64 {
            t.write_table(v * 16 + 12, &0u32.to_le_bytes());
        }
        t.set_control(true, false);
    }
    let _timer = CompletionThread::spawn(vec![dev.regs.clone()], clock).unwrap();

    let data: Vec<u8> = (0..LEN).map(|i| (i * 7 + 3) as u8).collect();
    ram.write_slice(&data, GuestAddress(SRC)).unwrap();
    let ring = [
        build::copy(0, SRC, VRAM_BAR, LEN as u64),
        build::copy(0, VRAM_BAR, BACK, LEN as u64),
        build::fence(FLAG_IRQ, FENCE, 42),
    ];
    for (i, d) in ring.iter().enumerate() {
        ram.write_slice(d, GuestAddress(RING + 64 * i as u64))
            .unwrap();
    }
    let w32 = |off: u64, v: u32| dev.regs.lock().unwrap().write(off, &v.to_le_bytes());
    w32(INT_ENABLE, 1);
    w32(queue_reg(0, Q_BASE), RING as u32);
    w32(queue_reg(0, Q_SIZE), 16);
    w32(queue_reg(0, Q_CTRL), 1);
    w32(doorbell(0), ring.len() as u32);

    // Nobody touches the device from here: the thread must deliver.
    let vector = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("queue 0's vector within 30 s");
    assert_eq!(vector, 0);
    let mut fence = [0u8; 8];
    ram.read_slice(&mut fence, GuestAddress(FENCE)).unwrap();
    assert_eq!(u64::from_le_bytes(fence), 42);
    let mut back = vec![0u8; LEN];
    ram.read_slice(&mut back, GuestAddress(BACK)).unwrap();
    assert!(back == data, "host -> VRAM -> host changed the bytes");
    let mut vram = vec![0u8; LEN];
    assert!(dev.vram.read(0, &mut vram));
    assert!(vram == data);
}
