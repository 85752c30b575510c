//! Statistics for reports (`--stats`, `ctl stats`): per link and direction,
//! per type-3 device, per accelerator's DMA, the CPU cache model and the
//! timed front end. Counters are exact integers since the engine was built;
//! [`FabricStats::since`] gives the difference over an interval.

use serde::Serialize;

use super::Engine;
use crate::cache::CacheStats;
use crate::route::PathClass;
use crate::time::Picos;

/// One direction of one link.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LinkStats {
    /// The element whose upstream link this is.
    pub id: String,
    /// `down` (away from the host bridge, M2S) or `up`.
    pub direction: &'static str,
    /// Current parameters, e.g. `gen5 x8 68B`.
    pub link: String,
    /// Payload bytes (64 per CXL.mem data message, TLP payloads).
    pub bytes: u64,
    pub flits: u64,
    /// CXL.mem messages or TLPs.
    pub messages: u64,
    pub replays: u64,
    /// Wire time spent sending (flits x flit time, or TLP/DLLP bytes).
    pub busy_ps: u64,
    /// `busy_ps` over the report's span.
    pub utilisation: f64,
    /// Waits between a message reaching the link and its first flit
    /// starting (credits and wire): sum, mean and largest.
    pub queue_total_ps: u64,
    pub queue_mean_ns: f64,
    pub queue_max_ps: u64,
}

/// One type-3 device's media.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeviceStats {
    pub id: String,
    pub reads: u64,
    pub writes: u64,
    pub read_bytes: u64,
    pub write_bytes: u64,
}

/// Bytes an accelerator's DMA moved, by path class.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct DmaBytes {
    /// Its own BAR memory.
    pub local: u64,
    /// Peer to peer inside switches (PIX/PXB).
    pub switch_local: u64,
    /// Peer to peer through its host bridge's root complex (PHB).
    pub same_host_bridge: u64,
    /// Peer to peer across host bridges.
    pub cross_host_bridge: u64,
    /// Host memory or CXL memory through the host bridge.
    pub device_to_host: u64,
}

impl DmaBytes {
    pub(crate) fn add(&mut self, class: PathClass, bytes: u32) {
        let b = u64::from(bytes);
        match class {
            PathClass::Local => self.local += b,
            PathClass::SwitchLocal { .. } => self.switch_local += b,
            PathClass::SameHostBridge => self.same_host_bridge += b,
            PathClass::CrossHostBridge => self.cross_host_bridge += b,
            PathClass::DeviceToHost | PathClass::HostToDevice => self.device_to_host += b,
        }
    }

    fn minus(&self, o: &DmaBytes) -> DmaBytes {
        DmaBytes {
            local: self.local.saturating_sub(o.local),
            switch_local: self.switch_local.saturating_sub(o.switch_local),
            same_host_bridge: self.same_host_bridge.saturating_sub(o.same_host_bridge),
            cross_host_bridge: self.cross_host_bridge.saturating_sub(o.cross_host_bridge),
            device_to_host: self.device_to_host.saturating_sub(o.device_to_host),
        }
    }
}

/// One accelerator's DMA.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DmaStats {
    pub id: String,
    pub bytes: DmaBytes,
}

/// What the timed front end ([`Engine::timed_access`]) did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct TimedStats {
    /// Guest accesses served.
    pub accesses: u64,
    /// Accesses whose every line hit the cache.
    pub hits: u64,
    /// Line fills (MemRd, loads and read-for-ownership).
    pub fills: u64,
    /// Dirty lines written back (MemWr, posted).
    pub writebacks: u64,
    /// Accesses with the cache off: one MemRd or MemWr per 64 B touched.
    pub uncached: u64,
    /// Write-backs of lines whose address no longer decodes (the region
    /// was torn down): dropped, the data is in the backing already.
    pub dropped_writebacks: u64,
}

impl TimedStats {
    fn minus(&self, o: &TimedStats) -> TimedStats {
        TimedStats {
            accesses: self.accesses.saturating_sub(o.accesses),
            hits: self.hits.saturating_sub(o.hits),
            fills: self.fills.saturating_sub(o.fills),
            writebacks: self.writebacks.saturating_sub(o.writebacks),
            uncached: self.uncached.saturating_sub(o.uncached),
            dropped_writebacks: self.dropped_writebacks.saturating_sub(o.dropped_writebacks),
        }
    }
}

