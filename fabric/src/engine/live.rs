//! Changing timing parameters while requests flow (`ctl set`).
//!
//! The topology inside the engine is updated first (with the topology
//! file's checks, see [`crate::topology::Param`]), so CDAT/HMAT builders run
//! on [`Engine::topology`] see the new values; then only what the change
//! touched is rebuilt, continuing its schedule: a retuned link or media
//! stays busy as long as it was and keeps its counters. Route delays and
//! the compiled CXL.mem paths are rebuilt in place, so route ids stay
//! valid. The next request sees the new value; requests already answered
//! keep the times they were given.

use super::mem_path::MemPath;
use super::{port_ends, Engine};
use crate::cache::Cache;
use crate::media::Server;
use crate::route::Graph;
use crate::topology::{Changed, Param, ParamError, ParamValue};

impl Engine {
    /// Current value of parameter `key` of element (or table) `id`.
    pub fn param(&self, id: &str, key: &str) -> Result<ParamValue, ParamError> {
        self.topo.param(id, key)
    }

    /// Every settable parameter with its current value (for `ctl topology`).
    pub fn params(&self) -> Vec<Param> {
        self.topo.params()
    }

    /// Set parameter `key` of `id` to `value`, effective from the next
    /// request; returns the previous value. On an error nothing changes.
    pub fn set_param(
        &mut self,
        id: &str,
        key: &str,
        value: &ParamValue,
    ) -> Result<ParamValue, ParamError> {
        let old = self.topo.param(id, key)?;
        let changed = self.topo.set_param(id, key, value)?;
        self.apply(changed);
        Ok(old)
    }

    fn apply(&mut self, changed: Changed) {
        let f = &self.topo.fabric;
        match changed {
            Changed::Link(e) => {
                if let (Some(&link), Some(p)) = (self.graph.link_of.get(&e), self.topo.link_of(e)) {
                    let ends = port_ends(&self.topo, e);
                    for d in [2 * link, 2 * link + 1] {
                        self.dirs[d] = self.dirs[d].retuned(p, ends);
                    }
                }
                // The placement code a compiled path uses depends on its links.
                self.recompile();
            }
            Changed::Routes => self.rebuild_routes(),
            Changed::RcCap => {
                self.rc_cap = f.rc_p2p_bandwidth_gbps.map(|gbps| match &self.rc_cap {
                    Some(old) => old.each_ref().map(|s| s.retuned(gbps)),
                    None => [Server::new(gbps), Server::new(gbps)],
                });
                self.rebuild_routes();
            }
            Changed::Media(d) => {
                self.media[d] = self.media[d].retuned(&self.topo.type3[d].media);
            }
            Changed::Bar(a) => {
                let acc = &self.topo.accelerators[a];
                self.bars[a] = self.bars[a].retuned(acc.bar_bandwidth_gbps, acc.bar_latency_ns);
            }
            Changed::HostMemory => {
                self.host_mem = self
                    .host_mem
                    .retuned(f.host_memory_bandwidth_gbps, f.host_memory_latency_ns);
            }
            Changed::Cache { rebuild: false } => {
                self.cache
                    .set_hit_ps(crate::time::ns_to_ps(self.topo.cpu_cache.hit_latency_ns));
            }
            Changed::Cache { rebuild: true } => {
                // A new geometry starts cold; dirty lines' write-backs are
                // forgone (the backing holds the data), counters carry on.
                self.cache = Cache::rebuilt(&self.cache, &self.topo.cpu_cache);
            }
        }
    }

    /// Recompute every route's stages (fixed delays, cap stage) in place.
    fn rebuild_routes(&mut self) {
        self.graph = Graph::new(&self.topo);
        for (i, &(src, dst)) in self.route_ends.iter().enumerate() {
            if let Some(r) = self.graph.route(&self.topo, src, dst) {
                self.routes[i] = r;
            }
        }
        self.recompile();
    }

    fn recompile(&mut self) {
        self.mem_paths = self
            .routes
            .iter()
            .map(|r| MemPath::new(r, &self.dirs))
            .collect();
    }
}

#[cfg(test)]
mod tests {
    use crate::{Engine, Op, ParamValue, Source, Target, Topology};

    fn read_latency(e: &mut Engine, at: u64) -> u64 {
        let c = e
            .request(
                Source::Host,
                Target::Type3 { device: 0, dpa: 0 },
                64,
                Op::Read,
                at,
            )
            .unwrap();
        c.latency()
    }

    #[test]
    fn switch_latency_change_moves_idle_latency_by_the_change() {
        let topo = Topology::default_topology();
        let mut e = Engine::new(&topo);
        let before = read_latency(&mut e, 0);
        let old = e
            .set_param("sw0", "latency_ns", &ParamValue::Int(5090))
            .unwrap();
        assert_eq!(old, ParamValue::Float(90.0));
        let after = read_latency(&mut e, 1_000_000_000);
        assert_eq!(after - before, 5_000_000);
        // The engine's topology follows, so an idle query agrees.
        let idle = e
            .idle_latency(
                Source::Host,
                Target::Type3 { device: 0, dpa: 0 },
                64,
                Op::Read,
            )
            .unwrap();
        assert_eq!(idle, after);
    }

