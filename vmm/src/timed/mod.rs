//! Timed CXL memory: a window in `timed` mode is never mapped into the
//! guest; every access exits here, is served from the device media like a
//! trapped access, and is charged the completion time the fabric model
//! computes for it (cache model, links, switches, media, queueing behind
//! every other vCPU's and DMA engine's traffic). The vCPU then re-enters
//! the guest only when the guest clock shows that time ([`crate::vclock`]).

pub mod media;
pub mod plots;
pub mod setup;
pub mod stats;

use std::sync::{Arc, Mutex, MutexGuard};

use devices::clock::GuestClock;
use fabric::{Engine, Op, Target};

pub use media::DeviceMedia;
pub use stats::{TimedStats, WindowStats};

/// HPA -> (type-3 device index, DPA); None where nothing decodes.
pub trait Decode: Send + Sync {
    fn decode(&self, hpa: u64) -> Option<(usize, u64)>;
}

impl Decode for fabric::interleave::DecodeTree {
    fn decode(&self, hpa: u64) -> Option<(usize, u64)> {
        fabric::interleave::DecodeTree::decode(self, hpa).map(|t| (t.device, t.dpa))
    }
}

/// The decoders the guest has committed right now. An access takes them
/// once and decodes all its bytes and lines with them: one view per
/// access, and one lookup of the current tree rather than one per line.
pub trait HpaDecode: Send + Sync {
    fn current(&self) -> Arc<dyn Decode>;
}

/// A window served in timed mode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimedWindow {
    pub id: String,
    pub base: u64,
    pub size: u64,
}

