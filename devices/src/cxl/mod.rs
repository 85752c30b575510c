//! CXL device building blocks: DVSECs, component registers (HDM decoders,
//! RAS, link), device registers with the mailbox, and CDAT over DOE.
//!
//! Each register block is addressed by offset within the block, so it can be
//! unit-tested alone and placed behind any BAR; on the bus each has a lock of
//! its own (`Mutex<DeviceRegisters>`, [`component::ComponentBlock`]).

pub mod backing;
pub mod component;
pub mod dvsec;
pub mod file_lock;
pub mod mailbox;
pub mod port;
pub mod type3;

use crate::pci::ConfigHook;

/// Serves a DOE mailbox's registers from configuration space. The hook's
/// range starts after the extended-capability header, which is where the
/// DOE model's offset 4 is.
struct DoeHook(component::Doe);

impl ConfigHook for DoeHook {
    fn read(&mut self, offset: u16) -> u32 {
        self.0.read(offset + 4)
    }

    fn write(&mut self, offset: u16, value: u32) {
        self.0.write(offset + 4, value)
    }
}
