//! Catches a vCPU stuck in a state no guest can be in.
//!
//! On a nested host whose emulated SVM now and then loads the L1
//! hypervisor's own state as the guest's (docs/rig.md, "Known trouble"), a
//! vCPU can sit in KVM_RUN for ever: its RIP is L1's, and its CR3 is L1's
//! page-table root, which is no memory this guest has. Without a check such
//! a run only ends at `--timeout` (minutes). The VM thread therefore kicks
//! every vCPU out of KVM_RUN every [`CHECK_PERIOD`]; a kicked vCPU looks at
//! its own state and, if its page-table root lies outside every byte of
//! memory the guest owns, stops the VM with an error naming it. A guest at
//! such a CR3 cannot fetch one instruction (on hardware it would
//! triple-fault at once), so no working guest is ever stopped by this.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use kvm_bindings::kvm_sregs;

/// How often the VM thread asks every vCPU to check its state: a kick costs
/// one exit, a stalled run is found within this long.
pub const CHECK_PERIOD: Duration = Duration::from_secs(10);

const CR0_PG: u64 = 1 << 31;
const EFER_LMA: u64 = 1 << 10;
/// The page-table root's address bits in long mode (the low 12 bits are
/// flags or the PCID).
const CR3_ROOT_MASK: u64 = 0x000f_ffff_ffff_f000;

/// The request counter the VM thread bumps before it kicks the vCPUs; each
/// vCPU checks once per new value.
#[derive(Debug, Default)]
pub struct CheckRequests(AtomicU64);

impl CheckRequests {
    /// Asks for a check (then kick the vCPUs).
    pub fn request(&self) {
        self.0.fetch_add(1, Ordering::AcqRel);
    }

    /// True once for each request since `seen` (which it updates).
    pub fn pending(&self, seen: &mut u64) -> bool {
        let now = self.0.load(Ordering::Acquire);
        let new = now != *seen;
        *seen = now;
        new
    }
}

/// The page-table root of a long-mode vCPU when it lies outside the
/// guest's memory (`owns` says whether a guest-physical page is RAM or a
/// mapped region); None when paging is off or the root is one the guest
/// owns.
pub fn impossible_page_table_root(sregs: &kvm_sregs, owns: impl Fn(u64) -> bool) -> Option<u64> {
    if sregs.cr0 & CR0_PG == 0 || sregs.efer & EFER_LMA == 0 {
        return None;
    }
    let root = sregs.cr3 & CR3_ROOT_MASK;
    (!owns(root)).then_some(root)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn long_mode(cr3: u64) -> kvm_sregs {
        kvm_sregs {
            cr0: CR0_PG | 1,
            cr3,
            efer: EFER_LMA | (1 << 8),
            ..Default::default()
        }
    }

    /// 1 GiB of RAM at 0.
    fn ram(gpa: u64) -> bool {
        gpa < 1 << 30
    }

    #[test]
    fn a_root_in_guest_ram_is_fine() {
        assert_eq!(
            impossible_page_table_root(&long_mode(0x2f82_2000), ram),
            None
        );
        // PCID bits below the root are not part of the address.
        assert_eq!(
            impossible_page_table_root(&long_mode(0x2f82_2005), ram),
            None
        );
    }

    #[test]
    fn the_rigs_l1_root_is_caught() {
        // The CR3 seen in a stalled rig vCPU: L1's process page table,
        // above the guest's memory.
        assert_eq!(
            impossible_page_table_root(&long_mode(0x1_3a64_e000), ram),
            Some(0x1_3a64_e000)
        );
    }

    #[test]
    fn without_long_mode_paging_nothing_is_judged() {
        let mut s = long_mode(0x1_3a64_e000);
        s.cr0 &= !CR0_PG;
        assert_eq!(impossible_page_table_root(&s, ram), None);
        let mut s = long_mode(0x1_3a64_e000);
        s.efer &= !EFER_LMA;
        assert_eq!(impossible_page_table_root(&s, ram), None);
    }

    #[test]
    fn each_request_is_seen_once() {
        let r = CheckRequests::default();
        let mut seen = 0;
        assert!(!r.pending(&mut seen));
        r.request();
        assert!(r.pending(&mut seen));
        assert!(!r.pending(&mut seen));
        r.request();
        r.request();
        assert!(r.pending(&mut seen));
    }
}
