//! Address decode: host physical address → (type-3 device, DPA).
//!
//! The root level follows the CFMWS: way = (offset / granularity) mod ways
//! picks the host bridge. Below a host bridge the model assumes the layout
//! Linux builds by default for a region over every matching device: the
//! devices under that host bridge (depth-first order) interleave at the same
//! granularity. The VMM, which knows the committed HDM decoders exactly, can
//! bypass this with [`crate::Target::Type3`].

use crate::topology::{Topology, Window};

/// A decoded address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decoded {
    /// Window index.
    pub window: usize,
    /// Type-3 device index.
    pub device: usize,
    /// Device physical address.
    pub dpa: u64,
}

/// Why an address did not decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("address {0:#x} is in no CXL window")]
    Unmapped(u64),
    #[error("window {window} way {way} has no device of the window's memory type")]
    NoDevice { window: usize, way: usize },
}

#[derive(Debug, Clone)]
struct WindowMap {
    base: u64,
    size: u64,
    gran_shift: u32,
    ways: Divisor,
    /// Per way: the devices below that host bridge, and the DPA base of the
    /// window's memory type (0 for ram, after the volatile part for pmem).
    devices: Vec<Vec<(usize, u64)>>,
    /// Per way: the number of those devices.
    per_way: Vec<Divisor>,
}

/// A divisor that divides power-of-two counts (the usual interleave ways)
/// by shifting: a hardware division is slow, and decode runs per request.
#[derive(Debug, Clone, Copy)]
struct Divisor {
    n: u64,
    /// log2(n) when n is a power of two.
    shift: Option<u32>,
}

impl Divisor {
    fn new(n: u64) -> Divisor {
        Divisor {
            n,
            shift: n.is_power_of_two().then(|| n.trailing_zeros()),
        }
    }

    /// (x mod n, x / n); n must not be 0.
    #[inline]
    fn split(self, x: u64) -> (u64, u64) {
        match self.shift {
            Some(s) => (x & (self.n - 1), x >> s),
            None => (x % self.n, x / self.n),
        }
    }
}

/// All windows of a topology placed at their bases.
#[derive(Debug, Clone)]
pub struct AddressMap {
    windows: Vec<WindowMap>,
}

impl AddressMap {
    /// Place windows: fixed bases as given, others back to back from `first_base`.
    pub fn new(t: &Topology, first_base: u64) -> AddressMap {
        let bases = t.window_bases(first_base);
        let windows = t
            .windows
            .iter()
            .zip(bases)
            .map(|(w, base)| {
                let devices: Vec<Vec<(usize, u64)>> =
                    w.targets.iter().map(|&hb| devices_for(t, w, hb)).collect();
                WindowMap {
                    base,
                    size: w.size,
                    gran_shift: w.granularity.trailing_zeros(),
                    ways: Divisor::new(w.ways as u64),
                    per_way: devices
                        .iter()
                        .map(|d| Divisor::new(d.len() as u64))
                        .collect(),
                    devices,
                }
            })
            .collect();
        AddressMap { windows }
    }

    /// Base HPA of window `i`.
    pub fn window_base(&self, i: usize) -> Option<u64> {
        self.windows.get(i).map(|w| w.base)
    }

    #[inline]
    pub fn decode(&self, hpa: u64) -> Result<Decoded, DecodeError> {
        for (wi, w) in self.windows.iter().enumerate() {
            let off = hpa.wrapping_sub(w.base);
            if off >= w.size {
                continue;
            }
            let chunk = off >> w.gran_shift;
            let within = off & ((1u64 << w.gran_shift) - 1);
            let (way, row) = w.ways.split(chunk);
            let devs = &w.devices[way as usize];
            if devs.is_empty() {
                return Err(DecodeError::NoDevice {
                    window: wi,
                    way: way as usize,
                });
            }
            let (pick, line) = w.per_way[way as usize].split(row);
            let (device, dpa_base) = devs[pick as usize];
            return Ok(Decoded {
                window: wi,
                device,
                dpa: dpa_base + (line << w.gran_shift) + within,
            });
        }
        Err(DecodeError::Unmapped(hpa))
    }
}

fn devices_for(t: &Topology, w: &Window, hb: usize) -> Vec<(usize, u64)> {
    t.type3_under(hb)
        .into_iter()
        .filter_map(|d| {
            let dev = &t.type3[d];
            if w.restrictions.ram && dev.volatile > 0 {
                Some((d, 0))
            } else if w.restrictions.pmem && dev.persistent > 0 {
                Some((d, dev.volatile))
            } else {
                None
            }
        })
        .collect()
}
