//! Interrupt routing: KVM's GSI routing table and the irqfds behind it.
//!
//! KVM_SET_GSI_ROUTING replaces the whole table, including the irqchip routes
//! KVM_CREATE_IRQCHIP installed, so [`GsiRouter`] keeps the complete table:
//! KVM's default PIC/IOAPIC routes for GSIs 0-23 (legacy devices and INTx
//! stay on them) and one MSI route per MSI-X vector from GSI 24 up. Each MSI
//! vector has its own irqfd, so a device raises it with an eventfd write and
//! no ioctl; the route changes only when the guest reprograms the vector.
//!
//! PCI INTx pins go to IOAPIC inputs 16-23 by the fixed table [`intx_gsi`],
//! which the DSDT publishes as each root bus's `_PRT`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use devices::pci::{InterruptAllocator, IntxLine, MsiSink};
use kvm_bindings::{
    kvm_irq_routing_entry, KvmIrqRouting, KVM_IRQCHIP_IOAPIC, KVM_IRQCHIP_PIC_MASTER,
    KVM_IRQCHIP_PIC_SLAVE, KVM_IRQ_ROUTING_IRQCHIP, KVM_IRQ_ROUTING_MSI,
};
use kvm_ioctls::VmFd;
use vmm_sys_util::eventfd::EventFd;

/// Pins of KVM's in-kernel IOAPIC; GSIs below this are irqchip routes.
pub const IOAPIC_PINS: u32 = 24;
/// IOAPIC inputs that PCI INTx pins share (16-23, as on PC chipsets).
pub const INTX_FIRST_GSI: u32 = 16;
pub const INTX_GSIS: u32 = 8;

/// The IOAPIC input of INTx `pin` (1 = INTA# .. 4 = INTD#) of the device in
/// `slot` on a root bus. Rotating by slot spreads the devices' INTA# over
/// the eight inputs. Below bridges, pins are first swizzled to the root-bus
/// slot (see [`swizzle`]), as the OS does when `_PRT` names no deeper bus.
pub fn intx_gsi(slot: u8, pin: u8) -> u32 {
    INTX_FIRST_GSI + (u32::from(slot) + u32::from(pin.clamp(1, 4)) - 1) % INTX_GSIS
}

/// The pin a device's INTx `pin` arrives on at its bridge, for a device in
/// `slot` below it (PCI-to-PCI bridge spec; Linux pci_swizzle_interrupt_pin).
pub fn swizzle(slot: u8, pin: u8) -> u8 {
    ((pin.clamp(1, 4) - 1 + slot % 4) % 4) + 1
}

/// KVM_MAX_IRQ_ROUTES on x86.
const MAX_ROUTES: usize = 4096;

/// The routing table as KVM sees it, keyed by GSI (a GSI may have several
/// entries: the legacy ones go to both the PIC and the IOAPIC).
struct RoutingTable {
    entries: BTreeMap<u32, Vec<kvm_irq_routing_entry>>,
    next_gsi: u32,
}

fn irqchip_route(gsi: u32, irqchip: u32, pin: u32) -> kvm_irq_routing_entry {
    let mut e = kvm_irq_routing_entry {
        gsi,
        type_: KVM_IRQ_ROUTING_IRQCHIP,
        ..Default::default()
    };
    e.u.irqchip.irqchip = irqchip;
    e.u.irqchip.pin = pin;
    e
}

fn msi_route(gsi: u32, address: u64, data: u32) -> kvm_irq_routing_entry {
    let mut e = kvm_irq_routing_entry {
        gsi,
        type_: KVM_IRQ_ROUTING_MSI,
        ..Default::default()
    };
    e.u.msi.address_lo = address as u32;
    e.u.msi.address_hi = (address >> 32) as u32;
    e.u.msi.data = data;
    e
}

impl RoutingTable {
    /// KVM's own default table (arch/x86/kvm/irq_comm.c): GSIs 0-15 to the
    /// PIC and the IOAPIC pin of the same number, 16-23 to the IOAPIC only.
    fn with_irqchip_defaults() -> Self {
        let mut entries = BTreeMap::new();
        for gsi in 0..IOAPIC_PINS {
            let mut routes = vec![irqchip_route(gsi, KVM_IRQCHIP_IOAPIC, gsi)];
            if gsi < 16 {
                let chip = if gsi < 8 {
                    KVM_IRQCHIP_PIC_MASTER
                } else {
                    KVM_IRQCHIP_PIC_SLAVE
                };
                routes.push(irqchip_route(gsi, chip, gsi % 8));
            }
            entries.insert(gsi, routes);
        }
        Self {
            entries,
            next_gsi: IOAPIC_PINS,
        }
    }

