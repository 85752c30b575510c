//! Decoder commit → mapped for a big interleaved volatile region: how long
//! the KVM slot layer takes to make it native, and how many host mappings
//! it costs the process (counted in /proc/self/maps), with whatever
//! `vm.max_map_count` the host has.
//!
//! `cargo bench -p vmm --bench region_map [-- --gib N --ways W
//! --granularity G --populated-mib M]` (default 64 GiB, 4 ways, 4096 B,
//! 0 MiB) prints one JSON object. `--populated-mib` writes that much
//! through the devices' 1-way view first (spread over the members), which
//! the commit then moves into the region and the teardown back. Needs
//! /dev/kvm; without it the object says "skipped".

use std::sync::Arc;
use std::time::Instant;

use devices::cxl::backing::Type3Backing;
use devices::cxl::component::DecoderState;
use fabric::interleave::{Arithmetic, DecodeTree, EndpointDecode, Node, RootDecode};
use vmm::cxl::regions::tree::WantedRegion;
use vmm::cxl::regions::{KvmSlots, RegionInfo, RegionMode, SlotLayer};
use vmm::guest_map::guard::{Placement, SlotGuard};
use vmm::guest_map::{MapItem, MapKind};

mod args;
use args::arg;

/// The window sits at 64 GiB of guest-physical space.
const BASE: u64 = 1 << 36;

fn maps() -> usize {
    std::fs::read_to_string("/proc/self/maps")
        .map(|s| s.lines().count())
        .unwrap_or(0)
}

fn max_map_count() -> u64 {
    std::fs::read_to_string("/proc/sys/vm/max_map_count")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// A window interleaved `ways` ways straight onto the endpoints, each
/// committed over the whole window from DPA 0.
fn tree(size: u64, ways: u8, g: u64) -> DecodeTree {
    DecodeTree {
        roots: vec![RootDecode {
            base: BASE,
            size,
            ways,
            granularity: g,
            arithmetic: Arithmetic::Modulo,
            targets: (0..usize::from(ways)).collect(),
        }],
        nodes: (0..usize::from(ways))
            .map(|device| Node::Endpoint {
                device,
                decoders: vec![EndpointDecode {
                    base: BASE,
                    size,
                    ways,
                    granularity: g,
                    dpa_base: 0,
                }],
            })
            .collect(),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let gib = arg(&args, "--gib", 64);
    let ways = arg(&args, "--ways", 4) as u8;
    let g = arg(&args, "--granularity", 4096);
    let populated_mib = arg(&args, "--populated-mib", 0);
    let size = gib << 30;
    let share = size / u64::from(ways);
    let vm = match kvm_ioctls::Kvm::new().and_then(|k| k.create_vm()) {
        Ok(vm) => Arc::new(vm),
        Err(e) => {
            println!("{{\"bench\": \"region_map\", \"skipped\": \"no KVM: {e}\"}}");
            return;
        }
    };
    let maps_at_start = maps();
    let backings: Vec<Arc<Type3Backing>> = (0..ways)
        .map(|i| Arc::new(Type3Backing::new(&format!("bench{i}"), share, 0, None).unwrap()))
        .collect();
    // Bytes written through the 1-way view before the commit.
    let per_device = (populated_mib << 20) / u64::from(ways);
    let chunk = vec![0xa5u8; 1 << 20];
    for b in &backings {
        for at in (0..per_device).step_by(chunk.len()) {
            let n = (per_device - at).min(chunk.len() as u64) as usize;
            b.write(at, &chunk[..n]).unwrap();
        }
    }
    let slots = KvmSlots::new(vm, backings.clone()).gather_in(&[(BASE, size)]);
    let maps_before = maps();
    let guard = SlotGuard::new(vec![MapItem::new("window", MapKind::CxlWindow, BASE, size)]);
    let tree = tree(size, ways, g);
    let decoder = DecoderState {
        index: 0,
        base: BASE,
        size,
        ways,
        granularity: g as u32,
        targets: Vec::new(),
        dpa_skip: 0,
        dpa_base: 0,
        locked: false,
    };
    let region = WantedRegion {
        base: BASE,
        size,
        ways,
        granularity: g,
        endpoints: (0..usize::from(ways))
            .map(|t| (t, decoder.clone()))
            .collect(),
    };
    let start = Instant::now();
    let claim = guard
        .claim("bench region", BASE, size, Placement::CxlWindow)
        .unwrap();
    let mapping = slots.map(&tree, &region, claim);
    let commit_s = start.elapsed().as_secs_f64();
    let maps_mapped = maps();
    let mode = if mapping.is_some() {
        RegionMode::Native
    } else {
        RegionMode::Trapped
    };
    // What a device reads by DPA while the region is native: the bytes
    // written before, wherever they live now.
    let mut probe = [0u8; 1];
    let last = backings.len() - 1;
    backings[last].read(per_device.saturating_sub(1), &mut probe);
    let intact = per_device == 0 || probe[0] == 0xa5;
    let info = RegionInfo {
        base: BASE,
        size,
        ways,
        granularity: g,
        mode,
    };
    let start = Instant::now();
    if let Some(m) = mapping {
        slots.unmap(&info, m);
    }
    let teardown_s = start.elapsed().as_secs_f64();
    backings[last].read(per_device.saturating_sub(1), &mut probe);
    let intact_after = per_device == 0 || probe[0] == 0xa5;
    println!(
        "{{\"bench\": \"region_map\", \"region_gib\": {gib}, \"ways\": {ways}, \
         \"granularity\": {g}, \"populated_mib\": {populated_mib}, \"mode\": \"{mode:?}\", \
         \"commit_ms\": {:.3}, \"teardown_ms\": {:.3}, \"maps_at_start\": {maps_at_start}, \
         \"maps_before_commit\": {maps_before}, \"maps_while_mapped\": {maps_mapped}, \
         \"maps_added_by_commit\": {}, \"stitched_would_need\": {}, \
         \"max_map_count\": {}, \"bytes_intact\": {intact}, \
         \"bytes_back_after_teardown\": {intact_after}}}",
        commit_s * 1e3,
        teardown_s * 1e3,
        maps_mapped as i64 - maps_before as i64,
        size / g,
        max_map_count()
    );
}
