//! The mapper against a fake slot layer, driven through real component
//! register blocks as the guest drives them.

use std::collections::BTreeSet;
use std::sync::Barrier;

use devices::cxl::component::{ComponentKind, ComponentRegisters, HdmConfig};
use devices::BusDevice;
use fabric::topology::Topology;

use super::*;
use crate::cxl::plan::{plan, CxlPlan};
use crate::guest_map::guest_map;

const MIB: u64 = 1 << 20;
/// Decoder 0's registers in a component block (HDM capability at 0x1128).
const DEC0: u64 = 0x1128 + 0x10;

/// A slot layer that checks what a real one relies on: it maps exactly the
/// claimed range, only while the published tree decodes it to its own
/// devices (else, like KVM's, it leaves the region trapped), live mappings
/// never overlap, and every mapping is unmapped exactly once.
#[derive(Default)]
struct FakeSlots {
    live: Mutex<BTreeSet<(u64, u64)>>,
    maps: AtomicU64,
    unmaps: AtomicU64,
}

impl SlotLayer for FakeSlots {
    /// The range, and the claim held as long as the "slot" lives.
    type Mapping = ((u64, u64), SlotClaim);

    fn map(
        &self,
        tree: &DecodeTree,
        region: &WantedRegion,
        claim: SlotClaim,
    ) -> Option<Self::Mapping> {
        assert_eq!((claim.start(), claim.size()), (region.base, region.size));
        // A real slot takes a while (an ioctl, maybe thousands of mmaps):
        // give the other thread the chance to race.
        std::thread::yield_now();
        let first = tree.decode(region.base)?;
        if !region.endpoints.iter().any(|(t, _)| *t == first.device) {
            return None;
        }
        let mut live = lock(&self.live);
        let end = region.base + region.size;
        assert!(
            live.iter().all(|&(b, s)| end <= b || b + s <= region.base),
            "mapping [{:#x}, +{:#x}) over a live one: {live:?}",
            region.base,
            region.size
        );
        live.insert((region.base, region.size));
        self.maps.fetch_add(1, Ordering::SeqCst);
        Some(((region.base, region.size), claim))
    }

    fn unmap(&self, region: &RegionInfo, (mapping, _claim): Self::Mapping) {
        assert_eq!((region.base, region.size), mapping);
        assert!(lock(&self.live).remove(&mapping), "unmapped twice");
        self.unmaps.fetch_add(1, Ordering::SeqCst);
    }
}

/// Two host bridges with one root port each (passthrough) and a 256 MiB
/// device on each; one 1-way window per host bridge, hb0's 1 GiB.
const TWO_HB: &str = r#"
[[host_bridge]]
id = "hb0"
root_ports = 1
[[host_bridge]]
id = "hb1"
root_ports = 1
[[type3]]
id = "mem0"
port = "hb0.rp0"
volatile = "256M"
[[type3]]
id = "mem1"
port = "hb1.rp0"
volatile = "256M"
[[window]]
id = "w0"
targets = ["hb0"]
size = "1G"
granularity = 4096
restrictions = ["ram"]
[[window]]
id = "w1"
targets = ["hb1"]
size = "256M"
granularity = 4096
restrictions = ["ram"]
"#;

struct Rig {
    plan: CxlPlan,
    endpoints: Vec<Arc<ComponentBlock>>,
    guard: Arc<SlotGuard>,
    mapper: Arc<RegionMapper<FakeSlots>>,
}

/// Guest RAM in the rig's map.
const RAM: u64 = 1 << 30;

fn rig() -> Rig {
    let topo = Topology::from_toml_str(TWO_HB).unwrap();
    let plan = plan(&topo, (0xc100_0000, 0xe000_0000), 1 << 30).unwrap();
    let block = |kind, hdm| Arc::new(ComponentBlock::new(ComponentRegisters::new(kind, hdm)));
    let hbs = (0..2)
        .map(|_| block(ComponentKind::HostBridge, None))
        .collect();
    let endpoints: Vec<_> = (0..2)
        .map(|_| {
            block(
                ComponentKind::Endpoint,
                Some(HdmConfig {
                    // More than the topology says: what the decoders may
                    // claim is the mapper's to check, not the device's.
                    dpa_capacity: 512 * MIB,
                    ..HdmConfig::default()
                }),
            )
        })
        .collect();
    let sources = DecoderSources {
        host_bridges: hbs,
        switches: Vec::new(),
        type3: endpoints.iter().cloned().enumerate().collect(),
    };
    let guard = SlotGuard::new(guest_map(RAM, Some((&topo, &plan))).unwrap());
    let mapper = RegionMapper::new(
        Layout::new(&topo, &plan),
        sources,
        FakeSlots::default(),
        guard.clone(),
    );
    Rig {
        plan,
        endpoints,
        guard,
        mapper,
    }
}