    /// Routes the table will hold once every reserved MSI GSI is routed
    /// (MSI routes are installed lazily, on first use).
    fn len_when_routed(&self) -> usize {
        let irqchip: usize = self
            .entries
            .range(..IOAPIC_PINS)
            .map(|(_, r)| r.len())
            .sum();
        irqchip + (self.next_gsi - IOAPIC_PINS) as usize
    }

    fn to_kvm(&self) -> Result<KvmIrqRouting, String> {
        let all: Vec<_> = self.entries.values().flatten().copied().collect();
        KvmIrqRouting::from_entries(&all).map_err(|e| format!("{e:?}"))
    }
}

/// Owns the VM's GSI routing table (clones share it).
#[derive(Clone)]
pub struct GsiRouter {
    vm: Arc<VmFd>,
    table: Arc<Mutex<RoutingTable>>,
    /// How many INTx pins assert each IOAPIC input (wired-OR).
    intx_asserted: Arc<Mutex<[u32; IOAPIC_PINS as usize]>>,
}

impl GsiRouter {
    pub fn new(vm: Arc<VmFd>) -> Self {
        Self {
            vm,
            table: Arc::new(Mutex::new(RoutingTable::with_irqchip_defaults())),
            intx_asserted: Arc::new(Mutex::new([0; IOAPIC_PINS as usize])),
        }
    }

    fn table(&self) -> MutexGuard<'_, RoutingTable> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reserves `n` consecutive GSIs for MSI routes (routed to nothing yet).
    fn reserve(&self, n: u32) -> std::io::Result<u32> {
        let mut t = self.table();
        if t.len_when_routed() + n as usize > MAX_ROUTES {
            return Err(std::io::Error::other(format!(
                "{n} more MSI vectors would exceed KVM's {MAX_ROUTES} interrupt routes"
            )));
        }
        let first = t.next_gsi;
        t.next_gsi += n;
        Ok(first)
    }

    /// Points `gsi` at an MSI message and installs the whole table in KVM.
    fn set_msi(&self, gsi: u32, address: u64, data: u32) {
        let mut t = self.table();
        t.entries.insert(gsi, vec![msi_route(gsi, address, data)]);
        let result = t
            .to_kvm()
            .and_then(|r| self.vm.set_gsi_routing(&r).map_err(|e| e.to_string()));
        if let Err(e) = result {
            log::warn!("GSI {gsi}: MSI route to {address:#x} (data {data:#x}) not installed: {e}");
        }
    }
}

impl InterruptAllocator for GsiRouter {
    fn intx_line(&self, gsi: u32) -> Arc<dyn IntxLine> {
        Arc::new(IoapicLine {
            router: self.clone(),
            gsi: gsi.min(IOAPIC_PINS - 1),
        })
    }

    fn msix_vectors(&self, vectors: u16) -> std::io::Result<Arc<dyn MsiSink>> {
        let first = self.reserve(u32::from(vectors))?;
        let mut irqfds = Vec::with_capacity(usize::from(vectors));
        for i in 0..u32::from(vectors) {
            let fd = EventFd::new(libc::EFD_NONBLOCK)?;
            self.vm
                .register_irqfd(&fd, first + i)
                .map_err(|e| std::io::Error::other(format!("irqfd for GSI {}: {e}", first + i)))?;
            irqfds.push(fd);
        }
        Ok(Arc::new(IrqfdVectors {
            router: self.clone(),
            first_gsi: first,
            irqfds,
        }))
    }
}

/// One INTx pin's connection to an IOAPIC input. The pin only reports level
/// changes, so the per-input count is exact.
struct IoapicLine {
    router: GsiRouter,
    gsi: u32,
}

