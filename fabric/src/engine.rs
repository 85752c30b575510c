//! The timing engine: given a transaction (source, target, size, read or
//! write, issue time) it returns the route and the completion time, charging
//! every link, switch, bridge and media the transaction meets, including the
//! queueing behind earlier transactions.
//!
//! Resources are first-come-first-served in the order [`Engine::request`] is
//! called; many transactions may be outstanding at once (a call does not wait
//! for earlier ones to complete). For faithful queueing, submit requests in
//! non-decreasing issue time; out-of-order submissions are still
//! deterministic. Nothing in the engine reads a clock or OS randomness: the
//! same topology, seed and call sequence give bit-identical results.

mod live;
mod mem_path;
mod stats;
mod walk;

pub use stats::{DeviceStats, DmaBytes, DmaStats, FabricStats, LinkStats, TimedStats};

use crate::cache::Cache;
use crate::decode::{AddressMap, DecodeError};
use crate::link::tlp::split;
use crate::link::LinkDir;
use crate::media::{Media, Memory, Server};
use crate::rng::SplitMix64;
use crate::route::{End, Graph, Hop, Route};
use crate::time::Picos;
use crate::topology::{Attach, ElementRef, Topology};
use mem_path::MemPath;
use walk::{first_io, Dir, FirstPiece, NoRecord, Recorder, Resources};

/// Read or write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    Read,
    Write,
}

/// Who sends a transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// A CPU, through the host bridge above the target.
    Host,
    /// An accelerator's DMA engine (index into `accelerators`).
    Accelerator(usize),
}

/// What a transaction addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Target {
    /// A host physical address in a CXL window, decoded by the model.
    Address(u64),
    /// A type-3 device's memory at a device physical address (already decoded).
    Type3 { device: usize, dpa: u64 },
    /// An accelerator's BAR memory (peer-to-peer or MMIO).
    Accelerator(usize),
    /// Host DRAM (a DMA to system memory).
    HostMemory,
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error("no such element: {0}")]
    NoSuchElement(String),
    #[error("no path from {0} to {1}")]
    NoPath(String, String),
    #[error("transfer size must be at least one byte")]
    ZeroBytes,
    #[error("an access of {bytes} bytes is larger than {max}")]
    TooLarge { bytes: u32, max: u32 },
}

/// Index of a route in [`Engine::route`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RouteId(pub u32);

/// The answer to a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Completion {
    pub route: RouteId,
    pub issue: Picos,
    /// When the initiator sees the transaction complete: the last read data
    /// arrives, or the write is acknowledged (CXL.mem NDR) or, for a posted
    /// PCIe write, lands in the target.
    pub complete: Picos,
}

impl Completion {
    pub fn latency(&self) -> Picos {
        self.complete.saturating_sub(self.issue)
    }
}

/// One line of the optional trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceEntry {
    pub source: Source,
    pub target: Target,
    pub bytes: u32,
    pub op: Op,
    pub issue: Picos,
    pub complete: Picos,
    pub route: RouteId,
}

/// Time a transaction's first piece left one hop (for latency breakdowns).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HopTime {
    pub hop: Hop,
    /// When the piece left this hop (arrived at the next).
    pub leave: Picos,
}

/// Counters for reporting.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub requests: u64,
    /// CXL.mem messages / TLPs sent over all links.
    pub messages: u64,
    pub flits: u64,
    pub replays: u64,
}

/// What travels on each link for one piece of a transaction.
#[derive(Clone, Copy)]
struct Piece {
    write: bool,
    /// Payload bytes of the piece (a 64 B line on CXL.mem routes).
    bytes: u32,
}

/// The fabric timing model.
#[derive(Debug, Clone)]
pub struct Engine {
    topo: Topology,
    graph: Graph,
    map: AddressMap,
    dirs: Vec<LinkDir>,
    media: Vec<Media>,
    bars: Vec<Memory>,
    host_mem: Memory,
    /// The root complex's P2P cap, one server per direction (`Stage::RcCap`).
    rc_cap: Option<[Server; 2]>,
    routes: Vec<Route>,
    /// Per route, its compiled form if it is a host → type-3 CXL.mem route
    /// (the hot path; see `mem_path`).
    mem_paths: Vec<Option<MemPath>>,
    /// Routes found so far, as a dense (source end, destination end) table
    /// (see [`Engine::end_slot`]): a lookup per request, no hashing. A
    /// source's row is allocated when it first sends, so an engine over
    /// a thousand devices does not start by zeroing a million entries
    /// (`cxlvmm check --json` builds one per device).
    index: Vec<Option<Box<[Option<RouteId>]>>>,
    /// Host → type-3 routes, the hot path.
    host_t3: Vec<RouteId>,
    /// Per route, its ends (to rebuild it when a parameter changes).
    route_ends: Vec<(End, End)>,
    trace: Option<Vec<TraceEntry>>,
    requests: u64,
    /// The host CPU cache in front of timed memory (see `timed`).
    pub(crate) cache: Cache,
    /// Per accelerator, DMA bytes by path class.
    dma: Vec<DmaBytes>,
    pub(crate) timed: TimedStats,
}

