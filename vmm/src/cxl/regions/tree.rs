//! From committed decoders to what the guest can reach: the decode tree
//! (window -> host bridge -> switches -> endpoint, for the trapped path and
//! for checking native mappings) and the regions the endpoints describe.
//! Pure functions of the decoder states; no KVM, no locks.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use devices::cxl::component::DecoderState;
use fabric::interleave::{Arithmetic, DecodeTree, EndpointDecode, Node, PortDecode, RootDecode};
use fabric::topology::{Attach, ElementRef, Topology};

use super::super::plan::CxlPlan;

/// What a passthrough port decodes: every address a window can hold.
const PASSTHROUGH_SPAN: u64 = 1 << 52;

/// Where each component sits in the tree: host bridges, then switches, then
/// type-3s; and which child hangs off each port.
pub struct Layout {
    hb_children: Vec<BTreeMap<u8, ElementRef>>,
    sw_children: Vec<BTreeMap<u8, ElementRef>>,
    n_hb: usize,
    n_sw: usize,
    n_type3: usize,
    /// The type-3 devices' ids, to name decoders in messages.
    type3_ids: Vec<String>,
    /// The CFMWS windows, as the tree's roots.
    roots: Vec<RootDecode>,
}

impl Layout {
    pub fn new(topo: &Topology, plan: &CxlPlan) -> Self {
        let hb_children = (0..topo.host_bridges.len())
            .map(|h| {
                (0..topo.host_bridges[h].root_ports)
                    .filter_map(|p| {
                        topo.child_at(Attach::RootPort {
                            host_bridge: h,
                            port: p,
                        })
                        .map(|c| (p as u8, c))
                    })
                    .collect()
            })
            .collect();
        let sw_children = (0..topo.switches.len())
            .map(|s| {
                (0..topo.switches[s].downstream_ports)
                    .filter_map(|p| {
                        topo.child_at(Attach::SwitchPort { switch: s, port: p })
                            .map(|c| (p as u8, c))
                    })
                    .collect()
            })
            .collect();
        let roots = topo
            .windows
            .iter()
            .zip(&plan.windows)
            .map(|(w, p)| RootDecode {
                base: p.base,
                size: p.size,
                ways: w.ways as u8,
                granularity: u64::from(w.granularity),
                arithmetic: Arithmetic::Modulo,
                targets: w.targets.clone(),
            })
            .collect();
        Self {
            hb_children,
            sw_children,
            n_hb: topo.host_bridges.len(),
            n_sw: topo.switches.len(),
            n_type3: topo.type3.len(),
            type3_ids: topo.type3.iter().map(|d| d.id.clone()).collect(),
            roots,
        }
    }

    /// "region [base, +size) of mem0 decoder 0, mem1 decoder 0": a region
    /// named by the endpoint decoders that committed it.
    pub fn describe(&self, region: &WantedRegion) -> String {
        let decoders: Vec<String> = region
            .endpoints
            .iter()
            .map(|(t, d)| {
                let id = self.type3_ids.get(*t).map_or("?", String::as_str);
                format!("{id} decoder {}", d.index)
            })
            .collect();
        format!(
            "region [{:#x}, +{:#x}) of {}",
            region.base,
            region.size,
            decoders.join(", ")
        )
    }

    fn node_of(&self, e: ElementRef) -> Option<usize> {
        match e {
            ElementRef::HostBridge(h) => Some(h),
            ElementRef::Switch(s) => Some(self.n_hb + s),
            ElementRef::Type3(t) => Some(self.n_hb + self.n_sw + t),
            ElementRef::Accelerator(_) => None,
        }
    }

    fn port_decoders(
        &self,
        decoders: &[DecoderState],
        children: &BTreeMap<u8, ElementRef>,
    ) -> Vec<PortDecode> {
        // A port with a single downstream port and nothing committed forwards
        // everything to it: Linux treats such ports as passthrough and (6.1)
        // does not program their decoders.
        if decoders.is_empty() && children.len() == 1 {
            let only = children.values().next().and_then(|&c| self.node_of(c));
            return only
                .map(|child| PortDecode {
                    base: 0,
                    size: PASSTHROUGH_SPAN,
                    ways: 1,
                    granularity: 256,
                    targets: vec![child],
                })
                .into_iter()
                .collect();
        }
        decoders
            .iter()
            .filter_map(|d| {
                let targets: Option<Vec<usize>> = d
                    .targets
                    .iter()
                    .take(usize::from(d.ways))
                    .map(|port| children.get(port).and_then(|&c| self.node_of(c)))
                    .collect();
                Some(PortDecode {
                    base: d.base,
                    size: d.size,
                    ways: d.ways,
                    granularity: u64::from(d.granularity),
                    targets: targets?,
                })
            })
            .collect()
    }

