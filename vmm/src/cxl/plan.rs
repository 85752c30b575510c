//! Where every part of the CXL hierarchy lives in the guest: bus numbers,
//! device/function addresses, BAR addresses and bridge windows (assigned the
//! way firmware would, so the guest keeps them), CHBCR blocks and CFMWS
//! windows. Pure arithmetic over the topology; testable without KVM.

use fabric::topology::{Attach, ElementRef, Topology};

/// First bus number used by CXL host bridges; buses below stay with the
/// main PCI root bridge (PCI0).
pub const FIRST_CXL_BUS: u8 = 0x10;
/// Every BAR gets a slot this large and this aligned (our register blocks,
/// device registers and MSI-X tables are all at most 64 KiB).
pub const BAR_SLOT: u64 = 0x1_0000;
/// PCI bridge memory windows have 1 MiB granularity.
const WINDOW_ALIGN: u64 = 1 << 20;
/// CHBCR blocks are 64 KiB each, in a 1 MiB region.
pub const CHBCR_SIZE: u64 = 0x1_0000;
const CHBCR_REGION: u64 = 1 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FunctionKind {
    RootPort { host_bridge: usize, port: u32 },
    SwitchUpstream { switch: usize },
    SwitchDownstream { switch: usize, port: u32 },
    Type3 { index: usize },
}

impl FunctionKind {
    pub fn is_bridge(&self) -> bool {
        !matches!(self, FunctionKind::Type3 { .. })
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
    /// Guest addresses of BAR slots 0, 2, 4 (64-bit BARs), if used.
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
    /// End of everything placed above RAM (CHBCRs and windows).
    pub high_end: u64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlanError {
    #[error("the CXL hierarchy needs more than 256 PCI buses")]
    OutOfBuses,
    #[error("the CXL hierarchy's BARs do not fit in the 32-bit PCI window [{0:#x}, {1:#x})")]
    OutOfMmio(u64, u64),
    #[error("window '{id}' at base {base:#x} overlaps guest RAM or another window")]
    WindowOverlap { id: String, base: u64 },
}

/// BAR slots a function uses: components on BAR0; type-3 also device
/// registers on BAR2 and MSI-X on BAR4.
fn bar_indices(kind: FunctionKind) -> &'static [usize] {
    match kind {
        FunctionKind::Type3 { .. } => &[0, 2, 4],
        _ => &[0],
    }
}

struct Planner<'a> {
    topo: &'a Topology,
    next_bus: u16,
    mmio: u64,
    mmio_end: u64,
    functions: Vec<FunctionPlan>,
}

impl Planner<'_> {
    fn take_bus(&mut self) -> Result<u8, PlanError> {
        let b = u8::try_from(self.next_bus).map_err(|_| PlanError::OutOfBuses)?;
        self.next_bus += 1;
        Ok(b)
    }

    fn take_slot(&mut self) -> Result<u64, PlanError> {
        let a = self.mmio.next_multiple_of(BAR_SLOT);
        if a + BAR_SLOT > self.mmio_end {
            return Err(PlanError::OutOfMmio(self.mmio, self.mmio_end));
        }
        self.mmio = a + BAR_SLOT;
        Ok(a)
    }

    /// Places the function at (bus, device) and, for bridges, everything below.
    fn place(
        &mut self,
        kind: FunctionKind,
        bus: u8,
        device: u8,
        port_number: u8,
    ) -> Result<(), PlanError> {
        let mut bars = Vec::new();
        for &i in bar_indices(kind) {
            bars.push((i, self.take_slot()?));
        }
        let idx = self.functions.len();
        self.functions.push(FunctionPlan {
            kind,
            bus,
            device,
            secondary: 0,
            subordinate: 0,
            bars,
            window: None,
            port_number,
        });
        if !kind.is_bridge() {
            return Ok(());
        }
        let secondary = self.take_bus()?;
        self.mmio = self.mmio.next_multiple_of(WINDOW_ALIGN);
        let win_start = self.mmio;
        match kind {
            FunctionKind::RootPort { host_bridge, port } => {
                self.place_child(Attach::RootPort { host_bridge, port }, secondary)?
            }
            FunctionKind::SwitchDownstream { switch, port } => {
                self.place_child(Attach::SwitchPort { switch, port }, secondary)?
            }
            FunctionKind::SwitchUpstream { switch } => {
                for p in 0..self.topo.switches[switch].downstream_ports {
                    let kind = FunctionKind::SwitchDownstream { switch, port: p };
                    self.place(kind, secondary, p as u8, p as u8)?;
                }
            }
            FunctionKind::Type3 { .. } => {}
        }
        // A bridge with nothing behind still gets a 1 MiB window: harmless,
        // and keeps the arithmetic uniform.
        let win_end = self.mmio.max(win_start + 1).next_multiple_of(WINDOW_ALIGN);
        self.mmio = win_end;
        if win_end > self.mmio_end {
            return Err(PlanError::OutOfMmio(win_start, self.mmio_end));
        }
        let subordinate = (self.next_bus - 1) as u8;
        let f = &mut self.functions[idx];
        f.secondary = secondary;
        f.subordinate = subordinate;
        f.window = Some((win_start, win_end - 1));
        Ok(())
    }

    fn place_child(&mut self, at: Attach, bus: u8) -> Result<(), PlanError> {
        match self.topo.child_at(at) {
            Some(ElementRef::Switch(s)) => {
                self.place(FunctionKind::SwitchUpstream { switch: s }, bus, 0, 0)
            }
            Some(ElementRef::Type3(t)) => self.place(FunctionKind::Type3 { index: t }, bus, 0, 0),
            _ => Ok(()),
        }
    }
}

