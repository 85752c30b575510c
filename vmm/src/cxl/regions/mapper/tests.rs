//! The mapper against a fake slot layer, driven through real component
//! register blocks as the guest drives them.

use std::collections::BTreeSet;
use std::sync::Barrier;

use devices::cxl::component::{ComponentKind, ComponentRegisters, HdmConfig};
use devices::BusDevice;
use fabric::topology::Topology;

use super::*;
use crate::cxl::plan::{plan, CxlPlan};

const MIB: u64 = 1 << 20;
/// Decoder 0's registers in a component block (HDM capability at 0x1128).
const DEC0: u64 = 0x1128 + 0x10;

/// A slot layer that checks what a real one relies on: a region is mapped
/// only while the published tree decodes it to its own devices, live
/// mappings never overlap, and every mapping is unmapped exactly once.
#[derive(Default)]
struct FakeSlots {
    live: Mutex<BTreeSet<(u64, u64)>>,
    maps: AtomicU64,
    unmaps: AtomicU64,
}

impl SlotLayer for FakeSlots {
    type Mapping = (u64, u64);

    fn map(&self, tree: &DecodeTree, region: &WantedRegion) -> Option<(u64, u64)> {
        // A real slot takes a while (an ioctl, maybe thousands of mmaps):
        // give the other thread the chance to race.
        std::thread::yield_now();
        let first = tree.decode(region.base)?;
        assert!(
            region.endpoints.iter().any(|(t, _)| *t == first.device),
            "tree and region disagree at {:#x}",
            region.base
        );
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
        Some((region.base, region.size))
    }

    fn unmap(&self, region: &RegionInfo, mapping: (u64, u64)) {
        assert_eq!((region.base, region.size), mapping);
        assert!(lock(&self.live).remove(&mapping), "unmapped twice");
        self.unmaps.fetch_add(1, Ordering::SeqCst);
    }
}

/// Two host bridges with one root port each (passthrough) and a 256 MiB
/// device on each; one 1-way window per host bridge.
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
size = "256M"
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
    mapper: Arc<RegionMapper<FakeSlots>>,
}

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
                    dpa_capacity: 256 * MIB,
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
    let mapper = RegionMapper::new(Layout::new(&topo, &plan), sources, FakeSlots::default());
    Rig {
        plan,
        endpoints,
        mapper,
    }
}

fn wr32(block: &ComponentBlock, offset: u64, value: u32) {
    block.write(offset, &value.to_le_bytes());
}

/// Programs endpoint decoder 0 over `[base, +256 MiB)` and commits it, as
/// Linux's setup_hw_decoder() does.
fn commit(block: &ComponentBlock, base: u64) {
    wr32(block, DEC0, base as u32);
    wr32(block, DEC0 + 4, (base >> 32) as u32);
    wr32(block, DEC0 + 8, (256 * MIB) as u32);
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
