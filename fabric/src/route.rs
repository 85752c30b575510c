//! Routing: which links, switches and bridges a transaction crosses.
//!
//! PCIe routing rules: a peer-to-peer request between two endpoints below
//! the same switch turns around in the lowest switch they share and never
//! reaches the root complex; otherwise it goes up to the root complex (and
//! across to another host bridge if needed). Memory requests to a type-3
//! device always go through the host bridge above it, because CXL.mem is
//! mastered by the host (HDM ranges are not in switch bridge windows).

use std::fmt;

use crate::link::Direction;
use crate::time::{ns_to_ps, Picos};
use crate::topology::{Attach, ElementRef, Topology};

/// One element of a route, in the order a transaction meets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Hop {
    /// Crossing a host bridge / root complex (index into `host_bridges`).
    HostBridge(usize),
    /// Peer-to-peer forwarding inside the root complex.
    RootComplex,
    /// Crossing a switch (index into `switches`).
    Switch(usize),
    /// The link above `element`, in direction `dir`.
    Link { element: ElementRef, dir: Direction },
    /// A type-3 device's media (index into `type3`).
    Media(usize),
    /// Host DRAM, reached by a DMA.
    HostMemory,
    /// An accelerator's BAR memory (index into `accelerators`).
    Bar(usize),
}

/// What kind of path a route is (the nvidia-smi PIX/PXB/PHB/SYS classes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PathClass {
    /// An accelerator reaching its own BAR memory.
    Local,
    /// Peer to peer turning around inside switches, never reaching the
    /// root complex (`switches` = 1: PIX, more: PXB).
    SwitchLocal { switches: u32 },
    /// Peer to peer through one host bridge's root complex (PHB).
    SameHostBridge,
    /// Peer to peer across host bridges (SYS-like).
    CrossHostBridge,
    /// The host (CPU) accessing a device.
    HostToDevice,
    /// A device accessing host memory or CXL memory through the host.
    DeviceToHost,
}

/// A route: the hops in order, forward path, completer, and return path.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    /// Every hop, forward path first, then the completer, then the return path.
    pub hops: Vec<Hop>,
    pub class: PathClass,
    pub(crate) fwd: Vec<Stage>,
    pub(crate) completer: Completer,
    pub(crate) rev: Vec<Stage>,
    /// Any CXL.mem link on the route (then transfers move as 64 B lines).
    pub(crate) mem: bool,
}

impl Route {
    /// Number of switch crossings on the forward path.
    pub fn switch_hops(&self) -> usize {
        self.fwd_hops()
            .iter()
            .filter(|h| matches!(h, Hop::Switch(_)))
            .count()
    }

    /// The forward-path hops (up to, not including, the completer).
    pub fn fwd_hops(&self) -> &[Hop] {
        &self.hops[..self.fwd.len()]
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, h) in self.hops.iter().enumerate() {
            if i > 0 {
                f.write_str(" > ")?;
            }
            match h {
                Hop::HostBridge(i) => write!(f, "hb{i}")?,
                Hop::RootComplex => f.write_str("rc")?,
                Hop::Switch(i) => write!(f, "sw{i}")?,
                Hop::Link { element, dir } => write!(f, "link({element:?},{dir:?})")?,
                Hop::Media(i) => write!(f, "media{i}")?,
                Hop::HostMemory => f.write_str("dram")?,
                Hop::Bar(i) => write!(f, "bar{i}")?,
            }
        }
        Ok(())
    }
}

/// Engine-side step of a route.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Stage {
    /// Send on link direction `dir` (index into the engine's directions);
    /// `mem`: as CXL.mem messages, else as TLPs.
    Link { dir: u32, mem: bool },
    /// Fixed latency (half a bridge's or switch's round-trip figure).
    Delay { ps: Picos },
    /// The root complex's P2P bandwidth cap, one server per direction:
    /// `lane` 0 carries traffic from the lower-numbered accelerator of the
    /// pair to the higher, 1 the other way (the reverse path flips it).
    RcCap { lane: u8 },
}

/// Who serves the transaction at the far end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Completer {
    Media(usize),
    HostMemory,
    Bar(usize),
}

/// Static structure of the fabric the router needs.
#[derive(Debug, Clone)]
pub(crate) struct Graph {
    /// Link index of every non-host-bridge element.
    pub link_of: std::collections::HashMap<ElementRef, usize>,
    /// Element above each link, in link order (index = link).
    pub links: Vec<ElementRef>,
    hb_half_ps: Vec<Picos>,
    sw_half_ps: Vec<Picos>,
    rc_half_ps: Picos,
    rc_cap: bool,
}

