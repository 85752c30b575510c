//! One piece of a transaction moving through the fabric's resources: link
//! directions (flit or TLP serialisation, credits, DLLPs on the reverse
//! direction), bridge and switch pipelines, the root complex's P2P limit,
//! and the completer (media, host memory, a BAR), with per-hop times
//! recorded for [`super::Engine::request_breakdown`].

use super::Piece;
use crate::link::flit::{M2S_REQ, M2S_RWD, S2M_DRS, S2M_NDR};
use crate::link::tlp::TlpKind;
use crate::link::{Class, LinkDir};
use crate::media::{Media, Memory, Server};
use crate::route::{Completer, Route, Stage};
use crate::time::Picos;

/// The first link of a route, whose MPS and MRRS split a PCIe transfer.
pub(super) fn first_io<'a>(route: &Route, dirs: &'a [LinkDir]) -> Option<&'a LinkDir> {
    route.fwd.iter().find_map(|s| match s {
        Stage::Link { dir, .. } => dirs.get(*dir as usize),
        _ => None,
    })
}

/// Where a walk reports per-hop times; the no-op version compiles away on
/// the hot path.
pub(super) trait Recorder {
    /// Whether anything is recorded (else the compiled CXL.mem path, which
    /// has no per-stage times, may run).
    const RECORDS: bool = true;
    fn push(&mut self, t: Picos);
    /// The first piece has completed its path; stop recording.
    fn first_done(&mut self) {}
}

pub(super) struct NoRecord;

impl Recorder for NoRecord {
    const RECORDS: bool = false;
    #[inline(always)]
    fn push(&mut self, _: Picos) {}
}

/// Records only the first piece of a transaction.
pub(super) struct FirstPiece<'a> {
    pub(super) out: &'a mut Vec<Picos>,
    pub(super) done: bool,
}

impl Recorder for FirstPiece<'_> {
    #[inline]
    fn push(&mut self, t: Picos) {
        if !self.done {
            self.out.push(t);
        }
    }

    fn first_done(&mut self) {
        self.done = true;
    }
}

#[derive(Clone, Copy, PartialEq)]
pub(super) enum Dir {
    Fwd,
    Rev,
}

pub(super) struct Resources<'a> {
    pub(super) dirs: &'a mut [LinkDir],
    pub(super) media: &'a mut [Media],
    pub(super) bars: &'a mut [Memory],
    pub(super) host_mem: &'a mut Memory,
    pub(super) rc_cap: &'a mut Option<[Server; 2]>,
}

impl Resources<'_> {
    /// Move one piece along `stages` from time `t`; returns the arrival time
    /// at the end and the credit still held by the last link, if any. A
    /// link's credit returns when its receiver passes the piece on: into a
    /// bridge/switch pipeline at once, into a completer when admitted.
    #[inline]
    pub(super) fn walk(
        &mut self,
        stages: &[Stage],
        mut t: Picos,
        p: Piece,
        d: Dir,
        rec: &mut impl Recorder,
    ) -> (Picos, Option<(usize, Class)>) {
        let mut pending: Option<(usize, Class)> = None;
        for s in stages {
            match *s {
                Stage::Link { dir, mem } => {
                    let di = dir as usize;
                    let (class, placed, dllp) = {
                        let ld = &mut self.dirs[di];
                        if mem {
                            let (msg, class) = match (d, p.write) {
                                (Dir::Fwd, false) => (M2S_REQ, Class::Req),
                                (Dir::Fwd, true) => (M2S_RWD, Class::Data),
                                (Dir::Rev, false) => (S2M_DRS, Class::Rsp),
                                (Dir::Rev, true) => (S2M_NDR, Class::Rsp),
                            };
                            let ready = ld.credits[class as usize].ready(t);
                            (class, ld.send_mem(ready, msg), 0)
                        } else {
                            let (kind, class, payload) = match (d, p.write) {
                                (Dir::Fwd, false) => (TlpKind::MemRead, Class::Req, 0),
                                (Dir::Fwd, true) => (TlpKind::MemWrite, Class::Data, p.bytes),
                                (Dir::Rev, _) => (TlpKind::Completion, Class::Rsp, p.bytes),
                            };
                            if d == Dir::Rev && p.write {
                                // Posted writes have no completion on PCIe
                                // links; the hop still gets its (unchanged)
                                // time, so that hop times stay in route order.
                                rec.push(t);
                                continue;
                            }
                            let ready = ld.credits[class as usize].ready(t);
                            let (placed, dllp) = ld.send_tlp(ready, kind, payload);
                            (class, placed, dllp)
                        }
                    };
                    self.dirs[di].note_queue(t, placed.start);
                    if dllp > 0 {
                        self.dirs[di ^ 1].carry_dllp(placed.done, dllp);
                    }
                    self.release(pending.take(), placed.start);
                    pending = Some((di, class));
                    t = placed.done + self.dirs[di].fixed_ps;
                }
                Stage::Delay { ps } => {
                    // The receiving port hands the piece to a pipeline (bridge
                    // or switch core), freeing its buffer now.
                    self.release(pending.take(), t);
                    t += ps;
                }
                Stage::RcCap { lane } => {
                    if let Some(cap) = self.rc_cap.as_mut() {
                        t = cap[lane as usize].serve(t, p.bytes.max(16)).1;
                    }
                }
            }
            rec.push(t);
        }
        (t, pending)
    }

    /// The receiver of a link frees a buffer at `t`; the sender learns of
    /// the credit one link traversal later (flit header / UpdateFC).
    #[inline]
    fn release(&mut self, pending: Option<(usize, Class)>, t: Picos) {
        if let Some((pd, pc)) = pending {
            let back = self.dirs[pd].fixed_ps;
            self.dirs[pd].credits[pc as usize].release(t + back);
        }
    }

    /// Serve a piece at the completer; the forward path's last credit
    /// returns when the completer admits the piece into its queue.
    #[inline]
    pub(super) fn complete(
        &mut self,
        c: Completer,
        (t, pending): (Picos, Option<(usize, Class)>),
        p: Piece,
        rec: &mut impl Recorder,
    ) -> Picos {
        let s = match c {
            Completer::Media(d) => self.media[d].access(t, p.bytes, p.write),
            Completer::HostMemory => self.host_mem.access(t, p.bytes),
            Completer::Bar(a) => self.bars[a].access(t, p.bytes),
        };
        self.release(pending, s.admitted);
        rec.push(s.done);
        s.done
    }

    /// Walk the return path; the host (or initiator) sinks the last piece at once.
    #[inline]
    pub(super) fn walk_back(
        &mut self,
        stages: &[Stage],
        t: Picos,
        p: Piece,
        rec: &mut impl Recorder,
    ) -> Picos {
        let (t, pending) = self.walk(stages, t, p, Dir::Rev, rec);
        self.release(pending, t);
        t
    }
}