    #[test]
    fn link_and_media_changes_match_a_fresh_engine() {
        let topo = Topology::default_topology();
        let mut e = Engine::new(&topo);
        read_latency(&mut e, 0);
        e.set_param("mem0", "link.width", &ParamValue::Int(1))
            .unwrap();
        e.set_param("mem0", "media.read_latency_ns", &ParamValue::Int(2000))
            .unwrap();
        e.set_param("sw0", "link.flit", &ParamValue::Text("256B".into()))
            .unwrap();
        e.set_param("sw0", "link.gen", &ParamValue::Int(6)).unwrap();
        let live = read_latency(&mut e, 1_000_000_000);
        let mut fresh = Engine::new(e.topology());
        assert_eq!(live, read_latency(&mut fresh, 0));
        assert_eq!(e.topology().type3[0].link.width, 1);
        // The CDAT/HMAT view of the same topology agrees too.
        let perf = crate::hmat::path_performance(e.topology(), 0).unwrap();
        assert_eq!(perf.total.read_latency_ps, live);
    }

    #[test]
    fn a_retuned_link_keeps_its_queue() {
        let topo = Topology::default_topology();
        let mut e = Engine::new(&topo);
        // Fill the device link's wire with writes, then retune it: a read
        // issued at once still waits behind what is on the wire.
        for i in 0..64 {
            e.request(
                Source::Host,
                Target::Type3 {
                    device: 0,
                    dpa: i * 64,
                },
                64,
                Op::Write,
                0,
            )
            .unwrap();
        }
        e.set_param("mem0", "link.port_latency_ns", &ParamValue::Int(25))
            .unwrap();
        let queued = read_latency(&mut e, 0);
        let idle = e
            .idle_latency(
                Source::Host,
                Target::Type3 { device: 0, dpa: 0 },
                64,
                Op::Read,
            )
            .unwrap();
        assert!(queued > idle + 50_000, "{queued} vs idle {idle}");
        let s = e.stats();
        assert_eq!(s.requests, 65);
    }

    #[test]
    fn cache_parameters_apply() {
        let topo = Topology::default_topology();
        let mut e = Engine::new(&topo);
        e.set_param("cpu_cache", "hit_latency_ns", &ParamValue::Int(7))
            .unwrap();
        assert_eq!(e.cache.hit_ps(), 7000);
        e.set_param("cpu_cache", "line", &ParamValue::Int(128))
            .unwrap();
        assert_eq!(e.cache.line_bytes(), 128);
        e.set_param("cpu_cache", "enabled", &ParamValue::Bool(false))
            .unwrap();
        assert!(!e.cache.enabled());
        let err = e
            .set_param("cpu_cache", "size", &ParamValue::Int(1000))
            .unwrap_err();
        assert_eq!(err.field(), "value");
    }

    /// The root complex forwards each direction at the cap on its own:
    /// a read's requests do not queue behind its completions, and copies
    /// in opposite directions do not share the cap; copies in one
    /// direction do.
    #[test]
    fn rc_cap_is_per_direction() {
        let topo = Topology::from_toml_str(
            "[fabric]\nrc_p2p_bandwidth_gbps=1\n\
             [[host_bridge]]\nid='hb0'\nroot_ports=3\n\
             [[accelerator]]\nid='a'\nport='hb0.rp0'\nlink={gen=4,width=16,flit='none'}\n\
             [[accelerator]]\nid='b'\nport='hb0.rp1'\nlink={gen=4,width=16,flit='none'}\n\
             [[accelerator]]\nid='c'\nport='hb0.rp2'\nlink={gen=4,width=16,flit='none'}\n",
        )
        .unwrap();
        const MIB: u32 = 1 << 20;
        // 1 MiB at 1 GB/s; the links are 30x faster.
        let at_cap = 1_048_576_000u64;
        let copy = |e: &mut Engine, from, to, op, t| {
            e.request(
                Source::Accelerator(from),
                Target::Accelerator(to),
                MIB,
                op,
                t,
            )
            .unwrap()
            .latency()
        };
        let within = |ps: u64, x: f64| {
            let r = ps as f64 / at_cap as f64;
            assert!(
                (r - x).abs() < 0.05 * x,
                "{ps} ps is {r:.3} x the cap's time, not {x}"
            );
        };
        within(copy(&mut Engine::new(&topo), 0, 1, Op::Read, 0), 1.0);
        let mut e = Engine::new(&topo);
        within(copy(&mut e, 0, 1, Op::Write, 0), 1.0);
        within(copy(&mut e, 1, 0, Op::Write, 0), 1.0);
        within(copy(&mut e, 2, 1, Op::Write, 0), 2.0);
    }

    #[test]
    fn rc_cap_can_be_added_and_removed() {
        let topo = Topology::from_toml_str(
            "[[host_bridge]]\nid='hb0'\nroot_ports=2\n\
             [[accelerator]]\nid='a'\nport='hb0.rp0'\nlink={gen=4,width=16,flit='none'}\n\
             [[accelerator]]\nid='b'\nport='hb0.rp1'\nlink={gen=4,width=16,flit='none'}\n",
        )
        .unwrap();
        let mut e = Engine::new(&topo);
        let p2p = |e: &mut Engine, t| {
            e.request(
                Source::Accelerator(0),
                Target::Accelerator(1),
                1 << 20,
                Op::Write,
                t,
            )
            .unwrap()
            .latency()
        };
        let uncapped = p2p(&mut e, 0);
        e.set_param("fabric", "rc_p2p_bandwidth_gbps", &ParamValue::Int(1))
            .unwrap();
        let capped = p2p(&mut e, 10_000_000_000);
        assert!(capped > 30 * uncapped / 10, "{capped} vs {uncapped}");
        e.set_param("fabric", "rc_p2p_bandwidth_gbps", &ParamValue::Null)
            .unwrap();
        assert_eq!(p2p(&mut e, 100_000_000_000), uncapped);
    }
}