/// Either end of a transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum End {
    Host,
    HostMemory,
    Element(ElementRef),
}

impl Graph {
    pub fn new(t: &Topology) -> Graph {
        let mut links = Vec::new();
        links.extend((0..t.switches.len()).map(ElementRef::Switch));
        links.extend((0..t.type3.len()).map(ElementRef::Type3));
        links.extend((0..t.accelerators.len()).map(ElementRef::Accelerator));
        let link_of = links.iter().enumerate().map(|(i, e)| (*e, i)).collect();
        Graph {
            link_of,
            links,
            hb_half_ps: t
                .host_bridges
                .iter()
                .map(|h| ns_to_ps(h.latency_ns / 2.0))
                .collect(),
            sw_half_ps: t
                .switches
                .iter()
                .map(|s| ns_to_ps(s.latency_ns / 2.0))
                .collect(),
            rc_half_ps: ns_to_ps(t.fabric.rc_p2p_latency_ns / 2.0),
            rc_cap: t.fabric.rc_p2p_bandwidth_gbps.is_some(),
        }
    }

    fn parent(t: &Topology, e: ElementRef) -> ElementRef {
        match t.attach_of(e) {
            Some(Attach::RootPort { host_bridge, .. }) => ElementRef::HostBridge(host_bridge),
            Some(Attach::SwitchPort { switch, .. }) => ElementRef::Switch(switch),
            None => e,
        }
    }

    /// `e` and its ancestors, ending at its host bridge.
    fn chain(t: &Topology, e: ElementRef) -> Vec<ElementRef> {
        let mut out = vec![e];
        let mut cur = e;
        while !matches!(cur, ElementRef::HostBridge(_)) && out.len() <= t.switches.len() + 2 {
            cur = Self::parent(t, cur);
            out.push(cur);
        }
        out
    }

    fn dir_index(&self, e: ElementRef, dir: Direction) -> u32 {
        let link = self.link_of.get(&e).copied().unwrap_or(0);
        (link * 2 + usize::from(dir == Direction::Up)) as u32
    }

    /// Stages from `e` up to (not crossing) its ancestor `top`.
    fn climb(
        &self,
        t: &Topology,
        e: ElementRef,
        top: ElementRef,
        mem: bool,
        st: &mut Vec<Stage>,
        hops: &mut Vec<Hop>,
    ) {
        let mut cur = e;
        loop {
            st.push(Stage::Link {
                dir: self.dir_index(cur, Direction::Up),
                mem,
            });
            hops.push(Hop::Link {
                element: cur,
                dir: Direction::Up,
            });
            let p = Self::parent(t, cur);
            if p == top || p == cur {
                break;
            }
            if let ElementRef::Switch(s) = p {
                st.push(Stage::Delay {
                    ps: self.sw_half_ps[s],
                });
                hops.push(Hop::Switch(s));
            }
            cur = p;
        }
    }

    /// Stages from ancestor `top` down to `e`.
    fn descend(
        &self,
        t: &Topology,
        top: ElementRef,
        e: ElementRef,
        mem: bool,
        st: &mut Vec<Stage>,
        hops: &mut Vec<Hop>,
    ) {
        let (mut s2, mut h2) = (Vec::new(), Vec::new());
        self.climb(t, e, top, mem, &mut s2, &mut h2);
        for (s, h) in s2.into_iter().rev().zip(h2.into_iter().rev()) {
            st.push(flip(s));
            hops.push(flip_hop(h));
        }
    }

    fn cross_hb(&self, hb: usize, st: &mut Vec<Stage>, hops: &mut Vec<Hop>) {
        st.push(Stage::Delay {
            ps: self.hb_half_ps[hb],
        });
        hops.push(Hop::HostBridge(hb));
    }

    fn cross_rc(&self, lane: u8, st: &mut Vec<Stage>, hops: &mut Vec<Hop>) {
        st.push(Stage::Delay {
            ps: self.rc_half_ps,
        });
        hops.push(Hop::RootComplex);
        if self.rc_cap {
            st.push(Stage::RcCap { lane });
            hops.push(Hop::RootComplex);
        }
    }