/// Everything the engine counts.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FabricStats {
    /// The span utilisations are computed over, in picoseconds.
    pub span_ps: Picos,
    /// Engine requests (every fabric transaction, timed or DMA).
    pub requests: u64,
    pub links: Vec<LinkStats>,
    pub devices: Vec<DeviceStats>,
    pub accelerators: Vec<DmaStats>,
    pub cpu_cache: CacheStats,
    pub cpu_cache_hit_rate: f64,
    pub timed: TimedStats,
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

impl FabricStats {
    /// The counts between `earlier` (a report of the same engine) and this
    /// one, utilisations over that interval. Largest queueing delays are
    /// kept as they are (since the start). Counters never go below zero
    /// (an `earlier` from another engine gives zeros, not a panic).
    pub fn since(&self, earlier: &FabricStats) -> FabricStats {
        let span = self.span_ps.saturating_sub(earlier.span_ps);
        let links = self
            .links
            .iter()
            .zip(&earlier.links)
            .map(|(l, e)| {
                let messages = l.messages.saturating_sub(e.messages);
                let queue = l.queue_total_ps.saturating_sub(e.queue_total_ps);
                let busy = l.busy_ps.saturating_sub(e.busy_ps);
                LinkStats {
                    bytes: l.bytes.saturating_sub(e.bytes),
                    flits: l.flits.saturating_sub(e.flits),
                    messages,
                    replays: l.replays.saturating_sub(e.replays),
                    busy_ps: busy,
                    utilisation: ratio(busy, span),
                    queue_total_ps: queue,
                    queue_mean_ns: ratio(queue, messages) / 1000.0,
                    ..l.clone()
                }
            })
            .collect();
        let devices = self
            .devices
            .iter()
            .zip(&earlier.devices)
            .map(|(d, e)| DeviceStats {
                id: d.id.clone(),
                reads: d.reads.saturating_sub(e.reads),
                writes: d.writes.saturating_sub(e.writes),
                read_bytes: d.read_bytes.saturating_sub(e.read_bytes),
                write_bytes: d.write_bytes.saturating_sub(e.write_bytes),
            })
            .collect();
        let accelerators = self
            .accelerators
            .iter()
            .zip(&earlier.accelerators)
            .map(|(a, e)| DmaStats {
                id: a.id.clone(),
                bytes: a.bytes.minus(&e.bytes),
            })
            .collect();
        let cpu_cache = CacheStats {
            hits: self.cpu_cache.hits.saturating_sub(earlier.cpu_cache.hits),
            misses: self
                .cpu_cache
                .misses
                .saturating_sub(earlier.cpu_cache.misses),
            writebacks: self
                .cpu_cache
                .writebacks
                .saturating_sub(earlier.cpu_cache.writebacks),
        };
        FabricStats {
            span_ps: span,
            requests: self.requests.saturating_sub(earlier.requests),
            links,
            devices,
            accelerators,
            cpu_cache,
            cpu_cache_hit_rate: cpu_cache.hit_rate(),
            timed: self.timed.minus(&earlier.timed),
        }
    }
}

