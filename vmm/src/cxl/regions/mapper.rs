//! The region mapper: decoder commits and resets in, installed regions out.
//!
//! Each change is one serialised operation: under one lock, read every
//! component's decoders, build the decode tree, diff the wanted regions
//! against the installed ones, remove what went, publish the new tree, map
//! what came. Each change the guest makes is stamped with a generation
//! number when it is reported ([`RegionMapper::request`]); an operation
//! covers every generation requested before it read the decoders, and the
//! writer of a change waits ([`RegionMapper::sync`]) until a covering
//! operation has finished. So the newest decoders always end up installed,
//! a slow rebuild can never overwrite a newer one, and the vCPU whose write
//! committed a decoder re-enters the guest only once the region it opened
//! is mapped. Memory slots are the [`SlotLayer`]'s business (KVM in the VMM,
//! a fake in the tests here), and only over ranges the [`SlotGuard`] let it
//! claim: inside a CXL window, clear of RAM, devices and other slots.
//! Whatever the guest committed, a region the guard refuses gets no slot
//! (the trapped path still serves what the tree decodes inside a window).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use devices::bus::lock;
use devices::cxl::component::{ComponentBlock, HdmEvent, HdmEventSink};
use fabric::interleave::DecodeTree;

use crate::guest_map::guard::{Placement, SlotClaim, SlotGuard};

use super::diff::diff;
use super::tree::{DecoderSnapshot, Layout, TreeCell, WantedRegion};
use super::LOG_TARGET;
use super::{RegionInfo, RegionMode};

/// Turns a region into guest memory (a KVM memory slot over the devices'
/// backings) and back.
pub trait SlotLayer: Send + Sync + 'static {
    /// What keeps a mapped region's host memory alive.
    type Mapping: Send;
    /// Maps `region` natively, its bytes placed as `tree` decodes them, over
    /// exactly the range of `claim` (which the mapping keeps until unmapped);
    /// `None` leaves it to the trapped path.
    fn map(
        &self,
        tree: &DecodeTree,
        region: &WantedRegion,
        claim: SlotClaim,
    ) -> Option<Self::Mapping>;
    /// Unmaps a region `map` mapped.
    fn unmap(&self, region: &RegionInfo, mapping: Self::Mapping);
}

/// Component register blocks whose decoders feed the map: host bridges by
/// index; switches and type-3s as (topology index, block).
pub struct DecoderSources {
    pub host_bridges: Vec<Arc<ComponentBlock>>,
    pub switches: Vec<(usize, Arc<ComponentBlock>)>,
    pub type3: Vec<(usize, Arc<ComponentBlock>)>,
}

impl DecoderSources {
    fn blocks(&self) -> impl Iterator<Item = &Arc<ComponentBlock>> {
        self.host_bridges
            .iter()
            .chain(self.switches.iter().map(|(_, b)| b))
            .chain(self.type3.iter().map(|(_, b)| b))
    }

    fn snapshot(&self) -> DecoderSnapshot {
        DecoderSnapshot {
            host_bridges: self
                .host_bridges
                .iter()
                .map(|b| b.committed_decoders())
                .collect(),
            switches: self
                .switches
                .iter()
                .map(|(s, b)| (*s, b.committed_decoders()))
                .collect(),
            type3: self
                .type3
                .iter()
                .map(|(t, b)| (*t, b.committed_decoders()))
                .collect(),
        }
    }
}

struct Installed<M> {
    info: RegionInfo,
    /// `None` for a trapped region.
    mapping: Option<M>,
}

struct MapState<M> {
    /// Every change requested up to this generation is installed.
    generation: u64,
    installed: Vec<Installed<M>>,
}

pub struct RegionMapper<S: SlotLayer> {
    layout: Layout,
    sources: DecoderSources,
    slots: S,
    guard: Arc<SlotGuard>,
    tree: Arc<TreeCell>,
    /// The newest generation requested.
    requested: AtomicU64,
    state: Mutex<MapState<S::Mapping>>,
}