/// One guest access, as KVM reported it.
pub enum Access<'a> {
    Read(&'a mut [u8]),
    Write(&'a [u8]),
}

pub struct TimedMemory {
    windows: Vec<TimedWindow>,
    decode: Arc<dyn HpaDecode>,
    media: Vec<DeviceMedia>,
    engine: Arc<Mutex<Engine>>,
    stats: Mutex<TimedStats>,
    /// The machine's guest clock: when an access issues where no virtual
    /// clock runs (`--host-time`), host time on the same base as the
    /// accelerators' DMA.
    clock: Arc<dyn GuestClock>,
}

/// The smallest interleave unit: an access never spans two devices inside
/// one of these.
const GRANULE: u64 = 256;

impl TimedMemory {
    pub fn new(
        windows: Vec<TimedWindow>,
        decode: Arc<dyn HpaDecode>,
        media: Vec<DeviceMedia>,
        engine: Arc<Mutex<Engine>>,
        clock: Arc<dyn GuestClock>,
    ) -> Self {
        let stats = TimedStats::new(windows.iter().map(|w| w.id.clone()).collect());
        Self {
            windows,
            decode,
            media,
            engine,
            stats: Mutex::new(stats),
            clock,
        }
    }

    pub fn windows(&self) -> &[TimedWindow] {
        &self.windows
    }

    pub fn engine(&self) -> &Arc<Mutex<Engine>> {
        &self.engine
    }

    /// The machine's guest time, in ps: when an access issues where no
    /// virtual clock runs (`--host-time`).
    pub fn now_ps(&self) -> u64 {
        self.clock.now_ps()
    }

    /// The timed window holding `addr`, if any.
    pub fn window_of(&self, addr: u64) -> Option<usize> {
        self.windows
            .iter()
            .position(|w| addr >= w.base && addr - w.base < w.size)
    }

    fn lock_engine(&self) -> MutexGuard<'_, Engine> {
        self.engine.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn stats(&self) -> MutexGuard<'_, TimedStats> {
        self.stats.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Serves an access at `addr` in window `w`, issued at guest time
    /// `issue_ps`; returns the latency the guest must see, in ps.
    /// Undecoded bytes read as all ones and drop writes, as on the bus.
    pub fn access(&self, w: usize, addr: u64, access: Access<'_>, issue_ps: u64) -> u64 {
        let (op, len) = match &access {
            Access::Read(d) => (Op::Read, d.len()),
            Access::Write(d) => (Op::Write, d.len()),
        };
        let decode = self.decode.current();
        let decoded = decode.decode(addr);
        self.move_bytes(decode.as_ref(), addr, access);
        let timed =
            self.lock_engine()
                .timed_access(addr, len.clamp(1, 64) as u32, op, issue_ps, |line| {
                    // Lines of this access decode like its first byte unless
                    // the access straddles a granule.
                    match decode.decode(line) {
                        Some((device, dpa)) => Target::Type3 { device, dpa },
                        None => Target::Address(line),
                    }
                });
        let (latency, hit) = match timed {
            Ok(t) => (t.latency(), t.hit),
            Err(e) => {
                log::debug!("timed access at {addr:#x} not charged: {e}");
                (0, false)
            }
        };
        if let Some(s) = self.stats().windows.get_mut(w) {
            s.record(latency, hit, op, decoded.is_some());
        }
        latency
    }

    /// Copies the bytes, one device run at a time.
    fn move_bytes(&self, decode: &dyn Decode, addr: u64, access: Access<'_>) {
        let len = match &access {
            Access::Read(d) => d.len(),
            Access::Write(d) => d.len(),
        };
        let mut access = access;
        if let Access::Read(d) = &mut access {
            d.fill(0xff);
        }
        let mut done = 0usize;
        while done < len {
            let hpa = addr + done as u64;
            let run = ((GRANULE - hpa % GRANULE) as usize).min(len - done);
            if let Some((device, dpa)) = decode.decode(hpa) {
                if let Some(m) = self.media.get(device) {
                    let ok = match &mut access {
                        Access::Read(d) => m.read(dpa, &mut d[done..done + run]),
                        Access::Write(d) => m.write(dpa, &d[done..done + run]),
                    };
                    if !ok {
                        log::debug!(
                            "timed access at {hpa:#x}: DPA {dpa:#x} outside device {device}"
                        );
                    }
                }
            }
            done += run;
        }
    }

    /// Records what the VMM itself spent on one timed access (ns).
    pub fn record_vmm_cost(&self, ns: u64) {
        self.stats().vmm_cost.record_ns(ns);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use devices::cxl::backing::Type3Backing;

    /// Two devices, 2-way at 256 B from 0x1000_0000.
    struct TwoWay;
    impl Decode for TwoWay {
        fn decode(&self, hpa: u64) -> Option<(usize, u64)> {
            let off = hpa.checked_sub(0x1000_0000)?;
            (off < 1 << 20).then_some((((off >> 8) & 1) as usize, (off >> 9 << 8) | (off & 255)))
        }
    }
    impl HpaDecode for TwoWay {
        fn current(&self) -> Arc<dyn Decode> {
            Arc::new(TwoWay)
        }
    }

    /// A guest clock stopped at one time.
    struct StoppedAt(u64);
    impl GuestClock for StoppedAt {
        fn now_ps(&self) -> u64 {
            self.0
        }
    }

    fn setup() -> (TimedMemory, Vec<Arc<Type3Backing>>) {
        setup_with_clock(Arc::new(crate::accel::clock::MachineClock::default()))
    }

    fn setup_with_clock(clock: Arc<dyn GuestClock>) -> (TimedMemory, Vec<Arc<Type3Backing>>) {
        let topo = fabric::Topology::default_topology();
        let backings: Vec<_> = (0..2)
            .map(|i| Arc::new(Type3Backing::new(&format!("t{i}"), 256 << 20, 0, None).unwrap()))
            .collect();
        let engine = Arc::new(Mutex::new(Engine::with_layout(&topo, 1, 0x1000_0000)));
        let tm = TimedMemory::new(
            vec![TimedWindow {
                id: "ram".into(),
                base: 0x1000_0000,
                size: 512 << 20,
            }],
            Arc::new(TwoWay),
            DeviceMedia::map_all(&backings).unwrap(),
            engine,
            clock,
        );
        (tm, backings)
    }

    #[test]
    fn bytes_go_to_the_decoded_device_and_cost_the_model_latency() {
        let (tm, backings) = setup();
        assert_eq!(tm.window_of(0x1000_0100), Some(0));
        assert_eq!(tm.window_of(0x0fff_ffff), None);
        // 8 bytes straddling the first granule boundary.
        let lat = tm.access(0, 0x1000_00fc, Access::Write(b"ABCDEFGH"), 0);
        let mut b = [0u8; 4];
        backings[0].read(0xfc, &mut b);
        assert_eq!(&b, b"ABCD");
        backings[1].read(0, &mut b);
        assert_eq!(&b, b"EFGH");
        // The default topology: one switch; a miss costs at least the idle
        // read latency of the path (~259 ns), far more than a hit.
        assert!(lat > 200_000, "store miss: {lat} ps");
        let mut r = [0u8; 8];
        let hit = tm.access(0, 0x1000_00fc, Access::Read(&mut r), lat + 1000);
        assert_eq!(&r, b"ABCDEFGH");
        assert!(hit < lat, "a re-read hits the cache model: {hit} vs {lat}");
        let s = tm.stats();
        assert_eq!(s.windows[0].accesses, 2);
        assert_eq!(s.windows[0].hits, 1);
    }

    #[test]
    fn without_a_virtual_clock_accesses_issue_at_the_machines_guest_time() {
        // The machine's clock, which the accelerators' DMA books on too.
        let (tm, _) = setup_with_clock(Arc::new(StoppedAt(7_000_000)));
        assert_eq!(tm.now_ps(), 7_000_000);
    }

    #[test]
    fn undecoded_bytes_read_as_ones_and_writes_vanish() {
        let (tm, backings) = setup();
        let past = 0x1000_0000 + (1 << 20);
        tm.access(0, past, Access::Write(&[1; 8]), 0);
        let mut r = [0u8; 8];
        tm.access(0, past, Access::Read(&mut r), 0);
        assert_eq!(r, [0xff; 8]);
        let mut d = [0u8; 8];
        backings[0].read(1 << 19, &mut d);
        assert_eq!(d, [0; 8]);
    }
}