/// Default base of the first CXL window when the topology gives none (64 GiB).
pub const DEFAULT_WINDOW_BASE: u64 = 64 << 30;

impl Engine {
    /// Engine for `topo`, seeded from `[fabric] seed`, windows from 64 GiB.
    pub fn new(topo: &Topology) -> Engine {
        Self::with_seed(topo, topo.fabric.seed)
    }

    /// Engine with an explicit seed.
    pub fn with_seed(topo: &Topology, seed: u64) -> Engine {
        Self::with_layout(topo, seed, DEFAULT_WINDOW_BASE)
    }

    /// Engine with an explicit seed and the HPA where unplaced windows start
    /// (use the VMM's actual layout so that [`Target::Address`] decodes).
    pub fn with_layout(topo: &Topology, seed: u64, window_base: u64) -> Engine {
        let graph = Graph::new(topo);
        let mut dirs = Vec::with_capacity(graph.links.len() * 2);
        for (i, e) in graph.links.iter().enumerate() {
            let p = topo.link_of(*e).cloned().unwrap_or_default();
            let ends = port_ends(topo, *e);
            for d in 0..2u64 {
                dirs.push(LinkDir::new(
                    &p,
                    ends,
                    SplitMix64::stream(seed, i as u64 * 2 + d),
                ));
            }
        }
        let f = &topo.fabric;
        let mut engine = Engine {
            graph,
            map: AddressMap::new(topo, window_base),
            dirs,
            media: topo.type3.iter().map(|d| Media::new(&d.media)).collect(),
            bars: topo
                .accelerators
                .iter()
                .map(|a| Memory::new(a.bar_bandwidth_gbps, a.bar_latency_ns))
                .collect(),
            host_mem: Memory::new(f.host_memory_bandwidth_gbps, f.host_memory_latency_ns),
            rc_cap: f
                .rc_p2p_bandwidth_gbps
                .map(|gbps| [Server::new(gbps), Server::new(gbps)]),
            routes: Vec::new(),
            mem_paths: Vec::new(),
            index: vec![None; end_slots(topo)],
            host_t3: Vec::new(),
            route_ends: Vec::new(),
            trace: None,
            requests: 0,
            cache: Cache::new(&topo.cpu_cache),
            dma: vec![DmaBytes::default(); topo.accelerators.len()],
            timed: TimedStats::default(),
            topo: topo.clone(),
        };
        for d in 0..topo.type3.len() {
            let id = engine
                .route_for(End::Host, End::Element(ElementRef::Type3(d)))
                .unwrap_or(RouteId(0));
            engine.host_t3.push(id);
        }
        engine
    }

    /// The topology this engine models.
    pub fn topology(&self) -> &Topology {
        &self.topo
    }

    /// The address map (window placement and decode).
    pub fn address_map(&self) -> &AddressMap {
        &self.map
    }

    /// Start recording every request (for determinism checks and replays).
    pub fn enable_trace(&mut self) {
        self.trace.get_or_insert_with(Vec::new);
    }

    /// The recorded trace (empty unless enabled).
    pub fn trace(&self) -> &[TraceEntry] {
        self.trace.as_deref().unwrap_or(&[])
    }

    /// A route by id.
    pub fn route(&self, id: RouteId) -> &Route {
        &self.routes[id.0 as usize]
    }

    /// Counters so far.
    pub fn stats(&self) -> Stats {
        Stats {
            requests: self.requests,
            messages: self.dirs.iter().map(|d| d.messages).sum(),
            flits: self.dirs.iter().map(|d| d.flits()).sum(),
            replays: self.dirs.iter().map(|d| d.replays()).sum(),
        }
    }

    /// Index of a transaction end in the route table: the host, host
    /// memory, each type-3 device, each accelerator (nothing else can start
    /// or end a transaction).
    fn end_slot(&self, e: End) -> Option<usize> {
        let t3 = self.topo.type3.len();
        let slot = match e {
            End::Host => 0,
            End::HostMemory => 1,
            End::Element(ElementRef::Type3(d)) => 2 + d,
            End::Element(ElementRef::Accelerator(a)) => 2 + t3 + a,
            End::Element(_) => return None,
        };
        (slot < end_slots(&self.topo)).then_some(slot)
    }

