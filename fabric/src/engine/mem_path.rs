//! The hot path: a host → type-3 route, every link carrying CXL.mem,
//! compiled once into flat lists of link crossings so that moving a 64 B
//! line costs a credit, a flit placement and a few additions per link.
//!
//! It computes exactly what the general stage walk in [`super`] computes
//! for such routes: `tests/golden.rs` pins both to digests recorded before
//! this path existed and checks them against each other request by
//! request. The general walk remains for TLP routes, the RC P2P cap and
//! per-hop breakdowns.
//!
//! Credits: a link's receiver frees the buffer (and the credit starts back)
//! when it hands the line to the bridge or switch pipeline behind it, which
//! on these routes is right after every link except the last one down, whose
//! receiver is the device: there the credit returns when the media admits
//! the line. Routes of any other shape are not compiled.

use crate::link::flit::{SlotMsg, M2S_REQ, M2S_RWD, S2M_DRS, S2M_NDR};
use crate::link::{Class, LinkDir, MemWire};
use crate::media::Media;
use crate::route::{Completer, Route, Stage};
use crate::time::Picos;

/// A link crossing followed by a pipeline.
#[derive(Debug, Clone, Copy)]
struct Hop {
    /// Link direction (index into the engine's directions).
    dir: u32,
    /// Pipeline delay after the link (sum of its delay stages).
    after: Picos,
}

/// A route compiled for CXL.mem lines.
#[derive(Debug, Clone)]
pub(crate) struct MemPath {
    /// Pipeline delay before the first link down (the host bridge).
    lead: Picos,
    /// Links down but the last, each followed by a switch.
    down: Box<[Hop]>,
    /// The link into the device.
    last_down: u32,
    media: usize,
    /// Links up, each followed by a switch or the host bridge.
    up: Box<[Hop]>,
    /// The most general wire on the path, which picks the placement code.
    wire: MemWire,
}

/// A link direction and the pipeline delay after it, if any.
type Link = (u32, Option<Picos>);

/// `stages` as delays before the first link, then links each followed by
/// its delays; None if a stage is anything else.
fn compile(stages: &[Stage]) -> Option<(Picos, Vec<Link>)> {
    let mut lead = 0;
    let mut links: Vec<Link> = Vec::new();
    for s in stages {
        match *s {
            Stage::Link { dir, mem: true } => links.push((dir, None)),
            Stage::Delay { ps } => match links.last_mut() {
                Some((_, after)) => *after = Some(after.unwrap_or(0) + ps),
                None => lead += ps,
            },
            _ => return None,
        }
    }
    Some((lead, links))
}

/// Links that must each be followed by a pipeline.
fn pipelined(links: &[Link]) -> Option<Box<[Hop]>> {
    links
        .iter()
        .map(|&(dir, after)| after.map(|after| Hop { dir, after }))
        .collect()
}

impl MemPath {
    /// Compile `route` if it has the host → type-3 shape (see the module
    /// documentation); `dirs` are the engine's link directions.
    pub fn new(route: &Route, dirs: &[LinkDir]) -> Option<MemPath> {
        let Completer::Media(media) = route.completer else {
            return None;
        };
        let (lead, down) = compile(&route.fwd)?;
        let (0, up) = compile(&route.rev)? else {
            return None;
        };
        let (&(last_down, None), down) = down.split_last()? else {
            return None;
        };
        let down = pipelined(down)?;
        let up = pipelined(&up)?;
        let wire = down
            .iter()
            .chain(up.iter())
            .map(|h| h.dir)
            .chain([last_down])
            .map(|d| {
                dirs.get(d as usize)
                    .map_or(MemWire::Other, LinkDir::mem_wire)
            })
            .max()?;
        Some(MemPath {
            lead,
            down,
            last_down,
            media,
            up,
            wire,
        })
    }

    /// Move `lines` 64 B lines issued at `issue`; returns when the last
    /// completes at the initiator.
    #[inline]
    pub fn run(
        &self,
        dirs: &mut [LinkDir],
        media: &mut [Media],
        lines: u32,
        write: bool,
        issue: Picos,
    ) -> Picos {
        // One copy per op and wire, so that each message's shape and the
        // packer's case are constants folded into the placement.
        match (write, self.wire) {
            (false, MemWire::Plain) => self.lines::<Req, Drs, Plain>(dirs, media, lines, issue),
            (true, MemWire::Plain) => self.lines::<RwD, Ndr, Plain>(dirs, media, lines, issue),
            (false, MemWire::Simple) => self.lines::<Req, Drs, Simple>(dirs, media, lines, issue),
            (true, MemWire::Simple) => self.lines::<RwD, Ndr, Simple>(dirs, media, lines, issue),
            (false, MemWire::Other) => self.lines::<Req, Drs, Any>(dirs, media, lines, issue),
            (true, MemWire::Other) => self.lines::<RwD, Ndr, Any>(dirs, media, lines, issue),
        }
    }