fn wr32(block: &ComponentBlock, offset: u64, value: u32) {
    block.write(offset, &value.to_le_bytes());
}

/// Programs endpoint decoder 0 over `[base, +256 MiB)` and commits it, as
/// Linux's setup_hw_decoder() does.
fn commit(block: &ComponentBlock, base: u64) {
    commit_sized(block, base, 256 * MIB);
}

fn commit_sized(block: &ComponentBlock, base: u64, size: u64) {
    wr32(block, DEC0, base as u32);
    wr32(block, DEC0 + 4, (base >> 32) as u32);
    wr32(block, DEC0 + 8, size as u32);
    wr32(block, DEC0 + 0xc, (size >> 32) as u32);
    wr32(block, DEC0 + 0x10, (1 << 9) | (1 << 12));
}

fn reset(block: &ComponentBlock) {
    wr32(block, DEC0 + 0x10, 1 << 12);
}

fn bases(m: &RegionMapper<FakeSlots>) -> Vec<u64> {
    m.regions().iter().map(|r| r.base).collect()
}

#[test]
fn a_commit_is_installed_before_the_write_returns_and_a_reset_removed() {
    let r = rig();
    let w0 = r.plan.windows[0].base;
    commit(&r.endpoints[0], w0);
    assert_eq!(bases(&r.mapper), vec![w0]);
    assert_eq!(r.mapper.regions()[0].mode, RegionMode::Native);
    assert_eq!(r.mapper.generation(), 1);
    let tree = r.mapper.tree().get();
    assert_eq!(tree.decode(w0 + 5).map(|t| (t.device, t.dpa)), Some((0, 5)));
    reset(&r.endpoints[0]);
    assert_eq!(bases(&r.mapper), Vec::<u64>::new());
    assert_eq!(r.mapper.tree().get().decode(w0), None);
    assert_eq!(r.mapper.generation(), 2);
    // Writes that commit nothing request nothing.
    wr32(&r.endpoints[0], DEC0 + 8, 0);
    assert_eq!(r.mapper.generation(), 2);
}

#[test]
fn an_older_generation_never_overwrites_a_newer_one() {
    let r = rig();
    let w0 = r.plan.windows[0].base;
    // A change reported late (its writer slow to call sync) finds a newer
    // generation already installed and leaves it alone.
    let old = r.mapper.request();
    commit(&r.endpoints[0], w0);
    assert_eq!(r.mapper.generation(), 2);
    r.mapper.sync(old);
    assert_eq!(r.mapper.generation(), 2);
    assert_eq!(bases(&r.mapper), vec![w0]);
    assert_eq!(r.mapper.slots.maps.load(Ordering::SeqCst), 1, "no rebuild");
}

#[test]
fn concurrent_commits_from_two_threads_end_with_the_newest_tree() {
    const ROUNDS: usize = 1000;
    let r = rig();
    let windows = [r.plan.windows[0].base, r.plan.windows[1].base];
    let start = Barrier::new(2);
    std::thread::scope(|s| {
        for (t, &base) in windows.iter().enumerate() {
            let (r, start) = (&r, &start);
            s.spawn(move || {
                start.wait();
                for round in 0..ROUNDS {
                    // Each thread is a vCPU: once its write returns, its own
                    // region is installed, and stays so until it resets it,
                    // whatever the other thread installs meanwhile.
                    commit(&r.endpoints[t], base);
                    for _ in 0..4 {
                        assert!(bases(&r.mapper).contains(&base), "thread {t} round {round}");
                        let tree = r.mapper.tree().get();
                        assert_eq!(tree.decode(base).map(|x| x.device), Some(t));
                        std::thread::yield_now();
                    }
                    reset(&r.endpoints[t]);
                    assert!(
                        !bases(&r.mapper).contains(&base),
                        "thread {t} round {round}"
                    );
                }
                commit(&r.endpoints[t], base);
            });
        }
    });
    // Both last commits are installed, nothing stale is left, and every
    // requested generation is covered.
    let mut installed = bases(&r.mapper);
    installed.sort_unstable();
    let mut windows = windows.to_vec();
    windows.sort_unstable();
    assert_eq!(installed, windows);
    assert_eq!(
        *lock(&r.mapper.slots.live),
        windows.iter().map(|&b| (b, 256 * MIB)).collect()
    );
    let requested = r.mapper.requested.load(Ordering::SeqCst);
    assert_eq!(requested, 2 * (2 * ROUNDS as u64 + 1));
    assert_eq!(r.mapper.generation(), requested);
    let (maps, unmaps) = (
        r.mapper.slots.maps.load(Ordering::SeqCst),
        r.mapper.slots.unmaps.load(Ordering::SeqCst),
    );
    assert_eq!(maps - unmaps, 2);
}

