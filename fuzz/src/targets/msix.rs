//! An MSI-X table and PBA (PCIe 6.0 7.7.2) as a function's BAR serves
//! them: entries written in any order and width, vectors masked and
//! unmasked while the device signals them, the function mask and enable
//! toggled, the PBA read.

use std::sync::Arc;

use devices::pci::MsixTable;

use super::NoMsi;
use crate::input::Input;

pub fn fuzz_msix_table(data: &[u8]) {
    let mut input = Input::new(data);
    let vectors = input.pick(&[1u16, 8, 64, 8, 2048, 0, 4096, 8]);
    let mut t = MsixTable::new(vectors, Arc::new(NoMsi));
    let table = t.table_size();
    let mut steps = 0;
    while !input.is_empty() && steps < 512 {
        steps += 1;
        match input.range(0, 5) {
            0 | 1 => {
                let offset = input.range(0, table + 32);
                let w = input.width();
                let d = input.data(w);
                t.write_table(offset, &d);
            }
            2 => {
                let offset = input.range(0, table + 32);
                let mut d = vec![0u8; input.width()];
                t.read_table(offset, &mut d);
            }
            3 => {
                let offset = input.range(0, t.pba_size() + 16);
                let mut d = vec![0u8; input.width()];
                t.read_pba(offset, &mut d);
            }
            4 => t.trigger(input.u16()),
            _ => t.set_control(input.bool(), input.bool()),
        }
    }
}