/// Plans the hierarchy. `mmio` is the part of the 32-bit PCI window given to
/// CXL; `ram_end` is the first address above guest RAM.
pub fn plan(topo: &Topology, mmio: (u64, u64), ram_end: u64) -> Result<CxlPlan, PlanError> {
    let mut p = Planner {
        topo,
        next_bus: u16::from(FIRST_CXL_BUS),
        mmio: mmio.0,
        mmio_end: mmio.1,
        functions: Vec::new(),
    };
    let chbcr_base = ram_end.next_multiple_of(1 << 30);
    let mut hbs = Vec::new();
    for (h, hb) in topo.host_bridges.iter().enumerate() {
        let root_bus = p.take_bus()?;
        p.mmio = p.mmio.next_multiple_of(WINDOW_ALIGN);
        let mmio_start = p.mmio;
        for port in 0..hb.root_ports {
            p.place(
                FunctionKind::RootPort {
                    host_bridge: h,
                    port,
                },
                root_bus,
                port as u8,
                port as u8,
            )?;
        }
        let mmio_end = p.mmio.max(mmio_start + 1).next_multiple_of(WINDOW_ALIGN);
        p.mmio = mmio_end;
        hbs.push(HostBridgePlan {
            uid: hb.uid,
            root_bus,
            last_bus: (p.next_bus - 1) as u8,
            mmio: (mmio_start, mmio_end - 1),
            chbcr: chbcr_base + CHBCR_SIZE * h as u64,
        });
    }
    let first_window = chbcr_base + CHBCR_REGION;
    let bases = topo.window_bases(first_window);
    let mut windows: Vec<WindowPlan> = Vec::new();
    for (w, &base) in topo.windows.iter().zip(&bases) {
        let end = base.saturating_add(w.size);
        let clash = base < ram_end.max(first_window)
            || windows
                .iter()
                .any(|o| base < o.base + o.size && o.base < end);
        if clash {
            return Err(PlanError::WindowOverlap {
                id: w.id.clone(),
                base,
            });
        }
        windows.push(WindowPlan { base, size: w.size });
    }
    let high_end = windows
        .iter()
        .map(|w| w.base + w.size)
        .max()
        .unwrap_or(first_window)
        .max(first_window);
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
        // CHBCR above RAM, windows above the CHBCR region, 256 MiB aligned.
        assert_eq!(hb.chbcr, 1 << 30);
        assert!(p
            .windows
            .iter()
            .all(|w| w.base % (256 << 20) == 0 && w.base >= (1 << 30) + (1 << 20)));
        assert_eq!(p.windows[1].base, p.windows[0].base + p.windows[0].size);
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
