//! The region map: which HPA ranges the guest has committed through its HDM
//! decoders, and how each is served.
//!
//! After every decoder commit or reset the map is recomputed from the
//! decoders themselves (root window -> host bridge -> switch -> endpoint),
//! and installed:
//! - **native**: a KVM memory slot over the devices' backings — the device's
//!   own memfd/file for a 1-way region; for an interleaved region at 4 KiB
//!   granularity or more, one host range stitched from page-granular shared
//!   mappings of every device's backing ([`super::composed`]), so each byte
//!   stays in its device (volatile or persistent alike);
//! - **trapped**: no slot; every access exits to the VMM, which decodes it
//!   exactly and serves it from the device backing (any granularity).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use devices::cxl::backing::Type3Backing;
use devices::cxl::component::{ComponentRegisters, DecoderState};
use devices::BusDevice;
use fabric::interleave::{Arithmetic, DecodeTree, EndpointDecode, Node, PortDecode, RootDecode};
use fabric::topology::{Attach, ElementRef, Topology};
use kvm_bindings::kvm_userspace_memory_region;
use kvm_ioctls::VmFd;
use vm_memory::{FileOffset, MmapRegion};

use super::composed::{coalesce, map_budget, ComposedMapping, Piece, PAGE};
use super::plan::CxlPlan;

/// KVM memory slots for regions start here (RAM uses the first few).
const FIRST_REGION_SLOT: u32 = 16;
/// What a passthrough port decodes: every address a window can hold.
const PASSTHROUGH_SPAN: u64 = 1 << 52;

/// (base, size) of a region.
type HpaRange = (u64, u64);
/// A committed endpoint decoder and the type-3 device it belongs to.
type EndpointDecoder = (usize, DecoderState);

/// How a committed region is served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegionMode {
    Native,
    Trapped,
}

/// A committed region as the VMM sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegionInfo {
    pub base: u64,
    pub size: u64,
    pub ways: u8,
    pub granularity: u64,
    pub mode: RegionMode,
}

/// The host memory behind a native region's slot.
enum HostMapping {
    /// One device's backing, 1-way.
    Device(MmapRegion<()>),
    /// Several devices' backings, interleaved.
    Composed(ComposedMapping),
}

impl HostMapping {
    fn as_ptr(&self) -> *mut u8 {
        match self {
            HostMapping::Device(m) => m.as_ptr(),
            HostMapping::Composed(m) => m.as_ptr(),
        }
    }
}

struct Installed {
    info: RegionInfo,
    slot: Option<u32>,
    /// Keeps the host mapping alive while KVM uses it.
    _mapping: Option<HostMapping>,
}

/// The decode tree's node order: host bridges, then switches, then type-3s.
struct Layout {
    hb_children: Vec<BTreeMap<u8, ElementRef>>,
    sw_children: Vec<BTreeMap<u8, ElementRef>>,
    n_hb: usize,
    n_sw: usize,
}

impl Layout {
    fn new(topo: &Topology) -> Self {
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
        Self {
            hb_children,
            sw_children,
            n_hb: topo.host_bridges.len(),
            n_sw: topo.switches.len(),
        }
    }

    fn node_of(&self, e: ElementRef) -> Option<usize> {
        match e {
            ElementRef::HostBridge(h) => Some(h),
            ElementRef::Switch(s) => Some(self.n_hb + s),
            ElementRef::Type3(t) => Some(self.n_hb + self.n_sw + t),
            ElementRef::Accelerator(_) => None,
        }
    }
}

/// Component registers whose decoders feed the map.
pub struct DecoderSources {
    pub host_bridges: Vec<Arc<Mutex<ComponentRegisters>>>,
    pub switches: Vec<(usize, Arc<Mutex<ComponentRegisters>>)>,
    pub type3: Vec<(usize, Arc<Mutex<ComponentRegisters>>)>,
}

pub struct RegionMapper {
    vm: Arc<VmFd>,
    roots: Vec<(u64, u64, u8, u64, Vec<usize>)>,
    layout: Layout,
    sources: DecoderSources,
    backings: Vec<Arc<Type3Backing>>,
    tree: Arc<RwLock<DecodeTree>>,
    dirty: Arc<AtomicBool>,
    installed: Mutex<Vec<Installed>>,
}

fn lock(c: &Arc<Mutex<ComponentRegisters>>) -> std::sync::MutexGuard<'_, ComponentRegisters> {
    c.lock().unwrap_or_else(|e| e.into_inner())
}