    /// Build the route from `src` to `dst`; None if no such path exists
    /// (e.g. a type-3 device as initiator).
    pub fn route(&self, t: &Topology, src: End, dst: End) -> Option<Route> {
        let (mut fwd, mut hops) = (Vec::new(), Vec::new());
        let completer = match dst {
            End::HostMemory => Completer::HostMemory,
            End::Element(ElementRef::Type3(d)) => Completer::Media(d),
            End::Element(ElementRef::Accelerator(a)) => Completer::Bar(a),
            _ => return None,
        };
        let dst_mem = matches!(completer, Completer::Media(_));
        let class;
        match (src, dst) {
            (End::Host, End::Element(e)) => {
                let hb = t.host_bridge_of(e);
                self.cross_hb(hb, &mut fwd, &mut hops);
                self.descend(
                    t,
                    ElementRef::HostBridge(hb),
                    e,
                    dst_mem,
                    &mut fwd,
                    &mut hops,
                );
                class = PathClass::HostToDevice;
            }
            (End::Element(a @ ElementRef::Accelerator(_)), End::HostMemory) => {
                let hb = t.host_bridge_of(a);
                self.climb(t, a, ElementRef::HostBridge(hb), false, &mut fwd, &mut hops);
                self.cross_hb(hb, &mut fwd, &mut hops);
                class = PathClass::DeviceToHost;
            }
            (End::Element(a @ ElementRef::Accelerator(_)), End::Element(b)) if a == b => {
                class = PathClass::Local;
            }
            (
                End::Element(a @ ElementRef::Accelerator(_)),
                End::Element(d @ ElementRef::Type3(_)),
            ) => {
                let (ha, hd) = (t.host_bridge_of(a), t.host_bridge_of(d));
                self.climb(t, a, ElementRef::HostBridge(ha), false, &mut fwd, &mut hops);
                self.cross_hb(ha, &mut fwd, &mut hops);
                if hd != ha {
                    self.cross_hb(hd, &mut fwd, &mut hops);
                }
                self.descend(t, ElementRef::HostBridge(hd), d, true, &mut fwd, &mut hops);
                class = PathClass::DeviceToHost;
            }
            (End::Element(a @ ElementRef::Accelerator(_)), End::Element(b)) => {
                let ca = Self::chain(t, a);
                let cb = Self::chain(t, b);
                let lca = ca.iter().find(|x| cb.contains(x)).copied();
                match lca {
                    Some(top @ ElementRef::Switch(s)) => {
                        self.climb(t, a, top, false, &mut fwd, &mut hops);
                        fwd.push(Stage::Delay {
                            ps: self.sw_half_ps[s],
                        });
                        hops.push(Hop::Switch(s));
                        self.descend(t, top, b, false, &mut fwd, &mut hops);
                        let switches = hops.iter().filter(|h| matches!(h, Hop::Switch(_))).count();
                        class = PathClass::SwitchLocal {
                            switches: switches as u32,
                        };
                    }
                    _ => {
                        let (ha, hb) = (t.host_bridge_of(a), t.host_bridge_of(b));
                        self.climb(t, a, ElementRef::HostBridge(ha), false, &mut fwd, &mut hops);
                        self.cross_hb(ha, &mut fwd, &mut hops);
                        let lane = u8::from(a > b);
                        self.cross_rc(lane, &mut fwd, &mut hops);
                        if hb != ha {
                            self.cross_hb(hb, &mut fwd, &mut hops);
                            class = PathClass::CrossHostBridge;
                        } else {
                            class = PathClass::SameHostBridge;
                        }
                        self.descend(t, ElementRef::HostBridge(hb), b, false, &mut fwd, &mut hops);
                    }
                }
            }
            _ => return None,
        }
        let rev: Vec<Stage> = fwd.iter().rev().map(|s| flip(*s)).collect();
        let mut all = hops.clone();
        all.push(match completer {
            Completer::Media(d) => Hop::Media(d),
            Completer::HostMemory => Hop::HostMemory,
            Completer::Bar(a) => Hop::Bar(a),
        });
        all.extend(hops.iter().rev().map(|h| flip_hop(*h)));
        let mem = fwd
            .iter()
            .any(|s| matches!(s, Stage::Link { mem: true, .. }));
        Some(Route {
            hops: all,
            class,
            fwd,
            completer,
            rev,
            mem,
        })
    }
}

fn flip(s: Stage) -> Stage {
    match s {
        Stage::Link { dir, mem } => Stage::Link { dir: dir ^ 1, mem },
        Stage::RcCap { lane } => Stage::RcCap { lane: lane ^ 1 },
        other => other,
    }
}

fn flip_hop(h: Hop) -> Hop {
    match h {
        Hop::Link { element, dir } => Hop::Link {
            element,
            dir: match dir {
                Direction::Up => Direction::Down,
                Direction::Down => Direction::Up,
            },
        },
        other => other,
    }
}
