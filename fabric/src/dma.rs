//! An accelerator's DMA engine as the fabric sees it: how one transfer is
//! cut into requests and when they are issued (`docs/accelerator.md` §6).
//! The device model moves the bytes; this module books the same transfer on
//! the [`Engine`] and says when it completes, so `cxlvmm check` and the
//! device report one model.
//!
//! A transfer moves in [`CHUNK`]-byte chunks, cut further wherever a source
//! or destination range continues in another target (an interleave granule,
//! the end of a region). Every chunk's read is issued when the transfer
//! starts (the engine keeps any number of reads outstanding); each chunk's
//! write is issued when its read data has arrived. Requests reach the engine
//! in issue-time order, which keeps its first-come-first-served queueing
//! faithful. The engine itself splits each request into TLPs (max read
//! request, max payload) or 64 B CXL.mem lines.

use crate::engine::{Engine, Op, RequestError, Source, Target};
use crate::route::PathClass;
use crate::time::Picos;
use crate::topology::Topology;

/// Largest piece one DMA request carries: a page, the unit of a DMA
/// engine's scatter lists.
pub const CHUNK: u64 = 4096;

/// A contiguous piece of a transfer's source or destination that lies in
/// one target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// Where the span starts.
    pub target: Target,
    pub len: u64,
}

/// `target` advanced by `by` bytes (targets without an address stay as they are).
fn advance(target: Target, by: u64) -> Target {
    match target {
        Target::Address(a) => Target::Address(a.wrapping_add(by)),
        Target::Type3 { device, dpa } => Target::Type3 {
            device,
            dpa: dpa.wrapping_add(by),
        },
        other => other,
    }
}

/// Walks a list of spans chunk by chunk.
struct Cursor<'a> {
    spans: &'a [Span],
    index: usize,
    offset: u64,
}

impl<'a> Cursor<'a> {
    fn new(spans: &'a [Span]) -> Self {
        let mut c = Cursor {
            spans,
            index: 0,
            offset: 0,
        };
        c.skip_empty();
        c
    }

    fn skip_empty(&mut self) {
        while self.index < self.spans.len() && self.offset >= self.spans[self.index].len {
            self.index += 1;
            self.offset = 0;
        }
    }

    /// Bytes left in the current span (0 at the end).
    fn left(&self) -> u64 {
        self.spans
            .get(self.index)
            .map_or(0, |s| s.len - self.offset)
    }

    fn target(&self) -> Option<Target> {
        self.spans
            .get(self.index)
            .map(|s| advance(s.target, self.offset))
    }

    fn take(&mut self, n: u64) {
        self.offset += n;
        self.skip_empty();
    }
}

/// The chunks of a one-sided transfer.
fn chunks(spans: &[Span]) -> impl Iterator<Item = (Target, u32)> + '_ {
    let mut c = Cursor::new(spans);
    std::iter::from_fn(move || {
        let t = c.target()?;
        let n = c.left().min(CHUNK);
        c.take(n);
        Some((t, n as u32))
    })
}

/// Read `src` into the accelerator `initiator`: every chunk issued at
/// `start`. Returns when the last data arrives (`start` if nothing to read).
pub fn read(
    engine: &mut Engine,
    initiator: usize,
    src: &[Span],
    start: Picos,
) -> Result<Picos, RequestError> {
    let mut done = start;
    for (t, n) in chunks(src) {
        let c = engine.request(Source::Accelerator(initiator), t, n, Op::Read, start)?;
        done = done.max(c.complete);
    }
    Ok(done)
}

/// Write `dst` from the accelerator `initiator`: every chunk issued at
/// `start`. Returns when the last write has landed (posted) or completed.
pub fn write(
    engine: &mut Engine,
    initiator: usize,
    dst: &[Span],
    start: Picos,
) -> Result<Picos, RequestError> {
    let mut done = start;
    for (t, n) in chunks(dst) {
        let c = engine.request(Source::Accelerator(initiator), t, n, Op::Write, start)?;
        done = done.max(c.complete);
    }
    Ok(done)
}