    fn route_for(&mut self, src: End, dst: End) -> Option<RouteId> {
        let key = self.end_slot(src).zip(self.end_slot(dst));
        if let Some(id) = key.and_then(|(s, d)| self.index[s].as_ref()?[d]) {
            return Some(id);
        }
        let r = self.graph.route(&self.topo, src, dst)?;
        let id = RouteId(self.routes.len() as u32);
        self.mem_paths.push(MemPath::new(&r, &self.dirs));
        self.routes.push(r);
        self.route_ends.push((src, dst));
        if let Some((s, d)) = key {
            let slots = end_slots(&self.topo);
            self.index[s].get_or_insert_with(|| vec![None; slots].into_boxed_slice())[d] = Some(id);
        }
        Some(id)
    }

    /// Resolve source and target to a route (no time passes).
    pub fn resolve(&mut self, source: Source, target: Target) -> Result<RouteId, RequestError> {
        let dst = match target {
            Target::Address(hpa) => {
                let d = self.map.decode(hpa)?;
                if source == Source::Host {
                    return Ok(self.host_t3[d.device]);
                }
                End::Element(ElementRef::Type3(d.device))
            }
            Target::Type3 { device, .. } => {
                if device >= self.topo.type3.len() {
                    return Err(RequestError::NoSuchElement(format!("type3[{device}]")));
                }
                if source == Source::Host {
                    return Ok(self.host_t3[device]);
                }
                End::Element(ElementRef::Type3(device))
            }
            Target::Accelerator(a) => {
                if a >= self.topo.accelerators.len() {
                    return Err(RequestError::NoSuchElement(format!("accelerator[{a}]")));
                }
                End::Element(ElementRef::Accelerator(a))
            }
            Target::HostMemory => End::HostMemory,
        };
        let src = match source {
            Source::Host => End::Host,
            Source::Accelerator(a) => {
                if a >= self.topo.accelerators.len() {
                    return Err(RequestError::NoSuchElement(format!("accelerator[{a}]")));
                }
                End::Element(ElementRef::Accelerator(a))
            }
        };
        self.route_for(src, dst)
            .ok_or_else(|| RequestError::NoPath(format!("{source:?}"), format!("{target:?}")))
    }

    /// Simulate one transaction of `bytes` issued at `issue` (picoseconds).
    ///
    /// CXL.mem routes move whole 64 B lines (a partial line costs a line);
    /// PCIe routes split reads at the max read request size and return
    /// completions of at most the max payload size, and split writes into
    /// max-payload posted writes. All pieces are issued at `issue`.
    ///
    /// Inlined into the caller so that its hot case (a host access to one
    /// line of a CXL window over a compiled CXL.mem route) costs no calls.
    #[inline]
    pub fn request(
        &mut self,
        source: Source,
        target: Target,
        bytes: u32,
        op: Op,
        issue: Picos,
    ) -> Result<Completion, RequestError> {
        if source == Source::Host && bytes <= 64 && bytes > 0 && self.trace.is_none() {
            let device = match target {
                Target::Address(hpa) => self.map.decode(hpa).ok().map(|d| d.device),
                Target::Type3 { device, .. } => Some(device),
                _ => None,
            };
            if let Some(device) = device {
                if let Some(&rid) = self.host_t3.get(device) {
                    if let Some(Some(mp)) = self.mem_paths.get(rid.0 as usize) {
                        let complete =
                            mp.run(&mut self.dirs, &mut self.media, 1, op == Op::Write, issue);
                        self.requests += 1;
                        return Ok(Completion {
                            route: rid,
                            issue,
                            complete,
                        });
                    }
                }
            }
        }
        self.request_inner(source, target, bytes, op, issue, &mut NoRecord)
    }

    /// Like [`Engine::request`], also returning when the first piece left
    /// each hop, in route order.
    pub fn request_breakdown(
        &mut self,
        source: Source,
        target: Target,
        bytes: u32,
        op: Op,
        issue: Picos,
    ) -> Result<(Completion, Vec<HopTime>), RequestError> {
        let mut times = Vec::new();
        let mut rec = FirstPiece {
            out: &mut times,
            done: false,
        };
        let c = self.request_inner(source, target, bytes, op, issue, &mut rec)?;
        let route = &self.routes[c.route.0 as usize];
        let out = route
            .hops
            .iter()
            .zip(times)
            .map(|(h, t)| HopTime { hop: *h, leave: t })
            .collect();
        Ok((c, out))
    }

