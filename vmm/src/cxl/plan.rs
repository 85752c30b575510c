//! Where every part of the CXL hierarchy lives in the guest: bus numbers,
//! device/function addresses, BAR addresses and bridge windows (assigned the
//! way firmware would, so the guest keeps them), CHBCR blocks and CFMWS
//! windows. Pure arithmetic over the topology; testable without KVM.
//! Addresses come from vm-allocator's `AddressAllocator`, one per bus window.

use fabric::topology::{Attach, ElementRef, Topology};
use vm_allocator::{AddressAllocator, AllocPolicy};

use crate::layout::{high_mmio_start, CHBCR_AREA_SIZE, CHBCR_START};

/// First bus number used by CXL host bridges; buses below stay with the
/// main PCI root bridge (PCI0).
pub const FIRST_CXL_BUS: u8 = 0x10;
/// Every BAR gets a slot this large and this aligned (our register blocks,
/// device registers and MSI-X tables are all at most 64 KiB).
pub const BAR_SLOT: u64 = 0x1_0000;
/// PCI bridge memory windows have 1 MiB granularity.
const WINDOW_ALIGN: u64 = 1 << 20;
/// CHBCR blocks are 64 KiB each (CHBS version 1, CXL 2.0+), one per host
/// bridge in the CHBCR area of the 32-bit hole.
pub const CHBCR_SIZE: u64 = 0x1_0000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FunctionKind {
    RootPort { host_bridge: usize, port: u32 },
    SwitchUpstream { switch: usize },
    SwitchDownstream { switch: usize, port: u32 },
    Type3 { index: usize },
    Accelerator { index: usize },
}

impl FunctionKind {
    pub fn is_bridge(&self) -> bool {
        !matches!(
            self,
            FunctionKind::Type3 { .. } | FunctionKind::Accelerator { .. }
        )
    }
}

/// One PCI function of the hierarchy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FunctionPlan {
    pub kind: FunctionKind,
    pub bus: u8,
    pub device: u8,
    /// For bridges: secondary and subordinate bus.
    pub secondary: u8,
    pub subordinate: u8,
    /// Guest addresses of BAR slots 0, 2, 4 (64-bit BARs), if used; each
    /// BAR's size is [`bar_sizes`]'.
    pub bars: Vec<(usize, u64)>,
    /// For bridges: the memory window [base, limit] it forwards.
    pub window: Option<(u64, u64)>,
    /// LNKCAP port number (dport id in HDM target lists).
    pub port_number: u8,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostBridgePlan {
    pub uid: u32,
    pub root_bus: u8,
    pub last_bus: u8,
    pub mmio: (u64, u64),
    pub chbcr: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WindowPlan {
    pub base: u64,
    pub size: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CxlPlan {
    pub host_bridges: Vec<HostBridgePlan>,
    pub functions: Vec<FunctionPlan>,
    pub windows: Vec<WindowPlan>,
    /// End of the CXL windows (the start of the high MMIO area if there
    /// are none); 64-bit PCI windows go above it.
    pub high_end: u64,
}

impl CxlPlan {
    /// Each fixed memory window's host-physical range, as (base, size).
    pub fn window_ranges(&self) -> Vec<(u64, u64)> {
        self.windows.iter().map(|w| (w.base, w.size)).collect()
    }

    /// Where INTx `pin` of the function at (`bus`, `device`) arrives on its
    /// root bus: (slot there, pin there), swizzled through every bridge on
    /// the way up as the OS computes it. None if `bus` hangs off no root bus.
    pub fn intx_root_route(&self, mut bus: u8, mut device: u8, mut pin: u8) -> Option<(u8, u8)> {
        // Each step moves one bus closer to the root; 256 buses bound it.
        for _ in 0..256 {
            if self.host_bridges.iter().any(|hb| hb.root_bus == bus) {
                return Some((device, pin));
            }
            let bridge = self
                .functions
                .iter()
                .find(|f| f.kind.is_bridge() && f.secondary == bus)?;
            pin = crate::irq::swizzle(device, pin);
            (bus, device) = (bridge.bus, bridge.device);
        }
        None
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlanError {
    #[error("the CXL hierarchy needs more than 256 PCI buses")]
    OutOfBuses,
    #[error("the CXL hierarchy's BARs do not fit in the 32-bit PCI window [{0:#x}, {1:#x})")]
    OutOfMmio(u64, u64),
    #[error("{0} host bridges need more CHBCR space than the {1:#x} bytes at {2:#x}")]
    OutOfChbcr(usize, u64, u64),
    #[error(
        "window '{id}' at base {base:#x} is below {floor:#x}: CXL windows must sit above 4 GiB \
         and above guest RAM (drop its `base` to let cxlvmm place it)"
    )]
    WindowBelowFloor { id: String, base: u64, floor: u64 },
    #[error("window '{id}' at base {base:#x} overlaps another window")]
    WindowOverlap { id: String, base: u64 },
    #[error(
        "window '{id}' ends at {end:#x}, beyond the guest's {bits}-bit physical address space \
         (with this much RAM, the windows need smaller sizes)"
    )]
    WindowBeyondAddressSpace { id: String, end: u64, bits: u8 },
}