fn modes(m: &RegionMapper<FakeSlots>) -> Vec<(u64, RegionMode)> {
    m.regions().iter().map(|r| (r.base, r.mode)).collect()
}

/// Every live fake slot lies inside one of the plan's windows.
fn slots_inside_windows(r: &Rig) {
    for &(b, s) in lock(&r.mapper.slots.live).iter() {
        assert!(
            r.plan
                .windows
                .iter()
                .any(|w| w.base <= b && b + s <= w.base + w.size),
            "slot [{b:#x}, +{s:#x}) outside every window"
        );
    }
}

#[test]
fn decoders_committed_over_ram_or_past_their_window_get_no_slot() {
    let r = rig();
    let w0 = r.plan.windows[0].base;
    // Over guest RAM (the device accepts any aligned base; it knows no
    // windows), then straddling the end of hb0's 1 GiB window.
    for (base, size) in [
        (0, 256 * MIB),
        (256 * MIB, 256 * MIB),
        (w0 + 768 * MIB, 512 * MIB),
    ] {
        commit_sized(&r.endpoints[0], base, size);
        assert_eq!(modes(&r.mapper), vec![(base, RegionMode::Refused)]);
        assert_eq!(r.mapper.slots.maps.load(Ordering::SeqCst), 0);
        reset(&r.endpoints[0]);
    }
    // Inside the window again: mapped.
    commit(&r.endpoints[0], w0);
    assert_eq!(modes(&r.mapper), vec![(w0, RegionMode::Native)]);
    slots_inside_windows(&r);
}

#[test]
fn a_region_over_another_regions_slot_is_refused_until_that_one_goes() {
    let r = rig();
    let w0 = r.plan.windows[0].base;
    commit(&r.endpoints[0], w0);
    // mem1 (behind hb1) commits a range overlapping mem0's region in hb0's
    // window: the guard refuses it a slot.
    commit_sized(&r.endpoints[1], w0, 512 * MIB);
    assert_eq!(
        modes(&r.mapper),
        vec![(w0, RegionMode::Native), (w0, RegionMode::Refused)]
    );
    let claims = r.guard.claims();
    assert_eq!(claims.len(), 1);
    assert!(claims[0].0.contains("mem0 decoder 0"), "{claims:?}");
    // Once mem0 resets, mem1's region is re-evaluated: the guard lets it
    // claim the range now, but it decodes to nothing through hb0, so it
    // stays trapped rather than mapped over mem0's device.
    reset(&r.endpoints[0]);
    assert_eq!(modes(&r.mapper), vec![(w0, RegionMode::Trapped)]);
    assert!(r.guard.claims().is_empty());
    slots_inside_windows(&r);
}

#[test]
fn a_slot_someone_else_claimed_in_a_window_is_not_mapped_over() {
    let r = rig();
    let w0 = r.plan.windows[0].base;
    // Device memory another layer placed in the window (as a BAR would be
    // in a PCI window): a region over it gets no slot.
    let other = r
        .guard
        .claim(
            "test device",
            w0 + 4096,
            4096,
            crate::guest_map::guard::Placement::CxlWindow,
        )
        .unwrap();
    commit(&r.endpoints[0], w0);
    assert_eq!(modes(&r.mapper), vec![(w0, RegionMode::Refused)]);
    drop(other);
    reset(&r.endpoints[0]);
    commit(&r.endpoints[0], w0);
    assert_eq!(modes(&r.mapper), vec![(w0, RegionMode::Native)]);
}