    /// The decode tree of what `decoders` have committed.
    pub fn tree(&self, decoders: &DecoderSnapshot) -> DecodeTree {
        let mut nodes: Vec<Node> = (0..self.n_hb)
            .map(|h| Node::Port {
                decoders: self.port_decoders(
                    decoders.host_bridges.get(h).map_or(&[], Vec::as_slice),
                    &self.hb_children[h],
                ),
            })
            .collect();
        let mut sw_nodes: Vec<Node> = (0..self.n_sw)
            .map(|_| Node::Port {
                decoders: Vec::new(),
            })
            .collect();
        for (s, ds) in &decoders.switches {
            if let (Some(node), Some(children)) = (sw_nodes.get_mut(*s), self.sw_children.get(*s)) {
                *node = Node::Port {
                    decoders: self.port_decoders(ds, children),
                };
            }
        }
        nodes.extend(sw_nodes);
        let mut ep_nodes: Vec<Node> = (0..self.n_type3)
            .map(|t| Node::Endpoint {
                device: t,
                decoders: Vec::new(),
            })
            .collect();
        for (t, ds) in &decoders.type3 {
            if let Some(node) = ep_nodes.get_mut(*t) {
                *node = Node::Endpoint {
                    device: *t,
                    decoders: ds
                        .iter()
                        .map(|d| EndpointDecode {
                            base: d.base,
                            size: d.size,
                            ways: d.ways,
                            granularity: u64::from(d.granularity),
                            dpa_base: d.dpa_base,
                        })
                        .collect(),
                };
            }
        }
        nodes.extend(ep_nodes);
        DecodeTree {
            roots: self.roots.clone(),
            nodes,
        }
    }
}

/// Every component's committed decoders at one moment, shaped like
/// `DecoderSources`: host bridges by index; switches and type-3s as
/// (topology index, decoders).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DecoderSnapshot {
    pub host_bridges: Vec<Vec<DecoderState>>,
    pub switches: Vec<(usize, Vec<DecoderState>)>,
    pub type3: Vec<(usize, Vec<DecoderState>)>,
}

/// A region the endpoint decoders describe: the decoders of every device
/// that committed this HPA range.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WantedRegion {
    pub base: u64,
    pub size: u64,
    pub ways: u8,
    pub granularity: u64,
    /// (type-3 index, its decoder), in type-3 order.
    pub endpoints: Vec<(usize, DecoderState)>,
}

impl WantedRegion {
    /// Usable once every device of the interleave set has committed; until
    /// then its addresses decode to nothing (the trap reads all ones).
    pub fn complete(&self) -> bool {
        self.endpoints.len() >= usize::from(self.ways)
    }
}

impl DecoderSnapshot {
    /// Endpoint decoders grouped by HPA range, lowest first. Ways and
    /// granularity are the first endpoint's (the decode tree checks the
    /// rest of the path).
    pub fn wanted_regions(&self) -> Vec<WantedRegion> {
        let mut ranges: BTreeMap<(u64, u64), Vec<(usize, DecoderState)>> = BTreeMap::new();
        for (t, ds) in &self.type3 {
            for d in ds {
                ranges
                    .entry((d.base, d.size))
                    .or_default()
                    .push((*t, d.clone()));
            }
        }
        ranges
            .into_iter()
            .map(|((base, size), endpoints)| WantedRegion {
                base,
                size,
                ways: endpoints[0].1.ways,
                granularity: u64::from(endpoints[0].1.granularity),
                endpoints,
            })
            .collect()
    }
}