impl IntxLine for IoapicLine {
    fn set_level(&self, asserted: bool) {
        let mut counts = self
            .router
            .intx_asserted
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let n = &mut counts[self.gsi as usize];
        *n = if asserted {
            n.saturating_add(1)
        } else {
            n.saturating_sub(1)
        };
        // KVM_IRQ_LINE: the in-kernel IOAPIC latches level-triggered inputs
        // and re-delivers after EOI while the line stays high.
        if let Err(e) = self.router.vm.set_irq_line(self.gsi, *n > 0) {
            log::warn!("INTx on GSI {}: {e}", self.gsi);
        }
    }
}

/// One function's MSI-X vectors: GSI `first_gsi + v` and its irqfd.
struct IrqfdVectors {
    router: GsiRouter,
    first_gsi: u32,
    irqfds: Vec<EventFd>,
}

impl MsiSink for IrqfdVectors {
    fn route(&self, vector: u16, address: u64, data: u32) {
        if usize::from(vector) < self.irqfds.len() {
            self.router
                .set_msi(self.first_gsi + u32::from(vector), address, data);
        }
    }

    fn trigger(&self, vector: u16) {
        if let Some(fd) = self.irqfds.get(usize::from(vector)) {
            if let Err(e) = fd.write(1) {
                log::warn!("MSI-X vector {vector}: irqfd write failed: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_table_matches_kvm_irqchip_routes() {
        let t = RoutingTable::with_irqchip_defaults();
        // 16 GSIs on PIC + IOAPIC, 8 on the IOAPIC alone.
        assert_eq!(t.len_when_routed(), 16 * 2 + 8);
        let gsi9 = &t.entries[&9];
        // SAFETY: irqchip routes were built with the irqchip union member.
        let (chip0, pin0, chip1, pin1) = unsafe {
            (
                gsi9[0].u.irqchip.irqchip,
                gsi9[0].u.irqchip.pin,
                gsi9[1].u.irqchip.irqchip,
                gsi9[1].u.irqchip.pin,
            )
        };
        assert_eq!((chip0, pin0), (KVM_IRQCHIP_IOAPIC, 9));
        assert_eq!((chip1, pin1), (KVM_IRQCHIP_PIC_SLAVE, 1));
        assert_eq!(t.entries[&20].len(), 1);
        assert_eq!(t.next_gsi, IOAPIC_PINS);
        assert_eq!(t.to_kvm().unwrap().as_slice().len(), 40);
    }

    #[test]
    fn intx_routing_matches_the_pci_swizzle() {
        // INTA# of slots 0..7 covers all eight inputs once.
        let mut gsis: Vec<u32> = (0..8).map(|slot| intx_gsi(slot, 1)).collect();
        gsis.sort();
        assert_eq!(gsis, (16..24).collect::<Vec<_>>());
        assert_eq!(intx_gsi(0, 4), 19);
        assert_eq!(intx_gsi(7, 2), 16);
        // A device in slot 0 below a bridge keeps its pin (every PCIe device
        // below a port); slot 2 turns INTA# into INTC#, INTD# into INTB#.
        assert_eq!(swizzle(0, 1), 1);
        assert_eq!(swizzle(2, 1), 3);
        assert_eq!(swizzle(2, 4), 2);
        assert_eq!(swizzle(5, 3), 4);
    }

    #[test]
    fn reserved_but_unrouted_vectors_count_against_kvms_route_limit() {
        let mut t = RoutingTable::with_irqchip_defaults();
        t.next_gsi += 100; // reserved, routed lazily: nothing in `entries` yet
        assert_eq!(t.len_when_routed(), 40 + 100);
        t.entries
            .insert(IOAPIC_PINS, vec![msi_route(IOAPIC_PINS, 0xfee0_0000, 0)]);
        assert_eq!(
            t.len_when_routed(),
            40 + 100,
            "a routed reserved GSI is not counted twice"
        );
    }

    #[test]
    fn msi_route_carries_the_message() {
        let e = msi_route(30, 0x1_fee0_1000, 0x4041);
        assert_eq!(e.type_, KVM_IRQ_ROUTING_MSI);
        // SAFETY: built with the msi union member.
        let m = unsafe { e.u.msi };
        assert_eq!(
            (m.address_lo, m.address_hi, m.data),
            (0xfee0_1000, 1, 0x4041)
        );
    }
}