/// BAR slots a function uses and their sizes: components on BAR0; type-3
/// also device registers on BAR2 and MSI-X on BAR4; an accelerator its
/// registers on BAR0, VRAM on BAR2 (as large as the VRAM, a power of two)
/// and MSI-X on BAR4 (`docs/accelerator.md` §1).
pub fn bar_sizes(topo: &Topology, kind: FunctionKind) -> Vec<(usize, u64)> {
    match kind {
        FunctionKind::Type3 { .. } => vec![(0, BAR_SLOT), (2, BAR_SLOT), (4, BAR_SLOT)],
        FunctionKind::Accelerator { index } => {
            let vram = topo.accelerators[index].vram_size;
            vec![
                (0, BAR_SLOT),
                (2, vram.max(BAR_SLOT).next_power_of_two()),
                (4, BAR_SLOT),
            ]
        }
        _ => vec![(0, BAR_SLOT)],
    }
}

/// Assigns buses depth-first and addresses top-down, as PCI firmware does:
/// first every subtree's footprint is sized, then each bus's bridge windows
/// and BARs are carved out of its parent window with a vm-allocator
/// [`AddressAllocator`] (windows first: they have the larger alignment).
struct Planner<'a> {
    topo: &'a Topology,
    next_bus: u16,
    functions: Vec<FunctionPlan>,
}

/// What hangs below a bridge: (kind, device number, LNKCAP port number).
type Child = (FunctionKind, u8, u8);

fn align_window(size: u64) -> u64 {
    size.max(1).next_multiple_of(WINDOW_ALIGN)
}