/// The decode tree the trapped path reads. A reader clones the `Arc` and
/// lets go of the lock at once, so a trapped access never holds it while
/// reading or writing a backing file, and the mapper swaps in a new tree
/// without waiting for accesses in flight.
#[derive(Default)]
pub struct TreeCell(RwLock<Arc<DecodeTree>>);

impl TreeCell {
    pub fn get(&self) -> Arc<DecodeTree> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn set(&self, tree: DecodeTree) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(tree);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use fabric::interleave::Target;

    const MIB: u64 = 1 << 20;

    pub(crate) fn switch4() -> (Topology, CxlPlan) {
        let topo = Topology::from_toml_str(include_str!("../../../../examples/switch-4.toml"))
            .expect("example topology");
        let plan = crate::cxl::plan::plan(&topo, (0xc100_0000, 0xe000_0000), 1 << 30)
            .expect("example plan");
        (topo, plan)
    }

    pub(crate) fn decoder(index: usize, base: u64, size: u64, ways: u8, gran: u32) -> DecoderState {
        DecoderState {
            index,
            base,
            size,
            ways,
            granularity: gran,
            targets: Vec::new(),
            dpa_skip: 0,
            dpa_base: 0,
            locked: false,
        }
    }

    /// Linux's 2-way 4 KiB region over devices 0 and 1 of switch-4: root
    /// port passthrough, the switch interleaving on ports 0 and 1.
    pub(crate) fn two_way(base: u64) -> DecoderSnapshot {
        let size = 512 * MIB;
        DecoderSnapshot {
            host_bridges: vec![vec![]],
            switches: vec![(
                0,
                vec![DecoderState {
                    targets: vec![0, 1],
                    ..decoder(0, base, size, 2, 4096)
                }],
            )],
            type3: vec![
                (0, vec![decoder(0, base, size, 2, 4096)]),
                (1, vec![decoder(0, base, size, 2, 4096)]),
                (2, vec![]),
                (3, vec![]),
            ],
        }
    }

    #[test]
    fn the_tree_decodes_an_interleaved_region_granule_by_granule() {
        let (topo, plan) = switch4();
        let layout = Layout::new(&topo, &plan);
        let base = plan.windows[0].base;
        let tree = layout.tree(&two_way(base));
        assert_eq!(tree.roots.len(), 2, "ram and pmem windows");
        // Nodes: host bridge, switch, four type-3s.
        assert_eq!(tree.nodes.len(), 6);
        let at = |off| tree.decode(base + off);
        assert_eq!(at(0), Some(Target { device: 0, dpa: 0 }));
        assert_eq!(at(4096 + 8), Some(Target { device: 1, dpa: 8 }));
        assert_eq!(
            at(2 * 4096 + 1),
            Some(Target {
                device: 0,
                dpa: 4097
            })
        );
        assert_eq!(at(512 * MIB), None, "past the region");
        // Nothing decodes before the switch commits.
        let mut partial = two_way(base);
        partial.switches[0].1.clear();
        assert_eq!(layout.tree(&partial).decode(base), None);
    }

    #[test]
    fn regions_group_endpoints_by_range_and_complete_with_every_way() {
        let snap = two_way(0x1_0000_0000);
        let wanted = snap.wanted_regions();
        assert_eq!(wanted.len(), 1);
        let r = &wanted[0];
        assert_eq!(
            (r.base, r.size, r.ways, r.granularity),
            (0x1_0000_0000, 512 * MIB, 2, 4096)
        );
        assert_eq!(
            r.endpoints.iter().map(|(t, _)| *t).collect::<Vec<_>>(),
            vec![0, 1]
        );
        assert!(r.complete());
        let mut one = snap.clone();
        one.type3[1].1.clear();
        assert!(!one.wanted_regions()[0].complete(), "one way of two");
        // Two ranges from one device come out lowest first.
        let two = DecoderSnapshot {
            type3: vec![(
                2,
                vec![
                    decoder(1, 0x3_0000_0000, 256 * MIB, 1, 4096),
                    decoder(0, 0x2_0000_0000, 256 * MIB, 1, 256),
                ],
            )],
            ..DecoderSnapshot::default()
        };
        let bases: Vec<u64> = two.wanted_regions().iter().map(|r| r.base).collect();
        assert_eq!(bases, vec![0x2_0000_0000, 0x3_0000_0000]);
    }
}