impl RegionMapper {
    pub fn new(
        vm: Arc<VmFd>,
        topo: &Topology,
        plan: &CxlPlan,
        sources: DecoderSources,
        backings: Vec<Arc<Type3Backing>>,
    ) -> Arc<Self> {
        let roots = topo
            .windows
            .iter()
            .zip(&plan.windows)
            .map(|(w, p)| {
                (
                    p.base,
                    p.size,
                    w.ways as u8,
                    u64::from(w.granularity),
                    w.targets.clone(),
                )
            })
            .collect();
        let dirty = Arc::new(AtomicBool::new(false));
        // Every commit or reset anywhere marks the map stale; the vCPU that
        // made the write recomputes it before it re-enters the guest.
        for c in sources
            .host_bridges
            .iter()
            .chain(sources.switches.iter().map(|(_, c)| c))
            .chain(sources.type3.iter().map(|(_, c)| c))
        {
            let d = dirty.clone();
            lock(c).set_commit_listener(Box::new(move || d.store(true, Ordering::Release)));
        }
        Arc::new(Self {
            vm,
            roots,
            layout: Layout::new(topo),
            sources,
            backings,
            tree: Arc::new(RwLock::new(DecodeTree {
                roots: Vec::new(),
                nodes: Vec::new(),
            })),
            dirty,
            installed: Mutex::new(Vec::new()),
        })
    }

    /// The decode tree, for the trapped path.
    pub fn tree(&self) -> Arc<RwLock<DecodeTree>> {
        self.tree.clone()
    }

    pub fn backings(&self) -> &[Arc<Type3Backing>] {
        &self.backings
    }

    /// Recomputes and reinstalls the map if a decoder changed since last time.
    pub fn refresh_if_dirty(&self) {
        if self.dirty.swap(false, Ordering::AcqRel) {
            self.refresh();
        }
    }