/// Copy `src` to `dst` (equal total lengths) by the accelerator
/// `initiator`, starting at `start`. Returns when the last write is done.
pub fn copy(
    engine: &mut Engine,
    initiator: usize,
    src: &[Span],
    dst: &[Span],
    start: Picos,
) -> Result<Picos, RequestError> {
    let me = Source::Accelerator(initiator);
    let (mut s, mut d) = (Cursor::new(src), Cursor::new(dst));
    // (time the data is in, destination, bytes), in chunk order.
    let mut pending: Vec<(Picos, Target, u32)> = Vec::new();
    while let (Some(st), Some(dt)) = (s.target(), d.target()) {
        let n = s.left().min(d.left()).min(CHUNK);
        let c = engine.request(me, st, n as u32, Op::Read, start)?;
        pending.push((c.complete, dt, n as u32));
        s.take(n);
        d.take(n);
    }
    // Writes in the order their data arrives (stable: chunk order on ties).
    pending.sort_by_key(|p| p.0);
    let mut done = start;
    for (at, t, n) in pending {
        let c = engine.request(me, t, n, Op::Write, at)?;
        done = done.max(c.complete);
    }
    Ok(done)
}

/// The other end of an accelerator's DMA, for [`path_table`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    HostMemory,
    Accelerator(usize),
    Type3(usize),
}

impl Peer {
    /// The target a transfer to or from this peer addresses (a type-3
    /// device at DPA 0).
    pub fn target(self) -> Target {
        match self {
            Peer::HostMemory => Target::HostMemory,
            Peer::Accelerator(a) => Target::Accelerator(a),
            Peer::Type3(d) => Target::Type3 { device: d, dpa: 0 },
        }
    }
}

/// The model's figures for one accelerator and one peer, each on an idle
/// fabric.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PathPerf {
    pub accelerator: usize,
    pub peer: Peer,
    pub class: PathClass,
    /// A [`SMALL`]-byte COPY from the peer into the accelerator's VRAM.
    pub small_read_ps: Picos,
    /// A [`SMALL`]-byte COPY from the accelerator's VRAM to the peer.
    pub small_write_ps: Picos,
    /// A [`LARGE`]-byte COPY from the peer into VRAM, GB/s (10^9 B/s).
    pub read_gbps: f64,
    /// A [`LARGE`]-byte COPY from VRAM to the peer, GB/s.
    pub write_gbps: f64,
}

/// Transfer size of the latency figures.
pub const SMALL: u64 = 64;
/// Transfer size of the bandwidth figures.
pub const LARGE: u64 = 4 << 20;

/// Time of one COPY of `len` bytes on a fresh engine.
fn copy_time(topo: &Topology, a: usize, src: Target, dst: Target, len: u64) -> Option<Picos> {
    let mut e = Engine::new(topo);
    copy(
        &mut e,
        a,
        &[Span { target: src, len }],
        &[Span { target: dst, len }],
        0,
    )
    .ok()
}

/// Per accelerator, per DMA peer (host memory, every other accelerator,
/// every type-3 device): path class, small-transfer latency and large-transfer
/// bandwidth in both directions. Pairs without a route are left out.
pub fn path_table(topo: &Topology) -> Vec<PathPerf> {
    let mut out = Vec::new();
    for a in 0..topo.accelerators.len() {
        let own = Target::Accelerator(a);
        let peers = std::iter::once(Peer::HostMemory)
            .chain(
                (0..topo.accelerators.len())
                    .filter(|&b| b != a)
                    .map(Peer::Accelerator),
            )
            .chain((0..topo.type3.len()).map(Peer::Type3));
        for peer in peers {
            let t = peer.target();
            let mut e = Engine::new(topo);
            let Ok(rid) = e.resolve(Source::Accelerator(a), t) else {
                continue;
            };
            let class = e.route(rid).class;
            let gbps = |ps: Picos| LARGE as f64 / (ps.max(1) as f64 * 1e-12) / 1e9;
            let figures = (|| {
                Some(PathPerf {
                    accelerator: a,
                    peer,
                    class,
                    small_read_ps: copy_time(topo, a, t, own, SMALL)?,
                    small_write_ps: copy_time(topo, a, own, t, SMALL)?,
                    read_gbps: gbps(copy_time(topo, a, t, own, LARGE)?),
                    write_gbps: gbps(copy_time(topo, a, own, t, LARGE)?),
                })
            })();
            out.extend(figures);
        }
    }
    out
}

/// How `cxlvmm check` names a path class.
pub fn class_name(class: PathClass) -> String {
    match class {
        PathClass::Local => "local".into(),
        PathClass::SwitchLocal { switches: 1 } => "switch-local".into(),
        PathClass::SwitchLocal { switches } => format!("switch-local ({switches} switches)"),
        PathClass::SameHostBridge => "root complex".into(),
        PathClass::CrossHostBridge => "root complex (across host bridges)".into(),
        PathClass::HostToDevice | PathClass::DeviceToHost => "host bridge".into(),
    }
}

