//! The hot path: a route whose every link carries CXL.mem (host → type-3),
//! compiled once into a flat list of link crossings so that moving a 64 B
//! line costs a credit check, a flit placement and a few additions per link.
//!
//! It computes exactly what the general stage walk in [`super`] computes
//! for such routes (`tests/golden.rs` pins this to the picosecond); the
//! general walk remains for TLP routes, the RC P2P cap and per-hop
//! breakdowns.

use crate::link::flit::{SlotMsg, M2S_REQ, M2S_RWD, S2M_DRS, S2M_NDR};
use crate::link::{Class, LinkDir};
use crate::media::Media;
use crate::route::{Completer, Route, Stage};
use crate::time::Picos;

/// One link crossing.
#[derive(Debug, Clone, Copy)]
struct MemHop {
    /// Link direction (index into the engine's directions).
    dir: u32,
    /// Whether a bridge or switch pipeline follows the link: its receiver
    /// then frees the buffer (returns the credit) as soon as the line
    /// arrives; otherwise only when the next link starts sending it.
    then_pipeline: bool,
    /// Pipeline delay after the link (sum of the delay stages).
    after: Picos,
}

/// One direction of a compiled route.
#[derive(Debug, Clone)]
struct Leg {
    /// Pipeline delay before the first link (host bridge on the way down).
    lead: Picos,
    hops: Box<[MemHop]>,
}

impl Leg {
    /// Compile `stages`; None if a stage is not a CXL.mem link or a delay.
    fn new(stages: &[Stage]) -> Option<Leg> {
        let mut lead = 0;
        let mut hops: Vec<MemHop> = Vec::new();
        for s in stages {
            match *s {
                Stage::Link { dir, mem: true } => hops.push(MemHop {
                    dir,
                    then_pipeline: false,
                    after: 0,
                }),
                Stage::Delay { ps } => match hops.last_mut() {
                    Some(h) => {
                        h.then_pipeline = true;
                        h.after += ps;
                    }
                    None => lead += ps,
                },
                _ => return None,
            }
        }
        Some(Leg {
            lead,
            hops: hops.into_boxed_slice(),
        })
    }
}

/// A route compiled for CXL.mem lines.
#[derive(Debug, Clone)]
pub(crate) struct MemPath {
    down: Leg,
    media: usize,
    up: Leg,
}

impl MemPath {
    /// Compile `route` if it is all CXL.mem links and delays ending at a
    /// type-3 device's media.
    pub fn new(route: &Route) -> Option<MemPath> {
        let Completer::Media(media) = route.completer else {
            return None;
        };
        if !route.mem {
            return None;
        }
        Some(MemPath {
            down: Leg::new(&route.fwd)?,
            media,
            up: Leg::new(&route.rev)?,
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
        // One copy per op, so each message's shape is a constant the flit
        // packer folds in.
        if write {
            self.lines::<RwD, Ndr>(dirs, media, lines, issue)
        } else {
            self.lines::<Req, Drs>(dirs, media, lines, issue)
        }
    }

    #[inline(always)]
    fn lines<Down: Message, Up: Message>(
        &self,
        dirs: &mut [LinkDir],
        media: &mut [Media],
        lines: u32,
        issue: Picos,
    ) -> Picos {
        let mut complete = issue;
        for _ in 0..lines {
            let (t, held) = cross::<Down>(dirs, &self.down, issue);
            let s = media[self.media].access(t, 64, Down::WRITE);
            // The last link's credit returns when the media admits the line.
            if let Some(d) = held {
                release(dirs, d, Down::CLASS, s.admitted);
            }
            let (t, held) = cross::<Up>(dirs, &self.up, s.done);
            // The initiator sinks the response at once.
            if let Some(d) = held {
                release(dirs, d, Up::CLASS, t);
            }
            complete = complete.max(t);
        }
        complete
    }
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

/// Send one message along `leg` from `t`; returns the arrival time and the
/// direction whose credit is still held by the receiver at the end.
#[inline(always)]
fn cross<M: Message>(dirs: &mut [LinkDir], leg: &Leg, t: Picos) -> (Picos, Option<usize>) {
    let mut t = t + leg.lead;
    let mut held: Option<usize> = None;
    for h in leg.hops.iter() {
        let di = h.dir as usize;
        let ld = &mut dirs[di];
        let ready = ld.credits[M::CLASS as usize].ready(t);
        let placed = ld.send_mem(ready, M::MSG);
        let fixed = ld.fixed_ps;
        t = placed.done + fixed;
        if let Some(p) = held.take() {
            release(dirs, p, M::CLASS, placed.start);
        }
        if h.then_pipeline {
            release(dirs, di, M::CLASS, t);
            t += h.after;
        } else {
            held = Some(di);
        }
    }
    (t, held)
}

/// The receiver of direction `d` frees a buffer at `t`; the sender learns
/// of it one link traversal later.
#[inline(always)]
fn release(dirs: &mut [LinkDir], d: usize, class: Class, t: Picos) {
    let ld = &mut dirs[d];
    let back = ld.fixed_ps;
    ld.credits[class as usize].release(t + back);
}