    #[inline(never)]
    fn request_inner(
        &mut self,
        source: Source,
        target: Target,
        bytes: u32,
        op: Op,
        issue: Picos,
        rec: &mut impl Recorder,
    ) -> Result<Completion, RequestError> {
        if bytes == 0 {
            return Err(RequestError::ZeroBytes);
        }
        let rid = self.resolve(source, target)?;
        let complete = self.simulate(rid, bytes, op, issue, rec);
        self.requests += 1;
        if let Source::Accelerator(a) = source {
            let class = self.routes[rid.0 as usize].class;
            if let Some(d) = self.dma.get_mut(a) {
                d.add(class, bytes);
            }
        }
        let c = Completion {
            route: rid,
            issue,
            complete,
        };
        if let Some(tr) = &mut self.trace {
            tr.push(TraceEntry {
                source,
                target,
                bytes,
                op,
                issue,
                complete,
                route: rid,
            });
        }
        Ok(c)
    }

    /// Move every piece of a transaction along route `rid`.
    #[inline]
    fn simulate<R: Recorder>(
        &mut self,
        rid: RouteId,
        bytes: u32,
        op: Op,
        issue: Picos,
        rec: &mut R,
    ) -> Picos {
        let write = op == Op::Write;
        if !R::RECORDS {
            if let Some(Some(mp)) = self.mem_paths.get(rid.0 as usize) {
                return mp.run(
                    &mut self.dirs,
                    &mut self.media,
                    bytes.div_ceil(64),
                    write,
                    issue,
                );
            }
        }
        let route = &self.routes[rid.0 as usize];
        let mut complete = issue;
        // Split-borrow the resources so the walk can read the route.
        let mut res = Resources {
            dirs: &mut self.dirs,
            media: &mut self.media,
            bars: &mut self.bars,
            host_mem: &mut self.host_mem,
            rc_cap: &mut self.rc_cap,
        };
        if route.mem {
            for _ in 0..bytes.div_ceil(64) {
                let p = Piece { write, bytes: 64 };
                let t = res.walk(&route.fwd, issue, p, Dir::Fwd, rec);
                let t = res.complete(route.completer, t, p, rec);
                let t = res.walk_back(&route.rev, t, p, rec);
                rec.first_done();
                complete = complete.max(t);
            }
        } else if write {
            let mps = first_io(route, res.dirs).map_or(256, |d| d.max_payload);
            let (n, last) = split(bytes, mps);
            for i in 0..n {
                let p = Piece {
                    write,
                    bytes: if i + 1 == n { last } else { mps },
                };
                let t = res.walk(&route.fwd, issue, p, Dir::Fwd, rec);
                let t = res.complete(route.completer, t, p, rec);
                rec.first_done();
                complete = complete.max(t);
            }
        } else {
            let (mrrs, mps) = first_io(route, res.dirs)
                .map_or((512, 256), |d| (d.max_read_request, d.max_payload));
            let (n, last) = split(bytes, mrrs);
            for i in 0..n {
                let req = if i + 1 == n { last } else { mrrs };
                let p = Piece { write, bytes: req };
                let t = res.walk(&route.fwd, issue, p, Dir::Fwd, rec);
                let t = res.complete(route.completer, t, p, rec);
                let (m, mlast) = split(req, mps);
                for j in 0..m {
                    let c = Piece {
                        write,
                        bytes: if j + 1 == m { mlast } else { mps },
                    };
                    let done = res.walk_back(&route.rev, t, c, rec);
                    rec.first_done();
                    complete = complete.max(done);
                }
            }
        }
        complete
    }

    /// Idle latency of one `bytes` transaction on a fresh copy of this
    /// engine (no queueing): what CDAT/HMAT report and what a single
    /// dependent access sees.
    pub fn idle_latency(
        &self,
        source: Source,
        target: Target,
        bytes: u32,
        op: Op,
    ) -> Result<Picos, RequestError> {
        let mut fresh = Engine::with_layout(&self.topo, 0, 0);
        fresh.map = self.map.clone();
        fresh
            .request(source, target, bytes, op, 0)
            .map(|c| c.latency())
    }
}

/// Rows (and columns) of the engine's route table.
fn end_slots(topo: &Topology) -> usize {
    2 + topo.type3.len() + topo.accelerators.len()
}

/// Ports of the link above `e` that are not switch ports.
pub(crate) fn port_ends(topo: &Topology, e: ElementRef) -> u32 {
    let upper = u32::from(matches!(topo.attach_of(e), Some(Attach::RootPort { .. })));
    let lower = u32::from(!matches!(e, ElementRef::Switch(_)));
    upper + lower
}