    fn port_decoders(
        &self,
        decoders: Vec<DecoderState>,
        children: &BTreeMap<u8, ElementRef>,
    ) -> Vec<PortDecode> {
        // A port with a single downstream port and nothing committed forwards
        // everything to it: Linux treats such ports as passthrough and (6.1)
        // does not program their decoders.
        if decoders.is_empty() && children.len() == 1 {
            let only = children
                .values()
                .next()
                .and_then(|&c| self.layout.node_of(c));
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
            .into_iter()
            .filter_map(|d| {
                let targets: Option<Vec<usize>> = d
                    .targets
                    .iter()
                    .take(usize::from(d.ways))
                    .map(|port| children.get(port).and_then(|&c| self.layout.node_of(c)))
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

    /// Builds the decode tree from what the guest has committed right now.
    fn build_tree(&self) -> (DecodeTree, Vec<(usize, DecoderState)>) {
        let roots = self
            .roots
            .iter()
            .map(|(base, size, ways, gran, targets)| RootDecode {
                base: *base,
                size: *size,
                ways: *ways,
                granularity: *gran,
                arithmetic: Arithmetic::Modulo,
                targets: targets.clone(),
            })
            .collect();
        let mut nodes: Vec<Node> = Vec::new();
        for (h, c) in self.sources.host_bridges.iter().enumerate() {
            let ds = lock(c).committed_decoders();
            nodes.push(Node::Port {
                decoders: self.port_decoders(ds, &self.layout.hb_children[h]),
            });
        }
        let mut sw_nodes: Vec<Node> = (0..self.layout.n_sw)
            .map(|_| Node::Port {
                decoders: Vec::new(),
            })
            .collect();
        for (s, c) in &self.sources.switches {
            let ds = lock(c).committed_decoders();
            sw_nodes[*s] = Node::Port {
                decoders: self.port_decoders(ds, &self.layout.sw_children[*s]),
            };
        }
        nodes.extend(sw_nodes);
        let n_t3 = self.backings.len();
        let mut ep_nodes: Vec<Node> = (0..n_t3)
            .map(|t| Node::Endpoint {
                device: t,
                decoders: Vec::new(),
            })
            .collect();
        let mut endpoint_decoders = Vec::new();
        for (t, c) in &self.sources.type3 {
            let ds = lock(c).committed_decoders();
            ep_nodes[*t] = Node::Endpoint {
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
            endpoint_decoders.extend(ds.into_iter().map(|d| (*t, d)));
        }
        nodes.extend(ep_nodes);
        (DecodeTree { roots, nodes }, endpoint_decoders)
    }

    /// Recomputes the region map and installs it: slots of regions that are
    /// gone are removed first, then new regions are mapped.
    pub fn refresh(&self) {
        let (tree, endpoint_decoders) = self.build_tree();
        log::debug!(
            "decoders: host bridges {:?}; switches {:?}; endpoints {:?}",
            self.sources
                .host_bridges
                .iter()
                .map(|c| lock(c).committed_decoders())
                .collect::<Vec<_>>(),
            self.sources
                .switches
                .iter()
                .map(|(_, c)| lock(c).committed_decoders())
                .collect::<Vec<_>>(),
            endpoint_decoders
        );
        // Regions: endpoint decoders grouped by their HPA range.
        let mut ranges: BTreeMap<(u64, u64), Vec<(usize, DecoderState)>> = BTreeMap::new();
        for (t, d) in endpoint_decoders {
            ranges.entry((d.base, d.size)).or_default().push((t, d));
        }
        let mut installed = self.installed.lock().unwrap_or_else(|e| e.into_inner());
        let wanted: Vec<(HpaRange, Vec<EndpointDecoder>)> = ranges.into_iter().collect();
        // Keep native regions that are still committed with the same shape;
        // trapped ones are re-evaluated, since the rest of their path may
        // have committed since (Linux commits endpoints first).
        let keep = |i: &Installed| {
            i.info.mode == RegionMode::Native
                && wanted.iter().any(|((b, s), eps)| {
                    i.info.base == *b
                        && i.info.size == *s
                        && eps.first().map(|(_, d)| d.ways) == Some(i.info.ways)
                })
        };
        let mut still = Vec::new();
        for i in installed.drain(..) {
            if keep(&i) {
                still.push(i);
            } else {
                self.uninstall(&i);
                log::info!("region [{:#x}, +{:#x}) removed", i.info.base, i.info.size);
            }
        }
        *installed = still;
        *self.tree.write().unwrap_or_else(|e| e.into_inner()) = tree;
        let tree = self.tree.read().unwrap_or_else(|e| e.into_inner());
        for ((base, size), eps) in wanted {
            if installed
                .iter()
                .any(|i| i.info.base == base && i.info.size == size)
            {
                continue;
            }
            // A region is usable once every device of its interleave set has
            // committed; until then it is served (as undecoded) by the trap.
            let ways = eps.first().map_or(1, |(_, d)| d.ways);
            if eps.len() < usize::from(ways) {
                continue;
            }
            let gran = eps.first().map_or(PAGE, |(_, d)| u64::from(d.granularity));
            let used: Vec<u32> = installed.iter().filter_map(|i| i.slot).collect();
            let inst = self.install(&tree, &used, base, size, ways, gran, &eps);
            log::info!(
                "region [{base:#x}, +{size:#x}) {}-way x {gran} B: {:?}",
                ways,
                inst.info.mode
            );
            installed.push(inst);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn install(
        &self,
        tree: &DecodeTree,
        used_slots: &[u32],
        base: u64,
        size: u64,
        ways: u8,
        gran: u64,
        eps: &[(usize, DecoderState)],
    ) -> Installed {
        let info = |mode| RegionInfo {
            base,
            size,
            ways,
            granularity: gran,
            mode,
        };
        let trapped = Installed {
            info: info(RegionMode::Trapped),
            slot: None,
            _mapping: None,
        };
        let mapping = if ways == 1 {
            self.device_mapping(tree, base, size, &eps[0])
                .map(HostMapping::Device)
        } else if gran >= PAGE {
            self.composed_mapping(tree, base, size, gran)
                .map(HostMapping::Composed)
        } else {
            None
        };
        let Some(mapping) = mapping else {
            return trapped;
        };
        match self.add_slot(used_slots, base, size, &mapping) {
            Some(slot) => Installed {
                info: info(RegionMode::Native),
                slot: Some(slot),
                _mapping: Some(mapping),
            },
            None => trapped,
        }
    }

    /// An interleaved region: every granule decoded through the tree and
    /// mapped from the backing that holds it.
    fn composed_mapping(
        &self,
        tree: &DecodeTree,
        base: u64,
        size: u64,
        gran: u64,
    ) -> Option<ComposedMapping> {
        let mut pieces = Vec::with_capacity(usize::try_from(size / gran).ok()?);
        for at in (0..size).step_by(usize::try_from(gran).ok()?) {
            let t = tree.decode(base + at)?;
            let slice = self.backings.get(t.device)?.locate(t.dpa)?;
            if slice.len_to_end < gran {
                return None;
            }
            pieces.push(Piece {
                at,
                file: slice.file,
                offset: slice.offset,
                len: gran,
            });
        }
        let pieces = coalesce(pieces);
        // Leave room for everything else the process maps.
        let budget = map_budget(4096);
        if pieces.len() > budget {
            log::warn!(
                "region [{base:#x}, +{size:#x}) needs {} host mappings, {budget} left under \
                 vm.max_map_count: serving it trapped (raise it with \
                 `sysctl vm.max_map_count=...` for native speed)",
                pieces.len()
            );
            return None;
        }
        match ComposedMapping::new(size, &pieces) {
            Ok(m) => Some(m),
            Err(e) => {
                log::warn!(
                    "region [{base:#x}, +{size:#x}): stitching {} mappings failed: {e}",
                    pieces.len()
                );
                None
            }
        }
    }

    /// A 1-way region maps the device's backing file directly, after
    /// checking that the decode tree agrees at both ends.
    fn device_mapping(
        &self,
        tree: &DecodeTree,
        base: u64,
        size: u64,
        ep: &(usize, DecoderState),
    ) -> Option<MmapRegion<()>> {
        let (t, d) = ep;
        let first = tree.decode(base)?;
        let last = tree.decode(base + size - 1)?;
        if first.device != *t || last.device != *t || last.dpa != first.dpa + size - 1 {
            return None;
        }
        let backing = self.backings.get(*t)?;
        let slice = backing.locate(d.dpa_base)?;
        if slice.len_to_end < size {
            return None;
        }
        let file = slice.file.try_clone().ok()?;
        MmapRegion::from_file(
            FileOffset::new(file, slice.offset),
            usize::try_from(size).ok()?,
        )
        .ok()
    }

    fn add_slot(&self, used: &[u32], base: u64, size: u64, mapping: &HostMapping) -> Option<u32> {
        let slot = (FIRST_REGION_SLOT..).find(|s| !used.contains(s))?;
        let region = kvm_userspace_memory_region {
            slot,
            guest_phys_addr: base,
            memory_size: size,
            userspace_addr: mapping.as_ptr() as u64,
            flags: 0,
        };
        // SAFETY: `mapping` is a live shared mapping of `size` bytes that the
        // Installed record keeps until the slot is removed, and the range lies
        // in a CXL window, which overlaps no RAM or other slot.
        match unsafe { self.vm.set_user_memory_region(region) } {
            Ok(()) => Some(slot),
            Err(e) => {
                log::warn!("KVM refused a memory slot for region [{base:#x}, +{size:#x}): {e}; serving it trapped");
                None
            }
        }
    }

    fn uninstall(&self, i: &Installed) {
        if let Some(slot) = i.slot {
            let region = kvm_userspace_memory_region {
                slot,
                guest_phys_addr: i.info.base,
                memory_size: 0,
                userspace_addr: 0,
                flags: 0,
            };
            // SAFETY: deleting a slot (size 0) maps nothing; the mapping is
            // dropped only after KVM stopped using it.
            if let Err(e) = unsafe { self.vm.set_user_memory_region(region) } {
                log::warn!("removing region slot {slot}: {e}");
            }
        }
    }

    /// The regions currently committed, for logging and tests.
    pub fn regions(&self) -> Vec<RegionInfo> {
        self.installed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|i| i.info.clone())
            .collect()
    }
}

/// Serves a CXL window's accesses that KVM did not handle natively: decoded
/// through the tree, read from and written to the device backing.
pub struct WindowTrap {
    base: u64,
    mapper: Arc<RegionMapper>,
}

impl WindowTrap {
    pub fn new(base: u64, mapper: Arc<RegionMapper>) -> Self {
        Self { base, mapper }
    }

    fn for_each_byte_run(
        &self,
        offset: u64,
        len: usize,
        mut f: impl FnMut(usize, &Type3Backing, u64, usize),
    ) {
        let tree = self.mapper.tree.read().unwrap_or_else(|e| e.into_inner());
        let mut done = 0usize;
        while done < len {
            let hpa = self.base + offset + done as u64;
            let Some(t) = tree.decode(hpa) else {
                done += 1;
                continue;
            };
            // Stay inside one 256 B granule: the smallest interleave unit.
            let run = ((256 - (hpa % 256)) as usize).min(len - done);
            if let Some(b) = self.mapper.backings.get(t.device) {
                f(done, b, t.dpa, run);
            }
            done += run;
        }
    }
}

impl BusDevice for WindowTrap {
    fn read(&self, offset: u64, data: &mut [u8]) {
        // Undecoded bytes read as all ones.
        data.fill(0xff);
        self.for_each_byte_run(offset, data.len(), |at, b, dpa, run| {
            b.read(dpa, &mut data[at..at + run])
        });
    }

    fn write(&self, offset: u64, data: &[u8]) {
        self.for_each_byte_run(offset, data.len(), |at, b, dpa, run| {
            if let Err(e) = b.write(dpa, &data[at..at + run]) {
                log::warn!("CXL media write at DPA {dpa:#x} failed: {e}");
            }
        });
    }
}