impl Planner<'_> {
    fn take_bus(&mut self) -> Result<u8, PlanError> {
        let b = u8::try_from(self.next_bus).map_err(|_| PlanError::OutOfBuses)?;
        self.next_bus += 1;
        Ok(b)
    }

    /// The functions on the secondary bus of a bridge of this kind.
    fn children(&self, kind: FunctionKind) -> Vec<Child> {
        let below = |at| match self.topo.child_at(at) {
            Some(ElementRef::Switch(s)) => vec![(FunctionKind::SwitchUpstream { switch: s }, 0, 0)],
            Some(ElementRef::Type3(t)) => vec![(FunctionKind::Type3 { index: t }, 0, 0)],
            Some(ElementRef::Accelerator(a)) => {
                vec![(FunctionKind::Accelerator { index: a }, 0, 0)]
            }
            _ => Vec::new(),
        };
        match kind {
            FunctionKind::RootPort { host_bridge, port } => {
                below(Attach::RootPort { host_bridge, port })
            }
            FunctionKind::SwitchDownstream { switch, port } => {
                below(Attach::SwitchPort { switch, port })
            }
            FunctionKind::SwitchUpstream { switch } => (0..self.topo.switches[switch]
                .downstream_ports)
                .map(|p| {
                    (
                        FunctionKind::SwitchDownstream { switch, port: p },
                        p as u8,
                        p as u8,
                    )
                })
                .collect(),
            FunctionKind::Type3 { .. } | FunctionKind::Accelerator { .. } => Vec::new(),
        }
    }

    /// What the functions of one bus take from the window above them, in
    /// the order they are placed: largest alignment first (stable, so
    /// equal ones keep device order).
    fn bus_items(&self, children: &[Child]) -> Vec<Item> {
        let mut items = Vec::new();
        for (i, &(kind, ..)) in children.iter().enumerate() {
            if kind.is_bridge() {
                // A bridge with nothing behind still gets a 1 MiB window:
                // harmless, and keeps the arithmetic uniform.
                let (size, align) = self.bus_extent(&self.children(kind));
                items.push(Item {
                    child: i,
                    bar: None,
                    size: align_window(size),
                    align: align.max(WINDOW_ALIGN),
                });
            }
            for (bar, size) in bar_sizes(self.topo, kind) {
                items.push(Item {
                    child: i,
                    bar: Some(bar),
                    size,
                    align: size,
                });
            }
        }
        items.sort_by_key(|it| std::cmp::Reverse(it.align));
        items
    }

    /// Bytes and alignment the functions of one bus need: the extent of
    /// their items placed in order from an address aligned to the largest
    /// alignment, gaps included, so a window of that size and alignment
    /// always holds them.
    fn bus_extent(&self, children: &[Child]) -> (u64, u64) {
        let items = self.bus_items(children);
        let align = items.iter().map(|it| it.align).max().unwrap_or(1);
        let end = items
            .iter()
            .fold(0u64, |at, it| at.next_multiple_of(it.align) + it.size);
        (end, align)
    }

    /// Places `children` on `bus`, carving their windows and BARs out of
    /// `space` (the bus's window, aligned as [`Planner::bus_extent`] asks),
    /// and recursively everything below them.
    fn place_bus(
        &mut self,
        bus: u8,
        children: &[Child],
        space: &mut AddressAllocator,
    ) -> Result<(), PlanError> {
        let out_of_mmio =
            |space: &AddressAllocator| PlanError::OutOfMmio(space.base(), space.end() + 1);
        let first = self.functions.len();
        for &(kind, device, port_number) in children {
            self.functions.push(FunctionPlan {
                kind,
                bus,
                device,
                secondary: 0,
                subordinate: 0,
                bars: Vec::new(),
                window: None,
                port_number,
            });
        }
        for it in self.bus_items(children) {
            let r = space
                .allocate(it.size, it.align, AllocPolicy::FirstMatch)
                .map_err(|_| out_of_mmio(space))?;
            let f = &mut self.functions[first + it.child];
            match it.bar {
                Some(bar) => f.bars.push((bar, r.start())),
                None => f.window = Some((r.start(), r.end())),
            }
        }
        // Buses are numbered depth-first in device order.
        for (i, &(kind, ..)) in children.iter().enumerate() {
            let f = &mut self.functions[first + i];
            f.bars.sort();
            let Some((base, last)) = f.window else {
                continue;
            };
            let mut below =
                AddressAllocator::new(base, last - base + 1).map_err(|_| out_of_mmio(space))?;
            let secondary = self.take_bus()?;
            self.place_bus(secondary, &self.children(kind), &mut below)?;
            let f = &mut self.functions[first + i];
            f.secondary = secondary;
            f.subordinate = (self.next_bus - 1) as u8;
        }
        Ok(())
    }
}

/// A bridge window (`bar` None) or a BAR of child `child` of a bus.
struct Item {
    child: usize,
    bar: Option<usize>,
    size: u64,
    align: u64,
}