    #[inline(always)]
    fn lines<Down: Message, Up: Message, W: Wire>(
        &self,
        dirs: &mut [LinkDir],
        media: &mut [Media],
        lines: u32,
        issue: Picos,
    ) -> Picos {
        let mut complete = issue;
        for _ in 0..lines {
            let t = cross::<Down, W>(dirs, &self.down, issue + self.lead);
            // Into the device: its credit returns when the media admits
            // the line.
            let ld = &mut dirs[self.last_down as usize];
            let credit = &mut ld.credits[Down::CLASS as usize];
            let ready = credit.ready(t);
            let placed = W::send(ld, ready, Down::MSG);
            ld.note_queue(t, placed.start);
            let t = placed.done + ld.fixed_ps;
            let s = media[self.media].access(t, 64, Down::WRITE);
            let credit = &mut ld.credits[Down::CLASS as usize];
            credit.release(s.admitted + ld.fixed_ps);
            complete = complete.max(cross::<Up, W>(dirs, &self.up, s.done));
        }
        complete
    }
}

/// Send one message across `hops` from `t`; returns the arrival time.
#[inline(always)]
fn cross<M: Message, W: Wire>(dirs: &mut [LinkDir], hops: &[Hop], mut t: Picos) -> Picos {
    for h in hops {
        let ld = &mut dirs[h.dir as usize];
        let ready = ld.credits[M::CLASS as usize].ready(t);
        let placed = W::send(ld, ready, M::MSG);
        ld.note_queue(t, placed.start);
        let arrive = placed.done + ld.fixed_ps;
        // The pipeline takes the line at once: the credit returns one link
        // traversal later.
        ld.credits[M::CLASS as usize].release(arrive + ld.fixed_ps);
        t = arrive + h.after;
    }
    t
}

/// A CXL.mem message kind, as types so that each walk is compiled for one.
trait Message {
    const MSG: SlotMsg;
    const CLASS: Class;
    /// Whether the transaction is a write (for the media).
    const WRITE: bool;
}

/// M2S request without data (read).
struct Req;
/// M2S request with data (write).
struct RwD;
/// S2M data response (read data).
struct Drs;
/// S2M no-data response (write completion).
struct Ndr;

impl Message for Req {
    const MSG: SlotMsg = M2S_REQ;
    const CLASS: Class = Class::Req;
    const WRITE: bool = false;
}

impl Message for RwD {
    const MSG: SlotMsg = M2S_RWD;
    const CLASS: Class = Class::Data;
    const WRITE: bool = true;
}

impl Message for Drs {
    const MSG: SlotMsg = S2M_DRS;
    const CLASS: Class = Class::Rsp;
    const WRITE: bool = false;
}

impl Message for Ndr {
    const MSG: SlotMsg = S2M_NDR;
    const CLASS: Class = Class::Rsp;
    const WRITE: bool = true;
}

/// How the path's links place messages, as types like [`Message`].
trait Wire {
    fn send(ld: &mut LinkDir, arrive: Picos, msg: SlotMsg) -> crate::link::Placed;
}

/// Every link 68B without CRC errors.
struct Plain;
/// Every link 68B.
struct Simple;
/// Any links.
struct Any;

impl Wire for Plain {
    #[inline(always)]
    fn send(ld: &mut LinkDir, arrive: Picos, msg: SlotMsg) -> crate::link::Placed {
        ld.send_mem_simple(arrive, msg, false)
    }
}

impl Wire for Simple {
    #[inline(always)]
    fn send(ld: &mut LinkDir, arrive: Picos, msg: SlotMsg) -> crate::link::Placed {
        ld.send_mem_simple(arrive, msg, true)
    }
}

impl Wire for Any {
    #[inline(always)]
    fn send(ld: &mut LinkDir, arrive: Picos, msg: SlotMsg) -> crate::link::Placed {
        ld.send_mem(arrive, msg)
    }
}
