//! The trapped data path: a CXL window's accesses that KVM did not handle
//! natively, decoded through the tree and served from the device backings.

use std::sync::Arc;

use devices::cxl::backing::Type3Backing;
use devices::BusDevice;

use super::tree::TreeCell;
use super::LOG_TARGET;

/// One CFMWS window on the MMIO bus. Holds no lock while it reads or writes
/// a backing file, and allocates nothing per access: concurrent accesses
/// from several vCPUs proceed in parallel, each with the tree that was
/// current when it started.
pub struct WindowTrap {
    base: u64,
    tree: Arc<TreeCell>,
    /// Indexed like the topology's type-3 list.
    backings: Vec<Arc<Type3Backing>>,
}

impl WindowTrap {
    pub fn new(base: u64, tree: Arc<TreeCell>, backings: Vec<Arc<Type3Backing>>) -> Self {
        Self {
            base,
            tree,
            backings,
        }
    }

    /// Calls `f(at, backing, dpa, len)` for each run of the access at
    /// `offset` that one device serves; undecoded bytes are skipped.
    fn for_each_byte_run(
        &self,
        offset: u64,
        len: usize,
        mut f: impl FnMut(usize, &Type3Backing, u64, usize),
    ) {
        let tree = self.tree.get();
        let mut done = 0usize;
        while done < len {
            let hpa = self.base + offset + done as u64;
            let Some(t) = tree.decode(hpa) else {
                done += 1;
                continue;
            };
            // Stay inside one 256 B granule: the smallest interleave unit.
            let run = ((256 - (hpa % 256)) as usize).min(len - done);
            if let Some(b) = self.backings.get(t.device) {
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
                log::warn!(target: LOG_TARGET, "CXL media write at DPA {dpa:#x} failed: {e}");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::super::tree::tests::{switch4, two_way};
    use super::super::tree::Layout;
    use super::*;

    #[test]
    fn accesses_split_at_granules_and_undecoded_bytes_float() {
        let (topo, plan) = switch4();
        let base = plan.windows[0].base;
        let tree = Arc::new(TreeCell::default());
        tree.set(Layout::new(&topo, &plan).tree(&two_way(base)));
        let backings: Vec<_> = (0..4)
            .map(|i| Arc::new(Type3Backing::new(&format!("trap{i}"), 256 << 20, 0, None).unwrap()))
            .collect();
        let trap = WindowTrap::new(base, tree.clone(), backings.clone());
        // 16 bytes across the first granule boundary: device 0, then 1.
        let data: Vec<u8> = (1..=16).collect();
        trap.write(4096 - 8, &data);
        let mut back = [0u8; 16];
        trap.read(4096 - 8, &mut back);
        assert_eq!(back.to_vec(), data);
        let mut dev = [0u8; 8];
        backings[0].read(4096 - 8, &mut dev);
        assert_eq!(dev, [1, 2, 3, 4, 5, 6, 7, 8]);
        backings[1].read(0, &mut dev);
        assert_eq!(dev, [9, 10, 11, 12, 13, 14, 15, 16]);
        // Past the 512 MiB region nothing decodes: all ones, writes dropped.
        let past = 512 << 20;
        trap.write(past, &[0; 8]);
        trap.read(past - 4, &mut dev);
        assert_eq!(dev, [0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]);
        // A new tree applies to the next access.
        tree.set(fabric::interleave::DecodeTree::default());
        trap.read(0, &mut dev);
        assert_eq!(dev, [0xff; 8]);
    }
}