impl<S: SlotLayer> RegionMapper<S> {
    /// A mapper with nothing installed, receiving the decoder events of
    /// every block in `sources`; its slots go where `guard` allows.
    pub fn new(
        layout: Layout,
        sources: DecoderSources,
        slots: S,
        guard: Arc<SlotGuard>,
    ) -> Arc<Self> {
        let mapper = Arc::new(Self {
            layout,
            sources,
            slots,
            guard,
            tree: Arc::default(),
            requested: AtomicU64::new(0),
            state: Mutex::new(MapState {
                generation: 0,
                installed: Vec::new(),
            }),
        });
        // The blocks hold the mapper weakly: it owns them, not they it.
        let link: Arc<dyn HdmEventSink> = Arc::new(MapperLink(Arc::downgrade(&mapper)));
        for block in mapper.sources.blocks() {
            if !block.set_event_sink(link.clone()) {
                log::warn!(
                    target: LOG_TARGET,
                    "a component block already reports to another region mapper"
                );
            }
        }
        mapper
    }

    /// The decode tree, for the trapped path.
    pub fn tree(&self) -> Arc<TreeCell> {
        self.tree.clone()
    }

    /// Records that decoders changed (the change is already in the
    /// registers); returns the generation that will include it.
    pub fn request(&self) -> u64 {
        self.requested.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// Returns once `generation` (or a newer one) is installed, installing
    /// it first if nobody has.
    pub fn sync(&self, generation: u64) {
        let mut state = lock(&self.state);
        if state.generation >= generation {
            return;
        }
        // Every change requested so far is in the registers already (each
        // is made before it is requested), so the decoders read next hold
        // at least everything up to `covers`.
        let covers = self.requested.load(Ordering::SeqCst);
        let decoders = self.sources.snapshot();
        log::debug!(
            target: LOG_TARGET,
            "generation {covers}: decoders: host bridges {:?}; switches {:?}; endpoints {:?}",
            decoders.host_bridges,
            decoders.switches,
            decoders.type3
        );
        let tree = self.layout.tree(&decoders);
        let infos: Vec<RegionInfo> = state.installed.iter().map(|i| i.info.clone()).collect();
        let change = diff(&infos, decoders.wanted_regions());
        // Regions that went are unmapped before the tree that no longer
        // decodes them is published, and before anything new takes a slot.
        let before = std::mem::take(&mut state.installed);
        for (n, i) in before.into_iter().enumerate() {
            if !change.remove.contains(&n) {
                state.installed.push(i);
                continue;
            }
            if let Some(m) = i.mapping {
                self.slots.unmap(&i.info, m);
            }
            let (base, size) = (i.info.base, i.info.size);
            log::info!(target: LOG_TARGET, "region [{base:#x}, +{size:#x}) removed");
        }
        self.tree.set(tree);
        let tree = self.tree.get();
        for w in change.add {
            let owner = self.layout.describe(&w);
            let (mapping, mode) =
                match self
                    .guard
                    .claim(&owner, w.base, w.size, Placement::CxlWindow)
                {
                    Err(_) => (None, RegionMode::Refused),
                    Ok(claim) => match self.slots.map(&tree, &w, claim) {
                        Some(m) => (Some(m), RegionMode::Native),
                        None => (None, RegionMode::Trapped),
                    },
                };
            log::info!(
                target: LOG_TARGET,
                "region [{:#x}, +{:#x}) {}-way x {} B: {mode:?}",
                w.base,
                w.size,
                w.ways,
                w.granularity
            );
            state.installed.push(Installed {
                info: RegionInfo {
                    base: w.base,
                    size: w.size,
                    ways: w.ways,
                    granularity: w.granularity,
                    mode,
                },
                mapping,
            });
        }
        state.generation = covers;
    }

    /// Installs whatever the decoders say now.
    pub fn refresh(&self) {
        self.sync(self.request());
    }

    /// The newest generation installed.
    pub fn generation(&self) -> u64 {
        lock(&self.state).generation
    }

    /// The regions installed, for logging and tests.
    pub fn regions(&self) -> Vec<RegionInfo> {
        lock(&self.state)
            .installed
            .iter()
            .map(|i| i.info.clone())
            .collect()
    }
}

/// Delivers a block's decoder events to the mapper, on the writing vCPU's
/// thread: the write (and so the vCPU) waits until the change is installed.
struct MapperLink<S: SlotLayer>(Weak<RegionMapper<S>>);

impl<S: SlotLayer> HdmEventSink for MapperLink<S> {
    fn hdm_event(&self, event: HdmEvent) {
        if let Some(mapper) = self.0.upgrade() {
            let generation = mapper.request();
            log::debug!(target: LOG_TARGET, "{event:?}: installing generation {generation}");
            mapper.sync(generation);
        }
    }
}

#[cfg(test)]
mod tests;