impl Engine {
    /// Every counter, with utilisations over guest time 0 .. `now`.
    pub fn fabric_stats(&self, now: Picos) -> FabricStats {
        let mut links = Vec::with_capacity(self.dirs.len());
        for (i, e) in self.graph.links.iter().enumerate() {
            let params = self
                .topo
                .link_of(*e)
                .map(|p| p.to_string())
                .unwrap_or_default();
            for (d, direction) in [(2 * i, "down"), (2 * i + 1, "up")] {
                let ld = &self.dirs[d];
                let busy = ld.busy_ps();
                links.push(LinkStats {
                    id: self.topo.id_of(*e).to_string(),
                    direction,
                    link: params.clone(),
                    bytes: ld.bytes,
                    flits: ld.flits(),
                    messages: ld.messages,
                    replays: ld.replays(),
                    busy_ps: busy,
                    utilisation: ratio(busy, now),
                    queue_total_ps: ld.queue_ps,
                    queue_mean_ns: ratio(ld.queue_ps, ld.messages) / 1000.0,
                    queue_max_ps: ld.queue_max_ps,
                });
            }
        }
        let devices = self
            .media
            .iter()
            .zip(&self.topo.type3)
            .map(|(m, d)| DeviceStats {
                id: d.id.clone(),
                reads: m.reads,
                writes: m.writes,
                read_bytes: m.read_bytes,
                write_bytes: m.write_bytes,
            })
            .collect();
        let accelerators = self
            .dma
            .iter()
            .zip(&self.topo.accelerators)
            .map(|(b, a)| DmaStats {
                id: a.id.clone(),
                bytes: *b,
            })
            .collect();
        let cache = self.cache.stats();
        FabricStats {
            span_ps: now,
            requests: self.requests,
            links,
            devices,
            accelerators,
            cpu_cache: cache,
            cpu_cache_hit_rate: cache.hit_rate(),
            timed: self.timed,
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::{Engine, Op, Source, Target, Topology};

    #[test]
    fn counts_bytes_flits_and_busy_time_per_direction() {
        let topo = Topology::default_topology();
        let mut e = Engine::new(&topo);
        let t = Target::Type3 { device: 1, dpa: 0 };
        e.request(Source::Host, t, 64, Op::Read, 0).unwrap();
        e.request(Source::Host, t, 64, Op::Write, 1_000_000)
            .unwrap();
        let s = e.fabric_stats(2_000_000);
        let link = |id: &str, dir: &str| {
            s.links
                .iter()
                .find(|l| l.id == id && l.direction == dir)
                .unwrap()
                .clone()
        };
        // Down: Req (no data) + RwD (64 B); up: DRS (64 B) + NDR.
        for id in ["sw0", "mem1"] {
            let (down, up) = (link(id, "down"), link(id, "up"));
            assert_eq!((down.messages, down.bytes), (2, 64));
            assert_eq!((up.messages, up.bytes), (2, 64));
            // 68B: Req 1 flit, RwD 2 (header + 4 data slots); DRS 2, NDR 1.
            assert_eq!(down.flits, 3);
            assert_eq!(up.flits, 3);
            // x8 Gen5: 68 B / (32 GT/s x 8 x 128/130 / 8) = 2.158 ns a flit.
            assert_eq!(down.busy_ps, 3 * 2158);
            assert!((down.utilisation - 3.0 * 2158.0 / 2e6).abs() < 1e-12);
            assert_eq!(down.queue_total_ps, 0, "idle link");
        }
        assert_eq!(link("mem0", "down").messages, 0);
        assert_eq!(s.devices[1].reads, 1);
        assert_eq!(s.devices[1].writes, 1);
        assert_eq!(s.devices[1].read_bytes, 64);
        assert_eq!(s.devices[0].reads, 0);
        let json = serde_json::to_string(&s).unwrap();
        assert!(
            json.contains(r#""id":"mem1","direction":"up","link":"gen5 x8 68B""#),
            "{json}"
        );
    }

    #[test]
    fn queueing_is_counted_and_intervals_subtract() {
        let topo = Topology::default_topology();
        let mut e = Engine::new(&topo);
        let first = e.fabric_stats(0);
        for i in 0..32 {
            let t = Target::Type3 {
                device: 0,
                dpa: i * 64,
            };
            e.request(Source::Host, t, 64, Op::Write, 0).unwrap();
        }
        let s = e.fabric_stats(1_000_000);
        let down = s
            .links
            .iter()
            .find(|l| l.id == "sw0" && l.direction == "down")
            .unwrap();
        // 32 writes of 1.25 flits each issued together: the last waits for
        // the 31 before it.
        assert!(down.queue_max_ps >= 30 * 2158, "{}", down.queue_max_ps);
        assert!(down.queue_total_ps > down.queue_max_ps);
        let d = s.since(&first);
        assert_eq!(d.requests, 32);
        assert_eq!(d.links, s.links);
        let again = e.fabric_stats(2_000_000).since(&s);
        assert_eq!(again.requests, 0);
        assert!(again
            .links
            .iter()
            .all(|l| l.bytes == 0 && l.utilisation == 0.0));
    }

    #[test]
    fn dma_bytes_by_path_class() {
        let topo = Topology::from_toml_str(
            "[[host_bridge]]\nid='hb0'\n[[switch]]\nid='sw0'\nport='hb0.rp0'\n\
             [[accelerator]]\nid='a'\nport='sw0.dp0'\n[[accelerator]]\nid='b'\nport='sw0.dp1'\n",
        )
        .unwrap();
        let mut e = Engine::new(&topo);
        e.request(
            Source::Accelerator(0),
            Target::Accelerator(1),
            4096,
            Op::Write,
            0,
        )
        .unwrap();
        e.request(
            Source::Accelerator(0),
            Target::HostMemory,
            1000,
            Op::Read,
            0,
        )
        .unwrap();
        let s = e.fabric_stats(1);
        assert_eq!(s.accelerators[0].bytes.switch_local, 4096);
        assert_eq!(s.accelerators[0].bytes.device_to_host, 1000);
        assert_eq!(s.accelerators[1].bytes, Default::default());
    }
}