/// Plans the hierarchy. `mmio` is the part of the 32-bit PCI window given to
/// CXL; `ram_end` is the first address above guest RAM. CHBCRs go to the
/// fixed CHBCR area of the 32-bit hole, windows above 4 GiB and above RAM
/// (`layout` has the whole map).
pub fn plan(topo: &Topology, mmio: (u64, u64), ram_end: u64) -> Result<CxlPlan, PlanError> {
    let mut p = Planner {
        topo,
        next_bus: u16::from(FIRST_CXL_BUS),
        functions: Vec::new(),
    };
    let mut space = AddressAllocator::new(mmio.0, mmio.1.saturating_sub(mmio.0))
        .map_err(|_| PlanError::OutOfMmio(mmio.0, mmio.1))?;
    let chbcr_blocks = CHBCR_AREA_SIZE / CHBCR_SIZE;
    if topo.host_bridges.len() as u64 > chbcr_blocks {
        return Err(PlanError::OutOfChbcr(
            topo.host_bridges.len(),
            CHBCR_AREA_SIZE,
            CHBCR_START,
        ));
    }
    let mut hbs = Vec::new();
    for (h, hb) in topo.host_bridges.iter().enumerate() {
        let root_bus = p.take_bus()?;
        let root_ports: Vec<Child> = (0..hb.root_ports)
            .map(|port| {
                let kind = FunctionKind::RootPort {
                    host_bridge: h,
                    port,
                };
                (kind, port as u8, port as u8)
            })
            .collect();
        // The host bridge's share of the PCI window (its _CRS).
        let (size, align) = p.bus_extent(&root_ports);
        let size = align_window(size);
        let window = space
            .allocate(size, align.max(WINDOW_ALIGN), AllocPolicy::FirstMatch)
            .map_err(|_| PlanError::OutOfMmio(space.base(), space.end() + 1))?;
        let mut bus_space = AddressAllocator::new(window.start(), size)
            .map_err(|_| PlanError::OutOfMmio(space.base(), space.end() + 1))?;
        p.place_bus(root_bus, &root_ports, &mut bus_space)?;
        let (mmio_start, mmio_end) = (window.start(), window.end() + 1);
        hbs.push(HostBridgePlan {
            uid: hb.uid,
            root_bus,
            last_bus: (p.next_bus - 1) as u8,
            mmio: (mmio_start, mmio_end - 1),
            chbcr: CHBCR_START + CHBCR_SIZE * h as u64,
        });
    }
    let floor = high_mmio_start(ram_end);
    let top = topo.limits.address_space_end();
    let bases = topo.window_bases(floor);
    let mut windows: Vec<WindowPlan> = Vec::new();
    for (w, &base) in topo.windows.iter().zip(&bases) {
        if base < floor {
            return Err(PlanError::WindowBelowFloor {
                id: w.id.clone(),
                base,
                floor,
            });
        }
        let end = base.saturating_add(w.size);
        if windows
            .iter()
            .any(|o| base < o.base + o.size && o.base < end)
        {
            return Err(PlanError::WindowOverlap {
                id: w.id.clone(),
                base,
            });
        }
        if end > top {
            return Err(PlanError::WindowBeyondAddressSpace {
                id: w.id.clone(),
                end,
                bits: topo.limits.phys_addr_bits,
            });
        }
        windows.push(WindowPlan { base, size: w.size });
    }
    let high_end = windows
        .iter()
        .map(|w| w.base + w.size)
        .max()
        .unwrap_or(floor);
    Ok(CxlPlan {
        host_bridges: hbs,
        functions: p.functions,
        windows,
        high_end,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(name: &str) -> Topology {
        let path = format!("{}/../examples/{name}", env!("CARGO_MANIFEST_DIR"));
        Topology::from_toml_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    const MMIO: (u64, u64) = (0xc100_0000, 0xe000_0000);

    #[test]
    fn intx_of_devices_below_the_switch_swizzles_by_downstream_port() {
        let t = load("switch-4.toml");
        let p = plan(&t, MMIO, 1 << 30).unwrap();
        let hb = &p.host_bridges[0];
        let mut routes = Vec::new();
        for f in &p.functions {
            if let FunctionKind::Type3 { .. } = f.kind {
                let dsp = p
                    .functions
                    .iter()
                    .find(|d| d.kind.is_bridge() && d.secondary == f.bus)
                    .unwrap();
                let (slot, pin) = p.intx_root_route(f.bus, f.device, 1).unwrap();
                // Arrives at the root port's slot, rotated by the DSP's slot.
                let rp = p
                    .functions
                    .iter()
                    .find(|r| r.kind.is_bridge() && r.bus == hb.root_bus)
                    .unwrap();
                assert_eq!(slot, rp.device);
                assert_eq!(pin, dsp.device % 4 + 1);
                routes.push(pin);
            }
        }
        routes.sort();
        assert_eq!(routes, vec![1, 2, 3, 4], "the four devices get four pins");
        assert_eq!(p.intx_root_route(0xee, 0, 1), None, "no such bus");
    }

    #[test]
    fn switch_topology_buses_and_windows_nest() {
        let t = load("switch-4.toml");
        let p = plan(&t, MMIO, 1 << 30).unwrap();
        assert_eq!(p.host_bridges.len(), 1);
        let hb = &p.host_bridges[0];
        assert_eq!(hb.root_bus, FIRST_CXL_BUS);
        // root bus, RP secondary (USP), USP secondary (4 DSPs), 4 DSP secondaries.
        assert_eq!(hb.last_bus, FIRST_CXL_BUS + 6);
        let kinds: Vec<_> = p.functions.iter().map(|f| f.kind).collect();
        assert_eq!(kinds.len(), 1 + 1 + 4 + 4);
        let rp = &p.functions[0];
        assert_eq!((rp.bus, rp.secondary, rp.subordinate), (0x10, 0x11, 0x16));
        let usp = &p.functions[1];
        assert!(matches!(usp.kind, FunctionKind::SwitchUpstream { .. }));
        assert_eq!(
            (usp.bus, usp.secondary, usp.subordinate),
            (0x11, 0x12, 0x16)
        );
        // Every function's BARs sit inside its parent bridge's window, and
        // sibling windows do not overlap.
        for f in &p.functions {
            let parent = p
                .functions
                .iter()
                .find(|b| b.kind.is_bridge() && b.secondary == f.bus);
            for &(_, a) in &f.bars {
                assert_eq!(a % BAR_SLOT, 0);
                match parent {
                    Some(b) => {
                        let (lo, hi) = b.window.unwrap();
                        assert!(a >= lo && a + BAR_SLOT - 1 <= hi, "{f:?} outside {b:?}");
                    }
                    None => assert!(a >= hb.mmio.0 && a + BAR_SLOT - 1 <= hb.mmio.1),
                }
            }
        }
        let dsps: Vec<_> = p
            .functions
            .iter()
            .filter(|f| matches!(f.kind, FunctionKind::SwitchDownstream { .. }))
            .collect();
        for (i, a) in dsps.iter().enumerate() {
            assert_eq!(a.port_number as usize, i);
            for b in &dsps[i + 1..] {
                let (a0, a1) = a.window.unwrap();
                let (b0, b1) = b.window.unwrap();
                assert!(a1 < b0 || b1 < a0);
            }
        }
        // CHBCR in its area of the 32-bit hole; windows from 4 GiB up,
        // 256 MiB aligned (guest_map's tests cover every RAM size).
        assert_eq!(hb.chbcr, CHBCR_START);
        assert_eq!(p.windows[0].base, 1 << 32);
        assert!(p.windows.iter().all(|w| w.base % (256 << 20) == 0));
        assert_eq!(p.windows[1].base, p.windows[0].base + p.windows[0].size);
    }

    #[test]
    fn accelerator_bars_are_naturally_aligned_inside_their_bridges_windows() {
        let t = load("accelerators.toml");
        let p = plan(&t, MMIO, 1 << 30).unwrap();
        let accels: Vec<_> = p
            .functions
            .iter()
            .filter(|f| matches!(f.kind, FunctionKind::Accelerator { .. }))
            .collect();
        assert_eq!(accels.len(), 3);
        let mut taken: Vec<(u64, u64)> = Vec::new();
        for f in &p.functions {
            let sizes = bar_sizes(&t, f.kind);
            assert_eq!(f.bars.len(), sizes.len(), "{f:?}");
            for (&(bar, addr), &(sbar, size)) in f.bars.iter().zip(&sizes) {
                assert_eq!(bar, sbar);
                assert_eq!(
                    addr % size,
                    0,
                    "{f:?} BAR {bar} at {addr:#x} not aligned to {size:#x}"
                );
                // Inside every bridge window above it, up to the host bridge's.
                let mut bus = f.bus;
                while let Some(b) = p
                    .functions
                    .iter()
                    .find(|b| b.kind.is_bridge() && b.secondary == bus)
                {
                    let (lo, hi) = b.window.unwrap();
                    assert!(addr >= lo && addr + size - 1 <= hi, "{f:?} outside {b:?}");
                    bus = b.bus;
                }
                let hb = p.host_bridges.iter().find(|h| h.root_bus == bus).unwrap();
                assert!(addr >= hb.mmio.0 && addr + size - 1 <= hb.mmio.1);
                assert!(taken
                    .iter()
                    .all(|&(a, s)| addr + size <= a || a + s <= addr));
                taken.push((addr, size));
            }
        }
        // VRAM: a 64 MiB BAR2 each.
        for f in accels {
            assert_eq!(bar_sizes(&t, f.kind)[1], (2, 64 << 20));
        }
    }

    #[test]
    fn two_host_bridges_get_disjoint_buses_mmio_and_chbcr() {
        let t = load("two-host-bridges.toml");
        let p = plan(&t, MMIO, 1 << 30).unwrap();
        let (a, b) = (&p.host_bridges[0], &p.host_bridges[1]);
        assert!(a.last_bus < b.root_bus);
        assert!(a.mmio.1 < b.mmio.0);
        assert_eq!(b.chbcr - a.chbcr, CHBCR_SIZE);
    }

    #[test]
    fn running_out_of_mmio_is_an_error() {
        let t = load("switch-4.toml");
        assert!(matches!(
            plan(&t, (0xc100_0000, 0xc110_0000), 1 << 30),
            Err(PlanError::OutOfMmio(..))
        ));
    }
}