/// Id of a peer in `topo`.
pub fn peer_name(topo: &Topology, peer: Peer) -> String {
    match peer {
        Peer::HostMemory => "host memory".into(),
        Peer::Accelerator(b) => topo.accelerators[b].id.clone(),
        Peer::Type3(d) => topo.type3[d].id.clone(),
    }
}

/// The table as `cxlvmm check` prints it (empty without accelerators).
pub fn describe(topo: &Topology, table: &[PathPerf]) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    if table.is_empty() {
        return s;
    }
    let _ = writeln!(
        s,
        "accelerator DMA paths (idle model: {SMALL} B COPY latency, {} MiB COPY bandwidth; in = peer -> VRAM, out = VRAM -> peer):",
        LARGE >> 20
    );
    for p in table {
        let _ = writeln!(
            s,
            "  {} <-> {}: {}, in {:.1} ns {:.2} GB/s, out {:.1} ns {:.2} GB/s",
            topo.accelerators[p.accelerator].id,
            peer_name(topo, p.peer),
            class_name(p.class),
            p.small_read_ps as f64 / 1e3,
            p.read_gbps,
            p.small_write_ps as f64 / 1e3,
            p.write_gbps,
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOPO: &str = r#"
[[host_bridge]]
id = "hb0"
root_ports = 2
[[switch]]
id = "sw0"
port = "hb0.rp0"
downstream_ports = 3
[[accelerator]]
id = "a0"
port = "sw0.dp0"
link = { gen = 4, width = 16, flit = "none" }
[[accelerator]]
id = "a1"
port = "sw0.dp1"
link = { gen = 4, width = 16, flit = "none" }
[[accelerator]]
id = "a2"
port = "hb0.rp1"
link = { gen = 4, width = 16, flit = "none" }
[[type3]]
id = "m0"
port = "sw0.dp2"
volatile = "256M"
[[window]]
targets = ["hb0"]
size = "256M"
"#;

    fn topo() -> Topology {
        Topology::from_toml_str(TOPO).unwrap()
    }

    #[test]
    fn chunks_follow_spans_and_advance_addresses() {
        let spans = [
            Span {
                target: Target::Address(0x1000),
                len: 5000,
            },
            Span {
                target: Target::HostMemory,
                len: 10,
            },
            Span {
                target: Target::HostMemory,
                len: 0,
            },
        ];
        let got: Vec<_> = chunks(&spans).collect();
        assert_eq!(
            got,
            vec![
                (Target::Address(0x1000), 4096),
                (Target::Address(0x2000), 904),
                (Target::HostMemory, 10)
            ]
        );
    }

    #[test]
    fn copy_is_split_into_tlps_by_the_engine() {
        // a2 sits alone on a root port: one link. A 4 KiB copy from host
        // memory into its VRAM reads 8 requests of 512 B (max read request)
        // answered by 16 completions of 256 B (max payload); the write into
        // its own VRAM crosses no link. The reverse copy posts 16 writes.
        let t = topo();
        let mut e = Engine::new(&t);
        let host = [Span {
            target: Target::HostMemory,
            len: 4096,
        }];
        let vram = [Span {
            target: Target::Accelerator(2),
            len: 4096,
        }];
        copy(&mut e, 2, &host, &vram, 0).unwrap();
        assert_eq!(e.stats().messages, 8 + 16);
        let mut e = Engine::new(&t);
        copy(&mut e, 2, &vram, &host, 0).unwrap();
        assert_eq!(e.stats().messages, 16);
    }

    #[test]
    fn copy_time_is_read_then_write_and_grows_with_size() {
        let t = topo();
        let small = copy_time(&t, 2, Target::HostMemory, Target::Accelerator(2), 64).unwrap();
        let e = Engine::new(&t);
        let read = e
            .idle_latency(Source::Accelerator(2), Target::HostMemory, 64, Op::Read)
            .unwrap();
        let write = e
            .idle_latency(
                Source::Accelerator(2),
                Target::Accelerator(2),
                64,
                Op::Write,
            )
            .unwrap();
        assert_eq!(small, read + write);
        let big = copy_time(&t, 2, Target::HostMemory, Target::Accelerator(2), 1 << 20).unwrap();
        assert!(big > 100 * small);
    }

    #[test]
    fn an_idle_link_owes_nothing_to_the_next_transfer() {
        // 1 MiB of posted writes from a1 into the CXL device leaves the
        // acknowledgements (DLLPs) they are owed on a1's link towards a1;
        // posted writes send no completions back to carry them. A
        // millisecond later that direction has long been idle: a small
        // peer copy a0 -> a1 must cost what it costs on idle links.
        let t = topo();
        let mut e = Engine::new(&t);
        let cxl = [Span {
            target: Target::Type3 { device: 0, dpa: 0 },
            len: 1 << 20,
        }];
        let busy_until = write(&mut e, 1, &cxl, 0).unwrap();
        let later = busy_until + 1_000_000_000;
        let (src, dst) = (
            [Span {
                target: Target::Accelerator(0),
                len: 64,
            }],
            [Span {
                target: Target::Accelerator(1),
                len: 64,
            }],
        );
        let took = copy(&mut e, 0, &src, &dst, later).unwrap() - later;
        let idle = copy_time(&t, 0, Target::Accelerator(0), Target::Accelerator(1), 64).unwrap();
        assert_eq!(took, idle);
    }

    #[test]
    fn a_posted_write_reports_a_time_for_every_hop_of_its_route() {
        // The write's route comes back to the accelerator (posted: no
        // completion crosses the return links); each hop still gets a time,
        // so the times stay with their hops, as for a read.
        let t = topo();
        let mut e = Engine::new(&t);
        let tg = Target::Type3 { device: 0, dpa: 0 };
        let me = Source::Accelerator(1);
        let (_, read) = e.request_breakdown(me, tg, 64, Op::Read, 0).unwrap();
        let (_, write) = e.request_breakdown(me, tg, 64, Op::Write, 0).unwrap();
        let hops = |h: &[crate::engine::HopTime]| h.iter().map(|x| x.hop).collect::<Vec<_>>();
        assert_eq!(hops(&write), hops(&read));
        assert!(write.windows(2).all(|w| w[0].leave <= w[1].leave));
    }

    #[test]
    fn large_copies_reach_the_link_bound() {
        // Gen4 x16 non-flit posted writes: 256 B payload per 280 B TLP.
        let t = topo();
        let bound = 16e9 * 16.0 / 8.0 * 128.0 / 130.0 * 256.0 / 280.0 / 1e9;
        let p = path_table(&t);
        let host = p
            .iter()
            .find(|p| p.accelerator == 2 && p.peer == Peer::HostMemory)
            .unwrap();
        assert!(
            host.write_gbps <= bound && host.write_gbps > 0.98 * bound,
            "{} vs {bound}",
            host.write_gbps
        );
    }

    #[test]
    fn large_reads_keep_many_requests_outstanding() {
        // Gen4 x16 non-flit completions: 256 B payload per 256 + 12 + 8 B,
        // less the DLLPs the requests' acknowledgements put on the same
        // direction (8 B per 4 read requests of 512 B: under 0.1 %).
        let t = topo();
        let bound = 16e9 * 16.0 / 8.0 * 128.0 / 130.0 * 256.0 / 276.0 / 1e9;
        let p = path_table(&t);
        let host = p
            .iter()
            .find(|p| p.accelerator == 2 && p.peer == Peer::HostMemory)
            .unwrap();
        assert!(
            host.read_gbps <= bound && host.read_gbps > 0.97 * bound,
            "{} vs {bound}",
            host.read_gbps
        );
    }

    #[test]
    fn path_table_covers_every_pair_and_orders_p2p() {
        let t = topo();
        let p = path_table(&t);
        // 3 accelerators x (host + 2 peers + 1 type-3).
        assert_eq!(p.len(), 12);
        let find = |a, peer| {
            *p.iter()
                .find(|x| x.accelerator == a && x.peer == peer)
                .unwrap()
        };
        let local = find(0, Peer::Accelerator(1));
        let rc = find(0, Peer::Accelerator(2));
        assert_eq!(local.class, PathClass::SwitchLocal { switches: 1 });
        assert_eq!(rc.class, PathClass::SameHostBridge);
        assert!(local.small_write_ps < rc.small_write_ps);
        assert!(local.small_read_ps < rc.small_read_ps);
        assert_eq!(find(0, Peer::Type3(0)).class, PathClass::DeviceToHost);
        let text = describe(&t, &p);
        assert!(text.contains("a0 <-> a1: switch-local"), "{text}");
        assert!(text.contains("a0 <-> a2: root complex"), "{text}");
        assert!(text.contains("a2 <-> m0: host bridge"), "{text}");
        assert_eq!(describe(&Topology::default_topology(), &[]), "");
    }
}
