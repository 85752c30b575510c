//! Guest RAM: which ranges exist, their backing, and the e820 map the guest sees.

use vm_memory::{GuestAddress, GuestMemoryMmap};

use crate::layout::*;

pub type GuestMemory = GuestMemoryMmap<()>;

/// e820 entry types (Linux `E820_TYPE_*`).
pub const E820_RAM: u32 = 1;
pub const E820_RESERVED: u32 = 2;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct E820Entry {
    pub addr: u64,
    pub size: u64,
    pub kind: u32,
}

/// Guest RAM ranges for `size` bytes: below the 32-bit hole first, the rest
/// above 4 GiB.
pub fn ram_ranges(size: u64) -> Vec<(GuestAddress, usize)> {
    let low = size.min(MMIO32_START);
    let mut ranges = vec![(GuestAddress(0), low as usize)];
    if size > low {
        ranges.push((GuestAddress(HIGH_RAM_START), (size - low) as usize));
    }
    ranges
}

/// Top of RAM below the hole (where the initrd goes).
pub fn low_ram_end(size: u64) -> u64 {
    size.min(MMIO32_START)
}

/// First guest-physical address above all RAM (where 64-bit MMIO may start).
pub fn ram_end(size: u64) -> u64 {
    if size > MMIO32_START {
        HIGH_RAM_START + (size - MMIO32_START)
    } else {
        size
    }
}

/// The e820 map: conventional memory, RAM from 1 MiB, high RAM, and the ECAM
/// window as reserved (Linux accepts MCFG only over reserved ranges).
pub fn e820_map(size: u64) -> Vec<E820Entry> {
    let low = low_ram_end(size);
    let mut map = vec![E820Entry {
        addr: 0,
        size: EBDA_START,
        kind: E820_RAM,
    }];
    if low > HIMEM_START {
        map.push(E820Entry {
            addr: HIMEM_START,
            size: low - HIMEM_START,
            kind: E820_RAM,
        });
    }
    map.push(E820Entry {
        addr: ECAM_START,
        size: ECAM_SIZE,
        kind: E820_RESERVED,
    });
    if size > MMIO32_START {
        map.push(E820Entry {
            addr: HIGH_RAM_START,
            size: size - MMIO32_START,
            kind: E820_RAM,
        });
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    fn total_ram(map: &[E820Entry]) -> u64 {
        map.iter()
            .filter(|e| e.kind == E820_RAM)
            .map(|e| e.size)
            .sum()
    }

    #[test]
    fn small_memory_stays_below_the_hole() {
        let size = 1 << 30;
        assert_eq!(ram_ranges(size), vec![(GuestAddress(0), 1 << 30)]);
        let map = e820_map(size);
        assert_eq!(
            map[0],
            E820Entry {
                addr: 0,
                size: 0x9fc00,
                kind: E820_RAM
            }
        );
        assert_eq!(
            map[1],
            E820Entry {
                addr: 0x100000,
                size: (1 << 30) - 0x100000,
                kind: E820_RAM
            }
        );
        assert!(map
            .iter()
            .all(|e| e.kind != E820_RAM || e.addr + e.size <= MMIO32_START));
        assert_eq!(ram_end(size), 1 << 30);
    }

    #[test]
    fn large_memory_splits_around_the_hole() {
        let size = 6u64 << 30;
        let ranges = ram_ranges(size);
        assert_eq!(ranges[0], (GuestAddress(0), 3 << 30));
        assert_eq!(ranges[1], (GuestAddress(4 << 30), 3 << 30));
        let map = e820_map(size);
        // All RAM is accounted for except the EBDA..1 MiB hole.
        assert_eq!(total_ram(&map), size - (HIMEM_START - EBDA_START));
        let ecam = map.iter().find(|e| e.addr == ECAM_START).unwrap();
        assert_eq!((ecam.size, ecam.kind), (ECAM_SIZE, E820_RESERVED));
        // Entries are sorted and disjoint.
        for w in map.windows(2) {
            assert!(w[0].addr + w[0].size <= w[1].addr);
        }
        assert_eq!(ram_end(size), 7 << 30);
    }
}
